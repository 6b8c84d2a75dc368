#include "server/api_collections.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "collections/enrich.h"
#include "collections/filter.h"
#include "collections/ingest.h"
#include "collections/ingest_jobs.h"
#include "collections/reranker.h"
#include "server/api.h"
#include "server/metrics.h"
#include "util/sys.h"

enum {
    MAX_K = 1000,
    MAX_ID_BYTES = 512,
    /* chunks per scheduler job: the request timeout applies to each job's queued items, so a job
     * must finish well within it on a slow machine (64 x 256 tokens at 1k tokens/s: 16 s) */
    JOB_ITEMS = 64,
    ASYNC_BYTES = 1 << 20, /* document text above this runs as an ingest job unless "async": false */
};
/* Seconds a synchronous ingest may spend starting enrichment calls (when the server has no
 * --timeout); calls in flight then still end within their own timeout_ms. */
#define SYNC_ENRICH_SECONDS 120.0

struct embd_coll_api {
    embd_store *store;
    const embd_model *model;
    embd_sched *sched;
    char *model_name;
    double timeout;
    size_t max_items;
    embd_reranker *reranker;
    embd_coll_ctx ctx;
    embd_ingest_jobs *jobs;
    embd_metrics *metrics; /* may be NULL */
};

/* ---- embedding through the scheduler ------------------------------------------------------- */

/* One job of n texts, waited for; a full queue is retried until the deadline. */
static int embed_job(embd_coll_api *a, const char *const *texts, const size_t *lens, size_t n, float *out,
                     double deadline, char *err, size_t errlen) {
    const int H = a->model->info.n_embd;
    embd_job_waiter w = EMBD_JOB_WAITER_INIT;
    embd_job *job = embd_job_new(n, H, deadline, embd_job_waiter_done, NULL, &w);
    int rc = job ? 0 : embd_fail(err, errlen, "out of memory");
    for (size_t i = 0; i < n && !rc; i++) {
        embd_tokens tk = {0};
        size_t off = 0;
        if (embd_tokenizer_encode(a->model->tok, texts[i], lens[i], (size_t)a->model->info.n_ctx, &tk, &off)) {
            embd_tokens_free(&tk);
            rc = embd_fail(err, errlen, "text %zu is not valid UTF-8 (byte %zu)", i, off);
            break;
        }
        embd_job_set_item(job, i, tk.ids, (int)tk.n); /* the job owns the ids now */
    }
    int sub = EMBD_SUBMIT_FULL;
    while (!rc) {
        double retry = 0;
        sub = embd_sched_submit(a->sched, job, &retry);
        if (sub != EMBD_SUBMIT_FULL) break;
        if (deadline > 0 && embd_now() > deadline) {
            rc = embd_fail(err, errlen, "the embedding queue stayed full until the request timed out");
            break;
        }
        usleep(20000);
    }
    if (!rc && sub == EMBD_SUBMIT_TOO_BIG) rc = 1; /* the caller splits */
    else if (!rc && sub != EMBD_SUBMIT_OK) rc = embd_fail(err, errlen, "the server is shutting down");
    if (!rc) {
        embd_job_waiter_wait(&w);
        embd_job_state st = embd_job_state_get(job);
        if (st != EMBD_JOB_DONE)
            rc = embd_fail(err, errlen, "%s",
                           st == EMBD_JOB_TIMEOUT ? "embedding timed out" : "the server is shutting down");
        for (size_t i = 0; i < n && !rc; i++) {
            const embd_item *it = embd_job_item(job, i);
            if (it->status != EMBD_ITEM_OK) {
                rc = embd_fail(err, errlen, "chunk %zu: %s", i, it->message);
                break;
            }
            memcpy(out + i * (size_t)H, embd_job_vector(job, i), (size_t)H * sizeof *out);
            embd_l2_normalize(out + i * (size_t)H, H);
        }
    }
    if (job) embd_job_release(a->sched, job);
    return rc;
}

