/* An HTTP request body as embd serve sees it: repair + parse (embd_api_parse_body), validation in
 * both shapes (OpenAI, TEI / chunks) and the four CLIP shapes, then the response built from fake
 * results. Besides "no
 * crash": a rejected request always names a 4xx status and a type; an accepted one has between 1
 * and max_items items (chunks: up to max_items) and its response is valid JSON. */
#include <jansson.h>
#include <string.h>

#include "fuzz_common.h"
#include "server/api.h"
#include "server/api_clip.h"

enum { N_EMBD = 8 };

static void check_error(const embd_api_error *e)
{
    FUZZ_CHECK(((e->status >= 400 && e->status < 500) || e->status == 503) && e->type && e->message[0]);
    char *j = embd_api_error_json(e);
    FUZZ_CHECK(j);
    json_t *back = json_loads(j, 0, NULL);
    FUZZ_CHECK(json_is_object(json_object_get(back, "error")));
    json_decref(back);
    free(j);
}

static void run_shape(json_t *root, embd_shape shape)
{
    static const float vec[N_EMBD] = {0.5f, -1, 2, 0, 0.25f, 3, -2, 1};
    const embd_api_limits lim = {.max_items = 16, .max_input_chars = 64, .default_truncate = true,
                                 .n_embd = N_EMBD, .n_ctx = 32, .n_vocab = 1000, .model_name = "m"};
    embd_embed_req r;
    embd_api_error e;
    if (embd_api_embed_parse(json_incref(root), shape, &lim, &r, &e)) {
        json_decref(root); /* kept by the caller on failure */
        check_error(&e);
        return;
    }
    FUZZ_CHECK(r.n <= lim.max_items);
    FUZZ_CHECK(r.shape == EMBD_SHAPE_CHUNKS || r.n >= 1);
    embd_item_result *items = calloc(r.n ? r.n : 1, sizeof *items);
    FUZZ_CHECK(items);
    for (size_t i = 0; i < r.n; i++) {
        bool ok = r.shape != EMBD_SHAPE_CHUNKS || (r.text[i] && i % 3 != 2);
        items[i] = (embd_item_result){.ok = ok, .vec = vec, .n_tokens = 3, .message = "x"};
    }
    char *body = embd_api_embed_response(&r, items, N_EMBD, "m", &e);
    FUZZ_CHECK(body);
    json_t *back = json_loads(body, JSON_ALLOW_NUL, NULL); /* ids may hold \u0000 */
    FUZZ_CHECK(back);
    json_decref(back);
    free(body);
    free(items);
    embd_embed_req_free(&r);
}

/* CLIP: image batches answer per item; the other shapes answer whole or fail with a 4xx. */
static void run_clip(json_t *root, embd_clip_route route, bool bad_utf8)
{
    static const float vec[N_EMBD] = {0.5f, -0.5f, 0.5f, 0, 0, 0, 0, -0.5f};
    const embd_clip_limits lim = {.max_image_batch = 4, .max_items = 16, .max_input_chars = 64, .model_name = "m"};
    embd_clip_req r;
    embd_api_error e;
    if (embd_api_clip_parse(json_incref(root), route, bad_utf8, &lim, &r, &e)) {
        json_decref(root);
        check_error(&e);
        return;
    }
    FUZZ_CHECK(r.n >= 1 && r.n <= (route == EMBD_CLIP_IMAGE ? 1 : route == EMBD_CLIP_IMAGE_BATCH ? 4 : 16));
    embd_clip_result *res = calloc(r.n, sizeof *res);
    FUZZ_CHECK(res);
    size_t images = 0;
    for (size_t i = 0; i < r.n; i++) {
        const embd_clip_item *it = &r.items[i];
        FUZZ_CHECK(it->bad || it->s);
        if (it->kind != EMBD_CITEM_TEXT) images++;
        if (it->kind == EMBD_CITEM_URL && !it->bad) FUZZ_CHECK(it->len >= 7 && !memchr(it->s, 0, it->len));
        res[i] = (embd_clip_result){.ok = !it->bad && i % 3 != 2, .vec = vec, .n_tokens = 2};
        if (!res[i].ok) embd_api_fail(&res[i].err, 422, "invalid_image", -1, "x");
    }
    FUZZ_CHECK(route != EMBD_CLIP_TEXT || images == 0);
    FUZZ_CHECK(route == EMBD_CLIP_TEXT || route == EMBD_CLIP_OPENAI || images == r.n);
    char *body = embd_api_clip_response(&r, res, N_EMBD, "m", &e);
    bool all_ok = true;
    for (size_t i = 0; i < r.n; i++) all_ok = all_ok && res[i].ok;
    if (body) {
        FUZZ_CHECK(route == EMBD_CLIP_IMAGE_BATCH || all_ok);
        json_t *back = json_loads(body, 0, NULL);
        FUZZ_CHECK(back);
        json_decref(back);
    } else {
        FUZZ_CHECK(!all_ok && route != EMBD_CLIP_IMAGE_BATCH);
        check_error(&e);
    }
    free(body);
    free(res);
    embd_clip_req_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *body = malloc(size ? size : 1);
    FUZZ_CHECK(body);
    memcpy(body, data, size);
    bool bad_utf8 = false;
    embd_api_error e;
    json_t *root = embd_api_parse_body(body, size, &bad_utf8, &e);
    if (!root) {
        check_error(&e);
    } else {
        run_shape(root, EMBD_SHAPE_OPENAI);
        run_shape(root, EMBD_SHAPE_TEI);
        for (int route = EMBD_CLIP_IMAGE; route <= EMBD_CLIP_OPENAI; route++) run_clip(root, route, bad_utf8);
        json_decref(root);
    }
    free(body);
    return 0;
}
