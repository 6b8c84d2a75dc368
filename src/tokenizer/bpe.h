/* Byte-level BPE (CLIP's tokenizer.json) behind the embd_tokenizer API, with transformers.js's
 * ids: tokenizer.c keeps the public entry points and the start/end tokens + truncation, and hands
 * the text to tok_bpe_encode. Internal to src/tokenizer. */
#ifndef EMBD_TOK_BPE_H
#define EMBD_TOK_BPE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/unigram.h" /* tok_emit_fn, the normalizer pipeline */

typedef struct tok_bpe tok_bpe;

/* root: a parsed tokenizer.json whose model is BPE. */
tok_bpe *tok_bpe_from_json(const json_t *root, char *err, size_t errlen);
void tok_bpe_free(tok_bpe *b);

/* text: valid UTF-8. False on allocation failure. */
bool tok_bpe_encode(const tok_bpe *b, const uint8_t *text, size_t len, tok_emit_fn emit, void *ctx);

size_t tok_bpe_vocab_size(const tok_bpe *b);
const char *tok_bpe_token(const tok_bpe *b, int32_t id);
int32_t tok_bpe_cls_id(const tok_bpe *b);
int32_t tok_bpe_sep_id(const tok_bpe *b);

/* CLIP's Split pattern, the one pre-tokenizer regex implemented (bpe.c, by Unicode classes). */
#define TOK_BPE_CLIP_REGEX \
    "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+"

#endif
