#include "collections/ingest_jobs.h"

#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/sys.h"

enum {
    KEEP_JOBS = 256,     /* finished jobs beyond this many are forgotten, oldest first */
    MAX_ERRORS = 1000,   /* per-document errors kept per job */
    BATCH_DOCS = 16,     /* one ingest call (one store transaction) per batch */
    BATCH_CHUNKS = 128,
};

typedef enum { JOB_QUEUED, JOB_RUNNING, JOB_DONE, JOB_FAILED, JOB_CANCELLED } job_state;
static const char *const STATE[] = {"queued", "running", "done", "failed", "cancelled"};

typedef struct job {
    char id[40], coll[72];
    job_state state;
    atomic_int stop; /* cancel (or shutdown) */
    embd_doc_input *docs;
    char **meta;
    json_t *keep;
    size_t n;
    /* progress */
    size_t docs_done, ingested, unchanged, failed, chunks_total, chunks_done, chunks_stored, enriched, degraded;
    size_t enrich_base;
    atomic_size_t enrich_live; /* chunks through enrichment: finished batches, and the running one */
    char enrich_error[256], error[512];
    json_t *errors; /* [{id, error}] */
    double created, started, finished; /* unix seconds */
    struct job *next;                  /* newest first */
} job;

struct embd_ingest_jobs {
    const embd_coll_ctx *c;
    void (*on_stats)(void *, const embd_ingest_stats *);
    void *ud;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    atomic_int quit;
    job *jobs;
};

static double wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void job_free(job *j) {
    for (size_t i = 0; j->meta && i < j->n; i++) free(j->meta[i]);
    free(j->meta);
    free(j->docs);
    json_decref(j->keep);
    json_decref(j->errors);
    free(j);
}

/* Drops the job's inputs once it has ended: only its report stays. */
static void job_release_inputs(job *j) {
    for (size_t i = 0; j->meta && i < j->n; i++) free(j->meta[i]);
    free(j->meta), free(j->docs);
    json_decref(j->keep);
    j->meta = NULL, j->docs = NULL, j->keep = NULL;
}

static void on_enriched(void *ud, size_t done) {
    job *j = ud; /* written by the runner, read by status requests */
    atomic_store(&j->enrich_live, done);
}

static void add_error(embd_ingest_jobs *J, job *j, const char *id, const char *msg) {
    pthread_mutex_lock(&J->mu);
    j->failed++;
    if (json_array_size(j->errors) < MAX_ERRORS)
        json_array_append_new(j->errors, json_pack("{s:s, s:s}", "id", id, "error", msg));
    pthread_mutex_unlock(&J->mu);
}

/* One ingest call over docs[0..n); per-document retries when a batch fails. Returns -1 when the
 * whole job must stop (the collection is gone or belongs to another model, or a stop). */
static int run_batch(embd_ingest_jobs *J, job *j, embd_doc_input *docs, size_t n, const size_t *plan) {
    embd_ingest_opts o = {.stop = &j->stop, .on_enriched = on_enriched, .ud = j};
    embd_ingest_stats st;
    char err[512];
    atomic_store(&j->enrich_live, 0);
    int rc = embd_coll_ingest_ex(J->c, j->coll, docs, n, &o, &st, err, sizeof err);
    if (rc && n > 1 && rc != EMBD_STORE_NOTFOUND && rc != EMBD_STORE_MISMATCH && !atomic_load(&j->stop)) {
        for (size_t i = 0; i < n; i++)
            if (run_batch(J, j, docs + i, 1, plan + i)) return -1;
        return 0;
    }
    if (J->on_stats && !rc) J->on_stats(J->ud, &st);
    pthread_mutex_lock(&J->mu);
    j->docs_done += n;
    for (size_t i = 0; i < n; i++) j->chunks_done += plan[i];
    if (!rc) {
        j->ingested += st.documents, j->unchanged += st.unchanged, j->chunks_stored += st.chunks;
        j->enriched += st.enriched, j->degraded += st.degraded;
        if (st.enrich_error[0]) snprintf(j->enrich_error, sizeof j->enrich_error, "%s", st.enrich_error);
    }
    j->enrich_base += st.enriched + st.degraded;
    atomic_store(&j->enrich_live, 0);
    pthread_mutex_unlock(&J->mu);
    if (!rc) return 0;
    if (rc == EMBD_STORE_NOTFOUND || rc == EMBD_STORE_MISMATCH || atomic_load(&j->stop)) {
        pthread_mutex_lock(&J->mu);
        snprintf(j->error, sizeof j->error, "%s", err);
        j->docs_done -= n; /* not done: the job stops here */
        for (size_t i = 0; i < n; i++) j->chunks_done -= plan[i];
        pthread_mutex_unlock(&J->mu);
        return -1;
    }
    add_error(J, j, docs[0].id, err);
    return 0;
}

