/* CLIP endpoints' JSON: see api_clip.h. */
#include "server/api_clip.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

void embd_clip_req_free(embd_clip_req *r) {
    if (!r) return;
    json_decref(r->root);
    free(r->items);
    memset(r, 0, sizeof *r);
}

static bool has_prefix(const char *s, size_t len, const char *p) {
    size_t n = strlen(p);
    return len >= n && !strncasecmp(s, p, n);
}

/* An image source; problems with one item stay with that item (image batches keep going). */
static void parse_image(json_t *v, embd_clip_item *it) {
    it->kind = EMBD_CITEM_URL; /* an image whatever happens below: never read as text */
    json_t *url = json_is_object(v) ? json_object_get(v, "url") : NULL;
    json_t *b64 = json_is_object(v) ? json_object_get(v, "b64") : NULL;
    if (json_is_object(v)) {
        if ((url != NULL) == (b64 != NULL)) {
            it->bad = "an image object needs exactly one of \"url\" and \"b64\"";
            return;
        }
        if (!json_is_string(url ? url : b64)) {
            it->bad = url ? "\"url\" must be a string" : "\"b64\" must be a string";
            return;
        }
        it->s = json_string_value(url ? url : b64);
        it->len = json_string_length(url ? url : b64);
        if (b64) {
            it->kind = EMBD_CITEM_INLINE;
            return;
        }
    } else if (json_is_string(v)) {
        it->s = json_string_value(v);
        it->len = json_string_length(v);
        if (has_prefix(it->s, it->len, "data:")) {
            it->kind = EMBD_CITEM_INLINE;
            return;
        }
    } else {
        it->bad = "expected an image: {\"url\": ...}, {\"b64\": ...}, an http(s) URL or a data: URI";
        return;
    }
    it->kind = EMBD_CITEM_URL;
    if (!has_prefix(it->s, it->len, "http://") && !has_prefix(it->s, it->len, "https://"))
        it->bad = "only http:// and https:// image URLs are allowed (or a data: URI, or {\"b64\": ...})";
    else if (memchr(it->s, 0, it->len))
        it->bad = "the URL contains a NUL character";
}

static int text_item(json_t *v, size_t i, const char *path, bool bad_utf8, const embd_clip_limits *lim,
                     embd_clip_item *it, embd_api_error *e) {
    if (!json_is_string(v)) return embd_api_fail(e, 422, "invalid_request", (long)i, "%s: expected a string", path);
    it->kind = EMBD_CITEM_TEXT;
    it->s = json_string_value(v);
    it->len = json_string_length(v);
    if (bad_utf8 && embd_api_has_sentinel(it->s, it->len))
        return embd_api_fail(e, 422, "invalid_utf8", (long)i, "%s is not valid UTF-8", path);
    if (lim->max_input_chars && embd_api_utf8_chars(it->s, it->len) > lim->max_input_chars)
        return embd_api_fail(e, 413, "input_too_large", (long)i, "%s has more than %zu characters", path,
                             lim->max_input_chars);
    return 0;
}

/* items from a string or an array of n <= max entries; each through text_item or parse_image. */
static int parse_list(embd_clip_req *r, json_t *in, const char *key, bool images, size_t max, bool bad_utf8,
                      const embd_clip_limits *lim, embd_api_error *e) {
    if (!in) return embd_api_fail(e, 422, "invalid_request", -1, "$.%s: missing", key);
    bool scalar = !json_is_array(in);
    size_t n = scalar ? 1 : json_array_size(in);
    if (scalar && !images && !json_is_string(in))
        return embd_api_fail(e, 422, "invalid_request", -1, "$.%s: expected a string or an array of strings", key);
    if (n == 0) return embd_api_fail(e, 422, "invalid_request", -1, "$.%s: empty", key);
    if (n > max)
        return embd_api_fail(e, 413, "too_many_items", -1, "$.%s: %zu items, more than the limit of %zu per request",
                             key, n, max);
    r->items = calloc(n, sizeof *r->items);
    if (!r->items) return embd_api_fail(e, 503, "out_of_memory", -1, "out of memory");
    r->n = n;
    r->single = scalar;
    for (size_t i = 0; i < n; i++) {
        json_t *v = scalar ? in : json_array_get(in, i);
        char path[64];
        if (scalar) snprintf(path, sizeof path, "$.%s", key);
        else snprintf(path, sizeof path, "$.%s[%zu]", key, i);
        if (images) {
            parse_image(v, &r->items[i]);
            if (bad_utf8 && !r->items[i].bad && embd_api_has_sentinel(r->items[i].s, r->items[i].len))
                r->items[i].bad = "the image source is not valid UTF-8";
        } else if (r->route == EMBD_CLIP_OPENAI && json_is_string(v) &&
                   has_prefix(json_string_value(v), json_string_length(v), "data:")) {
            parse_image(v, &r->items[i]);
        } else if (text_item(v, i, path, bad_utf8, lim, &r->items[i], e)) {
            return -1;
        }
    }
    return 0;
}

