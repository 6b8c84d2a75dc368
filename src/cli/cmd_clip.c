/* embd clip-embed: text and image embeddings from a CLIP GGUF, one JSON line per input, for tests
 * and quick checks; --bench measures images/s and latencies. */
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "engine/clip.h"
#include "image/load.h"
#include "util/sys.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: embd clip-embed --model M.gguf [--text T]... [--ids I,I,...]... [--image SRC]...\n"
            "                       [--pixels FILE.npy] [--threads N] [--device D] [--one-by-one]\n"
            "       embd clip-embed --model M.gguf --bench [--batch N] [--threads N] [--device D]\n\n"
            "Prints one JSON line per input, texts first, then images, in input order:\n"
            "  {\"text\": i, \"tokens\": [...], \"embedding\": [...]}   {\"image\": i, \"embedding\": [...]}\n"
            "embeddings L2-normalised in the shared CLIP space. An image that cannot be used prints\n"
            "{\"image\": i, \"error\": \"...\"} and the exit status is then 3.\n\n"
            "  --text T       a text (tokenized with the model's CLIP BPE, truncated to its context)\n"
            "  --ids LIST     a text given as comma-separated token ids (start and end tokens included)\n"
            "  --image SRC    an image file, http(s) URL or data URI, decoded and preprocessed with the\n"
            "                 model's own processor settings (URLs are fetched together first)\n"
            "  --pixels F     preprocessed images: .npy float32, shape (n, 3, S, S) or (3, S, S), S the\n"
            "                 model's image size (embd image-prep writes them); these come before --image ones\n"
            "  --one-by-one   one forward pass per input instead of one per kind (batch checks)\n"
            "  --bench        time a batch of --batch (16) random images, one image and one text\n");
}

/* A float32 C-order .npy of shape (n, 3, S, S) or (3, S, S); returns the pixels and sets *n. */
static float *read_npy(const char *path, int S, int *n, char *err, size_t errlen) {
    size_t len;
    char rerr[512];
    uint8_t *b = (uint8_t *)embd_read_file(path, (size_t)4 << 30, &len, rerr, sizeof rerr);
    if (!b) {
        embd_fail(err, errlen, "%s", rerr);
        return NULL;
    }
    float *out = NULL;
    size_t hl = 0, off = 0;
    if (len >= 10 && !memcmp(b, "\x93NUMPY", 6)) {
        if (b[6] == 1) hl = b[8] | (size_t)b[9] << 8, off = 10;
        else if (len >= 12) hl = b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24, off = 12;
    }
    if (!off || hl > len - off) {
        embd_fail(err, errlen, "%s is not a .npy file", path);
        goto out;
    }
    char hdr[1024];
    snprintf(hdr, sizeof hdr, "%.*s", (int)(hl < sizeof hdr - 1 ? hl : sizeof hdr - 1), (const char *)b + off);
    const char *shape = strstr(hdr, "'shape':");
    long d[4] = {0};
    int nd = 0;
    if (shape && (shape = strchr(shape, '('))) {
        const char *s = shape + 1;
        while (nd < 4) {
            char *end;
            long v = strtol(s, &end, 10);
            if (end == s) break;
            d[nd++] = v;
            s = end;
            while (*s == ',' || *s == ' ') s++;
        }
        if (*s != ')') nd = -1;
    }
    if (!strstr(hdr, "'descr': '<f4'") || !strstr(hdr, "'fortran_order': False") || (nd != 3 && nd != 4)) {
        embd_fail(err, errlen, "%s: expected a little-endian float32 C-order array of shape (n, 3, %d, %d)", path, S, S);
        goto out;
    }
    if (nd == 3) memmove(d + 1, d, 3 * sizeof *d), d[0] = 1;
    if (d[0] < 1 || d[0] > 4096 || d[1] != 3 || d[2] != S || d[3] != S) {
        embd_fail(err, errlen, "%s has shape (%ld, %ld, %ld, %ld); the model takes (n, 3, %d, %d)", path, d[0], d[1], d[2],
                  d[3], S, S);
        goto out;
    }
    const size_t count = (size_t)d[0] * 3 * S * S;
    if (len - off - hl != count * sizeof(float)) {
        embd_fail(err, errlen, "%s: data size does not match its shape", path);
        goto out;
    }
    if (!(out = malloc(count * sizeof *out))) {
        embd_fail(err, errlen, "out of memory");
        goto out;
    }
    memcpy(out, b + off + hl, count * sizeof *out);
    *n = (int)d[0];
out:
    free(b);
    return out;
}

