/* Bulk jobs in Redis, for fleets that outgrow one shared disk. Same job model and records as the
 * spool directory (spool.h), different storage:
 *
 *   <P>:jobs                stream of {"id"}; consumer group "workers" hands each entry to one worker
 *   <P>:job:<id>            hash: state, total, options (JSON), owner, lines (input lines consumed =
 *                           the checkpoint), items_done, errors, tokens, rate_tokens_s, eta_s, error
 *   <P>:job:<id>:items      list of the input's JSONL lines
 *   <P>:job:<id>:results    list of result records, in input order
 *   <P>:job:<id>:errors     list of error records
 *
 * A worker owns a job while the hash's owner field names it. Each chunk's records and the new
 * checkpoint are committed by one Lua script that first checks the owner: atomic, so a resumed job
 * never loses or repeats an item, and a stalled worker whose job was taken over writes nothing.
 * Liveness: the owner re-claims its own pending stream entry every stale/4 s (resetting its idle
 * time); an entry idle longer than the stale timeout belonged to a dead worker and is taken over
 * with XAUTOCLAIM. A graceful stop re-adds the job to the stream at once. P is "embd". */
#ifndef EMBD_REDISQ_H
#define EMBD_REDISQ_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "queue/job.h"
#include "queue/spool.h"

typedef struct embd_redisq embd_redisq;

/* url: redis://HOST[:PORT][/DB] */
embd_redisq *embd_redisq_open(const char *url, char *err, size_t errlen);
void embd_redisq_close(embd_redisq *q);

/* Stores the items (JSONL from src) and queues the job. Fails when the id is taken. */
int embd_redisq_submit(embd_redisq *q, const char *id, FILE *src, const embd_jobopts *o, char *err, size_t errlen);
/* The status object of spool.h, or NULL for an unknown job. */
json_t *embd_redisq_status(embd_redisq *q, const char *id);
/* Writes the result (or error) records to out. -1: unknown job or a Redis error. */
int embd_redisq_results(embd_redisq *q, const char *id, bool errors, FILE *out);
/* The state the job was in (queued: cancelled now; running: asked to stop after its chunk). */
embd_jstate embd_redisq_cancel(embd_redisq *q, const char *id);

/* Runs jobs until *r->stop, max_jobs (0: no limit), or, with exit_when_idle, until nothing is
 * queued or pending. Returns the number of jobs run, -1 on a Redis error (err). */
long embd_redisq_work(embd_redisq *q, const embd_runner *r, double stale_after, double poll, bool exit_when_idle,
                      long max_jobs, char *err, size_t errlen);

#endif
