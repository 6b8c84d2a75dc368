#include "tokenizer/tok_hash.h"

#include <stdlib.h>

bool tok_htab_init(tok_htab *t, size_t expected)
{
    memset(t, 0, sizeof *t);
    size_t cap = 16;
    while (cap < expected * 2)
        cap *= 2;
    t->slots = calloc(cap, sizeof *t->slots);
    t->arena = malloc(4096); /* never NULL: memcmp on it must stay defined for empty keys */
    if (!t->slots || !t->arena) {
        tok_htab_free(t);
        return false;
    }
    t->mask = cap - 1;
    t->arena_cap = 4096;
    return true;
}

void tok_htab_free(tok_htab *t)
{
    free(t->slots);
    free(t->ents);
    free(t->arena);
    memset(t, 0, sizeof *t);
}

static tok_hslot *find_slot(const tok_htab *t, const void *key, size_t len)
{
    uint64_t m = tok_hash_mix(tok_hash(TOK_HASH_SEED, key, len));
    uint32_t tag = tok_hash_tag(m);
    for (size_t i = (size_t)m & t->mask;; i = (i + 1) & t->mask) {
        tok_hslot *s = &t->slots[i];
        if (!s->tag)
            return s;
        const tok_hent *e = &t->ents[s->idx];
        if (s->tag == tag && e->len == len && memcmp(t->arena + e->off, key, len) == 0)
            return s;
    }
}

static bool grow(tok_htab *t)
{
    size_t cap = (t->mask + 1) * 2;
    tok_hslot *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return false;
    for (size_t k = 0; k < t->count; k++) {
        const tok_hent *e = &t->ents[k];
        uint64_t m = tok_hash_mix(tok_hash(TOK_HASH_SEED, t->arena + e->off, e->len));
        size_t j = (size_t)m & (cap - 1);
        while (slots[j].tag)
            j = (j + 1) & (cap - 1);
        slots[j] = (tok_hslot){tok_hash_tag(m), (uint32_t)k};
    }
    free(t->slots);
    t->slots = slots;
    t->mask = cap - 1;
    return true;
}

bool tok_htab_put(tok_htab *t, const void *key, size_t len, int32_t val)
{
    if (len >= UINT32_MAX || t->arena_len + len >= UINT32_MAX || t->count >= UINT32_MAX - 1)
        return false;
    if ((t->count + 1) * 2 > t->mask + 1 && !grow(t))
        return false;
    tok_hslot *s = find_slot(t, key, len);
    if (s->tag) {
        t->ents[s->idx].val = val;
        return true;
    }
    if (t->arena_len + len > t->arena_cap) {
        size_t cap = t->arena_cap;
        while (cap < t->arena_len + len)
            cap *= 2;
        char *a = realloc(t->arena, cap);
        if (!a)
            return false;
        t->arena = a;
        t->arena_cap = cap;
    }
    if (t->count == t->ents_cap) {
        size_t cap = t->ents_cap ? t->ents_cap * 2 : 64;
        tok_hent *e = realloc(t->ents, cap * sizeof *e);
        if (!e)
            return false;
        t->ents = e;
        t->ents_cap = cap;
    }
    if (len)
        memcpy(t->arena + t->arena_len, key, len);
    t->ents[t->count] = (tok_hent){(uint32_t)t->arena_len, (uint32_t)len, val};
    *s = (tok_hslot){tok_hash_tag(tok_hash_mix(tok_hash(TOK_HASH_SEED, key, len))), (uint32_t)t->count};
    t->arena_len += len;
    t->count++;
    if (len > t->max_len)
        t->max_len = len;
    return true;
}

bool tok_htab_update(tok_htab *t, const void *key, size_t len, int32_t val)
{
    tok_hslot *s = find_slot(t, key, len);
    if (!s->tag)
        return false;
    t->ents[s->idx].val = val;
    return true;
}
