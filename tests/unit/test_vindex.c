/* The FAISS adapter's HNSW tuning setters (efConstruction, efSearch): bad values are refused with a
 * message, efSearch below k still yields k hits, and a wide efSearch on a small index finds the
 * exact top k (brute force). */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "index/faiss_index.h"

enum { DIM = 16, N = 300, K = 10 };

static uint64_t rng = 0x2545f4914f6cdd1dull;
static float frand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static void unit_rows(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < DIM; j++) {
            x[i * DIM + j] = frand();
            s += (double)x[i * DIM + j] * x[i * DIM + j];
        }
        for (int j = 0; j < DIM; j++) x[i * DIM + j] /= (float)sqrt(s);
    }
}

static embd_vindex *filled(embd_vindex_kind kind, float *x, int efc) {
    char err[256] = "";
    embd_vindex *v = embd_vindex_new(DIM, kind, 8, err, sizeof err);
    assert_non_null(v);
    if (efc) assert_int_equal(embd_vindex_set_ef_construction(v, efc, err, sizeof err), 0);
    int64_t ids[N];
    for (int i = 0; i < N; i++) ids[i] = 1000 + i;
    unit_rows(x, N);
    assert_int_equal(embd_vindex_add(v, N, x, ids, err, sizeof err), 0);
    return v;
}

static void test_bad_values(void **state) {
    (void)state;
    char err[256] = "";
    embd_vindex *v = embd_vindex_new(DIM, EMBD_VINDEX_HNSW, 0, err, sizeof err);
    assert_non_null(v);
    assert_int_equal(embd_vindex_set_ef_search(v, -1, err, sizeof err), -1);
    assert_non_null(strstr(err, "efSearch"));
    err[0] = 0;
    assert_int_equal(embd_vindex_set_ef_construction(v, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "efConstruction"));
    assert_int_equal(embd_vindex_set_ef_construction(v, -5, err, sizeof err), -1);
    assert_int_equal(embd_vindex_set_ef_search(v, 0, err, sizeof err), 0); /* back to the default */
    embd_vindex_free(v);
}

static void test_ef_search_below_k_still_fills_k(void **state) {
    (void)state;
    float *x = malloc(N * DIM * sizeof *x);
    assert_non_null(x);
    embd_vindex *v = filled(EMBD_VINDEX_HNSW, x, 40);
    char err[256] = "";
    assert_int_equal(embd_vindex_set_ef_search(v, 1, err, sizeof err), 0);
    float sc[K];
    int64_t ids[K];
    assert_int_equal(embd_vindex_search(v, x, K, sc, ids, err, sizeof err), 0);
    for (int i = 0; i < K; i++) assert_in_range(ids[i], 1000, 1000 + N - 1);
    embd_vindex_free(v);
    free(x);
}

/* With efSearch >= the whole index, HNSW on 300 points must agree with brute force (flat). */
static void test_wide_ef_search_is_exact(void **state) {
    (void)state;
    float *x = malloc(N * DIM * sizeof *x), *q = malloc(20 * DIM * sizeof *q);
    assert_non_null(x);
    assert_non_null(q);
    embd_vindex *h = filled(EMBD_VINDEX_HNSW, x, 0);
    char err[256] = "";
    embd_vindex *f = embd_vindex_new(DIM, EMBD_VINDEX_FLAT, 0, err, sizeof err);
    assert_non_null(f);
    int64_t all[N];
    for (int i = 0; i < N; i++) all[i] = 1000 + i;
    assert_int_equal(embd_vindex_add(f, N, x, all, err, sizeof err), 0);
    assert_int_equal(embd_vindex_set_ef_search(f, 500, err, sizeof err), 0); /* flat: accepted, no effect */
    assert_int_equal(embd_vindex_set_ef_search(h, N, err, sizeof err), 0);
    unit_rows(q, 20);
    for (int i = 0; i < 20; i++) {
        float sh[K], sf[K];
        int64_t ih[K], jf[K];
        assert_int_equal(embd_vindex_search(h, q + i * DIM, K, sh, ih, err, sizeof err), 0);
        assert_int_equal(embd_vindex_search(f, q + i * DIM, K, sf, jf, err, sizeof err), 0);
        for (int r = 0; r < K; r++) assert_float_equal(sh[r], sf[r], 1e-5);
    }
    embd_vindex_free(h);
    embd_vindex_free(f);
    free(x), free(q);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_ef_search_below_k_still_fills_k),
        cmocka_unit_test(test_wide_ef_search_is_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
