/* Hugging Face CLIPImageProcessor on RGB pixels: resize (shortest side, PIL BICUBIC), center crop,
 * rescale, normalise, CHW.
 *
 * The resize reproduces Pillow 9.4's Resample.c bit for bit on uint8: separable convolution with
 * the a = -0.5 cubic, its support widened by the scale when downsampling (antialiasing),
 * coefficients normalised in double then rounded to 22-bit fixed point, and each pass rounded
 * and clipped to uint8 (horizontal first, then vertical; an axis whose size does not change is
 * not resampled). Output pixels are independent of each other, so only those inside the crop
 * window are computed: a 3x1000 image resized to 224x74666 costs a 224x224 crop, not 50 MB. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"
#include "util/sys.h"

#define PRECISION_BITS (32 - 8 - 2)
/* PIL refuses output axes above INT_MAX / (ksize * sizeof(double)); a smaller, round cap keeps
 * every index in int range here too. */
#define MAX_RESIZED_SIDE (1 << 24)

void embd_image_prep_clip(embd_image_prep *p) {
    *p = (embd_image_prep){.shortest_edge = 224,
                           .crop_h = 224,
                           .crop_w = 224,
                           .rescale = 1.0f / 255.0f,
                           .mean = {0.48145466f, 0.4578275f, 0.40821073f},
                           .std = {0.26862954f, 0.26130258f, 0.27577711f}};
}

/* transformers' get_resize_output_image_size(default_to_square=False):
 * short side = edge, long side = int(edge * long / short). */
static void resized_size(const embd_image *im, int edge, long long *rw, long long *rh) {
    if (edge <= 0) {
        *rw = im->w, *rh = im->h;
    } else if (im->w <= im->h) {
        *rw = edge, *rh = (long long)((double)((long long)edge * im->h) / im->w);
    } else {
        *rh = edge, *rw = (long long)((double)((long long)edge * im->w) / im->h);
    }
}

void embd_image_prep_size(const embd_image *im, const embd_image_prep *p, int *out_h, int *out_w) {
    long long rw, rh;
    resized_size(im, p->shortest_edge, &rw, &rh);
    bool too_big = rw > MAX_RESIZED_SIDE || rh > MAX_RESIZED_SIDE;
    *out_h = p->crop_h > 0 ? p->crop_h : too_big ? 0 : (int)rh;
    *out_w = p->crop_w > 0 ? p->crop_w : too_big ? 0 : (int)rw;
}

static double bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for outputs [o0, o1) of an axis resized
 * from in to out: per output, the first input index, the tap count and ksize fixed-point taps. */
typedef struct {
    int ksize;
    int *first, *taps;
    int32_t *k;
} coeffs;

static void coeffs_free(coeffs *c) {
    free(c->first);
    free(c->taps);
    free(c->k);
}

static int coeffs_make(coeffs *c, int in, int out, int o0, int o1) {
    double scale = (double)in / out, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 2.0 * filterscale; /* BICUBIC's support is 2 */
    int ksize = (int)ceil(support) * 2 + 1, n = o1 - o0;
    c->ksize = ksize;
    c->first = malloc((size_t)n * sizeof *c->first);
    c->taps = malloc((size_t)n * sizeof *c->taps);
    c->k = calloc((size_t)n * (size_t)ksize, sizeof *c->k);
    double *w = malloc((size_t)ksize * sizeof *w);
    if (!c->first || !c->taps || !c->k || !w) {
        free(w);
        coeffs_free(c);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        double center = (o0 + i + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        if (xmin < 0) xmin = 0;
        if (xmax > in) xmax = in;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            w[x] = bicubic((x + xmin - center + 0.5) * ss);
            ww += w[x];
        }
        int32_t *k = c->k + (size_t)i * ksize;
        for (int x = 0; x < xmax; x++) {
            double v = ww != 0.0 ? w[x] / ww : w[x];
            k[x] = (int32_t)(v < 0 ? -0.5 + v * (1 << PRECISION_BITS) : 0.5 + v * (1 << PRECISION_BITS));
        }
        c->first[i] = xmin;
        c->taps[i] = xmax;
    }
    free(w);
    return 0;
}

static inline uint8_t clip8(int v) {
    if (v >= (1 << PRECISION_BITS << 8)) return 255;
    if (v <= 0) return 0;
    return (uint8_t)(v >> PRECISION_BITS);
}

/* Horizontal pass: rows [r0, r1) of src (width sw) to the columns described by c, into dst. */
static void pass_h(const uint8_t *src, int sw, int r0, int r1, const coeffs *c, int ncols, uint8_t *dst) {
    for (int y = r0; y < r1; y++) {
        const uint8_t *row = src + (size_t)y * sw * 3;
        uint8_t *o = dst + (size_t)(y - r0) * ncols * 3;
        for (int i = 0; i < ncols; i++) {
            const int32_t *k = c->k + (size_t)i * c->ksize;
            const uint8_t *p = row + (size_t)c->first[i] * 3;
            int s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
            for (int x = 0; x < c->taps[i]; x++) {
                s0 += p[3 * x] * k[x];
                s1 += p[3 * x + 1] * k[x];
                s2 += p[3 * x + 2] * k[x];
            }
            o[3 * i] = clip8(s0), o[3 * i + 1] = clip8(s1), o[3 * i + 2] = clip8(s2);
        }
    }
}

