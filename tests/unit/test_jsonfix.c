#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "util/jsonfix.h"

/* Runs the fix on an exact-size heap copy (no NUL after it, so ASan sees any overread) and checks
 * the replacement count and the resulting text. */
static void check(const char *in, size_t want_n, const char *want)
{
    size_t len = strlen(in);
    char *buf = malloc(len ? len : 1);
    assert_non_null(buf);
    memcpy(buf, in, len);
    size_t n = embd_json_fix_surrogates(buf, len);
    if (n != want_n || memcmp(buf, want, len) != 0 || strlen(want) != len)
        print_error("input %s: got %zu replacements, text %.*s\n", in, n, (int)len, buf);
    assert_int_equal(n, want_n);
    assert_int_equal(strlen(want), len);
    assert_memory_equal(buf, want, len);
    free(buf);
}

static void test_lone_high(void **state)
{
    (void)state;
    check("{\"t\":\"\\ud800 x\"}", 1, "{\"t\":\"\\uFFFD x\"}");
    check("\"\\uD800\"", 1, "\"\\uFFFD\"");
    check("\"\\uDbFf\"", 1, "\"\\uFFFD\"");
    check("\"abc\\ud800\"", 1, "\"abc\\uFFFD\"");             /* lone high at end of string */
    check("\"\\ud800\\u0041\"", 1, "\"\\uFFFD\\u0041\"");       /* followed by a non-surrogate */
    check("\"\\ud800\\ud800\\udc00\"", 1, "\"\\uFFFD\\ud800\\udc00\""); /* then a real pair */
    check("\"\\ud800\\n\\udc00\"", 2, "\"\\uFFFD\\n\\uFFFD\"");
}

static void test_lone_low(void **state)
{
    (void)state;
    check("\"\\udc00\"", 1, "\"\\uFFFD\"");
    check("\"\\uDFFF tail\"", 1, "\"\\uFFFD tail\"");
    check("\"\\udc00\\ud800\"", 2, "\"\\uFFFD\\uFFFD\""); /* reversed pair */
    check("\"\\udc00\\udc00\\udc00\"", 3, "\"\\uFFFD\\uFFFD\\uFFFD\"");
}

static void test_pairs_untouched(void **state)
{
    (void)state;
    check("\"\\ud83d\\ude00\"", 0, "\"\\ud83d\\ude00\"");
    check("\"\\uD83D\\uDE00x\\uDBFF\\uDFFF\"", 0, "\"\\uD83D\\uDE00x\\uDBFF\\uDFFF\"");
    check("\"\\u00e9\\uFFFD\\ud7ff\\ue000\"", 0, "\"\\u00e9\\uFFFD\\ud7ff\\ue000\"");
}

static void test_escaped_backslash(void **state)
{
    (void)state;
    check("\"\\\\ud800\"", 0, "\"\\\\ud800\"");             /* \\ then text "ud800" */
    check("\"\\\\\\ud800\"", 1, "\"\\\\\\uFFFD\"");         /* \\ then a real escape */
    check("\"\\\\\\\\ud800\"", 0, "\"\\\\\\\\ud800\"");
    check("\"a\\\"\\ud800\"", 1, "\"a\\\"\\uFFFD\"");       /* escaped quote keeps the string open */
    check("\"\\\\\" \"\\ud800\"", 1, "\"\\\\\" \"\\uFFFD\"");
}

static void test_strings_only(void **state)
{
    (void)state;
    check("{\"\\ud800\":1}", 1, "{\"\\uFFFD\":1}"); /* keys are strings too */
    check("{\"a\":1} \\ud800", 0, "{\"a\":1} \\ud800");
    check("[\"x\", \"\\udfff\", 2]", 1, "[\"x\", \"\\uFFFD\", 2]");
    check("", 0, "");
}

static void test_truncated(void **state)
{
    (void)state;
    check("\"\\ud80", 0, "\"\\ud80");                   /* malformed: left to the parser */
    check("\"\\ud800", 1, "\"\\uFFFD");                 /* at the very end of the buffer */
    check("\"\\ud800\\udc0", 1, "\"\\uFFFD\\udc0");
    check("\"\\ud800\\", 1, "\"\\uFFFD\\");
    check("\"\\u12G4\\ud800\"", 1, "\"\\u12G4\\uFFFD\"");
    check("\"\\", 0, "\"\\");
}

/* The point of the fix: jansson rejects the lone surrogate and accepts the result, which holds
 * U+FFFD; JSON_ALLOW_NUL keeps the rest of the string intact. */
static void test_jansson(void **state)
{
    (void)state;
    char line[] = "{\"text\":\"a\\u0000b\\ud800c\"}";
    json_error_t e;
    json_t *j = json_loads(line, JSON_ALLOW_NUL, &e);
    assert_null(j);
    assert_int_equal(embd_json_fix_surrogates(line, strlen(line)), 1);
    j = json_loads(line, JSON_ALLOW_NUL, &e);
    assert_non_null(j);
    const json_t *s = json_object_get(j, "text");
    assert_int_equal(json_string_length(s), 7);
    assert_memory_equal(json_string_value(s), "a\0b\xEF\xBF\xBD" "c", 7);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lone_high),
        cmocka_unit_test(test_lone_low),
        cmocka_unit_test(test_pairs_untouched),
        cmocka_unit_test(test_escaped_backslash),
        cmocka_unit_test(test_strings_only),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_jansson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
