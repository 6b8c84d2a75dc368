#include "server/server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/clip.h"
#include "engine/embed.h"
#include "server/api.h"
#include "server/guard.h"
#include "server/json_depth.h"
#include "server/jobs.h"
#include "server/api_clip.h"
#include "server/api_collections.h"
#include "server/clip_run.h"
#include "server/metrics.h"
#include "server/ratelimit.h"
#include "util/sys.h"
#include "worker/governor.h"
#include "worker/supervisor.h"

enum { ST_LOADING, ST_READY, ST_DRAINING };

typedef struct {
    embd_server_opts o;
    struct MHD_Daemon *d;
    embd_model *model; /* a text encoder or cross-encoder, or else: */
    embd_clip *clip;   /* a CLIP model, run in this process by clip_run (no scheduler, no workers) */
    embd_clip_runner *clip_run;
    embd_clip_limits clim;
    _Atomic int clip_inflight; /* CLIP requests admitted and not yet answered (--max-image-requests) */
    _Atomic int clip_threads;  /* clip_thread instances still running (shutdown waits for them) */
    embd_encoder *enc; /* in-process inference (--workers 0) */
    embd_device dev;   /* where inference runs (the workers' device; this process stays off the GPU) */
    embd_encoder_stats dev_seen; /* in-process GPU events already counted in the metrics */
    pthread_mutex_t dev_mu;
    embd_sup *sup;     /* else: supervised worker processes */
    int threads;       /* compute threads in all */
    embd_sched *sched;
    embd_metrics *metrics;
    embd_auth *auth;
    embd_ratelimit *rl;
    embd_guard *guard;
    embd_coll_api *coll; /* NULL without --data-dir */
    embd_api_limits lim;
    embd_jobs *jobs; /* --spool: bulk jobs */
    char model_name[256];
    _Atomic int state;
    _Atomic long active; /* requests between their first byte and their completion */
} server;

typedef enum {
    R_EMBEDDINGS, R_EMBED, R_RERANK, R_V1_RERANK, R_TOKENIZE, R_INFO, R_HEALTH, R_METRICS, R_JOBS, R_COLLECTIONS,
    R_EMBED_IMAGE, R_EMBED_IMAGE_BATCH, R_EMBED_TEXT, R_OTHER
} route;

static const struct {
    const char *path;
    const char *method;
} ROUTES[] = {
    [R_EMBEDDINGS] = {"/v1/embeddings", "POST"}, [R_EMBED] = {"/embed", "POST"},
    [R_RERANK] = {"/rerank", "POST"},            [R_V1_RERANK] = {"/v1/rerank", "POST"},
    [R_TOKENIZE] = {"/tokenize", "POST"},        [R_INFO] = {"/info", "GET"},
    [R_HEALTH] = {"/health", "GET"},             [R_METRICS] = {"/metrics", "GET"},
    [R_JOBS] = {"/v1/jobs", NULL}, /* a prefix; api_jobs.c routes and checks methods */
    [R_COLLECTIONS] = {"/v1/collections", NULL}, /* a prefix; api_collections.c routes the rest */
    [R_EMBED_IMAGE] = {"/v1/embed/image", "POST"}, [R_EMBED_IMAGE_BATCH] = {"/v1/embed/image-batch", "POST"},
    [R_EMBED_TEXT] = {"/v1/embed/text", "POST"},
    [R_OTHER] = {"other", NULL},
};

typedef struct {
    server *s;
    struct MHD_Connection *conn;
    route r;
    const char *method, *url;
    double t0;
    int fd;
    char *body;
    size_t len, cap;
    bool too_big;
    int status;
    /* an embedding request in the scheduler */
    pthread_mutex_t mu;
    bool suspended, finished;
    embd_embed_req er;
    bool have_er;
    embd_rerank_req rr;
    bool have_rr;
    embd_job *job;
    size_t *map; /* job item -> request item */
    /* a CLIP request on its own thread (clip_thread) */
    embd_clip_req cr;
    bool have_cr, clip_started;
    int clip_status;
    char *clip_body;
    embd_principal who;
    bool sig_pending; /* a signed request: its HMAC is checked once the body is complete */
} req;

static route route_of(const char *url) {
    for (int r = 0; r < R_OTHER; r++)
        if (!strcmp(url, ROUTES[r].path)) return (route)r;
    if (!strncmp(url, "/v1/jobs/", 9)) return R_JOBS;
    if (!strncmp(url, "/v1/collections/", 16)) return R_COLLECTIONS;
    return R_OTHER;
}

/* ---- responses ---------------------------------------------------------------------------- */

