#include "tokenizer/tok_unicode.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* TU_NO_TABLES builds utf8proc's view alone: tools/tokfix/gen_unicode_tables.mjs compares it with
 * Node's to generate the tables. */
#ifndef TU_NO_TABLES
#include "tokenizer/unicode_tables.h"
#else
typedef struct {
    uint32_t cp;
    uint8_t flags, n_lower, n_nfd;
    uint32_t lower[TU_MAX_LOWER], nfd[TU_MAX_NFD];
} tu_delta;
static const tu_delta TU_DELTA[1] = {{0xFFFFFFFFu, 0, 0, 0, {0}, {0}}};
static const uint32_t TU_CASED[1][2] = {{0, 0}};
static const uint32_t TU_CASE_IGNORABLE[1][2] = {{0, 0}};
static const uint32_t TU_LETTER[1][2] = {{0, 0}};
static const uint32_t TU_NUMBER[1][2] = {{0, 0}};
#endif

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

const uint8_t tu_ascii_flags[128] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 19, 19, 19, 19, 19, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    18, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4, 4,
    4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4,
    4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 1,
};

static const tu_delta *delta_find(uint32_t cp)
{
    size_t lo = 0, hi = NELEM(TU_DELTA);
    if (cp < TU_DELTA[0].cp || cp > TU_DELTA[NELEM(TU_DELTA) - 1].cp)
        return NULL;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (TU_DELTA[mid].cp < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (lo < NELEM(TU_DELTA) && TU_DELTA[lo].cp == cp) ? &TU_DELTA[lo] : NULL;
}

static bool in_ranges(const uint32_t (*r)[2], size_t n, uint32_t cp)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r[mid][1] < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && r[lo][0] <= cp && cp <= r[lo][1];
}

static bool js_space(uint32_t cp)
{
    switch (cp) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20: case 0xA0: case 0x1680:
    case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000: case 0xFEFF:
        return true;
    default:
        return cp >= 0x2000 && cp <= 0x200A;
    }
}

/* \p{White_Space} */
static bool white_space(uint32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

static bool ascii_punct(uint32_t cp)
{
    return (cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) || (cp >= 0x5B && cp <= 0x60) ||
           (cp >= 0x7B && cp <= 0x7E);
}

unsigned tu_flags(uint32_t cp)
{
    if (cp < 128)
        return tu_ascii_flags[cp];
    const tu_delta *d = delta_find(cp);
    if (d)
        return d->flags;
    unsigned f = 0;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CS:
        f |= TU_CTRL;
        break;
    case UTF8PROC_CATEGORY_PC: case UTF8PROC_CATEGORY_PD: case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE: case UTF8PROC_CATEGORY_PI: case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
        f |= TU_PUNCT;
        break;
    case UTF8PROC_CATEGORY_MN:
        f |= TU_MN;
        break;
    default:
        break;
    }
    if (ascii_punct(cp))
        f |= TU_PUNCT;
    if (js_space(cp))
        f |= TU_SPACE;
    if (white_space(cp))
        f |= TU_WSP;
    return f;
}

