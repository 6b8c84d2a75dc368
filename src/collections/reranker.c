#include "collections/reranker.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/rerank.h"
#include "util/sys.h"

struct embd_reranker {
    pthread_mutex_t mu;
    embd_model *model;
    embd_encoder *enc;
    char name[256];
};

embd_reranker *embd_reranker_load(const char *path, int threads, char *err, size_t errlen) {
    embd_reranker *r = calloc(1, sizeof *r);
    if (!r) {
        embd_fail(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&r->mu, NULL);
    embd_model_params mp = {0};
    r->model = embd_model_load(path, &mp, err, errlen);
    if (r->model && !embd_model_is_reranker(r->model))
        embd_fail(err, errlen, "%s is not a cross-encoder (pooling rank); it cannot rerank", path);
    else if (r->model)
        r->enc = embd_encoder_new(r->model, threads, err, errlen);
    if (!r->enc) {
        embd_reranker_free(r);
        return NULL;
    }
    const char *base = strrchr(path, '/');
    snprintf(r->name, sizeof r->name, "%s", base ? base + 1 : path);
    size_t n = strlen(r->name);
    if (n > 5 && !strcmp(r->name + n - 5, ".gguf")) r->name[n - 5] = 0;
    return r;
}

void embd_reranker_free(embd_reranker *r) {
    if (!r) return;
    embd_encoder_free(r->enc);
    embd_model_free(r->model);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

const char *embd_reranker_name(const embd_reranker *r) { return r->name; }

int embd_reranker_score(void *ud, const char *query, size_t qlen, const char *const *docs, const size_t *lens,
                        size_t n, float *scores, char *err, size_t errlen) {
    embd_reranker *r = ud;
    embd_item *res = calloc(n ? n : 1, sizeof *res);
    if (!res) return embd_fail(err, errlen, "out of memory");
    embd_opts o;
    embd_opts_default(&o);
    o.truncate = true;
    pthread_mutex_lock(&r->mu);
    int rc = embd_rerank_texts(r->enc, query, qlen, docs, lens, n, &o, scores, res, err, errlen);
    pthread_mutex_unlock(&r->mu);
    for (size_t i = 0; !rc && i < n; i++) {
        if (res[i].status != EMBD_ITEM_OK) rc = embd_fail(err, errlen, "rerank of hit %zu: %s", i, res[i].message);
        else scores[i] = embd_rerank_sigmoid(scores[i]);
    }
    free(res);
    return rc;
}
