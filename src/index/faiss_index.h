/* Vector index: a C interface over FAISS (the only C++ in embd, src/index/faiss_index.cpp).
 * Inner-product search over caller-chosen 64-bit ids; exact (IndexFlatIP) or approximate
 * (IndexHNSWFlat, inner product) for large collections. Every FAISS exception is caught at the
 * boundary and comes back as -1 / NULL with its message in err. Not thread-safe: callers lock. */
#ifndef EMBD_FAISS_INDEX_H
#define EMBD_FAISS_INDEX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct embd_vindex embd_vindex;

typedef enum { EMBD_VINDEX_FLAT = 0, EMBD_VINDEX_HNSW = 1 } embd_vindex_kind;

/* hnsw_m: graph degree for HNSW (0: 32); ignored for flat. */
embd_vindex *embd_vindex_new(int dim, embd_vindex_kind kind, int hnsw_m, char *err, size_t errlen);
void embd_vindex_free(embd_vindex *v);

int embd_vindex_dim(const embd_vindex *v);
embd_vindex_kind embd_vindex_kind_of(const embd_vindex *v);
int64_t embd_vindex_count(const embd_vindex *v);
/* Largest id and the sum of all ids (wrapping): a cheap fingerprint to compare with the store. */
void embd_vindex_id_stats(const embd_vindex *v, int64_t *max_id, uint64_t *id_sum);

int embd_vindex_add(embd_vindex *v, size_t n, const float *x, const int64_t *ids, char *err, size_t errlen);
/* Removes the given ids; *removed gets how many were present. HNSW cannot remove: returns 1
 * (nothing changed) so the caller rebuilds instead. -1 on error. */
int embd_vindex_remove(embd_vindex *v, size_t n, const int64_t *ids, size_t *removed, char *err, size_t errlen);
/* Top k by inner product for one query; slots past the hits get id -1. */
int embd_vindex_search(const embd_vindex *v, const float *q, size_t k, float *scores, int64_t *ids, char *err,
                       size_t errlen);

/* HNSW tuning (flat indexes ignore both). ef_construction: candidate list while inserting, for
 * vectors added afterwards (default 80; saved with the index). ef_search: candidate list per query
 * (0: the default, max(64, 2k); raised to k when below it; not saved: a read index has the
 * default). Returns -1 with a message for a negative value (or ef_construction 0). */
int embd_vindex_set_ef_construction(embd_vindex *v, int ef_construction, char *err, size_t errlen);
int embd_vindex_set_ef_search(embd_vindex *v, int ef_search, char *err, size_t errlen);

/* Durable save: written to path.tmp.<pid>, fsynced, renamed over path. */
int embd_vindex_write(const embd_vindex *v, const char *path, char *err, size_t errlen);
embd_vindex *embd_vindex_read(const char *path, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
