#include "engine/embed.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/sys.h"

void embd_opts_default(embd_opts *o) {
    memset(o, 0, sizeof *o);
    o->pooling = EMBD_POOL_UNSPECIFIED;
    o->normalize = true;
    o->truncate = true;
    o->batch_tokens = 4096;
    o->attn_bytes = 24u << 20;
}

typedef struct {
    const int32_t *ids;
    int len;
    int n_first; /* pairs: tokens of the first segment; 0 for one text */
    size_t index;
} seq;

static int by_len_desc(const void *a, const void *b) {
    const seq *x = a, *y = b;
    if (x->len != y->len) return y->len - x->len;
    return x->index < y->index ? -1 : x->index > y->index; /* stable: same batches for same input */
}

void embd_l2_normalize(float *v, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)v[i] * v[i];
    if (s <= 0) return;
    float inv = (float)(1.0 / sqrt(s));
    for (int i = 0; i < n; i++) v[i] *= inv;
}

static embd_pooling resolve_pooling(const embd_model_info *hp, const embd_opts *o) {
    return o->pooling == EMBD_POOL_UNSPECIFIED ? hp->pooling : o->pooling;
}

static int effective_ctx(const embd_model_info *hp, const embd_opts *o) {
    return (o->max_tokens > 0 && o->max_tokens < hp->n_ctx) ? o->max_tokens : hp->n_ctx;
}

/* Runs the prepared sequences (res[] already holds per-item state) in length-sorted batches. */
static int run_sequences(embd_encoder *enc, const embd_model_info *hp, seq *seqs, size_t ns, embd_pooling pool,
                         const embd_opts *o, float *out, embd_item *res, char *err, size_t errlen) {
    const int H = embd_model_out_dim(embd_encoder_model(enc), pool);
    const bool normalize = o->normalize && pool != EMBD_POOL_RANK; /* scores are not vectors */
    qsort(seqs, ns, sizeof *seqs, by_len_desc);
    const int32_t **ids = malloc((ns ? ns : 1) * sizeof *ids);
    int *lens = malloc((ns ? ns : 1) * sizeof *lens), *firsts = malloc((ns ? ns : 1) * sizeof *firsts);
    float *tmp = malloc((ns ? ns : 1) * (size_t)H * sizeof *tmp);
    if (!ids || !lens || !firsts || !tmp) {
        free(ids), free(lens), free(firsts), free(tmp);
        return embd_fail(err, errlen, "out of memory");
    }
    size_t done_items = 0, done_tokens = 0;
    /* the attention cap bounds host memory; a GPU's passes are bounded by its own governor */
    const size_t attn_cap = embd_encoder_on_gpu(enc) && o->attn_bytes < ((size_t)1 << 30)
                                ? (size_t)1 << 30 : o->attn_bytes;
    for (size_t i = 0; i < ns;) {
        /* Sorted descending, so the first sequence sets the padded length of the batch. */
        const size_t L = (size_t)seqs[i].len;
        const size_t attn_per_seq = L * L * (size_t)hp->n_head * sizeof(float);
        size_t nb = 0;
        while (i + nb < ns && (nb == 0 || ((nb + 1) * L <= o->batch_tokens && (nb + 1) * attn_per_seq <= attn_cap))) {
            ids[nb] = seqs[i + nb].ids;
            lens[nb] = seqs[i + nb].len;
            firsts[nb] = seqs[i + nb].n_first;
            nb++;
        }
        char e2[160];
        int rc = embd_encoder_run(enc, ids, lens, firsts, (int)nb, pool, tmp, e2, sizeof e2);
        for (size_t b = 0; b < nb; b++) {
            size_t idx = seqs[i + b].index;
            if (rc == 0) {
                memcpy(out + idx * H, tmp + b * H, (size_t)H * sizeof *out);
                if (normalize) embd_l2_normalize(out + idx * H, H);
            } else {
                res[idx].status = EMBD_ITEM_FAILED;
                snprintf(res[idx].message, sizeof res[idx].message, "inference failed: %.100s", e2);
            }
            done_tokens += (size_t)lens[b];
        }
        done_items += nb;
        i += nb;
        if (o->progress) o->progress(o->progress_ud, done_items, done_tokens);
    }
    free(ids), free(lens), free(firsts), free(tmp);
    return 0;
}

