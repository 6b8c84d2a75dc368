/* GELU (exact erf form, as BERT defines it) fused with the bias add before it, as one ggml custom
 * op. ggml's own gelu_erf calls scalar erff per element, ~10% of a forward pass; this kernel is a
 * rational erf approximation the compiler vectorises (max abs error 4.5e-7 on erf). */
#ifndef EMBD_GELU_H
#define EMBD_GELU_H

#include <stddef.h>

struct ggml_context;
struct ggml_tensor;

/* gelu_erf(x + b) for x [n, rows] (f32, contiguous) and b [n]; in place on x. */
struct ggml_tensor *embd_bias_gelu(struct ggml_context *c, struct ggml_tensor *x, struct ggml_tensor *b);

/* The kernel alone, for tests: y[i] = gelu_erf(x[i] + b[i]), b may be NULL. */
void embd_bias_gelu_row(float *y, const float *x, const float *b, size_t n);

#endif
