/* Where a scheduler batch runs: in this process (an encoder) or in supervised worker processes
 * (src/worker). The scheduler runs one thread per lane; each lane calls run() for one batch at a
 * time, lanes concurrently. */
#ifndef EMBD_EXECUTOR_H
#define EMBD_EXECUTOR_H

#include <stddef.h>
#include <stdint.h>

#include "engine/embed.h"

typedef struct {
    const int32_t *const *ids; /* n token sequences ([CLS] ... [SEP]) */
    const size_t *lens;
    const int32_t *n_first;    /* tokens of the first segment of a pair, 0 = single; NULL = all 0 */
    size_t n;
    size_t tokens;             /* sum of lens */
    embd_pooling pooling;      /* EMBD_POOL_UNSPECIFIED: the model's */
    size_t pass_tokens;        /* padded tokens per forward pass */
} embd_batch;

typedef struct embd_executor {
    int lanes; /* batches that may run at once (>= 1) */
    int width; /* floats per item written to out */
    /* Runs one batch: out gets n * width floats, res[i] each item's outcome. Returns 0 when the
     * batch ran (items may still have failed one by one), -1 with err when all of it failed. */
    int (*run)(void *ud, int lane, const embd_batch *b, float *out, embd_item *res, char *err, size_t errlen);
    /* Optional: whether a lane may take batches now (auto-scaled workers); NULL: always. Called
     * with the scheduler's lock held, so it must be quick and take no lock the run path holds. */
    int (*active)(void *ud, int lane);
    void *ud;
} embd_executor;

/* The in-process executor: one lane on enc (normalisation off, truncation on as a safety net).
 * enc must outlive the executor's use. */
void embd_executor_inproc(embd_executor *x, embd_encoder *enc);

#endif
