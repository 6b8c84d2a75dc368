/* embd's own compute kernels against ggml's ops: the fused bias + GELU (src/engine/gelu.c) against
 * libm's double-precision erf and against ggml's add + gelu_erf (EMBD_GELU=ggml); the attention
 * kernel (src/engine/attention.c) against ggml's flash attention and two-GEMM attention
 * (EMBD_ATTN=flash|matmul), for every pooling and for batches of mixed lengths. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/embed.h"
#include "engine/gelu.h"

#include "test_model.h"

static double gelu_ref(double v) { return 0.5 * v * (1.0 + erf(v / sqrt(2.0))); }

static void test_kernel_accuracy(void **state) {
    (void)state;
    enum { N = 200001 };
    float *x = malloc(N * sizeof *x), *b = malloc(N * sizeof *b), *y = malloc(N * sizeof *y);
    assert_non_null(x), assert_non_null(b), assert_non_null(y);
    for (int i = 0; i < N; i++) {
        x[i] = -12.0f + 24.0f * (float)i / (N - 1); /* past the [-4, 4] clamp on both sides */
        b[i] = (i % 7 - 3) * 0.25f;
    }
    embd_bias_gelu_row(y, x, NULL, N);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        double err = fabs(y[i] - gelu_ref(x[i])) / (1.0 + fabs(x[i]));
        if (err > worst) worst = err;
    }
    printf("max error / (1 + |x|): %.3g\n", worst);
    assert_true(worst < 1e-6);
    embd_bias_gelu_row(y, x, b, N); /* the bias is added before the activation */
    worst = 0;
    for (int i = 0; i < N; i++) {
        double v = (double)(x[i] + b[i]), err = fabs(y[i] - gelu_ref(v)) / (1.0 + fabs(v));
        if (err > worst) worst = err;
    }
    assert_true(worst < 1e-6);
    /* exact at 0, odd-symmetric erf, saturation: gelu(x) -> x for large x, -> 0 for very negative x */
    float z = 0, big = 30, neg = -30, out;
    embd_bias_gelu_row(&out, &z, NULL, 1), assert_true(out == 0.0f);
    embd_bias_gelu_row(&out, &big, NULL, 1), assert_true(fabsf(out - 30.0f) < 1e-5f);
    embd_bias_gelu_row(&out, &neg, NULL, 1), assert_true(fabsf(out) < 1e-5f);
    free(x), free(b), free(y);
}

static const char *TEXTS[] = {"hello world", "", "def mean(a):\n    return sum(a) / len(a)\n",
                               "The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the lazy dog.",
                               "x"};
#define NT (sizeof TEXTS / sizeof TEXTS[0])

/* Centred cosine (the mean vector of the set removed): random-weight vectors share one direction
 * that would hide a wrong text-dependent part. Returns the smallest over the set. */
static double min_centred_cosine(const float *a, const float *b, size_t n) {
    double worst = 1;
    for (size_t i = 0; i < n; i++) {
        double d = 0, na = 0, nb = 0;
        for (int k = 0; k < H; k++) {
            double mu = 0;
            for (size_t j = 0; j < n; j++) mu += b[j * H + k] / (double)n;
            double x = a[i * H + k] - mu, y = b[i * H + k] - mu;
            d += x * y, na += x * x, nb += y * y;
        }
        double c = d / sqrt(na * nb);
        if (c < worst) worst = c;
    }
    return worst;
}

/* Embeds TEXTS with `enc` and with an encoder made under env=value; both in one batch. */
static double compare_with(const char *env, const char *value, embd_pooling pool) {
    size_t lens[NT];
    for (size_t i = 0; i < NT; i++) lens[i] = strlen(TEXTS[i]);
    float *a = malloc(NT * H * sizeof *a), *g = malloc(NT * H * sizeof *g);
    embd_item res[NT];
    char err[256];
    embd_opts o;
    embd_opts_default(&o);
    o.pooling = pool;
    o.normalize = false;
    assert_int_equal(embd_embed_texts(enc, TEXTS, lens, NT, &o, a, res, err, sizeof err), 0);
    setenv(env, value, 1);
    embd_encoder *ref = embd_encoder_new(model, 2, err, sizeof err);
    unsetenv(env);
    assert_non_null(ref);
    assert_int_equal(embd_embed_texts(ref, TEXTS, lens, NT, &o, g, res, err, sizeof err), 0);
    double c = min_centred_cosine(a, g, NT);
    embd_encoder_free(ref);
    free(a), free(g);
    return c;
}

static void test_encoder_matches_ggml_gelu(void **state) {
    (void)state;
    double c = compare_with("EMBD_GELU", "ggml", EMBD_POOL_MEAN);
    printf("fused GELU vs ggml: min centred cosine %.9f\n", c);
    assert_true(c > 1 - 1e-5);
}

static void test_attention_matches_ggml(void **state) {
    (void)state;
    const embd_pooling pools[] = {EMBD_POOL_CLS, EMBD_POOL_MEAN, EMBD_POOL_LAST};
    for (size_t p = 0; p < 3; p++) {
        for (int m = 0; m < 2; m++) {
            double c = compare_with("EMBD_ATTN", m ? "matmul" : "flash", pools[p]);
            printf("attention vs %s, %s pooling: min centred cosine %.9f\n", m ? "matmul" : "flash",
                   embd_pooling_name(pools[p]), c);
            assert_true(c > 1 - 1e-5);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernel_accuracy),
        cmocka_unit_test(test_encoder_matches_ggml_gelu),
        cmocka_unit_test(test_attention_matches_ggml),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