static void run_job(embd_ingest_jobs *J, job *j) {
    size_t *plan = calloc(j->n ? j->n : 1, sizeof *plan);
    char err[512] = "";
    int rc = plan ? embd_coll_plan(J->c, j->coll, j->docs, j->n, plan, err, sizeof err) : -1;
    if (!plan) snprintf(err, sizeof err, "out of memory");
    pthread_mutex_lock(&J->mu);
    for (size_t i = 0; !rc && i < j->n; i++) j->chunks_total += plan[i];
    if (rc) snprintf(j->error, sizeof j->error, "%s", err);
    pthread_mutex_unlock(&J->mu);
    for (size_t i = 0; !rc && i < j->n;) {
        if (atomic_load(&j->stop)) {
            rc = -1;
            break;
        }
        size_t b = 0, chunks = 0;
        while (i + b < j->n && b < BATCH_DOCS && (b == 0 || chunks + plan[i + b] <= BATCH_CHUNKS)) chunks += plan[i + b++];
        rc = run_batch(J, j, j->docs + i, b, plan + i);
        i += b;
    }
    free(plan);
    pthread_mutex_lock(&J->mu);
    j->state = atomic_load(&j->stop) ? JOB_CANCELLED : rc ? JOB_FAILED : JOB_DONE;
    if (j->state == JOB_CANCELLED && !j->error[0]) snprintf(j->error, sizeof j->error, "cancelled");
    j->finished = wall();
    job_release_inputs(j);
    pthread_mutex_unlock(&J->mu);
}

static job *oldest_queued(embd_ingest_jobs *J) {
    job *q = NULL;
    for (job *j = J->jobs; j; j = j->next)
        if (j->state == JOB_QUEUED) q = j; /* the list is newest first */
    return q;
}

static void *runner(void *arg) {
    embd_ingest_jobs *J = arg;
    pthread_mutex_lock(&J->mu);
    while (!atomic_load(&J->quit)) {
        job *j = oldest_queued(J);
        if (!j) {
            pthread_cond_wait(&J->cv, &J->mu);
            continue;
        }
        j->state = JOB_RUNNING;
        j->started = wall();
        pthread_mutex_unlock(&J->mu);
        run_job(J, j);
        pthread_mutex_lock(&J->mu);
    }
    pthread_mutex_unlock(&J->mu);
    return NULL;
}

embd_ingest_jobs *embd_ingest_jobs_new(const embd_coll_ctx *c, void (*on_stats)(void *, const embd_ingest_stats *),
                                       void *ud, char *err, size_t errlen) {
    embd_ingest_jobs *J = calloc(1, sizeof *J);
    if (!J) {
        embd_fail(err, errlen, "out of memory");
        return NULL;
    }
    J->c = c, J->on_stats = on_stats, J->ud = ud;
    pthread_mutex_init(&J->mu, NULL);
    pthread_cond_init(&J->cv, NULL);
    if (pthread_create(&J->thread, NULL, runner, J)) {
        pthread_mutex_destroy(&J->mu);
        pthread_cond_destroy(&J->cv);
        free(J);
        embd_fail(err, errlen, "cannot start the ingest job thread");
        return NULL;
    }
    return J;
}

void embd_ingest_jobs_free(embd_ingest_jobs *J) {
    if (!J) return;
    pthread_mutex_lock(&J->mu);
    atomic_store(&J->quit, 1);
    for (job *j = J->jobs; j; j = j->next) atomic_store(&j->stop, 1);
    pthread_cond_signal(&J->cv);
    pthread_mutex_unlock(&J->mu);
    pthread_join(J->thread, NULL);
    for (job *j = J->jobs, *nx; j; j = nx) nx = j->next, job_free(j);
    pthread_mutex_destroy(&J->mu);
    pthread_cond_destroy(&J->cv);
    free(J);
}

/* Forgets the oldest finished jobs beyond KEEP_JOBS (under the lock). */
static void trim(embd_ingest_jobs *J) {
    size_t n = 0;
    for (job **p = &J->jobs; *p;) {
        job *j = *p;
        bool ended = j->state != JOB_QUEUED && j->state != JOB_RUNNING;
        if (ended && ++n > KEEP_JOBS) {
            *p = j->next;
            job_free(j);
            continue;
        }
        p = &j->next;
    }
}

