#include "collections/ingest.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collections/enrich.h"
#include "util/sys.h"

size_t embd_coll_max_chunk(const embd_coll_ctx *c) { return c->n_ctx > 2 ? (size_t)c->n_ctx - 2 : 1; }

static void sha256_hex(const char *s, size_t len, char out[65]) {
    unsigned char d[32];
    unsigned int n = 0;
    EVP_Digest(s, len, d, &n, EVP_sha256(), NULL);
    for (unsigned i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

typedef struct {
    embd_chunk *chunks;
    size_t n;
    float *vecs;
    char hash[65];
    bool unchanged;
    char *title; /* metadata "title" (for the enrichment prompt), NULL: none */
} doc_work;

/* The collection's info, checked against this model. */
static int coll_info(const embd_coll_ctx *c, const char *coll, embd_coll_info *info, char *err, size_t errlen) {
    int rc = embd_store_info(c->store, coll, info, NULL, err, errlen);
    if (rc) return rc;
    if (strcmp(info->model, c->model_name) || info->dims != c->dims)
        return embd_fail(err, errlen, "collection '%s' was built with model '%s' (%d dims); this is '%s' (%d dims)",
                         coll, info->model, info->dims, c->model_name, c->dims),
               EMBD_STORE_MISMATCH;
    if (info->opts.chunk_size > embd_coll_max_chunk(c))
        return embd_fail(err, errlen, "chunk_size %zu exceeds the model's %zu tokens", info->opts.chunk_size,
                         embd_coll_max_chunk(c)),
               EMBD_STORE_INVALID;
    return 0;
}

int embd_coll_plan(const embd_coll_ctx *c, const char *coll, const embd_doc_input *docs, size_t n, size_t *chunks,
                   char *err, size_t errlen) {
    embd_coll_info info;
    int rc = coll_info(c, coll, &info, err, errlen);
    const embd_chunk_opts co = {info.opts.chunk_size, info.opts.overlap, info.opts.code_aware};
    for (size_t i = 0; i < n && !rc; i++) {
        char hash[65], cerr[64];
        embd_chunk *ch = NULL;
        chunks[i] = 0;
        sha256_hex(docs[i].text, docs[i].len, hash);
        if (embd_store_doc_unchanged(c->store, coll, docs[i].id, hash)) continue;
        if (!embd_chunk_text(docs[i].text, docs[i].len, &co, embd_chunk_count_tokens, (void *)c->tok, &ch, &chunks[i],
                             cerr, sizeof cerr))
            free(ch);
        else chunks[i] = 0;
    }
    return rc;
}

/* The collection's enrichment configuration, NULL when it has none (or on error: rc set). */
static embd_enrich_cfg *load_enrich(const embd_coll_ctx *c, const char *coll, int *rc, char *err, size_t errlen) {
    char *text = NULL;
    if ((*rc = embd_store_enrich_get(c->store, coll, &text, err, errlen)) || !text) return NULL;
    json_t *j = json_loads(text, 0, NULL);
    embd_enrich_cfg *cfg = embd_enrich_parse(j, err, errlen);
    if (!cfg) *rc = EMBD_STORE_ERR; /* it was validated when stored: the database was edited */
    json_decref(j);
    free(text);
    return cfg;
}

static char *meta_title(const char *metadata) {
    json_t *md = metadata ? json_loads(metadata, 0, NULL) : NULL;
    const char *t = json_string_value(json_object_get(md, "title"));
    char *out = t ? strdup(t) : NULL;
    json_decref(md);
    return out;
}

/* Enriches the chunks of the changed documents: ctx[k] gets chunk k's context (or NULL) and
 * texts[k] becomes context + "\n\n" + chunk (owned[k] holds that buffer). */
static void enrich_chunks(const embd_enrich_cfg *cfg, const embd_doc_input *docs, doc_work *w, size_t n, size_t total,
                          const embd_ingest_opts *o, const char **texts, size_t *lens, char **ctx, char **owned,
                          embd_ingest_stats *st) {
    embd_enrich_item *items = calloc(total ? total : 1, sizeof *items);
    size_t k = 0;
    for (size_t i = 0; items && i < n; i++) {
        if (w[i].unchanged) continue;
        w[i].title = meta_title(docs[i].metadata);
        for (size_t j = 0; j < w[i].n; j++, k++)
            items[k] = (embd_enrich_item){texts[k], lens[k], docs[i].text, docs[i].len, docs[i].id, w[i].title};
    }
    embd_enrich_stats es = {0};
    embd_enrich_run_opts ro = {.deadline = o ? o->enrich_deadline : 0,
                               .stop = o ? o->stop : NULL,
                               .progress = o ? o->on_enriched : NULL,
                               .ud = o ? o->ud : NULL};
    char eerr[128];
    if (!items || embd_enrich_run(cfg, items, total, &ro, ctx, &es, eerr, sizeof eerr)) {
        es.degraded = total; /* out of memory: everything goes in plain */
        snprintf(es.last_error, sizeof es.last_error, "out of memory");
    }
    for (k = 0; k < total; k++) {
        if (!ctx[k] || asprintf(&owned[k], "%s\n\n%.*s", ctx[k], (int)lens[k], texts[k]) < 0) {
            owned[k] = NULL;
            continue;
        }
        texts[k] = owned[k];
        lens[k] = strlen(owned[k]);
    }
    st->enriched = es.enriched;
    st->degraded = es.degraded;
    snprintf(st->enrich_error, sizeof st->enrich_error, "%s", es.last_error);
    free(items);
}

int embd_coll_ingest(const embd_coll_ctx *c, const char *coll, const embd_doc_input *docs, size_t n,
                     embd_ingest_stats *st, char *err, size_t errlen) {
    return embd_coll_ingest_ex(c, coll, docs, n, NULL, st, err, errlen);
}

int embd_coll_ingest_ex(const embd_coll_ctx *c, const char *coll, const embd_doc_input *docs, size_t n,
                        const embd_ingest_opts *o, embd_ingest_stats *st, char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    embd_coll_info info;
    int rc = coll_info(c, coll, &info, err, errlen);
    if (rc) return rc;
    embd_enrich_cfg *cfg = load_enrich(c, coll, &rc, err, errlen);
    if (rc) return rc;
    doc_work *w = calloc(n ? n : 1, sizeof *w);
    embd_doc *out = calloc(n ? n : 1, sizeof *out);
    if (!w || !out) {
        free(w), free(out);
        embd_enrich_free(cfg);
        return embd_fail(err, errlen, "out of memory"), EMBD_STORE_ERR;
    }
    /* Chunk every changed document, then embed all their chunks in one call (one scheduler job). */
    size_t total = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        sha256_hex(docs[i].text, docs[i].len, w[i].hash);
        w[i].unchanged = embd_store_doc_unchanged(c->store, coll, docs[i].id, w[i].hash);
        if (w[i].unchanged) continue;
        char cerr[256];
        const embd_chunk_opts co = {info.opts.chunk_size, info.opts.overlap, info.opts.code_aware};
        if (embd_chunk_text(docs[i].text, docs[i].len, &co, embd_chunk_count_tokens, (void *)c->tok,
                            &w[i].chunks, &w[i].n, cerr, sizeof cerr))
            rc = (embd_fail(err, errlen, "document '%s': %s", docs[i].id, cerr), EMBD_STORE_INVALID);
        total += w[i].n;
    }
    const size_t T = total ? total : 1;
    const char **texts = calloc(T, sizeof *texts);
    size_t *lens = calloc(T, sizeof *lens);
    float *vecs = malloc(T * (size_t)c->dims * sizeof *vecs);
    char **ctx = calloc(T, sizeof *ctx), **owned = calloc(T, sizeof *owned);
    if (!rc && (!texts || !lens || !vecs || !ctx || !owned)) rc = (embd_fail(err, errlen, "out of memory"), EMBD_STORE_ERR);
    size_t k = 0;
    for (size_t i = 0; i < n && !rc; i++)
        for (size_t j = 0; j < w[i].n; j++, k++) {
            texts[k] = docs[i].text + w[i].chunks[j].start;
            lens[k] = w[i].chunks[j].end - w[i].chunks[j].start;
        }
    if (!rc && cfg && total) enrich_chunks(cfg, docs, w, n, total, o, texts, lens, ctx, owned, st);
    if (!rc && o && o->stop && atomic_load(o->stop)) /* cancelled: store nothing half-enriched */
        rc = (embd_fail(err, errlen, "stopped before the documents were stored"), EMBD_STORE_ERR);
    if (!rc && total && c->embed(c->embed_ud, texts, lens, total, vecs, err, errlen)) rc = EMBD_STORE_ERR;
    /* Unchanged text keeps its chunks and vectors; only the metadata is rewritten. */
    size_t m = 0;
    k = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if (w[i].unchanged) {
            rc = embd_store_set_metadata(c->store, coll, docs[i].id, docs[i].metadata, err, errlen);
            st->unchanged++;
            continue;
        }
        out[m++] = (embd_doc){.id = docs[i].id,
                              .metadata = docs[i].metadata,
                              .text = docs[i].text,
                              .text_len = docs[i].len,
                              .hash = w[i].hash,
                              .chunks = w[i].chunks,
                              .n_chunks = w[i].n,
                              .vectors = vecs + k * (size_t)c->dims,
                              .contexts = cfg ? (const char *const *)ctx + k : NULL};
        k += w[i].n;
        st->chunks += w[i].n;
    }
    if (!rc && m) rc = embd_store_put(c->store, coll, c->model_name, c->dims, out, m, err, errlen);
    if (!rc) st->documents = m;
    for (size_t i = 0; i < n; i++) free(w[i].chunks), free(w[i].title);
    for (size_t i = 0; ctx && owned && i < total; i++) free(ctx[i]), free(owned[i]);
    free(w), free(out), free(texts), free(lens), free(vecs), free(ctx), free(owned);
    embd_enrich_free(cfg);
    return rc;
}