static void print_error(int i, const char *msg) {
    printf("{\"image\": %d, \"error\": \"", i);
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
        if (*p == '"' || *p == '\\') printf("\\%c", *p);
        else if (*p < 0x20) printf("\\u%04x", *p);
        else putchar(*p);
    }
    printf("\"}\n");
}

static void print_vec(const char *kind, int i, const int32_t *ids, int n_ids, const float *v, int dim) {
    printf("{\"%s\": %d, ", kind, i);
    if (ids) {
        printf("\"tokens\": [");
        for (int t = 0; t < n_ids; t++) printf("%s%d", t ? "," : "", (int)ids[t]);
        printf("], ");
    }
    printf("\"embedding\": [");
    for (int k = 0; k < dim; k++) printf("%s%.8g", k ? "," : "", (double)v[k]);
    printf("]}\n");
}

static int parse_ids(const char *s, int32_t **ids, int *n) {
    int cap = 16;
    *n = 0;
    if (!(*ids = malloc((size_t)cap * sizeof **ids))) return -1;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > INT32_MAX || (*end && *end != ',')) return -1;
        if (*n == cap) {
            int32_t *p = realloc(*ids, (size_t)(cap *= 2) * sizeof *p);
            if (!p) return -1;
            *ids = p;
        }
        (*ids)[(*n)++] = (int32_t)v;
        s = *end ? end + 1 : end;
    }
    return *n ? 0 : -1;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

static int bench(embd_clip *c, int batch) {
    const embd_clip_info *in = embd_clip_get_info(c);
    const size_t per = (size_t)3 * in->image_size * in->image_size;
    float *px = malloc(per * batch * sizeof *px), *out = malloc((size_t)batch * in->dim * sizeof *out);
    char err[512];
    if (!px || !out) return EMBD_EXIT_UNUSABLE;
    uint32_t r = 12345; /* images of uniform noise in the normalised range */
    for (size_t i = 0; i < per * batch; i++) px[i] = (float)((r = r * 1664525u + 1013904223u) >> 8) / 16777216.0f * 4 - 2;
    embd_tokens tk = {0};
    size_t eo;
    static const char TEXT[] = "a photo of a cat sitting on a red sofa";
    double tb[5], t1[5], tt[9];
    int rc = embd_tokenizer_encode(embd_clip_tokenizer(c), TEXT, sizeof TEXT - 1, (size_t)in->text_ctx, &tk, &eo);
    if (rc == 0 && embd_clip_encode_images(c, px, batch, out, err, sizeof err)) rc = -1; /* warm-up */
    for (int k = 0; rc == 0 && k < 5; k++) {
        double t0 = embd_now();
        if (embd_clip_encode_images(c, px, batch, out, err, sizeof err)) rc = -1;
        tb[k] = embd_now() - t0;
        t0 = embd_now();
        if (embd_clip_encode_images(c, px, 1, out, err, sizeof err)) rc = -1;
        t1[k] = embd_now() - t0;
    }
    const int32_t *ids = tk.ids;
    const int len = (int)tk.n;
    for (int k = 0; rc == 0 && k < 9; k++) {
        double t0 = embd_now();
        if (embd_clip_encode_texts(c, &ids, &len, 1, out, err, sizeof err)) rc = -1;
        tt[k] = embd_now() - t0;
    }
    if (rc == 0)
        printf("{\"device\": \"%s\", \"weights\": \"%s\", \"compute\": \"%s\", \"batch\": %d, \"images_per_s\": %.2f, "
               "\"image_latency_ms\": %.1f, \"text_tokens\": %d, \"text_latency_ms\": %.1f}\n",
               in->device, in->weight_type, in->compute_type, batch, batch / median(tb, 5), 1000 * median(t1, 5), len,
               1000 * median(tt, 9));
    else
        fprintf(stderr, "embd clip-embed: %s\n", err);
    embd_tokens_free(&tk);
    free(px);
    free(out);
    return rc ? EMBD_EXIT_UNUSABLE : EMBD_EXIT_OK;
}

