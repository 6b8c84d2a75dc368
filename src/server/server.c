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
#include <unistd.h>

#include "engine/embed.h"
#include "server/api.h"
#include "server/metrics.h"
#include "util/sys.h"
#include "worker/governor.h"
#include "worker/supervisor.h"

enum { ST_LOADING, ST_READY, ST_DRAINING };

typedef struct {
    embd_server_opts o;
    struct MHD_Daemon *d;
    embd_model *model;
    embd_encoder *enc; /* in-process inference (--workers 0) */
    embd_sup *sup;     /* else: supervised worker processes */
    int threads;       /* compute threads in all */
    embd_sched *sched;
    embd_metrics *metrics;
    embd_api_limits lim;
    char model_name[256];
    _Atomic int state;
    _Atomic long active; /* requests between their first byte and their completion */
} server;

typedef enum { R_EMBEDDINGS, R_EMBED, R_RERANK, R_V1_RERANK, R_TOKENIZE, R_INFO, R_HEALTH, R_METRICS, R_OTHER } route;

static const struct {
    const char *path;
    const char *method;
} ROUTES[] = {
    [R_EMBEDDINGS] = {"/v1/embeddings", "POST"}, [R_EMBED] = {"/embed", "POST"},
    [R_RERANK] = {"/rerank", "POST"},            [R_V1_RERANK] = {"/v1/rerank", "POST"},
    [R_TOKENIZE] = {"/tokenize", "POST"},        [R_INFO] = {"/info", "GET"},
    [R_HEALTH] = {"/health", "GET"},             [R_METRICS] = {"/metrics", "GET"},
    [R_OTHER] = {"other", NULL},
};

typedef struct {
    server *s;
    struct MHD_Connection *conn;
    route r;
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
    embd_job *job;
    size_t *map; /* job item -> request item */
} req;

static route route_of(const char *url) {
    for (int r = 0; r < R_OTHER; r++)
        if (!strcmp(url, ROUTES[r].path)) return (route)r;
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

/* ---- the scheduler side of a request ----------------------------------------------------- */

static void job_done(embd_job *job, void *ud) {
    (void)job;
    req *q = ud;
    pthread_mutex_lock(&q->mu);
    q->finished = true;
    if (q->suspended) {
        q->suspended = false;
        MHD_resume_connection(q->conn);
    }
    pthread_mutex_unlock(&q->mu);
}

/* A suspended connection is not watched by libmicrohttpd, so the scheduler asks. */
static bool client_alive(void *ud) {
    req *q = ud;
    if (q->fd < 0) return true;
    struct pollfd p = {.fd = q->fd, .events = POLLRDHUP};
    return !(poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)));
}

static enum MHD_Result respond_job(req *q) {
    server *s = q->s;
    embd_job_state st = embd_job_state_get(q->job);
    if (st == EMBD_JOB_TIMEOUT)
        return fail(q, 504, "timeout", "the request did not finish within %s", "the server's request timeout");
    if (st == EMBD_JOB_CANCELLED) /* the client left: nobody reads this, the metrics say 499 */
        return fail(q, 499, "cancelled", "%s", "the client closed the connection");
    if (st != EMBD_JOB_DONE) return fail(q, 503, "shutting_down", "%s", "the server is shutting down");
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
    char qt[32], it[32], tt[32], tk[32];
    snprintf(qt, sizeof qt, "%.3f", embd_job_queue_seconds(q->job) * 1e3);
    snprintf(it, sizeof it, "%.3f", embd_job_inference_seconds(q->job) * 1e3);
    snprintf(tt, sizeof tt, "%.3f", (embd_now() - q->t0) * 1e3);
    snprintf(tk, sizeof tk, "%zu", tokens);
    const char *hdr[] = {"x-queue-time", qt, "x-inference-time", it, "x-total-time", tt, "x-compute-tokens", tk, NULL};
    if (!body) return send_error(q, &e, hdr);
    return send_body(q, 200, "application/json", body, hdr);
}

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
    if (runnable < 0) return send_error(q, &e, NULL);
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

