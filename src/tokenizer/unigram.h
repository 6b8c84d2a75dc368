/* SentencePiece Unigram model (XLM-RoBERTa and relatives) behind the embd_tokenizer API:
 * tokenizer.c keeps the public entry points and the [CLS]/[SEP] + truncation logic, and hands
 * the pieces of a text to tok_ugm_encode. Internal to src/tokenizer. */
#ifndef EMBD_TOK_UNIGRAM_H
#define EMBD_TOK_UNIGRAM_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tok_buf.h"

#include "tokenizer/tokenizer.h"

typedef struct tok_ugm tok_ugm;

/* Receives the piece ids in order; encode returns false (out of memory) if it set *oom. */
typedef void (*tok_emit_fn)(void *ctx, int32_t id);

tok_ugm *tok_ugm_new(const embd_unigram_vocab *v, char *err, size_t errlen);
/* root: a parsed tokenizer.json whose model is Unigram. */
tok_ugm *tok_ugm_from_json(const json_t *root, char *err, size_t errlen);
void tok_ugm_free(tok_ugm *u);

/* text: valid UTF-8. False on allocation failure. */
bool tok_ugm_encode(const tok_ugm *u, const uint8_t *text, size_t len, tok_emit_fn emit, void *ctx);

size_t tok_ugm_vocab_size(const tok_ugm *u);
const char *tok_ugm_token(const tok_ugm *u, int32_t id);
int32_t tok_ugm_cls_id(const tok_ugm *u);
int32_t tok_ugm_sep_id(const tok_ugm *u);

/* ---- normalizer pipeline (ugm_norm.c), on code points; the BPE tokenizer (bpe.c) uses it too */


enum {
    UGM_N_PRECOMPILED, /* transformers.js Precompiled: fixed control/space rules + NFKC */
    UGM_N_NFC,
    UGM_N_NFD,
    UGM_N_NFKC,
    UGM_N_NFKD,
    UGM_N_REPLACE,     /* literal pattern, or a run of one character (Regex "x{n,}" / "x+") or of
                        * \p{White_Space} (Regex "\s+", "\s{n,}": transformers.js reads \s so) */
    UGM_N_STRIP,
    UGM_N_PREPEND,
    UGM_N_LOWERCASE,   /* String.toLowerCase: full mappings, final sigma */
};

typedef struct {
    int kind;
    uint32_t *pat, *rep; /* pattern / replacement or prepended text */
    size_t npat, nrep;
    size_t min_run; /* > 0: pat is one character, runs of at least min_run are replaced */
    bool ws_run;    /* with min_run: the run is of \p{White_Space} (pat unused) */
    bool left, right; /* Strip */
} ugm_norm_step;

/* Parses one HF normalizer object (Sequence flattened) into steps; false with err set if it is
 * of a kind transformers.js would not apply the same way here. */
bool ugm_norm_parse(const json_t *norm, ugm_norm_step **steps, size_t *n, char *err, size_t errlen);
void ugm_norm_free(ugm_norm_step *steps, size_t n);
/* Applies the steps to in (which is consumed as scratch); the result is *res (a or b). */
bool ugm_norm_apply(const ugm_norm_step *steps, size_t n, tok_cps *a, tok_cps *b, tok_cps **res);
/* The same on valid UTF-8 t[0..len), with a and b as scratch: the result as UTF-8 in *buf (grown
 * with realloc; *cap its size), its length in *out_len. */
bool ugm_norm_utf8(const ugm_norm_step *steps, size_t n, const uint8_t *t, size_t len, tok_cps *a, tok_cps *b,
                   uint8_t **buf, size_t *cap, size_t *out_len);

#endif
