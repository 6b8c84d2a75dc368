/* See clip_run.h. */
#include "server/clip_run.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/sys.h"

/* One request's prepared inputs, queued for a pass; the pass may carry other requests' too. */
typedef struct pending {
    const float *pixels; /* n_img images, 3 x S x S each */
    size_t n_img;
    int32_t *const *ids;
    const int *lens;
    size_t n_txt;
    float *out; /* (n_img + n_txt) x dim: images first */
    const embd_clip_call *call;
    embd_api_error *e;
    int rc; /* -1 with e once failed */
    bool done;
    struct pending *next;
} pending;

struct embd_clip_runner {
    embd_clip *clip;
    embd_clip_run_opts o;
    pthread_mutex_t mu;       /* the queue, stop, decoding */
    pthread_cond_t work;      /* a request was queued, or stop */
    pthread_cond_t done;      /* a pass ended */
    pthread_cond_t decode_cv; /* a decoder slot was freed */
    pending *head, *tail;
    bool stop;
    int decoding;     /* images being decoded now, at most o.decoders */
    pthread_t thread; /* pass_main: the model runs on this thread only */
    unsigned test_delay_ms, test_decode_delay_ms;
};

static void *pass_main(void *arg);

embd_clip_runner *embd_clip_runner_new(embd_clip *clip, const embd_clip_run_opts *o) {
    embd_clip_runner *x = calloc(1, sizeof *x);
    if (!x) return NULL;
    x->clip = clip;
    x->o = *o;
    if (!x->o.max_pass_images) x->o.max_pass_images = 16;
    if (!x->o.max_pass_texts) x->o.max_pass_texts = 64;
    if (x->o.decoders <= 0) x->o.decoders = embd_cpu_count();
    /* test hook: every pass lasts this much longer, so that tests can queue requests behind it */
    const char *d = getenv("EMBD_TEST_CLIP_PASS_DELAY_MS");
    x->test_delay_ms = d ? (unsigned)strtoul(d, NULL, 10) : 0;
    d = getenv("EMBD_TEST_CLIP_DECODE_DELAY_MS"); /* likewise for each decode, inside its slot */
    x->test_decode_delay_ms = d ? (unsigned)strtoul(d, NULL, 10) : 0;
    pthread_mutex_init(&x->mu, NULL);
    pthread_cond_init(&x->work, NULL);
    pthread_cond_init(&x->done, NULL);
    pthread_cond_init(&x->decode_cv, NULL);
    if (pthread_create(&x->thread, NULL, pass_main, x)) {
        pthread_cond_destroy(&x->decode_cv), pthread_cond_destroy(&x->done), pthread_cond_destroy(&x->work);
        pthread_mutex_destroy(&x->mu);
        free(x);
        return NULL;
    }
    return x;
}

/* Requests still queued are run first: nobody is left waiting. */
void embd_clip_runner_free(embd_clip_runner *x) {
    if (!x) return;
    pthread_mutex_lock(&x->mu);
    x->stop = true;
    pthread_cond_signal(&x->work);
    pthread_mutex_unlock(&x->mu);
    pthread_join(x->thread, NULL);
    pthread_cond_destroy(&x->decode_cv), pthread_cond_destroy(&x->done), pthread_cond_destroy(&x->work);
    pthread_mutex_destroy(&x->mu);
    free(x);
}

int embd_clip_runner_decoders(const embd_clip_runner *x) { return x->o.decoders; }

/* Items by tower and outcome; a request-level failure (504, 499, 500) fails its items too. */
static void count_items(embd_clip_runner *x, size_t img_ok, size_t img_failed, size_t txt_ok, size_t txt_failed) {
    static const char IMG[] = "CLIP images embedded or failed (download, decoding, limits, timeout, inference).";
    static const char TXT[] = "CLIP texts embedded or failed (encoding, length, timeout, inference).";
    if (!x->o.metrics) return;
    if (img_ok) embd_metrics_count(x->o.metrics, "embd_clip_images_total", IMG, "outcome", "ok", (double)img_ok);
    if (img_failed) embd_metrics_count(x->o.metrics, "embd_clip_images_total", IMG, "outcome", "failed", (double)img_failed);
    if (txt_ok) embd_metrics_count(x->o.metrics, "embd_clip_texts_total", TXT, "outcome", "ok", (double)txt_ok);
    if (txt_failed) embd_metrics_count(x->o.metrics, "embd_clip_texts_total", TXT, "outcome", "failed", (double)txt_failed);
}

