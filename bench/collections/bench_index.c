/* Vector index benchmark: the collections' FAISS adapter (src/index/faiss_index.h) called the way
 * src/collections/store.c calls it (adds in batches of 1024 as its rebuild does, then single-query
 * searches), on seeded synthetic unit vectors. Reports exact (flat IP) latency, HNSW build time,
 * recall@k against the exact results and HNSW latency for a sweep of efSearch values.
 *
 *   embd_bench_index [--n 100000] [--queries 1000] [--dim 384] [--k 10] [--seed 42]
 *                    [--data uniform|clusters] [--clusters 1000] [--m 0] [--ef-construction 0]
 *                    [--ef-search 0,16,32,64,128,256,512] [--incremental 1000]
 *
 * uniform: base and queries are independent uniform points on the unit sphere (the hardest case
 * for a graph index: every point is nearly equidistant from a query). clusters: a gaussian
 * mixture (centres uniform on the sphere, per-dimension noise 1/sqrt(dim), so a point's cosine to
 * its centre is ~0.7); queries are fresh draws from the same mixture, not in the base.
 * efSearch 0 is the adapter's default (max(64, 2k)); --m 0 and --ef-construction 0 keep the
 * adapter's defaults (32, 80). --incremental N: then time N one-vector adds to the built HNSW
 * index, as ingest's index sync does. --flat-only: stop after the exact search. */
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "index/faiss_index.h"

