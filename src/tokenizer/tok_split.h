/* Added-token splitting as transformers.js does it, shared by the Unigram and BPE tokenizers:
 * DictionarySplitter (leftmost-longest match of the contents in a byte trie) cuts a text into
 * sections, then each section that is an added token trims JS whitespace off its neighbours
 * (lstrip/rstrip). Internal to src/tokenizer. */
#ifndef EMBD_TOK_SPLIT_H
#define EMBD_TOK_SPLIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tok_buf.h"
#include "tokenizer/tok_hash.h"
#include "tokenizer/tok_json.h"

/* Edges live in one open-addressing table keyed by (node, byte): no per-node child arrays, and a
 * lookup is one multiply and (mostly) one probe. */
typedef struct {
    uint32_t key; /* node * 256 + byte + 1; 0: empty */
    uint32_t child;
} tok_trie_edge;

typedef struct {
    tok_trie_edge *e;
    size_t bits, mask, n_edges;
    int32_t *term; /* per node: terminal index or -1 */
    size_t n_nodes, cap_nodes;
} tok_trie;

bool tok_trie_init(tok_trie *t);
void tok_trie_free(tok_trie *t);
/* Inserts s; returns its node (set term[node] to mark it), or -1 on allocation failure or too
 * many nodes. */
int64_t tok_trie_insert(tok_trie *t, const uint8_t *s, size_t len);
/* Length of the longest key that prefixes s (0: none). */
size_t tok_trie_longest(const tok_trie *t, const uint8_t *s, size_t n);

/* The added tokens of a tokenizer: added_tokens_map (content and normalized content -> index in
 * atoks) and the two splitters (contents matched in the raw text, normalized contents in the
 * normalized text). */
typedef struct {
    tok_htab map;
    tok_added *atoks;
    size_t n, cap;
    tok_trie raw, norm;
    bool have_raw, have_norm;
} tok_addeds;

bool tok_addeds_init(tok_addeds *a);
void tok_addeds_free(tok_addeds *a);
/* Appends a copy of t (content copied). */
bool tok_addeds_push(tok_addeds *a, const tok_added *t);
/* Index in atoks of the added token whose (normalized) content is s, or -1. */
static inline int32_t tok_addeds_lookup(const tok_addeds *a, const void *s, size_t len)
{
    return a->n ? tok_htab_get(&a->map, s, len) : -1;
}
/* Registers atoks[i]: content -> i, and either its normalized form norm[0..nlen) (normalized
 * tokens when a normalizer exists; norm != NULL) or its raw content in the splitters. */
bool tok_addeds_register(tok_addeds *a, size_t i, const uint8_t *norm, size_t nlen);
/* Splits valid UTF-8 b[0..n) with the raw or normalized splitter into out (sections between and
 * at the matches), then applies the lstrip/rstrip trims. */
bool tok_addeds_split(const tok_addeds *a, bool normalized, const uint8_t *b, size_t n, tok_spanbuf *out);

#endif
