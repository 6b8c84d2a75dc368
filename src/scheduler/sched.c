#include "scheduler/sched.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/metrics.h"
#include "util/sys.h"

/* How often queued jobs are checked for deadlines and departed clients while the queue waits. */
#define SWEEP_INTERVAL 0.05

struct embd_job {
    size_t n;
    int n_embd;
    double deadline;
    embd_job_done_fn done;
    embd_job_alive_fn alive;
    void *ud;
    int32_t **ids;
    int *lens;
    int32_t *n_first; /* per item, 0 = single segment */
    float *out;
    embd_item *res;
    size_t tokens;
    /* guarded by the scheduler's mutex */
    size_t queued, queued_tokens, inflight;
    int refs;
    uint64_t last_batch;
    double queue_s, infer_s;
    _Atomic int state;
};

typedef struct {
    embd_job *job;
    size_t idx;
    double t_enq;
} qitem;

struct embd_sched {
    embd_executor x;
    embd_sched_opts o;
    embd_metrics *metrics;
    int n_embd;
    pthread_t *threads; /* one per executor lane */
    int nthreads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* ring buffer of the queued items of pending jobs (a finished job's items are removed) */
    qitem *q;
    size_t q_cap, q_head, q_len;
    size_t live_items, live_tokens; /* queued items of pending jobs: what backpressure counts */
    bool stopping, drain, joined;
    uint64_t batch_seq;
    double tps;        /* moving average of inference tokens/s */
    double last_sweep;
};

void embd_sched_opts_default(embd_sched_opts *o) {
    o->max_batch_tokens = 4096;
    o->pass_tokens = 4096;
    o->max_batch_delay = 0; /* under load, items arriving during a batch form the next one anyway */
    o->max_queue_tokens = 1u << 18;
    o->max_queue_items = 8192;
    o->pooling = EMBD_POOL_UNSPECIFIED;
}

void embd_job_waiter_done(embd_job *job, void *waiter) {
    (void)job;
    embd_job_waiter *w = waiter;
    pthread_mutex_lock(&w->mu);
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void embd_job_waiter_wait(embd_job_waiter *w) {
    pthread_mutex_lock(&w->mu);
    while (!w->done) pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

embd_job *embd_job_new(size_t n, int n_embd, double deadline, embd_job_done_fn done, embd_job_alive_fn alive,
                       void *ud) {
    embd_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->n = n;
    j->n_embd = n_embd;
    j->deadline = deadline;
    j->done = done;
    j->alive = alive;
    j->ud = ud;
    j->refs = 1;
    size_t m = n ? n : 1;
    j->ids = calloc(m, sizeof *j->ids);
    j->lens = calloc(m, sizeof *j->lens);
    j->n_first = calloc(m, sizeof *j->n_first);
    j->out = calloc(m * (size_t)n_embd, sizeof *j->out);
    j->res = calloc(m, sizeof *j->res);
    if (!j->ids || !j->lens || !j->n_first || !j->out || !j->res) {
        free(j->ids), free(j->lens), free(j->n_first), free(j->out), free(j->res), free(j);
        return NULL;
    }
    atomic_store(&j->state, EMBD_JOB_PENDING);
    return j;
}

void embd_job_set_item(embd_job *j, size_t i, int32_t *ids, int len) {
    j->tokens -= (size_t)j->lens[i];
    free(j->ids[i]);
    j->ids[i] = ids;
    j->lens[i] = len;
    j->tokens += (size_t)len;
}

void embd_job_set_first(embd_job *j, size_t i, int32_t n_first) { j->n_first[i] = n_first; }

void embd_job_set_pair(embd_job *j, size_t i, int32_t *ids, int len, int n_first) {
    embd_job_set_item(j, i, ids, len);
    embd_job_set_first(j, i, n_first);
}

embd_job_state embd_job_state_get(embd_job *j) { return (embd_job_state)atomic_load(&j->state); }
size_t embd_job_size(const embd_job *j) { return j->n; }
size_t embd_job_tokens(const embd_job *j) { return j->tokens; }
const float *embd_job_vector(const embd_job *j, size_t i) { return j->out + i * (size_t)j->n_embd; }
const embd_item *embd_job_item(const embd_job *j, size_t i) { return &j->res[i]; }
double embd_job_queue_seconds(const embd_job *j) { return j->queue_s; }
double embd_job_inference_seconds(const embd_job *j) { return j->infer_s; }

static void job_free(embd_job *j) {
    for (size_t i = 0; i < j->n; i++) free(j->ids[i]);
    free(j->ids), free(j->lens), free(j->n_first), free(j->out), free(j->res), free(j);
}

/* Caller holds s->mu. */
static void job_unref(embd_job *j) {
    if (--j->refs == 0) job_free(j);
}

void embd_job_release(embd_sched *s, embd_job *j) {
    if (!j) return;
    pthread_mutex_lock(&s->mu);
    job_unref(j);
    pthread_mutex_unlock(&s->mu);
}

static qitem *q_at(embd_sched *s, size_t k) { return &s->q[(s->q_head + k) % s->q_cap]; }

/* Takes a job's queued items out of the ring, so that the ring never points at a job the
 * scheduler no longer holds. Caller holds s->mu. */
static void q_remove_job(embd_sched *s, const embd_job *j) {
    size_t w = 0;
    for (size_t k = 0; k < s->q_len; k++)
        if (q_at(s, k)->job != j) *q_at(s, w++) = *q_at(s, k);
    s->q_len = w;
}

/* Ends a pending job: its queued items leave the queue. The scheduler's reference goes once
 * nothing of the job is in a running batch. Caller holds s->mu. */
static void job_finish(embd_sched *s, embd_job *j, embd_job_state st, bool notify) {
    if (atomic_load(&j->state) != EMBD_JOB_PENDING) return;
    if (j->queued) q_remove_job(s, j);
    s->live_items -= j->queued;
    s->live_tokens -= j->queued_tokens;
    j->queued = j->queued_tokens = 0;
    atomic_store(&j->state, st);
    if (notify && j->done) j->done(j, j->ud);
    if (j->inflight == 0) job_unref(j);
}

static void publish_depth(embd_sched *s) {
    if (s->metrics) embd_metrics_queue_depth(s->metrics, s->live_items, s->live_tokens);
}

int embd_sched_submit(embd_sched *s, embd_job *j, double *retry_after) {
    *retry_after = 0;
    pthread_mutex_lock(&s->mu);
    int rc = EMBD_SUBMIT_OK;
    if (s->stopping) {
        rc = EMBD_SUBMIT_STOPPED;
    } else if (j->n > s->o.max_queue_items || j->tokens > s->o.max_queue_tokens) {
        rc = EMBD_SUBMIT_TOO_BIG;
    } else if (s->live_items + j->n > s->o.max_queue_items || s->live_tokens + j->tokens > s->o.max_queue_tokens) {
        rc = EMBD_SUBMIT_FULL;
        double tps = s->tps > 0 ? s->tps : 1000;
        *retry_after = ceil((double)s->live_tokens / tps);
        if (*retry_after < 1) *retry_after = 1;
    } else if (s->q_len + j->n > s->q_cap) {
        size_t cap = s->q_cap ? s->q_cap : 1024;
        while (cap < s->q_len + j->n) cap *= 2;
        qitem *nq = malloc(cap * sizeof *nq);
        if (!nq) {
            rc = EMBD_SUBMIT_FULL;
            *retry_after = 1;
        } else {
            for (size_t k = 0; k < s->q_len; k++) nq[k] = s->q[(s->q_head + k) % s->q_cap];
            free(s->q);
            s->q = nq;
            s->q_cap = cap;
            s->q_head = 0;
        }
    }
    if (rc == EMBD_SUBMIT_OK) {
        double now = embd_now();
        for (size_t i = 0; i < j->n; i++) s->q[(s->q_head + s->q_len++) % s->q_cap] = (qitem){j, i, now};
        j->queued = j->n;
        j->queued_tokens = j->tokens;
        j->refs++; /* the scheduler's */
        s->live_items += j->n;
        s->live_tokens += j->tokens;
        publish_depth(s);
        if (j->n == 0) job_finish(s, j, EMBD_JOB_DONE, false); /* the submitter sees the state */
        pthread_cond_broadcast(&s->cv); /* every idle lane may take a batch */
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void embd_sched_cancel(embd_sched *s, embd_job *j) {
    pthread_mutex_lock(&s->mu);
    /* Only a job the scheduler still references can be pending; a never-submitted job has refs 1. */
    if (j->refs > 1) job_finish(s, j, EMBD_JOB_CANCELLED, false);
    publish_depth(s);
    pthread_mutex_unlock(&s->mu);
}

void embd_sched_stats_get(embd_sched *s, embd_sched_stats *st) {
    pthread_mutex_lock(&s->mu);
    st->queued_items = s->live_items;
    st->queued_tokens = s->live_tokens;
    st->tokens_per_second = s->tps;
    pthread_mutex_unlock(&s->mu);
}

/* Times out queued jobs past their deadline and cancels those whose client left. */
static void sweep(embd_sched *s, double now) {
    s->last_sweep = now;
    for (size_t k = 0; k < s->q_len;) {
        embd_job *j = q_at(s, k)->job;
        /* visit each job once, at its first queued item; finishing it removes its items from k on */
        if (q_at(s, k)->idx == j->n - j->queued) {
            if (j->deadline > 0 && now >= j->deadline) {
                job_finish(s, j, EMBD_JOB_TIMEOUT, true);
                continue;
            }
            if (j->alive && !j->alive(j->ud)) {
                job_finish(s, j, EMBD_JOB_CANCELLED, true);
                continue;
            }
        }
        k++;
    }
    publish_depth(s);
}

static void wait_until(embd_sched *s, double t) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double d = t - embd_now();
    if (d <= 0) return;
    if (d > 1) d = 1;
    ts.tv_sec += (time_t)d;
    ts.tv_nsec += (long)((d - floor(d)) * 1e9);
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_cond_timedwait(&s->cv, &s->mu, &ts);
}

typedef struct {
    qitem *items;
    const int32_t **ids;
    size_t *lens;
    int32_t *n_first;
    float *out;
    embd_item *res;
    size_t cap;
} batch_buf;

static int batch_reserve(batch_buf *b, size_t n, int n_embd) {
    if (n <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < n) cap *= 2;
    qitem *it = realloc(b->items, cap * sizeof *it);
    if (it) b->items = it;
    const int32_t **ids = realloc(b->ids, cap * sizeof *ids);
    if (ids) b->ids = ids;
    size_t *lens = realloc(b->lens, cap * sizeof *lens);
    if (lens) b->lens = lens;
    int32_t *nf = realloc(b->n_first, cap * sizeof *nf);
    if (nf) b->n_first = nf;
    float *out = realloc(b->out, cap * (size_t)n_embd * sizeof *out);
    if (out) b->out = out;
    embd_item *res = realloc(b->res, cap * sizeof *res);
    if (res) b->res = res;
    if (!it || !ids || !lens || !nf || !out || !res) return -1;
    b->cap = cap;
    return 0;
}

/* Takes live items from the head, FIFO, up to the token budget (at least one). Caller holds mu. */
static size_t take_batch(embd_sched *s, batch_buf *b, size_t *tokens) {
    size_t n = 0;
    *tokens = 0;
    while (s->q_len) {
        qitem *it = q_at(s, 0); /* the ring holds only items of pending jobs */
        embd_job *j = it->job;
        size_t len = (size_t)j->lens[it->idx];
        if (n > 0 && *tokens + len > s->o.max_batch_tokens) break;
        if (batch_reserve(b, n + 1, s->n_embd)) break;
        b->items[n++] = *it;
        *tokens += len;
        j->queued--;
        j->queued_tokens -= len;
        j->inflight++;
        s->live_items--;
        s->live_tokens -= len;
        s->q_head = (s->q_head + 1) % s->q_cap;
        s->q_len--;
    }
    return n;
}

static void *sched_main(void *arg) {
    embd_sched *s = arg;
    batch_buf b = {0};
    pthread_mutex_lock(&s->mu);
    int lane = s->nthreads++; /* each thread drives one executor lane */
    for (;;) {
        double now = embd_now();
        if (now - s->last_sweep >= SWEEP_INTERVAL) sweep(s, now);
        if (!s->q_len) {
            if (s->stopping) break;
            wait_until(s, now + SWEEP_INTERVAL);
            continue;
        }
        if (s->stopping && !s->drain) {
            while (s->q_len) job_finish(s, q_at(s, 0)->job, EMBD_JOB_SHUTDOWN, true);
            continue;
        }
        if (s->x.active && !s->x.active(s->x.ud, lane)) { /* a parked lane: look again shortly */
            wait_until(s, now + 0.05);
            continue;
        }
        /* Coalesce: a lone small item waits briefly so that concurrent requests share a batch. */
        double ready_at = q_at(s, 0)->t_enq + s->o.max_batch_delay;
        if (!s->stopping && s->live_tokens < s->o.max_batch_tokens && now < ready_at) {
            double next_sweep = s->last_sweep + SWEEP_INTERVAL;
            wait_until(s, ready_at < next_sweep ? ready_at : next_sweep);
            continue;
        }
        size_t tokens, n = take_batch(s, &b, &tokens);
        if (n == 0) { /* out of memory for the batch buffers: fail the head job rather than spin */
            if (s->q_len) job_finish(s, q_at(s, 0)->job, EMBD_JOB_SHUTDOWN, true);
            continue;
        }
        /* more for another lane (all of them when some are parked: a signal could wake only those) */
        if (s->q_len) s->x.active ? pthread_cond_broadcast(&s->cv) : pthread_cond_signal(&s->cv);
        uint64_t seq = ++s->batch_seq;
        publish_depth(s);
        double t0 = embd_now();
        for (size_t i = 0; i < n; i++) {
            embd_job *j = b.items[i].job;
            double w = t0 - b.items[i].t_enq;
            if (w > j->queue_s) j->queue_s = w;
            b.ids[i] = j->ids[b.items[i].idx];
            b.lens[i] = (size_t)j->lens[b.items[i].idx];
            b.n_first[i] = j->n_first[b.items[i].idx];
        }
        pthread_mutex_unlock(&s->mu);

        if (s->metrics)
            for (size_t i = 0; i < n; i++) embd_metrics_queue_time(s->metrics, t0 - b.items[i].t_enq);
        char err[160];
        embd_batch eb = {.ids = b.ids, .lens = b.lens, .n_first = b.n_first, .n = n, .tokens = tokens,
                         .pooling = s->o.pooling, .pass_tokens = s->o.pass_tokens};
        int rc = s->x.run(s->x.ud, lane, &eb, b.out, b.res, err, sizeof err);
        double dt = embd_now() - t0;
        if (rc != 0)
            for (size_t i = 0; i < n; i++) {
                b.res[i] = (embd_item){.status = EMBD_ITEM_FAILED};
                snprintf(b.res[i].message, sizeof b.res[i].message, "inference failed: %.100s", err);
            }
        if (s->metrics) embd_metrics_batch(s->metrics, dt, n, tokens);

        pthread_mutex_lock(&s->mu);
        double rate = dt > 0 ? (double)tokens / dt : 0;
        s->tps = s->tps > 0 ? 0.8 * s->tps + 0.2 * rate : rate;
        for (size_t i = 0; i < n; i++) {
            embd_job *j = b.items[i].job;
            size_t idx = b.items[i].idx;
            j->inflight--;
            if (j->last_batch != seq) {
                j->last_batch = seq;
                j->infer_s += dt;
            }
            if (atomic_load(&j->state) == EMBD_JOB_PENDING) {
                memcpy(j->out + idx * (size_t)s->n_embd, b.out + i * (size_t)s->n_embd,
                       (size_t)s->n_embd * sizeof *j->out);
                j->res[idx] = b.res[i];
                if (j->queued == 0 && j->inflight == 0) job_finish(s, j, EMBD_JOB_DONE, true);
            } else if (j->inflight == 0) {
                job_unref(j); /* finished while this batch ran: the scheduler's reference */
            }
        }
    }
    pthread_mutex_unlock(&s->mu);
    free(b.items), free(b.ids), free(b.lens), free(b.n_first), free(b.out), free(b.res);
    return NULL;
}

embd_sched *embd_sched_new_exec(const embd_executor *x, const embd_sched_opts *o, embd_metrics *metrics, char *err,
                                size_t errlen) {
    if (o->max_batch_tokens < 1 || o->pass_tokens < 1 || o->max_queue_items < 1 || o->max_queue_tokens < 1) {
        embd_fail(err, errlen, "scheduler limits must be >= 1");
        return NULL;
    }
    if (x->lanes < 1 || x->width < 1 || !x->run) {
        embd_fail(err, errlen, "executor needs >= 1 lane and width");
        return NULL;
    }
    embd_sched *s = calloc(1, sizeof *s);
    pthread_t *th = calloc((size_t)x->lanes, sizeof *th);
    if (!s || !th) {
        free(s), free(th);
        embd_fail(err, errlen, "out of memory");
        return NULL;
    }
    s->x = *x;
    s->threads = th;
    s->o = *o;
    s->metrics = metrics;
    s->n_embd = x->width;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    int started = 0, rc = 0;
    for (; started < x->lanes; started++)
        if ((rc = pthread_create(&s->threads[started], NULL, sched_main, s))) break;
    if (rc) {
        embd_fail(err, errlen, "cannot start the scheduler thread: %s", strerror(rc));
        pthread_mutex_lock(&s->mu);
        s->stopping = true;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        for (int i = 0; i < started; i++) pthread_join(s->threads[i], NULL);
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        free(s->threads);
        free(s);
        return NULL;
    }
    return s;
}

embd_sched *embd_sched_new(embd_encoder *enc, const embd_sched_opts *o, embd_metrics *metrics, char *err,
                           size_t errlen) {
    embd_executor x;
    embd_executor_inproc(&x, enc);
    return embd_sched_new_exec(&x, o, metrics, err, errlen);
}

void embd_sched_stop(embd_sched *s, bool drain) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    bool joined = s->joined;
    s->stopping = true;
    s->drain = drain;
    s->joined = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (!joined)
        for (int i = 0; i < s->x.lanes; i++) pthread_join(s->threads[i], NULL);
}

void embd_sched_free(embd_sched *s) {
    if (!s) return;
    embd_sched_stop(s, false);
    free(s->q);
    free(s->threads);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
