#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/reader.h"
#include "cli/writer.h"
#include "engine/embed.h"
#include "util/sys.h"

/* Items are embedded in windows: enough to sort into well-packed batches, small enough that memory
 * stays flat however large the input is. */
#define WINDOW_ITEMS 4096
#define WINDOW_BYTES (8u << 20)

static void embed_usage(FILE *f) {
    fprintf(f,
            "usage: embd embed --model M.gguf [options]\n\n"
            "  -m, --model FILE        GGUF embedding model (required)\n"
            "  -i, --input FILE|-      JSONL {\"id\":..,\"text\":..} or plain text lines (default -)\n"
            "      --input-format F    auto|jsonl|lines (default auto: decided by the first line)\n"
            "  -o, --output FILE|-     where vectors go (default -)\n"
            "  -f, --format F          jsonl|npy|f32 (default jsonl); npy/f32 also write FILE.meta.jsonl\n"
            "  -t, --threads N         compute threads (default: all usable cores)\n"
            "      --device D          cpu|auto|cuda|cuda:N (default: $EMBD_DEVICE, else auto: the first\n"
            "                          GPU of a CUDA build, else the CPU)\n"
            "  -b, --batch-tokens N    padded tokens per forward pass (default 4096)\n"
            "      --pooling P         cls|mean|last|none (default: the model's); none writes every\n"
            "                          token's vector (JSONL token_embeddings, not normalised)\n"
            "      --normalize         L2-normalise vectors (default)\n"
            "      --no-normalize      raw pooled vectors\n"
            "      --truncate          cut inputs longer than the context (default); marked truncated\n"
            "      --no-truncate       fail such items with a per-item error instead\n"
            "      --max-tokens N      token limit per input, [CLS]/[SEP] included (default: context)\n"
            "      --prompt-name NAME  prepend the model's named prompt (sentence-transformers prompts;\n"
            "                          default: the model's default prompt, if any)\n"
            "      --prompt TEXT       prepend TEXT to every input instead\n"
            "      --tokenizer FILE    use a Hugging Face tokenizer.json instead of the GGUF vocabulary\n"
            "  -q, --quiet             no progress bar and no summary line\n\n"
            "Output records are in input order: {\"id\",\"embedding\",\"tokens\",\"truncated\"} or\n"
            "{\"id\",\"error\"} for an item that failed (npy/f32: a NaN row, error in the meta file).\n"
            "Exit status: 0 ok, 1 usage, 2 unusable model/input/output, 3 some items failed.\n");
}

typedef struct {
    size_t total, items, tokens, base_items, base_tokens;
    double t0, last;
    bool tty;
} progress;

static void show_progress(void *ud, size_t items_done, size_t tokens_done) {
    progress *p = ud;
    if (!p->tty) return;
    double now = embd_now();
    if (now - p->last < 0.2 && items_done) return;
    p->last = now;
    size_t items = p->base_items + items_done, tokens = p->base_tokens + tokens_done;
    double el = now - p->t0, rate = el > 0 ? (double)tokens / el : 0, irate = el > 0 ? (double)items / el : 0;
    char bar[31] = {0};
    if (p->total) {
        int fill = (int)(30.0 * (double)items / (double)p->total);
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
        double eta = irate > 0 && p->total > items ? (double)(p->total - items) / irate : 0;
        fprintf(stderr, "\r[%s] %zu/%zu items  %.0f tok/s  ETA %d:%02d ", bar, items, p->total, rate, (int)eta / 60,
                (int)eta % 60);
    } else {
        fprintf(stderr, "\r%zu items  %.0f tok/s ", items, rate);
    }
}

