/* /v1/jobs: bulk jobs over HTTP, backed by the spool directory.
 *   POST   /v1/jobs                 body: JSONL items (options in the query string), or a JSON
 *                                   object {"path": FILE inside the spool, "id"?, options...}
 *                                   -> 202 {"id","state","total"}
 *   GET    /v1/jobs[?state=S]       list
 *   GET    /v1/jobs/{id}            state and progress
 *   GET    /v1/jobs/{id}/results    the checkpointed results so far (JSONL, streamed from disk)
 *   GET    /v1/jobs/{id}/errors     per-item errors (JSONL)
 *   GET    /v1/jobs/{id}/results.npy  the npy export of a finished format=npy job
 *   DELETE /v1/jobs/{id}            cancel */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "server/api.h"
#include "server/jobs_internal.h"

static int respond(struct MHD_Connection *conn, int status, char *json, const char *location) {
    if (!json) {
        json = strdup("{\"error\":{\"type\":\"out_of_memory\",\"message\":\"out of memory\"}}");
        status = 503;
        if (!json) return 0;
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(json), json, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(json);
        return 0;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (location) MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, location);
    int ok = MHD_queue_response(conn, (unsigned)status, r) == MHD_YES;
    MHD_destroy_response(r);
    return ok ? status : 0;
}

__attribute__((format(printf, 4, 5))) static int fail(struct MHD_Connection *conn, int status, const char *type,
                                                      const char *fmt, ...) {
    embd_api_error e;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    embd_api_fail(&e, status, type, -1, "%s", msg);
    return respond(conn, status, embd_api_error_json(&e), NULL);
}

static int send_json_obj(struct MHD_Connection *conn, int status, json_t *j, const char *location) {
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return respond(conn, status, s, location);
}

/* Options from the query string of a JSONL submission. */
static int query_options(struct MHD_Connection *conn, embd_jobopts *o, char *err, size_t errlen) {
    json_t *j = json_object();
    static const char *const bools[] = {"normalize", "truncate"};
    for (int i = 0; i < 2; i++) {
        const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, bools[i]);
        if (!v) continue;
        if (!strcmp(v, "true") || !strcmp(v, "1")) json_object_set_new(j, bools[i], json_true());
        else if (!strcmp(v, "false") || !strcmp(v, "0")) json_object_set_new(j, bools[i], json_false());
        else json_object_set_new(j, bools[i], json_string(v)); /* rejected below with the key's name */
    }
    const char *v;
    if ((v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "priority"))) json_object_set_new(j, "priority", json_string(v));
    if ((v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "format"))) json_object_set_new(j, "format", json_string(v));
    if ((v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "deadline"))) {
        char *end = NULL;
        double d = strtod(v, &end);
        json_object_set_new(j, "deadline", *v && !*end ? json_real(d) : json_string(v));
    }
    int rc = embd_jobopts_from_json(o, j, err, errlen);
    json_decref(j);
    return rc;
}

/* A JSON object naming an input file (rather than JSONL items)? */
static json_t *spec_body(const char *body, size_t len) {
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n')) i++;
    if (i == len || body[i] != '{') return NULL;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    if (json_is_object(j) && json_object_get(j, "path") && !json_object_get(j, "text")) return j;
    json_decref(j);
    return NULL;
}

static bool has_items(const char *b, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (b[i] != ' ' && b[i] != '\t' && b[i] != '\r' && b[i] != '\n') return true;
    return false;
}

