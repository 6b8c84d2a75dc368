/* The memory governor: a byte budget for the inference workers, a model of one worker's peak
 * memory as a function of the tokens in its forward pass (calibrated at start-up on the loaded
 * model, corrected by every measured peak), and the adaptive pass size that keeps the predicted
 * peak under the budget: it grows after successes and shrinks on pressure, with hysteresis.
 * Pure bookkeeping plus the budget's sources (/proc/meminfo, cgroup); thread-safe. */
#ifndef EMBD_GOVERNOR_H
#define EMBD_GOVERNOR_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    size_t budget;     /* bytes all workers together may use */
    int workers;
    size_t min_tokens; /* adaptive pass size bounds (padded tokens per forward pass) */
    size_t max_tokens;
} embd_gov_opts;

typedef struct {
    embd_gov_opts o;
    pthread_mutex_t mu;
    double base, slope;   /* one worker's predicted peak = base + slope * pass tokens (bytes) */
    size_t limit;         /* current adaptive pass size */
    int streak;           /* calm batches since the last change */
    size_t peak;          /* highest measured worker peak */
    unsigned grows, shrinks;
} embd_gov;

/* Budget = max_memory when given, else min(cgroup limit, percent of RAM). *why says which. */
size_t embd_mem_budget(size_t max_memory, double percent, char *why, size_t whylen);

void embd_gov_init(embd_gov *g, const embd_gov_opts *o);
void embd_gov_destroy(embd_gov *g);
size_t embd_gov_share(const embd_gov *g); /* bytes per worker */
/* Two measured (pass tokens, peak bytes) points of one worker. */
void embd_gov_calibrate(embd_gov *g, size_t t1, size_t p1, size_t t2, size_t p2);
double embd_gov_predict(embd_gov *g, size_t tokens);
/* 0, or -1 with err when one sequence of n_ctx tokens would not fit the per-worker share. */
int embd_gov_check(embd_gov *g, int n_ctx, char *err, size_t errlen);
/* The pass size for a batch whose longest sequence has max_len tokens: the adaptive limit, cut
 * further until the predicted peak fits the share, never below max_len (one sequence). */
size_t embd_gov_pass_tokens(embd_gov *g, size_t max_len);
/* A batch ran with pass size `tokens` and peaked at `peak` bytes. Returns +1 when the limit
 * grew, -1 when it shrank (pressure), 0 otherwise. */
int embd_gov_observe(embd_gov *g, size_t tokens, size_t peak);
/* A worker was killed for memory: the limit drops to the minimum. */
void embd_gov_pressure(embd_gov *g);
size_t embd_gov_limit(embd_gov *g);

#endif
