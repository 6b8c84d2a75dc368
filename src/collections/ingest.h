/* The collection pipeline shared by the server and the CLI: documents in -> chunks (by the
 * model's tokens) -> vectors (through an embedder the caller supplies: the scheduler in the
 * server, the encoder directly in the CLI) -> store. Queries go the same way to a search. */
#ifndef EMBD_INGEST_H
#define EMBD_INGEST_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>

#include "collections/store.h"
#include "tokenizer/tokenizer.h"

/* Embeds n texts into out (n x dims, L2-normalised). Returns 0, or -1 with err. */
typedef int (*embd_embed_fn)(void *ud, const char *const *texts, const size_t *lens, size_t n, float *out, char *err,
                             size_t errlen);

typedef struct {
    embd_store *store;
    const embd_tokenizer *tok; /* for chunking */
    const char *model_name;
    int dims;
    int n_ctx;
    embd_embed_fn embed;
    void *embed_ud;
    /* optional cross-encoder: scores[i] for (query, docs[i]); NULL when none is configured */
    int (*rerank)(void *ud, const char *query, size_t qlen, const char *const *docs, const size_t *lens, size_t n,
                  float *scores, char *err, size_t errlen);
    void *rerank_ud;
} embd_coll_ctx;

typedef struct {
    const char *id;
    const char *text;
    size_t len;
    const char *metadata; /* JSON object text or NULL */
} embd_doc_input;

typedef struct {
    size_t documents, chunks, unchanged; /* unchanged: same content hash, only metadata rewritten */
    size_t enriched, degraded;           /* chunks with a context / embedded plain because enrichment failed */
    char enrich_error[256];              /* why the last enrichment call failed ("" when none did) */
} embd_ingest_stats;

/* How one ingest call runs the enrichment step of a collection that has one (enrich.h). */
typedef struct {
    double enrich_deadline;  /* embd_now() after which no enrichment call starts (0: none); bounds
                                a synchronous request: chunks left then are embedded plain */
    const atomic_int *stop;  /* set: stop enriching (shutdown); may be NULL */
    void (*on_enriched)(void *ud, size_t done); /* chunks through the enrichment step so far */
    void *ud;
} embd_ingest_opts;

/* Returns EMBD_STORE_* (0 on success) with err. o may be NULL (no deadline). */
int embd_coll_ingest_ex(const embd_coll_ctx *c, const char *coll, const embd_doc_input *docs, size_t n,
                        const embd_ingest_opts *o, embd_ingest_stats *st, char *err, size_t errlen);
int embd_coll_ingest(const embd_coll_ctx *c, const char *coll, const embd_doc_input *docs, size_t n,
                     embd_ingest_stats *st, char *err, size_t errlen);
/* The number of chunks docs[i] will make (0 when its text is unchanged) into chunks[i]: the
 * total of a job's progress. Chunking failures count 0 (the ingest reports them). */
int embd_coll_plan(const embd_coll_ctx *c, const char *coll, const embd_doc_input *docs, size_t n, size_t *chunks,
                   char *err, size_t errlen);
/* Top k chunks by vector; with rerank_top_n > 0 (needs c->rerank) those k candidates are scored by
 * the cross-encoder and the best rerank_top_n of them come back in that order. */
int embd_coll_search(const embd_coll_ctx *c, const char *coll, const char *query, size_t len, size_t k,
                     const json_t *filter, size_t rerank_top_n, embd_hit **hits, size_t *n, char *err,
                     size_t errlen);

/* The largest chunk_size the model allows ([CLS] and [SEP] take two of its tokens). */
size_t embd_coll_max_chunk(const embd_coll_ctx *c);

#endif
