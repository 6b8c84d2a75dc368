/* The batching scheduler on a real model: results equal a direct engine call whatever the batch
 * mix, and backpressure, deadlines, cancellation and shutdown end jobs the way the server needs. */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "engine/embed.h"
#include "scheduler/sched.h"
#include "util/sys.h"

#include "test_model.h"

/* Completion flag the submitter waits on, as the server's resume would. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    bool alive;
} waiter;

static void on_done(embd_job *j, void *ud) {
    (void)j;
    waiter *w = ud;
    pthread_mutex_lock(&w->mu);
    w->done++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static bool is_alive(void *ud) { return ((waiter *)ud)->alive; }

static void waiter_init(waiter *w) {
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->done = 0;
    w->alive = true;
}

static void wait_done(waiter *w, int n) {
    pthread_mutex_lock(&w->mu);
    while (w->done < n) pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

/* Token sequence i: [CLS] a few distinct ids [SEP], length 3 + (i * 7) % 60. */
static int32_t *make_ids(size_t i, int *len) {
    int n = 3 + (int)((i * 7) % 60);
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    ids[0] = 101;
    for (int k = 1; k < n - 1; k++) ids[k] = 1000 + (int32_t)((i * 31 + (size_t)k * 17) % 20000);
    ids[n - 1] = 102;
    *len = n;
    return ids;
}

static embd_job *make_job(size_t first, size_t n, double deadline, waiter *w) {
    embd_job *j = embd_job_new(n, H, deadline, on_done, is_alive, w);
    assert_non_null(j);
    for (size_t i = 0; i < n; i++) {
        int len;
        int32_t *ids = make_ids(first + i, &len);
        embd_job_set_item(j, i, ids, len);
    }
    return j;
}

/* Cosine distance: batch shape changes the GEMM kernel and so the last bits (test_engine's bar). */
static double cos_dist(const float *a, const float *b) {
    double d = 0, na = 0, nb = 0;
    for (int k = 0; k < H; k++) d += (double)a[k] * b[k], na += (double)a[k] * a[k], nb += (double)b[k] * b[k];
    return 1.0 - d / sqrt(na * nb);
}

/* A scheduler whose first item waits `delay` seconds for company (token budget never reached),
 * so the test can act on queued jobs before anything runs. */
static embd_sched *start_holding(double delay, size_t max_queue_items) {
    embd_sched_opts o;
    embd_sched_opts_default(&o);
    o.max_batch_delay = delay;
    o.max_batch_tokens = 100000;
    if (max_queue_items) o.max_queue_items = max_queue_items;
    char err[256];
    embd_sched *s = embd_sched_new(enc, &o, NULL, err, sizeof err);
    assert_non_null(s);
    return s;
}

/* Several jobs submitted at once, batched together by a small token budget, give what one direct
 * engine call per item gives (raw pooled, not normalised). */
static void test_results_match_direct(void **state) {
    (void)state;
    enum { NJ = 6, PER = 5 };
    embd_sched_opts o;
    embd_sched_opts_default(&o);
    o.max_batch_tokens = 150;
    o.max_batch_delay = 0.01;
    char err[256];
    embd_sched *s = embd_sched_new(enc, &o, NULL, err, sizeof err);
    assert_non_null(s);
    waiter w;
    waiter_init(&w);
    embd_job *jobs[NJ];
    double ra;
    for (int j = 0; j < NJ; j++) {
        jobs[j] = make_job((size_t)j * PER, PER, 0, &w);
        assert_int_equal(embd_sched_submit(s, jobs[j], &ra), EMBD_SUBMIT_OK);
    }
    wait_done(&w, NJ);
    embd_opts eo;
    embd_opts_default(&eo);
    eo.normalize = false;
    float *ref = malloc((size_t)H * sizeof *ref);
    for (int j = 0; j < NJ; j++) {
        assert_int_equal(embd_job_state_get(jobs[j]), EMBD_JOB_DONE);
        for (size_t i = 0; i < PER; i++) {
            int len;
            int32_t *ids = make_ids((size_t)j * PER + i, &len);
            const int32_t *cid = ids;
            size_t n = (size_t)len;
            embd_item r;
            assert_int_equal(embd_embed_tokens(enc, &cid, &n, 1, &eo, ref, &r, err, sizeof err), 0);
            const embd_item *it = embd_job_item(jobs[j], i);
            assert_int_equal(it->status, EMBD_ITEM_OK);
            assert_int_equal(it->n_tokens, len);
            double d = cos_dist(ref, embd_job_vector(jobs[j], i));
            if (d > 1e-5) print_error("job %d item %zu: cosine distance %g\n", j, i, d);
            assert_true(d <= 1e-5);
            free(ids);
        }
        embd_job_release(s, jobs[j]);
    }
    free(ref);
    embd_sched_free(s);
}

