/* Prints utf8proc's full compatibility decomposition (NFKD of one character, before reordering)
 * of every code point whose decomposition is not itself: "cp: d1 d2 ..." (hex). Built and run by
 * gen_nfkc_delta.mjs. */
#include <stdio.h>
#include <utf8proc.h>

int main(void)
{
    for (utf8proc_int32_t cp = 0; cp <= 0x10FFFF; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF)
            continue;
        utf8proc_int32_t buf[32];
        int last = 0;
        utf8proc_ssize_t n = utf8proc_decompose_char(cp, buf, 32, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, &last);
        if (n == 1 && buf[0] == cp)
            continue;
        printf("%x:", (unsigned)cp);
        for (utf8proc_ssize_t i = 0; i < n; i++)
            printf(" %x", (unsigned)buf[i]);
        putchar('\n');
    }
    return 0;
}