static int sched_embed(void *ud, const char *const *texts, const size_t *lens, size_t n, float *out, char *err,
                       size_t errlen) {
    embd_coll_api *a = ud;
    const size_t H = (size_t)a->model->info.n_embd;
    size_t step = JOB_ITEMS;
    for (size_t i = 0; i < n;) {
        size_t m = n - i < step ? n - i : step;
        /* per job, so a large ingest is bounded by progress, not by its total size */
        const double deadline = a->timeout > 0 ? embd_now() + a->timeout : 0;
        int rc = embed_job(a, texts + i, lens + i, m, out + i * H, deadline, err, errlen);
        if (rc == 1 && m > 1) { /* more than the queue may ever hold: smaller jobs */
            step = m / 2;
            continue;
        }
        if (rc == 1) return embd_fail(err, errlen, "one chunk is larger than the scheduler's queue");
        if (rc) return -1;
        i += m;
    }
    return 0;
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

/* Enrichment outcomes of every ingest (synchronous or job) on /metrics. */
static void count_stats(void *ud, const embd_ingest_stats *st) {
    embd_coll_api *a = ud;
    if (!a->metrics || !(st->enriched + st->degraded)) return;
    static const char help[] = "Chunks through the enrichment step, by outcome (degraded: embedded without context)";
    if (st->enriched) embd_metrics_count(a->metrics, "embd_enrich_chunks_total", help, "outcome", "enriched", (double)st->enriched);
    if (st->degraded) embd_metrics_count(a->metrics, "embd_enrich_chunks_total", help, "outcome", "degraded", (double)st->degraded);
}

embd_coll_api *embd_coll_api_new(const char *data_dir, const embd_model *model, embd_sched *sched,
                                 const char *model_name, double timeout, size_t max_items, const char *rerank_model,
                                 int threads, char *err, size_t errlen) {
    embd_coll_api *a = calloc(1, sizeof *a);
    if (!a || !(a->model_name = strdup(model_name))) {
        free(a);
        embd_fail(err, errlen, "out of memory");
        return NULL;
    }
    a->store = embd_store_open(data_dir, err, errlen);
    if (!a->store) {
        embd_coll_api_free(a);
        return NULL;
    }
    if (rerank_model && !(a->reranker = embd_reranker_load(rerank_model, threads, err, errlen))) {
        embd_coll_api_free(a);
        return NULL;
    }
    a->model = model;
    a->sched = sched;
    a->timeout = timeout;
    a->max_items = max_items ? max_items : 2048;
    a->ctx = (embd_coll_ctx){.store = a->store,
                             .tok = model->tok,
                             .model_name = a->model_name,
                             .dims = model->info.n_embd,
                             .n_ctx = model->info.n_ctx,
                             .embed = sched_embed,
                             .embed_ud = a,
                             .rerank = a->reranker ? embd_reranker_score : NULL,
                             .rerank_ud = a->reranker};
    if (!(a->jobs = embd_ingest_jobs_new(&a->ctx, count_stats, a, err, errlen))) {
        embd_coll_api_free(a);
        return NULL;
    }
    return a;
}

void embd_coll_api_set_metrics(embd_coll_api *a, embd_metrics *m) { a->metrics = m; }

void embd_coll_api_free(embd_coll_api *a) {
    if (!a) return;
    embd_ingest_jobs_free(a->jobs); /* its thread uses the store and the scheduler */
    embd_store_close(a->store);
    embd_reranker_free(a->reranker);
    free(a->model_name);
    free(a);
}

/* ---- responses ------------------------------------------------------------------------------ */

static int error(char **out, int status, const char *type, const char *msg) {
    embd_api_error e;
    embd_api_fail(&e, status, type, -1, "%s", msg);
    *out = embd_api_error_json(&e);
    return status;
}

static int store_error(char **out, int rc, const char *msg) {
    switch (rc) {
    case EMBD_STORE_NOTFOUND: return error(out, 404, "not_found", msg);
    case EMBD_STORE_EXISTS: return error(out, 409, "already_exists", msg);
    case EMBD_STORE_MISMATCH: return error(out, 409, "model_mismatch", msg);
    case EMBD_STORE_INVALID: return error(out, 422, "invalid_request", msg);
    default: return error(out, 500, "internal_error", msg);
    }
}

static int reply(char **out, int status, json_t *j) {
    *out = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return status;
}

static json_t *info_json(embd_coll_api *a, const embd_coll_info *c) {
    json_t *j = json_pack("{s:s, s:s, s:i, s:{s:I, s:I, s:b, s:s}, s:I, s:I, s:f}", "name", c->name, "model", c->model,
                          "dimensions", c->dims, "options", "chunk_size", (json_int_t)c->opts.chunk_size, "overlap",
                          (json_int_t)c->opts.overlap, "code_aware", c->opts.code_aware, "index",
                          c->opts.index == EMBD_VINDEX_HNSW ? "hnsw" : "flat", "documents", (json_int_t)c->n_documents,
                          "chunks", (json_int_t)c->n_chunks, "created", c->created);
    /* vectors in the loaded index: equal to chunks unless something is badly wrong */
    if (j && c->n_vectors >= 0) json_object_set_new(j, "vectors", json_integer(c->n_vectors));
    /* the enrichment configuration, without its api keys */
    char *text = NULL;
    embd_enrich_cfg *cfg = NULL;
    if (j && !embd_store_enrich_get(a->store, c->name, &text, NULL, 0) && text) {
        json_t *e = json_loads(text, 0, NULL);
        if ((cfg = embd_enrich_parse(e, NULL, 0)))
            json_object_set_new(json_object_get(j, "options"), "enrich", embd_enrich_json(cfg, true));
        json_decref(e);
    }
    embd_enrich_free(cfg);
    free(text);
    return j;
}

/* ---- handlers ------------------------------------------------------------------------------- */

static json_t *parse(char *body, size_t len, bool *bad_utf8, char **out, int *status) {
    embd_api_error e;
    json_t *root = embd_api_parse_body(body, len, bad_utf8, &e);
    if (!root) {
        *out = embd_api_error_json(&e);
        *status = e.status;
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        *status = error(out, 422, "invalid_request", "the body must be a JSON object");
        return NULL;
    }
    return root;
}

/* A non-negative integer field within [lo, hi], default def when absent. */
static int get_size(json_t *o, const char *key, size_t lo, size_t hi, size_t def, size_t *v, char *msg, size_t n) {
    json_t *x = json_object_get(o, key);
    if (!x || json_is_null(x)) {
        *v = def;
        return 0;
    }
    if (!json_is_integer(x) || json_integer_value(x) < (json_int_t)lo || json_integer_value(x) > (json_int_t)hi)
        return embd_fail(msg, n, "'%s' must be an integer in [%zu, %zu]", key, lo, hi);
    *v = (size_t)json_integer_value(x);
    return 0;
}

static int create(embd_coll_api *a, char *body, size_t len, char **out) {
    bool bad = false;
    int status = 0;
    json_t *root = parse(body, len, &bad, out, &status);
    if (!root) return status;
    char msg[256] = "";
    const char *name = json_string_value(json_object_get(root, "name"));
    json_t *model = json_object_get(root, "model"), *opts = json_object_get(root, "options");
    embd_coll_opts o = {.index = EMBD_VINDEX_FLAT};
    const size_t max_chunk = embd_coll_max_chunk(&a->ctx);
    size_t def_chunk = max_chunk < 256 ? max_chunk : 256;
    char *enrich = NULL; /* the validated configuration as stored (with api keys) */
    int rc = 0;
    if (!name) rc = embd_fail(msg, sizeof msg, "'name' (string) is required");
    else if (bad && embd_api_has_sentinel(name, strlen(name))) rc = embd_fail(msg, sizeof msg, "'name' is not valid UTF-8");
    else if (model && !json_is_null(model) && !json_is_string(model)) rc = embd_fail(msg, sizeof msg, "'model' must be a string");
    else if (opts && !json_is_null(opts) && !json_is_object(opts)) rc = embd_fail(msg, sizeof msg, "'options' must be an object");
    if (!rc && opts && json_is_object(opts)) {
        json_t *ca = json_object_get(opts, "code_aware"), *ix = json_object_get(opts, "index");
        rc = get_size(opts, "chunk_size", 8, max_chunk, def_chunk, &o.chunk_size, msg, sizeof msg);
        if (!rc) rc = get_size(opts, "overlap", 0, o.chunk_size - 1, o.chunk_size / 8, &o.overlap, msg, sizeof msg);
        if (!rc && ca && !json_is_null(ca) && !json_is_boolean(ca))
            rc = embd_fail(msg, sizeof msg, "'code_aware' must be a boolean");
        o.code_aware = json_is_true(ca);
        const char *k = json_string_value(ix);
        if (!rc && ix && !json_is_null(ix) && (!k || (strcmp(k, "flat") && strcmp(k, "hnsw"))))
            rc = embd_fail(msg, sizeof msg, "'index' must be \"flat\" or \"hnsw\"");
        if (k && !strcmp(k, "hnsw")) o.index = EMBD_VINDEX_HNSW;
        json_t *en = json_object_get(opts, "enrich");
        if (!rc && en && !json_is_null(en)) {
            embd_enrich_cfg *cfg = embd_enrich_parse(en, msg, sizeof msg);
            json_t *full = cfg ? embd_enrich_json(cfg, false) : NULL;
            if (!cfg) rc = -1;
            else if (!full || !(enrich = json_dumps(full, JSON_COMPACT))) rc = embd_fail(msg, sizeof msg, "out of memory");
            json_decref(full);
            embd_enrich_free(cfg);
            o.enrich = enrich;
        }
        const char *known[] = {"chunk_size", "overlap", "code_aware", "index", "enrich"};
        const char *key;
        json_t *v;
        json_object_foreach(opts, key, v) {
            bool ok = false;
            for (size_t i = 0; i < 5; i++) ok |= !strcmp(key, known[i]);
            if (!ok && !rc) rc = embd_fail(msg, sizeof msg, "unknown option '%s'", key);
        }
    } else if (!rc) {
        o.chunk_size = def_chunk;
        o.overlap = def_chunk / 8;
    }
    if (rc) {
        json_decref(root);
        free(enrich);
        return error(out, 422, "invalid_request", msg);
    }
    if (json_is_string(model) && strcmp(json_string_value(model), a->model_name)) {
        snprintf(msg, sizeof msg, "this server embeds with '%s', not '%s'", a->model_name, json_string_value(model));
        json_decref(root);
        free(enrich);
        return error(out, 409, "model_mismatch", msg);
    }
    rc = embd_store_create(a->store, name, a->model_name, a->model->info.n_embd, &o, msg, sizeof msg);
    free(enrich);
    embd_coll_info info;
    if (!rc) rc = embd_store_info(a->store, name, &info, NULL, msg, sizeof msg);
    json_decref(root);
    if (rc) return store_error(out, rc, msg);
    return reply(out, 201, info_json(a, &info));
}

static int ingest(embd_coll_api *a, const char *coll, char *body, size_t len, char **out) {
    bool bad = false;
    int status = 0;
    json_t *root = parse(body, len, &bad, out, &status);
    if (!root) return status;
    json_t *docs = json_object_get(root, "documents");
    char msg[256] = "";
    size_t n = json_array_size(docs);
    int rc = 0;
    if (!json_is_array(docs) || !n) rc = embd_fail(msg, sizeof msg, "'documents' must be a non-empty array");
    else if (n > a->max_items) rc = embd_fail(msg, sizeof msg, "at most %zu documents per request", a->max_items);
    embd_doc_input *in = calloc(n ? n : 1, sizeof *in);
    char **meta = calloc(n ? n : 1, sizeof *meta);
    if (!in || !meta) rc = embd_fail(msg, sizeof msg, "out of memory");
    for (size_t i = 0; i < n && !rc; i++) {
        json_t *d = json_array_get(docs, i), *id = json_object_get(d, "id"), *text = json_object_get(d, "text"),
               *md = json_object_get(d, "metadata");
        if (!json_is_object(d)) rc = embd_fail(msg, sizeof msg, "documents[%zu] must be an object", i);
        else if (!json_is_string(id) || !json_string_length(id) || json_string_length(id) > MAX_ID_BYTES)
            rc = embd_fail(msg, sizeof msg, "documents[%zu].id must be a string of 1-%d bytes", i, MAX_ID_BYTES);
        else if (!json_is_string(text)) rc = embd_fail(msg, sizeof msg, "documents[%zu].text must be a string", i);
        else if (md && !json_is_null(md) && !json_is_object(md))
            rc = embd_fail(msg, sizeof msg, "documents[%zu].metadata must be an object", i);
        else if (bad && (embd_api_has_sentinel(json_string_value(id), json_string_length(id)) ||
                         embd_api_has_sentinel(json_string_value(text), json_string_length(text))))
            rc = embd_fail(msg, sizeof msg, "documents[%zu] is not valid UTF-8", i);
        else if (memchr(json_string_value(id), 0, json_string_length(id)) ||
                 memchr(json_string_value(text), 0, json_string_length(text)))
            rc = embd_fail(msg, sizeof msg, "documents[%zu] contains a NUL character", i);
        if (rc) break;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(in[j].id, json_string_value(id))) {
                rc = embd_fail(msg, sizeof msg, "document id '%s' appears twice", in[j].id);
                break;
            }
        meta[i] = json_is_object(md) ? json_dumps(md, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        in[i] = (embd_doc_input){json_string_value(id), json_string_value(text), json_string_length(text), meta[i]};
    }
    json_t *as = json_object_get(root, "async");
    size_t bytes = 0;
    for (size_t i = 0; !rc && i < n; i++) bytes += in[i].len;
    if (!rc && as && !json_is_null(as) && !json_is_boolean(as)) rc = embd_fail(msg, sizeof msg, "'async' must be a boolean");
    if (rc) {
        for (size_t i = 0; meta && i < n; i++) free(meta[i]);
        free(meta), free(in);
        json_decref(root);
        return error(out, 422, "invalid_request", msg);
    }
    if (json_is_true(as) || (!as && bytes > ASYNC_BYTES)) { /* a job: 202 now, progress on /jobs/{id} */
        embd_coll_info info;
        char id[40];
        if (!(rc = embd_store_info(a->store, coll, &info, NULL, msg, sizeof msg)) &&
            (strcmp(info.model, a->model_name) || info.dims != a->model->info.n_embd))
            rc = (embd_fail(msg, sizeof msg, "collection '%s' was built with model '%s'; this server embeds with '%s'",
                            coll, info.model, a->model_name),
                  EMBD_STORE_MISMATCH);
        if (rc) {
            for (size_t i = 0; i < n; i++) free(meta[i]);
            free(meta), free(in);
            json_decref(root);
            return store_error(out, rc, msg);
        }
        if (embd_ingest_jobs_submit(a->jobs, coll, in, meta, n, root, id, msg, sizeof msg)) /* takes them */
            return error(out, 503, "out_of_memory", msg);
        json_t *j = embd_ingest_jobs_get(a->jobs, coll, id);
        return reply(out, 202, j ? j : json_pack("{s:s, s:s}", "id", id, "state", "queued"));
    }
    embd_ingest_stats st = {0};
    /* enrichment on this HTTP thread is bounded: no call starts after the deadline */
    const embd_ingest_opts io = {.enrich_deadline = embd_now() + (a->timeout > 0 ? a->timeout : SYNC_ENRICH_SECONDS)};
    rc = embd_coll_ingest_ex(&a->ctx, coll, in, n, &io, &st, msg, sizeof msg);
    if (!rc) count_stats(a, &st);
    for (size_t i = 0; meta && i < n; i++) free(meta[i]);
    free(meta), free(in);
    json_decref(root);
    if (rc) return store_error(out, rc, msg);
    json_t *res = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}", "collection", coll, "documents", (json_int_t)st.documents,
                            "chunks", (json_int_t)st.chunks, "unchanged", (json_int_t)st.unchanged, "enriched",
                            (json_int_t)st.enriched, "degraded", (json_int_t)st.degraded);
    if (res && st.enrich_error[0]) json_object_set_new(res, "enrich_error", json_string(st.enrich_error));
    return reply(out, 200, res);
}

