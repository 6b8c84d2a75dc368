/* Prometheus metrics: exact counters, cumulative histogram buckets, sums, gauges, the tokens/s
 * window, label escaping, the route cap, concurrency, and a parser that checks the exposition
 * format of every rendered text. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/metrics.h"

static double fake_now;
static double fake_clock(void) { return fake_now; }

/* ---- exposition-format parser ---- */

typedef struct {
    char name[128];
    char set[512]; /* labels other than le, as k=v;... (decoded) */
    char le[32];   /* "" when the sample has no le label */
    double value;
} parsed;

static const char *parse_name(const char *p, char *out, size_t n) {
    size_t i = 0;
    assert_true((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' || *p == ':');
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
           *p == '_' || *p == ':') {
        assert_true(i + 1 < n);
        out[i++] = *p++;
    }
    out[i] = '\0';
    return p;
}

/* Parses one sample line (without its '\n'); fails the test on any format error. */
static void parse_sample(const char *line, const char *end, parsed *s) {
    memset(s, 0, sizeof *s);
    const char *p = parse_name(line, s->name, sizeof s->name);
    if (*p == '{') {
        p++;
        while (*p != '}') {
            char key[64], val[256];
            size_t vi = 0;
            p = parse_name(p, key, sizeof key);
            assert_int_equal(*p++, '=');
            assert_int_equal(*p++, '"');
            while (*p != '"') {
                assert_true(p < end);
                char c = *p++;
                if (c == '\\') {
                    c = *p++;
                    assert_true(c == '\\' || c == '"' || c == 'n');
                    if (c == 'n') c = '\n';
                }
                assert_true(vi + 1 < sizeof val);
                val[vi++] = c;
            }
            val[vi] = '\0';
            p++;
            if (strcmp(key, "le") == 0) {
                assert_true(vi < sizeof s->le);
                memcpy(s->le, val, vi + 1);
            } else {
                size_t l = strlen(s->set);
                int w = snprintf(s->set + l, sizeof s->set - l, "%s=%s;", key, val);
                assert_true(w > 0 && (size_t)w < sizeof s->set - l);
            }
            if (*p == ',') p++;
            else assert_int_equal(*p, '}');
        }
        p++;
    }
    assert_int_equal(*p++, ' ');
    char *vend;
    s->value = strtod(p, &vend);
    assert_ptr_equal(vend, end);
}

static int has_suffix(const char *s, const char *base, const char *suffix) {
    size_t bl = strlen(base);
    return strncmp(s, base, bl) == 0 && strcmp(s + bl, suffix) == 0;
}

/* Whole-text check: HELP then TYPE once per family before its samples, samples grouped under
 * their family, valid labels and values, and per histogram series: le increasing, cumulative
 * counts non-decreasing, +Inf last and equal to _count. */
static void check_format(const char *text) {
    char fam[128][128];
    size_t nfam = 0;
    char type[16] = "";
    char hset[512] = "";
    double hle = -INFINITY, hcnt = -1, inf_cnt = -1;
    assert_non_null(text);
    size_t len = strlen(text);
    assert_true(len > 0);
    assert_int_equal(text[len - 1], '\n');
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        assert_true(end > line); /* no empty lines */
        if (line[0] == '#') {
            char kind[8], name[128], rest[256];
            assert_int_equal(sscanf(line, "# %7s %127s %255[^\n]", kind, name, rest), 3);
            if (strcmp(kind, "HELP") == 0) {
                for (size_t i = 0; i < nfam; i++) assert_string_not_equal(fam[i], name);
                assert_true(nfam < 128);
                snprintf(fam[nfam++], sizeof fam[0], "%s", name);
                type[0] = '\0';
            } else {
                assert_string_equal(kind, "TYPE");
                assert_true(nfam > 0);
                assert_string_equal(name, fam[nfam - 1]);
                assert_string_equal(type, ""); /* one TYPE per family */
                assert_true(strcmp(rest, "counter") == 0 || strcmp(rest, "gauge") == 0 ||
                            strcmp(rest, "histogram") == 0);
                memcpy(type, rest, strlen(rest) + 1); /* one of the three names above */
            }
        } else {
            parsed s;
            parse_sample(line, end, &s);
            assert_true(nfam > 0 && type[0]);
            const char *f = fam[nfam - 1];
            if (strcmp(type, "histogram") != 0) {
                assert_string_equal(s.name, f);
                assert_string_equal(s.le, "");
            } else if (has_suffix(s.name, f, "_bucket")) {
                assert_true(s.le[0]);
                if (strcmp(s.set, hset) != 0 || inf_cnt >= 0) {
                    assert_true(hcnt < 0 || inf_cnt >= 0); /* previous series ended with +Inf */
                    snprintf(hset, sizeof hset, "%s", s.set);
                    hle = -INFINITY;
                    hcnt = 0;
                    inf_cnt = -1;
                }
                double le = strcmp(s.le, "+Inf") == 0 ? INFINITY : strtod(s.le, NULL);
                assert_true(le > hle);
                assert_true(s.value >= hcnt);
                hle = le;
                hcnt = s.value;
                if (isinf(le)) inf_cnt = s.value;
            } else if (has_suffix(s.name, f, "_sum")) {
                assert_string_equal(s.set, hset);
                assert_true(inf_cnt >= 0);
            } else {
                assert_true(has_suffix(s.name, f, "_count"));
                assert_string_equal(s.set, hset);
                assert_true(s.value == inf_cnt);
            }
        }
        line = end + 1;
    }
}

