/* Running one claimed spool job: items are read in chunks, embedded by whatever engine the caller
 * plugs in (the encoder directly in `embd worker`, the scheduler in `embd serve`), and appended to
 * the results with a durable checkpoint after every chunk. A job resumed after a crash truncates
 * both outputs back to its checkpoint and continues at the checkpoint's input offset, so no item
 * is missing or written twice. */
#ifndef EMBD_JOB_H
#define EMBD_JOB_H

#include <stdatomic.h>
#include <stddef.h>

#include "engine/embed.h"
#include "queue/spool.h"

/* Embeds n texts into out (n * n_embd floats, normalised when o->normalize) with per-item results
 * in res. Returns 0 when the chunk ran (items may still have failed), -1 when it could not run at
 * all (err set); the job then stops (if the runner's stop flag is set) or fails. */
typedef int (*embd_embed_fn)(void *ud, const char *const *texts, const size_t *lens, size_t n,
                             const embd_jobopts *o, float *out, embd_item *res, char *err, size_t errlen);

typedef struct {
    embd_embed_fn embed;
    void *ud;
    int n_embd;
    size_t chunk_items;  /* items per chunk and checkpoint (0: 64) */
    atomic_int *stop;    /* when set: finish the chunk, checkpoint, put the job back in the queue */
    const char *worker;  /* shown in progress */
} embd_runner;

typedef enum {
    EMBD_RUN_DONE,      /* every item has a result or an error record */
    EMBD_RUN_FAILED,    /* job-level failure (unreadable input, deadline passed, engine error) */
    EMBD_RUN_CANCELLED,
    EMBD_RUN_STOPPED,   /* stop flag: checkpointed and requeued */
    EMBD_RUN_LOST,      /* another process recovered the claim (we stalled); nothing more written */
} embd_run_outcome;

/* A growing byte buffer (records, one JSON per line). */
typedef struct {
    char *p;
    size_t n, cap;
} embd_buf;

/* One chunk of items, whatever the queue backend: raw JSONL lines in, result records
 * {"id","embedding","tokens","truncated"} and error records {"id","line","error"} out, in input
 * order. A line that is not an object with a string "text" becomes an error record. */
typedef struct embd_chunker embd_chunker;
embd_chunker *embd_chunker_new(size_t max_items, int n_embd);
void embd_chunker_free(embd_chunker *k);
/* Adds a non-blank line (modified in place; the id defaults to line_no). */
void embd_chunker_add(embd_chunker *k, char *line, size_t len, size_t line_no);
size_t embd_chunker_count(const embd_chunker *k);
bool embd_chunker_full(const embd_chunker *k);
/* Embeds what was added, appends the records, counts tokens and item errors, and empties the
 * chunk. -1 when the engine could not run the chunk (err set). */
int embd_chunker_run(embd_chunker *k, const embd_runner *r, const embd_jobopts *o, embd_buf *res, embd_buf *errs,
                     size_t *tokens, size_t *errors, char *err, size_t errlen);

/* Runs the claimed job to its end, keeps its heartbeat fresh meanwhile (own thread), and moves it
 * to its final folder (or back into the queue). err gets the reason of a failure. */
embd_run_outcome embd_job_run(embd_spool *sp, embd_claim *c, const embd_runner *r, char *err, size_t errlen);

#endif