typedef struct {
    int32_t **ids;
    int *lens, n;
} texts_t;

static void texts_free(texts_t *t) {
    for (int i = 0; i < t->n; i++) free(t->ids[i]);
    free(t->ids);
    free(t->lens);
}

static int add_text(texts_t *t, int32_t *ids, int len) {
    int32_t **a = realloc(t->ids, (size_t)(t->n + 1) * sizeof *a);
    if (a) t->ids = a;
    int *l = realloc(t->lens, (size_t)(t->n + 1) * sizeof *l);
    if (l) t->lens = l;
    if (!a || !l) return -1;
    t->ids[t->n] = ids, t->lens[t->n++] = len;
    return 0;
}

int cmd_clip_embed(int argc, char **argv) {
    static const struct option lo[] = {{"model", required_argument, 0, 'm'},  {"text", required_argument, 0, 't'},
                                       {"ids", required_argument, 0, 'i'},    {"pixels", required_argument, 0, 'p'},
                                       {"threads", required_argument, 0, 'n'}, {"device", required_argument, 0, 'd'},
                                       {"one-by-one", no_argument, 0, 'o'},   {"bench", no_argument, 0, 'B'},
                                       {"batch", required_argument, 0, 'b'},  {"help", no_argument, 0, 'h'},
                                       {"image", required_argument, 0, 'I'},  {0, 0, 0, 0}};
    const char *model = NULL, *pixels = NULL, *device = NULL;
    int threads = 0, batch = 16, c;
    bool one = false, do_bench = false;
    /* texts and id lists keep their command-line order */
    const char **items = calloc((size_t)argc + 1, sizeof *items);
    char *kinds = calloc((size_t)argc + 1, 1);
    char **srcs = calloc((size_t)argc + 1, sizeof *srcs);
    int n_items = 0, n_srcs = 0;
    if (!items || !kinds || !srcs) {
        free(items), free(kinds), free(srcs);
        return EMBD_EXIT_UNUSABLE;
    }
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:t:i:p:n:d:oBb:hI:", lo, NULL)) != -1) {
        if (c == 'm') model = optarg;
        else if (c == 'I') srcs[n_srcs++] = optarg;
        else if (c == 't' || c == 'i') kinds[n_items] = (char)c, items[n_items++] = optarg;
        else if (c == 'p') pixels = optarg;
        else if (c == 'n') threads = atoi(optarg);
        else if (c == 'd') device = optarg;
        else if (c == 'o') one = true;
        else if (c == 'B') do_bench = true;
        else if (c == 'b') batch = atoi(optarg);
        else {
            usage(c == 'h' ? stdout : stderr);
            free(items), free(kinds), free(srcs);
            return c == 'h' ? EMBD_EXIT_OK : EMBD_EXIT_USAGE;
        }
    }
    int rc = EMBD_EXIT_USAGE;
    embd_clip *clip = NULL;
    texts_t tx = {0};
    float *px = NULL, *out = NULL;
    embd_image_loaded *img = NULL;
    size_t img_failed = 0;
    char err[1024];
    if (!model || optind != argc || batch < 1 || batch > 1024 || threads < 0 ||
        (!do_bench && !n_items && !pixels && !n_srcs)) {
        usage(stderr);
        goto done;
    }
    rc = EMBD_EXIT_UNUSABLE;
    if (!(clip = embd_clip_load(model, device, threads, err, sizeof err))) {
        fprintf(stderr, "embd clip-embed: %s\n", err);
        goto done;
    }
    if (do_bench) {
        rc = bench(clip, batch);
        goto done;
    }
    const embd_clip_info *in = embd_clip_get_info(clip);
    for (int i = 0; i < n_items; i++) {
        int32_t *ids = NULL;
        int len = 0;
        if (kinds[i] == 'i') {
            if (parse_ids(items[i], &ids, &len)) {
                free(ids);
                fprintf(stderr, "embd clip-embed: --ids '%s' is not a comma-separated list of token ids\n", items[i]);
                rc = EMBD_EXIT_USAGE;
                goto done;
            }
        } else {
            embd_tokens tk = {0};
            size_t eo;
            if (embd_tokenizer_encode(embd_clip_tokenizer(clip), items[i], strlen(items[i]), (size_t)in->text_ctx, &tk,
                                      &eo)) {
                fprintf(stderr, "embd clip-embed: text %d is not valid UTF-8 (byte %zu)\n", i, eo);
                embd_tokens_free(&tk);
                goto done;
            }
            ids = tk.ids, len = (int)tk.n;
        }
        if (add_text(&tx, ids, len)) {
            free(ids);
            goto done;
        }
    }
    int n_img = 0;
    if (pixels && !(px = read_npy(pixels, in->image_size, &n_img, err, sizeof err))) {
        fprintf(stderr, "embd clip-embed: %s\n", err);
        goto done;
    }
    const size_t per = (size_t)3 * in->image_size * in->image_size;
    const int n_px = n_img; /* --pixels images; the good --image ones follow */
    if (n_srcs) { /* decoded with the model's processor, then appended to the --pixels images */
        embd_image_prep prep;
        embd_clip_image_prep(clip, &prep);
        embd_fetch_opts fo;
        embd_fetch_opts_default(&fo);
        fo.allow_private = true; /* the user's own command: no SSRF to guard against */
        embd_image_limits lim = {.max_pixels = EMBD_IMAGE_MAX_PIXELS_DEFAULT, .max_bytes = fo.max_bytes};
        int h = in->image_size, w = in->image_size;
        float *grown = realloc(px, per * (size_t)(n_img + n_srcs) * sizeof *px);
        if (!(img = calloc((size_t)n_srcs, sizeof *img)) || !grown) {
            if (grown) px = grown;
            goto done;
        }
        px = grown;
        img_failed = embd_image_load_all(srcs, (size_t)n_srcs, &prep, &lim, &fo, img, &h, &w);
        for (int i = 0; i < n_srcs; i++)
            if (img[i].px) memcpy(px + per * n_img++, img[i].px, per * sizeof *px);
    }
    const int most = tx.n > n_img ? tx.n : n_img;
    if (!(out = malloc((size_t)(most ? most : 1) * in->dim * sizeof *out))) goto done;
    const int step = one ? 1 : most ? most : 1;
    for (int i = 0; i < tx.n; i += step) {
        const int k = tx.n - i < step ? tx.n - i : step;
        if (embd_clip_encode_texts(clip, (const int32_t *const *)tx.ids + i, tx.lens + i, k, out + (size_t)i * in->dim,
                                   err, sizeof err)) {
            fprintf(stderr, "embd clip-embed: %s\n", err);
            goto done;
        }
    }
    for (int i = 0; i < tx.n; i++) print_vec("text", i, tx.ids[i], tx.lens[i], out + (size_t)i * in->dim, in->dim);
    for (int i = 0; i < n_img; i += step) {
        const int k = n_img - i < step ? n_img - i : step;
        if (embd_clip_encode_images(clip, px + per * i, k, out + (size_t)i * in->dim, err, sizeof err)) {
            fprintf(stderr, "embd clip-embed: %s\n", err);
            goto done;
        }
    }
    /* image numbers count --pixels images first, then every --image, failed ones included */
    for (int i = 0, k = 0; i < n_px + n_srcs; i++) {
        if (i >= n_px && !img[i - n_px].px) print_error(i, img[i - n_px].err);
        else print_vec("image", i, NULL, 0, out + (size_t)k++ * in->dim, in->dim);
    }
    rc = img_failed ? EMBD_EXIT_ITEM_ERRORS : EMBD_EXIT_OK;
done:
    texts_free(&tx);
    embd_image_loaded_free(img, (size_t)n_srcs);
    free(img), free(srcs);
    free(px);
    free(out);
    free(items);
    free(kinds);
    embd_clip_free(clip);
    return rc;
}