/* Value of the one sample whose series text (name and labels as rendered) is key. */
static double sample(const char *text, const char *key) {
    size_t kl = strlen(key);
    int found = 0;
    double v = NAN;
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        if (strncmp(line, key, kl) == 0 && line[kl] == ' ') {
            char *vend;
            v = strtod(line + kl + 1, &vend);
            assert_ptr_equal(vend, end);
            found++;
        }
        line = end + 1;
    }
    if (found != 1) fail_msg("series %s found %d times", key, found);
    return v;
}

static int has_prefix_line(const char *text, const char *prefix) {
    size_t pl = strlen(prefix);
    for (const char *line = text; *line;) {
        if (strncmp(line, prefix, pl) == 0) return 1;
        line = strchr(line, '\n') + 1;
    }
    return 0;
}

static char *render_checked(embd_metrics *m, const embd_metrics_info *info) {
    char *t = embd_metrics_render(m, info);
    check_format(t);
    return t;
}

static const char *DUR_LE[] = {"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
                               "0.5",   "1",      "2.5",   "5",    "10",    "30",   "60",  "+Inf"};

static void check_buckets(const char *text, const char *name, const char *labels, const char **les,
                          const double *want, size_t n) {
    char key[512];
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof key, "%s_bucket{%s%sle=\"%s\"}", name, labels, labels[0] ? "," : "", les[i]);
        double got = sample(text, key);
        if (got != want[i]) fail_msg("%s: got %g want %g", key, got, want[i]);
    }
}

/* ---- tests ---- */

static void test_empty(void **state) {
    (void)state;
    embd_metrics *m = embd_metrics_new();
    assert_non_null(m);
    char *t = render_checked(m, NULL);
    assert_false(has_prefix_line(t, "embd_requests_total{"));
    assert_false(has_prefix_line(t, "embd_request_duration_seconds_"));
    assert_non_null(strstr(t, "# TYPE embd_requests_total counter\n"));
    assert_non_null(strstr(t, "# TYPE embd_request_duration_seconds histogram\n"));
    assert_null(strstr(t, "embd_model_info"));
    assert_true(sample(t, "embd_input_tokens_total") == 0);
    assert_true(sample(t, "embd_batches_total") == 0);
    assert_true(sample(t, "embd_queue_items") == 0);
    assert_true(sample(t, "embd_queue_tokens") == 0);
    assert_true(sample(t, "embd_tokens_per_second") == 0);
    assert_true(sample(t, "embd_queue_duration_seconds_count") == 0);
    assert_true(sample(t, "embd_queue_duration_seconds_sum") == 0);
    assert_true(sample(t, "embd_queue_duration_seconds_bucket{le=\"+Inf\"}") == 0);
    assert_true(sample(t, "embd_batch_items_bucket{le=\"1024\"}") == 0);
    assert_true(sample(t, "embd_batch_tokens_bucket{le=\"16\"}") == 0);
    free(t);
    embd_metrics_free(m);
}