/* GET /{c}/jobs, GET|DELETE /{c}/jobs/{id} */
static int jobs_route(embd_coll_api *a, const char *coll, const char *method, const char *id, char **out) {
    char msg[256];
    if (!*id) {
        if (strcmp(method, "GET")) return error(out, 405, "method_not_allowed", "the jobs of a collection take GET");
        embd_coll_info info;
        int rc = embd_store_info(a->store, coll, &info, NULL, msg, sizeof msg);
        if (rc) return store_error(out, rc, msg);
        return reply(out, 200, json_pack("{s:s, s:o}", "collection", coll, "jobs", embd_ingest_jobs_list(a->jobs, coll)));
    }
    snprintf(msg, sizeof msg, "no ingest job '%.64s' in collection '%s'", id, coll);
    if (!strcmp(method, "GET")) {
        json_t *j = embd_ingest_jobs_get(a->jobs, coll, id);
        return j ? reply(out, 200, j) : error(out, 404, "not_found", msg);
    }
    if (!strcmp(method, "DELETE")) {
        int rc = embd_ingest_jobs_cancel(a->jobs, coll, id);
        if (rc < 0) return error(out, 404, "not_found", msg);
        if (!rc) return error(out, 409, "job_finished", "the job has already ended");
        return reply(out, 202, embd_ingest_jobs_get(a->jobs, coll, id));
    }
    return error(out, 405, "method_not_allowed", "an ingest job takes GET and DELETE");
}