static int submit(embd_jobs *J, struct MHD_Connection *conn, const char *body, size_t len) {
    embd_jobopts o;
    embd_jobopts_default(&o);
    char err[512], idbuf[72], abs_in[4096] = "";
    const char *id = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "id");
    json_t *spec = spec_body(body, len);
    if (spec) {
        json_t *opts = json_object_get(spec, "options");
        if (embd_jobopts_from_json(&o, spec, err, sizeof err) || (opts && embd_jobopts_from_json(&o, opts, err, sizeof err))) {
            json_decref(spec);
            return fail(conn, 400, "invalid_options", "%s", err);
        }
        json_t *jid = json_object_get(spec, "id");
        const char *path = json_string_value(json_object_get(spec, "path"));
        if (jid && !json_is_string(jid)) {
            json_decref(spec);
            return fail(conn, 400, "invalid_request", "id: expected a string");
        }
        if (jid) {
            snprintf(idbuf, sizeof idbuf, "%s", json_string_length(jid) < 65 ? json_string_value(jid) : "-");
            id = idbuf; /* checked below */
        }
        if (!path) {
            json_decref(spec);
            return fail(conn, 400, "invalid_request", "path: expected a string (a file inside the spool directory)");
        }
        /* Only files inside the spool: a client must not make the server read arbitrary files. */
        char joined[8300];
        snprintf(joined, sizeof joined, "%s/%s", J->sp.dir, path);
        char *real = realpath(path[0] == '/' ? path : joined, NULL);
        size_t dl = strlen(J->sp.dir);
        struct stat st;
        bool inside = real && !strncmp(real, J->sp.dir, dl) && real[dl] == '/' && !stat(real, &st) && S_ISREG(st.st_mode);
        if (inside) snprintf(abs_in, sizeof abs_in, "%s", real);
        free(real);
        int rc = inside ? 0 : fail(conn, 400, "invalid_path", "path '%.200s' is not a file inside the spool directory", path);
        json_decref(spec);
        if (!inside) return rc;
    } else {
        if (query_options(conn, &o, err, sizeof err)) return fail(conn, 400, "invalid_options", "%s", err);
        if (!has_items(body, len))
            return fail(conn, 400, "no_items", "the body holds no items (JSONL: one {\"id\",\"text\"} per line)");
    }
    if (id && !embd_spool_valid_id(id))
        return fail(conn, 400, "invalid_id", "job ids are 1-64 of A-Z a-z 0-9 _ - (not starting with -)");
    if (!id) {
        embd_spool_new_id(idbuf);
        id = idbuf;
    }
    if (embd_spool_find(&J->sp, id, NULL, 0) != EMBD_JS_UNKNOWN)
        return fail(conn, 409, "job_exists", "job '%s' already exists", id);
    if (!abs_in[0] && embd_spool_write_input(&J->sp, id, body, len, NULL, err, sizeof err))
        return fail(conn, 500, "spool_error", "%s", err);
    if (embd_spool_enqueue(&J->sp, id, abs_in[0] ? abs_in : NULL, &o, err, sizeof err))
        return fail(conn, strstr(err, "already exists") ? 409 : 500, "spool_error", "%s", err);
    embd_jobs_kick(J);
    json_t *st = embd_spool_status(&J->sp, id);
    if (!st) st = json_pack("{s:s, s:s}", "id", id, "state", "queued");
    char loc[128];
    snprintf(loc, sizeof loc, "/v1/jobs/%s", id);
    return send_json_obj(conn, 202, st, loc);
}

/* Streams a results file from disk (committed_only: just the checkpointed part while the job
 * runs, never a chunk that may still be rolled back). */