int cmd_embed(int argc, char **argv) {
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'},      {"input", required_argument, 0, 'i'},
        {"output", required_argument, 0, 'o'},     {"format", required_argument, 0, 'f'},
        {"threads", required_argument, 0, 't'},    {"batch-tokens", required_argument, 0, 'b'},
        {"pooling", required_argument, 0, 'P'},    {"normalize", no_argument, 0, 'N'},
        {"no-normalize", no_argument, 0, 'n'},     {"truncate", no_argument, 0, 'T'},
        {"no-truncate", no_argument, 0, 'U'},      {"max-tokens", required_argument, 0, 'M'},
        {"tokenizer", required_argument, 0, 'k'},  {"input-format", required_argument, 0, 'I'},
        {"quiet", no_argument, 0, 'q'},            {"help", no_argument, 0, 'h'},          {"device", required_argument, 0, 'D'},
        {"prompt-name", required_argument, 0, 'R'}, {"prompt", required_argument, 0, 'p'},
        {0, 0, 0, 0}};
    const char *model_path = NULL, *in_path = "-", *out_path = "-", *tok_json = NULL, *prompt_name = NULL;
    const char *prompt = NULL;
    out_format ofmt = OUT_JSONL;
    read_format ifmt = READ_AUTO;
    int threads = 0;
    const char *device = NULL; /* NULL: $EMBD_DEVICE, else auto */
    bool quiet = false;
    embd_opts o;
    embd_opts_default(&o);
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:i:o:f:t:b:qh", lo, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'i': in_path = optarg; break;
        case 'o': out_path = optarg; break;
        case 'k': tok_json = optarg; break;
        case 'D': device = optarg; break;
        case 'R': prompt_name = optarg; break;
        case 'p': prompt = optarg; break;
        case 'q': quiet = true; break;
        case 'N': o.normalize = true; break;
        case 'n': o.normalize = false; break;
        case 'T': o.truncate = true; break;
        case 'U': o.truncate = false; break;
        case 'f':
            if (!strcmp(optarg, "jsonl")) ofmt = OUT_JSONL;
            else if (!strcmp(optarg, "npy")) ofmt = OUT_NPY;
            else if (!strcmp(optarg, "f32")) ofmt = OUT_F32;
            else { fprintf(stderr, "embd embed: --format must be jsonl, npy or f32\n"); return EMBD_EXIT_USAGE; }
            break;
        case 'I':
            if (!strcmp(optarg, "auto")) ifmt = READ_AUTO;
            else if (!strcmp(optarg, "jsonl")) ifmt = READ_JSONL;
            else if (!strcmp(optarg, "lines")) ifmt = READ_LINES;
            else { fprintf(stderr, "embd embed: --input-format must be auto, jsonl or lines\n"); return EMBD_EXIT_USAGE; }
            break;
        case 'P':
            o.pooling = embd_pooling_parse(optarg);
            if (o.pooling != EMBD_POOL_CLS && o.pooling != EMBD_POOL_MEAN && o.pooling != EMBD_POOL_LAST &&
                o.pooling != EMBD_POOL_NONE) {
                fprintf(stderr, "embd embed: --pooling must be cls, mean, last or none\n");
                return EMBD_EXIT_USAGE;
            }
            break;
        case 't': case 'b': case 'M': {
            long v = strtol(optarg, &end, 10);
            if (!*optarg || *end || v < 1 || v > (1L << 24)) {
                fprintf(stderr, "embd embed: --%s needs a positive integer\n",
                        c == 't' ? "threads" : c == 'b' ? "batch-tokens" : "max-tokens");
                return EMBD_EXIT_USAGE;
            }
            if (c == 't') threads = (int)v;
            else if (c == 'b') o.batch_tokens = (size_t)v;
            else o.max_tokens = (int)v;
            break;
        }
        case 'h': embed_usage(stdout); return EMBD_EXIT_OK;
        default: embed_usage(stderr); return EMBD_EXIT_USAGE;
        }
    }
    if (!model_path || optind < argc) {
        fprintf(stderr, optind < argc ? "embd embed: unexpected argument '%s'\n" : "embd embed: --model is required\n",
                optind < argc ? argv[optind] : "");
        return EMBD_EXIT_USAGE;
    }
    if (o.pooling == EMBD_POOL_NONE && ofmt != OUT_JSONL) {
        fprintf(stderr, "embd embed: --pooling none writes token embeddings as JSONL only\n");
        return EMBD_EXIT_USAGE;
    }
    if (o.max_tokens == 1) {
        fprintf(stderr, "embd embed: --max-tokens must be at least 2 ([CLS] and [SEP])\n");
        return EMBD_EXIT_USAGE;
    }

    char err[512];
    embd_model_params mp = {.tokenizer_json = tok_json, .device = device};
    embd_model *m = embd_model_load(model_path, &mp, err, sizeof err);
    if (!m) {
        fprintf(stderr, "embd embed: %s\n", err);
        return EMBD_EXIT_UNUSABLE;
    }
    if (prompt_name && prompt) {
        fprintf(stderr, "embd embed: give --prompt-name or --prompt, not both\n");
        embd_model_free(m);
        return EMBD_EXIT_USAGE;
    }
    o.prompt = prompt ? prompt : embd_model_prompt(m, prompt_name ? prompt_name : m->default_prompt);
    if (prompt_name && !o.prompt) {
        fprintf(stderr, "embd embed: the model has no prompt named '%s' (%zu prompts)\n", prompt_name, m->n_prompts);
        embd_model_free(m);
        return EMBD_EXIT_USAGE;
    }
    embd_encoder *enc = embd_encoder_new(m, threads, err, sizeof err);
    reader rd;
    writer wr;
    bool rd_open = false, wr_open = false;
    int status = EMBD_EXIT_UNUSABLE;
    const int H = m->info.n_embd;
    input_item *items = calloc(WINDOW_ITEMS, sizeof *items);
    const char **texts = calloc(WINDOW_ITEMS, sizeof *texts);
    size_t *lens = calloc(WINDOW_ITEMS, sizeof *lens);
    embd_item *res = calloc(WINDOW_ITEMS, sizeof *res);
    float *vecs = malloc((size_t)WINDOW_ITEMS * H * sizeof *vecs);
    if (!enc) goto done;
    if (!items || !texts || !lens || !res || !vecs) { snprintf(err, sizeof err, "out of memory"); goto done; }
    if (reader_open(&rd, in_path, ifmt, err, sizeof err)) goto done;
    rd_open = true;
    if (writer_open(&wr, out_path, ofmt, H, err, sizeof err)) goto done;
    wr_open = true;

    progress pg = {.total = quiet ? 0 : count_lines(in_path), .t0 = embd_now(), .tty = !quiet && isatty(2)};
    o.progress = show_progress;
    o.progress_ud = &pg;
    size_t n_failed = 0, n_trunc = 0;
    bool eof = false;
    while (!eof) {
        size_t n = 0, bytes = 0;
        while (n < WINDOW_ITEMS && bytes < WINDOW_BYTES) {
            int r = reader_next(&rd, &items[n]);
            if (r < 0) { snprintf(err, sizeof err, "read error on input"); goto done; }
            if (r == 0) { eof = true; break; }
            bytes += items[n].len;
            n++;
        }
        /* Lines that failed to parse stay in place; the rest are embedded together. */
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (items[i].error[0]) continue;
            texts[k] = items[i].text;
            lens[k] = items[i].len;
            k++;
        }
        if (o.pooling == EMBD_POOL_NONE) { /* one text at a time: outputs differ in size */
            for (size_t i = 0, j = 0; i < n; i++) {
                if (items[i].error[0]) {
                    writer_put_tokens(&wr, items[i].id, NULL, NULL, items[i].error);
                    n_failed++;
                } else {
                    float *st = NULL;
                    embd_item it;
                    if (embd_embed_token_states(enc, texts[j], lens[j], &o, &st, &it, err, sizeof err)) goto done;
                    j++;
                    n_failed += it.status != EMBD_ITEM_OK;
                    n_trunc += it.status == EMBD_ITEM_OK && it.truncated;
                    pg.tokens += it.status == EMBD_ITEM_OK ? (size_t)it.n_tokens : 0;
                    int wrc = writer_put_tokens(&wr, items[i].id, st, &it, st ? NULL : it.message);
                    free(st);
                    if (wrc) {
                        snprintf(err, sizeof err, "write error on output");
                        goto done;
                    }
                }
                input_item_clear(&items[i]);
            }
            pg.items += n;
            continue;
        }
        if (embd_embed_texts(enc, texts, lens, k, &o, vecs, res, err, sizeof err)) goto done;
        for (size_t i = 0, j = 0; i < n; i++) {
            if (items[i].error[0]) {
                writer_put(&wr, items[i].id, NULL, NULL, items[i].error);
                n_failed++;
            } else {
                const embd_item *it = &res[j];
                bool ok = it->status == EMBD_ITEM_OK;
                n_failed += !ok;
                n_trunc += ok && it->truncated;
                if (ok) pg.tokens += (size_t)it->n_tokens;
                if (writer_put(&wr, items[i].id, ok ? vecs + j * H : NULL, it, ok ? NULL : it->message)) {
                    snprintf(err, sizeof err, "write error on output");
                    goto done;
                }
                j++;
            }
            input_item_clear(&items[i]);
        }
        pg.items += n;
        pg.base_items = pg.items;
        pg.base_tokens = pg.tokens;
    }
    if (writer_close(&wr, err, sizeof err)) { wr_open = false; goto done; }
    wr_open = false;
    double el = embd_now() - pg.t0;
    if (pg.tty) fputc('\n', stderr);
    if (!quiet)
        fprintf(stderr, "embd: %zu items (%zu failed, %zu truncated), %zu tokens in %.2f s, %.0f tokens/s, peak RSS %.1f MiB\n",
                pg.items, n_failed, n_trunc, pg.tokens, el, el > 0 ? (double)pg.tokens / el : 0.0,
                (double)embd_peak_rss_bytes() / (1 << 20));
    status = n_failed ? EMBD_EXIT_ITEM_ERRORS : EMBD_EXIT_OK;
done:
    if (status == EMBD_EXIT_UNUSABLE) fprintf(stderr, "embd embed: %s\n", err);
    if (wr_open) writer_close(&wr, err, sizeof err);
    if (rd_open) reader_close(&rd);
    if (items)
        for (size_t i = 0; i < WINDOW_ITEMS; i++) input_item_clear(&items[i]);
    free(items), free(texts), free(lens), free(res), free(vecs);
    embd_encoder_free(enc);
    embd_model_free(m);
    return status;
}
