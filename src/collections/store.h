/* Collections on disk: SQLite (WAL) is the source of truth for collections, documents, chunks and
 * their vectors (BLOBs); each collection's FAISS index (DIR/c<id>.faiss) is a derived, durable
 * cache written after every committed change by temp file + rename. When a collection's index is
 * first used it is checked against SQLite (count, max id, id sum) and rebuilt from the stored
 * vectors when they disagree, so an ingest interrupted at any point leaves a consistent
 * collection. Chunk ids are never reused (AUTOINCREMENT), which makes that check meaningful.
 * All calls are serialised by one mutex; callers embed before calling put. */
#ifndef EMBD_STORE_H
#define EMBD_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "collections/chunker.h"
#include "index/faiss_index.h"

typedef struct embd_store embd_store;

enum {
    EMBD_STORE_OK = 0,
    EMBD_STORE_ERR = -1,      /* I/O, SQLite or FAISS failure (500) */
    EMBD_STORE_NOTFOUND = -2, /* no such collection or document (404) */
    EMBD_STORE_EXISTS = -3,   /* collection name taken (409) */
    EMBD_STORE_INVALID = -4,  /* bad name, options or input (422) */
    EMBD_STORE_MISMATCH = -5, /* the collection belongs to another model (409) */
};

typedef struct {
    size_t chunk_size, overlap;
    bool code_aware;
    embd_vindex_kind index;
    const char *enrich; /* create only: the enrichment configuration (JSON, see enrich.h) or NULL;
                           NULL in what info/list return (read it with embd_store_enrich_get) */
} embd_coll_opts;

typedef struct {
    int64_t id;
    char name[72];
    char model[256];
    int dims;
    embd_coll_opts opts;
    int64_t n_documents, n_chunks;
    int64_t n_vectors; /* in the loaded index, -1 when it is not loaded */
    double created;    /* unix seconds */
} embd_coll_info;

/* Names: 1..64 of [A-Za-z0-9_.-], not starting with '.' or '-'. */
bool embd_store_valid_name(const char *name);

embd_store *embd_store_open(const char *dir, char *err, size_t errlen);
void embd_store_close(embd_store *s);

int embd_store_create(embd_store *s, const char *name, const char *model, int dims, const embd_coll_opts *o,
                      char *err, size_t errlen);
/* Loads and verifies the index as a side effect (n_vectors; *rebuilt if given). */
int embd_store_info(embd_store *s, const char *name, embd_coll_info *out, bool *rebuilt, char *err, size_t errlen);
int embd_store_list(embd_store *s, embd_coll_info **out, size_t *n, char *err, size_t errlen);
int embd_store_drop(embd_store *s, const char *name, char *err, size_t errlen);
/* The collection's enrichment configuration (malloc'd JSON text), *json NULL when it has none. */
int embd_store_enrich_get(embd_store *s, const char *name, char **json, char *err, size_t errlen);

typedef struct {
    const char *id;
    const char *metadata; /* JSON object text, NULL for {} */
    const char *text;
    size_t text_len;
    const char *hash;     /* hex SHA-256 of the text */
    const embd_chunk *chunks;
    size_t n_chunks;
    const float *vectors; /* n_chunks x dims, L2-normalised */
    const char *const *contexts; /* n_chunks enrichment texts (entries NULL: none), or NULL */
} embd_doc;

/* Whether document id exists with this content hash (so re-embedding can be skipped). */
bool embd_store_doc_unchanged(embd_store *s, const char *coll, const char *id, const char *hash);
int embd_store_set_metadata(embd_store *s, const char *coll, const char *id, const char *metadata, char *err,
                            size_t errlen);
/* Inserts or replaces documents (a re-ingested id loses its old chunks) in one transaction, then
 * updates and saves the index. Ids must be unique within the call. model: the caller's model,
 * refused (MISMATCH) unless it is the collection's. */
int embd_store_put(embd_store *s, const char *coll, const char *model, int dims, const embd_doc *docs, size_t n,
                   char *err, size_t errlen);
int embd_store_delete_doc(embd_store *s, const char *coll, const char *doc_id, char *err, size_t errlen);

typedef struct {
    int64_t chunk_id;
    float score;        /* inner product of unit vectors: cosine */
    float rerank_score; /* cross-encoder relevance (sigmoid), when reranked */
    char *doc_id, *text, *metadata;
    char *context;      /* the chunk's enrichment context, NULL when it has none */
    int64_t seq;
    size_t start, end;
} embd_hit;

/* Top k chunks for a unit query vector among those whose document matches filter (JSON, see
 * filter.h; validated by the caller with embd_filter_compile). */
int embd_store_search(embd_store *s, const char *coll, const char *model, int dims, const float *q, size_t k,
                      const json_t *filter, embd_hit **hits, size_t *n, char *err, size_t errlen);
void embd_hits_free(embd_hit *h, size_t n);

#endif