int embd_api_clip_parse(json_t *root, embd_clip_route route, bool bad_utf8, const embd_clip_limits *lim,
                        embd_clip_req *out, embd_api_error *e) {
    embd_clip_req r = {.route = route};
    int rc;
    if (!json_is_object(root)) {
        rc = embd_api_fail(e, 422, "invalid_request", -1, "expected a JSON object");
    } else if (json_object_get(root, "model") && !json_is_string(json_object_get(root, "model"))) {
        rc = embd_api_fail(e, 422, "invalid_request", -1, "$.model: expected a string");
    } else if (route == EMBD_CLIP_IMAGE) {
        json_t *v = json_object_get(root, "image");
        if (!v) rc = embd_api_fail(e, 422, "invalid_request", -1, "$.image: missing");
        else if (json_is_array(v)) rc = embd_api_fail(e, 422, "invalid_request", -1, "$.image: one image; send lists to /v1/embed/image-batch");
        else rc = parse_list(&r, v, "image", true, 1, bad_utf8, lim, e);
    } else if (route == EMBD_CLIP_IMAGE_BATCH) {
        json_t *v = json_object_get(root, "images");
        if (v && !json_is_array(v)) rc = embd_api_fail(e, 422, "invalid_request", -1, "$.images: expected an array");
        else rc = parse_list(&r, v, "images", true, lim->max_image_batch, bad_utf8, lim, e);
    } else if (route == EMBD_CLIP_TEXT) {
        rc = parse_list(&r, json_object_get(root, "text"), "text", false, lim->max_items, bad_utf8, lim, e);
    } else {
        json_t *fmt = json_object_get(root, "encoding_format");
        if (fmt && !json_is_null(fmt) &&
            (!json_is_string(fmt) || (strcmp(json_string_value(fmt), "float") && strcmp(json_string_value(fmt), "base64")))) {
            rc = embd_api_fail(e, 422, "invalid_request", -1, "$.encoding_format: expected \"float\" or \"base64\"");
        } else {
            r.base64 = fmt && json_is_string(fmt) && !strcmp(json_string_value(fmt), "base64");
            rc = parse_list(&r, json_object_get(root, "input"), "input", false, lim->max_items, bad_utf8, lim, e);
            size_t images = 0;
            for (size_t i = 0; !rc && i < r.n; i++) {
                if (r.items[i].kind == EMBD_CITEM_TEXT) continue;
                if (r.items[i].bad) /* OpenAI's shape has no per-item errors */
                    rc = embd_api_fail(e, 422, "invalid_image", (long)i, "$.input[%zu]: %s", i, r.items[i].bad);
                else if (++images > lim->max_image_batch)
                    rc = embd_api_fail(e, 413, "too_many_items", -1, "$.input: more than %zu images per request",
                                       lim->max_image_batch);
            }
        }
    }
    if (!rc && route == EMBD_CLIP_IMAGE && r.items[0].bad)
        rc = embd_api_fail(e, 422, "invalid_image", -1, "$.image: %s", r.items[0].bad);
    if (rc) {
        free(r.items);
        return -1;
    }
    r.root = root;
    *out = r;
    return 0;
}

static json_t *item_error(const embd_clip_result *x) {
    return json_pack("{s:s, s:s}", "type", x->err.type ? x->err.type : "error", "message", x->err.message);
}

char *embd_api_clip_response(const embd_clip_req *r, const embd_clip_result *res, int dim, const char *model_name,
                             embd_api_error *e) {
    if (r->route != EMBD_CLIP_IMAGE_BATCH)
        for (size_t i = 0; i < r->n; i++)
            if (!res[i].ok) {
                *e = res[i].err;
                e->index = r->route == EMBD_CLIP_IMAGE ? -1 : (long)i;
                return NULL;
            }
    size_t tokens = 0, ok = 0;
    json_t *data = json_array(), *root = NULL;
    for (size_t i = 0; i < r->n && data; i++) {
        tokens += (size_t)res[i].n_tokens;
        json_t *d;
        if (!res[i].ok) {
            d = json_pack("{s:I, s:o*}", "index", (json_int_t)i, "error", item_error(&res[i]));
        } else {
            ok++;
            json_t *v = r->base64 ? embd_api_base64_floats(res[i].vec, dim) : embd_api_float_array(res[i].vec, dim);
            d = r->route == EMBD_CLIP_OPENAI ? json_pack("{s:s, s:I, s:o*}", "object", "embedding", "index", (json_int_t)i, "embedding", v)
                                             : json_pack("{s:I, s:o*}", "index", (json_int_t)i, "embedding", v);
        }
        if (!d || json_array_append_new(data, d)) json_decref(data), data = NULL;
    }
    if (!data) goto oom;
    if (r->route == EMBD_CLIP_OPENAI) {
        root = json_pack("{s:s, s:o, s:s, s:{s:I, s:I}}", "object", "list", "data", data, "model", model_name, "usage",
                         "prompt_tokens", (json_int_t)tokens, "total_tokens", (json_int_t)tokens);
    } else if (r->route == EMBD_CLIP_IMAGE) {
        root = json_pack("{s:s, s:i, s:O}", "model", model_name, "dimensions", dim, "embedding",
                         json_object_get(json_array_get(data, 0), "embedding"));
        json_decref(data);
    } else {
        root = json_pack("{s:s, s:i, s:o}", "model", model_name, "dimensions", dim, "data", data);
        if (root && r->route == EMBD_CLIP_IMAGE_BATCH) {
            json_object_set_new(root, "succeeded", json_integer((json_int_t)ok));
            json_object_set_new(root, "failed", json_integer((json_int_t)(r->n - ok)));
        }
        if (root && r->route == EMBD_CLIP_TEXT) {
            json_object_set_new(root, "usage", json_pack("{s:I, s:I}", "prompt_tokens", (json_int_t)tokens,
                                                         "total_tokens", (json_int_t)tokens));
            if (r->single) json_object_set(root, "embedding", json_object_get(json_array_get(data, 0), "embedding"));
        }
    }
    if (!root) goto oom;
    char *s = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(root);
    if (s) return s;
oom:
    embd_api_fail(e, 503, "out_of_memory", -1, "out of memory while building the response");
    return NULL;
}
