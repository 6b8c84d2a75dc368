/* Byte-string -> int32 map for the vocabulary: open addressing with linear probing over 8-byte
 * slots (a 32-bit tag and an entry index), so that the misses WordPiece makes mostly stay in the
 * small slot array; keys live in one arena. Lookups can hash a prefix and a key without
 * concatenating them. */
#ifndef EMBD_TOK_HASH_H
#define EMBD_TOK_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    uint32_t tag; /* 0: empty */
    uint32_t idx; /* into entries */
} tok_hslot;

typedef struct {
    uint32_t off, len; /* key in the arena */
    int32_t val;
} tok_hent;

typedef struct {
    tok_hslot *slots;
    size_t mask;
    tok_hent *ents;
    size_t count, ents_cap;
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

/* FNV's low bits are weak: mix before splitting into slot index (low) and tag (high). */
static inline uint64_t tok_hash_mix(uint64_t h)
{
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return h;
}

static inline uint32_t tok_hash_tag(uint64_t mixed)
{
    return (uint32_t)(mixed >> 32) | 1u;
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
    uint64_t m = tok_hash_mix(hash);
    uint32_t tag = tok_hash_tag(m);
    for (size_t i = (size_t)m & t->mask;; i = (i + 1) & t->mask) {
        tok_hslot s = t->slots[i];
        if (!s.tag)
            return -1;
        if (s.tag != tag)
            continue;
        const tok_hent *e = &t->ents[s.idx];
        if (e->len == plen + len && memcmp(t->arena + e->off, pre, plen) == 0 &&
            memcmp(t->arena + e->off + plen, key, len) == 0)
            return e->val;
    }
}

static inline int32_t tok_htab_get(const tok_htab *t, const void *key, size_t len)
{
    if (len > t->max_len)
        return -1;
    return tok_htab_get2(t, tok_hash(TOK_HASH_SEED, key, len), "", 0, key, len);
}

#endif