static void test_request_counters(void **state) {
    (void)state;
    embd_metrics *m = embd_metrics_new();
    for (int i = 0; i < 7; i++) embd_metrics_request(m, "/v1/embeddings", 200, 0.01);
    for (int i = 0; i < 3; i++) embd_metrics_request(m, "/v1/embeddings", 429, 0.001);
    embd_metrics_request(m, "/v1/embeddings", 400, 0.002);
    embd_metrics_request(m, "/embed", 200, 0.02);
    embd_metrics_request(m, "/health", 200, 0.0001);
    embd_metrics_request(m, "/health", 200, 0.0001);
    embd_metrics_request(m, "/metrics", 503, 0.3);
    char *t = render_checked(m, NULL);
    assert_true(sample(t, "embd_requests_total{route=\"/v1/embeddings\",status=\"200\"}") == 7);
    assert_true(sample(t, "embd_requests_total{route=\"/v1/embeddings\",status=\"429\"}") == 3);
    assert_true(sample(t, "embd_requests_total{route=\"/v1/embeddings\",status=\"400\"}") == 1);
    assert_true(sample(t, "embd_requests_total{route=\"/embed\",status=\"200\"}") == 1);
    assert_true(sample(t, "embd_requests_total{route=\"/health\",status=\"200\"}") == 2);
    assert_true(sample(t, "embd_requests_total{route=\"/metrics\",status=\"503\"}") == 1);
    assert_false(has_prefix_line(t, "embd_requests_total{route=\"/embed\",status=\"429\"}"));
    assert_false(has_prefix_line(t, "embd_requests_total{route=\"other\""));
    assert_true(sample(t, "embd_request_duration_seconds_count{route=\"/v1/embeddings\"}") == 11);
    assert_true(sample(t, "embd_request_duration_seconds_count{route=\"/health\"}") == 2);
    assert_true(sample(t, "embd_request_duration_seconds_bucket{route=\"/v1/embeddings\",le=\"0.001\"}") == 3);
    assert_true(sample(t, "embd_request_duration_seconds_bucket{route=\"/v1/embeddings\",le=\"0.0025\"}") == 4);
    assert_true(sample(t, "embd_request_duration_seconds_bucket{route=\"/v1/embeddings\",le=\"0.01\"}") == 11);
    /* statuses within a route come out in numeric order */
    const char *a = strstr(t, "status=\"200\"");
    const char *b = strstr(t, "status=\"400\"");
    const char *c = strstr(t, "status=\"429\"");
    assert_true(a && b && c && a < b && b < c);
    free(t);
    embd_metrics_free(m);
}

static void test_duration_histogram(void **state) {
    (void)state;
    embd_metrics *m = embd_metrics_new();
    const double obs[] = {0.0005, 0.001, 0.003, 0.07, 0.07, 1.0, 45.0, 100.0, 60.0};
    double sum = 0;
    for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++) {
        embd_metrics_request(m, "/embed", 200, obs[i]);
        sum += obs[i];
    }
    embd_metrics_request(m, "/rerank", 200, 0.2);
    char *t = render_checked(m, NULL);
    const double want[] = {2, 2, 3, 3, 3, 3, 5, 5, 5, 6, 6, 6, 6, 6, 8, 9};
    check_buckets(t, "embd_request_duration_seconds", "route=\"/embed\"", DUR_LE, want, 16);
    assert_true(sample(t, "embd_request_duration_seconds_count{route=\"/embed\"}") == 9);
    assert_true(sample(t, "embd_request_duration_seconds_sum{route=\"/embed\"}") == sum);
    const double want_rr[] = {0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    check_buckets(t, "embd_request_duration_seconds", "route=\"/rerank\"", DUR_LE, want_rr, 16);
    assert_true(sample(t, "embd_request_duration_seconds_sum{route=\"/rerank\"}") == 0.2);
    free(t);
    embd_metrics_free(m);
}

