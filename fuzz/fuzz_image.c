/* Untrusted image bytes through decoding and CLIP preprocessing, as a request's image reaches them.
 * Byte 0 selects: bit 0, the rest is a data URI / base64 text decoded first; bits 2-4 the resize
 * edge, bits 5-7 the center crop. The pixel limit is small (256 Kpx) so that bombs stay cheap and
 * the limit path is hit. Besides "no crash, no leak": a refusal is one line; a decoded image is
 * non-empty and within the limit; its preprocessed tensor is finite and within the range that
 * normalising bytes 0..255 (and the zero padding) can give. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "image/fetch.h"
#include "image/image.h"

#define MAX_PIXELS (256 * 1024)

static void check_err(const char *err) { FUZZ_CHECK(err[0] && !strchr(err, '\n')); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static const int edges[8] = {0, 1, 3, 8, 16, 31, 64, 5}, crops[8] = {1, 2, 5, 8, 16, 17, 32, 64};
    uint8_t sel = data[0];
    data++, size--;
    char err[512] = "";
    uint8_t *bytes = NULL;
    if (sel & 1) {
        size_t len = 0;
        if (embd_image_source_decode((const char *)data, size, &bytes, &len, err, sizeof err)) {
            check_err(err);
            FUZZ_CHECK(!bytes);
            return 0;
        }
        FUZZ_CHECK(bytes && len > 0 && len <= size);
        data = bytes, size = len;
    }
    embd_image_limits lim = {.max_pixels = MAX_PIXELS, .max_bytes = 4 << 20};
    embd_image im;
    err[0] = 0;
    if (embd_image_decode(data, size, &lim, &im, err, sizeof err)) {
        check_err(err);
        FUZZ_CHECK(!im.rgb);
        free(bytes);
        return 0;
    }
    FUZZ_CHECK(im.rgb && im.w > 0 && im.h > 0 && (size_t)im.w * (size_t)im.h <= MAX_PIXELS);
    embd_image_prep p;
    embd_image_prep_clip(&p);
    p.shortest_edge = edges[(sel >> 2) & 7];
    p.crop_h = p.crop_w = crops[(sel >> 5) & 7];
    int oh, ow;
    embd_image_prep_size(&im, &p, &oh, &ow);
    FUZZ_CHECK(oh == p.crop_h && ow == p.crop_w);
    float *out = malloc((size_t)3 * oh * ow * sizeof *out);
    FUZZ_CHECK(out);
    if (embd_image_preprocess(&im, &p, out, err, sizeof err) == 0) {
        for (int c = 0; c < 3; c++) {
            float lo = (0.0f - p.mean[c]) / p.std[c] - 1e-5f, hi = (1.0f - p.mean[c]) / p.std[c] + 1e-5f;
            for (int k = 0; k < oh * ow; k++) {
                float v = out[c * oh * ow + k];
                FUZZ_CHECK(isfinite(v) && v >= lo && v <= hi);
            }
        }
    } else {
        check_err(err); /* only the extreme-aspect refusal is expected */
        FUZZ_CHECK(strstr(err, "aspect ratio"));
    }
    free(out);
    embd_image_free(&im);
    free(bytes);
    return 0;
}
