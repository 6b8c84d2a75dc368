/* Embedding requests: OpenAI /v1/embeddings, TEI /embed and the ingest-worker chunk shape. */
#include <stdarg.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/embed.h"
#include "server/api.h"

void embd_embed_req_free(embd_embed_req *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n; i++) {
        if (r->ids) free(r->ids[i]);
        if (r->item_error) free(r->item_error[i]);
    }
    free(r->text), free(r->text_len), free(r->ids), free(r->ids_len), free(r->chunk_id), free(r->item_error);
    json_decref(r->root);
    memset(r, 0, sizeof *r);
}

static int alloc_items(embd_embed_req *r, size_t n) {
    size_t m = n ? n : 1;
    r->n = n;
    r->text = calloc(m, sizeof *r->text);
    r->text_len = calloc(m, sizeof *r->text_len);
    if (r->shape == EMBD_SHAPE_CHUNKS) {
        r->chunk_id = calloc(m, sizeof *r->chunk_id);
        r->item_error = calloc(m, sizeof *r->item_error);
        if (!r->chunk_id || !r->item_error) return -1;
    }
    return r->text && r->text_len ? 0 : -1;
}

static int get_dimensions(json_t *root, const embd_api_limits *lim, int *out, embd_api_error *e) {
    json_t *v = json_object_get(root, "dimensions");
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > lim->n_embd)
        return embd_api_fail(e, 422, "invalid_request", -1, "$.dimensions: expected an integer from 1 to %d",
                             lim->n_embd);
    *out = (int)json_integer_value(v);
    return 0;
}

/* "prompt_name" (TEI; accepted on /v1/embeddings too): a sentence-transformers prompt of the
 * model, prepended to every text. Absent: the model's default prompt, if it has one. */
static int get_prompt(json_t *root, const embd_api_limits *lim, const char **out, embd_api_error *e) {
    const embd_model *m = lim->model;
    json_t *v = json_object_get(root, "prompt_name");
    if (!v || json_is_null(v)) {
        *out = m && m->default_prompt ? embd_model_prompt(m, m->default_prompt) : NULL;
        return 0;
    }
    if (!json_is_string(v)) return embd_api_fail(e, 422, "invalid_request", -1, "$.prompt_name: expected a string");
    *out = m ? embd_model_prompt(m, json_string_value(v)) : NULL;
    if (*out) return 0;
    char names[160] = "";
    for (size_t i = 0; m && i < m->n_prompts; i++) {
        size_t l = strlen(names);
        snprintf(names + l, sizeof names - l, "%s'%s'", i ? ", " : "", m->prompt_names[i]);
    }
    return embd_api_fail(e, 422, "unknown_prompt", -1, "$.prompt_name: '%.64s' is not a prompt of this model (%s%s)",
                         json_string_value(v), *names ? "it has " : "it defines none", names);
}

/* An optional string field with two accepted values: *second is set when it names the second. */
static int get_choice(json_t *root, const char *key, const char *first, const char *second, bool ignore_case,
                      bool *is_second, embd_api_error *e) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return 0;
    const char *s = json_string_value(v);
    int (*cmp)(const char *, const char *) = ignore_case ? strcasecmp : strcmp;
    if (s && !cmp(s, second))
        *is_second = true;
    else if (!s || cmp(s, first))
        return embd_api_fail(e, 422, "invalid_request", -1, "$.%s: expected \"%s\" or \"%s\"", key, first, second);
    return 0;
}

/* One token-id input: an array of integers. */
static int take_ids(embd_embed_req *r, size_t i, json_t *arr, const char *path, int n_vocab, embd_api_error *e) {
    size_t n = json_array_size(arr);
    if (n == 0) return embd_api_fail(e, 422, "invalid_request", (long)i, "%s: empty token array", path);
    r->ids[i] = malloc(n * sizeof **r->ids);
    if (!r->ids[i]) return embd_api_fail(e, 503, "out_of_memory", -1, "out of memory");
    r->ids_len[i] = n;
    for (size_t k = 0; k < n; k++) {
        json_t *v = json_array_get(arr, k);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= n_vocab)
            return embd_api_fail(e, 422, "invalid_request", (long)i, "%s[%zu]: expected a token id from 0 to %d", path,
                                 k, n_vocab - 1);
        r->ids[i][k] = (int32_t)json_integer_value(v);
    }
    return 0;
}

