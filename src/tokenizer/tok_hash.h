/* Byte-string -> int32 map for the vocabulary: open addressing with linear probing, keys kept in
 * one arena, load factor <= 1/2. Lookups can hash a prefix and a key without concatenating them. */
#ifndef EMBD_TOK_HASH_H
#define EMBD_TOK_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    uint64_t hash;
    uint32_t off, len; /* key in the arena; len == UINT32_MAX: empty slot */
    int32_t val;
} tok_hslot;

typedef struct {
    tok_hslot *slots;
    size_t mask, count;
    char *arena;
    size_t arena_len, arena_cap;
    size_t max_len; /* longest key */
} tok_htab;

#define TOK_HASH_SEED 0xcbf29ce484222325ull

/* FNV-1a, streamable: tok_hash(tok_hash(TOK_HASH_SEED, a, na), b, nb) hashes a followed by b. */
static inline uint64_t tok_hash(uint64_t h, const void *p, size_t n)
{
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static inline size_t tok_hash_slot(uint64_t h, size_t mask)
{
    h ^= h >> 29; /* FNV's low bits are weak: mix before masking */
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return (size_t)h & mask;
}

bool tok_htab_init(tok_htab *t, size_t expected);
void tok_htab_free(tok_htab *t);
/* Inserts or overwrites; false on allocation failure or a key over 4 GiB. */
bool tok_htab_put(tok_htab *t, const void *key, size_t len, int32_t val);
/* Sets the value of an existing key; false if absent. */
bool tok_htab_update(tok_htab *t, const void *key, size_t len, int32_t val);

/* Value of the key pre || key (hash = tok_hash of both), or -1. */
static inline int32_t tok_htab_get2(const tok_htab *t, uint64_t hash, const void *pre, size_t plen,
                                    const void *key, size_t len)
{
    if (plen + len > t->max_len)
        return -1;
    for (size_t i = tok_hash_slot(hash, t->mask);; i = (i + 1) & t->mask) {
        const tok_hslot *s = &t->slots[i];
        if (s->len == UINT32_MAX)
            return -1;
        if (s->hash == hash && s->len == plen + len && memcmp(t->arena + s->off, pre, plen) == 0 &&
            memcmp(t->arena + s->off + plen, key, len) == 0)
            return s->val;
    }
}

static inline int32_t tok_htab_get(const tok_htab *t, const void *key, size_t len)
{
    if (len > t->max_len)
        return -1;
    return tok_htab_get2(t, tok_hash(TOK_HASH_SEED, key, len), "", 0, key, len);
}

#endif
