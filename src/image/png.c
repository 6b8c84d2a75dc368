/* PNG through libpng, converted to RGB as PIL's convert("RGB") does: palette looked up (indices
 * past PLTE grey, as in PIL), alpha and tRNS dropped (not composited), 1/2/4-bit grey scaled to
 * 0..255, 16-bit samples reduced to their high byte, except 16-bit grey without alpha, which PIL
 * reads as mode "I" and clips to 255.
 * No gamma or colour-profile correction (PIL applies none). Debian's libpng has no APNG support:
 * the acTL chunk is caught as an unknown chunk to refuse animations. */
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

#include "image/codecs.h"
#include "util/sys.h"

typedef struct {
    const uint8_t *d;
    size_t n, pos;
    bool truncated;
    uint32_t frames; /* from acTL, 0 if none */
    char msg[200];
} png_src;

static void on_error(png_structp p, png_const_charp msg) {
    png_src *s = png_get_error_ptr(p);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    png_longjmp(p, 1);
}

static void on_warning(png_structp p, png_const_charp msg) { (void)p, (void)msg; }

static void on_read(png_structp p, png_bytep out, size_t len) {
    png_src *s = png_get_io_ptr(p);
    if (len > s->n - s->pos) {
        s->truncated = true;
        png_error(p, "premature end of data");
    }
    memcpy(out, s->d + s->pos, len);
    s->pos += len;
}

static int on_chunk(png_structp p, png_unknown_chunkp c) {
    png_src *s = png_get_user_chunk_ptr(p);
    if (memcmp(c->name, "acTL", 4) || c->size < 8) return 0;
    s->frames = (uint32_t)c->data[0] << 24 | (uint32_t)c->data[1] << 16 | (uint32_t)c->data[2] << 8 | c->data[3];
    return 1;
}

/* Indices past the end of PLTE: PIL's palette starts as a grey ramp (entry i = (i, i, i)) that
 * PLTE overwrites; libpng would give black. Pad PLTE with the ramp to the depth's full size. */
static void pad_palette(png_structp png, png_infop info, int depth) {
    png_colorp pal = NULL;
    int num = 0, full = 1 << depth;
    if (!png_get_PLTE(png, info, &pal, &num) || num >= full) return;
    png_color padded[256];
    memcpy(padded, pal, (size_t)num * sizeof *padded);
    for (int i = num; i < full; i++) padded[i].red = padded[i].green = padded[i].blue = (png_byte)i;
    png_set_PLTE(png, info, padded, full);
}

/* One decoded row (after libpng's transforms) to RGB. */
static void to_rgb(const uint8_t *s, uint8_t *d, size_t w, int channels, bool grey16) {
    for (size_t x = 0; x < w; x++, d += 3) {
        if (grey16) {
            unsigned v = (unsigned)s[2 * x] << 8 | s[2 * x + 1];
            d[0] = d[1] = d[2] = (uint8_t)(v > 255 ? 255 : v);
        } else if (channels <= 2) {
            d[0] = d[1] = d[2] = s[x * (size_t)channels];
        } else {
            memcpy(d, s + x * (size_t)channels, 3);
        }
    }
}

int embd_png_decode(const uint8_t *d, size_t n, size_t max_pixels, embd_image *out, char *err, size_t errlen) {
    png_src src = {.d = d, .n = n};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return embd_fail(err, errlen, "out of memory");
    }
    uint8_t *volatile buf = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(buf);
        free(rows);
        if (src.truncated) return embd_fail(err, errlen, "truncated PNG file (premature end of data)");
        return embd_fail(err, errlen, "corrupt PNG file: %s", src.msg);
    }
    png_set_read_fn(png, &src, on_read);
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_ALWAYS, (png_const_bytep) "acTL", 1);
    png_set_read_user_chunk_fn(png, &src, on_chunk);
    png_read_info(png, info);
    png_uint_32 w, h;
    int depth, ctype, interlace;
    png_get_IHDR(png, info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    if (src.frames > 1) {
        png_destroy_read_struct(&png, &info, NULL);
        return embd_fail(err, errlen, "animated PNG (APNG, %u frames) is not supported", (unsigned)src.frames);
    }
    if (embd_image_alloc(out, w, h, max_pixels, "PNG", src.msg, sizeof src.msg)) {
        png_destroy_read_struct(&png, &info, NULL);
        return embd_fail(err, errlen, "%s", src.msg);
    }
    bool grey16 = ctype == PNG_COLOR_TYPE_GRAY && depth == 16;
    if (ctype == PNG_COLOR_TYPE_PALETTE) {
        pad_palette(png, info, depth);
        png_set_palette_to_rgb(png);
    }
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16 && !grey16) png_set_strip_16(png); /* the high byte, as PIL's ";16B" unpackers */
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int channels = png_get_channels(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (channels < 1 || channels > 4 || rowbytes < (size_t)w * (size_t)channels * (grey16 ? 2 : 1))
        png_error(png, "unexpected row layout"); /* cannot happen with the transforms above */
    /* Interlaced images need every row at once (each pass fills some pixels of all rows). */
    size_t nbuf = passes > 1 ? (size_t)h : 1;
    buf = malloc(nbuf * rowbytes);
    if (!buf) png_error(png, "out of memory");
    if (passes > 1) {
        rows = malloc((size_t)h * sizeof *rows);
        if (!rows) png_error(png, "out of memory");
        for (size_t y = 0; y < h; y++) rows[y] = buf + y * rowbytes;
        png_read_image(png, rows);
        for (size_t y = 0; y < h; y++) to_rgb(rows[y], out->rgb + y * w * 3, w, channels, grey16);
    } else {
        for (size_t y = 0; y < h; y++) {
            png_read_row(png, buf, NULL);
            to_rgb(buf, out->rgb + y * w * 3, w, channels, grey16);
        }
    }
    png_destroy_read_struct(&png, &info, NULL);
    free(buf);
    free(rows);
    return 0;
}