static enum MHD_Result send_body(req *q, int status, const char *type, char *body, const char *const *headers) {
    if (!body) { /* the body could not be built: out of memory */
        static const char oom[] = "{\"error\":{\"type\":\"out_of_memory\",\"message\":\"out of memory\"}}";
        body = strdup(oom);
        status = 503;
        type = "application/json";
        if (!body) return MHD_NO;
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    for (size_t i = 0; headers && headers[i]; i += 2) MHD_add_response_header(resp, headers[i], headers[i + 1]);
    if (atomic_load(&q->s->state) == ST_DRAINING) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    q->status = status;
    enum MHD_Result rc = MHD_queue_response(q->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static enum MHD_Result send_json(req *q, int status, char *json) { return send_body(q, status, "application/json", json, NULL); }

static enum MHD_Result send_error(req *q, const embd_api_error *e, const char *const *headers) {
    return send_body(q, e->status, "application/json", embd_api_error_json(e), headers);
}

static enum MHD_Result fail(req *q, int status, const char *type, const char *fmt, const char *arg) {
    embd_api_error e;
    embd_api_fail(&e, status, type, -1, fmt, arg);
    return send_error(q, &e, NULL);
}

/* ---- who is calling (server/auth.c, server/ratelimit.c) ---------------------------------- */

static embd_auth_req auth_req(req *q, const char *url, const char *method) {
    struct MHD_Connection *c = q->conn;
    return (embd_auth_req){
        .method = method,
        .path = url,
        .authorization = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
        .timestamp = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Embd-Timestamp"),
        .signature = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Embd-Signature"),
    };
}

static enum MHD_Result auth_fail(req *q, const embd_api_error *e) {
    const char *h401[] = {MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"embd\"", NULL};
    const char *h503[] = {MHD_HTTP_HEADER_RETRY_AFTER, "1", NULL};
    return send_error(q, e, e->status == 401 ? h401 : e->status == 503 ? h503 : NULL);
}

static enum MHD_Result too_many(req *q, double wait, const char *what, double limit, const char *unit) {
    char ra[32], lim[64];
    snprintf(ra, sizeof ra, "%.0f", wait < 1 ? 1 : wait + 0.5);
    snprintf(lim, sizeof lim, "%s (%g %s)", what, limit, unit);
    const char *hdr[] = {MHD_HTTP_HEADER_RETRY_AFTER, ra, NULL};
    embd_api_error e;
    embd_api_fail(&e, 429, "rate_limited", -1, "rate limit of %s for this key reached; retry in %s s", lim, ra);
    return send_error(q, &e, hdr);
}

static double caller_rps(const req *q) { return q->who.rps >= 0 ? q->who.rps : q->s->o.rate_rps; }
static double caller_tpm(const req *q) { return q->who.tpm >= 0 ? q->who.tpm : q->s->o.rate_tpm; }

/* From the headers alone, so that a refused upload is never read. MHD_YES/NO once answered. */
static int check_caller(req *q, const char *url, const char *method, enum MHD_Result *answered) {
    embd_auth_req ar = auth_req(q, url, method);
    embd_api_error e;
    int rc = embd_auth_check_headers(q->s->auth, &ar, (int64_t)time(NULL), &q->who, &e);
    if (rc == EMBD_AUTH_FAIL) return *answered = auth_fail(q, &e), -1;
    q->sig_pending = rc == EMBD_AUTH_NEED_BODY;
    if (q->sig_pending) return 0; /* charged once the signature holds: a forger must not drain it */
    double wait = embd_ratelimit_request(q->s->rl, q->who.name, caller_rps(q), embd_now());
    if (wait > 0) return *answered = too_many(q, wait, "requests", caller_rps(q), "per second"), -1;
    return 0;
}

static int check_signed(req *q, const char *url, const char *method, enum MHD_Result *answered) {
    embd_auth_req ar = auth_req(q, url, method);
    embd_api_error e;
    q->sig_pending = false;
    if (embd_auth_check_body(q->s->auth, &ar, q->body, q->len, (int64_t)time(NULL), &q->who, &e))
        return *answered = auth_fail(q, &e), -1;
    double wait = embd_ratelimit_request(q->s->rl, q->who.name, caller_rps(q), embd_now());
    if (wait > 0) return *answered = too_many(q, wait, "requests", caller_rps(q), "per second"), -1;
    return 0;
}

/* Input tokens are known only after tokenization: the caller's tokens/min bucket is charged then.
 * 0, or the seconds to wait. */
static double charge_tokens(req *q, int32_t *const *ids, const int *lens, size_t n, double *tpm) {
    if ((*tpm = caller_tpm(q)) <= 0) return 0;
    double toks = 0;
    for (size_t i = 0; i < n; i++) toks += ids[i] ? lens[i] : 0;
    return embd_ratelimit_tokens(q->s->rl, q->who.name, *tpm, toks, embd_now());
}

static void *socket_ctx(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **ctx, enum MHD_ConnectionNotificationCode code) {
    server *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        embd_guard_opened(s->guard, ci ? ci->connect_fd : -1, ctx, embd_now());
    } else {
        embd_guard_closed(s->guard, ctx);
    }
}

/* ---- the scheduler side of a request ----------------------------------------------------- */

/* The request's work is done (scheduler job or CLIP thread): its connection resumes if parked. */
static void finish_request(req *q) {
    pthread_mutex_lock(&q->mu);
    q->finished = true;
    if (q->suspended) {
        q->suspended = false;
        MHD_resume_connection(q->conn);
    }
    pthread_mutex_unlock(&q->mu);
}

static void job_done(embd_job *job, void *ud) {
    (void)job;
    finish_request(ud);
}

/* A suspended connection is not watched by libmicrohttpd, so the scheduler asks. */
static bool client_alive(void *ud) {
    req *q = ud;
    if (q->fd < 0) return true;
    struct pollfd p = {.fd = q->fd, .events = POLLRDHUP};
    return !(poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)));
}

/* x-*-time headers, as TEI sends them. */
static void timing_headers(req *q, size_t tokens, char bufs[4][32], const char *hdr[9]) {
    snprintf(bufs[0], 32, "%.3f", embd_job_queue_seconds(q->job) * 1e3);
    snprintf(bufs[1], 32, "%.3f", embd_job_inference_seconds(q->job) * 1e3);
    snprintf(bufs[2], 32, "%.3f", (embd_now() - q->t0) * 1e3);
    snprintf(bufs[3], 32, "%zu", tokens);
    const char *names[] = {"x-queue-time", "x-inference-time", "x-total-time", "x-compute-tokens"};
    for (int i = 0; i < 4; i++) hdr[2 * i] = names[i], hdr[2 * i + 1] = bufs[i];
    hdr[8] = NULL;
}

static enum MHD_Result respond_rerank(req *q) {
    const size_t n = embd_job_size(q->job);
    float *logits = calloc(n ? n : 1, sizeof *logits);
    if (!logits) return send_json(q, 503, NULL);
    size_t tokens = 0;
    for (size_t i = 0; i < n; i++) {
        const embd_item *it = embd_job_item(q->job, i);
        if (it->status != EMBD_ITEM_OK) {
            free(logits);
            embd_api_error e;
            embd_api_fail(&e, 500, "inference_failed", (long)i, "document %zu: %s", i, it->message);
            return send_error(q, &e, NULL);
        }
        logits[i] = embd_job_vector(q->job, i)[0];
        tokens += (size_t)it->n_tokens;
    }
    char *body = embd_api_rerank_response(&q->rr, logits, tokens, q->s->model_name);
    free(logits);
    char bufs[4][32];
    const char *hdr[9];
    timing_headers(q, tokens, bufs, hdr);
    return send_body(q, body ? 200 : 503, "application/json", body, hdr);
}

static enum MHD_Result respond_job(req *q) {
    server *s = q->s;
    embd_job_state st = embd_job_state_get(q->job);
    if (st == EMBD_JOB_TIMEOUT)
        return fail(q, 504, "timeout", "the request did not finish within %s", "the server's request timeout");
    if (st == EMBD_JOB_CANCELLED) /* the client left: nobody reads this, the metrics say 499 */
        return fail(q, 499, "cancelled", "%s", "the client closed the connection");
    if (st != EMBD_JOB_DONE) return fail(q, 503, "shutting_down", "%s", "the server is shutting down");
    if (q->have_rr) return respond_rerank(q);
    const int H = s->model->info.n_embd;
    embd_item_result *items = calloc(q->er.n ? q->er.n : 1, sizeof *items);
    if (!items) return send_json(q, 503, NULL);
    for (size_t i = 0; i < q->er.n; i++) items[i] = (embd_item_result){.ok = false, .message = "not run"};
    size_t tokens = 0;
    for (size_t k = 0; k < embd_job_size(q->job); k++) {
        const embd_item *it = embd_job_item(q->job, k);
        embd_item_result *r = &items[q->map[k]];
        r->ok = it->status == EMBD_ITEM_OK;
        r->vec = embd_job_vector(q->job, k);
        r->n_tokens = it->n_tokens;
        r->truncated = it->truncated;
        r->message = it->message;
        tokens += (size_t)it->n_tokens;
    }
    embd_api_error e;
    char *body = embd_api_embed_response(&q->er, items, H, s->model_name, &e);
    free(items);
    char bufs[4][32];
    const char *hdr[9];
    timing_headers(q, tokens, bufs, hdr);
    if (!body) return send_error(q, &e, hdr);
    return send_body(q, 200, "application/json", body, hdr);
}

