#include "engine/rerank.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/sys.h"

size_t embd_pair_query_budget(const embd_model *m, int ctx, bool truncate) {
    (void)m;
    return truncate ? (size_t)(ctx / 2 > 2 ? ctx / 2 : 2) : 0;
}

size_t embd_pair_doc_budget(const embd_model *m, int ctx, size_t nq) {
    /* the document's [CLS] is dropped in the join; RoBERTa adds a second </s> */
    const size_t extra = m->info.pair_double_sep ? 1 : 0;
    if ((size_t)ctx + 1 < nq + extra + 2 + 1) return 0;
    return (size_t)ctx + 1 - nq - extra;
}

int embd_pair_join(const embd_model *m, const embd_tokens *q, const embd_tokens *d, embd_tokens *out) {
    const bool dbl = m->info.pair_double_sep;
    const size_t nd = d->n > 0 ? d->n - 1 : 0, n = q->n + (dbl ? 1 : 0) + nd;
    if (n > out->cap) {
        int32_t *ids = realloc(out->ids, n * sizeof *ids);
        if (!ids) return -1;
        out->ids = ids;
        out->cap = n;
    }
    memcpy(out->ids, q->ids, q->n * sizeof *out->ids);
    size_t k = q->n;
    if (dbl) out->ids[k++] = embd_tokenizer_sep_id(m->tok);
    if (nd) memcpy(out->ids + k, d->ids + 1, nd * sizeof *out->ids);
    out->n = n;
    out->n_full = q->n_full + (dbl ? 1 : 0) + (d->n_full > 0 ? d->n_full - 1 : 0);
    out->truncated = q->truncated || d->truncated;
    return (int)q->n;
}

static int by_score_desc(const void *a, const void *b, void *scores) {
    const float *sc = scores;
    const size_t x = *(const size_t *)a, y = *(const size_t *)b;
    if (sc[x] != sc[y]) return sc[x] < sc[y] ? 1 : -1;
    return x < y ? -1 : x > y; /* ties keep input order */
}

void embd_rerank_order(const float *scores, size_t n, size_t *order) {
    for (size_t i = 0; i < n; i++) order[i] = i;
    qsort_r(order, n, sizeof *order, by_score_desc, (void *)scores);
}

float embd_rerank_sigmoid(float logit) { return (float)(1.0 / (1.0 + exp(-(double)logit))); }

static void item_fail(embd_item *r, int status, const char *what, size_t off) {
    r->status = status;
    if (status == EMBD_ITEM_BAD_UTF8)
        snprintf(r->message, sizeof r->message, "%s: invalid UTF-8 at byte %zu", what, off);
    else
        snprintf(r->message, sizeof r->message, "%s", what);
}

int embd_rerank_texts(embd_encoder *enc, const char *query, size_t qlen, const char *const *docs, const size_t *lens,
                      size_t n, const embd_opts *o, float *scores, embd_item *res, char *err, size_t errlen) {
    const embd_model *m = embd_encoder_model(enc);
    if (!embd_model_is_reranker(m))
        return embd_fail(err, errlen, "model '%s' is not a cross-encoder (no rank pooling head)", m->info.name);
    const int ctx = o->max_tokens > 0 && o->max_tokens < m->info.n_ctx ? o->max_tokens : m->info.n_ctx;
    const int L = m->info.n_labels;
    embd_tokens qt = {0}, dt = {0};
    embd_tokens *pairs = calloc(n ? n : 1, sizeof *pairs);
    int *first = calloc(n ? n : 1, sizeof *first);
    const int32_t **ids = calloc(n ? n : 1, sizeof *ids);
    size_t *nids = calloc(n ? n : 1, sizeof *nids), *idx = calloc(n ? n : 1, sizeof *idx);
    float *logits = calloc((n ? n : 1) * (size_t)L, sizeof *logits);
    embd_item *sub = calloc(n ? n : 1, sizeof *sub);
    int rc = -1;
    if (!pairs || !first || !ids || !nids || !idx || !logits || !sub) {
        embd_fail(err, errlen, "out of memory");
        goto out;
    }
    size_t bad = 0;
    int qrc = embd_tokenizer_encode(m->tok, query, qlen, embd_pair_query_budget(m, ctx, o->truncate), &qt, &bad);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        embd_item *r = &res[i];
        memset(r, 0, sizeof *r);
        scores[i] = 0;
        if (qrc != EMBD_TOK_OK) {
            item_fail(r, qrc == EMBD_TOK_EUTF8 ? EMBD_ITEM_BAD_UTF8 : EMBD_ITEM_FAILED,
                      qrc == EMBD_TOK_EUTF8 ? "query" : "tokenizer failed (out of memory)", bad);
            continue;
        }
        size_t budget = o->truncate ? embd_pair_doc_budget(m, ctx, qt.n) : 0;
        if (o->truncate && budget == 0) budget = 2;
        int drc = embd_tokenizer_encode(m->tok, docs[i], lens[i], budget, &dt, &bad);
        if (drc != EMBD_TOK_OK) {
            item_fail(r, drc == EMBD_TOK_EUTF8 ? EMBD_ITEM_BAD_UTF8 : EMBD_ITEM_FAILED,
                      drc == EMBD_TOK_EUTF8 ? "document" : "tokenizer failed (out of memory)", bad);
            continue;
        }
        first[k] = embd_pair_join(m, &qt, &dt, &pairs[k]);
        if (first[k] < 0) {
            item_fail(r, EMBD_ITEM_FAILED, "out of memory", 0);
            continue;
        }
        r->n_tokens_full = (int)pairs[k].n_full;
        r->truncated = pairs[k].truncated;
        if (pairs[k].n > (size_t)ctx) {
            r->status = EMBD_ITEM_TOO_LONG;
            snprintf(r->message, sizeof r->message,
                     "the pair has %zu tokens, more than the limit of %d (truncation is off)", pairs[k].n, ctx);
            continue;
        }
        ids[k] = pairs[k].ids;
        nids[k] = pairs[k].n;
        idx[k++] = i;
    }
    embd_opts po = *o;
    po.pooling = EMBD_POOL_RANK;
    rc = embd_embed_token_pairs(enc, ids, nids, first, k, &po, logits, sub, err, errlen);
    for (size_t j = 0; rc == 0 && j < k; j++) { /* the pair was cut before; sub[] only saw the result */
        embd_item *r = &res[idx[j]];
        const bool cut = r->truncated;
        const int full = r->n_tokens_full;
        *r = sub[j];
        r->truncated = cut;
        r->n_tokens_full = full;
        scores[idx[j]] = logits[j * (size_t)L];
    }
out:
    for (size_t i = 0; pairs && i < n; i++) embd_tokens_free(&pairs[i]);
    embd_tokens_free(&qt);
    embd_tokens_free(&dt);
    free(pairs), free(first), free(ids), free(nids), free(idx), free(logits), free(sub);
    return rc;
}
