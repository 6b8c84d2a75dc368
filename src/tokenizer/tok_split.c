#include "tokenizer/tok_split.h"

#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_unicode.h"

#define TRIE_MAX_NODES ((1u << 24) - 2)

static inline size_t edge_slot(const tok_trie *t, uint32_t key)
{
    return (size_t)(((uint64_t)key * 0x9E3779B97F4A7C15ull) >> (64 - t->bits));
}

static inline int64_t trie_child(const tok_trie *t, uint32_t node, uint8_t byte)
{
    uint32_t key = node * 256u + byte + 1u;
    for (size_t i = edge_slot(t, key);; i = (i + 1) & t->mask) {
        if (t->e[i].key == key)
            return t->e[i].child;
        if (!t->e[i].key)
            return -1;
    }
}

bool tok_trie_init(tok_trie *t)
{
    memset(t, 0, sizeof *t);
    t->bits = 6;
    t->mask = 63;
    t->e = calloc(64, sizeof *t->e);
    t->cap_nodes = 64;
    t->term = malloc(t->cap_nodes * sizeof *t->term);
    if (!t->e || !t->term)
        return false;
    t->term[0] = -1;
    t->n_nodes = 1;
    return true;
}

void tok_trie_free(tok_trie *t)
{
    free(t->e);
    free(t->term);
    memset(t, 0, sizeof *t);
}

static bool trie_grow_edges(tok_trie *t)
{
    tok_trie n = *t;
    n.bits = t->bits + 1;
    n.mask = ((size_t)1 << n.bits) - 1;
    n.e = calloc(n.mask + 1, sizeof *n.e);
    if (!n.e)
        return false;
    for (size_t i = 0; i <= t->mask; i++) {
        if (!t->e[i].key)
            continue;
        size_t j = edge_slot(&n, t->e[i].key);
        while (n.e[j].key)
            j = (j + 1) & n.mask;
        n.e[j] = t->e[i];
    }
    free(t->e);
    *t = n;
    return true;
}

int64_t tok_trie_insert(tok_trie *t, const uint8_t *s, size_t len)
{
    uint32_t node = 0;
    for (size_t i = 0; i < len; i++) {
        int64_t c = trie_child(t, node, s[i]);
        if (c < 0) {
            if (t->n_nodes >= TRIE_MAX_NODES)
                return -1;
            if ((t->n_edges + 1) * 2 > t->mask + 1 && !trie_grow_edges(t))
                return -1;
            if (t->n_nodes == t->cap_nodes) {
                int32_t *v = realloc(t->term, t->cap_nodes * 2 * sizeof *v);
                if (!v)
                    return -1;
                t->term = v;
                t->cap_nodes *= 2;
            }
            c = (int64_t)t->n_nodes++;
            t->term[c] = -1;
            uint32_t key = node * 256u + s[i] + 1u;
            size_t j = edge_slot(t, key);
            while (t->e[j].key)
                j = (j + 1) & t->mask;
            t->e[j] = (tok_trie_edge){key, (uint32_t)c};
            t->n_edges++;
        }
        node = (uint32_t)c;
    }
    return node;
}

size_t tok_trie_longest(const tok_trie *t, const uint8_t *s, size_t n)
{
    size_t best = 0;
    uint32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t c = trie_child(t, node, s[i]);
        if (c < 0)
            break;
        node = (uint32_t)c;
        if (t->term[node] >= 0)
            best = i + 1;
    }
    return best;
}

/* ---------------------------------------------------------------- added tokens */

bool tok_addeds_init(tok_addeds *a)
{
    memset(a, 0, sizeof *a);
    return tok_htab_init(&a->map, 16) && tok_trie_init(&a->raw) && tok_trie_init(&a->norm);
}

void tok_addeds_free(tok_addeds *a)
{
    tok_htab_free(&a->map);
    for (size_t i = 0; i < a->n; i++)
        free(a->atoks[i].content);
    free(a->atoks);
    tok_trie_free(&a->raw);
    tok_trie_free(&a->norm);
    memset(a, 0, sizeof *a);
}

bool tok_addeds_push(tok_addeds *a, const tok_added *t)
{
    if (a->n == a->cap) {
        size_t c = a->cap ? a->cap * 2 : 8;
        tok_added *v = realloc(a->atoks, c * sizeof *v);
        if (!v)
            return false;
        a->atoks = v;
        a->cap = c;
    }
    tok_added *d = &a->atoks[a->n];
    *d = *t;
    d->content = tok_dup_bytes(t->content, t->len);
    if (!d->content)
        return false;
    a->n++;
    return true;
}

static bool trie_mark(tok_trie *t, const uint8_t *s, size_t len)
{
    int64_t node = tok_trie_insert(t, s, len);
    if (node < 0)
        return false;
    t->term[node] = 0;
    return true;
}

bool tok_addeds_register(tok_addeds *a, size_t i, const uint8_t *norm, size_t nlen)
{
    const tok_added *t = &a->atoks[i];
    if (!tok_htab_put(&a->map, t->content, t->len, (int32_t)i))
        return false;
    if (!t->len) /* DictionarySplitter never matches an empty token */
        return true;
    if (norm) {
        if (!tok_htab_put(&a->map, norm, nlen, (int32_t)i))
            return false;
        if (!nlen)
            return true;
        a->have_norm = true;
        return trie_mark(&a->norm, norm, nlen);
    }
    a->have_raw = true;
    return trie_mark(&a->raw, (const uint8_t *)t->content, t->len);
}

static size_t utf8_len(uint8_t b)
{
    return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
}

/* DictionarySplitter, then the lstrip/rstrip trims of the added tokens found (looked up by the
 * text of each section after earlier trims, as transformers.js does). */
bool tok_addeds_split(const tok_addeds *a, bool normalized, const uint8_t *b, size_t n, tok_spanbuf *out)
{
    const tok_trie *tr = normalized ? &a->norm : &a->raw;
    out->n = 0;
    if (!(normalized ? a->have_norm : a->have_raw))
        return !n || tok_span_push(out, 0, n);
    size_t start = 0;
    for (size_t i = 0; i < n;) {
        size_t m = tok_trie_longest(tr, b + i, n - i);
        if (!m) {
            i += utf8_len(b[i]);
            continue;
        }
        if ((i > start && !tok_span_push(out, start, i)) || !tok_span_push(out, i, i + m))
            return false;
        i = start = i + m;
    }
    if (start < n && !tok_span_push(out, start, n))
        return false;
    for (size_t k = 0; k < out->n; k++) {
        tok_span *sp = &out->v[k];
        int32_t x = tok_addeds_lookup(a, b + sp->start, sp->end - sp->start);
        if (x < 0)
            continue;
        if (a->atoks[x].lstrip && k > 0) {
            tok_span *p = &out->v[k - 1];
            while (p->end > p->start) {
                size_t q = p->end - 1;
                while (q > p->start && (b[q] & 0xC0) == 0x80)
                    q--;
                uint32_t cp;
                tu_utf8_decode(b + q, &cp);
                if (!(tu_flags_fast(cp) & TU_SPACE))
                    break;
                p->end = q;
            }
        }
        if (a->atoks[x].rstrip && k + 1 < out->n) {
            tok_span *q = &out->v[k + 1];
            while (q->start < q->end) {
                uint32_t cp;
                int l = tu_utf8_decode(b + q->start, &cp);
                if (!(tu_flags_fast(cp) & TU_SPACE))
                    break;
                q->start += (size_t)l;
            }
        }
    }
    return true;
}
