/* Devices and the GPU memory governor: device specs, and what the encoder does when device
 * memory runs out. The out-of-memory paths are driven by an injected allocation failure
 * (EMBD_FAULT_ALLOC_BYTES: passes predicted to need more fail as an allocation would), so they
 * run on any machine: on a CUDA build with a GPU they exercise the GPU encoder and its CPU twin,
 * elsewhere the CPU encoder and the same split/fallback code. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/device.h"

#include "test_model.h"

enum { NS = 6 };
static int32_t ids_buf[NS][200];
static const int32_t *IDS[NS];
static int LENS[NS] = {7, 120, 33, 2, 64, 150};

static void make_ids(void) {
    uint32_t x = 12345;
    for (int b = 0; b < NS; b++) {
        ids_buf[b][0] = 101;
        for (int t = 1; t < LENS[b] - 1; t++) ids_buf[b][t] = 1000 + (int32_t)((x = x * 1103515245u + 12345u) >> 16) % 20000;
        ids_buf[b][LENS[b] - 1] = 102;
        IDS[b] = ids_buf[b];
    }
}

static double max_dist(const float *a, const float *b, int rows, int n) {
    double worst = 0;
    for (int r = 0; r < rows; r++) {
        double d = 0, na = 0, nb = 0;
        for (int i = 0; i < n; i++) {
            double x = a[r * n + i], y = b[r * n + i];
            d += x * y, na += x * x, nb += y * y;
        }
        double dist = 1.0 - d / sqrt(na * nb);
        if (!(dist <= worst)) worst = dist; /* NaN propagates as a failure */
    }
    return worst;
}

static void test_resolve(void **state) {
    (void)state;
    embd_device d;
    char err[256] = "";
    assert_int_equal(embd_device_resolve("cpu", &d, err, sizeof err), 0);
    assert_string_equal(d.name, "cpu");
    assert_false(embd_device_is_gpu(&d));
    assert_int_equal(embd_device_resolve("tpu", &d, err, sizeof err), -1);
    assert_non_null(strstr(err, "expected cpu, auto, cuda or cuda:N"));
    assert_int_equal(embd_device_resolve("cuda:x", &d, err, sizeof err), -1);
    assert_int_equal(embd_device_resolve("cuda:-1", &d, err, sizeof err), -1);
    const int n = embd_device_gpu_count();
    assert_int_equal(embd_device_resolve("auto", &d, err, sizeof err), 0);
    assert_string_equal(d.name, n ? "cuda:0" : "cpu");
    char spec[32];
    snprintf(spec, sizeof spec, "cuda:%d", n); /* one past the last GPU */
    assert_int_equal(embd_device_resolve(spec, &d, err, sizeof err), -1);
    assert_non_null(strstr(err, n ? "visible" : "no GPU"));
    setenv("EMBD_DEVICE", "cpu", 1); /* NULL spec: the environment decides */
    assert_int_equal(embd_device_resolve(NULL, &d, err, sizeof err), 0);
    assert_string_equal(d.name, "cpu");
    setenv("EMBD_DEVICE", "nonsense", 1);
    assert_int_equal(embd_device_resolve(NULL, &d, err, sizeof err), -1);
    unsetenv("EMBD_DEVICE");
    embd_model_params mp = {.device = "nonsense"};
    assert_null(embd_model_load("/nonexistent.gguf", &mp, err, sizeof err));
}

/* Runs the six sequences through a fresh encoder made while EMBD_FAULT_ALLOC_BYTES=fault (0: no
 * injection); returns its stats. */
static void run_with_fault(size_t fault, embd_pooling pool, float *out, embd_encoder_stats *st) {
    char v[32], err[256];
    snprintf(v, sizeof v, "%zu", fault);
    if (fault) setenv("EMBD_FAULT_ALLOC_BYTES", v, 1);
    embd_encoder *e = embd_encoder_new(model, 2, err, sizeof err);
    unsetenv("EMBD_FAULT_ALLOC_BYTES");
    assert_non_null(e);
    assert_int_equal(embd_encoder_run(e, IDS, LENS, NULL, NS, pool, out, err, sizeof err), 0);
    embd_encoder_get_stats(e, st);
    embd_encoder_free(e);
}

