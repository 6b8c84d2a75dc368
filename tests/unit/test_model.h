/* The model the unit tests run on: bge-small-random f16 from the shared folder. f16 weights: the
 * batch-invariance bar (1e-5 cosine distance) is for float weights. With q8_0 the activations are
 * quantized too, and a different GEMM kernel for a different batch shape can flip a rounding. */
#ifndef EMBD_TEST_MODEL_H
#define EMBD_TEST_MODEL_H

#include <stdio.h>
#include <stdlib.h>

#include "engine/encoder.h"

static embd_model *model;
static embd_encoder *enc;
static int H;

static int setup(void **state) {
    (void)state;
    const char *shared = getenv("EMBD_SHARED_DIR");
    char path[4096], err[256];
    snprintf(path, sizeof path, "%s/models/bge-small-random/bge-small-random-f16.gguf", shared ? shared : "../shared");
    model = embd_model_load(path, NULL, err, sizeof err);
    if (!model) {
        fprintf(stderr, "cannot load %s: %s\n", path, err);
        return -1;
    }
    enc = embd_encoder_new(model, 2, err, sizeof err);
    H = model->info.n_embd;
    return enc ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    embd_encoder_free(enc);
    embd_model_free(model);
    return 0;
}

#endif