static enum MHD_Result submit_job(req *q);

static enum MHD_Result handle_embed(req *q, json_t *root, bool bad_utf8) {
    server *s = q->s;
    embd_api_error e;
    embd_shape shape = q->r == R_EMBEDDINGS ? EMBD_SHAPE_OPENAI : EMBD_SHAPE_TEI;
    if (embd_api_embed_parse(root, shape, &s->lim, &q->er, &e)) {
        json_decref(root);
        return send_error(q, &e, NULL);
    }
    q->have_er = true;
    size_t n = q->er.n;
    int32_t **ids = calloc(n ? n : 1, sizeof *ids);
    int *lens = calloc(n ? n : 1, sizeof *lens);
    q->map = calloc(n ? n : 1, sizeof *q->map);
    if (!ids || !lens || !q->map) {
        free(ids), free(lens);
        return send_json(q, 503, NULL);
    }
    long runnable = embd_api_embed_tokenize(&q->er, s->model->tok, s->lim.n_ctx, bad_utf8, ids, lens, &e);
    double tpm = 0, wait = runnable >= 0 ? charge_tokens(q, ids, lens, n, &tpm) : 0;
    if (wait > 0) runnable = -1;
    if (runnable >= 0) {
        double deadline = s->o.request_timeout > 0 ? q->t0 + s->o.request_timeout : 0;
        q->job = embd_job_new((size_t)runnable, s->model->info.n_embd, deadline, job_done, client_alive, q);
        if (!q->job) runnable = -1, embd_api_fail(&e, 503, "out_of_memory", -1, "out of memory");
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!ids[i]) continue;
        if (runnable >= 0) {
            q->map[k] = i;
            embd_job_set_item(q->job, k++, ids[i], lens[i]);
        } else {
            free(ids[i]);
        }
    }
    free(ids), free(lens);
    if (wait > 0) return too_many(q, wait, "input tokens", tpm, "per minute");
    if (runnable < 0) return send_error(q, &e, NULL);
    return submit_job(q);
}

/* Queues q->job; answers at once when it is refused or already finished, else suspends the
 * connection until the scheduler is done with it. */
static enum MHD_Result submit_job(req *q) {
    server *s = q->s;
    embd_api_error e;
    double retry = 0;
    pthread_mutex_lock(&q->mu);
    int rc = embd_sched_submit(s->sched, q->job, &retry);
    if (rc == EMBD_SUBMIT_OK && s->metrics) embd_metrics_input_tokens(s->metrics, embd_job_tokens(q->job));
    if (rc == EMBD_SUBMIT_OK && !q->finished && embd_job_state_get(q->job) == EMBD_JOB_PENDING) {
        MHD_suspend_connection(q->conn);
        q->suspended = true;
        pthread_mutex_unlock(&q->mu);
        return MHD_YES;
    }
    pthread_mutex_unlock(&q->mu);
    if (rc == EMBD_SUBMIT_OK) return respond_job(q);
    if (rc == EMBD_SUBMIT_FULL) {
        char ra[32];
        snprintf(ra, sizeof ra, "%.0f", retry);
        const char *hdr[] = {MHD_HTTP_HEADER_RETRY_AFTER, ra, NULL};
        embd_api_fail(&e, 429, "overloaded", -1, "the queue is full (%zu items, %zu tokens at most); retry in %s s",
                      s->o.sched.max_queue_items, s->o.sched.max_queue_tokens, ra);
        return send_error(q, &e, hdr);
    }
    if (rc == EMBD_SUBMIT_TOO_BIG) {
        embd_api_fail(&e, 413, "request_too_large", -1,
                      "the request has %zu tokens in %zu items; the queue holds at most %zu tokens and %zu items",
                      embd_job_tokens(q->job), embd_job_size(q->job), s->o.sched.max_queue_tokens,
                      s->o.sched.max_queue_items);
        return send_error(q, &e, NULL);
    }
    return fail(q, 503, "shutting_down", "%s", "the server is shutting down");
}

