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
/* SentencePiece Unigram vocabulary as llama.cpp stores XLM-RoBERTa in GGUF (tokenizer.ggml.model
 * "t5"). Ids follow transformers.js's Unigram tokenizer for the tokenizer.json of the same model:
 * the Precompiled normalizer is transformers.js's (fixed control/space rules + NFKC; the charsmap
 * is not consulted there, so not here either), Replace " {2,}" -> " " when
 * remove_extra_whitespaces, Metaspace (U+2581, prepended when add_space_prefix), Viterbi over the
 * vocabulary, <s> pieces </s>. Token types 2/3/4 are added tokens matched in the raw text (a
 * control "<mask>" strips whitespace on its left, as XLM-R's does); type 5 (unused padding rows
 * llama.cpp appends) is not vocabulary. Ids < 0 are looked up by type (unk) or name. */
typedef struct {
    const char *const *tokens;
    const float *scores;        /* NULL: all 0 */
    const int32_t *token_types; /* NULL: all normal except the special ids */
    size_t n_tokens;
    const uint8_t *charsmap;    /* precompiled_charsmap; its presence selects Precompiled */
    size_t charsmap_len;
    bool add_space_prefix, remove_extra_whitespaces;
    int32_t bos_id, eos_id, unk_id; /* [CLS] -> bos (<s>), [SEP] -> eos (</s>) */
} embd_unigram_vocab;

embd_tokenizer *embd_tokenizer_new_unigram(const embd_unigram_vocab *v, char *err, size_t errlen);
struct gguf_context;
/* The same from a GGUF's tokenizer.ggml.* keys (tokenizer.ggml.model must be "t5"). */
embd_tokenizer *embd_tokenizer_new_unigram_gguf(const struct gguf_context *g, char *err, size_t errlen);
/* From a Hugging Face tokenizer.json (model.type WordPiece with BertNormalizer,
 * or Unigram with Precompiled/Replace/NFKC/Strip/Prepend normalizers and Metaspace, or byte-level
 * BPE as CLIP's: NFC/Replace/Lowercase normalizers, Split by CLIP's regex + ByteLevel,
 * end_of_word_suffix, cls/sep = <|startoftext|>/<|endoftext|>; added_tokens). */
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
