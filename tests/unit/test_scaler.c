/* The worker auto-scaling policy (src/worker/scaler.c): growth, CPU hysteresis and trend, memory,
 * idle shrink, bounds, threads per worker. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "worker/scaler.h"

typedef struct {
    embd_scale_opts o;
    embd_scale_state st;
    const char *why;
} ctx;

static ctx fresh(void) {
    ctx c;
    embd_scale_opts_default(&c.o);
    c.o.max_workers = 4;
    embd_scale_state_init(&c.st);
    c.why = "";
    return c;
}

static int decide(ctx *c, embd_scale_in in) { return embd_scale_decide(&c->o, &c->st, &in, &c->why); }

static embd_scale_in busy(double cpu, int workers) {
    return (embd_scale_in){.cpu = cpu, .workers = workers, .min_busy = 1.0, .newest_idle_s = 0};
}

static void test_grows_when_busy_and_cpu_free(void **state) {
    (void)state;
    ctx c = fresh();
    assert_int_equal(decide(&c, busy(0.30, 1)), 1);
    embd_scale_in in = busy(0.30, 1);
    in.min_busy = 0.5; /* one worker had slack: no growth */
    assert_int_equal(decide(&c, in), 0);
    assert_int_equal(decide(&c, busy(0.30, 4)), 0); /* at the maximum */
}

static void test_cpu_hysteresis(void **state) {
    (void)state;
    ctx c = fresh();
    assert_int_equal(decide(&c, busy(0.75, 1)), 0); /* over 69%: blocked */
    assert_int_equal(decide(&c, busy(0.64, 1)), 0); /* under 69% but not under 59%: still blocked */
    assert_int_equal(decide(&c, busy(0.64, 1)), 0); /* flat at 64%: predicted 64%, above the low mark */
    assert_int_equal(decide(&c, busy(0.50, 1)), 1); /* falling: predicted 0.50 - 2 * 0.14, under 59% */
}

static void test_trend_two_steps_ahead(void **state) {
    (void)state;
    ctx c = fresh();
    assert_int_equal(decide(&c, busy(0.30, 1)), 1);
    /* rising 0.2 per interval: 0.90 predicted, over the mark although 0.50 is not */
    assert_int_equal(decide(&c, busy(0.50, 1)), 0);
    assert_true(c.st.predicted > 0.89 && c.st.predicted < 0.91);
    assert_string_equal(c.why, "cpu");
}

static void test_memory_budget(void **state) {
    (void)state;
    ctx c = fresh();
    embd_scale_in in = busy(0.2, 2);
    in.mem_budget = 1000, in.mem_used = 700, in.mem_per_worker = 400;
    assert_int_equal(decide(&c, in), 0);
    assert_string_equal(c.why, "memory");
    in.mem_per_worker = 300;
    assert_int_equal(decide(&c, in), 1);
}

static void test_idle_shrinks_to_min(void **state) {
    (void)state;
    ctx c = fresh();
    embd_scale_in in = {.cpu = 0.01, .workers = 3, .min_busy = 0, .newest_idle_s = 11};
    assert_int_equal(decide(&c, in), -1);
    in.newest_idle_s = 5; /* not long enough */
    assert_int_equal(decide(&c, in), 0);
    in.workers = 1, in.newest_idle_s = 100; /* never under the minimum */
    assert_int_equal(decide(&c, in), 0);
}

static void test_threads(void **state) {
    (void)state;
    assert_int_equal(embd_scale_threads(16, 1), 16);
    assert_int_equal(embd_scale_threads(16, 3), 5);
    assert_int_equal(embd_scale_threads(2, 2), 1);
    assert_int_equal(embd_scale_threads(2, 4), 1); /* never 0 */
    for (int c = 1; c <= 64; c++)
        for (int w = 1; w <= c; w++) assert_true(embd_scale_threads(c, w) * w <= c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grows_when_busy_and_cpu_free), cmocka_unit_test(test_cpu_hysteresis),
        cmocka_unit_test(test_trend_two_steps_ahead),        cmocka_unit_test(test_memory_budget),
        cmocka_unit_test(test_idle_shrinks_to_min),          cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
