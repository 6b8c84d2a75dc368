/* Collection inputs on arbitrary bytes. First byte even: a search filter (JSON) compiled to SQL;
 * a filter that compiles must prepare and run on SQLite. Odd: the chunker on the remaining bytes
 * with a word-count token counter; every chunk lies in the text, in order, within chunk_size, and
 * together they cover every word. */
#include <jansson.h>
#include <sqlite3.h>
#include <string.h>

#include "collections/chunker.h"
#include "collections/filter.h"
#include "fuzz_common.h"

static long count_words(void *ud, const char *s, size_t len)
{
    (void)ud;
    long n = 0;
    int in = 0;
    for (size_t i = 0; i < len; i++) {
        int sp = s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r' || s[i] == '\f' || s[i] == '\v';
        n += !sp && !in;
        in = !sp;
    }
    return n;
}

static void fuzz_filter(const uint8_t *data, size_t size)
{
    json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    embd_filter *f = NULL;
    char err[256];
    if (!embd_filter_compile(j, "m", &f, err, sizeof err) && f) {
        static sqlite3 *db;
        if (!db) {
            FUZZ_CHECK(sqlite3_open(":memory:", &db) == SQLITE_OK);
            FUZZ_CHECK(sqlite3_exec(db, "CREATE TABLE t(m TEXT); INSERT INTO t VALUES ('{\"a\":1,\"b\":\"x\"}');",
                                    NULL, NULL, NULL) == SQLITE_OK);
        }
        char sql[8192];
        const char *cond = embd_filter_sql(f);
        if (strlen(cond) < sizeof sql - 64) {
            snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM t WHERE 1%s", cond);
            sqlite3_stmt *st = NULL;
            FUZZ_CHECK(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK);
            embd_filter_bind(f, st, 1);
            FUZZ_CHECK(sqlite3_step(st) == SQLITE_ROW);
            sqlite3_finalize(st);
        }
    }
    embd_filter_free(f);
    json_decref(j);
}

static void fuzz_chunker(const uint8_t *data, size_t size)
{
    if (size < 2) return;
    embd_chunk_opts o = {.chunk_size = 1 + data[0] % 64, .overlap = data[1] % 64, .code_aware = data[0] & 64};
    const char *text = (const char *)data + 2;
    size_t len = size - 2;
    char *copy = malloc(len ? len : 1); /* exact size: ASan sees reads past the end */
    FUZZ_CHECK(copy);
    memcpy(copy, text, len);
    embd_chunk *c = NULL;
    size_t n = 0;
    char err[256];
    int rc = embd_chunk_text(copy, len, &o, count_words, NULL, &c, &n, err, sizeof err);
    if (o.overlap >= o.chunk_size) {
        FUZZ_CHECK(rc == -1);
    } else {
        FUZZ_CHECK(rc == 0);
        size_t covered = 0;
        for (size_t i = 0; i < n; i++) {
            FUZZ_CHECK(c[i].start < c[i].end && c[i].end <= len);
            FUZZ_CHECK((size_t)count_words(NULL, copy + c[i].start, c[i].end - c[i].start) <= o.chunk_size);
            if (i) FUZZ_CHECK(c[i].start > c[i - 1].start && c[i].end > c[i - 1].end);
            if (c[i].start > covered) FUZZ_CHECK(count_words(NULL, copy + covered, c[i].start - covered) == 0);
            if (c[i].end > covered) covered = c[i].end;
        }
        FUZZ_CHECK(count_words(NULL, copy + covered, len - covered) == 0);
    }
    free(c);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size) return 0;
    if (data[0] % 2 == 0) fuzz_filter(data + 1, size - 1);
    else fuzz_chunker(data + 1, size - 1);
    return 0;
}
