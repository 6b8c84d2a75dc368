#include "collections/filter.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/sys.h"

enum { MAX_KEYS = 32, MAX_IN = 256, MAX_KEY_BYTES = 128 };

typedef struct {
    int kind; /* 0 text, 1 integer, 2 real, 3 path */
    const char *s;
    long long i;
    double d;
} binding;

struct embd_filter {
    char *sql;
    size_t len, cap;
    binding *b;
    size_t nb, capb;
    char **paths; /* owned JSON paths */
    size_t np;
};

static int append(embd_filter *f, const char *s) {
    size_t n = strlen(s);
    if (f->len + n + 1 > f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 256;
        while (cap < f->len + n + 1) cap *= 2;
        char *p = realloc(f->sql, cap);
        if (!p) return -1;
        f->sql = p;
        f->cap = cap;
    }
    memcpy(f->sql + f->len, s, n + 1);
    f->len += n;
    return 0;
}

static int bind_add(embd_filter *f, binding b) {
    if (f->nb == f->capb) {
        size_t cap = f->capb ? f->capb * 2 : 16;
        binding *p = realloc(f->b, cap * sizeof *p);
        if (!p) return -1;
        f->b = p;
        f->capb = cap;
    }
    f->b[f->nb++] = b;
    return 0;
}

/* One "metadata.key equals v" test: type first, so true never equals 1. */
static int add_test(embd_filter *f, const char *col, const char *path, const json_t *v, char *err, size_t errlen) {
    char buf[512];
    const char *type;
    binding val = {0};
    bool has_val = true;
    switch (json_typeof(v)) {
    case JSON_STRING: type = "='text'", val = (binding){.kind = 0, .s = json_string_value(v)}; break;
    case JSON_INTEGER: type = " IN ('integer','real')", val = (binding){.kind = 1, .i = json_integer_value(v)}; break;
    case JSON_REAL: type = " IN ('integer','real')", val = (binding){.kind = 2, .d = json_real_value(v)}; break;
    case JSON_TRUE: type = "='true'", has_val = false; break;
    case JSON_FALSE: type = "='false'", has_val = false; break;
    case JSON_NULL: type = "='null'", has_val = false; break;
    default: return embd_fail(err, errlen, "filter values must be strings, numbers, booleans or null");
    }
    if (has_val)
        snprintf(buf, sizeof buf, "(json_type(%s, ?)%s AND json_extract(%s, ?) = ?)", col, type, col);
    else
        snprintf(buf, sizeof buf, "(json_type(%s, ?)%s)", col, type);
    binding p = {.kind = 3, .s = path};
    if (append(f, buf) || bind_add(f, p) || (has_val && (bind_add(f, p) || bind_add(f, val))))
        return embd_fail(err, errlen, "out of memory");
    return 0;
}

int embd_filter_compile(const json_t *filter, const char *column, embd_filter **out, char *err, size_t errlen) {
    *out = NULL;
    if (!filter || json_is_null(filter)) return 0;
    if (!json_is_object(filter)) return embd_fail(err, errlen, "filter must be an object of metadata keys");
    if (json_object_size(filter) > MAX_KEYS) return embd_fail(err, errlen, "filter has more than %d keys", MAX_KEYS);
    embd_filter *f = calloc(1, sizeof *f);
    if (!f) return embd_fail(err, errlen, "out of memory");
    f->paths = calloc(json_object_size(filter) + 1, sizeof *f->paths);
    if (!f->paths || append(f, "")) goto oom;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)filter, key, v) {
        size_t kl = strlen(key);
        if (!kl || kl > MAX_KEY_BYTES || strpbrk(key, "\"\\"))
            goto bad_key;
        char *path = malloc(kl + 5);
        if (!path) goto oom;
        snprintf(path, kl + 5, "$.\"%s\"", key);
        f->paths[f->np++] = path;
        if (append(f, " AND (")) goto oom;
        if (json_is_object(v)) {
            json_t *in = json_object_get(v, "in");
            if (json_object_size(v) != 1 || !json_is_array(in) || !json_array_size(in) || json_array_size(in) > MAX_IN) {
                embd_fail(err, errlen, "filter on '%s': an object must be {\"in\": [1..%d values]}", key, MAX_IN);
                goto fail;
            }
            size_t i;
            json_t *x;
            json_array_foreach(in, i, x) {
                if (i && append(f, " OR ")) goto oom;
                if (add_test(f, column, path, x, err, errlen)) goto fail;
            }
        } else if (add_test(f, column, path, v, err, errlen)) {
            goto fail;
        }
        if (append(f, ")")) goto oom;
    }
    *out = f;
    return 0;
bad_key:
    embd_fail(err, errlen, "filter keys must be 1..%d bytes without '\"' or '\\'", MAX_KEY_BYTES);
    goto fail;
oom:
    embd_fail(err, errlen, "out of memory");
fail:
    embd_filter_free(f);
    return -1;
}

const char *embd_filter_sql(const embd_filter *f) { return f ? f->sql : ""; }

int embd_filter_bind(const embd_filter *f, sqlite3_stmt *st, int first) {
    if (!f) return first;
    for (size_t i = 0; i < f->nb; i++, first++) {
        const binding *b = &f->b[i];
        if (b->kind == 1) sqlite3_bind_int64(st, first, b->i);
        else if (b->kind == 2) sqlite3_bind_double(st, first, b->d);
        else sqlite3_bind_text(st, first, b->s, -1, SQLITE_STATIC);
    }
    return first;
}

void embd_filter_free(embd_filter *f) {
    if (!f) return;
    for (size_t i = 0; i < f->np; i++) free(f->paths[i]);
    free(f->paths);
    free(f->sql);
    free(f->b);
    free(f);
}
