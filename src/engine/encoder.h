/* The BERT encoder as a ggml graph: one forward pass over a batch of sequences. Each sequence
 * attends only to itself (per-sequence attention with a key-padding mask), unlike llama.cpp's
 * micro-batches, which attend across all tokens of the batch under a mask. */
#ifndef EMBD_ENCODER_H
#define EMBD_ENCODER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/model.h"

typedef struct embd_encoder embd_encoder;

embd_encoder *embd_encoder_new(const embd_model *m, int n_threads, char *err, size_t errlen);
void embd_encoder_free(embd_encoder *e);
int embd_encoder_threads(const embd_encoder *e);
void embd_encoder_set_threads(embd_encoder *e, int n); /* between passes; n >= 1 */
const char *embd_encoder_device(const embd_encoder *e); /* "cpu" or "cuda:N" */
bool embd_encoder_on_gpu(const embd_encoder *e);

typedef struct {
    uint64_t splits;        /* passes split in halves because device memory would not hold them */
    uint64_t cpu_fallbacks; /* sequences run on the CPU because the device had no memory for one */
    size_t budget_bytes;    /* device memory the encoder may use for activations (0: no limit) */
    size_t weight_bytes;    /* weights in device memory */
    size_t compute_bytes;   /* the compute buffer as allocated now */
} embd_encoder_stats;

void embd_encoder_get_stats(const embd_encoder *e, embd_encoder_stats *st);
/* Sets the environment for EMBD_GPU_PREC and ggml's CUDA backend (see encoder.c) before cuBLAS
 * and ggml read it; idempotent, never overrides what the user set. */
void embd_gpu_precision_env(void);
/* Predicted bytes of device memory for one pass of n_seq sequences padded to L tokens. */
size_t embd_encoder_estimate(const embd_encoder *e, int n_seq, int L);
const embd_model *embd_encoder_model(const embd_encoder *e);

/* Encodes n_seq sequences (ids[i] of lens[i] tokens, each <= model context) padded to the
 * longest, pools each with `pool` (cls, mean, last, or rank: the classification head on [CLS])
 * and writes n_seq * embd_model_out_dim(pool) floats to out, not normalised (pool none: every
 * token's final state, sum(lens) * n_embd floats). n_first (may be
 * NULL) gives pairs' first-segment lengths: later tokens get token type 1; 0 = one segment.
 * On a GPU, a pass that would not fit in device memory runs split, and a sequence that does not fit
 * alone runs on the CPU (counted in the stats).
 * Returns 0, or -1 with err set (graph allocation or compute failure). */
int embd_encoder_run(embd_encoder *e, const int32_t *const *ids, const int *lens, const int *n_first,
                     int n_seq, embd_pooling pool, float *out, char *err, size_t errlen);

#endif