/* Over the queue limits: FULL with a retry hint while others are queued, TOO_BIG when the job
 * alone cannot fit; an accepted job still completes. */
static void test_backpressure(void **state) {
    (void)state;
    embd_sched *s = start_holding(0.5, 8);
    waiter w;
    waiter_init(&w);
    double ra = 0;
    embd_job *a = make_job(0, 6, 0, &w), *b = make_job(10, 6, 0, &w), *c = make_job(20, 9, 0, &w);
    assert_int_equal(embd_sched_submit(s, a, &ra), EMBD_SUBMIT_OK);
    assert_int_equal(embd_sched_submit(s, b, &ra), EMBD_SUBMIT_FULL);
    assert_true(ra >= 1);
    assert_int_equal(embd_sched_submit(s, c, &ra), EMBD_SUBMIT_TOO_BIG);
    embd_sched_stats st;
    embd_sched_stats_get(s, &st);
    assert_int_equal(st.queued_items, 6);
    wait_done(&w, 1);
    assert_int_equal(embd_job_state_get(a), EMBD_JOB_DONE);
    assert_int_equal(embd_job_state_get(b), EMBD_JOB_PENDING); /* refused: never touched */
    embd_job_release(s, a), embd_job_release(s, b), embd_job_release(s, c);
    embd_sched_free(s);
}

/* Deadline passed while queued -> TIMEOUT; client gone -> CANCELLED; both notified, and neither
 * counts against the queue any more. */
static void test_timeout_and_departed_client(void **state) {
    (void)state;
    embd_sched *s = start_holding(1.0, 0);
    waiter w1, w2;
    waiter_init(&w1);
    waiter_init(&w2);
    double ra;
    embd_job *late = make_job(0, 3, embd_now() + 0.05, &w1);
    embd_job *gone = make_job(5, 3, 0, &w2);
    assert_int_equal(embd_sched_submit(s, late, &ra), EMBD_SUBMIT_OK);
    assert_int_equal(embd_sched_submit(s, gone, &ra), EMBD_SUBMIT_OK);
    pthread_mutex_lock(&w2.mu);
    w2.alive = false;
    pthread_mutex_unlock(&w2.mu);
    wait_done(&w1, 1);
    wait_done(&w2, 1);
    assert_int_equal(embd_job_state_get(late), EMBD_JOB_TIMEOUT);
    assert_int_equal(embd_job_state_get(gone), EMBD_JOB_CANCELLED);
    embd_sched_stats st;
    embd_sched_stats_get(s, &st);
    assert_int_equal(st.queued_items, 0);
    assert_int_equal(st.queued_tokens, 0);
    embd_job_release(s, late), embd_job_release(s, gone);
    embd_sched_free(s);
}

/* The submitter cancels (its connection closed): no callback, queue emptied, job freed on release. */
static void test_cancel_by_submitter(void **state) {
    (void)state;
    embd_sched *s = start_holding(1.0, 0);
    waiter w;
    waiter_init(&w);
    double ra;
    embd_job *j = make_job(0, 4, 0, &w);
    assert_int_equal(embd_sched_submit(s, j, &ra), EMBD_SUBMIT_OK);
    embd_sched_cancel(s, j);
    assert_int_equal(embd_job_state_get(j), EMBD_JOB_CANCELLED);
    embd_sched_stats st;
    embd_sched_stats_get(s, &st);
    assert_int_equal(st.queued_items, 0);
    embd_job_release(s, j);
    embd_sched_free(s);
    assert_int_equal(w.done, 0);
}

/* Stop without draining: queued jobs end SHUTDOWN and are notified; later submissions refused. */
static void test_shutdown(void **state) {
    (void)state;
    embd_sched *s = start_holding(5.0, 0);
    waiter w;
    waiter_init(&w);
    double ra;
    embd_job *j = make_job(0, 2, 0, &w), *k = make_job(3, 2, 0, &w);
    assert_int_equal(embd_sched_submit(s, j, &ra), EMBD_SUBMIT_OK);
    embd_sched_stop(s, false);
    wait_done(&w, 1);
    assert_int_equal(embd_job_state_get(j), EMBD_JOB_SHUTDOWN);
    assert_int_equal(embd_sched_submit(s, k, &ra), EMBD_SUBMIT_STOPPED);
    embd_job_release(s, j), embd_job_release(s, k);
    embd_sched_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_results_match_direct),
        cmocka_unit_test(test_backpressure),
        cmocka_unit_test(test_timeout_and_departed_client),
        cmocka_unit_test(test_cancel_by_submitter),
        cmocka_unit_test(test_shutdown),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
