/* Bulk jobs inside `embd serve --spool DIR`: a runner thread claims spool jobs and feeds them to
 * the shared scheduler one chunk at a time, so interactive requests keep interleaving; the
 * /v1/jobs endpoints submit, inspect, stream and cancel them (api_jobs.c). */
#ifndef EMBD_SERVER_JOBS_H
#define EMBD_SERVER_JOBS_H

#include <microhttpd.h>
#include <stddef.h>

#include "engine/model.h"
#include "scheduler/sched.h"

typedef struct embd_jobs embd_jobs;

/* Opens (creating) the spool and starts the runner thread; stale_after: seconds without heartbeat
 * before a job of a dead process is taken over (0: the default, 30). NULL with err on failure. */
embd_jobs *embd_jobs_start(const char *spool_dir, double stale_after, embd_sched *sched, const embd_model *model,
                           char *err, size_t errlen);
/* The runner finishes its chunk, checkpoints and puts its job back in the queue; no new claims. */
void embd_jobs_request_stop(embd_jobs *j);
/* Stops (if needed), joins and frees; NULL is fine. Call while the scheduler still runs. */
void embd_jobs_free(embd_jobs *j);

/* Answers a request under /v1/jobs (j NULL: the server has no spool; 404 with a hint). Queues
 * the response on conn and returns its HTTP status, or 0 when no response could be queued. */
int embd_jobs_http(embd_jobs *j, struct MHD_Connection *conn, const char *method, const char *url, const char *body,
                   size_t len);

#endif