static void test_queue_and_batches(void **state) {
    (void)state;
    embd_metrics *m = embd_metrics_new();
    embd_metrics_queue_time(m, 0.004);
    embd_metrics_queue_time(m, -1.0); /* clock step: counted as 0, sum unchanged */
    embd_metrics_queue_time(m, NAN);
    embd_metrics_queue_time(m, 7.5);
    embd_metrics_batch(m, 0.02, 1, 16);
    embd_metrics_batch(m, 0.3, 3, 17);
    embd_metrics_batch(m, 2.0, 1024, 65536);
    embd_metrics_batch(m, 0.0, 2000, 70000);
    embd_metrics_input_tokens(m, 5);
    embd_metrics_input_tokens(m, 7);
    embd_metrics_input_tokens(m, (size_t)1 << 40);
    char *t = render_checked(m, NULL);

    const double wq[] = {2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4};
    check_buckets(t, "embd_queue_duration_seconds", "", DUR_LE, wq, 16);
    assert_true(sample(t, "embd_queue_duration_seconds_count") == 4);
    assert_true(sample(t, "embd_queue_duration_seconds_sum") == 0.004 + 7.5);

    const double wi[] = {1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 4, 4, 4, 4, 4, 4};
    check_buckets(t, "embd_inference_duration_seconds", "", DUR_LE, wi, 16);
    assert_true(sample(t, "embd_inference_duration_seconds_count") == 4);
    assert_true(sample(t, "embd_inference_duration_seconds_sum") == 0.02 + 0.3 + 2.0 + 0.0);

    const char *items_le[] = {"1", "2", "4", "8", "16", "32", "64", "128", "256", "512", "1024", "+Inf"};
    const double wit[] = {1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 4};
    check_buckets(t, "embd_batch_items", "", items_le, wit, 12);
    assert_true(sample(t, "embd_batch_items_sum") == 3028);
    assert_true(sample(t, "embd_batch_items_count") == 4);

    const char *tok_le[] = {"16",   "32",   "64",   "128",   "256",   "512",   "1024",
                            "2048", "4096", "8192", "16384", "32768", "65536", "+Inf"};
    const double wt[] = {1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 4};
    check_buckets(t, "embd_batch_tokens", "", tok_le, wt, 14);
    assert_true(sample(t, "embd_batch_tokens_sum") == 16 + 17 + 65536 + 70000);

    assert_true(sample(t, "embd_batches_total") == 4);
    assert_true(sample(t, "embd_input_tokens_total") == 12.0 + 1099511627776.0);
    free(t);
    embd_metrics_free(m);
}

/* GPU events arrive as deltas (one per worker batch) and add up; memory gauges show the latest. */
static void test_device_series(void **state) {
    (void)state;
    embd_metrics *m = embd_metrics_new();
    embd_metrics_device(m, 0, 0, 1000, 0);
    char *t = render_checked(m, NULL);
    assert_true(sample(t, "embd_gpu_oom_splits_total") == 0);
    assert_true(sample(t, "embd_gpu_cpu_fallbacks_total") == 0);
    assert_true(sample(t, "embd_device_weights_bytes") == 1000);
    free(t);
    embd_metrics_device(m, 3, 1, 1000, 5000);
    embd_metrics_device(m, 2, 0, 1000, 7000);
    t = render_checked(m, NULL);
    assert_true(sample(t, "embd_gpu_oom_splits_total") == 5);
    assert_true(sample(t, "embd_gpu_cpu_fallbacks_total") == 1);
    assert_true(sample(t, "embd_device_memory_bytes") == 8000);
    free(t);
    embd_metrics_free(m);
}

