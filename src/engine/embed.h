/* Many texts in, one vector each out: tokenize, sort by length, pack into token-budget batches,
 * run the encoder, pool, normalise. One bad item never fails the others. */
#ifndef EMBD_EMBED_H
#define EMBD_EMBED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/encoder.h"

typedef struct {
    embd_pooling pooling; /* EMBD_POOL_UNSPECIFIED: the model's */
    bool normalize;       /* L2 */
    bool truncate;        /* false: over-long items fail with EMBD_ITEM_TOO_LONG */
    int max_tokens;       /* 0 or > context: the model's context */
    const char *prompt;   /* text prepended to every input (sentence-transformers prompts), or NULL */
    size_t batch_tokens;  /* padded tokens per forward pass (memory and speed knob) */
    size_t attn_bytes;    /* cap on one pass's attention scores (L*L*heads*seqs floats): long
                             sequences get fewer per pass, so peak memory does not grow with L^2 */
    /* called after each forward pass with the items and tokens finished so far */
    void (*progress)(void *ud, size_t items_done, size_t tokens_done);
    void *progress_ud;
} embd_opts;

void embd_opts_default(embd_opts *o);
/* Scales v to unit length (a zero vector stays zero). */
void embd_l2_normalize(float *v, int n);

enum {
    EMBD_ITEM_OK = 0,
    EMBD_ITEM_BAD_UTF8 = 1,
    EMBD_ITEM_TOO_LONG = 2,
    EMBD_ITEM_FAILED = 3, /* inference error for the batch that held it */
};

typedef struct {
    int status;        /* EMBD_ITEM_* */
    int n_tokens;      /* tokens fed to the model, [CLS] and [SEP] included */
    int n_tokens_full; /* tokens before truncation */
    bool truncated;
    char message[128]; /* for status != OK */
} embd_item;

/* Embeds n texts into out (n * n_embd floats; rows of failed items are zero). res[i] describes
 * item i. Returns 0 when the call ran (items may still have failed), -1 with err on bad opts. */
int embd_embed_texts(embd_encoder *enc, const char *const *texts, const size_t *lens, size_t n,
                     const embd_opts *o, float *out, embd_item *res, char *err, size_t errlen);

/* Same for already tokenized input (ids include [CLS]/[SEP]). */
int embd_embed_tokens(embd_encoder *enc, const int32_t *const *ids, const size_t *n_ids, size_t n,
                      const embd_opts *o, float *out, embd_item *res, char *err, size_t errlen);

/* Token embeddings (pooling none) of one text: *states gets res->n_tokens * n_embd floats
 * (malloc'd, not normalised; NULL when the item failed, res says why). Returns 0; err is kept for
 * errors that concern the call rather than the item. */
int embd_embed_token_states(embd_encoder *enc, const char *text, size_t len, const embd_opts *o, float **states,
                            embd_item *res, char *err, size_t errlen);

/* Pairs for a cross-encoder (rank pooling): n_first[i] = tokens of item i's first segment
 * ([CLS] A [SEP]), 0 for a single text; out gets embd_model_out_dim floats per item. Truncation
 * keeps the first segment and cuts the second from the right. n_first may be NULL. */
int embd_embed_token_pairs(embd_encoder *enc, const int32_t *const *ids, const size_t *n_ids, const int *n_first,
                           size_t n, const embd_opts *o, float *out, embd_item *res, char *err, size_t errlen);

#endif
