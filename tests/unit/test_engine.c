/* Engine behaviour on the shared bge-small-random f16 GGUF (see test_model.h): batching invariance, per-item
 * errors, truncation, pooling and normalisation, and model-load failures. */
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

#include "test_model.h"

static const char *TEXTS[] = {
    "hello world",
    "",
    "The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the lazy dog.",
    "numpy.cumsum returns the cumulative sum of the elements along a given axis.",
    "x",
    "def mean(a, axis=None):\n    return a.sum(axis) / a.shape[axis]\n",
};
#define NT (sizeof TEXTS / sizeof TEXTS[0])

static void embed_all(const embd_opts *o, const char *const *texts, size_t n, float *out, embd_item *res) {
    size_t lens[64];
    for (size_t i = 0; i < n; i++) lens[i] = strlen(texts[i]);
    char err[256];
    assert_int_equal(embd_embed_texts(enc, texts, lens, n, o, out, res, err, sizeof err), 0);
}

static double cosine(const float *a, const float *b, int n) {
    double d = 0, na = 0, nb = 0;
    for (int i = 0; i < n; i++) d += (double)a[i] * b[i], na += (double)a[i] * a[i], nb += (double)b[i] * b[i];
    return d / sqrt(na * nb);
}

/* The same text gives the same vector alone, in a big batch, or in one-token-budget batches. */
static void test_batch_invariance(void **state) {
    (void)state;
    float all[NT * 384], one[384], tiny[NT * 384];
    embd_item res[NT], r1;
    embd_opts o;
    embd_opts_default(&o);
    embed_all(&o, TEXTS, NT, all, res);
    o.batch_tokens = 1;
    embed_all(&o, TEXTS, NT, tiny, res);
    embd_opts_default(&o);
    for (size_t i = 0; i < NT; i++) {
        assert_int_equal(res[i].status, EMBD_ITEM_OK);
        embed_all(&o, &TEXTS[i], 1, one, &r1);
        double d1 = 1.0 - cosine(one, all + i * H, H), d2 = 1.0 - cosine(tiny + i * H, all + i * H, H);
        if (d1 >= 1e-5 || d2 >= 1e-5) print_error("text %zu: cosine distance alone %g, tiny batches %g\n", i, d1, d2);
        assert_true(d1 < 1e-5);
        assert_true(d2 < 1e-5);
    }
}

static void test_normalize_and_pooling(void **state) {
    (void)state;
    float a[NT * 384], b[NT * 384], c[NT * 384];
    embd_item res[NT];
    embd_opts o;
    embd_opts_default(&o);
    embed_all(&o, TEXTS, NT, a, res);
    o.normalize = false;
    embed_all(&o, TEXTS, NT, b, res);
    o.normalize = true;
    o.pooling = EMBD_POOL_MEAN;
    embed_all(&o, TEXTS, NT, c, res);
    for (size_t i = 0; i < NT; i++) {
        double n2 = 0, nr = 0;
        for (int k = 0; k < H; k++) n2 += (double)a[i * H + k] * a[i * H + k], nr += (double)b[i * H + k] * b[i * H + k];
        assert_true(fabs(sqrt(n2) - 1.0) < 1e-5);
        assert_true(fabs(sqrt(nr) - 1.0) > 1e-3);                /* raw CLS vector is not unit length */
        assert_true(1.0 - cosine(a + i * H, b + i * H, H) < 1e-6); /* but points the same way */
        assert_true(1.0 - cosine(a + i * H, c + i * H, H) > 1e-6); /* mean pooling differs */
    }
}

