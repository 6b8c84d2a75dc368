#include "collections/ingest.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
} doc_work;

int embd_coll_ingest(const embd_coll_ctx *c, const char *coll, const embd_doc_input *docs, size_t n,
                     embd_ingest_stats *st, char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    embd_coll_info info;
    int rc = embd_store_info(c->store, coll, &info, NULL, err, errlen);
    if (rc) return rc;
    if (strcmp(info.model, c->model_name) || info.dims != c->dims)
        return embd_fail(err, errlen, "collection '%s' was built with model '%s' (%d dims); this is '%s' (%d dims)",
                         coll, info.model, info.dims, c->model_name, c->dims),
               EMBD_STORE_MISMATCH;
    if (info.opts.chunk_size > embd_coll_max_chunk(c))
        return embd_fail(err, errlen, "chunk_size %zu exceeds the model's %zu tokens", info.opts.chunk_size,
                         embd_coll_max_chunk(c)),
               EMBD_STORE_INVALID;
    doc_work *w = calloc(n ? n : 1, sizeof *w);
    embd_doc *out = calloc(n ? n : 1, sizeof *out);
    if (!w || !out) {
        free(w), free(out);
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
    const char **texts = calloc(total ? total : 1, sizeof *texts);
    size_t *lens = calloc(total ? total : 1, sizeof *lens);
    float *vecs = malloc((total ? total : 1) * (size_t)c->dims * sizeof *vecs);
    if (!rc && (!texts || !lens || !vecs)) rc = (embd_fail(err, errlen, "out of memory"), EMBD_STORE_ERR);
    size_t k = 0;
    for (size_t i = 0; i < n && !rc; i++)
        for (size_t j = 0; j < w[i].n; j++, k++) {
            texts[k] = docs[i].text + w[i].chunks[j].start;
            lens[k] = w[i].chunks[j].end - w[i].chunks[j].start;
        }
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
                              .vectors = vecs + k * (size_t)c->dims};
        k += w[i].n;
        st->chunks += w[i].n;
    }
    if (!rc && m) rc = embd_store_put(c->store, coll, c->model_name, c->dims, out, m, err, errlen);
    if (!rc) st->documents = m;
    for (size_t i = 0; i < n; i++) free(w[i].chunks);
    free(w), free(out), free(texts), free(lens), free(vecs);
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
        for (size_t i = top_n; i < *n; i++) free(hits[i].doc_id), free(hits[i].text), free(hits[i].metadata);
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
