/* `embd serve`: the HTTP front of the scheduler (libmicrohttpd, epoll thread pool). */
#ifndef EMBD_SERVER_H
#define EMBD_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "scheduler/sched.h"

typedef struct {
    const char *model_path;
    const char *model_name;     /* reported as "model"; default: file name without .gguf */
    const char *tokenizer_json; /* optional HF tokenizer.json */
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
    int workers;                /* inference worker processes; 0: in this process (src/worker) */
    double worker_timeout;      /* seconds of heartbeat silence before a busy worker is replaced */
    size_t max_memory;          /* memory budget in bytes (workers only); 0: ... */
    double max_memory_percent;  /* ... min(cgroup limit, this % of RAM); 0: 70, not measured at start */
    size_t min_batch, max_batch; /* adaptive forward-pass size bounds (tokens); max 0: pass_tokens */
} embd_server_opts;

void embd_server_opts_default(embd_server_opts *o);

/* Loads the model, serves until SIGTERM/SIGINT, drains, returns a process exit status
 * (0 after a clean shutdown, 2 when the model or the address cannot be used). */
int embd_server_run(const embd_server_opts *o);

#endif