static enum MHD_Result handle_rerank(req *q, json_t *root, bool bad_utf8) {
    server *s = q->s;
    embd_api_error e;
    embd_rerank_shape shape = q->r == R_RERANK ? EMBD_RERANK_TEI : EMBD_RERANK_COHERE;
    if (embd_api_rerank_parse(root, shape, bad_utf8, &s->lim, &q->rr, &e)) {
        json_decref(root);
        return send_error(q, &e, NULL);
    }
    q->have_rr = true;
    const size_t n = q->rr.n;
    int32_t **ids = calloc(n, sizeof *ids);
    int *lens = calloc(n, sizeof *lens), *first = calloc(n, sizeof *first);
    if (!ids || !lens || !first) {
        free(ids), free(lens), free(first);
        return send_json(q, 503, NULL);
    }
    int rc = embd_api_rerank_tokenize(&q->rr, s->model, s->lim.n_ctx, ids, lens, first, &e);
    double tpm = 0, wait = rc ? 0 : charge_tokens(q, ids, lens, n, &tpm);
    if (wait > 0) rc = -1;
    if (!rc) {
        double deadline = s->o.request_timeout > 0 ? q->t0 + s->o.request_timeout : 0;
        q->job = embd_job_new(n, s->model->info.n_labels, deadline, job_done, client_alive, q);
        if (!q->job) rc = embd_api_fail(&e, 503, "out_of_memory", -1, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        if (!rc) embd_job_set_pair(q->job, i, ids[i], lens[i], first[i]);
        else free(ids[i]);
    }
    free(ids), free(lens), free(first);
    if (wait > 0) return too_many(q, wait, "input tokens", tpm, "per minute");
    if (rc) return send_error(q, &e, NULL);
    return submit_job(q);
}

/* ---- CLIP models ------------------------------------------------------------------------- */

/* Downloads can take the download timeout and a pass seconds: never on an HTTP thread. */
static void *clip_thread(void *arg) {
    req *q = arg;
    server *s = q->s;
    const int dim = embd_clip_get_info(s->clip)->dim;
    embd_clip_result *res = calloc(q->cr.n, sizeof *res);
    float *vecs = malloc(q->cr.n * (size_t)dim * sizeof *vecs);
    embd_api_error e;
    char *body = NULL;
    if (!res || !vecs) embd_api_fail(&e, 503, "out_of_memory", -1, "out of memory");
    else if (!embd_clip_run(s->clip_run, &q->cr,
                            &(embd_clip_call){.deadline = s->o.request_timeout > 0 ? q->t0 + s->o.request_timeout : 0,
                                              .alive = client_alive, .ud = q},
                            res, vecs, &e))
        body = embd_api_clip_response(&q->cr, res, dim, s->model_name, &e);
    free(res), free(vecs);
    /* read by the HTTP thread only after finish_request's lock */
    q->clip_status = body ? 200 : e.status;
    q->clip_body = body ? body : embd_api_error_json(&e);
    /* a client that has its answer may send the next request at once: admit it */
    atomic_fetch_sub(&s->clip_inflight, 1);
    finish_request(q);
    atomic_fetch_sub(&s->clip_threads, 1);
    return NULL;
}

static enum MHD_Result handle_clip(req *q, json_t *root, bool bad_utf8) {
    server *s = q->s;
    embd_api_error e;
    embd_clip_route cr = q->r == R_EMBED_IMAGE         ? EMBD_CLIP_IMAGE
                         : q->r == R_EMBED_IMAGE_BATCH ? EMBD_CLIP_IMAGE_BATCH
                         : q->r == R_EMBED_TEXT        ? EMBD_CLIP_TEXT
                                                       : EMBD_CLIP_OPENAI;
    if (embd_api_clip_parse(root, cr, bad_utf8, &s->clim, &q->cr, &e)) {
        json_decref(root);
        return send_error(q, &e, NULL);
    }
    q->have_cr = true;
    /* images count as requests only; text tokens also draw on the tokens-per-minute bucket */
    double tpm = caller_tpm(q);
    if (tpm > 0) {
        double wait = embd_ratelimit_tokens(s->rl, q->who.name, tpm, (double)embd_clip_run_tokens(s->clip_run, &q->cr),
                                            embd_now());
        if (wait > 0) return too_many(q, wait, "input tokens", tpm, "per minute");
    }
    if (atomic_fetch_add(&s->clip_inflight, 1) >= s->o.max_image_requests) {
        atomic_fetch_sub(&s->clip_inflight, 1);
        const char *hdr[] = {MHD_HTTP_HEADER_RETRY_AFTER, "1", NULL};
        embd_api_fail(&e, 429, "overloaded", -1, "%d requests are already running; retry in 1 s",
                      s->o.max_image_requests);
        return send_error(q, &e, hdr);
    }
    pthread_attr_t at;
    pthread_t th;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_mutex_lock(&q->mu);
    atomic_fetch_add(&s->clip_threads, 1);
    q->clip_started = !pthread_create(&th, &at, clip_thread, q);
    pthread_attr_destroy(&at);
    if (!q->clip_started) {
        pthread_mutex_unlock(&q->mu);
        atomic_fetch_sub(&s->clip_threads, 1);
        atomic_fetch_sub(&s->clip_inflight, 1);
        return fail(q, 503, "overloaded", "%s", "cannot start a request thread");
    }
    if (!q->finished) {
        MHD_suspend_connection(q->conn);
        q->suspended = true;
        pthread_mutex_unlock(&q->mu);
        return MHD_YES;
    }
    pthread_mutex_unlock(&q->mu);
    char *body = q->clip_body;
    q->clip_body = NULL;
    return send_body(q, q->clip_status, "application/json", body, NULL);
}

/* What a CLIP model does not serve, and the CLIP routes on other models. true when answered. */
static bool clip_wrong_model(req *q, enum MHD_Result *answered) {
    server *s = q->s;
    bool clip_route = q->r == R_EMBED_IMAGE || q->r == R_EMBED_IMAGE_BATCH || q->r == R_EMBED_TEXT;
    if (!s->clip && clip_route)
        *answered = fail(q, 400, "not_a_clip_model",
                         "model '%s' is not a CLIP model: images and /v1/embed/text need one (embd convert a CLIPModel)",
                         s->model_name);
    else if (s->clip && !clip_route && q->r != R_EMBEDDINGS)
        *answered = fail(q, 400, "clip_model",
                         "model '%s' is a CLIP model: use /v1/embed/image, /v1/embed/image-batch, /v1/embed/text or "
                         "/v1/embeddings",
                         s->model_name);
    else
        return false;
    return true;
}

/* ---- small endpoints --------------------------------------------------------------------- */

/* --pooling if given, else the model's. */
static const char *served_pooling(const server *s) {
    embd_pooling p = s->o.sched.pooling;
    return embd_pooling_name(p == EMBD_POOL_UNSPECIFIED ? s->model->info.pooling : p);
}

static enum MHD_Result handle_info_clip(req *q) {
    server *s = q->s;
    const embd_clip_info *ci = embd_clip_get_info(s->clip);
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:I, s:I, s:I, s:f, s:i, s:s, "
                          "s:s, s:s, s:b, s:{s:I, s:f, s:I, s:i, s:i, s:b}}",
                          "model_id", s->model_name, "model_path", s->o.model_path, "model_dtype", ci->weight_type,
                          "architecture", "clip", "model_type", "clip", "dimensions", ci->dim, "image_size",
                          ci->image_size, "patch_size", ci->patch_size, "max_input_length", ci->text_ctx,
                          "vision_layers", ci->vision_layers, "text_layers", ci->text_layers, "max_image_batch",
                          (json_int_t)s->o.max_image_batch, "max_client_batch_size", (json_int_t)s->o.max_items,
                          "max_image_pixels", (json_int_t)s->o.max_image_pixels, "request_timeout_s",
                          s->o.request_timeout, "threads", s->threads, "version", EMBD_VERSION, "device", ci->device,
                          "device_description", s->dev.desc, "auto_truncate", s->o.truncate, "downloads",
                          "concurrency", (json_int_t)s->o.fetch.concurrency, "timeout_s",
                          (double)s->o.fetch.timeout_ms / 1000.0, "max_bytes", (json_int_t)s->o.fetch.max_bytes,
                          "max_redirects", s->o.fetch.max_redirects, "retries", s->o.fetch.retries, "allow_private",
                          s->o.fetch.allow_private);
    if (j) json_object_set_new(j, "image_decoders", json_integer(embd_clip_runner_decoders(s->clip_run)));
    json_t *sec = j ? embd_auth_info(s->auth) : NULL;
    if (sec) {
        json_object_set_new(j, "auth", json_string(embd_auth_mode(s->auth)));
        json_object_set_new(j, "security", sec);
    }
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return send_json(q, 200, body);
}