static void test_gauges_and_info(void **state) {
    (void)state;
    embd_metrics *m = embd_metrics_new();
    fake_now = 100.0;
    embd_metrics_set_clock(m, fake_clock);
    embd_metrics_queue_depth(m, 5, 300);
    embd_metrics_queue_depth(m, 2, 100);
    fake_now = 112.5;
    embd_metrics_info info = {"bge-small", "/models/a\"b\\c\nd.gguf", "bert", "q8_0", 384, 512, "cls", "0.1.0", "cuda:0"};
    char *t = render_checked(m, &info);
    assert_true(sample(t, "embd_queue_items") == 2);
    assert_true(sample(t, "embd_queue_tokens") == 100);
    assert_true(sample(t, "embd_uptime_seconds") == 12.5);
    assert_true(sample(t, "embd_model_info{name=\"bge-small\",path=\"/models/a\\\"b\\\\c\\nd.gguf\","
                          "arch=\"bert\",quant=\"q8_0\",dims=\"384\",max_tokens=\"512\","
                          "pooling=\"cls\",version=\"0.1.0\",device=\"cuda:0\"}") == 1);
    double rss = sample(t, "embd_process_resident_memory_bytes");
    double peak = sample(t, "embd_process_peak_resident_memory_bytes");
    assert_true(rss > 0 && peak >= rss);
    free(t);

    /* resident memory is read at render time, not at creation */
    size_t big = 64u << 20;
    char *p = malloc(big);
    assert_non_null(p);
    memset(p, 1, big);
    t = render_checked(m, &info);
    double rss2 = sample(t, "embd_process_resident_memory_bytes");
    assert_true(rss2 >= rss + (double)(32u << 20));
    assert_true(sample(t, "embd_process_peak_resident_memory_bytes") >= rss2);
    free(p);
    free(t);

    /* NULL strings render as empty labels, not as a crash or "(null)" */
    embd_metrics_info bare = {0};
    t = render_checked(m, &bare);
    assert_true(sample(t, "embd_model_info{name=\"\",path=\"\",arch=\"\",quant=\"\",dims=\"0\","
                          "max_tokens=\"0\",pooling=\"\",version=\"\",device=\"\"}") == 1);
    free(t);

    embd_metrics_set_clock(m, NULL);
    t = render_checked(m, NULL);
    double up = sample(t, "embd_uptime_seconds");
    assert_true(up >= 0 && up < 60);
    free(t);
    embd_metrics_free(m);
}

static void test_tokens_per_second(void **state) {
    (void)state;
    embd_metrics *m = embd_metrics_new();
    fake_now = 1000.0;
    embd_metrics_set_clock(m, fake_clock);
    embd_metrics_batch(m, 0.5, 4, 1000);
    char *t = render_checked(m, NULL);
    assert_true(sample(t, "embd_tokens_per_second") == 2000);
    free(t);
    fake_now = 1004.5; /* idle time since the batch lowers the rate */
    t = render_checked(m, NULL);
    assert_true(sample(t, "embd_tokens_per_second") == 200);
    free(t);
    fake_now = 1009.4;
    t = render_checked(m, NULL);
    assert_true(sample(t, "embd_tokens_per_second") == 1000.0 / (1009.4 - 999.5));
    free(t);
    fake_now = 1010.0; /* idle for the whole window */
    t = render_checked(m, NULL);
    assert_true(sample(t, "embd_tokens_per_second") == 0);
    free(t);

    /* steady load of 200 tokens/s for 20 s: only the last 10 s count, and the rate is exact */
    for (int i = 1; i <= 40; i++) {
        fake_now = 1020.0 + 0.5 * i;
        embd_metrics_batch(m, 0.5, 1, 100);
    }
    t = render_checked(m, NULL);
    assert_float_equal(sample(t, "embd_tokens_per_second"), 200.0, 1e-9);
    assert_true(sample(t, "embd_batches_total") == 41);
    free(t);

    /* a single batch longer than the window still reads tokens/duration */
    fake_now = 1100.0;
    embd_metrics_batch(m, 30.0, 1, 6000);
    t = render_checked(m, NULL);
    assert_float_equal(sample(t, "embd_tokens_per_second"), 200.0, 1e-9);
    free(t);
    embd_metrics_free(m);
}

