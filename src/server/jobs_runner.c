/* The server's job runner: spool jobs through the shared scheduler, one chunk at a time. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "queue/job.h"
#include "server/jobs_internal.h"
#include "util/sys.h"

/* Tokenizes as the HTTP API does (right truncation to the context), so a job's vectors are the
 * ones /v1/embeddings gives for the same texts. */
static int sched_embed(void *ud, const char *const *texts, const size_t *lens, size_t n, const embd_jobopts *o,
                       float *out, embd_item *res, char *err, size_t errlen) {
    embd_jobs *J = ud;
    const int H = J->model->info.n_embd, ctx = J->model->info.n_ctx;
    size_t *map = calloc(n ? n : 1, sizeof *map);
    bool *trunc = calloc(n ? n : 1, sizeof *trunc);
    int32_t **ids = calloc(n ? n : 1, sizeof *ids);
    int *idl = calloc(n ? n : 1, sizeof *idl);
    embd_tokens tk = {0};
    size_t k = 0;
    int rc = -1;
    embd_job *job = NULL;
    embd_job_waiter w = EMBD_JOB_WAITER_INIT;
    if (!map || !trunc || !ids || !idl) {
        embd_fail(err, errlen, "out of memory");
        goto out;
    }
    memset(out, 0, n * (size_t)H * sizeof *out);
    for (size_t i = 0; i < n; i++) {
        res[i] = (embd_item){.status = EMBD_ITEM_OK};
        size_t bad = 0;
        int t = embd_tokenizer_encode(J->model->tok, texts[i], lens[i], o->truncate ? (size_t)ctx : 0, &tk, &bad);
        if (t == EMBD_TOK_EUTF8) {
            res[i].status = EMBD_ITEM_BAD_UTF8;
            snprintf(res[i].message, sizeof res[i].message, "text is not valid UTF-8 (byte %zu)", bad);
        } else if (t != EMBD_TOK_OK) {
            res[i].status = EMBD_ITEM_FAILED;
            snprintf(res[i].message, sizeof res[i].message, "out of memory while tokenizing");
        } else if (tk.n > (size_t)ctx) {
            res[i].status = EMBD_ITEM_TOO_LONG;
            snprintf(res[i].message, sizeof res[i].message, "%zu tokens, more than the limit of %d (truncation is off)",
                     tk.n, ctx);
        } else if ((ids[k] = malloc(tk.n * sizeof **ids))) {
            memcpy(ids[k], tk.ids, tk.n * sizeof **ids);
            idl[k] = (int)tk.n;
            trunc[k] = tk.truncated;
            map[k++] = i;
        } else {
            res[i].status = EMBD_ITEM_FAILED;
            snprintf(res[i].message, sizeof res[i].message, "out of memory");
        }
    }
    if (k == 0) {
        rc = 0;
        goto out;
    }
    job = embd_job_new(k, H, 0, embd_job_waiter_done, NULL, &w);
    if (!job) {
        embd_fail(err, errlen, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < k; i++) embd_job_set_item(job, i, ids[i], idl[i]), ids[i] = NULL;
    for (;;) { /* a full queue means interactive traffic: wait our turn */
        double retry = 0;
        int s = embd_sched_submit(J->sched, job, &retry);
        if (s == EMBD_SUBMIT_OK) break;
        if (s == EMBD_SUBMIT_STOPPED || atomic_load(&J->stop)) {
            embd_fail(err, errlen, "the server is shutting down");
            goto out;
        }
        if (s == EMBD_SUBMIT_TOO_BIG) {
            embd_fail(err, errlen, "a chunk of %zu items exceeds the scheduler's queue limits", k);
            goto out;
        }
        usleep(retry > 0 && retry < 0.5 ? (useconds_t)(retry * 1e6) : 50000);
    }
    embd_job_waiter_wait(&w);
    if (embd_job_state_get(job) != EMBD_JOB_DONE) {
        embd_fail(err, errlen, "the scheduler stopped before the chunk ran");
        goto out;
    }
    for (size_t i = 0; i < k; i++) {
        const embd_item *it = embd_job_item(job, i);
        embd_item *r = &res[map[i]];
        *r = *it;
        r->truncated = trunc[i];
        if (it->status != EMBD_ITEM_OK) continue;
        float *dst = out + map[i] * (size_t)H;
        memcpy(dst, embd_job_vector(job, i), (size_t)H * sizeof *dst);
        if (o->normalize) embd_l2_normalize(dst, H); /* as the API's finish_vector */
    }
    rc = 0;
out:
    if (job) embd_job_release(J->sched, job);
    for (size_t i = 0; ids && i < n; i++) free(ids[i]);
    free(map), free(trunc), free(ids), free(idl);
    embd_tokens_free(&tk);
    return rc;
}

static void *runner_main(void *arg) {
    embd_jobs *J = arg;
    embd_runner r = {.embed = sched_embed, .ud = J, .n_embd = J->model->info.n_embd, .chunk_items = 64,
                     .stop = &J->stop, .worker = J->sp.token};
    char err[512];
    while (!atomic_load(&J->stop)) {
        embd_spool_recover(&J->sp);
        embd_claim c;
        int got = embd_spool_claim(&J->sp, &c, err, sizeof err);
        if (got == 1) {
            double t0 = embd_now();
            embd_run_outcome o = embd_job_run(&J->sp, &c, &r, err, sizeof err);
            static const char *const what[] = {"done", "failed", "cancelled", "stopped; requeued", "lost to another worker"};
            fprintf(stderr, "embd: job %s: %s in %.2f s%s%s\n", c.id, what[o], embd_now() - t0,
                    o == EMBD_RUN_FAILED ? ": " : "", o == EMBD_RUN_FAILED ? err : "");
            embd_claim_free(&c);
            continue;
        }
        if (got < 0) fprintf(stderr, "embd: jobs: %s\n", err);
        pthread_mutex_lock(&J->mu); /* idle: wait for a submission, a stop, or the next poll */
        if (!atomic_load(&J->stop) && !J->kick) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 250000000;
            if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
            pthread_cond_timedwait(&J->cv, &J->mu, &ts);
        }
        J->kick = false;
        pthread_mutex_unlock(&J->mu);
    }
    return NULL;
}

