/* Prometheus metrics for `embd serve`: counters, histograms and gauges recorded by the HTTP
 * threads and the scheduler thread, rendered as text exposition format 0.0.4 on /metrics.
 * Every function is thread-safe; recording calls take one short mutex-held critical section. */
#ifndef EMBD_METRICS_H
#define EMBD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define EMBD_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Distinct route labels kept besides "other"; later unseen routes are counted as "other" so a
 * client cannot grow the series set without bound. */
#define EMBD_METRICS_MAX_ROUTES 32

/* Sliding window for embd_tokens_per_second. */
#define EMBD_METRICS_RATE_WINDOW 10.0

typedef struct embd_metrics embd_metrics;

embd_metrics *embd_metrics_new(void); /* NULL on OOM */
void embd_metrics_free(embd_metrics *m);

/* One finished HTTP request. route: a label such as "/v1/embeddings" or "other" (NULL counts as
 * "other"); status: HTTP status code; seconds: total request duration. */
void embd_metrics_request(embd_metrics *m, const char *route, int status, double seconds);

/* Time an item waited in the scheduler queue before its batch started. */
void embd_metrics_queue_time(embd_metrics *m, double seconds);

/* One forward pass / scheduler batch that just finished: its duration, items and tokens. */
void embd_metrics_batch(embd_metrics *m, double seconds, size_t items, size_t tokens);

/* Input tokens accepted from requests. */
void embd_metrics_input_tokens(embd_metrics *m, size_t tokens);

/* Gauge: current scheduler queue depth. */
void embd_metrics_queue_depth(embd_metrics *m, size_t items, size_t tokens);

typedef struct {
    const char *model_name;
    const char *model_path;
    const char *arch;
    const char *quant;
    int dims;
    int max_tokens;
    const char *pooling;
    const char *version;
    const char *device; /* "cpu" or "cuda:N" */
} embd_metrics_info;

/* The whole exposition text (EMBD_METRICS_CONTENT_TYPE); malloc'd, caller frees; NULL on OOM.
 * info may be NULL (no embd_model_info series); NULL strings in it render as "". */
char *embd_metrics_render(embd_metrics *m, const embd_metrics_info *info);

/* Replace the monotonic clock (seconds) used for uptime and the tokens/s window, and restart
 * uptime from the new clock's current value. For tests; NULL restores the default. */
void embd_metrics_set_clock(embd_metrics *m, double (*now)(void));

/* ---- series owned by other modules (workers, memory governor) ---- */
/* name and help must be string literals (kept by pointer); label/value (may be NULL: no label) are
 * copied. At most EMBD_METRICS_MAX_EXTRA series; later new ones are dropped. */
#define EMBD_METRICS_MAX_EXTRA 48
void embd_metrics_count(embd_metrics *m, const char *name, const char *help, const char *label, const char *value,
                        double delta);
void embd_metrics_gauge(embd_metrics *m, const char *name, const char *help, double v);
/* A GPU encoder's events since the last call (passes split, sequences run on the CPU for want of
 * device memory) and its device memory now (weights, compute buffer). */
void embd_metrics_device(embd_metrics *m, uint64_t splits, uint64_t cpu_fallbacks, uint64_t weight_bytes,
                         uint64_t compute_bytes);

#endif