/* Takes (or gives back) one of the o.decoders slots: a decoded image is up to max_pixels x 3 bytes
 * and its resize as much again, so decodes over all requests at once are bounded, not one per
 * request (64 requests of 50 Mpx images would want ~19 GB). Decoding is CPU-bound: more at once
 * than cores would not be faster anyway. */
static void decode_slot(embd_clip_runner *x, bool take) {
    pthread_mutex_lock(&x->mu);
    if (take) {
        while (x->decoding >= x->o.decoders) pthread_cond_wait(&x->decode_cv, &x->mu);
        x->decoding++;
    } else {
        x->decoding--;
        pthread_cond_signal(&x->decode_cv);
    }
    pthread_mutex_unlock(&x->mu);
    if (take && x->test_decode_delay_ms) usleep(x->test_decode_delay_ms * 1000u);
}

/* Phase 1 for images: bytes (downloaded or inline) -> pixels of the k-th good image. */
static void gather_images(embd_clip_runner *x, const embd_clip_req *r, const embd_fetch_opts *fo,
                          embd_clip_result *res, float *pixels, size_t *img_of, size_t *n_img) {
    embd_fetch_item *fi = calloc(r->n, sizeof *fi);
    size_t *fetch_of = calloc(r->n, sizeof *fetch_of), nf = 0;
    if (!fi || !fetch_of) {
        for (size_t i = 0; i < r->n; i++)
            if (r->items[i].kind != EMBD_CITEM_TEXT)
                embd_api_fail(&res[i].err, 503, "out_of_memory", -1, "out of memory");
        free(fi), free(fetch_of);
        return;
    }
    for (size_t i = 0; i < r->n; i++) {
        const embd_clip_item *it = &r->items[i];
        if (it->kind == EMBD_CITEM_TEXT) continue;
        if (it->bad) embd_api_fail(&res[i].err, 422, "invalid_image", -1, "%s", it->bad);
        else if (it->kind == EMBD_CITEM_URL) fetch_of[nf] = i, fi[nf++].url = it->s;
    }
    if (nf) embd_fetch_all(fi, nf, fo);
    for (size_t k = 0; k < nf; k++)
        if (fi[k].error[0]) embd_api_fail(&res[fetch_of[k]].err, 422, "download_failed", -1, "%s", fi[k].error);

    const embd_clip_info *ci = embd_clip_get_info(x->clip);
    embd_image_prep prep;
    embd_clip_image_prep(x->clip, &prep);
    const size_t per = 3 * (size_t)ci->image_size * (size_t)ci->image_size;
    embd_image_limits lim = {.max_pixels = x->o.max_pixels, .max_bytes = x->o.fetch.max_bytes}; /* inline images too */
    size_t f = 0;
    *n_img = 0;
    for (size_t i = 0; i < r->n; i++) {
        const embd_clip_item *it = &r->items[i];
        if (it->kind == EMBD_CITEM_TEXT || it->bad) continue;
        const uint8_t *data = NULL;
        size_t len = 0;
        uint8_t *owned = NULL;
        char err[256] = "";
        if (it->kind == EMBD_CITEM_URL) {
            while (fetch_of[f] != i) f++;
            if (fi[f].error[0]) continue;
            data = fi[f].data, len = fi[f].len;
        } else if (embd_image_source_decode(it->s, it->len, &owned, &len, err, sizeof err)) {
            embd_api_fail(&res[i].err, 422, "invalid_image", -1, "%s", err);
            continue;
        } else {
            data = owned;
        }
        decode_slot(x, true);
        embd_image im = {0};
        int h = 0, w = 0;
        if (embd_image_decode(data, len, &lim, &im, err, sizeof err)) {
            embd_api_fail(&res[i].err, 422, "invalid_image", -1, "%s", err);
        } else if (embd_image_prep_size(&im, &prep, &h, &w), h != ci->image_size || w != ci->image_size) {
            embd_api_fail(&res[i].err, 500, "internal", -1, "preprocessing gave %dx%d, the model takes %dx%d", w, h,
                          ci->image_size, ci->image_size);
        } else if (embd_image_preprocess(&im, &prep, pixels + *n_img * per, err, sizeof err)) {
            embd_api_fail(&res[i].err, 503, "out_of_memory", -1, "%s", err);
        } else {
            img_of[(*n_img)++] = i;
        }
        embd_image_free(&im);
        decode_slot(x, false);
        free(owned);
    }
    for (size_t k = 0; k < nf; k++) embd_fetch_item_clear(&fi[k]);
    free(fi), free(fetch_of);
}

