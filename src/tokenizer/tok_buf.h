/* Small growable pieces shared by the WordPiece and Unigram tokenizers. Internal to src/tokenizer. */
#ifndef EMBD_TOK_BUF_H
#define EMBD_TOK_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A half-open range of a text: bytes, or code points once normalized. */
typedef struct {
    size_t start, end;
} tok_span;

typedef struct {
    tok_span *v;
    size_t n, cap;
} tok_spanbuf;

/* Appends [start, end); false when out of memory. */
bool tok_span_push(tok_spanbuf *b, size_t start, size_t end);

/* Code points of a text being normalized. */
typedef struct {
    uint32_t *v;
    size_t n, cap;
} tok_cps;

/* Room for extra more code points (capacity doubles from 256); false when out of memory. */
bool tok_cps_reserve(tok_cps *b, size_t extra);

/* NUL-terminated copy of n bytes (which may contain NUL), or NULL. */
char *tok_dup_bytes(const char *s, size_t n);

#endif