static int stream_file(embd_jobs *J, struct MHD_Connection *conn, const char *id, const char *suffix, bool committed_only,
                       const char *type) {
    char p[4200];
    embd_spool_path(&J->sp, p, sizeof p, "results", id, suffix);
    int fd = open(p, O_RDONLY);
    struct stat st;
    if (fd < 0 && errno == ENOENT && strcmp(suffix, ".npy")) { /* nothing written yet */
        struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
        int ok = MHD_queue_response(conn, 200, r) == MHD_YES;
        MHD_destroy_response(r);
        return ok ? 200 : 0;
    }
    if (fd < 0 || fstat(fd, &st)) {
        if (fd >= 0) close(fd);
        return fail(conn, 404, "not_found", "job %s has no %s", id, !strcmp(suffix, ".npy") ? "npy results (yet)" : "such file");
    }
    long long size = st.st_size;
    if (committed_only) {
        long long c = embd_spool_results_bytes(&J->sp, id, !strcmp(suffix, ".errors.jsonl"));
        if (c < size) size = c;
    }
    struct MHD_Response *r = MHD_create_response_from_fd((uint64_t)size, fd); /* takes fd */
    if (!r) {
        close(fd);
        return 0;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    char state[32];
    snprintf(state, sizeof state, "%s", embd_jstate_name(embd_spool_find(&J->sp, id, NULL, 0)));
    MHD_add_response_header(r, "x-job-state", state);
    int ok = MHD_queue_response(conn, 200, r) == MHD_YES;
    MHD_destroy_response(r);
    return ok ? 200 : 0;
}

int embd_jobs_http(embd_jobs *J, struct MHD_Connection *conn, const char *method, const char *url, const char *body,
                   size_t len) {
    if (!J) return fail(conn, 404, "jobs_disabled", "bulk jobs are not enabled on this server (start it with --spool DIR)");
    const char *rest = url + strlen("/v1/jobs");
    if (*rest == '/' && rest[1] == 0) rest++; /* "/v1/jobs/" is the collection too */
    if (*rest == 0) {
        if (!strcmp(method, "POST")) return submit(J, conn, body ? body : "", len);
        if (!strcmp(method, "GET")) {
            const char *s = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "state");
            embd_jstate only = EMBD_JS_UNKNOWN;
            if (s && (only = embd_jstate_parse(s)) == EMBD_JS_UNKNOWN)
                return fail(conn, 400, "invalid_state", "state must be queued, running, done, failed or cancelled");
            json_t *arr = embd_spool_list(&J->sp, only);
            return send_json_obj(conn, 200, json_pack("{s:s, s:o*}", "object", "list", "data", arr), NULL);
        }
        return fail(conn, 405, "method_not_allowed", "/v1/jobs needs GET or POST");
    }
    char id[72], sub[32] = "";
    const char *slash = strchr(rest + 1, '/');
    size_t il = slash ? (size_t)(slash - rest - 1) : strlen(rest + 1);
    if (il >= sizeof id || (slash && strlen(slash + 1) >= sizeof sub)) return fail(conn, 404, "not_found", "no such job");
    memcpy(id, rest + 1, il);
    id[il] = 0;
    if (slash) snprintf(sub, sizeof sub, "%s", slash + 1);
    embd_jstate st = embd_spool_find(&J->sp, id, NULL, 0);
    if (st == EMBD_JS_UNKNOWN) return fail(conn, 404, "not_found", "no job '%s'", embd_spool_valid_id(id) ? id : "?");
    if (!sub[0]) {
        if (!strcmp(method, "GET")) {
            json_t *j = embd_spool_status(&J->sp, id);
            return j ? send_json_obj(conn, 200, j, NULL) : fail(conn, 404, "not_found", "no job '%s'", id);
        }
        if (!strcmp(method, "DELETE")) {
            embd_jstate was = embd_spool_cancel(&J->sp, id);
            if (was == EMBD_JS_UNKNOWN) return fail(conn, 404, "not_found", "no job '%s'", id);
            if (was != EMBD_JS_QUEUED && was != EMBD_JS_RUNNING)
                return fail(conn, 409, "job_finished", "job '%s' is already %s", id, embd_jstate_name(was));
            return send_json_obj(conn, 202,
                                 json_pack("{s:s, s:s}", "id", id, "state", was == EMBD_JS_QUEUED ? "cancelled" : "cancelling"),
                                 NULL);
        }
        return fail(conn, 405, "method_not_allowed", "/v1/jobs/{id} needs GET or DELETE");
    }
    if (strcmp(method, "GET")) return fail(conn, 405, "method_not_allowed", "/v1/jobs/{id}/%s needs GET", sub);
    if (!strcmp(sub, "results")) return stream_file(J, conn, id, ".jsonl", true, "application/x-ndjson");
    if (!strcmp(sub, "errors")) return stream_file(J, conn, id, ".errors.jsonl", true, "application/x-ndjson");
    if (!strcmp(sub, "results.npy")) return stream_file(J, conn, id, ".npy", false, "application/octet-stream");
    return fail(conn, 404, "not_found", "no route /v1/jobs/{id}/%s", sub);
}