/* Vertical pass: src rows start at source row r0 (width w); output rows described by c. */
static void pass_v(const uint8_t *src, int w, int r0, const coeffs *c, int nrows, uint8_t *dst) {
    for (int i = 0; i < nrows; i++) {
        const int32_t *k = c->k + (size_t)i * c->ksize;
        const uint8_t *base = src + (size_t)(c->first[i] - r0) * w * 3;
        uint8_t *o = dst + (size_t)i * w * 3;
        for (int x = 0; x < 3 * w; x++) {
            int s = 1 << (PRECISION_BITS - 1);
            for (int y = 0; y < c->taps[i]; y++) s += base[(size_t)y * w * 3 + x] * k[y];
            o[x] = clip8(s);
        }
    }
}

/* The window [x0, x1) x [y0, y1) of im resized to rw x rh, into dst ((y1-y0) x (x1-x0) RGB). */
static int resize_window(const embd_image *im, int rw, int rh, int x0, int x1, int y0, int y1, uint8_t *dst) {
    int ww = x1 - x0, wh = y1 - y0;
    bool need_h = rw != im->w, need_v = rh != im->h;
    coeffs ch = {0}, cv = {0};
    uint8_t *tmp = NULL;
    int rc = -1;
    if (need_h && coeffs_make(&ch, im->w, rw, x0, x1)) goto out;
    if (need_v && coeffs_make(&cv, im->h, rh, y0, y1)) goto out;
    /* source rows the vertical pass reads */
    int r0 = need_v ? cv.first[0] : y0;
    int r1 = need_v ? cv.first[wh - 1] + cv.taps[wh - 1] : y1;
    const uint8_t *rows; /* rows [r0, r1) of width ww, starting at source row r0 */
    int rows_r0;
    if (need_h) {
        tmp = malloc((size_t)(r1 - r0) * ww * 3);
        if (!tmp) goto out;
        pass_h(im->rgb, im->w, r0, r1, &ch, ww, tmp);
        rows = tmp, rows_r0 = r0;
    } else {
        tmp = malloc((size_t)(r1 - r0) * ww * 3); /* the window's columns of the untouched rows */
        if (!tmp) goto out;
        for (int y = r0; y < r1; y++)
            memcpy(tmp + (size_t)(y - r0) * ww * 3, im->rgb + ((size_t)y * im->w + x0) * 3, (size_t)ww * 3);
        rows = tmp, rows_r0 = r0;
    }
    if (need_v) pass_v(rows, ww, rows_r0, &cv, wh, dst);
    else memcpy(dst, rows + (size_t)(y0 - rows_r0) * ww * 3, (size_t)wh * ww * 3);
    rc = 0;
out:
    free(tmp);
    if (need_h) coeffs_free(&ch);
    if (need_v) coeffs_free(&cv);
    return rc;
}

/* Python's floor division by 2 (transformers' center_crop: top = (h - crop_h) // 2). */
static long long floor_half(long long v) { return v >= 0 ? v / 2 : -((-v + 1) / 2); }

int embd_image_preprocess(const embd_image *im, const embd_image_prep *p, float *out, char *err, size_t errlen) {
    if (!im->rgb || im->w <= 0 || im->h <= 0) return embd_fail(err, errlen, "empty image");
    long long rw, rh;
    resized_size(im, p->shortest_edge, &rw, &rh);
    if (rw < 1 || rh < 1 || rw > MAX_RESIZED_SIDE || rh > MAX_RESIZED_SIDE)
        return embd_fail(err, errlen, "image of %dx%d cannot be resized to %lldx%lld (aspect ratio too extreme)", im->w,
                         im->h, rw, rh);
    int oh = p->crop_h > 0 ? p->crop_h : (int)rh, ow = p->crop_w > 0 ? p->crop_w : (int)rw;
    /* crop window in resized coordinates; outside the resized image it is zero padding */
    long long top = p->crop_h > 0 ? floor_half(rh - oh) : 0, left = p->crop_w > 0 ? floor_half(rw - ow) : 0;
    int y0 = (int)(top > 0 ? top : 0), y1 = (int)(top + oh < rh ? top + oh : rh);
    int x0 = (int)(left > 0 ? left : 0), x1 = (int)(left + ow < rw ? left + ow : rw);
    int ww = x1 - x0, wh = y1 - y0;
    uint8_t *win = malloc((size_t)ww * wh * 3);
    if (!win) return embd_fail(err, errlen, "out of memory");
    if (resize_window(im, (int)rw, (int)rh, x0, x1, y0, y1, win)) {
        free(win);
        return embd_fail(err, errlen, "out of memory");
    }
    /* transformers rescales in float64, casts to float32, then normalises in float32 */
    size_t plane = (size_t)oh * ow;
    for (int c = 0; c < 3; c++) {
        float pad = (0.0f - p->mean[c]) / p->std[c];
        for (int y = 0; y < oh; y++) {
            long long sy = y + top;
            float *o = out + c * plane + (size_t)y * ow;
            for (int x = 0; x < ow; x++) {
                long long sx = x + left;
                if (sy < y0 || sy >= y1 || sx < x0 || sx >= x1) {
                    o[x] = pad;
                    continue;
                }
                uint8_t v = win[((size_t)(sy - y0) * ww + (size_t)(sx - x0)) * 3 + c];
                float r = (float)((double)v * (double)p->rescale);
                o[x] = (r - p->mean[c]) / p->std[c];
            }
        }
    }
    free(win);
    return 0;
}