static int search(embd_coll_api *a, const char *coll, char *body, size_t len, char **out) {
    bool bad = false;
    int status = 0;
    json_t *root = parse(body, len, &bad, out, &status);
    if (!root) return status;
    char msg[256] = "";
    json_t *query = json_object_get(root, "query"), *filter = json_object_get(root, "filter"),
           *rerank = json_object_get(root, "rerank");
    size_t k = 10;
    int rc = 0;
    if (!json_is_string(query)) rc = embd_fail(msg, sizeof msg, "'query' (string) is required");
    else if (bad && embd_api_has_sentinel(json_string_value(query), json_string_length(query)))
        rc = embd_fail(msg, sizeof msg, "'query' is not valid UTF-8");
    if (!rc) rc = get_size(root, "k", 1, MAX_K, 10, &k, msg, sizeof msg);
    embd_filter *f = NULL;
    if (!rc && embd_filter_compile(filter, "x", &f, msg, sizeof msg)) rc = -1;
    embd_filter_free(f);
    if (rc) {
        json_decref(root);
        return error(out, 422, "invalid_request", msg);
    }
    size_t top_n = 0;
    if (rerank && !json_is_null(rerank)) {
        json_t *rm = json_object_get(rerank, "model");
        if (!json_is_object(rerank)) rc = embd_fail(msg, sizeof msg, "'rerank' must be an object {top_n?, model?}");
        else if (rm && !json_is_null(rm) && !json_is_string(rm)) rc = embd_fail(msg, sizeof msg, "'rerank.model' must be a string");
        else rc = get_size(rerank, "top_n", 1, k, k, &top_n, msg, sizeof msg);
        if (rc) {
            json_decref(root);
            return error(out, 422, "invalid_request", msg);
        }
        if (!a->reranker) {
            json_decref(root);
            return error(out, 400, "no_reranker", "no reranker configured: start the server with --rerank-model R.gguf");
        }
        if (json_is_string(rm) && strcmp(json_string_value(rm), embd_reranker_name(a->reranker))) {
            snprintf(msg, sizeof msg, "this server reranks with '%s', not '%.100s'", embd_reranker_name(a->reranker),
                     json_string_value(rm));
            json_decref(root);
            return error(out, 400, "no_reranker", msg);
        }
    }
    embd_hit *hits = NULL;
    size_t n = 0;
    rc = embd_coll_search(&a->ctx, coll, json_string_value(query), json_string_length(query), k, filter, top_n, &hits,
                          &n, msg, sizeof msg);
    json_decref(root);
    if (rc) return store_error(out, rc, msg);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *md = json_loads(hits[i].metadata, 0, NULL);
        json_array_append_new(arr, json_pack("{s:s, s:I, s:I, s:s, s:I, s:I, s:o, s:f}", "document_id", hits[i].doc_id,
                                             "chunk_id", (json_int_t)hits[i].chunk_id, "chunk_index",
                                             (json_int_t)hits[i].seq, "text", hits[i].text, "start",
                                             (json_int_t)hits[i].start, "end", (json_int_t)hits[i].end, "metadata",
                                             md ? md : json_object(), "score", (double)hits[i].score));
        if (top_n) json_object_set_new(json_array_get(arr, i), "rerank_score", json_real(hits[i].rerank_score));
        if (hits[i].context) json_object_set_new(json_array_get(arr, i), "context", json_string(hits[i].context));
    }
    embd_hits_free(hits, n);
    json_t *res = json_pack("{s:s, s:s, s:o}", "collection", coll, "model", a->model_name, "hits", arr);
    if (res && top_n) json_object_set_new(res, "rerank_model", json_string(embd_reranker_name(a->reranker)));
    return reply(out, 200, res);
}