static void test_label_escaping(void **state) {
    (void)state;
    embd_metrics *m = embd_metrics_new();
    embd_metrics_request(m, "a\"b\\c\nd", 200, 0.5);
    char *t = render_checked(m, NULL);
    assert_true(sample(t, "embd_requests_total{route=\"a\\\"b\\\\c\\nd\",status=\"200\"}") == 1);
    assert_true(sample(t, "embd_request_duration_seconds_sum{route=\"a\\\"b\\\\c\\nd\"}") == 0.5);
    assert_true(sample(t, "embd_request_duration_seconds_bucket{route=\"a\\\"b\\\\c\\nd\",le=\"0.25\"}") == 0);
    assert_true(sample(t, "embd_request_duration_seconds_bucket{route=\"a\\\"b\\\\c\\nd\",le=\"0.5\"}") == 1);
    free(t);
    embd_metrics_free(m);
}

static void test_route_overflow(void **state) {
    (void)state;
    embd_metrics *m = embd_metrics_new();
    char route[16], key[128];
    for (int i = 0; i < EMBD_METRICS_MAX_ROUTES + 8; i++) {
        snprintf(route, sizeof route, "/r%02d", i);
        embd_metrics_request(m, route, 200, 0.001);
    }
    embd_metrics_request(m, "/r00", 200, 0.001); /* known routes keep counting after the cap */
    embd_metrics_request(m, "other", 200, 0.001);
    embd_metrics_request(m, NULL, 200, 0.001);
    embd_metrics_request(m, "/never-seen", 500, 0.001);
    char *t = render_checked(m, NULL);
    for (int i = 0; i < EMBD_METRICS_MAX_ROUTES + 8; i++) {
        snprintf(key, sizeof key, "embd_requests_total{route=\"/r%02d\",status=\"200\"}", i);
        if (i < EMBD_METRICS_MAX_ROUTES) assert_true(sample(t, key) == (i == 0 ? 2 : 1));
        else assert_false(has_prefix_line(t, key));
    }
    assert_true(sample(t, "embd_requests_total{route=\"other\",status=\"200\"}") == 8 + 2);
    assert_true(sample(t, "embd_requests_total{route=\"other\",status=\"500\"}") == 1);
    assert_true(sample(t, "embd_request_duration_seconds_count{route=\"other\"}") == 11);
    assert_false(has_prefix_line(t, "embd_requests_total{route=\"/never-seen\""));
    free(t);
    embd_metrics_free(m);
}

#define NTHREADS 4
#define PER_THREAD 10000

typedef struct {
    embd_metrics *m;
    int idx;
} worker_arg;

/* Without a common start, short-lived threads may run one after another and never overlap. */
static pthread_barrier_t start_line;

static void *worker(void *p) {
    worker_arg *a = p;
    char own[16];
    snprintf(own, sizeof own, "/t%d", a->idx);
    pthread_barrier_wait(&start_line);
    for (int i = 0; i < PER_THREAD; i++) {
        embd_metrics_request(a->m, "/embed", 200, 0.5);
        if (i % 10 == 0) embd_metrics_request(a->m, own, 429, 0.25);
        embd_metrics_queue_time(a->m, 0.25);
        embd_metrics_batch(a->m, 0.5, 2, 32);
        embd_metrics_input_tokens(a->m, 3);
        embd_metrics_queue_depth(a->m, (size_t)i, (size_t)i * 10);
    }
    return NULL;
}