static int check_opts(const embd_model *m, const embd_opts *o, embd_pooling pool, char *err, size_t errlen) {
    if (pool == EMBD_POOL_RANK && !m->info.n_labels)
        return embd_fail(err, errlen, "rank pooling needs a cross-encoder (a model with a classification head)");
    if (pool != EMBD_POOL_CLS && pool != EMBD_POOL_MEAN && pool != EMBD_POOL_LAST && pool != EMBD_POOL_RANK)
        return embd_fail(err, errlen, "pooling '%s' does not give one vector per text", embd_pooling_name(pool));
    if (o->batch_tokens < 1) return embd_fail(err, errlen, "batch_tokens must be >= 1");
    return 0;
}

int embd_embed_token_pairs(embd_encoder *enc, const int32_t *const *ids, const size_t *n_ids, const int *n_first,
                           size_t n, const embd_opts *o, float *out, embd_item *res, char *err, size_t errlen) {
    const embd_model *m = embd_encoder_model(enc);
    const embd_model_info *hp = &m->info;
    embd_pooling pool = resolve_pooling(hp, o);
    if (check_opts(m, o, pool, err, errlen)) return -1;
    const int ctx = effective_ctx(hp, o);
    memset(out, 0, n * (size_t)embd_model_out_dim(m, pool) * sizeof *out);
    seq *seqs = malloc((n ? n : 1) * sizeof *seqs);
    int32_t *trunc = NULL; /* truncated copies: keep [CLS] + first pieces + the final [SEP] */
    size_t ns = 0, n_trunc = 0;
    for (size_t i = 0; i < n; i++) n_trunc += (o->truncate && n_ids[i] > (size_t)ctx) ? 1 : 0;
    if (n_trunc) trunc = malloc(n_trunc * (size_t)ctx * sizeof *trunc);
    if (!seqs || (n_trunc && !trunc)) {
        free(seqs), free(trunc);
        return embd_fail(err, errlen, "out of memory");
    }
    size_t ti = 0;
    for (size_t i = 0; i < n; i++) {
        embd_item *r = &res[i];
        memset(r, 0, sizeof *r);
        r->n_tokens_full = (int)(n_ids[i] > (size_t)INT32_MAX ? INT32_MAX : n_ids[i]);
        if (n_ids[i] == 0) {
            r->status = EMBD_ITEM_FAILED;
            snprintf(r->message, sizeof r->message, "empty token list");
            continue;
        }
        const int32_t *s = ids[i];
        size_t len = n_ids[i];
        size_t bad = 0;
        while (bad < len && s[bad] >= 0 && s[bad] < hp->n_vocab) bad++;
        if (bad < len) {
            r->status = EMBD_ITEM_FAILED;
            snprintf(r->message, sizeof r->message, "token id %d at position %zu is outside the vocabulary (0..%d)",
                     (int)s[bad], bad, hp->n_vocab - 1);
            continue;
        }
        if (len > (size_t)ctx) {
            if (!o->truncate) {
                r->status = EMBD_ITEM_TOO_LONG;
                snprintf(r->message, sizeof r->message, "input has %zu tokens, more than the limit of %d (truncation is off)",
                         len, ctx);
                continue;
            }
            int32_t *t = trunc + ti++ * (size_t)ctx;
            memcpy(t, s, (size_t)(ctx - 1) * sizeof *t);
            t[ctx - 1] = s[len - 1];
            s = t;
            len = (size_t)ctx;
            r->truncated = true;
        }
        r->n_tokens = (int)len;
        int nf = n_first ? n_first[i] : 0;
        seqs[ns++] = (seq){.ids = s, .len = (int)len, .n_first = nf > 0 && (size_t)nf < len ? nf : 0, .index = i};
    }
    int rc = run_sequences(enc, hp, seqs, ns, pool, o, out, res, err, errlen);
    free(seqs), free(trunc);
    return rc;
}

int embd_embed_tokens(embd_encoder *enc, const int32_t *const *ids, const size_t *n_ids, size_t n, const embd_opts *o,
                      float *out, embd_item *res, char *err, size_t errlen) {
    return embd_embed_token_pairs(enc, ids, n_ids, NULL, n, o, out, res, err, errlen);
}

/* Tokenizes one text (after o->prompt, the two truncated together) into tk and fills r: true when
 * it can run, else r says why. joined/jcap: a buffer reused across calls for prompt + text. */
