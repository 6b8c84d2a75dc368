/* Durable bulk jobs in a spool directory shared by any number of embd processes, on one machine
 * or on several over NFS. State lives only in the file system, so a process may die at any point
 * and another one carries on.
 *
 *   DIR/incoming/<id>.json              spec being written (then renamed into queue/)
 *   DIR/inputs/<id>.jsonl               items submitted inline ({"id","text"} per line)
 *   DIR/queue/<P>-<usec>-<id>.json      queued; P = 0 high, 1 normal, 2 low: name order is
 *                                       priority, then submission time (FIFO)
 *   DIR/running/<same name>             claimed; DIR/running/<id>.hb is its owner's heartbeat
 *   DIR/done|failed|cancelled/<name>    finished
 *   DIR/cancel/<id>                     cancel request for a running job (seen between chunks)
 *   DIR/results/<id>.jsonl              vectors, in input order (only items that succeeded)
 *   DIR/results/<id>.errors.jsonl       {"id","line","error"} per failed item
 *   DIR/results/<id>.ckpt               checkpoint: bytes of input consumed, bytes of both outputs
 *   DIR/results/<id>.progress.json      progress for status/watch (advisory, not fsync'd)
 *
 * File-system semantics relied on (POSIX; what holds on local file systems and NFSv3/v4):
 *  - rename(2) within one file system is atomic: a name moves exactly once, so of several
 *    processes renaming queue/X -> running/X exactly one succeeds and the others get ENOENT.
 *    That is the claim. Over NFS a lost reply can make the winner's retransmitted rename fail
 *    with ENOENT too (the server's duplicate-request cache normally prevents it): the job then
 *    sits in running/ with no heartbeat and is recovered as stale below; it is never run twice
 *    at once nor lost. Cross-directory rename needs all directories on one file system.
 *  - rename over an existing name replaces it atomically: heartbeat and checkpoint files are
 *    written as a temporary file, fsync(2)'d and renamed, so a reader sees the old or the new
 *    one, never a torn one.
 *  - Durability: data is fsync'd before the checkpoint that covers it, and a directory is
 *    fsync'd after a rename into it (a rename is only durable once its directory is). NFS
 *    close-to-open consistency gives other clients the data after our close/fsync.
 *  - Staleness compares mtimes with the mtime of a freshly touched DIR/.clock, i.e. with the
 *    file server's clock, so skew between machines does not matter (NFS sets mtime on the
 *    server). A heartbeat older than the stale timeout means the owner died; the job is renamed
 *    back into queue/ (again exactly once) and whoever claims it resumes from the checkpoint.
 *  - A stalled (not dead) owner that loses its claim notices before it writes its next chunk:
 *    it checks that the heartbeat still holds its token. Pick a stale timeout well above the
 *    longest chunk time (the default 30 s is, for chunks of 64 items).
 *  - NFS attribute caching can delay seeing a rename by a few seconds (actimeo): that only
 *    delays a claim, it cannot double one. Do not use `nolock`-style caches that reorder rename
 *    and write; mount with the defaults (sync metadata ops). */
#ifndef EMBD_SPOOL_H
#define EMBD_SPOOL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef enum {
    EMBD_JS_QUEUED = 0,
    EMBD_JS_RUNNING,
    EMBD_JS_DONE,
    EMBD_JS_FAILED,
    EMBD_JS_CANCELLED,
    EMBD_JS_UNKNOWN, /* no such job */
} embd_jstate;

const char *embd_jstate_name(embd_jstate s);
embd_jstate embd_jstate_parse(const char *s); /* EMBD_JS_UNKNOWN when not a state name */

typedef enum { EMBD_PRIO_HIGH = 0, EMBD_PRIO_NORMAL = 1, EMBD_PRIO_LOW = 2 } embd_prio;

typedef struct {
    bool normalize;      /* L2 (default true) */
    bool truncate;       /* over-long items are cut (default true) or become item errors */
    embd_prio priority;
    double deadline;     /* unix seconds; 0 none. A job still unfinished then fails. */
    bool npy;            /* also write results/<id>.npy (float32 rows of the items that succeeded) */
} embd_jobopts;