static int by_rerank_desc(const void *a, const void *b) {
    const embd_hit *x = a, *y = b;
    if (x->rerank_score != y->rerank_score) return x->rerank_score < y->rerank_score ? 1 : -1;
    return x->score < y->score ? 1 : x->score > y->score ? -1 : 0;
}

/* Scores the hits with the cross-encoder, sorts by that, keeps top_n. */
static int rerank_hits(const embd_coll_ctx *c, const char *query, size_t len, embd_hit *hits, size_t *n, size_t top_n,
                       char *err, size_t errlen) {
    if (!*n) return 0;
    const char **docs = malloc(*n * sizeof *docs);
    size_t *lens = malloc(*n * sizeof *lens);
    float *sc = malloc(*n * sizeof *sc);
    int rc = docs && lens && sc ? 0 : embd_fail(err, errlen, "out of memory");
    for (size_t i = 0; !rc && i < *n; i++) docs[i] = hits[i].text, lens[i] = strlen(hits[i].text);
    if (!rc) rc = c->rerank(c->rerank_ud, query, len, docs, lens, *n, sc, err, errlen);
    for (size_t i = 0; !rc && i < *n; i++) hits[i].rerank_score = sc[i];
    if (!rc) {
        qsort(hits, *n, sizeof *hits, by_rerank_desc);
        for (size_t i = top_n; i < *n; i++)
            free(hits[i].doc_id), free(hits[i].text), free(hits[i].metadata), free(hits[i].context);
        if (*n > top_n) *n = top_n;
    }
    free(docs), free(lens), free(sc);
    return rc;
}

