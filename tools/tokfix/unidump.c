/* Prints the tokenizer's character data as utf8proc alone gives it, one line per code point:
 * "cp flags lower... ; nfd..." (hex). Built and run by gen_unicode_tables.mjs. */
#define TU_NO_TABLES
#include "../../src/tokenizer/tok_unicode.c"

#include <stdio.h>

int main(void)
{
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF)
            continue;
        uint32_t lo[TU_MAX_LOWER], nfd[TU_MAX_NFD];
        int nl = tu_lower(cp, lo), nn = tu_nfd(cp, nfd);
        printf("%x %u", (unsigned)cp, tu_flags(cp));
        for (int i = 0; i < nl; i++)
            printf(" %x", (unsigned)lo[i]);
        printf(" ;");
        for (int i = 0; i < nn; i++)
            printf(" %x", (unsigned)nfd[i]);
        putchar('\n');
    }
    return 0;
}
