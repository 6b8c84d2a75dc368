/* A second, cross-encoder model for reranking collection hits (`--rerank-model`). It runs on the
 * caller's thread under a mutex, outside the scheduler, which belongs to the embedding model:
 * one search reranks a few dozen short chunks. */
#ifndef EMBD_RERANKER_H
#define EMBD_RERANKER_H

#include <stddef.h>

typedef struct embd_reranker embd_reranker;

/* Refuses a model that is not a cross-encoder (pooling rank). */
embd_reranker *embd_reranker_load(const char *path, int threads, char *err, size_t errlen);
void embd_reranker_free(embd_reranker *r);
/* File name without .gguf, as `embd serve` names models. */
const char *embd_reranker_name(const embd_reranker *r);
/* scores[i] = sigmoid of the relevance logit of (query, docs[i]); documents are truncated to fit.
 * ud: the embd_reranker. Returns 0, or -1 with err. */
int embd_reranker_score(void *ud, const char *query, size_t qlen, const char *const *docs, const size_t *lens,
                        size_t n, float *scores, char *err, size_t errlen);

#endif
