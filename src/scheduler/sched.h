/* Dynamic batching: one queue of tokenized items from all requests, drained by one inference
 * thread per executor lane in token-budget batches. Requests never block a thread while they wait: the submitter
 * gets a callback when its job is finished, cancelled or timed out. */
#ifndef EMBD_SCHED_H
#define EMBD_SCHED_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/embed.h"
#include "scheduler/executor.h"

typedef struct embd_sched embd_sched;
typedef struct embd_metrics embd_metrics;

typedef struct {
    size_t max_batch_tokens;  /* real tokens taken from the queue per batch */
    size_t pass_tokens;       /* padded tokens per forward pass inside a batch */
    double max_batch_delay;   /* seconds the first item of a batch may wait for company */
    size_t max_queue_tokens;  /* backpressure: queued tokens ... */
    size_t max_queue_items;   /* ... and items beyond which submissions are refused */
    embd_pooling pooling;     /* EMBD_POOL_UNSPECIFIED: the model's */
} embd_sched_opts;

void embd_sched_opts_default(embd_sched_opts *o);

typedef enum {
    EMBD_JOB_PENDING = 0,
    EMBD_JOB_DONE,      /* every item has a vector or a per-item error */
    EMBD_JOB_TIMEOUT,   /* deadline passed while items were still queued; they were dropped */
    EMBD_JOB_CANCELLED, /* the client went away; queued items were dropped */
    EMBD_JOB_SHUTDOWN,  /* the scheduler stopped before the job ran */
} embd_job_state;

typedef struct embd_job embd_job;

/* Called once, from the scheduler thread (or from embd_sched_stop), when the job leaves the
 * pending state. Must be quick and must not call back into the scheduler. */
typedef void (*embd_job_done_fn)(embd_job *job, void *ud);
/* Polled by the scheduler for queued jobs: false means the client is gone. May be NULL. */
typedef bool (*embd_job_alive_fn)(void *ud);

/* For a caller that blocks until its job finishes: pass embd_job_waiter_done as the job's done
 * callback with the waiter as ud, then embd_job_waiter_wait. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
} embd_job_waiter;

#define EMBD_JOB_WAITER_INIT {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .done = false}
void embd_job_waiter_done(embd_job *job, void *waiter);
void embd_job_waiter_wait(embd_job_waiter *w);

/* A job owns copies of n token sequences. deadline is absolute (embd_now() clock), 0 for none. */
embd_job *embd_job_new(size_t n, int n_embd, double deadline, embd_job_done_fn done, embd_job_alive_fn alive,
                       void *ud);
/* Takes ownership of ids (malloc'd, len tokens). Call for every item before submitting. */
void embd_job_set_item(embd_job *job, size_t i, int32_t *ids, int len);
/* Tokens of item i's first segment (a cross-encoder pair); 0 (the default): one segment. */
void embd_job_set_first(embd_job *job, size_t i, int32_t n_first);
/* The same for a cross-encoder pair whose first segment has n_first tokens. */
void embd_job_set_pair(embd_job *job, size_t i, int32_t *ids, int len, int n_first);
embd_job_state embd_job_state_get(embd_job *job);
size_t embd_job_size(const embd_job *job);
size_t embd_job_tokens(const embd_job *job);
const float *embd_job_vector(const embd_job *job, size_t i); /* raw pooled, not normalised (scores: logits) */
const embd_item *embd_job_item(const embd_job *job, size_t i);
double embd_job_queue_seconds(const embd_job *job);     /* longest wait of one of its items */
double embd_job_inference_seconds(const embd_job *job); /* summed duration of its batches */
/* The submitter's reference. The job is freed when the submitter and the scheduler let go. */
void embd_job_release(embd_sched *s, embd_job *job);

/* Batches run on x (copied; x->ud must outlive the scheduler), one thread per lane. Vectors are
 * x->width floats; embd_job_new's n_embd must be the same. */
embd_sched *embd_sched_new_exec(const embd_executor *x, const embd_sched_opts *o, embd_metrics *metrics, char *err,
                                size_t errlen);
/* In-process: embd_sched_new_exec with embd_executor_inproc(enc). */
embd_sched *embd_sched_new(embd_encoder *enc, const embd_sched_opts *o, embd_metrics *metrics, char *err,
                           size_t errlen);

enum { EMBD_SUBMIT_OK = 0, EMBD_SUBMIT_FULL = 1, EMBD_SUBMIT_TOO_BIG = 2, EMBD_SUBMIT_STOPPED = 3 };
/* Queues the job's items. FULL: the queue is over its limits now (retry later; *retry_after is a
 * guess in seconds); TOO_BIG: the job alone exceeds the limits; STOPPED: shutting down. The done
 * callback is only ever called for jobs that were accepted. */
int embd_sched_submit(embd_sched *s, embd_job *job, double *retry_after);
/* Drops the job's queued items (items already in a running batch finish unseen). */
void embd_sched_cancel(embd_sched *s, embd_job *job);

typedef struct {
    size_t queued_items, queued_tokens;
    double tokens_per_second; /* recent inference rate, 0 when unknown */
} embd_sched_stats;
void embd_sched_stats_get(embd_sched *s, embd_sched_stats *st);

/* Stops the thread after the queue drains (drain=true) or after the running batch, ending queued
 * jobs with EMBD_JOB_SHUTDOWN. Submissions are refused from then on; cancel and release still work
 * until embd_sched_free. Idempotent. */
void embd_sched_stop(embd_sched *s, bool drain);
/* Stops (without draining) if needed and frees the scheduler. Jobs must have been released. */
void embd_sched_free(embd_sched *s);

#endif
