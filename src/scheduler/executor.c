#include "scheduler/executor.h"

static int inproc_run(void *ud, int lane, const embd_batch *b, float *out, embd_item *res, char *err,
                      size_t errlen) {
    (void)lane;
    embd_opts eo;
    embd_opts_default(&eo);
    eo.normalize = false; /* per request: the server normalises (and cuts dimensions) itself */
    eo.truncate = true;   /* items are cut to the context when tokenized; this is a safety net */
    eo.pooling = b->pooling;
    eo.batch_tokens = b->pass_tokens;
    return embd_embed_token_pairs(ud, b->ids, b->lens, b->n_first, b->n, &eo, out, res, err, errlen);
}

void embd_executor_inproc(embd_executor *x, embd_encoder *enc) {
    /* scores for a cross-encoder, vectors otherwise */
    const int width = embd_model_out_dim(embd_encoder_model(enc), EMBD_POOL_UNSPECIFIED);
    *x = (embd_executor){.lanes = 1, .width = width, .run = inproc_run, .ud = enc};
}
