/* POST /tokenize, TEI's shape: one list of {id, text, special} per input. Offsets into the input
 * (TEI's start/stop) are not produced: the tokenizer does not track them. */
#include <stdlib.h>
#include <string.h>

#include "server/api.h"

static json_t *tokens_of(const embd_model *m, const char *s, size_t len, bool special, size_t i, embd_api_error *e) {
    embd_tokens tk = {0};
    size_t bad = 0;
    int rc = embd_tokenizer_encode(m->tok, s, len, 0, &tk, &bad);
    if (rc != EMBD_TOK_OK) {
        embd_tokens_free(&tk);
        if (rc == EMBD_TOK_EUTF8) embd_api_fail(e, 422, "invalid_utf8", (long)i, "input %zu is not valid UTF-8", i);
        else embd_api_fail(e, 503, "out_of_memory", -1, "out of memory while tokenizing");
        return NULL;
    }
    const int32_t cls = embd_tokenizer_cls_id(m->tok), sep = embd_tokenizer_sep_id(m->tok);
    json_t *arr = json_array();
    size_t from = special ? 0 : 1, to = special ? tk.n : tk.n - 1;
    for (size_t k = from; k < to && arr; k++) {
        const char *t = embd_tokenizer_token(m->tok, tk.ids[k]);
        bool sp = (k == 0 && tk.ids[k] == cls) || (k + 1 == tk.n && tk.ids[k] == sep);
        json_array_append_new(arr, json_pack("{s:i, s:s, s:b}", "id", (int)tk.ids[k], "text", t ? t : "", "special", sp));
    }
    embd_tokens_free(&tk);
    if (!arr) embd_api_fail(e, 503, "out_of_memory", -1, "out of memory");
    return arr;
}

char *embd_api_tokenize(json_t *root, bool had_bad_utf8, const embd_model *m, const embd_api_limits *lim, embd_api_error *e) {
    bool special = true;
    json_t *sp = json_object_get(root, "add_special_tokens");
    if (sp && !json_is_null(sp)) {
        if (!json_is_boolean(sp)) {
            embd_api_fail(e, 422, "invalid_request", -1, "$.add_special_tokens: expected true or false");
            return NULL;
        }
        special = json_is_true(sp);
    }
    json_t *in = json_object_get(root, "inputs");
    json_t *out = NULL;
    bool single = json_is_string(in);
    if (!in) {
        embd_api_fail(e, 422, "invalid_request", -1, "$.inputs: missing");
    } else if (!single && !json_is_array(in)) {
        embd_api_fail(e, 422, "invalid_request", -1, "$.inputs: expected a string or an array of strings");
    } else if (!single && json_array_size(in) == 0) {
        embd_api_fail(e, 422, "invalid_request", -1, "$.inputs: expected at least one input");
    } else if (!single && json_array_size(in) > lim->max_items) {
        embd_api_fail(e, 413, "too_many_items", -1, "$.inputs: %zu inputs, more than the limit of %zu per request",
                      json_array_size(in), lim->max_items);
    } else {
        size_t n = single ? 1 : json_array_size(in);
        out = json_array();
        for (size_t i = 0; i < n && out; i++) {
            json_t *v = single ? in : json_array_get(in, i);
            if (!json_is_string(v)) {
                embd_api_fail(e, 422, "invalid_request", (long)i, "$.inputs[%zu]: expected a string", i);
                json_decref(out);
                return NULL;
            }
            const char *text = json_string_value(v);
            size_t chars = embd_api_utf8_chars(text, json_string_length(v));
            if (chars > lim->max_input_chars) {
                embd_api_fail(e, 413, "input_too_large", (long)i, "input %zu has %zu characters, more than the limit of %zu",
                              i, chars, lim->max_input_chars);
                json_decref(out);
                return NULL;
            }
            if (had_bad_utf8 && embd_api_has_sentinel(text, json_string_length(v))) {
                embd_api_fail(e, 422, "invalid_utf8", (long)i, "input %zu is not valid UTF-8", i);
                json_decref(out);
                return NULL;
            }
            json_t *toks = tokens_of(m, json_string_value(v), json_string_length(v), special, i, e);
            if (!toks) {
                json_decref(out);
                return NULL;
            }
            json_array_append_new(out, toks);
        }
        if (!out) embd_api_fail(e, 503, "out_of_memory", -1, "out of memory");
    }
    char *s = out ? json_dumps(out, JSON_COMPACT) : NULL;
    json_decref(out);
    if (out && !s) embd_api_fail(e, 503, "out_of_memory", -1, "out of memory");
    return s;
}