static int workers_done; /* guarded by done_mu */
static pthread_mutex_t done_mu = PTHREAD_MUTEX_INITIALIZER;

static void *renderer(void *p) {
    embd_metrics *m = p;
    long renders = 0, bad = 0;
    pthread_barrier_wait(&start_line);
    for (;;) {
        pthread_mutex_lock(&done_mu);
        int done = workers_done;
        pthread_mutex_unlock(&done_mu);
        if (done) break;
        char *t = embd_metrics_render(m, NULL);
        if (!t || t[strlen(t) - 1] != '\n') bad++;
        free(t);
        renders++;
    }
    return (void *)(intptr_t)(bad ? -1 : renders);
}

static void test_concurrency(void **state) {
    (void)state;
    embd_metrics *m = embd_metrics_new();
    pthread_t th[NTHREADS], rt;
    worker_arg args[NTHREADS];
    workers_done = 0;
    assert_int_equal(pthread_barrier_init(&start_line, NULL, NTHREADS + 1), 0);
    assert_int_equal(pthread_create(&rt, NULL, renderer, m), 0);
    for (int i = 0; i < NTHREADS; i++) {
        args[i] = (worker_arg){m, i};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
    pthread_mutex_lock(&done_mu);
    workers_done = 1;
    pthread_mutex_unlock(&done_mu);
    void *rr;
    pthread_join(rt, &rr);
    assert_true((intptr_t)rr >= 0);
    pthread_barrier_destroy(&start_line);

    char *t = render_checked(m, NULL);
    const double n = NTHREADS * PER_THREAD;
    assert_true(sample(t, "embd_requests_total{route=\"/embed\",status=\"200\"}") == n);
    assert_true(sample(t, "embd_request_duration_seconds_count{route=\"/embed\"}") == n);
    assert_true(sample(t, "embd_request_duration_seconds_sum{route=\"/embed\"}") == n * 0.5);
    assert_true(sample(t, "embd_request_duration_seconds_bucket{route=\"/embed\",le=\"0.25\"}") == 0);
    assert_true(sample(t, "embd_request_duration_seconds_bucket{route=\"/embed\",le=\"0.5\"}") == n);
    char key[128];
    for (int i = 0; i < NTHREADS; i++) {
        snprintf(key, sizeof key, "embd_requests_total{route=\"/t%d\",status=\"429\"}", i);
        assert_true(sample(t, key) == PER_THREAD / 10);
    }
    assert_true(sample(t, "embd_queue_duration_seconds_count") == n);
    assert_true(sample(t, "embd_queue_duration_seconds_sum") == n * 0.25);
    assert_true(sample(t, "embd_batches_total") == n);
    assert_true(sample(t, "embd_inference_duration_seconds_sum") == n * 0.5);
    assert_true(sample(t, "embd_batch_items_sum") == n * 2);
    assert_true(sample(t, "embd_batch_items_bucket{le=\"2\"}") == n);
    assert_true(sample(t, "embd_batch_tokens_sum") == n * 32);
    assert_true(sample(t, "embd_batch_tokens_bucket{le=\"16\"}") == 0);
    assert_true(sample(t, "embd_batch_tokens_bucket{le=\"32\"}") == n);
    assert_true(sample(t, "embd_input_tokens_total") == n * 3);
    assert_true(sample(t, "embd_queue_items") == PER_THREAD - 1);
    assert_true(sample(t, "embd_queue_tokens") == (PER_THREAD - 1) * 10);
    free(t);
    embd_metrics_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_request_counters),
        cmocka_unit_test(test_duration_histogram),
        cmocka_unit_test(test_queue_and_batches),
        cmocka_unit_test(test_gauges_and_info),
        cmocka_unit_test(test_device_series),
        cmocka_unit_test(test_tokens_per_second),
        cmocka_unit_test(test_label_escaping),
        cmocka_unit_test(test_route_overflow),
        cmocka_unit_test(test_concurrency),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