static enum MHD_Result handle_info(req *q) {
    server *s = q->s;
    if (s->clip) return handle_info_clip(q);
    const embd_model_info *hp = &s->model->info;
    json_t *j = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:{s:{s:s}}, s:i, s:i, s:i, s:I, s:I, s:I, s:I, s:I, s:f, s:i, s:s, s:b}", "model_id",
        s->model_name, "model_path", s->o.model_path, "model_dtype", hp->weight_type, "compute_dtype", hp->compute_type, "architecture", hp->arch,
        "model_type", embd_model_is_reranker(s->model) ? "reranker" : "embedding", "pooling",
        served_pooling(s), "dimensions",
        hp->n_embd, "max_input_length", hp->n_ctx, "vocab_size", hp->n_vocab, "max_batch_tokens",
        (json_int_t)s->o.sched.max_batch_tokens, "max_client_batch_size", (json_int_t)s->o.max_items, "max_input_chars",
        (json_int_t)s->o.max_input_chars, "max_queue_tokens", (json_int_t)s->o.sched.max_queue_tokens,
        "max_queue_items", (json_int_t)s->o.sched.max_queue_items, "request_timeout_s", s->o.request_timeout,
        "threads", s->threads, "version", EMBD_VERSION, "auto_truncate", s->o.truncate);
    if (j) {
        json_object_set_new(j, "prompts", embd_api_prompts_json(s->model));
        json_object_set_new(j, "default_prompt_name",
                            s->model->default_prompt ? json_string(s->model->default_prompt) : json_null());
        json_object_set_new(j, "device", json_string(s->dev.name));
        json_object_set_new(j, "device_description", json_string(s->dev.desc));
    }
    json_t *sec = embd_auth_info(s->auth);
    if (j && sec) {
        json_object_set_new(j, "auth", json_string(embd_auth_mode(s->auth)));
        json_object_set_new(sec, "rate_limit_rps", json_real(s->o.rate_rps));
        json_object_set_new(sec, "rate_limit_tpm", json_real(s->o.rate_tpm));
        json_object_set_new(sec, "max_connections", json_integer(s->o.max_connections));
        json_object_set_new(sec, "max_connections_per_ip", json_integer(s->o.max_connections_per_ip));
        json_object_set_new(sec, "connection_timeout_s", json_real(s->o.connection_timeout));
        json_object_set_new(sec, "max_header_bytes", json_integer((json_int_t)s->o.max_header_bytes));
        json_object_set_new(sec, "max_json_depth", json_integer(s->o.max_json_depth));
        json_object_set_new(sec, "max_payload_bytes", json_integer((json_int_t)s->o.max_payload_bytes));
        json_object_set_new(j, "security", sec);
    } else {
        json_decref(sec);
    }
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return send_json(q, 200, body);
}

static enum MHD_Result handle_metrics(req *q) {
    server *s = q->s;
    bool ready = atomic_load(&s->state) != ST_LOADING;
    const embd_model_info *hp = ready && s->model ? &s->model->info : NULL;
    const embd_clip_info *ci = ready && s->clip ? embd_clip_get_info(s->clip) : NULL;
    embd_metrics_info mi = {
        .model_name = s->model_name,
        .model_path = s->o.model_path,
        .arch = hp ? hp->arch : "",
        .quant = hp ? hp->weight_type : "",
        .dims = hp ? hp->n_embd : 0,
        .max_tokens = hp ? hp->n_ctx : 0,
        .pooling = hp ? served_pooling(s) : "",
        .version = EMBD_VERSION,
        .device = s->dev.name,
    };
    if (ci) {
        mi.arch = "clip", mi.quant = ci->weight_type, mi.dims = ci->dim, mi.max_tokens = ci->text_ctx;
        mi.pooling = "clip";
    }
    if (ready && s->enc) { /* in-process encoder: publish what is new */
        embd_encoder_stats st;
        pthread_mutex_lock(&s->dev_mu);
        embd_encoder_get_stats(s->enc, &st);
        if (embd_device_is_gpu(&s->dev) || st.splits != s->dev_seen.splits || st.cpu_fallbacks != s->dev_seen.cpu_fallbacks)
            embd_metrics_device(s->metrics, st.splits - s->dev_seen.splits, st.cpu_fallbacks - s->dev_seen.cpu_fallbacks,
                                st.weight_bytes, st.compute_bytes);
        s->dev_seen = st;
        pthread_mutex_unlock(&s->dev_mu);
    }
    return send_body(q, 200, EMBD_METRICS_CONTENT_TYPE, embd_metrics_render(s->metrics, &mi), NULL);
}

static enum MHD_Result handle_tokenize(req *q, json_t *root, bool bad_utf8) {
    embd_api_error e;
    char *body = embd_api_tokenize(root, bad_utf8, q->s->model, &q->s->lim, &e);
    json_decref(root);
    return body ? send_json(q, 200, body) : send_error(q, &e, NULL);
}

static enum MHD_Result handle_collections(req *q) {
    if (!q->s->coll) return fail(q, 404, "not_found", "%s", "collections are off: start the server with --data-dir DIR");
    char *body = NULL;
    int status = embd_coll_api_handle(q->s->coll, q->method, q->url, q->body ? q->body : (char[1]){0}, q->len, &body);
    return send_json(q, status, body);
}

/* ---- libmicrohttpd callbacks ------------------------------------------------------------- */

static enum MHD_Result dispatch(req *q) {
    server *s = q->s;
    int st = atomic_load(&s->state);
    if (q->r == R_HEALTH) {
        if (st == ST_READY) return send_json(q, 200, strdup("{\"status\":\"ok\"}"));
        return fail(q, 503, st == ST_LOADING ? "loading" : "shutting_down", "%s",
                    st == ST_LOADING ? "the model is loading" : "the server is shutting down");
    }
    if (q->r == R_METRICS) return handle_metrics(q);
    if (st == ST_LOADING) return fail(q, 503, "loading", "%s", "the model is loading");
    if (st == ST_DRAINING) return fail(q, 503, "shutting_down", "%s", "the server is shutting down");
    if (q->r == R_INFO) return handle_info(q);
    if (q->too_big) {
        char lim[32];
        snprintf(lim, sizeof lim, "%zu", s->o.max_payload_bytes);
        return fail(q, 413, "payload_too_large", "the request body is larger than the limit of %s bytes", lim);
    }
    enum MHD_Result answered;
    if (clip_wrong_model(q, &answered)) return answered;
    if (q->r == R_JOBS) {
        q->status = embd_jobs_http(s->jobs, q->conn, q->method, q->url, q->body, q->len);
        return q->status ? MHD_YES : MHD_NO;
    }
    const bool reranker = s->model && embd_model_is_reranker(s->model), rerank = q->r == R_RERANK || q->r == R_V1_RERANK;
    if (rerank && !reranker)
        return fail(q, 400, "not_a_reranker", "model '%s' is an embedding model; reranking needs a cross-encoder",
                    s->model_name);
    if (!rerank && reranker && q->r != R_TOKENIZE)
        return fail(q, 400, "not_an_embedding_model",
                    "model '%s' is a cross-encoder: it scores (query, document) pairs on /rerank and /v1/rerank",
                    s->model_name);
    if (q->r == R_COLLECTIONS) return handle_collections(q);
    if (s->o.max_json_depth > 0 && embd_json_too_deep(q->body, q->len, s->o.max_json_depth)) {
        char d[16];
        snprintf(d, sizeof d, "%d", s->o.max_json_depth);
        return fail(q, 400, "too_deep", "the JSON nests deeper than %s levels", d);
    }
    embd_api_error e;
    bool bad_utf8 = false;
    json_t *root = embd_api_parse_body(q->body ? q->body : "", q->len, &bad_utf8, &e);
    if (!root) return send_error(q, &e, NULL);
    if (s->clip) return handle_clip(q, root, bad_utf8);
    if (q->r == R_TOKENIZE) return handle_tokenize(q, root, bad_utf8);
    if (rerank) return handle_rerank(q, root, bad_utf8);
    return handle_embed(q, root, bad_utf8);
}

