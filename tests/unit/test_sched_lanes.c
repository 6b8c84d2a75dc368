/* The scheduler on a fake executor (no model): several lanes run batches at once, every item of
 * every job comes back from the right place with its n_first, and a batch that fails as a whole
 * fails its items, not the scheduler. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scheduler/sched.h"

enum { W = 3 };

typedef struct {
    _Atomic int running, max_running, batches;
    _Atomic int lane_used[4];
    bool fail_all;
    _Atomic int active_lanes; /* 0: no gating; else lanes [0, active_lanes) take batches */
} fake;

static int fake_active(void *ud, int lane) {
    fake *f = ud;
    return lane < atomic_load(&f->active_lanes);
}

/* Item vector: (first id, length, n_first); a short sleep so that lanes overlap. */
static int fake_run(void *ud, int lane, const embd_batch *b, float *out, embd_item *res, char *err, size_t errlen) {
    fake *f = ud;
    int now = atomic_fetch_add(&f->running, 1) + 1;
    for (int m = atomic_load(&f->max_running); now > m && !atomic_compare_exchange_weak(&f->max_running, &m, now);) {
    }
    atomic_fetch_add(&f->lane_used[lane], 1);
    atomic_fetch_add(&f->batches, 1);
    usleep(20000);
    atomic_fetch_sub(&f->running, 1);
    if (f->fail_all) {
        snprintf(err, errlen, "fake failure");
        return -1;
    }
    size_t tokens = 0;
    for (size_t i = 0; i < b->n; i++) {
        out[i * W + 0] = (float)b->ids[i][0];
        out[i * W + 1] = (float)b->lens[i];
        out[i * W + 2] = (float)(b->n_first ? b->n_first[i] : -1);
        res[i] = (embd_item){.status = EMBD_ITEM_OK, .n_tokens = (int)b->lens[i]};
        tokens += b->lens[i];
    }
    assert_int_equal(tokens, b->tokens);
    return 0;
}

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
} waiter;

static void on_done(embd_job *j, void *ud) {
    (void)j;
    waiter *w = ud;
    pthread_mutex_lock(&w->mu);
    w->done++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static embd_job *make_job(size_t k, size_t n, waiter *w) {
    embd_job *j = embd_job_new(n, W, 0, on_done, NULL, w);
    assert_non_null(j);
    for (size_t i = 0; i < n; i++) {
        int len = 2 + (int)((k + i) % 5);
        int32_t *ids = calloc((size_t)len, sizeof *ids);
        ids[0] = (int32_t)(k * 1000 + i);
        embd_job_set_item(j, i, ids, len);
        embd_job_set_first(j, i, (int32_t)(i % 2));
    }
    return j;
}

static void run_jobs(fake *f, int lanes, size_t njobs, size_t per, bool expect_ok) {
    embd_executor x = {.lanes = lanes, .width = W, .run = fake_run, .ud = f,
                       .active = atomic_load(&f->active_lanes) ? fake_active : NULL};
    embd_sched_opts o;
    embd_sched_opts_default(&o);
    o.max_batch_tokens = 8; /* a few items per batch: many batches */
    char err[128];
    embd_sched *s = embd_sched_new_exec(&x, &o, NULL, err, sizeof err);
    assert_non_null(s);
    waiter w = {.done = 0};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    embd_job *jobs[16];
    for (size_t k = 0; k < njobs; k++) {
        jobs[k] = make_job(k, per, &w);
        double ra;
        assert_int_equal(embd_sched_submit(s, jobs[k], &ra), EMBD_SUBMIT_OK);
    }
    pthread_mutex_lock(&w.mu);
    while (w.done < (int)njobs) pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    for (size_t k = 0; k < njobs; k++) {
        assert_int_equal(embd_job_state_get(jobs[k]), EMBD_JOB_DONE);
        for (size_t i = 0; i < per; i++) {
            const embd_item *it = embd_job_item(jobs[k], i);
            const float *v = embd_job_vector(jobs[k], i);
            if (expect_ok) {
                assert_int_equal(it->status, EMBD_ITEM_OK);
                assert_int_equal((int)v[0], (int)(k * 1000 + i));
                assert_int_equal((int)v[1], 2 + (int)((k + i) % 5));
                assert_int_equal((int)v[2], (int)(i % 2));
            } else {
                assert_int_equal(it->status, EMBD_ITEM_FAILED);
                assert_non_null(strstr(it->message, "fake failure"));
            }
        }
        embd_job_release(s, jobs[k]);
    }
    embd_sched_free(s);
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
}

static void test_lanes_run_concurrently(void **state) {
    (void)state;
    fake f = {0};
    run_jobs(&f, 3, 6, 20, true);
    assert_true(atomic_load(&f.batches) >= 20);
    assert_true(atomic_load(&f.max_running) >= 2); /* 20 ms batches, 3 idle lanes: they overlap */
    assert_true(atomic_load(&f.max_running) <= 3);
    for (int l = 0; l < 3; l++) assert_true(atomic_load(&f.lane_used[l]) > 0);
    assert_int_equal(atomic_load(&f.lane_used[3]), 0);
}

/* Parked lanes (auto-scaling) take no batches; the active ones do all the work. */
static void test_parked_lanes_take_nothing(void **state) {
    (void)state;
    fake f = {0};
    atomic_store(&f.active_lanes, 2);
    run_jobs(&f, 4, 6, 20, true);
    assert_true(atomic_load(&f.lane_used[0]) > 0);
    assert_true(atomic_load(&f.lane_used[1]) > 0);
    assert_int_equal(atomic_load(&f.lane_used[2]), 0);
    assert_int_equal(atomic_load(&f.lane_used[3]), 0);
    assert_true(atomic_load(&f.max_running) <= 2);
}

static void test_one_lane_is_serial(void **state) {
    (void)state;
    fake f = {0};
    run_jobs(&f, 1, 3, 10, true);
    assert_int_equal(atomic_load(&f.max_running), 1);
}

static void test_failed_batches_fail_items(void **state) {
    (void)state;
    fake f = {.fail_all = true};
    run_jobs(&f, 2, 2, 6, false);
}

static void test_bad_executor(void **state) {
    (void)state;
    fake f = {0};
    embd_sched_opts o;
    embd_sched_opts_default(&o);
    char err[128];
    embd_executor x = {.lanes = 0, .width = W, .run = fake_run, .ud = &f};
    assert_null(embd_sched_new_exec(&x, &o, NULL, err, sizeof err));
    x = (embd_executor){.lanes = 1, .width = 0, .run = fake_run, .ud = &f};
    assert_null(embd_sched_new_exec(&x, &o, NULL, err, sizeof err));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lanes_run_concurrently),
        cmocka_unit_test(test_one_lane_is_serial),
        cmocka_unit_test(test_parked_lanes_take_nothing),
        cmocka_unit_test(test_failed_batches_fail_items),
        cmocka_unit_test(test_bad_executor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