void embd_jobopts_default(embd_jobopts *o);
/* Reads options from a JSON object (keys normalize, truncate, priority, deadline, format); a
 * missing key keeps the default. -1 with a message naming the bad key. */
int embd_jobopts_from_json(embd_jobopts *o, json_t *j, char *err, size_t errlen);

typedef struct {
    char *dir;
    double stale_after; /* seconds without heartbeat before a running job is recovered */
    char token[96];     /* this process's claim token: host:pid:random */
} embd_spool;

/* Opens (creating the folders when create) a spool directory. */
int embd_spool_open(embd_spool *sp, const char *dir, bool create, char *err, size_t errlen);
void embd_spool_close(embd_spool *sp);

/* Job ids: 1-64 of [A-Za-z0-9_-], not starting with '-'. */
bool embd_spool_valid_id(const char *id);
void embd_spool_new_id(char out[33]);

/* Writes inputs/<id>.jsonl durably from buf (len bytes) or, when buf is NULL, from src. */
int embd_spool_write_input(embd_spool *sp, const char *id, const char *buf, size_t len, FILE *src, char *err,
                           size_t errlen);
/* Queues job id reading items from input_path (absolute, or NULL: inputs/<id>.jsonl). Counts its
 * items for progress. Fails when the id is already used. */
int embd_spool_enqueue(embd_spool *sp, const char *id, const char *input_path, const embd_jobopts *o, char *err,
                       size_t errlen);

/* A claimed job. */
typedef struct {
    char name[256]; /* file name in running/ */
    char id[72];
    json_t *spec;   /* the spec file's content */
    embd_jobopts opts;
    size_t total;
    char input[4096];
} embd_claim;

/* Takes the first queued job (priority, then age). 1 claimed, 0 queue empty, -1 error. */
int embd_spool_claim(embd_spool *sp, embd_claim *c, char *err, size_t errlen);
void embd_claim_free(embd_claim *c);
/* Refreshes the claim's heartbeat. 0 ok, 1 the claim is no longer ours (recovered by another
 * process after we stalled): stop writing at once. */
int embd_spool_heartbeat(embd_spool *sp, const embd_claim *c);
/* Moves a claimed job to its final folder (DONE, FAILED, CANCELLED) or, for QUEUED, back into the
 * queue (graceful stop: another process resumes it from the checkpoint). */
int embd_spool_finish(embd_spool *sp, embd_claim *c, embd_jstate st, char *err, size_t errlen);
/* Puts running jobs whose heartbeat is older than stale_after back into the queue. Returns how
 * many it recovered. */
int embd_spool_recover(embd_spool *sp);

/* Where a job is; path (if non-NULL) gets its spec file's path. */
embd_jstate embd_spool_find(embd_spool *sp, const char *id, char *path, size_t pathlen);
/* Cancels: a queued job moves to cancelled/ at once, a running one gets a cancel request that its
 * owner honours after the current chunk. Returns the state the job was in (UNKNOWN: no job). */
embd_jstate embd_spool_cancel(embd_spool *sp, const char *id);
bool embd_spool_cancel_requested(embd_spool *sp, const char *id);
/* {"id","state","priority","total","items_done","errors","tokens","rate_tokens_s","eta_s",
 *  "worker","error","created","options"} or NULL for an unknown id. */
json_t *embd_spool_status(embd_spool *sp, const char *id);
/* Array of status objects, optionally for one state only (EMBD_JS_UNKNOWN: all), oldest first. */
json_t *embd_spool_list(embd_spool *sp, embd_jstate only);

/* Paths of a job's files. */
void embd_spool_path(const embd_spool *sp, char *out, size_t outlen, const char *sub, const char *id,
                     const char *suffix);
/* Bytes of the results (or, with errors, the error records) file that a checkpoint covers: what a
 * reader may stream while the job runs; the whole file once it is done. */
long long embd_spool_results_bytes(embd_spool *sp, const char *id, bool errors);

/* Helpers shared with the job runner. */
int embd_spool_fsync_dir(const char *dir);
/* Writes path atomically (temp + fsync + rename + fsync dir). */
int embd_spool_write_atomic(const char *path, const char *data, size_t len, bool durable);
json_t *embd_spool_load_json(const char *path);

#endif
