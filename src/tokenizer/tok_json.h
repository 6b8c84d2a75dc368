/* Reading optional members of a Hugging Face tokenizer.json the way transformers.js does; shared
 * by the WordPiece and Unigram loaders. Internal to src/tokenizer. */
#ifndef EMBD_TOK_JSON_H
#define EMBD_TOK_JSON_H

#include <jansson.h>
#include <stdbool.h>

/* JS truthiness of an optional member (absent, null, false, 0 and "" are false). */
bool tok_json_true(const json_t *o, const char *key);
/* A string member, or def when absent or not a string. */
const char *tok_json_str(const json_t *o, const char *key, const char *def);

#endif