enum { ADD_BATCH = 1024, MAX_EFS = 32 };

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* splitmix64: a seeded, portable stream, so every run draws the same vectors. */
static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double rng_uniform(uint64_t *s) { return ((double)(rng_next(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

static float rng_gauss(uint64_t *s) { /* Box-Muller; one value per call keeps it simple */
    return (float)(sqrt(-2.0 * log(rng_uniform(s))) * cos(6.283185307179586 * rng_uniform(s)));
}

static void normalize(float *x, int dim) {
    double ss = 0;
    for (int j = 0; j < dim; j++) ss += (double)x[j] * x[j];
    float inv = (float)(1.0 / sqrt(ss));
    for (int j = 0; j < dim; j++) x[j] *= inv;
}

/* n unit vectors: uniform on the sphere, or centre + noise when centres is given. */
static void draw(float *out, size_t n, int dim, const float *centres, int n_centres, uint64_t *s) {
    const float sigma = 1.0f / sqrtf((float)dim);
    for (size_t i = 0; i < n; i++) {
        float *x = out + i * (size_t)dim;
        const float *c = centres ? centres + (size_t)(rng_next(s) % (uint64_t)n_centres) * (size_t)dim : NULL;
        for (int j = 0; j < dim; j++) x[j] = c ? c[j] + sigma * rng_gauss(s) : rng_gauss(s);
        normalize(x, dim);
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double *sorted, size_t n, double p) {
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return sorted[i < n ? i : n - 1];
}

static int die(const char *what, const char *err) {
    fprintf(stderr, "embd_bench_index: %s: %s\n", what, err);
    return 1;
}

/* Adds n vectors with ids 0..n-1 in batches, as the store's rebuild does. */
static int fill(embd_vindex *v, const float *x, size_t n, int dim, char *err, size_t errlen) {
    int64_t ids[ADD_BATCH];
    for (size_t i = 0; i < n; i += ADD_BATCH) {
        size_t nb = n - i < ADD_BATCH ? n - i : ADD_BATCH;
        for (size_t j = 0; j < nb; j++) ids[j] = (int64_t)(i + j);
        if (embd_vindex_add(v, nb, x + i * (size_t)dim, ids, err, errlen)) return -1;
    }
    return 0;
}

/* One search per query; per-query latencies (ms) into lat, ids into out (q x k). */
static int run_queries(const embd_vindex *v, const float *q, size_t nq, int dim, size_t k, double *lat, int64_t *out,
                       char *err, size_t errlen) {
    float *scores = malloc(k * sizeof *scores);
    if (!scores) return -1;
    int rc = 0;
    for (size_t i = 0; i < nq && !rc; i++) {
        double t = now();
        rc = embd_vindex_search(v, q + i * (size_t)dim, k, scores, out + i * k, err, errlen);
        lat[i] = (now() - t) * 1e3;
    }
    free(scores);
    qsort(lat, nq, sizeof *lat, cmp_double);
    return rc;
}

static double recall(const int64_t *got, const int64_t *truth, size_t nq, size_t k) {
    size_t hit = 0;
    for (size_t i = 0; i < nq; i++)
        for (size_t a = 0; a < k; a++)
            for (size_t b = 0; b < k; b++)
                if (got[i * k + a] >= 0 && got[i * k + a] == truth[i * k + b]) {
                    hit++;
                    break;
                }
    return (double)hit / (double)(nq * k);
}

static int parse_long(const char *s, long lo, long hi, long *out) {
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: embd_bench_index [--n N] [--queries Q] [--dim D] [--k K] [--seed S] [--data uniform|clusters]\n"
               "                        [--clusters C] [--m M] [--ef-construction E] [--ef-search LIST]\n"
               "                        [--incremental N] [--flat-only]\n");
}

int main(int argc, char **argv) {
    long n = 100000, nq = 1000, dim = 384, k = 10, seed = 42, n_clusters = 1000, m = 0, efc = 0, incr = 1000;
    long efs[MAX_EFS] = {0, 16, 32, 64, 128, 256, 512};
    int n_efs = 7;
    int clusters = 0, flat_only = 0;
    static const struct option lo[] = {{"n", required_argument, 0, 'n'},        {"queries", required_argument, 0, 'q'},
                                       {"dim", required_argument, 0, 'd'},      {"k", required_argument, 0, 'k'},
                                       {"seed", required_argument, 0, 's'},     {"data", required_argument, 0, 'D'},
                                       {"clusters", required_argument, 0, 'c'}, {"m", required_argument, 0, 'm'},
                                       {"ef-construction", required_argument, 0, 'e'},
                                       {"ef-search", required_argument, 0, 'E'},
                                       {"incremental", required_argument, 0, 'i'}, {"flat-only", no_argument, 0, 'F'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    for (int c; (c = getopt_long(argc, argv, "h", lo, NULL)) != -1;) {
        int bad = 0;
        switch (c) {
        case 'n': bad = parse_long(optarg, 1, 10000000, &n); break;
        case 'q': bad = parse_long(optarg, 1, 1000000, &nq); break;
        case 'd': bad = parse_long(optarg, 1, 8192, &dim); break;
        case 'k': bad = parse_long(optarg, 1, 1000, &k); break;
        case 's': bad = parse_long(optarg, 0, 1L << 40, &seed); break;
        case 'c': bad = parse_long(optarg, 1, 1000000, &n_clusters); break;
        case 'm': bad = parse_long(optarg, 0, 512, &m); break;
        case 'e': bad = parse_long(optarg, 0, 100000, &efc); break;
        case 'i': bad = parse_long(optarg, 0, 1000000, &incr); break;
        case 'D':
            if (!strcmp(optarg, "uniform")) clusters = 0;
            else if (!strcmp(optarg, "clusters")) clusters = 1;
            else bad = 1;
            break;
        case 'E': {
            char *s = strdup(optarg), *save = NULL;
            n_efs = 0;
            for (char *t = strtok_r(s, ",", &save); t && !bad; t = strtok_r(NULL, ",", &save))
                bad = n_efs == MAX_EFS || parse_long(t, 0, 100000, &efs[n_efs++]);
            bad |= n_efs == 0;
            free(s);
            break;
        }
        case 'F': flat_only = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (bad) {
            fprintf(stderr, "embd_bench_index: bad value '%s'\n", optarg);
            return 2;
        }
    }
    if (optind != argc || k > n) {
        usage(stderr);
        return 2;
    }

    setvbuf(stdout, NULL, _IOLBF, 0); /* progress visible when redirected to a log */
    const int d = (int)dim;
    const size_t N = (size_t)n, Q = (size_t)nq, K = (size_t)k;
    uint64_t rs = (uint64_t)seed;
    float *centres = clusters ? malloc((size_t)n_clusters * (size_t)d * sizeof(float)) : NULL;
    float *base = malloc(N * (size_t)d * sizeof(float)), *queries = malloc(Q * (size_t)d * sizeof(float));
    double *lat = malloc(Q * sizeof *lat);
    int64_t *truth = malloc(Q * K * sizeof *truth), *got = malloc(Q * K * sizeof *got);
    if (!base || !queries || !lat || !truth || !got || (clusters && !centres)) return die("setup", "out of memory");
    if (clusters) draw(centres, (size_t)n_clusters, d, NULL, 0, &rs);
    draw(base, N, d, centres, (int)n_clusters, &rs);
    draw(queries, Q, d, centres, (int)n_clusters, &rs);
    printf("data: %s, n=%zu, dim=%d, queries=%zu (%s), k=%zu, seed=%ld, OMP_NUM_THREADS=%s\n",
           clusters ? "gaussian mixture" : "uniform unit vectors", N, d, Q,
           clusters ? "fresh draws from the mixture" : "independent uniform", K, seed,
           getenv("OMP_NUM_THREADS") ? getenv("OMP_NUM_THREADS") : "(unset)");
    if (clusters) printf("clusters: %ld\n", n_clusters);

    char err[512] = "";
    embd_vindex *flat = embd_vindex_new(d, EMBD_VINDEX_FLAT, 0, err, sizeof err);
    if (!flat) return die("flat index", err);
    double t = now();
    if (fill(flat, base, N, d, err, sizeof err)) return die("flat add", err);
    printf("flat: add %.2f s\n", now() - t);
    if (run_queries(flat, queries, Q, d, K, lat, truth, err, sizeof err)) return die("flat search", err);
    double sum = 0;
    for (size_t i = 0; i < Q; i++) sum += lat[i];
    printf("flat: search p50 %.3f ms, p99 %.3f ms, %.0f queries/s (one query per call, one caller)\n",
           pct(lat, Q, 0.5), pct(lat, Q, 0.99), 1e3 * (double)Q / sum);
    embd_vindex_free(flat);
    if (flat_only) n_efs = 0, incr = 0;

    embd_vindex *h = flat_only ? NULL : embd_vindex_new(d, EMBD_VINDEX_HNSW, (int)m, err, sizeof err);
    if (!h && !flat_only) return die("hnsw index", err);
    if (h && efc && embd_vindex_set_ef_construction(h, (int)efc, err, sizeof err)) return die("efConstruction", err);
    t = now();
    if (h && fill(h, base, N, d, err, sizeof err)) return die("hnsw add", err);
    if (h) printf("hnsw: M=%ld%s efConstruction=%ld%s, build %.2f s\n", m ? m : 32, m ? "" : " (default)", efc ? efc : 80,
           efc ? "" : " (default)", now() - t);
    if (h) printf("%-22s %8s %10s %10s %10s\n", "efSearch", "recall", "p50 ms", "p99 ms", "QPS");
    for (int e = 0; e < n_efs; e++) {
        if (embd_vindex_set_ef_search(h, (int)efs[e], err, sizeof err)) return die("efSearch", err);
        if (run_queries(h, queries, Q, d, K, lat, got, err, sizeof err)) return die("hnsw search", err);
        sum = 0;
        for (size_t i = 0; i < Q; i++) sum += lat[i];
        char label[32];
        if (efs[e]) snprintf(label, sizeof label, "%ld", efs[e]);
        else snprintf(label, sizeof label, "default (%zu)", K * 2 > 64 ? K * 2 : 64);
        printf("%-22s %8.4f %10.3f %10.3f %10.0f\n", label, recall(got, truth, Q, K), pct(lat, Q, 0.5),
               pct(lat, Q, 0.99), 1e3 * (double)Q / sum);
    }
    if (incr) { /* ingest's path: one add per new chunk into the live index */
        float *extra = malloc((size_t)incr * (size_t)d * sizeof(float));
        if (!extra) return die("incremental", "out of memory");
        draw(extra, (size_t)incr, d, centres, (int)n_clusters, &rs);
        t = now();
        for (long i = 0; i < incr; i++) {
            int64_t id = (int64_t)N + i;
            if (embd_vindex_add(h, 1, extra + (size_t)i * (size_t)d, &id, err, sizeof err))
                return die("incremental add", err);
        }
        double dt = now() - t;
        printf("hnsw: %ld one-vector adds %.2f s (%.3f ms each)\n", incr, dt, 1e3 * dt / (double)incr);
        free(extra);
    }
    embd_vindex_free(h);
    free(centres), free(base), free(queries), free(lat), free(truth), free(got);
    return 0;
}
