/* embd image-prep: image sources -> the CLIP processor's input tensor as a float32 .npy.
 * A debugging tool, and the hook the image tests drive (decoding, preprocessing, downloads). */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "image/fetch.h"
#include "image/image.h"
#include "image/load.h"
#include "util/sys.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: embd image-prep [options] --out FILE.npy SRC...\n\n"
            "Decodes each SRC (a file path, an http(s) URL or a data URI) and writes what Hugging Face's\n"
            "CLIPImageProcessor would feed the model: a float32 array of shape (n, 3, H, W).\n"
            "A source that fails gets a NaN row and a message on stderr.\n\n"
            "  --size N           resize so the shortest side is N pixels, PIL bicubic (default 224; 0: no resize)\n"
            "  --crop N           center crop NxN (default 224; 0: none, every image must then come out the same size)\n"
            "  --mean a,b,c       normalisation mean (default OpenAI CLIP's)\n"
            "  --std a,b,c        normalisation std (default OpenAI CLIP's)\n"
            "  --max-pixels N     refuse images with more pixels, from the header (default %zu)\n"
            "  --max-bytes N      refuse larger files and downloads (default 10 MiB)\n"
            "  --timeout-ms N     per-download time limit (default 30000)\n"
            "  --max-redirects N  redirects followed per download (default 3)\n"
            "  --concurrency N    downloads in flight at once (default 8)\n"
            "  --allow-private    allow downloads from loopback, private and link-local addresses\n"
            "  --out FILE.npy     output file (required)\n\n"
            "exit status: 0 ok, 1 usage error, 2 output not written, 3 some sources failed\n",
            EMBD_IMAGE_MAX_PIXELS_DEFAULT);
}

static int parse_size(const char *s, size_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || *s == '-') return -1;
    *out = (size_t)v;
    return 0;
}

static int parse_int(const char *s, int lo, int hi, int *out) {
    size_t v;
    if (parse_size(s, &v) || v < (size_t)lo || v > (size_t)hi) return -1;
    *out = (int)v;
    return 0;
}

static int parse3(const char *s, float v[3], bool positive) {
    char *end;
    for (int i = 0; i < 3; i++) {
        errno = 0;
        double d = strtod(s, &end);
        if (errno || end == s || !isfinite(d) || (positive && d <= 0)) return -1;
        v[i] = (float)d;
        if (i < 2) {
            if (*end != ',') return -1;
            s = end + 1;
        }
    }
    return *end ? -1 : 0;
}

static int write_npy(const char *path, float **rows, size_t n, int H, int W, char *err, size_t errlen) {
    FILE *f = fopen(path, "wb");
    if (!f) return embd_fail(err, errlen, "cannot open '%s': %s", path, strerror(errno));
    char dict[128];
    int dl = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, 3, %d, %d), }", n, H, W);
    int hl = 10 + dl + 1, pad = (64 - hl % 64) % 64, len = dl + pad + 1;
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fputc(len & 0xff, f), fputc(len >> 8, f);
    fwrite(dict, 1, (size_t)dl, f);
    for (int i = 0; i < pad; i++) fputc(' ', f);
    fputc('\n', f);
    size_t per = (size_t)3 * H * W;
    float nan_v = NAN;
    for (size_t i = 0; i < n; i++) {
        if (rows[i]) fwrite(rows[i], sizeof(float), per, f);
        else
            for (size_t k = 0; k < per; k++) fwrite(&nan_v, sizeof nan_v, 1, f);
    }
    bool bad = ferror(f);
    if (fclose(f) || bad) return embd_fail(err, errlen, "cannot write '%s'", path);
    return 0;
}

