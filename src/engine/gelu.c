#include "engine/gelu.h"

#include "ggml.h"

/* erf(x) = x P(x^2) / Q(x^2) on [-4, 4] (outside, erf is +-1 in single precision): Eigen's and
 * XLA's single-precision erf. Branch-free, so the loop below vectorises. */
static inline float erf_rational(float x) {
    x = x < -4.0f ? -4.0f : (x > 4.0f ? 4.0f : x);
    const float x2 = x * x;
    float p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 + -2.10102402082508e-06f;
    p = p * x2 + -5.69250639462346e-05f;
    p = p * x2 + -7.34990630326855e-04f;
    p = p * x2 + -2.95459980854025e-03f;
    p = p * x2 + -1.60960333262415e-02f;
    float q = -1.45660718464996e-05f;
    q = q * x2 + -2.13374055278905e-04f;
    q = q * x2 + -1.68282697438203e-03f;
    q = q * x2 + -7.37332916720468e-03f;
    q = q * x2 + -1.42647390514189e-02f;
    return x * p / q;
}

/* One binary, the widest vectors the CPU has (the library is built for the baseline ISA). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__)
#define EMBD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define EMBD_CLONES
#endif

EMBD_CLONES void embd_bias_gelu_row(float *y, const float *x, const float *b, size_t n) {
    const float r2 = 0.70710678118654752f;
    if (b) {
        for (size_t i = 0; i < n; i++) {
            const float v = x[i] + b[i];
            y[i] = 0.5f * v * (1.0f + erf_rational(v * r2));
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            const float v = x[i];
            y[i] = 0.5f * v * (1.0f + erf_rational(v * r2));
        }
    }
}

static void bias_gelu_op(struct ggml_tensor *dst, const struct ggml_tensor *x, const struct ggml_tensor *b, int ith,
                         int nth, void *ud) {
    (void)ud;
    const int64_t n = x->ne[0], rows = ggml_nrows(x);
    const int64_t per = (rows + nth - 1) / nth, r0 = per * ith, r1 = r0 + per < rows ? r0 + per : rows;
    for (int64_t r = r0; r < r1; r++)
        embd_bias_gelu_row((float *)((char *)dst->data + r * dst->nb[1]), (const float *)((const char *)x->data + r * x->nb[1]),
                           (const float *)b->data, (size_t)n);
}

struct ggml_tensor *embd_bias_gelu(struct ggml_context *c, struct ggml_tensor *x, struct ggml_tensor *b) {
    return ggml_map_custom2_inplace(c, x, b, bias_gelu_op, GGML_N_TASKS_MAX, NULL);
}