/* 404 and 405; true when answered. */
static bool wrong_route(req *q, const char *url, const char *method, enum MHD_Result *answered) {
    if (q->r == R_OTHER) return *answered = fail(q, 404, "not_found", "no route %s", url), true;
    if (!ROUTES[q->r].method || !strcmp(method, ROUTES[q->r].method)) return false; /* NULL: the handler checks */
    const char *hdr[] = {MHD_HTTP_HEADER_ALLOW, ROUTES[q->r].method, NULL};
    embd_api_error e;
    embd_api_fail(&e, 405, "method_not_allowed", -1, "%s needs %s", ROUTES[q->r].path, ROUTES[q->r].method);
    *answered = send_error(q, &e, hdr);
    return true;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    server *s = cls;
    req *q = *con_cls;
    if (!q) {
        q = calloc(1, sizeof *q);
        if (!q) return MHD_NO;
        q->s = s;
        q->conn = conn;
        q->t0 = embd_now();
        q->r = route_of(url);
        q->method = method;
        q->url = url;
        q->fd = -1;
        pthread_mutex_init(&q->mu, NULL);
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci) q->fd = ci->connect_fd;
        *con_cls = q;
        atomic_fetch_add(&s->active, 1);
        embd_guard_headers_done(s->guard, socket_ctx(conn), q->t0);
        enum MHD_Result answered;
        if (check_caller(q, url, method, &answered)) return answered;
        /* A signed request learns about routes only once its signature holds. */
        if (!q->sig_pending && wrong_route(q, url, method, &answered)) return answered;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > s->o.max_payload_bytes) {
            q->too_big = true; /* answered at once: no point reading a body we will refuse */
            return dispatch(q);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (q->too_big || q->len + n > s->o.max_payload_bytes) {
            q->too_big = true;
            return MHD_YES;
        }
        if (q->len + n + 1 > q->cap) {
            size_t cap = q->cap ? q->cap : 4096;
            while (cap < q->len + n + 1) cap *= 2;
            char *b = realloc(q->body, cap);
            if (!b) return MHD_NO;
            q->body = b;
            q->cap = cap;
        }
        memcpy(q->body + q->len, upload, n);
        q->len += n;
        q->body[q->len] = 0;
        return MHD_YES;
    }
    if (q->job) return respond_job(q); /* resumed: the scheduler is done with it */
    if (q->clip_started) {             /* resumed: clip_thread is done with it */
        char *body = q->clip_body;
        q->clip_body = NULL;
        return send_body(q, q->clip_status, "application/json", body, NULL);
    }
    embd_guard_body_done(s->guard, socket_ctx(conn));
    if (q->status) return MHD_YES;     /* answered early (401, 403, 404, 405, 413, 429) */
    enum MHD_Result answered;
    if (q->sig_pending && !q->too_big &&
        (check_signed(q, url, method, &answered) || wrong_route(q, url, method, &answered)))
        return answered;
    return dispatch(q);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    server *s = cls;
    req *q = *con_cls;
    if (!q) return;
    *con_cls = NULL;
    embd_guard_request_done(s->guard, socket_ctx(conn), embd_now());
    if (q->job) {
        embd_sched_cancel(s->sched, q->job); /* a client that left: its queued items go */
        embd_job_release(s->sched, q->job);
    }
    int status = q->status ? q->status : 499; /* nginx's "client closed request" */
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && !q->status) status = 499;
    double dt = embd_now() - q->t0;
    if (s->metrics) embd_metrics_request(s->metrics, ROUTES[q->r].path, status, dt);
    if (s->o.log_requests)
        fprintf(stderr, "embd: %s %d %.1f ms\n", ROUTES[q->r].path, status, dt * 1e3);
    if (q->have_er) embd_embed_req_free(&q->er);
    if (q->have_rr) embd_rerank_req_free(&q->rr);
    if (q->have_cr) embd_clip_req_free(&q->cr);
    free(q->clip_body);
    free(q->map);
    free(q->body);
    pthread_mutex_destroy(&q->mu);
    free(q);
    atomic_fetch_sub(&s->active, 1);
}

/* ---- lifecycle --------------------------------------------------------------------------- */

void embd_server_opts_default(embd_server_opts *o) {
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8080;
    o->threads = 0;
    o->http_threads = 4;
    embd_sched_opts_default(&o->sched);
    o->max_items = 2048;
    o->max_input_chars = 100000;
    o->max_payload_bytes = 16u << 20;
    o->request_timeout = 60;
    o->shutdown_grace = 30;
    o->truncate = true;
    o->auth.hmac_window = 300;
    o->auth.replay_cache_max = 100000;
    o->max_connections = 1024;
    o->connection_timeout = 30;
    o->max_header_bytes = 32768;
    o->max_json_depth = 32;
    o->workers = 1;
    o->worker_timeout = 10;
    o->min_batch = 64;
    o->max_image_batch = 16;
    o->max_image_pixels = 50000000; /* PIL's own bomb warning threshold is 89 M */
    o->max_image_requests = 64;
    embd_fetch_opts_default(&o->fetch);
}

static int resolve(const char *host, int port, struct sockaddr_storage *ss, char *err, size_t errlen) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc || !res) return embd_fail(err, errlen, "cannot resolve host '%s': %s", host, gai_strerror(rc));
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

