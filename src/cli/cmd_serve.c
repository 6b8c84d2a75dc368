/* `embd serve`: flags and EMBD_* environment variables -> embd_server_opts. A flag beats its
 * variable, which beats the default. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"
#include "server/server.h"
#include "util/download.h"

typedef enum { T_STR, T_INT, T_SIZE, T_SECONDS, T_MS, T_BOOL, T_POOL, T_NUM, T_WORKERS } opt_type;

typedef struct {
    const char *flag, *env, *help;
    opt_type type;
    void *dst;
} opt_def;

static int set_value(const opt_def *d, const char *v, char *err, size_t errlen) {
    char *end = NULL;
    errno = 0;
    switch (d->type) {
    case T_STR:
        *(const char **)d->dst = v;
        return 0;
    case T_WORKERS:
        if (!strcmp(v, "auto")) {
            *(int *)d->dst = -1; /* auto-scaling, resolved after parsing */
            return 0;
        }
        /* fall through */
    case T_INT: {
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || x < 0 || x > 65535 * 16) break;
        *(int *)d->dst = (int)x;
        return 0;
    }
    case T_SIZE: {
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || end == v || *end || x < 1 || v[0] == '-') break;
        *(size_t *)d->dst = (size_t)x;
        return 0;
    }
    case T_SECONDS:
    case T_NUM:
    case T_MS: {
        double x = strtod(v, &end);
        if (errno || end == v || *end || !(x >= 0) || x > 1e7) break;
        *(double *)d->dst = d->type == T_MS ? x / 1000.0 : x;
        return 0;
    }
    case T_BOOL:
        if (!strcasecmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on")) {
            *(bool *)d->dst = true;
            return 0;
        }
        if (!strcasecmp(v, "0") || !strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off")) {
            *(bool *)d->dst = false;
            return 0;
        }
        break;
    case T_POOL: {
        embd_pooling p = embd_pooling_parse(v);
        if (p != EMBD_POOL_CLS && p != EMBD_POOL_MEAN && p != EMBD_POOL_LAST) break;
        *(embd_pooling *)d->dst = p;
        return 0;
    }
    }
    snprintf(err, errlen, "invalid value '%s' for --%s (%s)", v, d->flag, d->env);
    return -1;
}

static void serve_usage(FILE *f, const opt_def *defs, size_t n) {
    fprintf(f,
            "usage: embd serve [--model M.gguf] [options]\n\n"
            "HTTP API: POST /v1/embeddings (OpenAI), /embed (TEI, and {batch_id, chunks}), /tokenize,\n"
            "/rerank and /v1/rerank (cross-encoders only); GET /info, /health, /metrics;\n"
            "with --spool: bulk jobs at /v1/jobs (POST, GET, GET /{id}, /{id}/results, DELETE /{id}).\n"
            "A CLIP model (embd convert of a CLIPModel): POST /v1/embed/image, /v1/embed/image-batch,\n"
            "/v1/embed/text and /v1/embeddings (strings that are data: URIs are images).\n"
            "Without --model: $EMBD_MODEL, else the pinned default model (downloaded once into the cache,\n"
            "see `embd pull`). SIGTERM/SIGINT: stop accepting, finish in-flight requests, exit 0.\n"
            "Auth (README \"Security\"): --api-keys-file and/or --hmac-secret-file, or --insecure; SIGHUP\n"
            "reloads the keys file.\n\n");
    for (size_t i = 0; i < n; i++) fprintf(f, "  --%-22s %-28s %s\n", defs[i].flag, defs[i].env, defs[i].help);
}