int embd_coll_api_handle(embd_coll_api *a, const char *method, const char *url, char *body, size_t len, char **out) {
    *out = NULL;
    const char *p = url + strlen("/v1/collections");
    char msg[256];
    if (!*p || !strcmp(p, "/")) {
        if (!strcmp(method, "POST")) return create(a, body, len, out);
        if (!strcmp(method, "GET")) {
            embd_coll_info *all = NULL;
            size_t n = 0;
            int rc = embd_store_list(a->store, &all, &n, msg, sizeof msg);
            if (rc) return store_error(out, rc, msg);
            json_t *arr = json_array();
            for (size_t i = 0; i < n; i++) json_array_append_new(arr, info_json(a, &all[i]));
            free(all);
            return reply(out, 200, json_pack("{s:o}", "collections", arr));
        }
        return error(out, 405, "method_not_allowed", "/v1/collections takes GET and POST");
    }
    /* /{c}, /{c}/documents, /{c}/documents/{id}, /{c}/search */
    p++;
    const char *slash = strchr(p, '/');
    size_t nl = slash ? (size_t)(slash - p) : strlen(p);
    char coll[72];
    if (!nl || nl >= sizeof coll) return error(out, 404, "not_found", "no such collection");
    memcpy(coll, p, nl);
    coll[nl] = 0;
    const char *rest = slash ? slash : "";
    if (!*rest) {
        if (!strcmp(method, "GET")) {
            embd_coll_info info;
            int rc = embd_store_info(a->store, coll, &info, NULL, msg, sizeof msg);
            if (rc) return store_error(out, rc, msg);
            return reply(out, 200, info_json(a, &info));
        }
        if (!strcmp(method, "DELETE")) {
            int rc = embd_store_drop(a->store, coll, msg, sizeof msg);
            if (rc) return store_error(out, rc, msg);
            return reply(out, 200, json_pack("{s:s, s:b}", "name", coll, "deleted", 1));
        }
        return error(out, 405, "method_not_allowed", "a collection takes GET and DELETE");
    }
    if (!strcmp(rest, "/documents")) {
        if (strcmp(method, "POST")) return error(out, 405, "method_not_allowed", "documents are added with POST");
        return ingest(a, coll, body, len, out);
    }
    if (!strncmp(rest, "/documents/", 11) && rest[11]) {
        if (strcmp(method, "DELETE")) return error(out, 405, "method_not_allowed", "a document is removed with DELETE");
        int rc = embd_store_delete_doc(a->store, coll, rest + 11, msg, sizeof msg);
        if (rc) return store_error(out, rc, msg);
        return reply(out, 200, json_pack("{s:s, s:s, s:b}", "collection", coll, "id", rest + 11, "deleted", 1));
    }
    if (!strcmp(rest, "/jobs") || !strncmp(rest, "/jobs/", 6)) return jobs_route(a, coll, method, rest[5] ? rest + 6 : "", out);
    if (!strcmp(rest, "/search")) {
        if (strcmp(method, "POST")) return error(out, 405, "method_not_allowed", "search takes POST");
        return search(a, coll, body, len, out);
    }
    snprintf(msg, sizeof msg, "no route %.200s", url);
    return error(out, 404, "not_found", msg);
}
