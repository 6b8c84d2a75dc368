/* `embd ingest PATH... --collection C`: files and directories into a collection, with progress.
 * With --server URL the documents go to a running `embd serve --data-dir` as ingest jobs
 * (POST /v1/collections/C/documents with "async": true), at most two in flight, and their
 * progress is polled; with --data-dir and --model it is `embd collections ingest` in-process. */
#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/files.h"
#include "util/sys.h"

enum { BATCH_FILES = 128, BATCH_BYTES = 4 << 20, IN_FLIGHT = 2 };

static void usage(FILE *f) {
    fprintf(f,
            "usage: embd ingest PATH... --collection C --server URL [--api-key KEY]\n"
            "       embd ingest PATH... --collection C --data-dir DIR --model M.gguf [--model-name N] [--threads N]\n\n"
            "Files, or directories walked recursively (hidden entries, .gitignore'd paths, binaries and files\n"
            "over 8 MiB skipped); document id = path, metadata {path, ext}. With --server the server runs the\n"
            "ingest as jobs (GET /v1/collections/C/jobs/ID); without it, this process does (as\n"
            "`embd collections ingest`). Progress: a bar on a terminal, a line every 2 s otherwise.\n\n"
            "  --api-key KEY      bearer key for the server (default: $EMBD_API_KEY)\n"
            "  --interval S       seconds between progress polls (default 0.25)\n"
            "  -q, --quiet        no progress\n"
            "Exit status: 0 ok, 1 usage, 2 server or collection unusable, 3 some documents failed.\n");
}

typedef struct {
    char *p;
    size_t n;
} buf;

static size_t on_data(char *p, size_t sz, size_t nm, void *ud) {
    buf *b = ud;
    char *q = realloc(b->p, b->n + sz * nm + 1);
    if (!q) return 0;
    memcpy(q + b->n, p, sz * nm);
    b->n += sz * nm;
    q[b->n] = 0;
    b->p = q;
    return sz * nm;
}

/* One request; *out: the JSON reply (NULL if none). Returns the HTTP status, or 0 with err. */
static long http(CURL *c, const char *method, const char *url, const char *key, const char *body, json_t **out,
                 char *err, size_t errlen) {
    *out = NULL;
    buf b = {0};
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    char auth[1100];
    if (key && snprintf(auth, sizeof auth, "Authorization: Bearer %s", key) < (int)sizeof auth) h = curl_slist_append(h, auth);
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 600L);
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    if (rc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    else embd_fail(err, errlen, "%s: %s", url, curl_easy_strerror(rc));
    if (b.p) *out = json_loadb(b.p, b.n, 0, NULL);
    if (code && code >= 300) {
        const char *m = json_string_value(json_object_get(json_object_get(*out, "error"), "message"));
        embd_fail(err, errlen, "HTTP %ld: %s", code, m ? m : b.p ? b.p : "");
    }
    free(b.p);
    curl_slist_free_all(h);
    return code;
}

typedef struct {
    char id[64];
    size_t n;           /* documents submitted */
    size_t done, chunks, enriched, degraded; /* last seen */
} rjob;

