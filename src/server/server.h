/* `embd serve`: the HTTP front of the scheduler (libmicrohttpd, epoll thread pool). */
#ifndef EMBD_SERVER_H
#define EMBD_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "image/fetch.h"
#include "scheduler/sched.h"
#include "server/auth.h"

typedef struct {
    const char *model_path;
    const char *model_name;     /* reported as "model"; default: file name without .gguf */
    const char *tokenizer_json; /* optional HF tokenizer.json */
    const char *device;         /* cpu|auto|cuda|cuda:N (embd_device_resolve); NULL: $EMBD_DEVICE, else auto */
    const char *host;
    int port;                   /* 0: any free port (the chosen one is printed) */
    int threads;                /* compute threads */
    int http_threads;           /* libmicrohttpd worker threads */
    embd_sched_opts sched;
    size_t max_items;           /* inputs per request */
    size_t max_input_chars;     /* characters per input */
    size_t max_payload_bytes;   /* request body */
    double request_timeout;     /* seconds from arrival; 0: none */
    double shutdown_grace;      /* seconds in-flight requests get after SIGTERM/SIGINT */
    bool truncate;              /* default for requests that do not say */
    bool log_requests;          /* one stderr line per request */
    /* security (README "Security"): who may call, and what one caller or connection may cost */
    embd_auth_opts auth;
    double rate_rps, rate_tpm;  /* per caller: requests/s, input tokens/min; 0: unlimited */
    int max_connections, max_connections_per_ip; /* 0: unlimited */
    double connection_timeout;  /* idle, and for a request's headers; bodies get request_timeout */
    size_t max_header_bytes;    /* per-connection memory for headers and read buffer */
    int max_json_depth;         /* nesting of [ and {; 0: jansson's own 2048 */
    const char *spool_dir;      /* bulk jobs (/v1/jobs and a runner thread); NULL: off */
    double jobs_stale_timeout;  /* seconds before a dead process's job is taken over; 0: 30 */
    const char *data_dir;       /* collections (SQLite + FAISS) live here; NULL: /v1/collections off */
    const char *rerank_model;   /* cross-encoder GGUF for collection search reranking, or NULL */
    int workers;                /* inference worker processes; 0: in this process (src/worker) */
    bool autoscale;             /* --workers auto: 1..max_workers, grown and shrunk by load */
    int max_workers;            /* with autoscale; 0: the usable cores */
    double worker_timeout;      /* seconds of heartbeat silence before a busy worker is replaced */
    size_t max_memory;          /* memory budget in bytes (workers only); 0: ... */
    double max_memory_percent;  /* ... min(cgroup limit, this % of RAM); 0: 70, not measured at start */
    size_t min_batch, max_batch; /* adaptive forward-pass size bounds (tokens); max 0: pass_tokens */
    /* CLIP models (/v1/embed/image, /v1/embed/image-batch, /v1/embed/text) */
    size_t max_image_batch;     /* images per request (default 16) */
    size_t max_image_pixels;    /* decoded width x height, else the image is refused (bombs) */
    int max_image_requests;     /* CLIP requests in flight at once, else 429 (default 64) */
    int image_decoders;         /* CLIP images decoded at once over all requests (0: one per core) */
    embd_fetch_opts fetch;      /* image downloads: concurrency, timeout, size, redirects, SSRF */
} embd_server_opts;

void embd_server_opts_default(embd_server_opts *o);

/* Loads the model, serves until SIGTERM/SIGINT, drains, returns a process exit status
 * (0 after a clean shutdown, 2 when the model, the address or the auth setup cannot be used).
 * SIGHUP reloads the API keys file. */
int embd_server_run(const embd_server_opts *o);

#endif
