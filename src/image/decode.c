/* Format sniffing, the byte limit and the pixel buffer shared by the three decoders. */
#include <stdlib.h>
#include <string.h>

#include "image/codecs.h"
#include "util/sys.h"

int embd_image_alloc(embd_image *out, size_t w, size_t h, size_t max_pixels, const char *fmt, char *err,
                     size_t errlen) {
    if (w == 0 || h == 0) return embd_fail(err, errlen, "%s image has no pixels (%zux%zu)", fmt, w, h);
    /* w and h come from 32-bit header fields: the product cannot overflow size_t */
    if (w * h > max_pixels)
        return embd_fail(err, errlen, "%s image is %zux%zu = %zu pixels, over the limit of %zu", fmt, w, h, w * h,
                         max_pixels);
    out->rgb = malloc(w * h * 3);
    if (!out->rgb) return embd_fail(err, errlen, "out of memory for a %zux%zu image", w, h);
    out->w = (int)w;
    out->h = (int)h;
    return 0;
}

static bool starts(const uint8_t *d, size_t n, const char *magic, size_t m) {
    return n >= m && !memcmp(d, magic, m);
}

int embd_image_decode(const void *data, size_t len, const embd_image_limits *lim, embd_image *out, char *err,
                      size_t errlen) {
    const uint8_t *d = data;
    size_t max_pixels = lim && lim->max_pixels ? lim->max_pixels : EMBD_IMAGE_MAX_PIXELS_DEFAULT;
    size_t max_bytes = lim && lim->max_bytes ? lim->max_bytes : EMBD_IMAGE_MAX_BYTES_DEFAULT;
    memset(out, 0, sizeof *out);
    if (len == 0) return embd_fail(err, errlen, "empty image (0 bytes)");
    if (len > max_bytes) return embd_fail(err, errlen, "image is %zu bytes, over the limit of %zu", len, max_bytes);
    int rc;
    if (starts(d, len, "\xFF\xD8\xFF", 3)) rc = embd_jpeg_decode(d, len, max_pixels, out, err, errlen);
    else if (starts(d, len, "\x89PNG\r\n\x1A\n", 8)) rc = embd_png_decode(d, len, max_pixels, out, err, errlen);
    else if (starts(d, len, "RIFF", 4) && len >= 12 && !memcmp(d + 8, "WEBP", 4))
        rc = embd_webp_decode(d, len, max_pixels, out, err, errlen);
    else if (starts(d, len, "GIF8", 4))
        return embd_fail(err, errlen, "GIF images are not supported (JPEG, PNG or WebP expected)");
    else if (len < 12 && (starts(d, len, "\xFF\xD8", len < 3 ? len : 3) || starts(d, len, "\x89PNG", len < 4 ? len : 4)))
        return embd_fail(err, errlen, "truncated image (%zu bytes)", len);
    else
        return embd_fail(err, errlen, "unsupported image format (JPEG, PNG or WebP expected)");
    if (rc != 0) embd_image_free(out);
    return rc;
}

void embd_image_free(embd_image *im) {
    if (!im) return;
    free(im->rgb);
    im->rgb = NULL;
    im->w = im->h = 0;
}
