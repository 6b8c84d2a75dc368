/* Cross-encoder reranking: (query, document) pairs in the model's pair template, scored by the
 * classification head. The query is tokenized once per call; documents are cut first when a pair
 * is longer than the context. */
#ifndef EMBD_RERANK_H
#define EMBD_RERANK_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/embed.h"

/* Token budget of a query: its own length, but at most half the context when truncating, so a
 * long query cannot crowd out every document. */
size_t embd_pair_query_budget(const embd_model *m, int ctx, bool truncate);
/* Budget for a document's encoding ([CLS] d [SEP]) next to a query of nq tokens (its specials
 * included), or 0 when no document token fits. */
size_t embd_pair_doc_budget(const embd_model *m, int ctx, size_t nq);
/* Joins an encoded query ([CLS] q [SEP]) and document ([CLS] d [SEP]) into the pair template:
 * BERT `[CLS] q [SEP] d [SEP]`, RoBERTa `<s> q </s></s> d </s>`. Returns the first segment's
 * length (token type 0), or -1 when out of memory. */
int embd_pair_join(const embd_model *m, const embd_tokens *q, const embd_tokens *d, embd_tokens *out);

/* Sigmoid of a logit: the relevance score clients get unless they ask for raw scores. */
float embd_rerank_sigmoid(float logit);

/* order[0..n) = 0..n-1 sorted by score, best first; ties keep input order. */
void embd_rerank_order(const float *scores, size_t n, size_t *order);

/* Scores n documents against a query: scores[i] = the head's first logit for pair i (raw).
 * res[i] as in embd_embed_texts; a bad query fails every item. o->truncate false makes
 * over-long pairs fail with EMBD_ITEM_TOO_LONG. Returns 0, or -1 with err on bad opts or a
 * model that is not a cross-encoder. */
int embd_rerank_texts(embd_encoder *enc, const char *query, size_t qlen, const char *const *docs, const size_t *lens,
                      size_t n, const embd_opts *o, float *scores, embd_item *res, char *err, size_t errlen);

#endif