int embd_ingest_jobs_submit(embd_ingest_jobs *J, const char *coll, embd_doc_input *docs, char **meta, size_t n,
                            json_t *keep, char id[40], char *err, size_t errlen) {
    job *j = calloc(1, sizeof *j);
    unsigned char r[8];
    if (!j || !(j->errors = json_array()) || RAND_bytes(r, sizeof r) != 1) {
        if (j) json_decref(j->errors);
        free(j);
        for (size_t i = 0; meta && i < n; i++) free(meta[i]);
        free(meta), free(docs);
        json_decref(keep);
        return embd_fail(err, errlen, "out of memory");
    }
    snprintf(j->id, sizeof j->id, "ingest-");
    for (int i = 0; i < 8; i++) snprintf(j->id + 7 + 2 * i, 3, "%02x", r[i]);
    snprintf(j->coll, sizeof j->coll, "%s", coll);
    j->docs = docs, j->meta = meta, j->n = n, j->keep = keep;
    j->created = wall();
    snprintf(id, 40, "%s", j->id);
    pthread_mutex_lock(&J->mu);
    j->next = J->jobs;
    J->jobs = j;
    trim(J);
    pthread_cond_signal(&J->cv);
    pthread_mutex_unlock(&J->mu);
    return 0;
}

static json_t *job_json(const job *j) {
    const size_t enriching = j->enrich_base + atomic_load(&j->enrich_live);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:{s:I, s:I, s:I, s:I, s:I}, s:{s:I, s:I, s:I},"
                          " s:{s:I, s:I, s:I}, s:O, s:f}",
                          "object", "ingest_job", "id", j->id, "collection", j->coll, "state", STATE[j->state],
                          "documents", "done", (json_int_t)j->docs_done, "total", (json_int_t)j->n, "ingested",
                          (json_int_t)j->ingested, "unchanged", (json_int_t)j->unchanged, "failed", (json_int_t)j->failed,
                          "chunks", "done", (json_int_t)j->chunks_done, "total", (json_int_t)j->chunks_total, "stored",
                          (json_int_t)j->chunks_stored, "enrichment", "done", (json_int_t)enriching, "enriched",
                          (json_int_t)j->enriched, "degraded", (json_int_t)j->degraded, "errors", j->errors, "created",
                          j->created);
    if (!o) return NULL;
    if (j->enrich_error[0]) json_object_set_new(json_object_get(o, "enrichment"), "last_error", json_string(j->enrich_error));
    if (j->error[0]) json_object_set_new(o, "error", json_string(j->error));
    if (j->started > 0) json_object_set_new(o, "started", json_real(j->started));
    if (j->finished > 0) json_object_set_new(o, "finished", json_real(j->finished));
    return o;
}

static job *find(embd_ingest_jobs *J, const char *coll, const char *id) {
    for (job *j = J->jobs; j; j = j->next)
        if (!strcmp(j->id, id) && !strcmp(j->coll, coll)) return j;
    return NULL;
}

json_t *embd_ingest_jobs_get(embd_ingest_jobs *J, const char *coll, const char *id) {
    pthread_mutex_lock(&J->mu);
    job *j = find(J, coll, id);
    json_t *o = j ? job_json(j) : NULL;
    pthread_mutex_unlock(&J->mu);
    return o;
}

json_t *embd_ingest_jobs_list(embd_ingest_jobs *J, const char *coll) {
    json_t *arr = json_array();
    pthread_mutex_lock(&J->mu);
    for (job *j = J->jobs; arr && j; j = j->next)
        if (!strcmp(j->coll, coll)) json_array_append_new(arr, job_json(j));
    pthread_mutex_unlock(&J->mu);
    return arr;
}

int embd_ingest_jobs_cancel(embd_ingest_jobs *J, const char *coll, const char *id) {
    pthread_mutex_lock(&J->mu);
    job *j = find(J, coll, id);
    int rc = !j ? -1 : j->state == JOB_QUEUED || j->state == JOB_RUNNING;
    if (rc == 1) atomic_store(&j->stop, 1);
    if (rc == 1 && j->state == JOB_QUEUED) {
        j->state = JOB_CANCELLED;
        snprintf(j->error, sizeof j->error, "cancelled");
        j->finished = wall();
        job_release_inputs(j);
    }
    pthread_mutex_unlock(&J->mu);
    return rc;
}
