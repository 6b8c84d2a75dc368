/* Weight matrices converted to bf16 once at load, for CPUs with AVX512-BF16: ggml multiplies bf16
 * through its bf16 dot-product GEMM at about twice the rate of q8_0 x q8_0 and 2.5x that of f16
 * (CLIP ViT-B/32, one core). Used by the BERT model loader and the CLIP loader alike. */
#ifndef EMBD_BF16_H
#define EMBD_BF16_H

#include <stdbool.h>
#include <stddef.h>

#include "ggml.h"

struct ggml_context;
struct ggml_backend_buffer;

/* Whether matrices of type t should become bf16: q8_0 on AVX512-BF16 CPUs (weights and activations
 * then carry 8-bit mantissas, as q8_0 already does); EMBD_WEIGHTS=native keeps every type,
 * EMBD_WEIGHTS=bf16 converts any convertible type. */
bool embd_want_bf16(enum ggml_type t);

/* Replaces each *w[i] (a 2-D tensor in host memory, in a type ggml converts to float) by a bf16 copy
 * in one new CPU buffer (*ctx, *buf: the caller frees them), and drops the originals' file pages
 * from the resident set (they are mmapped). Returns 0, or -1 with err. */
int embd_weights_to_bf16(struct ggml_tensor **const *w, int n, struct ggml_context **ctx,
                         struct ggml_backend_buffer **buf, char *err, size_t errlen);

#endif
