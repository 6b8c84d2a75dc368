/* embd_clip_load on arbitrary bytes (as a file): fails with an error message, or loads a model that
 * encodes a text (and, when the input is small, an image) into dim finite, unit-length floats. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/clip.h"
#include "fuzz_common.h"

/* Weights are fuzzed too, so values may be anything (NaN included); a finite result is unit-length. */
static void check_unit(const float *v, int dim)
{
    double s = 0;
    for (int i = 0; i < dim; i++) {
        if (!isfinite(v[i])) return;
        s += (double)v[i] * v[i];
    }
    FUZZ_CHECK(s == 0 || fabs(s - 1) < 1e-3);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_memfd_path(data, size);
    char err[256];
    memset(err, 0, sizeof err);
    embd_clip *c = embd_clip_load(path, "cpu", 1, err, sizeof err);
    if (!c) {
        FUZZ_CHECK(err[0] && memchr(err, 0, sizeof err));
        return 0;
    }
    const embd_clip_info *in = embd_clip_get_info(c);
    FUZZ_CHECK(in->dim > 0 && in->text_ctx >= 2 && in->image_size % in->patch_size == 0 && in->file_bytes == size);
    FUZZ_CHECK(embd_clip_tokenizer(c) != NULL);
    float *out = malloc((size_t)in->dim * sizeof *out);
    FUZZ_CHECK(out);
    const int32_t ids[2] = {0, 0};
    const int32_t *p = ids;
    const int len = 2;
    FUZZ_CHECK(embd_clip_encode_texts(c, &p, &len, 1, out, err, sizeof err) == 0);
    check_unit(out, in->dim);
    const int32_t bad[1] = {-1};
    const int32_t *pb = bad;
    const int one = 1;
    FUZZ_CHECK(embd_clip_encode_texts(c, &pb, &one, 1, out, err, sizeof err) != 0);
    if (in->image_size <= 64 && in->vision_width * in->vision_layers <= 4096) {
        const size_t n = (size_t)3 * in->image_size * in->image_size;
        float *px = calloc(n, sizeof *px);
        FUZZ_CHECK(px);
        FUZZ_CHECK(embd_clip_encode_images(c, px, 1, out, err, sizeof err) == 0);
        check_unit(out, in->dim);
        free(px);
    }
    free(out);
    embd_clip_free(c);
    return 0;
}