/* A pass too big for the device's memory is split until it fits, with the same vectors. */
static void test_oom_split(void **state) {
    (void)state;
    make_ids();
    float want[NS * 384], got[NS * 384];
    embd_encoder_stats st;
    run_with_fault(0, EMBD_POOL_CLS, want, &st);
    assert_int_equal(st.splits, 0);
    assert_int_equal(st.cpu_fallbacks, 0);
    /* room for any one sequence (the longest is 150 tokens), not for the six together */
    size_t one = embd_encoder_estimate(enc, 1, 150), all = embd_encoder_estimate(enc, NS, 150);
    assert_true(one < all);
    memset(got, 0xff, sizeof got); /* NaN: every row must be written */
    run_with_fault(one, EMBD_POOL_CLS, got, &st);
    assert_true(st.splits >= 1);
    assert_int_equal(st.cpu_fallbacks, 0);
    assert_true(max_dist(got, want, NS, H) < 1e-5);
}

/* A sequence that does not fit alone runs on the CPU: every one here, for cls and mean pooling
 * and for token states (pooling none, whose rows are per token, not per sequence). */
static void test_oom_cpu_fallback(void **state) {
    (void)state;
    make_ids();
    int total = 0;
    for (int b = 0; b < NS; b++) total += LENS[b];
    float *want = malloc((size_t)total * 384 * sizeof *want), *got = malloc((size_t)total * 384 * sizeof *got);
    assert_non_null(want);
    assert_non_null(got);
    const embd_pooling pools[] = {EMBD_POOL_CLS, EMBD_POOL_MEAN, EMBD_POOL_NONE};
    for (size_t k = 0; k < 3; k++) {
        embd_encoder_stats st;
        int rows = pools[k] == EMBD_POOL_NONE ? total : NS;
        run_with_fault(0, pools[k], want, &st);
        memset(got, 0xff, (size_t)rows * 384 * sizeof *got);
        run_with_fault(1, pools[k], got, &st); /* nothing fits */
        assert_int_equal(st.cpu_fallbacks, NS);
        assert_int_equal(st.splits, NS - 1); /* halving six sequences down to ones: five splits */
        double d = max_dist(got, want, rows, H);
        if (d >= 1e-4) print_error("pooling %s: cosine distance %g\n", embd_pooling_name(pools[k]), d);
        assert_true(d < 1e-4); /* a GPU and the CPU round differently */
    }
    free(want);
    free(got);
}

/* The prediction holds what the graph allocator really takes (matmul attention: the GPU's graph). */
static void test_estimate_covers_allocation(void **state) {
    (void)state;
    make_ids();
    setenv("EMBD_ATTN", "matmul", 1);
    const int shapes[][2] = {{1, 7}, {4, 64}, {6, 150}, {2, 150}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        char err[256];
        embd_encoder *e = embd_encoder_new(model, 2, err, sizeof err);
        assert_non_null(e);
        int lens[NS];
        for (int b = 0; b < shapes[k][0]; b++) lens[b] = b == 0 ? shapes[k][1] : LENS[b] < shapes[k][1] ? LENS[b] : 2;
        float out[NS * 384];
        assert_int_equal(embd_encoder_run(e, IDS, lens, NULL, shapes[k][0], EMBD_POOL_MEAN, out, err, sizeof err), 0);
        embd_encoder_stats st;
        embd_encoder_get_stats(e, &st);
        size_t est = embd_encoder_estimate(e, shapes[k][0], shapes[k][1]);
        if (est < st.compute_bytes || est > 4 * st.compute_bytes + ((size_t)80 << 20))
            print_error("%d x %d: estimate %zu, allocated %zu\n", shapes[k][0], shapes[k][1], est, st.compute_bytes);
        assert_true(est >= st.compute_bytes);
        assert_true(est <= 4 * st.compute_bytes + ((size_t)80 << 20));
        embd_encoder_free(e);
    }
    unsetenv("EMBD_ATTN");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_oom_split),
        cmocka_unit_test(test_oom_cpu_fallback),
        cmocka_unit_test(test_estimate_covers_allocation),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