/* ---- small endpoints --------------------------------------------------------------------- */

/* --pooling if given, else the model's. */
static const char *served_pooling(const server *s) {
    embd_pooling p = s->o.sched.pooling;
    return embd_pooling_name(p == EMBD_POOL_UNSPECIFIED ? s->model->info.pooling : p);
}

static enum MHD_Result handle_info(req *q) {
    server *s = q->s;
    const embd_model_info *hp = &s->model->info;
    json_t *j = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:{s:{s:s}}, s:i, s:i, s:i, s:I, s:I, s:I, s:I, s:I, s:f, s:i, s:s, s:b}", "model_id",
        s->model_name, "model_path", s->o.model_path, "model_dtype", hp->weight_type, "compute_dtype", hp->compute_type, "architecture", hp->arch,
        "model_type", "embedding", "pooling",
        served_pooling(s), "dimensions",
        hp->n_embd, "max_input_length", hp->n_ctx, "vocab_size", hp->n_vocab, "max_batch_tokens",
        (json_int_t)s->o.sched.max_batch_tokens, "max_client_batch_size", (json_int_t)s->o.max_items, "max_input_chars",
        (json_int_t)s->o.max_input_chars, "max_queue_tokens", (json_int_t)s->o.sched.max_queue_tokens,
        "max_queue_items", (json_int_t)s->o.sched.max_queue_items, "request_timeout_s", s->o.request_timeout,
        "threads", s->threads, "version", EMBD_VERSION, "auto_truncate", s->o.truncate);
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return send_json(q, 200, body);
}

static enum MHD_Result handle_metrics(req *q) {
    server *s = q->s;
    bool ready = atomic_load(&s->state) != ST_LOADING;
    const embd_model_info *hp = ready ? &s->model->info : NULL;
    embd_metrics_info mi = {
        .model_name = s->model_name,
        .model_path = s->o.model_path,
        .arch = hp ? hp->arch : "",
        .quant = hp ? hp->weight_type : "",
        .dims = hp ? hp->n_embd : 0,
        .max_tokens = hp ? hp->n_ctx : 0,
        .pooling = hp ? served_pooling(s) : "",
        .version = EMBD_VERSION,
    };
    return send_body(q, 200, EMBD_METRICS_CONTENT_TYPE, embd_metrics_render(s->metrics, &mi), NULL);
}