/* The scheduler on in-process inference or on supervised workers (--workers N). */
static void start_inference(server *s, char *err, size_t errlen) {
    embd_executor x;
    if (s->o.workers > 0 || s->o.autoscale) {
        embd_sup_opts so;
        embd_sup_opts_default(&so);
        so.workers = s->o.workers;
        if (s->o.autoscale) {
            int cores = embd_cpu_count();
            so.workers = s->o.max_workers > 0 ? s->o.max_workers : cores;
            so.autoscale = true;
            so.min_workers = 1;
            so.scale_interval = getenv("EMBD_AUTOSCALE_INTERVAL") ? atof(getenv("EMBD_AUTOSCALE_INTERVAL")) : 2;
        }
        so.model_path = s->o.model_path;
        so.tokenizer_json = s->o.tokenizer_json;
        so.threads = s->o.threads;
        so.n_embd = s->model->info.n_embd;
        so.width = embd_model_out_dim(s->model, EMBD_POOL_UNSPECIFIED);
        so.heartbeat_timeout = s->o.worker_timeout;
        if (so.heartbeat_interval * 4 > so.heartbeat_timeout) so.heartbeat_interval = so.heartbeat_timeout / 4;
        so.metrics = s->metrics;
        if (s->o.max_memory_percent > 100) {
            embd_fail(err, errlen, "--max-memory-percent must be at most 100");
            return;
        }
        double pct = s->o.max_memory_percent > 0 ? s->o.max_memory_percent : 70;
        so.mem_budget = embd_mem_budget(s->o.max_memory, pct, so.mem_budget_why, sizeof so.mem_budget_why);
        /* measured at start-up when the budget is the user's or the container's, not a roomy default */
        so.calibrate = s->o.max_memory || s->o.max_memory_percent > 0 || !strcmp(so.mem_budget_why, "cgroup memory limit");
        so.max_batch = s->o.max_batch ? s->o.max_batch : s->o.sched.pass_tokens;
        so.min_batch = s->o.min_batch < so.max_batch ? s->o.min_batch : so.max_batch;
        if (!(s->sup = embd_sup_new(&so, err, errlen))) return;
        embd_sup_executor(s->sup, &x);
        s->threads = embd_sup_threads(s->sup) * embd_sup_workers(s->sup);
    } else {
        if (!(s->enc = embd_encoder_new(s->model, s->o.threads, err, errlen))) return;
        embd_executor_inproc(&x, s->enc);
        s->threads = embd_encoder_threads(s->enc);
    }
    s->sched = embd_sched_new_exec(&x, &s->o.sched, s->metrics, err, errlen);
}

/* A CLIP model runs in this process, one pass at a time (clip_run), without the text scheduler. */
static int start_clip(server *s, char *err, size_t errlen) {
    if (s->o.spool_dir || s->o.data_dir)
        return embd_fail(err, errlen, "%s is for text embedding models, not CLIP models",
                         s->o.spool_dir ? "--spool" : "--data-dir");
    if (s->o.workers > 1 || s->o.autoscale)
        fprintf(stderr, "embd: CLIP models run in the server process: --workers ignored\n");
    if (!(s->clip = embd_clip_load(s->o.model_path, s->dev.name, s->o.threads, err, errlen))) return -1;
    embd_clip_run_opts ro = {.fetch = s->o.fetch, .max_pixels = s->o.max_image_pixels, .truncate = s->o.truncate,
                             .max_pass_images = s->o.max_image_batch, .decoders = s->o.image_decoders,
                             .metrics = s->metrics};
    if (!(s->clip_run = embd_clip_runner_new(s->clip, &ro)))
        return embd_fail(err, errlen, "cannot start the CLIP runner (out of memory or threads)");
    const embd_clip_info *ci = embd_clip_get_info(s->clip);
    s->threads = s->o.threads > 0 ? s->o.threads : embd_cpu_count();
    s->clim = (embd_clip_limits){.max_image_batch = s->o.max_image_batch, .max_items = s->o.max_items,
                                 .max_input_chars = s->o.max_input_chars, .model_name = s->model_name};
    fprintf(stderr, "embd: CLIP %s: %s, %d dims, %dx%d images, %d text tokens, on %s\n", s->model_name,
            ci->weight_type, ci->dim, ci->image_size, ci->image_size, ci->text_ctx, ci->device);
    return 0;
}

static void wait_idle(server *s, double until) {
    while (atomic_load(&s->active) > 0 && embd_now() < until) usleep(20000);
}