void embd_jobs_kick(embd_jobs *J) {
    pthread_mutex_lock(&J->mu);
    J->kick = true;
    pthread_cond_signal(&J->cv);
    pthread_mutex_unlock(&J->mu);
}

embd_jobs *embd_jobs_start(const char *spool_dir, double stale_after, embd_sched *sched, const embd_model *model,
                           char *err, size_t errlen) {
    embd_jobs *J = calloc(1, sizeof *J);
    if (!J) {
        embd_fail(err, errlen, "out of memory");
        return NULL;
    }
    if (embd_spool_open(&J->sp, spool_dir, true, err, errlen)) {
        free(J);
        return NULL;
    }
    if (stale_after > 0) J->sp.stale_after = stale_after;
    J->sched = sched;
    J->model = model;
    pthread_mutex_init(&J->mu, NULL);
    pthread_cond_init(&J->cv, NULL);
    if (pthread_create(&J->thread, NULL, runner_main, J)) {
        embd_spool_close(&J->sp);
        free(J);
        embd_fail(err, errlen, "cannot start the job runner thread");
        return NULL;
    }
    return J;
}

void embd_jobs_request_stop(embd_jobs *J) {
    if (!J) return;
    atomic_store(&J->stop, 1);
    embd_jobs_kick(J);
}

void embd_jobs_free(embd_jobs *J) {
    if (!J) return;
    embd_jobs_request_stop(J);
    pthread_join(J->thread, NULL);
    pthread_mutex_destroy(&J->mu);
    pthread_cond_destroy(&J->cv);
    embd_spool_close(&J->sp);
    free(J);
}