int embd_coll_search(const embd_coll_ctx *c, const char *coll, const char *query, size_t len, size_t k,
                     const json_t *filter, size_t rerank_top_n, embd_hit **hits, size_t *n, char *err,
                     size_t errlen) {
    if (rerank_top_n && !c->rerank)
        return embd_fail(err, errlen, "no reranker configured (start with --rerank-model R.gguf)"), EMBD_STORE_INVALID;
    *hits = NULL;
    *n = 0;
    embd_coll_info info;
    int rc = embd_store_info(c->store, coll, &info, NULL, err, errlen);
    if (rc) return rc;
    if (strcmp(info.model, c->model_name) || info.dims != c->dims)
        return embd_fail(err, errlen, "collection '%s' was built with model '%s' (%d dims); this is '%s' (%d dims)",
                         coll, info.model, info.dims, c->model_name, c->dims),
               EMBD_STORE_MISMATCH;
    float *q = malloc((size_t)c->dims * sizeof *q);
    if (!q) return embd_fail(err, errlen, "out of memory"), EMBD_STORE_ERR;
    const char *texts[1] = {query};
    size_t lens[1] = {len};
    if (c->embed(c->embed_ud, texts, lens, 1, q, err, errlen)) rc = EMBD_STORE_ERR;
    if (!rc) rc = embd_store_search(c->store, coll, c->model_name, c->dims, q, k, filter, hits, n, err, errlen);
    free(q);
    if (!rc && rerank_top_n && rerank_hits(c, query, len, *hits, n, rerank_top_n, err, errlen)) {
        embd_hits_free(*hits, *n);
        *hits = NULL;
        *n = 0;
        rc = EMBD_STORE_ERR;
    }
    return rc;
}
