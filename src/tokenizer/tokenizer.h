/* Text -> token ids, identical to Hugging Face tokenizers as transformers.js implements them (the
 * reference of tests/fixtures/tokens_*.jsonl; tools/tokfix regenerates them). Where it and the
 * Rust `tokenizers` differ, tokenizer.c says which way this goes. The engine never calls
 * llama.cpp's tokenizer: it differs from HF on edge cases. Thread-safe: encode keeps no state. */
#ifndef EMBD_TOKENIZER_H
#define EMBD_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct embd_tokenizer embd_tokenizer;

/* BertNormalizer + BertPreTokenizer + WordPiece options (HF names). */
typedef struct {
    bool clean_text;           /* drop NUL/U+FFFD/control chars, map whitespace to ' ' */
    bool handle_chinese_chars; /* put spaces around CJK ideographs */
    int strip_accents;         /* -1: follow lowercase (HF null), 0: no, 1: yes */
    bool lowercase;
    int max_input_chars_per_word; /* longer words become [UNK]; HF default 100 */
} embd_wordpiece_opts;

void embd_wordpiece_opts_default(embd_wordpiece_opts *o); /* bert-base-uncased defaults */

/* From a vocabulary (id = index). token_types: GGUF tokenizer.ggml.token_type values or NULL;
 * tokens of type 2 (unknown), 3 (control) and 4 (user-defined) are "added tokens": matched
 * literally in the raw input as HF does. With NULL, [PAD] [UNK] [CLS] [SEP] [MASK] are.
 * A vocabulary in llama.cpp's converted form (no "##" token, word starts marked U+2581) is
 * converted back. opts NULL: defaults. */
embd_tokenizer *embd_tokenizer_new_wordpiece(const char *const *tokens, const int32_t *token_types,
                                             size_t n_tokens, const embd_wordpiece_opts *opts,
                                             char *err, size_t errlen);
/* From a Hugging Face tokenizer.json (model.type WordPiece, BertNormalizer, added_tokens). */
embd_tokenizer *embd_tokenizer_from_json_file(const char *path, char *err, size_t errlen);
/* The same from the JSON text (len bytes). */
embd_tokenizer *embd_tokenizer_from_json(const char *json, size_t len, char *err, size_t errlen);
void embd_tokenizer_free(embd_tokenizer *t);

size_t embd_tokenizer_vocab_size(const embd_tokenizer *t);
const char *embd_tokenizer_token(const embd_tokenizer *t, int32_t id); /* NULL if out of range */
int32_t embd_tokenizer_cls_id(const embd_tokenizer *t);
int32_t embd_tokenizer_sep_id(const embd_tokenizer *t);

enum {
    EMBD_TOK_OK = 0,
    EMBD_TOK_EUTF8 = -1,  /* input is not valid UTF-8; *err_offset = first bad byte */
    EMBD_TOK_ENOMEM = -2,
    EMBD_TOK_EINVAL = -3, /* NULL tokenizer or output, or NULL text with len > 0 */
};

typedef struct {
    int32_t *ids;
    size_t n;        /* ids written, special tokens included */
    size_t cap;      /* capacity of ids; grown with realloc by the encoder */
    size_t n_full;   /* length the encoding would have without truncation */
    bool truncated;  /* n < n_full */
} embd_tokens;

/* Encodes text (len bytes, may contain NUL) as [CLS] pieces... [SEP]. max_tokens > 0 truncates the
 * pieces (right side, as HF "longest_first" on one sequence) so that n <= max_tokens, keeping
 * [CLS] and [SEP] (max_tokens 1 keeps [CLS] alone); 0 means no limit. out->ids may be NULL/cap 0
 * initially; reuse across calls. On error out->n is 0. */
int embd_tokenizer_encode(const embd_tokenizer *t, const char *text, size_t len, size_t max_tokens,
                          embd_tokens *out, size_t *err_offset);
void embd_tokens_free(embd_tokens *tk);

#endif
