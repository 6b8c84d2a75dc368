/* Still WebP (lossy or lossless) through libwebp, decoded straight to RGB with libwebp's default
 * (fancy) upsampling, as PIL's WebP plugin does; alpha is dropped, not composited. */
#include <webp/decode.h>

#include "image/codecs.h"
#include "util/sys.h"

static const char *status_name(VP8StatusCode st) {
    switch (st) {
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "bitstream error";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_SUSPENDED: return "suspended";
    case VP8_STATUS_USER_ABORT: return "aborted";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "not enough data";
    default: return "error";
    }
}

static int webp_fail(VP8StatusCode st, char *err, size_t errlen) {
    if (st == VP8_STATUS_NOT_ENOUGH_DATA) return embd_fail(err, errlen, "truncated WebP file (premature end of data)");
    return embd_fail(err, errlen, "corrupt WebP file: %s", status_name(st));
}

int embd_webp_decode(const uint8_t *d, size_t n, size_t max_pixels, embd_image *out, char *err, size_t errlen) {
    WebPDecoderConfig cfg;
    if (!WebPInitDecoderConfig(&cfg)) return embd_fail(err, errlen, "libwebp version mismatch");
    VP8StatusCode st = WebPGetFeatures(d, n, &cfg.input);
    if (st != VP8_STATUS_OK) return webp_fail(st, err, errlen);
    if (cfg.input.has_animation) return embd_fail(err, errlen, "animated WebP is not supported");
    if (embd_image_alloc(out, (size_t)cfg.input.width, (size_t)cfg.input.height, max_pixels, "WebP", err, errlen))
        return -1;
    size_t w = (size_t)out->w, h = (size_t)out->h;
    cfg.output.colorspace = MODE_RGB;
    cfg.output.is_external_memory = 1;
    cfg.output.u.RGBA.rgba = out->rgb;
    cfg.output.u.RGBA.stride = (int)(w * 3);
    cfg.output.u.RGBA.size = w * h * 3;
    st = WebPDecode(d, n, &cfg);
    WebPFreeDecBuffer(&cfg.output);
    return st == VP8_STATUS_OK ? 0 : webp_fail(st, err, errlen);
}
