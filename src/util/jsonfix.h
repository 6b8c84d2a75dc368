/* Repair of JSON text before jansson sees it. */
#ifndef EMBD_JSONFIX_H
#define EMBD_JSONFIX_H

#include <stddef.h>

/* JSON may escape lone UTF-16 surrogates ("\ud800"), which jansson rejects. Replaces, in place and
 * in one pass, every unpaired surrogate escape inside a JSON string (\uD800-\uDBFF not followed by
 * a \uDC00-\uDFFF escape, or a lone \uDC00-\uDFFF) with \uFFFD (same length) and returns how many
 * it replaced. Escaped backslashes are honoured ("\\ud800" is text, not an escape); text outside
 * strings and malformed escapes are left for the parser to judge.
 *
 * The tokenizer then sees U+FFFD where JavaScript sees the lone surrogate; BertNormalizer's
 * clean_text drops both (U+FFFD explicitly, the surrogate as \p{Cs}), so the ids match
 * transformers.js (tests/fixtures: edge_33_lone_surrogate_escape and the stress texts; without
 * clean_text both are a character outside the vocabulary, [UNK] alike). */
size_t embd_json_fix_surrogates(char *json, size_t len);

#endif
