/* Worker auto-scaling policy (`embd serve --workers auto`): a pure function of what the supervisor
 * measured over the last interval, so it is unit-tested without processes or clocks.
 * Grow by one worker when every running worker was busy, the machine's CPU use and its trend two
 * intervals ahead stay under the high mark (hysteresis: once over it, no growth until under the
 * low mark), and the memory budget holds one more worker; shrink by one when the newest worker
 * sat idle long enough. Threads per worker = cores / workers, so threads x workers <= cores. */
#ifndef EMBD_SCALER_H
#define EMBD_SCALER_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    double cpu_high, cpu_low; /* fractions of all cores: stop growing at high, resume under low */
    double busy_min;          /* a worker counts as busy above this fraction of the interval */
    double idle_s;            /* the newest worker idle this long: stop it */
    int min_workers, max_workers;
} embd_scale_opts;

void embd_scale_opts_default(embd_scale_opts *o); /* 0.69 / 0.59, 0.8, 10 s, 1..cores */

typedef struct {
    double cpu;               /* machine CPU use over the last interval, 0..1 */
    int workers;              /* running now */
    double min_busy;          /* the least busy running worker's busy fraction, 0..1 */
    double newest_idle_s;     /* how long the newest worker has had nothing to do */
    size_t mem_used, mem_per_worker, mem_budget; /* bytes; budget 0: no memory limit */
} embd_scale_in;

typedef struct {
    double prev_cpu;          /* < 0 before the first sample */
    bool blocked;             /* over the high mark, waiting to fall under the low one */
    double predicted;         /* cpu two intervals ahead, by the last decision */
} embd_scale_state;

void embd_scale_state_init(embd_scale_state *st);
/* +1 (start a worker), -1 (stop the newest), 0; why gets a short reason for the log. */
int embd_scale_decide(const embd_scale_opts *o, embd_scale_state *st, const embd_scale_in *in, const char **why);
/* Compute threads each of n workers gets out of cores (>= 1). */
int embd_scale_threads(int cores, int workers);

#endif