static int remote(char **paths, int npaths, const char *server, const char *coll, const char *key, double interval,
                  bool quiet) {
    path_list files = {0};
    for (int i = 0; i < npaths; i++)
        if (embd_walk(paths[i], &files, 0, NULL) < 0) {
            embd_paths_free(&files);
            return EMBD_EXIT_UNUSABLE;
        }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *c = curl_easy_init();
    char url[4096], err[512] = "";
    snprintf(url, sizeof url, "%s/v1/collections/%s/documents", server, coll);
    rjob fly[IN_FLIGHT];
    size_t nfly = 0, next = 0, skipped = 0, finished_docs = 0, chunks = 0, enriched = 0, degraded = 0, failed = 0;
    int status = c ? EMBD_EXIT_OK : EMBD_EXIT_UNUSABLE;
    embd_progress pg;
    embd_progress_init(&pg, quiet);
    while (status == EMBD_EXIT_OK && (next < files.n || nfly)) {
        /* submit: the next batch of readable text files, while fewer than IN_FLIGHT jobs run */
        while (status == EMBD_EXIT_OK && nfly < IN_FLIGHT && next < files.n) {
            json_t *docs = json_array();
            size_t bytes = 0;
            for (; next < files.n && json_array_size(docs) < BATCH_FILES && bytes < BATCH_BYTES; next++) {
                size_t len = 0;
                char *t = embd_read_text(files.paths[next], &len);
                json_t *text = t ? json_stringn(t, len) : NULL; /* NULL too when it is not UTF-8 */
                free(t);
                if (!text) {
                    skipped++;
                    continue;
                }
                const char *dot = strrchr(files.paths[next], '.');
                json_array_append_new(docs, json_pack("{s:s, s:o, s:{s:s, s:s}}", "id", files.paths[next], "text", text,
                                                      "metadata", "path", files.paths[next], "ext",
                                                      dot && !strchr(dot, '/') ? dot + 1 : ""));
                bytes += len;
            }
            size_t n = json_array_size(docs);
            if (!n) {
                json_decref(docs);
                continue;
            }
            json_t *req = json_pack("{s:o, s:b}", "documents", docs, "async", 1);
            char *body = json_dumps(req, JSON_COMPACT);
            json_decref(req);
            json_t *r = NULL;
            long code = body ? http(c, "POST", url, key, body, &r, err, sizeof err) : 0;
            free(body);
            const char *id = json_string_value(json_object_get(r, "id"));
            if (code == 202 && id) {
                rjob *j = &fly[nfly++];
                *j = (rjob){.n = n};
                snprintf(j->id, sizeof j->id, "%s", id);
            } else {
                if (!err[0]) snprintf(err, sizeof err, "HTTP %ld: unexpected reply", code);
                status = code >= 400 && code < 500 && code != 404 ? EMBD_EXIT_USAGE : EMBD_EXIT_UNUSABLE;
            }
            json_decref(r);
        }
        /* poll the jobs in flight */
        size_t live_docs = 0, live_chunks = 0, live_enriched = 0, live_degraded = 0;
        for (size_t k = 0; k < nfly && status == EMBD_EXIT_OK;) {
            char jurl[4200];
            snprintf(jurl, sizeof jurl, "%s/v1/collections/%s/jobs/%s", server, coll, fly[k].id);
            json_t *r = NULL;
            long code = http(c, "GET", jurl, key, NULL, &r, err, sizeof err);
            const char *state = json_string_value(json_object_get(r, "state"));
            if (code != 200 || !state) {
                status = EMBD_EXIT_UNUSABLE;
                json_decref(r);
                break;
            }
            json_t *d = json_object_get(r, "documents"), *ch = json_object_get(r, "chunks"), *en = json_object_get(r, "enrichment");
            fly[k].done = (size_t)json_integer_value(json_object_get(d, "done"));
            fly[k].chunks = (size_t)json_integer_value(json_object_get(ch, "stored"));
            fly[k].enriched = (size_t)json_integer_value(json_object_get(en, "enriched"));
            fly[k].degraded = (size_t)json_integer_value(json_object_get(en, "degraded"));
            bool ended = strcmp(state, "queued") && strcmp(state, "running");
            if (ended) {
                size_t i;
                json_t *e;
                json_array_foreach(json_object_get(r, "errors"), i, e) {
                    if (!quiet && pg.tty) fputc('\n', stderr);
                    fprintf(stderr, "embd ingest: %s: %s\n", json_string_value(json_object_get(e, "id")),
                            json_string_value(json_object_get(e, "error")));
                }
                failed += (size_t)json_integer_value(json_object_get(d, "failed"));
                finished_docs += fly[k].n, chunks += fly[k].chunks, enriched += fly[k].enriched, degraded += fly[k].degraded;
                if (strcmp(state, "done")) {
                    const char *m = json_string_value(json_object_get(r, "error"));
                    snprintf(err, sizeof err, "job %s %s: %s", fly[k].id, state, m ? m : "?");
                    status = EMBD_EXIT_UNUSABLE;
                }
                fly[k] = fly[--nfly];
            } else {
                live_docs += fly[k].done, live_chunks += fly[k].chunks;
                live_enriched += fly[k].enriched, live_degraded += fly[k].degraded;
                k++;
            }
            json_decref(r);
        }
        embd_progress_show(&pg, skipped + finished_docs + live_docs, files.n, chunks + live_chunks,
                           enriched + live_enriched, degraded + live_degraded, skipped, false);
        if (nfly && status == EMBD_EXIT_OK)
            nanosleep(&(struct timespec){(time_t)interval, (long)((interval - (double)(time_t)interval) * 1e9)}, NULL);
    }
    if (status == EMBD_EXIT_OK)
        embd_progress_show(&pg, skipped + finished_docs, files.n, chunks, enriched, degraded, skipped, true);
    else {
        if (pg.tty) fputc('\n', stderr);
        fprintf(stderr, "embd ingest: %s\n", err);
    }
    if (status == EMBD_EXIT_OK && failed) status = EMBD_EXIT_ITEM_ERRORS;
    if (c) curl_easy_cleanup(c);
    embd_paths_free(&files);
    return status;
}

