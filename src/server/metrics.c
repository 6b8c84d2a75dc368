#include "server/metrics.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/sys.h"

static const double DURATION_LE[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                     0.5,   1,      2.5,   5,    10,    30,    60};
static const double ITEMS_LE[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
static const double TOKENS_LE[] = {16,  32,   64,   128,  256,   512,   1024,
                                   2048, 4096, 8192, 16384, 32768, 65536};
#define NLE(a) (sizeof(a) / sizeof((a)[0]))
#define HIST_MAX 16

/* Tokens/s window: half-second slots so a batch leaves the window between 9.5 and 10 s after it
 * finished, without keeping one record per batch (tiny batches can come thousands a second). */
#define NSLOT 20
#define SLOT_W (EMBD_METRICS_RATE_WINDOW / NSLOT)

typedef struct {
    uint64_t counts[HIST_MAX + 1]; /* per bucket, not cumulative; last is +Inf */
    uint64_t count;
    double sum;
} hist;

typedef struct {
    int status;
    uint64_t n;
} status_count;

typedef struct {
    char *name;
    status_count *st; /* sorted by status so the output order is stable */
    size_t nst, cap;
    hist dur;
} route_stats;

typedef struct {
    int64_t id;         /* floor(end time / SLOT_W) of the batches in this slot */
    uint64_t tokens;
    double first_start; /* earliest batch start among them */
} rate_slot;

struct embd_metrics {
    pthread_mutex_t mu;
    double (*now)(void);
    double start;
    route_stats routes[EMBD_METRICS_MAX_ROUTES + 1]; /* [0] is "other" */
    size_t nroutes;
    hist queue, infer, items, tokens;
    uint64_t input_tokens, batches;
    size_t queue_items, queue_tokens;
    rate_slot slots[NSLOT];
    struct extra {
        const char *name, *help;
        char label[32], value[48];
        bool counter;
        double v;
    } extra[EMBD_METRICS_MAX_EXTRA];
    size_t nextra;
};

/* A stepped clock or a caller bug must not make _sum go backwards (rate() would show a reset). */
static double sane(double v) { return (v >= 0 && !isinf(v)) ? v : 0; }

static void hist_observe(hist *h, const double *le, size_t nb, double v) {
    size_t i = 0;
    while (i < nb && v > le[i]) i++;
    h->counts[i]++;
    h->count++;
    h->sum += v;
}

embd_metrics *embd_metrics_new(void) {
    embd_metrics *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->routes[0].name = strdup("other");
    if (!m->routes[0].name || pthread_mutex_init(&m->mu, NULL) != 0) {
        free(m->routes[0].name);
        free(m);
        return NULL;
    }
    m->nroutes = 1;
    m->now = embd_now;
    m->start = m->now();
    for (int i = 0; i < NSLOT; i++) m->slots[i].id = INT64_MIN;
    return m;
}

void embd_metrics_free(embd_metrics *m) {
    if (!m) return;
    for (size_t i = 0; i < m->nroutes; i++) {
        free(m->routes[i].name);
        free(m->routes[i].st);
    }
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void embd_metrics_set_clock(embd_metrics *m, double (*now)(void)) {
    pthread_mutex_lock(&m->mu);
    m->now = now ? now : embd_now;
    m->start = m->now();
    for (int i = 0; i < NSLOT; i++) m->slots[i].id = INT64_MIN;
    pthread_mutex_unlock(&m->mu);
}

static route_stats *route_get(embd_metrics *m, const char *route) {
    if (!route) return &m->routes[0];
    for (size_t i = 0; i < m->nroutes; i++)
        if (strcmp(m->routes[i].name, route) == 0) return &m->routes[i];
    if (m->nroutes > EMBD_METRICS_MAX_ROUTES) return &m->routes[0];
    char *name = strdup(route);
    if (!name) return &m->routes[0];
    route_stats *r = &m->routes[m->nroutes++];
    r->name = name;
    return r;
}

static void status_add(route_stats *r, int status) {
    size_t i = 0;
    while (i < r->nst && r->st[i].status < status) i++;
    if (i < r->nst && r->st[i].status == status) {
        r->st[i].n++;
        return;
    }
    if (r->nst == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 4;
        status_count *st = realloc(r->st, cap * sizeof *st);
        if (!st) return; /* OOM: losing one count beats failing the request */
        r->st = st;
        r->cap = cap;
    }
    memmove(&r->st[i + 1], &r->st[i], (r->nst - i) * sizeof *r->st);
    r->st[i] = (status_count){status, 1};
    r->nst++;
}

void embd_metrics_request(embd_metrics *m, const char *route, int status, double seconds) {
    pthread_mutex_lock(&m->mu);
    route_stats *r = route_get(m, route);
    status_add(r, status);
    hist_observe(&r->dur, DURATION_LE, NLE(DURATION_LE), sane(seconds));
    pthread_mutex_unlock(&m->mu);
}

void embd_metrics_queue_time(embd_metrics *m, double seconds) {
    pthread_mutex_lock(&m->mu);
    hist_observe(&m->queue, DURATION_LE, NLE(DURATION_LE), sane(seconds));
    pthread_mutex_unlock(&m->mu);
}

void embd_metrics_batch(embd_metrics *m, double seconds, size_t items, size_t tokens) {
    seconds = sane(seconds);
    pthread_mutex_lock(&m->mu);
    hist_observe(&m->infer, DURATION_LE, NLE(DURATION_LE), seconds);
    hist_observe(&m->items, ITEMS_LE, NLE(ITEMS_LE), (double)items);
    hist_observe(&m->tokens, TOKENS_LE, NLE(TOKENS_LE), (double)tokens);
    m->batches++;
    double t = m->now();
    int64_t id = (int64_t)floor(t / SLOT_W);
    rate_slot *s = &m->slots[((id % NSLOT) + NSLOT) % NSLOT];
    if (s->id != id) *s = (rate_slot){id, 0, t - seconds};
    s->tokens += tokens;
    if (t - seconds < s->first_start) s->first_start = t - seconds;
    pthread_mutex_unlock(&m->mu);
}

void embd_metrics_input_tokens(embd_metrics *m, size_t tokens) {
    pthread_mutex_lock(&m->mu);
    m->input_tokens += tokens;
    pthread_mutex_unlock(&m->mu);
}

void embd_metrics_queue_depth(embd_metrics *m, size_t items, size_t tokens) {
    pthread_mutex_lock(&m->mu);
    m->queue_items = items;
    m->queue_tokens = tokens;
    pthread_mutex_unlock(&m->mu);
}

static struct extra *extra_get(embd_metrics *m, const char *name, const char *help, const char *label,
                               const char *value, bool counter) {
    label = label ? label : "";
    value = value ? value : "";
    for (size_t i = 0; i < m->nextra; i++) {
        struct extra *e = &m->extra[i];
        if (!strcmp(e->name, name) && !strcmp(e->label, label) && !strcmp(e->value, value)) return e;
    }
    if (m->nextra == EMBD_METRICS_MAX_EXTRA) return NULL;
    struct extra *e = &m->extra[m->nextra++];
    *e = (struct extra){.name = name, .help = help, .counter = counter};
    snprintf(e->label, sizeof e->label, "%s", label);
    snprintf(e->value, sizeof e->value, "%s", value);
    return e;
}

void embd_metrics_count(embd_metrics *m, const char *name, const char *help, const char *label, const char *value,
                        double delta) {
    pthread_mutex_lock(&m->mu);
    struct extra *e = extra_get(m, name, help, label, value, true);
    if (e) e->v += delta;
    pthread_mutex_unlock(&m->mu);
}

void embd_metrics_gauge(embd_metrics *m, const char *name, const char *help, double v) {
    pthread_mutex_lock(&m->mu);
    struct extra *e = extra_get(m, name, help, NULL, NULL, false);
    if (e) e->v = v;
    pthread_mutex_unlock(&m->mu);
}

void embd_metrics_device(embd_metrics *m, uint64_t splits, uint64_t cpu_fallbacks, uint64_t weight_bytes,
                         uint64_t compute_bytes) {
    embd_metrics_count(m, "embd_gpu_oom_splits_total",
                       "Forward passes split because GPU memory would not hold them (predicted or failed allocation).",
                       NULL, NULL, (double)splits);
    embd_metrics_count(m, "embd_gpu_cpu_fallbacks_total",
                       "Sequences run on the CPU because the GPU had no memory for them alone.", NULL, NULL,
                       (double)cpu_fallbacks);
    embd_metrics_gauge(m, "embd_device_memory_bytes", "GPU memory in use by an inference process (weights + compute).",
                       (double)(weight_bytes + compute_bytes));
    embd_metrics_gauge(m, "embd_device_weights_bytes", "Model weights in GPU memory.", (double)weight_bytes);
}

/* Tokens of the batches that finished in the window, over the time from the earliest of them
 * started until now: idle gaps lower the rate, and one long batch still reads tokens/duration. */
static double tokens_per_second(const embd_metrics *m, double now) {
    int64_t nid = (int64_t)floor(now / SLOT_W);
    uint64_t tokens = 0;
    double first = now;
    for (int i = 0; i < NSLOT; i++) {
        const rate_slot *s = &m->slots[i];
        if (s->id == INT64_MIN || s->id <= nid - NSLOT || s->id > nid || s->tokens == 0) continue;
        tokens += s->tokens;
        if (s->first_start < first) first = s->first_start;
    }
    if (tokens == 0) return 0;
    double span = now - first;
    if (span < 1e-3) span = 1e-3; /* zero-length batch read at once: avoid inf */
    return (double)tokens / span;
}

/* ---- text building ---- */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_reserve(sbuf *b, size_t extra) {
    if (b->oom || b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return;
    }
    b->p = p;
    b->cap = cap;
}

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    sb_reserve(b, (size_t)n);
    if (b->oom) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Label value escaping per the exposition format: backslash, double quote, newline. */
static void sb_label_value(sbuf *b, const char *v) {
    if (!v) v = "";
    sb_reserve(b, 2 * strlen(v));
    if (b->oom) return;
    for (; *v; v++) {
        if (*v == '\\' || *v == '"') {
            b->p[b->len++] = '\\';
            b->p[b->len++] = *v;
        } else if (*v == '\n') {
            b->p[b->len++] = '\\';
            b->p[b->len++] = 'n';
        } else {
            b->p[b->len++] = *v;
        }
    }
    b->p[b->len] = '\0';
}

/* Shortest "%g" that reads back to the same double, as Prometheus' Go clients print: exact
 * sums without 0.10000000000000001 noise. */
static void fmt_double(char *buf, size_t n, double v) {
    if (isnan(v)) {
        snprintf(buf, n, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, n, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

static void head(sbuf *b, const char *name, const char *type, const char *help) {
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void put_double(sbuf *b, const char *series, double v) {
    char num[40];
    fmt_double(num, sizeof num, v);
    sb_printf(b, "%s %s\n", series, num);
}

/* labels: already escaped `k="v",...` without trailing comma, or "". */
static void put_hist(sbuf *b, const char *name, const char *labels, const hist *h, const double *le,
                     size_t nb) {
    const char *sep = labels[0] ? "," : "";
    uint64_t cum = 0;
    char num[40];
    for (size_t i = 0; i < nb; i++) {
        cum += h->counts[i];
        fmt_double(num, sizeof num, le[i]);
        sb_printf(b, "%s_bucket{%s%sle=\"%s\"} %" PRIu64 "\n", name, labels, sep, num, cum);
    }
    sb_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, sep, h->count);
    fmt_double(num, sizeof num, h->sum);
    if (labels[0]) {
        sb_printf(b, "%s_sum{%s} %s\n", name, labels, num);
        sb_printf(b, "%s_count{%s} %" PRIu64 "\n", name, labels, h->count);
    } else {
        sb_printf(b, "%s_sum %s\n%s_count %" PRIu64 "\n", name, num, name, h->count);
    }
}

static size_t statm_rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long pages = 0;
    int n = fscanf(f, "%*s %lu", &pages);
    fclose(f);
    long psz = sysconf(_SC_PAGESIZE);
    return (n == 1 && psz > 0) ? (size_t)pages * (size_t)psz : 0;
}

static int route_cmp(const void *a, const void *b) {
    return strcmp((*(const route_stats *const *)a)->name, (*(const route_stats *const *)b)->name);
}

char *embd_metrics_render(embd_metrics *m, const embd_metrics_info *info) {
    /* /proc reads happen outside the lock so recording threads never wait on the filesystem. */
    size_t rss = statm_rss_bytes(), peak = embd_peak_rss_bytes();
    sbuf b = {0};
    sbuf lab = {0};

    pthread_mutex_lock(&m->mu);
    const route_stats *sorted[EMBD_METRICS_MAX_ROUTES + 1];
    for (size_t i = 0; i < m->nroutes; i++) sorted[i] = &m->routes[i];
    qsort(sorted, m->nroutes, sizeof sorted[0], route_cmp);

    head(&b, "embd_requests_total", "counter", "HTTP requests finished, by route and status code.");
    for (size_t i = 0; i < m->nroutes; i++) {
        lab.len = 0;
        sb_label_value(&lab, sorted[i]->name);
        for (size_t j = 0; j < sorted[i]->nst && !lab.oom; j++)
            sb_printf(&b, "embd_requests_total{route=\"%s\",status=\"%d\"} %" PRIu64 "\n", lab.p,
                      sorted[i]->st[j].status, sorted[i]->st[j].n);
    }
    head(&b, "embd_request_duration_seconds", "histogram", "HTTP request duration, by route.");
    for (size_t i = 0; i < m->nroutes; i++) {
        if (sorted[i]->dur.count == 0) continue; /* "other" exists before any request uses it */
        lab.len = 0;
        sb_printf(&lab, "route=\"");
        sb_label_value(&lab, sorted[i]->name);
        sb_printf(&lab, "\"");
        if (!lab.oom)
            put_hist(&b, "embd_request_duration_seconds", lab.p, &sorted[i]->dur, DURATION_LE,
                     NLE(DURATION_LE));
    }
    head(&b, "embd_queue_duration_seconds", "histogram",
         "Time an item waited in the scheduler queue before its batch started.");
    put_hist(&b, "embd_queue_duration_seconds", "", &m->queue, DURATION_LE, NLE(DURATION_LE));
    head(&b, "embd_inference_duration_seconds", "histogram", "Forward pass duration per batch.");
    put_hist(&b, "embd_inference_duration_seconds", "", &m->infer, DURATION_LE, NLE(DURATION_LE));
    head(&b, "embd_batch_items", "histogram", "Items per batch.");
    put_hist(&b, "embd_batch_items", "", &m->items, ITEMS_LE, NLE(ITEMS_LE));
    head(&b, "embd_batch_tokens", "histogram", "Tokens per batch.");
    put_hist(&b, "embd_batch_tokens", "", &m->tokens, TOKENS_LE, NLE(TOKENS_LE));

    head(&b, "embd_input_tokens_total", "counter", "Input tokens accepted from requests.");
    sb_printf(&b, "embd_input_tokens_total %" PRIu64 "\n", m->input_tokens);
    head(&b, "embd_batches_total", "counter", "Batches run by the scheduler.");
    sb_printf(&b, "embd_batches_total %" PRIu64 "\n", m->batches);
    head(&b, "embd_queue_items", "gauge", "Items waiting in the scheduler queue.");
    sb_printf(&b, "embd_queue_items %zu\n", m->queue_items);
    head(&b, "embd_queue_tokens", "gauge", "Tokens waiting in the scheduler queue.");
    sb_printf(&b, "embd_queue_tokens %zu\n", m->queue_tokens);

    double now = m->now();
    head(&b, "embd_tokens_per_second", "gauge",
         "Inference throughput over the batches of the last 10 seconds.");
    put_double(&b, "embd_tokens_per_second", tokens_per_second(m, now));
    double uptime = now - m->start;
    for (size_t i = 0; i < m->nextra; i++) { /* grouped by name, in the order first seen */
        bool seen = false;
        for (size_t k = 0; k < i && !seen; k++) seen = !strcmp(m->extra[k].name, m->extra[i].name);
        if (seen) continue;
        head(&b, m->extra[i].name, m->extra[i].counter ? "counter" : "gauge", m->extra[i].help);
        for (size_t k = i; k < m->nextra; k++) {
            const struct extra *e = &m->extra[k];
            if (strcmp(e->name, m->extra[i].name)) continue;
            char num[40];
            fmt_double(num, sizeof num, e->v);
            if (e->label[0]) {
                sb_printf(&b, "%s{%s=\"", e->name, e->label);
                sb_label_value(&b, e->value);
                sb_printf(&b, "\"} %s\n", num);
            } else {
                sb_printf(&b, "%s %s\n", e->name, num);
            }
        }
    }
    pthread_mutex_unlock(&m->mu);

    head(&b, "embd_process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    if (rss) sb_printf(&b, "embd_process_resident_memory_bytes %zu\n", rss);
    head(&b, "embd_process_peak_resident_memory_bytes", "gauge",
         "Peak resident memory size in bytes (VmHWM).");
    if (peak) sb_printf(&b, "embd_process_peak_resident_memory_bytes %zu\n", peak);

    if (info) {
        head(&b, "embd_model_info", "gauge", "Loaded model; the value is always 1.");
        const char *keys[] = {"name", "path", "arch", "quant"};
        const char *vals[] = {info->model_name, info->model_path, info->arch, info->quant};
        sb_printf(&b, "embd_model_info{");
        for (size_t i = 0; i < 4; i++) {
            sb_printf(&b, "%s=\"", keys[i]);
            sb_label_value(&b, vals[i]);
            sb_printf(&b, "\",");
        }
        sb_printf(&b, "dims=\"%d\",max_tokens=\"%d\",pooling=\"", info->dims, info->max_tokens);
        sb_label_value(&b, info->pooling);
        sb_printf(&b, "\",version=\"");
        sb_label_value(&b, info->version);
        sb_printf(&b, "\",device=\"");
        sb_label_value(&b, info->device);
        sb_printf(&b, "\"} 1\n");
    }
    head(&b, "embd_uptime_seconds", "gauge", "Seconds since the server started.");
    put_double(&b, "embd_uptime_seconds", uptime > 0 ? uptime : 0);

    int oom = b.oom || lab.oom;
    free(lab.p);
    if (oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
