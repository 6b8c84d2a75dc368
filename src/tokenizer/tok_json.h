/* Reading optional members of a Hugging Face tokenizer.json the way transformers.js does; shared
 * by the WordPiece and Unigram loaders. Internal to src/tokenizer. */
#ifndef EMBD_TOK_JSON_H
#define EMBD_TOK_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An added token: tokenizer.json's added_tokens, or a GGUF control/user-defined token. */
typedef struct {
    char *content; /* valid UTF-8 */
    size_t len;
    int32_t id;
    bool lstrip, rstrip, normalized, special; /* single_word is ignored, as transformers.js does */
} tok_added;

/* JS truthiness of an optional member (absent, null, false, 0 and "" are false). */
bool tok_json_true(const json_t *o, const char *key);
/* A string member, or def when absent or not a string. */
const char *tok_json_str(const json_t *o, const char *key, const char *def);
/* The special token strings around sequence A in a post_processor: TemplateProcessing
 * [SpecialToken, Sequence A, SpecialToken] or BertProcessing, and RobertaProcessing when roberta
 * (the Unigram loader's XLM-R files). False when it is none of those shapes. */
/* One added_tokens entry as transformers.js reads it: normalized defaults to !special. content
 * points into the JSON (the loaders copy it). */
tok_added tok_json_added(const json_t *entry);
bool tok_json_post_specials(const json_t *pp, bool roberta, const char **cls, const char **sep);

#endif