int cmd_serve(int argc, char **argv) {
    embd_server_opts o;
    embd_server_opts_default(&o);
    bool no_truncate = false;
    const char *port_s = NULL;
    double download_timeout = (double)o.fetch.timeout_ms / 1000.0;
    const opt_def defs[] = {
        {"model", "EMBD_MODEL", "GGUF embedding model", T_STR, &o.model_path},
        {"model-name", "EMBD_MODEL_NAME", "name reported in responses (default: file name)", T_STR, &o.model_name},
        {"tokenizer", "EMBD_TOKENIZER", "HF tokenizer.json instead of the GGUF vocabulary", T_STR, &o.tokenizer_json},
        {"host", "EMBD_HOST", "address to bind (default 127.0.0.1)", T_STR, &o.host},
        {"port", "EMBD_PORT", "TCP port, 0 = any free one (default 8080)", T_STR, &port_s},
        {"threads", "EMBD_THREADS", "compute threads (default: all usable cores)", T_INT, &o.threads},
        {"device", "EMBD_DEVICE", "cpu|auto|cuda|cuda:N: where inference runs (default auto)", T_STR, &o.device},
        {"http-threads", "EMBD_HTTP_THREADS", "HTTP worker threads (default 4)", T_INT, &o.http_threads},
        {"pooling", "EMBD_POOLING", "cls|mean|last (default: the model's)", T_POOL, &o.sched.pooling},
        {"max-batch-tokens", "EMBD_MAX_BATCH_TOKENS", "tokens per scheduler batch (default 4096)", T_SIZE,
         &o.sched.max_batch_tokens},
        {"pass-tokens", "EMBD_PASS_TOKENS", "padded tokens per forward pass (default 4096)", T_SIZE,
         &o.sched.pass_tokens},
        {"max-batch-delay-ms", "EMBD_MAX_BATCH_DELAY_MS", "wait for more items before a batch, ms (default 0)", T_MS,
         &o.sched.max_batch_delay},
        {"max-queue-tokens", "EMBD_MAX_QUEUE_TOKENS", "queued tokens before 429 (default 262144)", T_SIZE,
         &o.sched.max_queue_tokens},
        {"max-queue-items", "EMBD_MAX_QUEUE_ITEMS", "queued inputs before 429 (default 8192)", T_SIZE,
         &o.sched.max_queue_items},
        {"max-items", "EMBD_MAX_ITEMS", "inputs per request, else 413 (default 2048)", T_SIZE, &o.max_items},
        {"max-input-chars", "EMBD_MAX_INPUT_CHARS", "characters per input, else 413 (default 100000)", T_SIZE,
         &o.max_input_chars},
        {"max-payload-bytes", "EMBD_MAX_PAYLOAD_BYTES", "request body bytes, else 413 (default 16777216)", T_SIZE,
         &o.max_payload_bytes},
        {"request-timeout", "EMBD_REQUEST_TIMEOUT", "seconds before a queued request gets 504 (default 60; 0 off)",
         T_SECONDS, &o.request_timeout},
        {"shutdown-grace", "EMBD_SHUTDOWN_GRACE", "seconds to finish in-flight work on SIGTERM (default 30)", T_SECONDS,
         &o.shutdown_grace},
        {"no-truncate", "EMBD_NO_TRUNCATE", "over-long inputs are errors unless a request says truncate", T_BOOL,
         &no_truncate},
        {"log-requests", "EMBD_LOG_REQUESTS", "one stderr line per request", T_BOOL, &o.log_requests},
        {"api-keys-file", "EMBD_API_KEYS_FILE", "bearer keys: NAME KEY SCOPES [rps=N] [tpm=N] per line", T_STR,
         &o.auth.api_keys_file},
        {"hmac-secret-file", "EMBD_HMAC_SECRET_FILE", "secret for X-Embd-Signature request signing", T_STR,
         &o.auth.hmac_secret_file},
        {"hmac-window", "EMBD_HMAC_WINDOW", "seconds a signed request's timestamp may be off (default 300)",
         T_SECONDS, &o.auth.hmac_window},
        {"replay-cache-max", "EMBD_REPLAY_CACHE_MAX", "signatures remembered, then 503 (default 100000)", T_SIZE,
         &o.auth.replay_cache_max},
        {"insecure", "EMBD_INSECURE", "serve without authentication (refused otherwise)", T_BOOL, &o.auth.insecure},
        {"public-health", "EMBD_PUBLIC_HEALTH", "GET /health without credentials", T_BOOL, &o.auth.public_health},
        {"public-metrics", "EMBD_PUBLIC_METRICS", "GET /metrics without credentials", T_BOOL,
         &o.auth.public_metrics},
        {"rate-limit-rps", "EMBD_RATE_LIMIT_RPS", "requests/s per key, else 429 (default 0: unlimited)", T_NUM,
         &o.rate_rps},
        {"rate-limit-tpm", "EMBD_RATE_LIMIT_TPM", "input tokens/min per key, else 429 (default 0: unlimited)", T_NUM,
         &o.rate_tpm},
        {"max-connections", "EMBD_MAX_CONNECTIONS", "open connections (default 1024; 0: no limit)", T_INT,
         &o.max_connections},
        {"max-connections-per-ip", "EMBD_MAX_CONNECTIONS_PER_IP", "connections per client IP (default 0: no limit)",
         T_INT, &o.max_connections_per_ip},
        {"connection-timeout", "EMBD_CONNECTION_TIMEOUT", "seconds idle or to send a request's headers (default 30)",
         T_SECONDS, &o.connection_timeout},
        {"max-header-bytes", "EMBD_MAX_HEADER_BYTES", "request line + headers, else 431 (default 32768)", T_SIZE,
         &o.max_header_bytes},
        {"max-json-depth", "EMBD_MAX_JSON_DEPTH", "nesting of a request body, else 400 (default 32)", T_INT,
         &o.max_json_depth},
        {"spool", "EMBD_SPOOL", "spool directory: run bulk jobs, serve /v1/jobs (see embd jobs)", T_STR, &o.spool_dir},
        {"jobs-stale-timeout", "EMBD_JOBS_STALE_TIMEOUT", "seconds before a dead worker's job is taken over (30)",
         T_SECONDS, &o.jobs_stale_timeout},
        {"data-dir", "EMBD_DATA_DIR", "collections (/v1/collections) are stored here", T_STR, &o.data_dir},
        {"rerank-model", "EMBD_RERANK_MODEL", "cross-encoder GGUF for collection search rerank", T_STR,
         &o.rerank_model},
        {"workers", "EMBD_WORKERS", "inference worker processes, 0 = in the server process, auto = 1 grown by load (default 1)",
         T_WORKERS, &o.workers},
        {"max-workers", "EMBD_MAX_WORKERS", "with --workers auto: at most this many (default: the usable cores)", T_INT,
         &o.max_workers},
        {"worker-timeout", "EMBD_WORKER_TIMEOUT", "seconds without a heartbeat before a busy worker is replaced (default 10)",
         T_SECONDS, &o.worker_timeout},
        {"max-memory", "EMBD_MAX_MEMORY", "memory budget in bytes for server + workers (default: see next)", T_SIZE,
         &o.max_memory},
        {"max-memory-percent", "EMBD_MAX_MEMORY_PERCENT", "budget: % of RAM, or the cgroup limit if lower (default 70)",
         T_SECONDS, &o.max_memory_percent},
        {"min-batch", "EMBD_MIN_BATCH", "least tokens per forward pass the governor shrinks to (default 64)", T_SIZE,
         &o.min_batch},
        {"max-batch", "EMBD_MAX_BATCH", "most tokens per forward pass it grows to (default: --pass-tokens)", T_SIZE,
         &o.max_batch},
        {"max-image-batch", "EMBD_MAX_IMAGE_BATCH", "CLIP: images per request, else 413 (default 16)", T_SIZE,
         &o.max_image_batch},
        {"max-image-pixels", "EMBD_MAX_IMAGE_PIXELS", "CLIP: decoded width x height, else 422 (default 50000000)",
         T_SIZE, &o.max_image_pixels},
        {"max-image-requests", "EMBD_MAX_IMAGE_REQUESTS", "CLIP: requests in flight, else 429 (default 64)", T_INT,
         &o.max_image_requests},
        {"image-decoders", "EMBD_IMAGE_DECODERS",
         "CLIP: images decoded and preprocessed at once, over all requests (default: one per core)", T_INT,
         &o.image_decoders},
        {"download-concurrency", "EMBD_DOWNLOAD_CONCURRENCY", "CLIP: image downloads at once per request (default 8)",
         T_INT, &o.fetch.concurrency},
        {"download-timeout", "EMBD_DOWNLOAD_TIMEOUT", "CLIP: seconds for one image download (default 30)", T_SECONDS,
         &download_timeout},
        {"download-max-bytes", "EMBD_DOWNLOAD_MAX_BYTES", "CLIP: bytes of one downloaded image (default 10485760)",
         T_SIZE, &o.fetch.max_bytes},
        {"download-max-redirects", "EMBD_DOWNLOAD_MAX_REDIRECTS", "CLIP: redirects followed (default 3)", T_INT,
         &o.fetch.max_redirects},
        {"download-retries", "EMBD_DOWNLOAD_RETRIES",
         "CLIP: further attempts after a broken connection or HTTP 408/429/5xx, with backoff, within the "
         "download timeout (default 2)",
         T_INT, &o.fetch.retries},
        {"allow-private-downloads", "EMBD_ALLOW_PRIVATE_DOWNLOADS",
         "CLIP: allow image URLs on loopback/private/link-local addresses (SSRF guard off)", T_BOOL,
         &o.fetch.allow_private},
    };
    const size_t nd = sizeof defs / sizeof defs[0];
    char err[256];
    for (size_t i = 0; i < nd; i++) {
        const char *v = getenv(defs[i].env);
        if (v && *v && set_value(&defs[i], v, err, sizeof err)) {
            fprintf(stderr, "embd serve: %s\n", err);
            return EMBD_EXIT_USAGE;
        }
    }
    struct option lo[sizeof defs / sizeof defs[0] + 2];
    for (size_t i = 0; i < nd; i++)
        lo[i] = (struct option){defs[i].flag, defs[i].type == T_BOOL ? no_argument : required_argument, NULL, (int)i};
    lo[nd] = (struct option){"help", no_argument, NULL, 'h'};
    lo[nd + 1] = (struct option){0, 0, 0, 0};
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "m:p:t:h", lo, NULL)) != -1;) {
        const char *v = optarg;
        int idx = c;
        if (c == 'h') {
            serve_usage(stdout, defs, nd);
            return EMBD_EXIT_OK;
        }
        if (c == 'm') idx = 0;
        else if (c == 'p') idx = 4;
        else if (c == 't') idx = 5;
        else if (c < 0 || (size_t)c >= nd) {
            serve_usage(stderr, defs, nd);
            return EMBD_EXIT_USAGE;
        }
        if (defs[idx].type == T_BOOL) v = "1";
        if (set_value(&defs[idx], v, err, sizeof err)) {
            fprintf(stderr, "embd serve: %s\n", err);
            return EMBD_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "embd serve: unexpected argument '%s'\n", argv[optind]);
        return EMBD_EXIT_USAGE;
    }
    if (port_s) {
        char *end = NULL;
        long p = strtol(port_s, &end, 10);
        if (end == port_s || *end || p < 0 || p > 65535) {
            fprintf(stderr, "embd serve: invalid port '%s'\n", port_s);
            return EMBD_EXIT_USAGE;
        }
        o.port = (int)p;
    }
    o.truncate = !no_truncate;
    o.fetch.timeout_ms = (long)(download_timeout * 1000.0);
    if (o.fetch.timeout_ms < 1 || o.fetch.concurrency < 1 || o.max_image_batch > 4096 || o.image_decoders < 0 ||
        o.fetch.retries < 0 || o.fetch.retries > 10) {
        fprintf(stderr, "embd serve: --download-timeout and --download-concurrency must be positive, "
                        "--image-decoders not negative, --download-retries 0-10, --max-image-batch at most 4096\n");
        return EMBD_EXIT_USAGE;
    }
    /* Before a default model is downloaded: a server that would refuse to start says so now. */
    embd_auth *auth = embd_auth_new(&o.auth, err, sizeof err);
    if (!auth) {
        fprintf(stderr, "embd serve: %s\n", err);
        return EMBD_EXIT_UNUSABLE;
    }
    embd_auth_free(auth);
    if (o.rerank_model && !o.data_dir) {
        fprintf(stderr, "embd serve: --rerank-model reranks collection searches: it needs --data-dir\n");
        return EMBD_EXIT_USAGE;
    }
    char path[4096];
    if (!o.model_path) {
        if (embd_default_model(path, sizeof path, err, sizeof err)) {
            fprintf(stderr, "embd serve: no --model given and no default model: %s\n", err);
            return EMBD_EXIT_UNUSABLE;
        }
        o.model_path = path;
    }
    if (o.device) setenv("EMBD_DEVICE", o.device, 1); /* the workers resolve the same device */
    if (o.workers == -1) o.autoscale = true, o.workers = 1;
    return embd_server_run(&o);
}
