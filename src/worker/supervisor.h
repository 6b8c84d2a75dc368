/* Supervised inference workers: one worker process per executor lane, started with fork+exec of
 * this binary (`embd __worker`, posix_spawn of /proc/self/exe), watched over its socket (EOF when
 * it dies, a deadline on heartbeats when it hangs), restarted when lost. A batch whose worker was
 * lost is re-run split in halves; an item whose worker dies on it alone `poison_after` times fails
 * by itself ("poison input") and everything else completes. */
#ifndef EMBD_SUPERVISOR_H
#define EMBD_SUPERVISOR_H

#include <stddef.h>

#include "scheduler/executor.h"

typedef struct embd_metrics embd_metrics;
typedef struct embd_sup embd_sup;

typedef struct {
    int workers;               /* processes (= executor lanes), >= 1 */
    const char *exe;           /* binary to exec; NULL: /proc/self/exe */
    const char *model_path;
    const char *tokenizer_json; /* may be NULL */
    int threads;               /* compute threads per worker; 0: usable cores / workers (>= 1) */
    int n_embd;                /* what HELLO must report (the server loaded the same model) */
    int width;                 /* floats per item: n_embd, or a cross-encoder's labels */
    double heartbeat_interval; /* seconds between a worker's heartbeats */
    double heartbeat_timeout;  /* seconds of silence before a busy worker counts as hung */
    double start_timeout;      /* seconds a starting worker has to say HELLO */
    int poison_after;          /* deaths on one item alone before it fails as poison input */
    embd_metrics *metrics;     /* may be NULL */
    /* memory governor (src/worker/governor.h): 0 = off */
    size_t mem_budget;         /* bytes for the server and its workers together */
    size_t min_batch, max_batch; /* bounds of the adaptive forward-pass size, in tokens */
    char mem_budget_why[64];   /* where the budget came from, for the log */
    bool calibrate;            /* measure at start-up (else learn from the first batches' peaks) */
    /* auto-scaling (src/worker/scaler.h): start min_workers, grow up to `workers` while all are
     * busy and CPU and memory allow, shrink when idle; threads = cores / running workers */
    bool autoscale;
    int min_workers;           /* >= 1 */
    double scale_interval;     /* seconds between decisions */
} embd_sup_opts;

void embd_sup_opts_default(embd_sup_opts *o);

/* Starts every worker and waits for their HELLO; with a memory budget, calibrates the governor on
 * worker 0. NULL with err when a worker cannot start or the budget cannot hold one sequence. */
embd_sup *embd_sup_new(const embd_sup_opts *o, char *err, size_t errlen);
/* The executor whose lanes are the workers (valid until embd_sup_free). */
void embd_sup_executor(embd_sup *s, embd_executor *x);
int embd_sup_threads(const embd_sup *s); /* compute threads per worker (now, with auto-scaling) */
int embd_sup_workers(const embd_sup *s); /* workers running now (lanes taking batches) */
/* Stops the workers (SHUTDOWN, then SIGKILL after a grace) and reaps them: no orphans. Call
 * after the scheduler stopped using the executor. */
void embd_sup_free(embd_sup *s);

#endif