/* Texts -> token ids of the k-th good text. */
static void gather_texts(embd_clip_runner *x, const embd_clip_req *r, embd_clip_result *res, int32_t **ids, int *lens,
                         size_t *txt_of, size_t *n_txt) {
    const embd_tokenizer *tok = embd_clip_tokenizer(x->clip);
    const int ctx = embd_clip_get_info(x->clip)->text_ctx;
    embd_tokens tk = {0};
    *n_txt = 0;
    for (size_t i = 0; i < r->n; i++) {
        const embd_clip_item *it = &r->items[i];
        if (it->kind != EMBD_CITEM_TEXT) continue;
        size_t bad = 0;
        int rc = embd_tokenizer_encode(tok, it->s, it->len, x->o.truncate ? (size_t)ctx : 0, &tk, &bad);
        if (rc == EMBD_TOK_EUTF8) {
            embd_api_fail(&res[i].err, 422, "invalid_utf8", -1, "input %zu is not valid UTF-8 (byte %zu)", i, bad);
            continue;
        }
        if (rc != EMBD_TOK_OK) {
            embd_api_fail(&res[i].err, 503, "out_of_memory", -1, "out of memory while tokenizing");
            continue;
        }
        if (tk.n > (size_t)ctx) {
            embd_api_fail(&res[i].err, 413, "input_too_long", -1,
                          "input %zu has %zu tokens, more than the limit of %d (truncation is off)", i, tk.n, ctx);
            continue;
        }
        int32_t *copy = malloc(tk.n * sizeof *copy);
        if (!copy) {
            embd_api_fail(&res[i].err, 503, "out_of_memory", -1, "out of memory while tokenizing");
            continue;
        }
        memcpy(copy, tk.ids, tk.n * sizeof *copy);
        res[i].n_tokens = (int)tk.n;
        ids[*n_txt] = copy;
        lens[*n_txt] = (int)tk.n;
        txt_of[(*n_txt)++] = i;
    }
    embd_tokens_free(&tk);
}

size_t embd_clip_run_tokens(embd_clip_runner *x, const embd_clip_req *r) {
    const embd_tokenizer *tok = embd_clip_tokenizer(x->clip);
    const size_t ctx = (size_t)embd_clip_get_info(x->clip)->text_ctx;
    embd_tokens tk = {0};
    size_t total = 0, bad;
    for (size_t i = 0; i < r->n; i++)
        if (r->items[i].kind == EMBD_CITEM_TEXT &&
            embd_tokenizer_encode(tok, r->items[i].s, r->items[i].len, x->o.truncate ? ctx : 0, &tk, &bad) == EMBD_TOK_OK)
            total += tk.n;
    embd_tokens_free(&tk);
    return total;
}

/* 0 while the request may still run; else fails it (e). */
static int call_over(embd_clip_runner *x, const embd_clip_call *call, embd_api_error *e) {
    if (call && call->deadline > 0 && embd_now() >= call->deadline)
        return embd_api_fail(e, 504, "timeout", -1, "the request did not finish within the server's request timeout");
    if (call && call->alive && !call->alive(call->ud))
        return embd_api_fail(e, 499, "cancelled", -1, "the client closed the connection");
    return 0;
}

/* One pass per tower over the batch's inputs, outputs scattered back to each request. On the
 * pass thread, without x->mu. */