static void test_truncation(void **state) {
    (void)state;
    size_t n = 20000;
    char *big = malloc(n + 1);
    for (size_t i = 0; i < n; i++) big[i] = (i % 6 == 5) ? ' ' : "numpy"[i % 6 % 5];
    big[n] = 0;
    const char *texts[2] = {big, "short"};
    float out[2 * 384];
    embd_item res[2];
    embd_opts o;
    embd_opts_default(&o);
    embed_all(&o, texts, 2, out, res);
    assert_int_equal(res[0].status, EMBD_ITEM_OK);
    assert_true(res[0].truncated);
    assert_int_equal(res[0].n_tokens, model->info.n_ctx);
    assert_true(res[0].n_tokens_full > model->info.n_ctx);
    o.truncate = false;
    embed_all(&o, texts, 2, out, res);
    assert_int_equal(res[0].status, EMBD_ITEM_TOO_LONG);
    assert_non_null(strstr(res[0].message, "tokens"));
    for (int k = 0; k < H; k++) assert_true(out[k] == 0.0f); /* failed row is zero */
    assert_int_equal(res[1].status, EMBD_ITEM_OK);             /* the other item is unaffected */
    o.truncate = true;
    o.max_tokens = 8;
    embed_all(&o, texts, 2, out, res);
    assert_int_equal(res[0].n_tokens, 8);
    free(big);
}

static void test_bad_items_fail_alone(void **state) {
    (void)state;
    const char *texts[3] = {"good one", "bad \xff utf8", "good two"};
    float out[4 * 384], ref[384];
    embd_item res[4], r;
    embd_opts o;
    embd_opts_default(&o);
    embed_all(&o, texts, 3, out, res);
    assert_int_equal(res[0].status, EMBD_ITEM_OK);
    assert_int_equal(res[1].status, EMBD_ITEM_BAD_UTF8);
    assert_non_null(strstr(res[1].message, "byte 4"));
    assert_int_equal(res[2].status, EMBD_ITEM_OK);
    embed_all(&o, &texts[2], 1, ref, &r);
    assert_true(1.0 - cosine(ref, out + 2 * H, H) < 1e-5);

    /* token ids: out-of-vocabulary and empty lists are per-item errors */
    int32_t good[] = {101, 7592, 2088, 102}, oov[] = {101, 999999, 102}, neg[] = {101, -5, 102};
    const int32_t *ids[4] = {good, oov, neg, good};
    size_t n_ids[4] = {4, 3, 3, 0};
    char err[256];
    assert_int_equal(embd_embed_tokens(enc, ids, n_ids, 4, &o, out, res, err, sizeof err), 0);
    assert_int_equal(res[0].status, EMBD_ITEM_OK);
    assert_int_equal(res[1].status, EMBD_ITEM_FAILED);
    assert_non_null(strstr(res[1].message, "vocabulary"));
    assert_int_equal(res[2].status, EMBD_ITEM_FAILED);
    assert_int_equal(res[3].status, EMBD_ITEM_FAILED);
    /* ids and text agree */
    const char *hw = "hello world";
    embed_all(&o, &hw, 1, ref, &r);
    assert_true(1.0 - cosine(ref, out, H) < 1e-6);
}

static void test_pooling_none_refused(void **state) {
    (void)state;
    embd_opts o;
    embd_opts_default(&o);
    o.pooling = EMBD_POOL_NONE;
    const char *t = "x";
    size_t len = 1;
    float out[384];
    embd_item r;
    char err[256] = "";
    assert_int_equal(embd_embed_texts(enc, &t, &len, 1, &o, out, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "pooling"));
}

static void test_load_errors(void **state) {
    (void)state;
    char err[256] = "";
    assert_null(embd_model_load("/nonexistent/model.gguf", NULL, err, sizeof err));
    assert_non_null(strstr(err, "cannot open"));
    assert_null(embd_model_load("/", NULL, err, sizeof err));
    assert_null(embd_model_load("/proc/self/status", NULL, err, sizeof err));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_invariance),    cmocka_unit_test(test_normalize_and_pooling),
        cmocka_unit_test(test_truncation),          cmocka_unit_test(test_bad_items_fail_alone),
        cmocka_unit_test(test_pooling_none_refused), cmocka_unit_test(test_load_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