int tu_lower(uint32_t cp, uint32_t out[TU_MAX_LOWER])
{
    const tu_delta *d = delta_find(cp);
    if (d) {
        memcpy(out, d->lower, d->n_lower * sizeof(uint32_t));
        return d->n_lower;
    }
    if (cp == 0x130) { /* the one unconditional multi-character lowercase mapping */
        out[0] = 0x69;
        out[1] = 0x307;
        return 2;
    }
    out[0] = (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
    return 1;
}

int tu_nfd(uint32_t cp, uint32_t out[TU_MAX_NFD])
{
    const tu_delta *d = delta_find(cp);
    if (d) {
        memcpy(out, d->nfd, d->n_nfd * sizeof(uint32_t));
        return d->n_nfd;
    }
    utf8proc_int32_t buf[TU_MAX_NFD];
    int last = 0;
    utf8proc_ssize_t n = utf8proc_decompose_char((utf8proc_int32_t)cp, buf, TU_MAX_NFD,
                                                 UTF8PROC_DECOMPOSE, &last);
    if (n <= 0 || n > TU_MAX_NFD) { /* cannot happen for canonical decompositions */
        out[0] = cp;
        return 1;
    }
    for (utf8proc_ssize_t i = 0; i < n; i++)
        out[i] = (uint32_t)buf[i];
    return (int)n;
}

int tu_ccc(uint32_t cp)
{
    return utf8proc_get_property((utf8proc_int32_t)cp)->combining_class;
}

bool tu_cased(uint32_t cp)
{
    return in_ranges(TU_CASED, NELEM(TU_CASED), cp);
}

bool tu_case_ignorable(uint32_t cp)
{
    return in_ranges(TU_CASE_IGNORABLE, NELEM(TU_CASE_IGNORABLE), cp);
}

bool tu_letter_slow(uint32_t cp)
{
    return in_ranges(TU_LETTER, NELEM(TU_LETTER), cp);
}

bool tu_number_slow(uint32_t cp)
{
    return in_ranges(TU_NUMBER, NELEM(TU_NUMBER), cp);
}

/* The nearest character in direction dir that is not case-ignorable is cased (ICU's context test;
 * a character that is both, like U+02B0, counts as ignorable). */
static bool cased_around(const uint32_t *v, size_t n, size_t i, int dir)
{
    for (size_t j = i;;) {
        if (dir < 0) {
            if (j == 0)
                return false;
            j--;
        } else {
            if (j + 1 >= n)
                return false;
            j++;
        }
        if (!tu_case_ignorable(v[j]))
            return tu_cased(v[j]);
    }
}

bool tu_final_sigma(const uint32_t *v, size_t n, size_t i)
{
    return cased_around(v, n, i, -1) && !cased_around(v, n, i, 1);
}

size_t tu_utf8_validate(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        if (i + 8 <= len) { /* skip ASCII eight bytes at a time */
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (!(w & 0x8080808080808080ull)) {
                i += 8;
                continue;
            }
        }
        uint8_t b = s[i];
        if (b < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (b >= 0xC2 && b <= 0xDF)
            need = 1;
        else if (b >= 0xE0 && b <= 0xEF) {
            need = 2;
            if (b == 0xE0) lo = 0xA0;      /* overlong */
            else if (b == 0xED) hi = 0x9F; /* surrogates */
        } else if (b >= 0xF0 && b <= 0xF4) {
            need = 3;
            if (b == 0xF0) lo = 0x90;      /* overlong */
            else if (b == 0xF4) hi = 0x8F; /* > U+10FFFF */
        } else
            return i;
        if (len - i - 1 < need || s[i + 1] < lo || s[i + 1] > hi)
            return i;
        for (size_t k = 2; k <= need; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return i;
        i += need + 1;
    }
    return len;
}

bool tu_order_marks(uint32_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        v[i] |= (uint32_t)tu_ccc(v[i]) << 21; /* code points fit in 21 bits */
    if (n <= 64) {
        for (size_t i = 1; i < n; i++) {
            uint32_t x = v[i];
            size_t j = i;
            while (j > 0 && (v[j - 1] >> 21) > (x >> 21)) {
                v[j] = v[j - 1];
                j--;
            }
            v[j] = x;
        }
    } else { /* counting sort: long runs (zalgo text) stay linear */
        size_t count[257] = {0};
        uint32_t *tmp = malloc(n * sizeof *tmp);
        if (!tmp)
            return false;
        for (size_t i = 0; i < n; i++)
            count[(v[i] >> 21) + 1]++;
        for (size_t k = 1; k < 257; k++)
            count[k] += count[k - 1];
        for (size_t i = 0; i < n; i++)
            tmp[count[v[i] >> 21]++] = v[i];
        memcpy(v, tmp, n * sizeof *tmp);
        free(tmp);
    }
    for (size_t i = 0; i < n; i++)
        v[i] &= 0x1FFFFF;
    return true;
}

bool tu_lower_cps(const tok_cps *in, tok_cps *out)
{
    out->n = 0;
    if (!tok_cps_reserve(out, in->n + 16))
        return false;
    for (size_t i = 0; i < in->n; i++) {
        uint32_t cp = in->v[i];
        if (!tok_cps_reserve(out, TU_MAX_LOWER))
            return false;
        if (cp < 0x80)
            out->v[out->n++] = (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
        else if (cp == 0x3A3)
            out->v[out->n++] = tu_final_sigma(in->v, in->n, i) ? 0x3C2 : 0x3C3;
        else
            out->n += (size_t)tu_lower(cp, out->v + out->n);
    }
    return true;
}