static int pass(embd_clip_runner *x, pending *batch, size_t ni, size_t nt, char *err, size_t errlen) {
    const embd_clip_info *ci = embd_clip_get_info(x->clip);
    const size_t dim = (size_t)ci->dim, per = 3 * (size_t)ci->image_size * (size_t)ci->image_size;
    float *out = malloc((ni + nt) * dim * sizeof *out);
    /* one request's images are contiguous already; several are copied side by side */
    bool one = batch->n_img == ni;
    float *px = ni && !one ? malloc(ni * per * sizeof *px) : NULL;
    int32_t **ids = nt ? malloc(nt * sizeof *ids) : NULL;
    int *lens = nt ? malloc(nt * sizeof *lens) : NULL;
    int rc = 0;
    if (!out || (ni && !one && !px) || (nt && (!ids || !lens))) {
        rc = embd_fail(err, errlen, "out of memory");
        goto done;
    }
    size_t ki = 0, kt = 0;
    for (pending *p = batch; p; p = p->next) {
        if (px && p->n_img) memcpy(px + ki * per, p->pixels, p->n_img * per * sizeof *px);
        for (size_t k = 0; k < p->n_txt; k++) ids[kt + k] = p->ids[k], lens[kt + k] = p->lens[k];
        ki += p->n_img, kt += p->n_txt;
    }
    if (x->test_delay_ms) usleep(x->test_delay_ms * 1000u);
    if (ni && embd_clip_encode_images(x->clip, px ? px : batch->pixels, (int)ni, out, err, errlen)) rc = -1;
    if (!rc && nt && embd_clip_encode_texts(x->clip, (const int32_t *const *)ids, lens, (int)nt, out + ni * dim, err, errlen))
        rc = -1;
    ki = 0, kt = 0;
    for (pending *p = batch; !rc && p; p = p->next) {
        memcpy(p->out, out + ki * dim, p->n_img * dim * sizeof *out);
        memcpy(p->out + p->n_img * dim, out + (ni + kt) * dim, p->n_txt * dim * sizeof *out);
        ki += p->n_img, kt += p->n_txt;
    }
done:
    free(out), free(px), free(ids), free(lens);
    return rc;
}

/* The next batch from the head of the queue, in order, up to max_pass_images / max_pass_texts
 * (the first request always goes, whatever its size). Requests past their deadline or whose
 * client left are failed here instead: the wait for the model counts, and a pass nobody reads is
 * skipped. Under x->mu. */
static pending *take_batch(embd_clip_runner *x, size_t *ni, size_t *nt, size_t *tokens) {
    pending *batch = NULL, *last = NULL;
    *ni = *nt = *tokens = 0;
    while (x->head) {
        pending *p = x->head;
        bool over = call_over(x, p->call, p->e);
        if (!over && batch && (*ni + p->n_img > x->o.max_pass_images || *nt + p->n_txt > x->o.max_pass_texts)) break;
        if (!(x->head = p->next)) x->tail = NULL;
        p->next = NULL;
        if (over) {
            p->rc = -1, p->done = true;
            continue;
        }
        if (last) last->next = p;
        else batch = p;
        last = p;
        *ni += p->n_img, *nt += p->n_txt;
        for (size_t k = 0; k < p->n_txt; k++) *tokens += (size_t)p->lens[k];
    }
    return batch;
}

/* The one thread that runs passes. One long-lived thread, not the requests' own: ggml's OpenMP
 * team belongs to the thread that starts it, and a new team per request thread cost 8-23 ms per
 * pass with 2 threads on a tiny model (0.1 ms on one long-lived thread). Requests queued while a
 * pass runs share the next one. */
static void *pass_main(void *arg) {
    embd_clip_runner *x = arg;
    pthread_mutex_lock(&x->mu);
    for (;;) {
        while (!x->head && !x->stop) pthread_cond_wait(&x->work, &x->mu);
        if (!x->head) break; /* stopping, and nothing is left */
        size_t ni, nt, tokens;
        pending *batch = take_batch(x, &ni, &nt, &tokens);
        pthread_cond_broadcast(&x->done); /* the ones take_batch failed get their answer now */
        pthread_mutex_unlock(&x->mu);
        char err[256] = "";
        double t0 = embd_now();
        int rc = batch ? pass(x, batch, ni, nt, err, sizeof err) : 0;
        double dt = embd_now() - t0;
        pthread_mutex_lock(&x->mu);
        for (pending *p = batch; p; p = p->next) {
            if (rc) p->rc = embd_api_fail(p->e, 500, "inference_failed", -1, "inference failed: %s", err);
            p->done = true;
        }
        if (batch && x->o.metrics) embd_metrics_batch(x->o.metrics, dt, ni + nt, tokens);
        pthread_cond_broadcast(&x->done);
    }
    pthread_mutex_unlock(&x->mu);
    return NULL;
}

