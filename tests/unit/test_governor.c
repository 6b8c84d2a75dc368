/* The memory governor's bookkeeping: budget sources, the calibrated peak model, pass sizes cut to
 * fit the per-worker share, growth after calm batches and shrinking on pressure (hysteresis), and
 * the start-up error for a budget that cannot hold one sequence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "worker/governor.h"

#define MiB ((size_t)1 << 20)
#define KiB ((size_t)1 << 10)

/* 100 MiB share, idle worker 50 MiB, 10 KiB per token: 4096 tokens -> 90 MiB predicted. */
static void setup(embd_gov *g, size_t budget, int workers) {
    embd_gov_opts o = {.budget = budget, .workers = workers, .min_tokens = 64, .max_tokens = 8192};
    embd_gov_init(g, &o);
    embd_gov_calibrate(g, 16, 50 * MiB + 16 * 10 * KiB, 1024, 50 * MiB + 1024 * 10 * KiB);
}

static void test_budget_sources(void **state) {
    (void)state;
    char why[64];
    assert_int_equal(embd_mem_budget(123456789, 70, why, sizeof why), 123456789);
    assert_string_equal(why, "--max-memory");
    size_t b70 = embd_mem_budget(0, 70, why, sizeof why), b35 = embd_mem_budget(0, 35, why, sizeof why);
    assert_true(b70 > 0);
    assert_true(b35 <= b70);
    assert_true(b35 > 0);
}

static void test_model_and_share(void **state) {
    (void)state;
    embd_gov g;
    setup(&g, 200 * MiB, 2);
    assert_int_equal(embd_gov_share(&g), 100 * MiB);
    assert_true(g.base > 49.9 * MiB && g.base < 50.1 * MiB);
    double p = embd_gov_predict(&g, 4096);
    assert_true(p > 89.9 * MiB && p < 90.1 * MiB);
    embd_gov_destroy(&g);
}

static void test_pass_cut_to_fit(void **state) {
    (void)state;
    embd_gov g;
    setup(&g, 100 * MiB, 1);
    /* limit 8192 would need 130 MiB: cut to what fits 90% of 100 MiB -> (90 - 50) MiB / 10 KiB = 4096 */
    size_t t = embd_gov_pass_tokens(&g, 10);
    assert_true(t >= 4090 && t <= 4096);
    assert_true(embd_gov_predict(&g, t) <= 0.9 * 100 * MiB);
    /* never below one sequence, even if that does not fit */
    assert_int_equal(embd_gov_pass_tokens(&g, 6000), 6000);
    /* a roomy budget leaves the limit alone */
    embd_gov_destroy(&g);
    setup(&g, 1000 * MiB, 1);
    assert_int_equal(embd_gov_pass_tokens(&g, 10), 8192);
    embd_gov_destroy(&g);
}

static void test_start_up_check(void **state) {
    (void)state;
    embd_gov g;
    char err[300];
    setup(&g, 100 * MiB, 1);
    assert_int_equal(embd_gov_check(&g, 512, err, sizeof err), 0);
    embd_gov_destroy(&g);
    setup(&g, 100 * MiB, 2); /* 50 MiB each: not even the idle worker fits */
    assert_int_equal(embd_gov_check(&g, 512, err, sizeof err), -1);
    assert_non_null(strstr(err, "too small for one sequence of 512 tokens"));
    assert_non_null(strstr(err, "--max-memory"));
    embd_gov_destroy(&g);
}

static void test_grow_and_shrink_with_hysteresis(void **state) {
    (void)state;
    embd_gov g;
    embd_gov_opts o = {.budget = 100 * MiB, .workers = 1, .min_tokens = 64, .max_tokens = 4096};
    embd_gov_init(&g, &o);
    embd_gov_calibrate(&g, 16, 10 * MiB, 1024, 20 * MiB);
    g.limit = 1000;
    /* calm (below 70%): grows only after 4 in a row, by 25%, up to max */
    for (int i = 0; i < 3; i++) assert_int_equal(embd_gov_observe(&g, 1000, 30 * MiB), 0);
    assert_int_equal(embd_gov_observe(&g, 1000, 30 * MiB), 1);
    assert_int_equal(embd_gov_limit(&g), 1251);
    /* between 70% and 90%: no change, and the calm streak restarts */
    for (int i = 0; i < 3; i++) assert_int_equal(embd_gov_observe(&g, 1251, 30 * MiB), 0);
    assert_int_equal(embd_gov_observe(&g, 1251, 80 * MiB), 0);
    assert_int_equal(embd_gov_observe(&g, 1251, 30 * MiB), 0);
    assert_int_equal(embd_gov_limit(&g), 1251);
    /* small batches say nothing about room: no growth from them */
    for (int i = 0; i < 10; i++) assert_int_equal(embd_gov_observe(&g, 10, 30 * MiB), 0);
    assert_int_equal(embd_gov_limit(&g), 1251);
    /* pressure (above 90%): halves at once, never below min */
    assert_int_equal(embd_gov_observe(&g, 1251, 95 * MiB), -1);
    assert_int_equal(embd_gov_limit(&g), 625);
    for (int i = 0; i < 10; i++) embd_gov_observe(&g, 600, 99 * MiB);
    assert_int_equal(embd_gov_limit(&g), 64);
    /* growth stops at max */
    g.limit = 4000;
    for (int i = 0; i < 8; i++) embd_gov_observe(&g, 4000, 10 * MiB);
    assert_int_equal(embd_gov_limit(&g), 4096);
    /* an OOM kill: straight to min */
    embd_gov_pressure(&g);
    assert_int_equal(embd_gov_limit(&g), 64);
    embd_gov_destroy(&g);
}

static void test_observed_peak_corrects_model(void **state) {
    (void)state;
    embd_gov g;
    setup(&g, 1000 * MiB, 1);
    double before = embd_gov_predict(&g, 2048);
    /* a batch of 2048 tokens peaked far above the prediction: the slope steepens through it */
    embd_gov_observe(&g, 2048, 150 * MiB);
    double after = embd_gov_predict(&g, 2048);
    assert_true(after > before);
    assert_true(after >= 150.0 * MiB - 1);
    assert_int_equal(g.peak, 150 * MiB);
    /* a lower peak never makes the model optimistic again */
    embd_gov_observe(&g, 2048, 60 * MiB);
    assert_true(embd_gov_predict(&g, 2048) >= after);
    embd_gov_destroy(&g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_budget_sources),
        cmocka_unit_test(test_model_and_share),
        cmocka_unit_test(test_pass_cut_to_fit),
        cmocka_unit_test(test_start_up_check),
        cmocka_unit_test(test_grow_and_shrink_with_hysteresis),
        cmocka_unit_test(test_observed_peak_corrects_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
