/* The fused bias + GELU kernel (src/engine/gelu.c) against libm's double-precision erf, and the
 * encoder with it against the encoder with ggml's own add + gelu_erf (EMBD_GELU=ggml). */
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

static void test_encoder_matches_ggml_gelu(void **state) {
    (void)state;
    const char *texts[] = {"hello world", "", "def mean(a):\n    return sum(a) / len(a)\n",
                           "The quick brown fox jumps over the lazy dog."};
    const size_t n = sizeof texts / sizeof texts[0];
    size_t lens[4];
    for (size_t i = 0; i < n; i++) lens[i] = strlen(texts[i]);
    float *a = malloc(n * H * sizeof *a), *g = malloc(n * H * sizeof *g);
    embd_item res[4];
    char err[256];
    embd_opts o;
    embd_opts_default(&o);
    o.pooling = EMBD_POOL_MEAN;
    assert_int_equal(embd_embed_texts(enc, texts, lens, n, &o, a, res, err, sizeof err), 0);
    setenv("EMBD_GELU", "ggml", 1);
    embd_encoder *ref = embd_encoder_new(model, 2, err, sizeof err);
    unsetenv("EMBD_GELU");
    assert_non_null(ref);
    assert_int_equal(embd_embed_texts(ref, texts, lens, n, &o, g, res, err, sizeof err), 0);
    for (size_t i = 0; i < n; i++) {
        double d = 0, na = 0, nb = 0;
        for (int k = 0; k < H; k++) d += (double)a[i * H + k] * g[i * H + k], na += (double)a[i * H + k] * a[i * H + k],
                                    nb += (double)g[i * H + k] * g[i * H + k];
        assert_true(1.0 - d / sqrt(na * nb) < 1e-6);
    }
    embd_encoder_free(ref);
    free(a), free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernel_accuracy),
        cmocka_unit_test(test_encoder_matches_ggml_gelu),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