int embd_server_run(const embd_server_opts *opts) {
    server *s = calloc(1, sizeof *s);
    if (!s) return 2;
    s->o = *opts;
    char err[512];
    int exit_code = 2;
    MHD_socket lfd = MHD_INVALID_SOCKET;
    const char *base = strrchr(s->o.model_path, '/');
    base = base ? base + 1 : s->o.model_path;
    snprintf(s->model_name, sizeof s->model_name, "%s", s->o.model_name ? s->o.model_name : base);
    size_t nl = strlen(s->model_name);
    if (!s->o.model_name && nl > 5 && !strcmp(s->model_name + nl - 5, ".gguf")) s->model_name[nl - 5] = 0;
    s->metrics = embd_metrics_new();
    pthread_mutex_init(&s->dev_mu, NULL);
    if (embd_device_resolve(s->o.device, &s->dev, err, sizeof err)) {
        fprintf(stderr, "embd: %s\n", err);
        embd_metrics_free(s->metrics);
        free(s);
        return 2;
    }
    atomic_store(&s->state, ST_LOADING);
    if (!(s->auth = embd_auth_new(&s->o.auth, err, sizeof err))) {
        fprintf(stderr, "embd: %s\n", err);
        embd_metrics_free(s->metrics);
        free(s);
        return 2;
    }
    if (s->o.max_header_bytes < 4096) {
        fprintf(stderr, "embd: --max-header-bytes must be at least 4096\n");
        goto out;
    }
    if (s->o.max_connections > 0 && s->o.max_connections < s->o.http_threads) {
        fprintf(stderr, "embd: --max-connections must be at least --http-threads (%d)\n", s->o.http_threads);
        goto out;
    }
    s->rl = embd_ratelimit_new();
    s->guard = embd_guard_new(s->o.connection_timeout, s->o.request_timeout);
    if (!s->rl || !s->guard) goto out;
    if (!embd_auth_enabled(s->auth))
        fprintf(stderr, "embd: WARNING: authentication is off (--insecure): every endpoint is open to anyone who "
                        "can reach %s:%d\n", s->o.host, s->o.port);
    else if (s->o.auth.insecure)
        fprintf(stderr, "embd: --insecure ignored: authentication is configured (%s)\n", embd_auth_mode(s->auth));

    /* Signals go to sigwait below, not to whichever thread happens to run. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct sockaddr_storage ss;
    if (resolve(s->o.host, s->o.port, &ss, err, sizeof err)) {
        fprintf(stderr, "embd: %s\n", err);
        goto out;
    }
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME;
    if (ss.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    if (getenv("EMBD_DEBUG")) flags |= MHD_USE_ERROR_LOG;
    /* The idle timeout backs the guard's sweep up (it also covers connections it could not track). */
    unsigned idle = s->o.connection_timeout > 0 ? (unsigned)(s->o.connection_timeout + 0.999) : 0;
    struct MHD_OptionItem limits[] = {
        {MHD_OPTION_CONNECTION_TIMEOUT, idle, NULL},
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)s->o.max_header_bytes, NULL},
        {MHD_OPTION_PER_IP_CONNECTION_LIMIT, s->o.max_connections_per_ip, NULL},
        {MHD_OPTION_STRICT_FOR_CLIENT, 1, NULL}, /* e.g. HTTP/1.1 without Host: 400 */
        {s->o.max_connections > 0 ? MHD_OPTION_CONNECTION_LIMIT : MHD_OPTION_END, s->o.max_connections, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    s->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                            MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(s->o.http_threads > 0 ? s->o.http_threads : 1),
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
                            s, MHD_OPTION_ARRAY, limits, MHD_OPTION_END);
    if (!s->d) {
        fprintf(stderr, "embd: cannot listen on %s:%d (address in use or not available)\n", s->o.host, s->o.port);
        goto out;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    int port = di ? (int)di->port : s->o.port;
    fprintf(stderr, "embd: listening on http://%s:%d (loading %s)\n", s->o.host, port, s->o.model_path);

    /* With workers, this process needs only the tokenizer and the metadata: its copy stays on the CPU. */
    embd_model_params mp = {.tokenizer_json = s->o.tokenizer_json, .device = s->o.workers > 0 || s->o.autoscale ? "cpu" : s->dev.name};
    if (embd_gguf_is_clip(s->o.model_path)) {
        if (start_clip(s, err, sizeof err)) {
            fprintf(stderr, "embd: %s\n", err);
            goto out;
        }
        goto ready;
    }
    s->model = embd_model_load(s->o.model_path, &mp, err, sizeof err);
    if (s->model && embd_device_is_gpu(&s->dev)) {
        fprintf(stderr, "embd: inference on %s (%s)\n", s->dev.name, s->dev.desc);
        embd_metrics_device(s->metrics, 0, 0, s->model->info.device_bytes, 0);
    }
    if (s->model) start_inference(s, err, sizeof err);
    if (s->sched && s->o.spool_dir)
        s->jobs = embd_jobs_start(s->o.spool_dir, s->o.jobs_stale_timeout, s->sched, s->model, err, sizeof err);
    if (!s->sched || (s->o.spool_dir && !s->jobs)) {
        fprintf(stderr, "embd: %s\n", err);
        goto out;
    }
    if (s->o.data_dir && !(s->coll = embd_coll_api_new(s->o.data_dir, s->model, s->sched, s->model_name,
                                                       s->o.request_timeout, s->o.max_items, s->o.rerank_model,
                                                       s->o.threads, err, sizeof err))) {
        fprintf(stderr, "embd: collections: %s\n", err);
        goto out;
    }
    if (s->coll) embd_coll_api_set_metrics(s->coll, s->metrics);
    s->lim = (embd_api_limits){.max_items = s->o.max_items,
                               .max_input_chars = s->o.max_input_chars,
                               .default_truncate = s->o.truncate,
                               .n_embd = s->model->info.n_embd,
                               .n_ctx = s->model->info.n_ctx,
                               .n_vocab = s->model->info.n_vocab,
                               .model_name = s->model_name,
                               .model = s->model};
ready:
    atomic_store(&s->state, ST_READY);
    if (s->clip)
        fprintf(stderr, "embd: ready: %s (CLIP, %d dims, %d threads) on http://%s:%d\n", s->model_name,
                embd_clip_get_info(s->clip)->dim, s->threads, s->o.host, port);
    else
        fprintf(stderr, "embd: ready: %s (%s, %d dims, %d tokens, %d threads) on http://%s:%d\n", s->model_name,
                s->model->info.weight_type, s->model->info.n_embd, s->model->info.n_ctx, s->threads, s->o.host,
                port);

    /* Wakes twice a second to cut connections past their deadline; SIGHUP reloads the keys. */
    int sig = 0;
    for (;;) {
        struct timespec tick = {0, 500 * 1000 * 1000};
        sig = sigtimedwait(&sigs, NULL, &tick);
        if (sig == SIGINT || sig == SIGTERM) break;
        if (sig == SIGHUP) {
            if (embd_auth_reload(s->auth, err, sizeof err))
                fprintf(stderr, "embd: SIGHUP: keys not reloaded, the old ones stay: %s\n", err);
            else
                fprintf(stderr, "embd: SIGHUP: keys reloaded\n");
        }
        embd_guard_sweep(s->guard, embd_now());
    }
    atomic_store(&s->state, ST_DRAINING);
    embd_jobs_request_stop(s->jobs); /* its chunk finishes, is checkpointed, the job goes back */
    fprintf(stderr, "embd: %s: draining (grace %.0f s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM", s->o.shutdown_grace);
    /* No new connections; keep-alive ones get 503 + close. The listening socket stays open until
     * MHD_stop_daemon: the pool's threads still take it out of their epoll sets (closing it
     * early made libmicrohttpd abort now and then). */
    lfd = MHD_quiesce_daemon(s->d);
    if (lfd != MHD_INVALID_SOCKET) shutdown(lfd, SHUT_RDWR); /* connects are refused from now on */
    wait_idle(s, embd_now() + s->o.shutdown_grace);
    exit_code = 0;

out:
    embd_jobs_free(s->jobs); /* before the scheduler stops: its last chunk completes */
    /* Jobs still queued end with "shutting down"; their connections resume and get that answer. */
    embd_sched_stop(s->sched, false);
    /* CLIP request threads resume their connections, so the daemon outlives them; each is bounded
     * by the download timeout and one pass. */
    while (atomic_load(&s->clip_threads) > 0) usleep(20000);
    if (s->d) {
        wait_idle(s, embd_now() + 2);
        MHD_stop_daemon(s->d);
    }
    if (lfd != MHD_INVALID_SOCKET) close(lfd);
    embd_coll_api_free(s->coll);
    embd_sched_free(s->sched);
    embd_sup_free(s->sup); /* after the scheduler: no batch is running; reaps every worker */
    if (exit_code == 0) fprintf(stderr, "embd: stopped\n");
    embd_encoder_free(s->enc);
    embd_model_free(s->model);
    embd_clip_runner_free(s->clip_run);
    embd_clip_free(s->clip);
    embd_metrics_free(s->metrics);
    embd_guard_free(s->guard);
    embd_ratelimit_free(s->rl);
    embd_auth_free(s->auth);
    free(s);
    return exit_code;
}
