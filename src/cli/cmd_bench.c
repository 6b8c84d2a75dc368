/* `embd bench`: raw encoder throughput and single-query latency on one device, without HTTP or tokenizer:
 * batches of B random-token sequences of exactly L tokens through embd_encoder_run (the same call
 * the server's workers make), timed end to end (inputs in, pooled vectors out, so a GPU pass is
 * complete when the clock stops). Prints one line per shape and a JSON summary.
 *
 *   embd bench --model M.gguf [--device cuda:0] [--batches 1,32,256] [--seqs 128,512]
 *              [--reps 5] [--latency 200] [--query-tokens 16] [--threads N] [--json OUT]
 *
 * Medians over --reps timed passes after one warm-up pass per shape; latency: --latency single
 * sequences of --query-tokens tokens, p50/p99. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "engine/encoder.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double quantile(double *v, int n, double q) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    int i = (int)(q * (n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

static int parse_list(const char *s, int *out, int cap) {
    int n = 0;
    for (char *end; *s && n < cap; s = *end ? end + 1 : end) {
        long v = strtol(s, &end, 10);
        if (end == s || v <= 0) return -1;
        out[n++] = (int)v;
    }
    return n;
}

static void bench_usage(FILE *f) {
    fprintf(f, "usage: embd bench --model M.gguf [--device D] [--batches 1,32,256] [--seqs 128,512]\n"
               "       [--reps 5] [--latency 200] [--query-tokens 16] [--threads N] [--json OUT]\n\n"
               "Times the encoder alone on random token ids: for every batch size B and sequence length L,\n"
               "the median of --reps passes (after a warm-up), as sequences/s and tokens/s; then the p50/p99\n"
               "of --latency single queries of --query-tokens tokens.\n");
}

int cmd_bench(int argc, char **argv) {
    const char *model_path = NULL, *device = NULL, *json_path = NULL;
    int batches[16] = {1, 32, 256}, seqs[16] = {128, 512}, nb = 3, ns = 2;
    int reps = 5, lat_n = 200, qtok = 16, threads = 0;
    static const struct option lo[] = {{"model", 1, 0, 'm'},   {"device", 1, 0, 'd'},  {"batches", 1, 0, 'b'},
                                       {"seqs", 1, 0, 's'},    {"reps", 1, 0, 'r'},    {"latency", 1, 0, 'l'},
                                       {"query-tokens", 1, 0, 'q'}, {"threads", 1, 0, 't'}, {"json", 1, 0, 'j'},
                                       {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "m:d:h", lo, NULL)) != -1;) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'd': device = optarg; break;
        case 'b': nb = parse_list(optarg, batches, 16); break;
        case 's': ns = parse_list(optarg, seqs, 16); break;
        case 'r': reps = atoi(optarg); break;
        case 'l': lat_n = atoi(optarg); break;
        case 'q': qtok = atoi(optarg); break;
        case 't': threads = atoi(optarg); break;
        case 'j': json_path = optarg; break;
        case 'h': bench_usage(stdout); return EMBD_EXIT_OK;
        default: bench_usage(stderr); return EMBD_EXIT_USAGE;
        }
    }
    if (!model_path || nb <= 0 || ns <= 0 || reps < 1 || lat_n < 0 || qtok < 2) {
        bench_usage(stderr);
        return EMBD_EXIT_USAGE;
    }
    char err[512];
    embd_model_params mp = {.device = device};
    embd_model *m = embd_model_load(model_path, &mp, err, sizeof err);
    embd_encoder *e = m ? embd_encoder_new(m, threads, err, sizeof err) : NULL;
    if (!e) {
        fprintf(stderr, "embd bench: %s\n", err);
        embd_model_free(m);
        return EMBD_EXIT_UNUSABLE;
    }
    const embd_model_info *in = &m->info;
    printf("model %s: %d layers x %d, %d heads, ff %d, weights %s, device %s (%s)\n", model_path, in->n_layer,
           in->n_embd, in->n_head, in->n_ff, in->weight_type, embd_encoder_device(e), m->dev.desc);
    int maxb = 1, maxl = qtok;
    for (int i = 0; i < nb; i++) maxb = batches[i] > maxb ? batches[i] : maxb;
    for (int i = 0; i < ns; i++) maxl = seqs[i] > maxl ? seqs[i] : maxl;
    if (maxl > in->n_ctx) maxl = in->n_ctx;
    int32_t *tok = malloc((size_t)maxb * maxl * sizeof *tok);
    const int32_t **ids = malloc((size_t)maxb * sizeof *ids);
    int *lens = malloc((size_t)maxb * sizeof *lens);
    float *out = malloc((size_t)maxb * (size_t)embd_model_out_dim(m, EMBD_POOL_UNSPECIFIED) * sizeof *out);
    double *t = malloc((size_t)(reps > lat_n ? reps : lat_n) * sizeof *t);
    if (!tok || !ids || !lens || !out || !t) {
        fprintf(stderr, "embd bench: out of memory\n");
        return EMBD_EXIT_UNUSABLE;
    }
    uint32_t x = 42;
    for (size_t i = 0; i < (size_t)maxb * maxl; i++)
        tok[i] = 1000 + (int32_t)((x = x * 1103515245u + 12345u) >> 8) % (in->n_vocab - 1000);
    for (int b = 0; b < maxb; b++) ids[b] = tok + (size_t)b * maxl;
    FILE *js = json_path ? fopen(json_path, "w") : NULL;
    if (js) fprintf(js, "{\"model\": \"%s\", \"device\": \"%s\", \"device_desc\": \"%s\", \"weights\": \"%s\", \"runs\": [",
                    model_path, embd_encoder_device(e), m->dev.desc, in->weight_type);
    bool first = true;
    for (int si = 0; si < ns; si++) {
        for (int bi = 0; bi < nb; bi++) {
            const int B = batches[bi], L = seqs[si] < in->n_ctx ? seqs[si] : in->n_ctx;
            for (int b = 0; b < B; b++) lens[b] = L;
            int rc = embd_encoder_run(e, ids, lens, NULL, B, m->info.pooling, out, err, sizeof err);
            for (int r = 0; rc == 0 && r < reps; r++) {
                double t0 = now();
                rc = embd_encoder_run(e, ids, lens, NULL, B, m->info.pooling, out, err, sizeof err);
                t[r] = now() - t0;
            }
            if (rc) {
                printf("B=%-4d L=%-4d failed: %s\n", B, L, err);
                continue;
            }
            double med = quantile(t, reps, 0.5);
            embd_encoder_stats st;
            embd_encoder_get_stats(e, &st);
            printf("B=%-4d L=%-4d median %9.3f ms  %10.1f seq/s  %12.0f tok/s  (compute buffer %.0f MiB, splits %llu)\n",
                   B, L, med * 1e3, B / med, (double)B * L / med, st.compute_bytes / 1048576.0,
                   (unsigned long long)st.splits);
            if (js)
                fprintf(js, "%s\n  {\"batch\": %d, \"seq\": %d, \"median_s\": %.6f, \"seq_per_s\": %.2f, \"tok_per_s\": %.1f}",
                        first ? "" : ",", B, L, med, B / med, (double)B * L / med);
            first = false;
        }
    }
    bool lat_ok = false;
    if (lat_n > 0) {
        lens[0] = qtok;
        int rc = 0;
        for (int r = 0; rc == 0 && r < 5; r++) /* warm-up at this shape */
            rc = embd_encoder_run(e, ids, lens, NULL, 1, m->info.pooling, out, err, sizeof err);
        for (int r = 0; rc == 0 && r < lat_n; r++) {
            ids[0] = tok + (size_t)(r % maxb) * maxl; /* a different query each time */
            double t0 = now();
            rc = embd_encoder_run(e, ids, lens, NULL, 1, m->info.pooling, out, err, sizeof err);
            t[r] = now() - t0;
        }
        if (rc) {
            printf("latency failed: %s\n", err);
        } else {
            double p50 = quantile(t, lat_n, 0.5), p99 = quantile(t, lat_n, 0.99);
            printf("single query of %d tokens: p50 %.3f ms  p99 %.3f ms  (%d queries)\n", qtok, p50 * 1e3, p99 * 1e3,
                   lat_n);
            lat_ok = true;
            if (js) fprintf(js, "], \"latency\": {\"tokens\": %d, \"p50_s\": %.6f, \"p99_s\": %.6f", qtok, p50, p99);
        }
    }
    if (js) {
        fprintf(js, lat_ok ? "}}\n" : "]}\n");
        fclose(js);
    }
    free(tok), free(ids), free(lens), free(out), free(t);
    embd_encoder_free(e);
    embd_model_free(m);
    return EMBD_EXIT_OK;
}
