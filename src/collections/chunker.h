/* Splits a document into overlapping chunks of at most chunk_size tokens, cutting on line and
 * paragraph boundaries (and, in code-aware mode, before top-level definitions) where it can.
 * The tokenizer has no offset API, so the text is cut into pieces at line (then word) boundaries,
 * each piece is measured with the token counter, and pieces are packed. BERT's pre-tokenizer
 * splits at whitespace, so piece counts add up to the count of their concatenation. */
#ifndef EMBD_CHUNKER_H
#define EMBD_CHUNKER_H

#include <stdbool.h>
#include <stddef.h>

#include "tokenizer/tokenizer.h"

typedef struct {
    size_t chunk_size; /* tokens per chunk, special tokens not counted (> 0) */
    size_t overlap;    /* tokens repeated from the end of the previous chunk (< chunk_size) */
    bool code_aware;   /* avoid splitting inside functions/blocks */
} embd_chunk_opts;

typedef struct {
    size_t start, end; /* byte range in the document */
    size_t n_tokens;   /* estimate: the sum of its pieces' counts */
} embd_chunk;

/* Tokens in s[0, len) without [CLS]/[SEP]; < 0 on error (e.g. invalid UTF-8). */
typedef long (*embd_token_count_fn)(void *ud, const char *s, size_t len);

/* Token counter over a tokenizer (ud: const embd_tokenizer *). */
long embd_chunk_count_tokens(void *ud, const char *s, size_t len);

/* *out gets *n chunks (malloc'd; 0 chunks for text with no visible characters). Returns 0, or -1
 * with err (bad options, counter failure, out of memory). */
int embd_chunk_text(const char *text, size_t len, const embd_chunk_opts *o, embd_token_count_fn count, void *ud,
                    embd_chunk **out, size_t *n, char *err, size_t errlen);

#endif
