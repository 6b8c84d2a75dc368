/* Metadata filters for collection search: {"key": value, "key2": {"in": [v1, v2]}, ...}, all
 * keys must match. Values are strings, numbers, booleans or null, compared by JSON type and value
 * (1 matches 1.0; true does not match 1). Compiled to an SQLite condition over a metadata column. */
#ifndef EMBD_FILTER_H
#define EMBD_FILTER_H

#include <jansson.h>
#include <sqlite3.h>
#include <stddef.h>

typedef struct embd_filter embd_filter;

/* NULL/JSON null filter -> *out NULL (match all). Returns 0, or -1 with err for a malformed one. */
int embd_filter_compile(const json_t *filter, const char *column, embd_filter **out, char *err, size_t errlen);
/* " AND (...)" to append to a WHERE clause ("" for NULL). */
const char *embd_filter_sql(const embd_filter *f);
/* Binds the filter's parameters starting at index first; returns the next free index. */
int embd_filter_bind(const embd_filter *f, sqlite3_stmt *st, int first);
void embd_filter_free(embd_filter *f);

#endif