int cmd_ingest(int argc, char **argv) {
    static const struct option lo[] = {
        {"collection", required_argument, 0, 'c'}, {"server", required_argument, 0, 's'},
        {"api-key", required_argument, 0, 'k'},    {"data-dir", required_argument, 0, 'd'},
        {"model", required_argument, 0, 'm'},      {"model-name", required_argument, 0, 'N'},
        {"threads", required_argument, 0, 't'},    {"interval", required_argument, 0, 'i'},
        {"quiet", no_argument, 0, 'q'},            {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *coll = NULL, *server = NULL, *key = getenv("EMBD_API_KEY"), *dir = NULL, *model = NULL, *mname = NULL,
               *threads = NULL;
    double interval = 0.25;
    bool quiet = false;
    optind = 1;
    for (int ch; (ch = getopt_long(argc, argv, "qh", lo, NULL)) != -1;) {
        char *end = NULL;
        switch (ch) {
        case 'c': coll = optarg; break;
        case 's': server = optarg; break;
        case 'k': key = optarg; break;
        case 'd': dir = optarg; break;
        case 'm': model = optarg; break;
        case 'N': mname = optarg; break;
        case 't': threads = optarg; break;
        case 'q': quiet = true; break;
        case 'i':
            interval = strtod(optarg, &end);
            if (!*optarg || *end || !(interval >= 0.01 && interval <= 60)) {
                fprintf(stderr, "embd ingest: --interval must be 0.01-60 seconds\n");
                return EMBD_EXIT_USAGE;
            }
            break;
        case 'h': usage(stdout); return EMBD_EXIT_OK;
        default: usage(stderr); return EMBD_EXIT_USAGE;
        }
    }
    if (!coll || optind >= argc || (!server == !dir) || (dir && !model)) {
        fprintf(stderr, "embd ingest: needs PATH..., --collection, and either --server URL or --data-dir with --model\n");
        usage(stderr);
        return EMBD_EXIT_USAGE;
    }
    if (server) {
        char base[2048];
        snprintf(base, sizeof base, "%s", server);
        for (size_t n = strlen(base); n && base[n - 1] == '/';) base[--n] = 0;
        return remote(argv + optind, argc - optind, base, coll, key, interval, quiet);
    }
    /* in-process: the same as `embd collections ingest` */
    char **av = calloc((size_t)argc + 16, sizeof *av);
    if (!av) return EMBD_EXIT_UNUSABLE;
    int n = 0;
    av[n++] = "collections", av[n++] = "ingest", av[n++] = (char *)coll;
    av[n++] = "--data-dir", av[n++] = (char *)dir, av[n++] = "--model", av[n++] = (char *)model;
    if (mname) av[n++] = "--model-name", av[n++] = (char *)mname;
    if (threads) av[n++] = "--threads", av[n++] = (char *)threads;
    if (quiet) av[n++] = "--quiet";
    av[n++] = "--";
    for (int i = optind; i < argc; i++) av[n++] = argv[i];
    int rc = cmd_collections(n, av);
    free(av);
    return rc;
}
