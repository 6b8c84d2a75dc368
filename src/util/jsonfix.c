#include "util/jsonfix.h"

#include <stdbool.h>
#include <string.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Value of the escape "\uXXXX" at s[0..6), or -1. */
static long uescape(const char *s, size_t avail)
{
    if (avail < 6 || s[0] != '\\' || s[1] != 'u')
        return -1;
    long v = 0;
    for (int i = 2; i < 6; i++) {
        int h = hexval(s[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

size_t embd_json_fix_surrogates(char *json, size_t len)
{
    size_t n = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char c = json[i];
        if (!in_str) {
            in_str = c == '"';
            continue;
        }
        if (c == '"') {
            in_str = false;
            continue;
        }
        if (c != '\\')
            continue;
        long v = uescape(json + i, len - i);
        if (v < 0) { /* any other escape: skip the escaped character (may be '\\' or '"') */
            i++;
            continue;
        }
        if (v >= 0xD800 && v <= 0xDBFF) {
            long lo = uescape(json + i + 6, len - i - 6); /* len - i >= 6 here */
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                i += 11; /* a valid pair */
                continue;
            }
        } else if (!(v >= 0xDC00 && v <= 0xDFFF)) {
            i += 5;
            continue;
        }
        memcpy(json + i, "\\uFFFD", 6);
        n++;
        i += 5;
    }
    return n;
}
