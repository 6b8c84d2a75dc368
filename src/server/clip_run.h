/* The CLIP request pipeline: phase 1 gathers every image of a request (concurrent downloads,
 * data URIs), decodes and preprocesses them; phase 2 runs one forward pass per tower for all the
 * good items. Requests that wait for the model at the same time share one pass. Blocking: the
 * server runs it off its HTTP threads. */
#ifndef EMBD_CLIP_RUN_H
#define EMBD_CLIP_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/clip.h"
#include "image/fetch.h"
#include "server/api_clip.h"
#include "server/metrics.h"

typedef struct {
    embd_fetch_opts fetch;
    size_t max_pixels;      /* decoded image size limit (decompression bombs) */
    bool truncate;          /* texts longer than the context are cut (else 413) */
    size_t max_pass_images; /* images one pass may carry, from any number of requests (0: 16) */
    size_t max_pass_texts;  /* texts likewise (0: 64) */
    int decoders;           /* images decoded at once over all requests (0: one per core); each may
                             * hold w x h x 6 bytes, so this bounds decoding memory */
    embd_metrics *metrics;  /* NULL, or where passes (embd_batch_*) and items (embd_clip_*) are counted */
} embd_clip_run_opts;

typedef struct embd_clip_runner embd_clip_runner;

/* NULL when out of memory or the pass thread cannot start. Free only once no embd_clip_run is
 * in progress. */
embd_clip_runner *embd_clip_runner_new(embd_clip *clip, const embd_clip_run_opts *o);
void embd_clip_runner_free(embd_clip_runner *x);
/* Images decoded at once (opts.decoders, its default resolved). */
int embd_clip_runner_decoders(const embd_clip_runner *x);

/* What bounds one request: the server's request timeout and the client's presence. */
typedef struct {
    double deadline;         /* embd_now() time; 0: none. Downloads are cut at it; past it, no pass runs */
    bool (*alive)(void *ud); /* NULL, or false once the client has gone: no pass runs for it */
    void *ud;
} embd_clip_call;

/* Fills res[0..r->n) (vectors in vecs: r->n * dim floats). Returns 0, or -1 with e when the
 * request as a whole failed (every item is then unanswered): 504 past the deadline, 499 when the
 * client left, 500 when the model failed. */
int embd_clip_run(embd_clip_runner *x, const embd_clip_req *r, const embd_clip_call *call, embd_clip_result *res,
                  float *vecs, embd_api_error *e);

/* Input tokens of the request's texts as the text tower sees them (truncated to its context when
 * truncation is on; texts that fail to tokenize count 0), for tokens-per-minute rate limits. */
size_t embd_clip_run_tokens(embd_clip_runner *x, const embd_clip_req *r);

#endif
