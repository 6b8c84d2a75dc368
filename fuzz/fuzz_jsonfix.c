/* embd_json_fix_surrogates on arbitrary bytes, then jansson on the result (as src/cli/reader.c
 * does). Besides "no crash": only lone surrogate escapes change, each to \uFFFD; a second pass
 * changes nothing; jansson never rejects the result for a surrogate. */
#include <jansson.h>
#include <string.h>

#include "fuzz_common.h"
#include "util/jsonfix.h"

static int hex4(const uint8_t *s)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int c = s[i], h = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                                    : c >= 'A' && c <= 'F'   ? c - 'A' + 10
                                                                             : -1;
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* exact-size copies: ASan sees any access past the end */
    char *a = malloc(size ? size : 1), *b = malloc(size ? size : 1);
    FUZZ_CHECK(a && b);
    memcpy(a, data, size);
    size_t n = embd_json_fix_surrogates(a, size);

    size_t seen = 0;
    for (size_t i = 0; i < size;) {
        if (size - i >= 6 && !memcmp(a + i, "\\uFFFD", 6) && memcmp(data + i, a + i, 6)) {
            int v = hex4(data + i + 2);
            FUZZ_CHECK(data[i] == '\\' && data[i + 1] == 'u' && v >= 0xD800 && v <= 0xDFFF);
            seen++;
            i += 6;
        } else {
            FUZZ_CHECK(a[i] == (char)data[i]);
            i++;
        }
    }
    FUZZ_CHECK(seen == n);

    memcpy(b, a, size);
    FUZZ_CHECK(embd_json_fix_surrogates(b, size) == 0);
    FUZZ_CHECK(!memcmp(a, b, size));

    json_error_t je;
    json_t *root = json_loadb(a, size, JSON_ALLOW_NUL, &je);
    if (root)
        json_decref(root);
    else /* "invalid Unicode '\uD800'" etc.: a surrogate escape the fix missed */
        FUZZ_CHECK(strncmp(je.text, "invalid Unicode '", 17) != 0);
    free(a);
    free(b);
    return 0;
}
