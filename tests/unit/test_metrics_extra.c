/* Series other modules add to /metrics (embd_metrics_count / embd_metrics_gauge): one HELP/TYPE
 * per name, labels escaped, counters add up, gauges overwrite, the table's bound holds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/metrics.h"

static size_t occurrences(const char *hay, const char *needle) {
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++) n++;
    return n;
}

static void test_counters_and_gauges(void **state) {
    (void)state;
    embd_metrics *m = embd_metrics_new();
    assert_non_null(m);
    embd_metrics_count(m, "embd_worker_exits_total", "Exits.", "cause", "signal", 1);
    embd_metrics_count(m, "embd_worker_exits_total", "Exits.", "cause", "hang", 1);
    embd_metrics_count(m, "embd_worker_exits_total", "Exits.", "cause", "signal", 2);
    embd_metrics_count(m, "embd_worker_restarts_total", "Restarts.", NULL, NULL, 1);
    embd_metrics_gauge(m, "embd_workers", "Workers.", 3);
    embd_metrics_gauge(m, "embd_workers", "Workers.", 2);
    embd_metrics_count(m, "embd_weird_total", "Weird.", "v", "a\"b\\c\nd", 1);
    char *t = embd_metrics_render(m, NULL);
    assert_non_null(t);
    assert_non_null(strstr(t, "# TYPE embd_worker_exits_total counter\n"));
    assert_int_equal(occurrences(t, "# HELP embd_worker_exits_total "), 1);
    assert_non_null(strstr(t, "embd_worker_exits_total{cause=\"signal\"} 3\n"));
    assert_non_null(strstr(t, "embd_worker_exits_total{cause=\"hang\"} 1\n"));
    assert_non_null(strstr(t, "embd_worker_restarts_total 1\n"));
    assert_non_null(strstr(t, "# TYPE embd_workers gauge\nembd_workers 2\n"));
    assert_non_null(strstr(t, "embd_weird_total{v=\"a\\\"b\\\\c\\nd\"} 1\n"));
    free(t);
    embd_metrics_free(m);
}

static void test_bounded(void **state) {
    (void)state;
    embd_metrics *m = embd_metrics_new();
    char v[32];
    for (int i = 0; i < EMBD_METRICS_MAX_EXTRA + 20; i++) {
        snprintf(v, sizeof v, "%d", i);
        embd_metrics_count(m, "embd_many_total", "Many.", "i", v, 1);
    }
    char *t = embd_metrics_render(m, NULL);
    assert_non_null(t);
    assert_int_equal(occurrences(t, "embd_many_total{"), EMBD_METRICS_MAX_EXTRA);
    free(t);
    embd_metrics_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters_and_gauges),
        cmocka_unit_test(test_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
