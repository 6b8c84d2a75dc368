/* Unicode character data for the tokenizer, as JavaScript (V8/ICU) sees it: utf8proc supplies the
 * properties, unicode_tables.h patches the characters where this Node's newer Unicode differs and
 * supplies the Cased/Case_Ignorable sets used by the final-sigma rule. */
#ifndef EMBD_TOK_UNICODE_H
#define EMBD_TOK_UNICODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tok_buf.h"

enum {
    TU_CTRL = 1,  /* \p{Cc}|\p{Cf}|\p{Co}|\p{Cs}: dropped by clean_text (except \t \n \r) */
    TU_SPACE = 2, /* JavaScript \s */
    TU_PUNCT = 4, /* \p{P} or ASCII punctuation/symbols: BertPreTokenizer splits on it */
    TU_MN = 8,    /* \p{Mn}: dropped by strip_accents */
    TU_WSP = 16,  /* \p{White_Space}: what transformers.js makes of \s in tokenizer.json regexes */
};

#define TU_MAX_LOWER 3 /* full lowercase mapping length */
#define TU_MAX_NFD 8   /* canonical decomposition length (Unicode max is 4) */

unsigned tu_flags(uint32_t cp);
extern const uint8_t tu_ascii_flags[128];
static inline unsigned tu_flags_fast(uint32_t cp)
{
    return cp < 128 ? tu_ascii_flags[cp] : tu_flags(cp);
}
/* Full context-free lowercase (toLowerCase without the final-sigma rule); returns the length. */
int tu_lower(uint32_t cp, uint32_t out[TU_MAX_LOWER]);
/* Full canonical decomposition (NFD of one character, before reordering); returns the length. */
int tu_nfd(uint32_t cp, uint32_t out[TU_MAX_NFD]);
int tu_ccc(uint32_t cp);
bool tu_cased(uint32_t cp);
bool tu_case_ignorable(uint32_t cp);
/* \p{L} and \p{N} (Node's data, range tables; ASCII inline) for the BPE pre-tokenizer's regex. */
bool tu_letter_slow(uint32_t cp);
bool tu_number_slow(uint32_t cp);
static inline bool tu_letter(uint32_t cp)
{
    return cp < 128 ? ((cp | 32) >= 'a' && (cp | 32) <= 'z') : tu_letter_slow(cp);
}
static inline bool tu_number(uint32_t cp)
{
    return cp < 128 ? (cp >= '0' && cp <= '9') : tu_number_slow(cp);
}
/* toLowerCase's final-sigma rule for U+03A3 at v[i]: preceded by a cased character and not
 * followed by one (case-ignorable characters skipped both ways). */
bool tu_final_sigma(const uint32_t *v, size_t n, size_t i);

/* Stable sort of a run of non-starters by combining class (canonical ordering); false when out
 * of memory. */
bool tu_order_marks(uint32_t *v, size_t n);
/* out = in lowercased as JavaScript's toLowerCase does (full mappings, final sigma); false when
 * out of memory. */
bool tu_lower_cps(const tok_cps *in, tok_cps *out);

/* BMP CJK ideograph ranges of BertNormalizer; transformers.js tests UTF-16 units, so the
 * supplementary-plane ranges of the Rust implementation never match there. */
static inline bool tu_is_chinese(uint32_t cp)
{
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
           (cp >= 0xF900 && cp <= 0xFAFF);
}

/* Returns len if s is valid UTF-8, else the offset of the first byte of the first ill-formed
 * sequence (overlong forms, surrogates, > U+10FFFF, truncated and stray bytes are ill-formed). */
size_t tu_utf8_validate(const uint8_t *s, size_t len);
/* Decodes one character of valid UTF-8 at s (at least 1 byte available); returns its length. */
static inline int tu_utf8_decode(const uint8_t *s, uint32_t *cp)
{
    uint8_t b = s[0];
    if (b < 0x80) { *cp = b; return 1; }
    if (b < 0xE0) { *cp = ((uint32_t)(b & 0x1F) << 6) | (s[1] & 0x3F); return 2; }
    if (b < 0xF0) {
        *cp = ((uint32_t)(b & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return 3;
    }
    *cp = ((uint32_t)(b & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
          ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    return 4;
}
/* Writes cp (<= 0x10FFFF) as UTF-8; returns the length (1-4). */
static inline int tu_utf8_encode(uint32_t cp, uint8_t *o)
{
    if (cp < 0x80) { o[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) { o[0] = (uint8_t)(0xC0 | (cp >> 6)); o[1] = (uint8_t)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | (cp >> 12)); o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | (cp >> 18)); o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

#endif
