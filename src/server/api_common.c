/* Pieces every endpoint shares: the error body and turning request bytes into JSON. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "server/api.h"
#include "util/jsonfix.h"

int embd_api_fail(embd_api_error *e, int status, const char *type, long index, const char *fmt, ...) {
    e->status = status;
    e->type = type;
    e->index = index;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    /* Messages quote client text, and truncation can split a character: JSON needs valid UTF-8. */
    size_t len = strlen(e->message);
    for (size_t i = 0; i < len;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)e->message + i, (utf8proc_ssize_t)(len - i), &cp);
        if (k > 0) {
            i += (size_t)k;
        } else {
            e->message[i++] = '?';
        }
    }
    return -1;
}

char *embd_api_error_json(const embd_api_error *e) {
    json_t *inner = json_pack("{s:s, s:s}", "type", e->type ? e->type : "error", "message", e->message);
    if (inner && e->index >= 0) json_object_set_new(inner, "index", json_integer(e->index));
    json_t *root = inner ? json_pack("{s:o}", "error", inner) : NULL;
    char *s = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    return s;
}

/* U+FFFF: a noncharacter, so a client text practically never holds it; it stands in for bytes
 * that are not UTF-8 so that jansson (which rejects them) can still parse the rest. */
static const char SENTINEL[3] = {(char)0xEF, (char)0xBF, (char)0xBF};

static char *replace_bad_utf8(const char *s, size_t len, size_t *out_len) {
    char *out = NULL;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &cp);
        if (k > 0 && !out) {
            i += (size_t)k;
            continue;
        }
        if (!out) { /* first bad byte: copy what was good, then continue in the slow lane */
            out = malloc(len * 3 + 1);
            if (!out) return NULL;
            memcpy(out, s, i);
            o = i;
        }
        if (k > 0) {
            memcpy(out + o, s + i, (size_t)k);
            o += (size_t)k;
            i += (size_t)k;
        } else {
            memcpy(out + o, SENTINEL, sizeof SENTINEL);
            o += sizeof SENTINEL;
            i++;
        }
    }
    if (out) {
        out[o] = 0;
        *out_len = o;
    }
    return out;
}

bool embd_api_has_sentinel(const char *s, size_t len) { return memmem(s, len, SENTINEL, sizeof SENTINEL) != NULL; }

size_t embd_api_utf8_chars(const char *s, size_t len) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++) n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

json_t *embd_api_parse_body(char *body, size_t len, bool *had_bad_utf8, embd_api_error *e) {
    *had_bad_utf8 = false;
    embd_json_fix_surrogates(body, len);
    size_t clean_len = len;
    char *clean = replace_bad_utf8(body, len, &clean_len);
    if (clean) *had_bad_utf8 = true;
    json_error_t je;
    /* Duplicate keys are refused: two parsers (a proxy's, ours) must not read different requests. */
    json_t *root = json_loadb(clean ? clean : body, clean_len, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &je);
    free(clean);
    if (!root) {
        if (len == 0)
            embd_api_fail(e, 422, "invalid_json", -1, "request body is empty; expected a JSON object");
        else
            embd_api_fail(e, 422, "invalid_json", -1, "invalid JSON at line %d column %d: %s", je.line, je.column,
                          je.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        embd_api_fail(e, 422, "invalid_request", -1, "$: expected a JSON object");
        return NULL;
    }
    return root;
}

int embd_api_get_bool(json_t *root, const char *key, bool *out, embd_api_error *e) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return embd_api_fail(e, 422, "invalid_request", -1, "$.%s: expected true or false", key);
    *out = json_is_true(v);
    return 0;
}

int embd_api_check_count(size_t n, const char *path, const embd_api_limits *lim, embd_api_error *e) {
    if (n == 0) return embd_api_fail(e, 422, "invalid_request", -1, "%s: expected at least one input", path);
    if (n > lim->max_items)
        return embd_api_fail(e, 413, "too_many_items", -1, "%s: %zu inputs, more than the limit of %zu per request",
                             path, n, lim->max_items);
    return 0;
}

int embd_api_check_text_size(const char *s, size_t len, size_t i, const embd_api_limits *lim, embd_api_error *e) {
    size_t c = embd_api_utf8_chars(s, len);
    if (c > lim->max_input_chars)
        return embd_api_fail(e, 413, "input_too_large", (long)i,
                             "input %zu has %zu characters, more than the limit of %zu", i, c, lim->max_input_chars);
    return 0;
}

json_t *embd_api_prompts_json(const embd_model *m) {
    json_t *o = json_object();
    for (size_t i = 0; o && i < m->n_prompts; i++) json_object_set_new(o, m->prompt_names[i], json_string(m->prompt_texts[i]));
    return o;
}
