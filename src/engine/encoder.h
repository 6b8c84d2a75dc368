/* The BERT encoder as a ggml graph: one forward pass over a batch of sequences. Each sequence
 * attends only to itself (per-sequence attention with a key-padding mask), unlike llama.cpp's
 * micro-batches, which attend across all tokens of the batch under a mask. */
#ifndef EMBD_ENCODER_H
#define EMBD_ENCODER_H

#include <stddef.h>
#include <stdint.h>

#include "engine/model.h"

typedef struct embd_encoder embd_encoder;

embd_encoder *embd_encoder_new(const embd_model *m, int n_threads, char *err, size_t errlen);
void embd_encoder_free(embd_encoder *e);
int embd_encoder_threads(const embd_encoder *e);
const embd_model *embd_encoder_model(const embd_encoder *e);

/* Encodes n_seq sequences (ids[i] of lens[i] tokens, each <= model context) padded to the
 * longest, pools each with `pool` (cls, mean, last, or rank: the classification head on [CLS])
 * and writes n_seq * embd_model_out_dim(pool) floats to out, not normalised (pool none: every
 * token's final state, sum(lens) * n_embd floats). n_first (may be
 * NULL) gives pairs' first-segment lengths: later tokens get token type 1; 0 = one segment.
 * Returns 0, or -1 with err set (graph allocation or compute failure). */
int embd_encoder_run(embd_encoder *e, const int32_t *const *ids, const int *lens, const int *n_first,
                     int n_seq, embd_pooling pool, float *out, char *err, size_t errlen);

#endif
