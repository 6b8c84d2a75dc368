/* Ingest jobs: large or enriched ingests run on one background thread, a batch of documents at
 * a time, so the HTTP request that submitted them answers at once (202) and clients poll the
 * job's progress (documents and chunks done / total, enrichment outcome, per-document errors).
 * Jobs live in memory: they survive to completion but not a server restart (the documents they
 * had stored by then stay stored; a re-submit skips those whose text is unchanged). */
#ifndef EMBD_INGEST_JOBS_H
#define EMBD_INGEST_JOBS_H

#include <jansson.h>

#include "collections/ingest.h"

typedef struct embd_ingest_jobs embd_ingest_jobs;

/* c must outlive the jobs. on_stats (may be NULL) sees each batch's stats (metrics). */
embd_ingest_jobs *embd_ingest_jobs_new(const embd_coll_ctx *c, void (*on_stats)(void *ud, const embd_ingest_stats *st),
                                       void *ud, char *err, size_t errlen);
/* Stops the runner (the running job ends "cancelled" after its batch) and frees everything. */
void embd_ingest_jobs_free(embd_ingest_jobs *J);

/* Queues docs[0..n) for collection coll. Takes ownership of docs, of meta[i] (malloc'd, may be
 * NULL) and of keep (the JSON the documents' strings point into) also on failure. id gets the
 * job id. Returns 0, or -1 with err (out of memory). */
int embd_ingest_jobs_submit(embd_ingest_jobs *J, const char *coll, embd_doc_input *docs, char **meta, size_t n,
                            json_t *keep, char id[40], char *err, size_t errlen);
/* The job's state and progress, NULL when coll has no job id. */
json_t *embd_ingest_jobs_get(embd_ingest_jobs *J, const char *coll, const char *id);
/* All jobs of coll, newest first. */
json_t *embd_ingest_jobs_list(embd_ingest_jobs *J, const char *coll);
/* Asks a queued or running job to stop: 1 if it will, 0 if it had already ended, -1 if unknown. */
int embd_ingest_jobs_cancel(embd_ingest_jobs *J, const char *coll, const char *id);

#endif