/* "input"/"inputs": a string, an array of strings, or (OpenAI) token ids in one or many arrays. */
static int parse_inputs(embd_embed_req *r, json_t *in, const char *key, bool allow_ids, const embd_api_limits *lim,
                        embd_api_error *e) {
    char path[64];
    if (!in) return embd_api_fail(e, 422, "invalid_request", -1, "$.%s: missing", key);
    if (json_is_string(in)) {
        if (alloc_items(r, 1)) return embd_api_fail(e, 503, "out_of_memory", -1, "out of memory");
        r->text[0] = json_string_value(in);
        r->text_len[0] = json_string_length(in);
        return embd_api_check_text_size(r->text[0], r->text_len[0], 0, lim, e);
    }
    if (!json_is_array(in))
        return embd_api_fail(e, 422, "invalid_request", -1, "$.%s: expected a string or an array of strings", key);
    size_t n = json_array_size(in);
    json_t *first = json_array_get(in, 0);
    if (allow_ids && json_is_integer(first)) { /* one tokenized input */
        if (alloc_items(r, 1)) return embd_api_fail(e, 503, "out_of_memory", -1, "out of memory");
        r->ids = calloc(1, sizeof *r->ids);
        r->ids_len = calloc(1, sizeof *r->ids_len);
        if (!r->ids || !r->ids_len) return embd_api_fail(e, 503, "out_of_memory", -1, "out of memory");
        snprintf(path, sizeof path, "$.%s", key);
        return take_ids(r, 0, in, path, lim->n_vocab, e);
    }
    snprintf(path, sizeof path, "$.%s", key);
    if (embd_api_check_count(n, path, lim, e)) return -1;
    if (alloc_items(r, n)) return embd_api_fail(e, 503, "out_of_memory", -1, "out of memory");
    bool ids = allow_ids && json_is_array(first);
    if (ids) {
        r->ids = calloc(n, sizeof *r->ids);
        r->ids_len = calloc(n, sizeof *r->ids_len);
        if (!r->ids || !r->ids_len) return embd_api_fail(e, 503, "out_of_memory", -1, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(in, i);
        snprintf(path, sizeof path, "$.%s[%zu]", key, i);
        if (ids) {
            if (!json_is_array(v))
                return embd_api_fail(e, 422, "invalid_request", (long)i, "%s: expected an array of token ids", path);
            if (take_ids(r, i, v, path, lim->n_vocab, e)) return -1;
        } else {
            if (!json_is_string(v))
                return embd_api_fail(e, 422, "invalid_request", (long)i, "%s: expected a string", path);
            r->text[i] = json_string_value(v);
            r->text_len[i] = json_string_length(v);
            if (embd_api_check_text_size(r->text[i], r->text_len[i], i, lim, e)) return -1;
        }
    }
    return 0;
}

__attribute__((format(printf, 3, 4))) static void set_item_error(embd_embed_req *r, size_t i, const char *fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    free(r->item_error[i]);
    r->item_error[i] = strdup(buf);
    r->text[i] = NULL;
}

/* {"batch_id":..,"chunks":[{"chunk_id":..,"content":..}]}: a bad chunk gets its own error. */
static int parse_chunks(embd_embed_req *r, json_t *chunks, const embd_api_limits *lim, embd_api_error *e) {
    if (!json_is_array(chunks))
        return embd_api_fail(e, 422, "invalid_request", -1, "$.chunks: expected an array of {chunk_id, content}");
    size_t n = json_array_size(chunks);
    if (n > lim->max_items)
        return embd_api_fail(e, 413, "too_many_items", -1, "$.chunks: %zu chunks, more than the limit of %zu per request",
                             n, lim->max_items);
    if (alloc_items(r, n)) return embd_api_fail(e, 503, "out_of_memory", -1, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_array_get(chunks, i);
        json_t *content = json_object_get(c, "content");
        r->chunk_id[i] = json_object_get(c, "chunk_id");
        if (!json_is_object(c)) {
            set_item_error(r, i, "$.chunks[%zu]: expected an object {chunk_id, content}", i);
        } else if (!json_is_string(content)) {
            set_item_error(r, i, "$.chunks[%zu].content: expected a string", i);
        } else {
            r->text[i] = json_string_value(content);
            r->text_len[i] = json_string_length(content);
            size_t chars = embd_api_utf8_chars(r->text[i], r->text_len[i]);
            if (chars > lim->max_input_chars)
                set_item_error(r, i, "content has %zu characters, more than the limit of %zu", chars, lim->max_input_chars);
        }
    }
    return 0;
}

int embd_api_embed_parse(json_t *root, embd_shape shape, const embd_api_limits *lim, embd_embed_req *out,
                         embd_api_error *e) {
    embd_embed_req r = {.shape = shape, .root = root, .normalize = true, .truncate = lim->default_truncate};
    int rc = 0;
    if (shape == EMBD_SHAPE_OPENAI) {
        rc = get_choice(root, "encoding_format", "float", "base64", false, &r.base64, e);
        json_t *model = json_object_get(root, "model");
        if (!rc && model && !json_is_null(model) && !json_is_string(model))
            rc = embd_api_fail(e, 422, "invalid_request", -1, "$.model: expected a string");
        if (!rc) rc = get_prompt(root, lim, &r.prompt, e);
        if (!rc) rc = get_dimensions(root, lim, &r.dimensions, e);
        if (!rc) rc = parse_inputs(&r, json_object_get(root, "input"), "input", true, lim, e);
    } else if (json_object_get(root, "chunks")) {
        r.shape = EMBD_SHAPE_CHUNKS;
        rc = parse_chunks(&r, json_object_get(root, "chunks"), lim, e);
    } else {
        rc = embd_api_get_bool(root, "normalize", &r.normalize, e);
        if (!rc) rc = embd_api_get_bool(root, "truncate", &r.truncate, e);
        if (!rc) rc = get_choice(root, "truncation_direction", "Right", "Left", true, &r.truncate_left, e);
        if (!rc) rc = get_prompt(root, lim, &r.prompt, e);
        if (!rc) rc = get_dimensions(root, lim, &r.dimensions, e);
        if (!rc) rc = parse_inputs(&r, json_object_get(root, "inputs"), "inputs", false, lim, e);
    }
    if (rc) {
        r.root = NULL; /* the caller keeps root on failure */
        embd_embed_req_free(&r);
        return -1;
    }
    *out = r;
    return 0;
}

/* Keeps [CLS] + the first pieces + [SEP], as the tokenizer's own truncation does. */
static void cut_right(int32_t *ids, size_t *n, size_t ctx) {
    if (*n <= ctx) return;
    if (ctx >= 2) ids[ctx - 1] = ids[*n - 1];
    *n = ctx;
}

/* Keeps [CLS] + the last pieces + [SEP] (HF truncation_side="left"). */
static void cut_left(int32_t *ids, size_t *n, size_t ctx) {
    if (*n <= ctx || ctx < 2) {
        if (*n > ctx) *n = ctx;
        return;
    }
    size_t keep = ctx - 2;
    memmove(ids + 1, ids + (*n - 1 - keep), keep * sizeof *ids);
    ids[ctx - 1] = ids[*n - 1];
    *n = ctx;
}

long embd_api_embed_tokenize(embd_embed_req *r, const embd_tokenizer *tok, int n_ctx, bool had_bad_utf8,
                             int32_t **ids, int *lens, embd_api_error *e) {
    long runnable = 0;
    const bool chunks = r->shape == EMBD_SHAPE_CHUNKS;
    embd_tokens tk = {0};
    for (size_t i = 0; i < r->n; i++) {
        ids[i] = NULL;
        lens[i] = 0;
        if (r->ids) { /* token ids: as given, [CLS]/[SEP] included by the client */
            size_t n = r->ids_len[i];
            if (n > (size_t)n_ctx && !r->truncate) {
                return embd_api_fail(e, 413, "input_too_long", (long)i,
                                     "input %zu has %zu tokens, more than the limit of %d (truncation is off)", i, n, n_ctx);
            }
            ids[i] = r->ids[i];
            r->ids[i] = NULL;
            if (n > (size_t)n_ctx) {
                if (r->truncate_left) cut_left(ids[i], &n, (size_t)n_ctx);
                else cut_right(ids[i], &n, (size_t)n_ctx);
            }
            lens[i] = (int)n;
            runnable++;
            continue;
        }
        if (!r->text[i]) continue; /* a chunk rejected while parsing */
        if (had_bad_utf8 && embd_api_has_sentinel(r->text[i], r->text_len[i])) {
            if (!chunks) {
                embd_tokens_free(&tk);
                return embd_api_fail(e, 422, "invalid_utf8", (long)i, "input %zu is not valid UTF-8", i);
            }
            set_item_error(r, i, "content is not valid UTF-8");
            continue;
        }
        size_t bad = 0;
        size_t limit = r->truncate && !r->truncate_left ? (size_t)n_ctx : 0;
        const char *text = r->text[i];
        size_t text_len = r->text_len[i];
        char *joined = NULL;
        if (r->prompt && *r->prompt) {
            size_t pl = strlen(r->prompt);
            joined = malloc(pl + text_len + 1);
            if (!joined) {
                embd_tokens_free(&tk);
                return embd_api_fail(e, 503, "out_of_memory", -1, "out of memory while tokenizing");
            }
            memcpy(joined, r->prompt, pl);
            memcpy(joined + pl, text, text_len);
            text = joined;
            text_len += pl;
        }
        int rc = embd_tokenizer_encode(tok, text, text_len, limit, &tk, &bad);
        free(joined);
        if (rc != EMBD_TOK_OK) {
            embd_tokens_free(&tk);
            if (rc == EMBD_TOK_EUTF8) return embd_api_fail(e, 422, "invalid_utf8", (long)i, "input %zu is not valid UTF-8", i);
            return embd_api_fail(e, 503, "out_of_memory", -1, "out of memory while tokenizing");
        }
        size_t n = tk.n;
        if (n > (size_t)n_ctx && !r->truncate) {
            if (!chunks) {
                embd_tokens_free(&tk);
                return embd_api_fail(e, 413, "input_too_long", (long)i,
                                     "input %zu has %zu tokens, more than the limit of %d (truncation is off)", i, n, n_ctx);
            }
            set_item_error(r, i, "content has %zu tokens, more than the limit of %d (truncation is off)", n, n_ctx);
            continue;
        }
        if (n > (size_t)n_ctx) cut_left(tk.ids, &n, (size_t)n_ctx);
        ids[i] = malloc((n ? n : 1) * sizeof **ids);
        if (!ids[i]) {
            embd_tokens_free(&tk);
            return embd_api_fail(e, 503, "out_of_memory", -1, "out of memory while tokenizing");
        }
        memcpy(ids[i], tk.ids, n * sizeof **ids);
        lens[i] = (int)n;
        runnable++;
    }
    embd_tokens_free(&tk);
    return runnable;
}

/* The vector a client sees: the first `dims` values, renormalised when asked. */
static void finish_vector(const float *raw, int n_embd, int dims, bool normalize, float *out) {
    int d = dims > 0 && dims < n_embd ? dims : n_embd;
    memcpy(out, raw, (size_t)d * sizeof *out);
    if (normalize) embd_l2_normalize(out, d);
}

json_t *embd_api_float_array(const float *v, int d) {
    json_t *a = json_array();
    for (int k = 0; k < d && a; k++) json_array_append_new(a, json_real(v[k]));
    return a;
}

json_t *embd_api_base64_floats(const float *v, int d) {
    size_t n = (size_t)d * sizeof(float); /* little-endian float32, as OpenAI's clients decode it */
    char *b = malloc(4 * ((n + 2) / 3) + 1);
    if (!b) return NULL;
    EVP_EncodeBlock((unsigned char *)b, (const unsigned char *)v, (int)n);
    json_t *s = json_string(b);
    free(b);
    return s;
}

char *embd_api_embed_response(const embd_embed_req *r, const embd_item_result *items, int n_embd,
                              const char *model_name, embd_api_error *e) {
    const int d = r->dimensions > 0 ? r->dimensions : n_embd;
    float *v = malloc((size_t)n_embd * sizeof *v);
    json_t *root = NULL;
    if (!v) goto oom;
    if (r->shape != EMBD_SHAPE_CHUNKS)
        for (size_t i = 0; i < r->n; i++)
            if (!items[i].ok) {
                free(v);
                /* an input that crashed the inference worker by itself (src/worker): the client's to fix */
                bool poison = items[i].message && !strncmp(items[i].message, "poison input", 12);
                embd_api_fail(e, poison ? 422 : 500, poison ? "poison_input" : "inference_failed", (long)i,
                              "input %zu: %s", i, items[i].message);
                return NULL;
            }
    if (r->shape == EMBD_SHAPE_OPENAI) {
        json_t *data = json_array();
        size_t tokens = 0;
        for (size_t i = 0; i < r->n && data; i++) {
            finish_vector(items[i].vec, n_embd, d, r->normalize, v);
            json_t *emb = r->base64 ? embd_api_base64_floats(v, d) : embd_api_float_array(v, d);
            json_array_append_new(data, json_pack("{s:s, s:I, s:o*}", "object", "embedding", "index", (json_int_t)i,
                                                  "embedding", emb));
            tokens += (size_t)items[i].n_tokens;
        }
        root = json_pack("{s:s, s:o*, s:s, s:{s:I, s:I}}", "object", "list", "data", data, "model", model_name, "usage",
                         "prompt_tokens", (json_int_t)tokens, "total_tokens", (json_int_t)tokens);
    } else if (r->shape == EMBD_SHAPE_TEI) {
        root = json_array();
        for (size_t i = 0; i < r->n && root; i++) {
            finish_vector(items[i].vec, n_embd, d, r->normalize, v);
            json_array_append_new(root, embd_api_float_array(v, d));
        }
    } else {
        json_t *embs = json_array(), *errs = json_array();
        for (size_t i = 0; i < r->n && embs && errs; i++) {
            json_t *cid = r->chunk_id[i] ? json_incref(r->chunk_id[i]) : json_null();
            if (items[i].ok) {
                finish_vector(items[i].vec, n_embd, d, r->normalize, v);
                json_array_append_new(embs, json_pack("{s:o, s:o*}", "chunk_id", cid, "embedding", embd_api_float_array(v, d)));
            } else {
                const char *msg = r->item_error[i] ? r->item_error[i] : items[i].message;
                json_array_append_new(errs, json_pack("{s:o, s:s}", "chunk_id", cid, "error", msg ? msg : "failed"));
            }
        }
        json_t *bid = json_object_get(r->root, "batch_id");
        root = json_pack("{s:O*, s:o*, s:o*}", "batch_id", bid ? bid : json_null(), "embeddings", embs, "errors", errs);
    }
    free(v);
    if (!root) goto oom;
    char *s = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(root);
    if (!s) goto oom;
    return s;
oom:
    free(v);
    embd_api_fail(e, 503, "out_of_memory", -1, "out of memory while building the response");
    return NULL;
}
