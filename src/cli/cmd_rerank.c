/* `embd rerank`: scores documents against one query with a cross-encoder. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/reader.h"
#include "engine/rerank.h"

static void rerank_usage(FILE *f) {
    fprintf(f,
            "usage: embd rerank --model M.gguf --query TEXT [--docs FILE|-] [options]\n\n"
            "  -m, --model FILE        GGUF cross-encoder (pooling type rank) (required)\n"
            "  -q, --query TEXT        the query (required)\n"
            "  -d, --docs FILE|-       JSONL {\"id\":..,\"text\":..} or plain text lines (default -)\n"
            "      --input-format F    auto|jsonl|lines (default auto)\n"
            "      --raw               raw logits instead of sigmoid scores\n"
            "      --top N             sorted view keeps the N best (default all)\n"
            "      --no-truncate       fail over-long pairs instead of cutting the document\n"
            "      --max-tokens N      token limit per pair (default: context)\n"
            "  -t, --threads N         compute threads (default: all usable cores)\n"
            "      --device D          cpu|auto|cuda|cuda:N (default: $EMBD_DEVICE, else auto)\n"
            "      --tokenizer FILE    use a Hugging Face tokenizer.json instead of the GGUF vocabulary\n\n"
            "Prints one JSON object: {\"query\", \"results\": [{\"index\",\"id\",\"score\"} in input order],\n"
            "\"ranking\": [the same, best first]}; a document that failed has \"error\" instead of \"score\"\n"
            "and is left out of the ranking.\n"
            "Exit status: 0 ok, 1 usage, 2 unusable model/input, 3 some documents failed.\n");
}

static int read_docs(const char *path, read_format fmt, input_item **items, size_t *n, char *err, size_t errlen) {
    reader rd;
    if (reader_open(&rd, path, fmt, err, errlen)) return -1;
    size_t cap = 0;
    *items = NULL;
    *n = 0;
    for (;;) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            input_item *p = realloc(*items, cap * sizeof *p);
            if (!p) {
                snprintf(err, errlen, "out of memory reading documents");
                reader_close(&rd);
                return -1;
            }
            *items = p;
        }
        memset(&(*items)[*n], 0, sizeof **items);
        int r = reader_next(&rd, &(*items)[*n]);
        if (r < 0) {
            snprintf(err, errlen, "read error on documents");
            reader_close(&rd);
            return -1;
        }
        if (r == 0) break;
        (*n)++;
    }
    reader_close(&rd);
    return 0;
}

int cmd_rerank(int argc, char **argv) {
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'},    {"query", required_argument, 0, 'q'},
        {"docs", required_argument, 0, 'd'},     {"input-format", required_argument, 0, 'I'},
        {"raw", no_argument, 0, 'r'},            {"top", required_argument, 0, 'n'},
        {"no-truncate", no_argument, 0, 'U'},    {"max-tokens", required_argument, 0, 'M'},
        {"threads", required_argument, 0, 't'},  {"tokenizer", required_argument, 0, 'k'},
        {"help", no_argument, 0, 'h'},          {"device", required_argument, 0, 'D'},           {0, 0, 0, 0}};
    const char *model_path = NULL, *query = NULL, *docs_path = "-", *tok_json = NULL;
    read_format ifmt = READ_AUTO;
    bool raw = false;
    long top = 0;
    int threads = 0;
    const char *device = NULL; /* NULL: $EMBD_DEVICE, else auto */
    embd_opts o;
    embd_opts_default(&o);
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:q:d:t:h", lo, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'q': query = optarg; break;
        case 'd': docs_path = optarg; break;
        case 'k': tok_json = optarg; break;
        case 'D': device = optarg; break;
        case 'r': raw = true; break;
        case 'U': o.truncate = false; break;
        case 'I':
            if (!strcmp(optarg, "auto")) ifmt = READ_AUTO;
            else if (!strcmp(optarg, "jsonl")) ifmt = READ_JSONL;
            else if (!strcmp(optarg, "lines")) ifmt = READ_LINES;
            else { fprintf(stderr, "embd rerank: --input-format must be auto, jsonl or lines\n"); return EMBD_EXIT_USAGE; }
            break;
        case 't': case 'n': case 'M': {
            long v = strtol(optarg, &end, 10);
            if (!*optarg || *end || v < 1 || v > (1L << 24)) {
                fprintf(stderr, "embd rerank: --%s needs a positive integer\n",
                        c == 't' ? "threads" : c == 'n' ? "top" : "max-tokens");
                return EMBD_EXIT_USAGE;
            }
            if (c == 't') threads = (int)v;
            else if (c == 'n') top = v;
            else o.max_tokens = (int)v;
            break;
        }
        case 'h': rerank_usage(stdout); return EMBD_EXIT_OK;
        default: rerank_usage(stderr); return EMBD_EXIT_USAGE;
        }
    }
    if (!model_path || !query || optind < argc) {
        if (optind < argc) fprintf(stderr, "embd rerank: unexpected argument '%s'\n", argv[optind]);
        else fprintf(stderr, "embd rerank: --%s is required\n", model_path ? "query" : "model");
        return EMBD_EXIT_USAGE;
    }
    if (!*query) {
        fprintf(stderr, "embd rerank: --query must not be empty\n");
        return EMBD_EXIT_USAGE;
    }
    if (o.max_tokens > 0 && o.max_tokens < 4) {
        fprintf(stderr, "embd rerank: --max-tokens must be at least 4 (the pair's special tokens)\n");
        return EMBD_EXIT_USAGE;
    }

    char err[512];
    int status = EMBD_EXIT_UNUSABLE;
    input_item *items = NULL;
    size_t n = 0;
    const char **texts = NULL;
    size_t *lens = NULL;
    float *scores = NULL;
    embd_item *res = NULL;
    size_t *ranked_idx = NULL, *order = NULL;
    float *ranked_score = NULL;
    json_t *out = NULL;
    embd_encoder *enc = NULL;
    embd_model_params mp = {.tokenizer_json = tok_json, .device = device};
    embd_model *m = embd_model_load(model_path, &mp, err, sizeof err);
    if (!m) goto done;
    if (!embd_model_is_reranker(m)) {
        snprintf(err, sizeof err, "'%s' is not a cross-encoder (its pooling is %s, not rank)", model_path,
                 embd_pooling_name(m->info.pooling));
        goto done;
    }
    if (!(enc = embd_encoder_new(m, threads, err, sizeof err))) goto done;
    if (read_docs(docs_path, ifmt, &items, &n, err, sizeof err)) goto done;
    if (n == 0) {
        snprintf(err, sizeof err, "no documents in %s", docs_path);
        goto done;
    }
    texts = calloc(n, sizeof *texts);
    lens = calloc(n, sizeof *lens);
    scores = calloc(n, sizeof *scores);
    res = calloc(n, sizeof *res);
    ranked_idx = calloc(n, sizeof *ranked_idx);
    ranked_score = calloc(n, sizeof *ranked_score);
    order = calloc(n, sizeof *order);
    size_t *pos = calloc(n, sizeof *pos);
    if (!texts || !lens || !scores || !res || !ranked_idx || !ranked_score || !order || !pos) {
        free(pos);
        snprintf(err, sizeof err, "out of memory");
        goto done;
    }
    size_t k = 0; /* lines that failed to parse are not run */
    for (size_t i = 0; i < n; i++) {
        if (items[i].error[0]) continue;
        pos[i] = k;
        texts[k] = items[i].text;
        lens[k++] = items[i].len;
    }
    if (embd_rerank_texts(enc, query, strlen(query), texts, lens, k, &o, scores, res, err, sizeof err)) {
        free(pos);
        goto done;
    }
    json_t *results = json_array(), *ranking = json_array();
    size_t nr = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        const embd_item *it = items[i].error[0] ? NULL : &res[pos[i]];
        json_t *o1 = json_pack("{s:I, s:O}", "index", (json_int_t)i, "id", items[i].id);
        if (!it || it->status != EMBD_ITEM_OK) {
            json_object_set_new(o1, "error", json_string(it ? it->message : items[i].error));
            failed++;
        } else {
            float s = raw ? scores[pos[i]] : embd_rerank_sigmoid(scores[pos[i]]);
            json_object_set_new(o1, "score", json_real(s));
            if (it->truncated) json_object_set_new(o1, "truncated", json_true());
            ranked_idx[nr] = i;
            ranked_score[nr++] = s;
        }
        json_array_append_new(results, o1);
    }
    free(pos);
    embd_rerank_order(ranked_score, nr, order);
    for (size_t j = 0; j < nr && (top == 0 || j < (size_t)top); j++)
        json_array_append(ranking, json_array_get(results, ranked_idx[order[j]]));
    out = json_pack("{s:s, s:o, s:o}", "query", query, "results", results, "ranking", ranking);
    if (!out || json_dumpf(out, stdout, JSON_INDENT(1) | JSON_REAL_PRECISION(9)) || fputc('\n', stdout) == EOF ||
        fflush(stdout)) {
        snprintf(err, sizeof err, "write error on output");
        goto done;
    }
    status = failed ? EMBD_EXIT_ITEM_ERRORS : EMBD_EXIT_OK;
done:
    if (status == EMBD_EXIT_UNUSABLE) fprintf(stderr, "embd rerank: %s\n", err);
    json_decref(out);
    for (size_t i = 0; items && i < n; i++) input_item_clear(&items[i]);
    free(items), free(texts), free(lens), free(scores), free(res), free(ranked_idx), free(ranked_score), free(order);
    embd_encoder_free(enc);
    embd_model_free(m);
    return status;
}