/* Queues the request and waits until a pass has run it (or failed it). */
static void run_queued(embd_clip_runner *x, pending *me) {
    pthread_mutex_lock(&x->mu);
    if (x->tail) x->tail->next = me;
    else x->head = me;
    x->tail = me;
    pthread_cond_signal(&x->work);
    while (!me->done) pthread_cond_wait(&x->done, &x->mu);
    pthread_mutex_unlock(&x->mu);
}

int embd_clip_run(embd_clip_runner *x, const embd_clip_req *r, const embd_clip_call *call, embd_clip_result *res,
                  float *vecs, embd_api_error *e) {
    const embd_clip_info *ci = embd_clip_get_info(x->clip);
    const size_t dim = (size_t)ci->dim, n = r->n, per = 3 * (size_t)ci->image_size * (size_t)ci->image_size;
    size_t n_img_items = 0;
    for (size_t i = 0; i < n; i++) {
        res[i] = (embd_clip_result){.ok = false};
        n_img_items += r->items[i].kind != EMBD_CITEM_TEXT;
    }
    float *pixels = n_img_items ? malloc(n_img_items * per * sizeof *pixels) : NULL;
    float *out = malloc(n * dim * sizeof *out);
    size_t *img_of = calloc(n, sizeof *img_of), *txt_of = calloc(n, sizeof *txt_of);
    int32_t **ids = calloc(n, sizeof *ids);
    int *lens = calloc(n, sizeof *lens);
    int rc = 0;
    size_t n_img = 0, n_txt = 0;
    if ((n_img_items && !pixels) || !out || !img_of || !txt_of || !ids || !lens) {
        rc = embd_api_fail(e, 503, "out_of_memory", -1, "out of memory");
        goto done;
    }
    if (n_img_items) {
        /* downloads end by the request's deadline at the latest (a late one fails as a timeout) */
        embd_fetch_opts fo = x->o.fetch;
        if (call && call->deadline > 0) {
            double left_ms = (call->deadline - embd_now()) * 1e3;
            if (left_ms < (double)fo.timeout_ms) fo.timeout_ms = left_ms < 1 ? 1 : (long)left_ms;
        }
        gather_images(x, r, &fo, res, pixels, img_of, &n_img);
    }
    gather_texts(x, r, res, ids, lens, txt_of, &n_txt);

    if (n_img || n_txt) {
        pending me = {.pixels = pixels, .n_img = n_img, .ids = ids, .lens = lens, .n_txt = n_txt, .out = out,
                      .call = call, .e = e};
        run_queued(x, &me);
        if ((rc = me.rc)) {
            count_items(x, 0, n_img_items, 0, n - n_img_items);
            goto done;
        }
    }
    count_items(x, n_img, n_img_items - n_img, n_txt, n - n_img_items - n_txt);
    for (size_t k = 0; k < n_img; k++) {
        memcpy(vecs + img_of[k] * dim, out + k * dim, dim * sizeof *vecs);
        res[img_of[k]].ok = true;
        res[img_of[k]].vec = vecs + img_of[k] * dim;
    }
    for (size_t k = 0; k < n_txt; k++) {
        memcpy(vecs + txt_of[k] * dim, out + (n_img + k) * dim, dim * sizeof *vecs);
        res[txt_of[k]].ok = true;
        res[txt_of[k]].vec = vecs + txt_of[k] * dim;
    }
done:
    for (size_t k = 0; ids && k < n_txt; k++) free(ids[k]);
    free(pixels), free(out), free(img_of), free(txt_of), free(ids), free(lens);
    return rc;
}