int cmd_image_prep(int argc, char **argv) {
    enum { O_SIZE = 256, O_CROP, O_MEAN, O_STD, O_MAXPX, O_MAXB, O_TIMEOUT, O_REDIR, O_CONC, O_PRIV, O_OUT };
    static const struct option lo[] = {{"size", required_argument, 0, O_SIZE},
                                       {"crop", required_argument, 0, O_CROP},
                                       {"mean", required_argument, 0, O_MEAN},
                                       {"std", required_argument, 0, O_STD},
                                       {"max-pixels", required_argument, 0, O_MAXPX},
                                       {"max-bytes", required_argument, 0, O_MAXB},
                                       {"timeout-ms", required_argument, 0, O_TIMEOUT},
                                       {"max-redirects", required_argument, 0, O_REDIR},
                                       {"concurrency", required_argument, 0, O_CONC},
                                       {"allow-private", no_argument, 0, O_PRIV},
                                       {"out", required_argument, 0, O_OUT},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    embd_image_prep prep;
    embd_image_prep_clip(&prep);
    embd_fetch_opts fo;
    embd_fetch_opts_default(&fo);
    embd_image_limits lim = {.max_pixels = EMBD_IMAGE_MAX_PIXELS_DEFAULT, .max_bytes = fo.max_bytes};
    const char *out = NULL;
    int c, crop = 224, timeout = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        const char *bad = NULL;
        switch (c) {
        case O_SIZE: bad = parse_int(optarg, 0, 1 << 16, &prep.shortest_edge) ? "--size wants 0..65536" : NULL; break;
        case O_CROP: bad = parse_int(optarg, 0, 1 << 16, &crop) ? "--crop wants 0..65536" : NULL; break;
        case O_MEAN: bad = parse3(optarg, prep.mean, false) ? "--mean wants three numbers a,b,c" : NULL; break;
        case O_STD: bad = parse3(optarg, prep.std, true) ? "--std wants three positive numbers a,b,c" : NULL; break;
        case O_MAXPX: bad = parse_size(optarg, &lim.max_pixels) || !lim.max_pixels ? "--max-pixels wants a positive count" : NULL; break;
        case O_MAXB:
            bad = parse_size(optarg, &fo.max_bytes) || !fo.max_bytes ? "--max-bytes wants a positive count" : NULL;
            lim.max_bytes = fo.max_bytes;
            break;
        case O_TIMEOUT:
            bad = parse_int(optarg, 1, 24 * 3600 * 1000, &timeout) ? "--timeout-ms wants a positive count" : NULL;
            fo.timeout_ms = timeout;
            break;
        case O_REDIR: bad = parse_int(optarg, 0, 50, &fo.max_redirects) ? "--max-redirects wants 0..50" : NULL; break;
        case O_CONC: bad = parse_int(optarg, 1, 256, &fo.concurrency) ? "--concurrency wants 1..256" : NULL; break;
        case O_PRIV: fo.allow_private = true; break;
        case O_OUT: out = optarg; break;
        case 'h': usage(stdout); return EMBD_EXIT_OK;
        default: usage(stderr); return EMBD_EXIT_USAGE;
        }
        if (bad) {
            fprintf(stderr, "embd image-prep: %s (got '%s')\n", bad, optarg);
            return EMBD_EXIT_USAGE;
        }
    }
    prep.crop_h = prep.crop_w = crop;
    if (!out || !*out) {
        fprintf(stderr, "embd image-prep: --out FILE.npy is required\n");
        return EMBD_EXIT_USAGE;
    }
    size_t n = (size_t)(argc - optind);
    if (n == 0) {
        fprintf(stderr, "embd image-prep: no image sources given\n");
        return EMBD_EXIT_USAGE;
    }
    char **src = argv + optind;
    embd_image_loaded *img = calloc(n, sizeof *img);
    float **rows = calloc(n, sizeof *rows);
    if (!img || !rows) {
        fprintf(stderr, "embd image-prep: out of memory\n");
        free(img), free(rows);
        return EMBD_EXIT_UNUSABLE;
    }
    int H = prep.crop_h, W = prep.crop_w;
    size_t failed = embd_image_load_all(src, n, &prep, &lim, &fo, img, &H, &W);
    char err[512], label[64 + 4096];
    for (size_t i = 0; i < n; i++) {
        rows[i] = img[i].px;
        if (!img[i].px) {
            embd_image_source_label(src[i], label, sizeof label);
            fprintf(stderr, "embd image-prep: %s: %s\n", label, img[i].err);
        }
    }
    int status = failed ? EMBD_EXIT_ITEM_ERRORS : EMBD_EXIT_OK;
    if (write_npy(out, rows, n, H, W, err, sizeof err)) {
        fprintf(stderr, "embd image-prep: %s\n", err);
        status = EMBD_EXIT_UNUSABLE;
    }
    embd_image_loaded_free(img, n);
    free(img), free(rows);
    return status;
}