static bool tokenize_item(const embd_model *m, const char *text, size_t len, const embd_opts *o, int ctx, char **joined,
                          size_t *jcap, embd_tokens *tk, embd_item *r) {
    memset(r, 0, sizeof *r);
    const size_t plen = o->prompt ? strlen(o->prompt) : 0;
    if (plen) {
        if (len + plen > *jcap) {
            char *p = realloc(*joined, len + plen);
            if (!p) {
                r->status = EMBD_ITEM_FAILED;
                snprintf(r->message, sizeof r->message, "out of memory");
                return false;
            }
            *joined = p;
            *jcap = len + plen;
        }
        memcpy(*joined, o->prompt, plen);
        memcpy(*joined + plen, text, len);
        text = *joined;
        len += plen;
    }
    size_t bad = 0;
    /* Tokenize in full when truncation is off, so the error can give the real count. */
    int rc = embd_tokenizer_encode(m->tok, text, len, o->truncate ? (size_t)ctx : 0, tk, &bad);
    if (rc == EMBD_TOK_EUTF8) {
        r->status = EMBD_ITEM_BAD_UTF8;
        snprintf(r->message, sizeof r->message, "invalid UTF-8 at byte %zu", bad >= plen ? bad - plen : bad);
        return false;
    }
    if (rc != EMBD_TOK_OK) {
        r->status = EMBD_ITEM_FAILED;
        snprintf(r->message, sizeof r->message, "tokenizer failed (out of memory)");
        return false;
    }
    r->n_tokens_full = (int)tk->n_full;
    r->truncated = tk->truncated;
    if (tk->n > (size_t)ctx) {
        r->status = EMBD_ITEM_TOO_LONG;
        snprintf(r->message, sizeof r->message, "input has %zu tokens, more than the limit of %d (truncation is off)",
                 tk->n, ctx);
        return false;
    }
    r->n_tokens = (int)tk->n;
    return true;
}

int embd_embed_texts(embd_encoder *enc, const char *const *texts, const size_t *lens, size_t n, const embd_opts *o,
                     float *out, embd_item *res, char *err, size_t errlen) {
    const embd_model *m = embd_encoder_model(enc);
    const embd_model_info *hp = &m->info;
    embd_pooling pool = resolve_pooling(hp, o);
    if (check_opts(m, o, pool, err, errlen)) return -1;
    if (pool == EMBD_POOL_RANK) return embd_fail(err, errlen, "a cross-encoder scores text pairs; use reranking");
    const int ctx = effective_ctx(hp, o);
    memset(out, 0, n * (size_t)hp->n_embd * sizeof *out);
    embd_tokens *tk = calloc(n ? n : 1, sizeof *tk);
    seq *seqs = malloc((n ? n : 1) * sizeof *seqs);
    if (!tk || !seqs) {
        free(tk), free(seqs);
        return embd_fail(err, errlen, "out of memory");
    }
    size_t ns = 0;
    char *joined = NULL;
    size_t jcap = 0;
    for (size_t i = 0; i < n; i++)
        if (tokenize_item(m, texts[i], lens[i], o, ctx, &joined, &jcap, &tk[i], &res[i]))
            seqs[ns++] = (seq){.ids = tk[i].ids, .len = (int)tk[i].n, .index = i};
    free(joined);
    int rc = run_sequences(enc, hp, seqs, ns, pool, o, out, res, err, errlen);
    for (size_t i = 0; i < n; i++) embd_tokens_free(&tk[i]);
    free(tk), free(seqs);
    return rc;
}

int embd_embed_token_states(embd_encoder *enc, const char *text, size_t len, const embd_opts *o, float **states,
                            embd_item *res, char *err, size_t errlen) {
    const embd_model *m = embd_encoder_model(enc);
    const int H = m->info.n_embd, ctx = effective_ctx(&m->info, o);
    *states = NULL;
    embd_tokens tk = {0};
    char *joined = NULL;
    size_t jcap = 0;
    bool ok = tokenize_item(m, text, len, o, ctx, &joined, &jcap, &tk, res);
    free(joined);
    if (ok && !(*states = malloc(tk.n * (size_t)H * sizeof **states))) {
        res->status = EMBD_ITEM_FAILED;
        snprintf(res->message, sizeof res->message, "out of memory");
    } else if (ok) {
        const int32_t *ids[1] = {tk.ids};
        int lens[1] = {(int)tk.n};
        char e2[160];
        if (embd_encoder_run(enc, ids, lens, NULL, 1, EMBD_POOL_NONE, *states, e2, sizeof e2)) {
            free(*states);
            *states = NULL;
            res->status = EMBD_ITEM_FAILED;
            snprintf(res->message, sizeof res->message, "inference failed: %.100s", e2);
        }
    }
    embd_tokens_free(&tk);
    return 0;
}