static enum MHD_Result handle_tokenize(req *q, json_t *root, bool bad_utf8) {
    embd_api_error e;
    char *body = embd_api_tokenize(root, bad_utf8, q->s->model, &q->s->lim, &e);
    json_decref(root);
    return body ? send_json(q, 200, body) : send_error(q, &e, NULL);
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
    if (q->r == R_RERANK || q->r == R_V1_RERANK)
        return fail(q, 400, "not_a_reranker", "model '%s' is an embedding model; reranking needs a cross-encoder",
                    s->model_name);
    embd_api_error e;
    bool bad_utf8 = false;
    json_t *root = embd_api_parse_body(q->body ? q->body : "", q->len, &bad_utf8, &e);
    if (!root) return send_error(q, &e, NULL);
    if (q->r == R_TOKENIZE) return handle_tokenize(q, root, bad_utf8);
    return handle_embed(q, root, bad_utf8);
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
        q->fd = -1;
        pthread_mutex_init(&q->mu, NULL);
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci) q->fd = ci->connect_fd;
        *con_cls = q;
        atomic_fetch_add(&s->active, 1);
        if (q->r == R_OTHER) return fail(q, 404, "not_found", "no route %s", url);
        if (strcmp(method, ROUTES[q->r].method)) {
            const char *hdr[] = {MHD_HTTP_HEADER_ALLOW, ROUTES[q->r].method, NULL};
            embd_api_error e;
            embd_api_fail(&e, 405, "method_not_allowed", -1, "%s needs %s", ROUTES[q->r].path, ROUTES[q->r].method);
            return send_error(q, &e, hdr);
        }
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
    if (q->status) return MHD_YES;     /* answered early (404, 405, 413) */
    return dispatch(q);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)conn;
    server *s = cls;
    req *q = *con_cls;
    if (!q) return;
    *con_cls = NULL;
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
    o->workers = 1;
    o->worker_timeout = 10;
    o->min_batch = 64;
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
    if (s->o.workers > 0) {
        embd_sup_opts so;
        embd_sup_opts_default(&so);
        so.workers = s->o.workers;
        so.model_path = s->o.model_path;
        so.tokenizer_json = s->o.tokenizer_json;
        so.threads = s->o.threads;
        so.n_embd = s->model->info.n_embd;
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
        s->threads = embd_sup_threads(s->sup) * s->o.workers;
    } else {
        if (!(s->enc = embd_encoder_new(s->model, s->o.threads, err, errlen))) return;
        embd_executor_inproc(&x, s->enc);
        s->threads = embd_encoder_threads(s->enc);
    }
    s->sched = embd_sched_new_exec(&x, &s->o.sched, s->metrics, err, errlen);
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
    atomic_store(&s->state, ST_LOADING);

    /* Signals go to sigwait below, not to whichever thread happens to run. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
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
    s->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                            MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(s->o.http_threads > 0 ? s->o.http_threads : 1),
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
                            MHD_OPTION_END);
    if (!s->d) {
        fprintf(stderr, "embd: cannot listen on %s:%d (address in use or not available)\n", s->o.host, s->o.port);
        goto out;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    int port = di ? (int)di->port : s->o.port;
    fprintf(stderr, "embd: listening on http://%s:%d (loading %s)\n", s->o.host, port, s->o.model_path);

    embd_model_params mp = {.tokenizer_json = s->o.tokenizer_json};
    s->model = embd_model_load(s->o.model_path, &mp, err, sizeof err);
    if (s->model) start_inference(s, err, sizeof err);
    if (!s->sched) {
        fprintf(stderr, "embd: %s\n", err);
        goto out;
    }
    s->lim = (embd_api_limits){.max_items = s->o.max_items,
                               .max_input_chars = s->o.max_input_chars,
                               .default_truncate = s->o.truncate,
                               .n_embd = s->model->info.n_embd,
                               .n_ctx = s->model->info.n_ctx,
                               .n_vocab = s->model->info.n_vocab,
                               .model_name = s->model_name};
    atomic_store(&s->state, ST_READY);
    fprintf(stderr, "embd: ready: %s (%s, %d dims, %d tokens, %d threads) on http://%s:%d\n", s->model_name,
            s->model->info.weight_type, s->model->info.n_embd, s->model->info.n_ctx, s->threads, s->o.host,
            port);

    int sig = 0;
    sigwait(&sigs, &sig);
    atomic_store(&s->state, ST_DRAINING);
    fprintf(stderr, "embd: %s: draining (grace %.0f s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM", s->o.shutdown_grace);
    /* No new connections; keep-alive ones get 503 + close. The listening socket stays open until
     * MHD_stop_daemon: the pool's threads still take it out of their epoll sets (closing it
     * early made libmicrohttpd abort now and then). */
    lfd = MHD_quiesce_daemon(s->d);
    if (lfd != MHD_INVALID_SOCKET) shutdown(lfd, SHUT_RDWR); /* connects are refused from now on */
    wait_idle(s, embd_now() + s->o.shutdown_grace);
    exit_code = 0;

out:
    /* Jobs still queued end with "shutting down"; their connections resume and get that answer. */
    embd_sched_stop(s->sched, false);
    if (s->d) {
        wait_idle(s, embd_now() + 2);
        MHD_stop_daemon(s->d);
    }
    if (lfd != MHD_INVALID_SOCKET) close(lfd);
    embd_sched_free(s->sched);
    embd_sup_free(s->sup); /* after the scheduler: no batch is running; reaps every worker */
    if (exit_code == 0) fprintf(stderr, "embd: stopped\n");
    embd_encoder_free(s->enc);
    embd_model_free(s->model);
    embd_metrics_free(s->metrics);
    free(s);
    return exit_code;
}
