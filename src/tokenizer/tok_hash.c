#include "tokenizer/tok_hash.h"

#include <stdlib.h>

bool tok_htab_init(tok_htab *t, size_t expected)
{
    memset(t, 0, sizeof *t);
    size_t cap = 16;
    while (cap < expected * 2)
        cap *= 2;
    t->slots = malloc(cap * sizeof *t->slots);
    t->arena = malloc(4096); /* never NULL: memcmp on it must stay defined for empty keys */
    if (!t->slots || !t->arena) {
        tok_htab_free(t);
        return false;
    }
    t->arena_cap = 4096;
    for (size_t i = 0; i < cap; i++)
        t->slots[i].len = UINT32_MAX;
    t->mask = cap - 1;
    return true;
}

void tok_htab_free(tok_htab *t)
{
    free(t->slots);
    free(t->arena);
    memset(t, 0, sizeof *t);
}

static tok_hslot *find_slot(const tok_htab *t, uint64_t h, const void *key, size_t len)
{
    for (size_t i = tok_hash_slot(h, t->mask);; i = (i + 1) & t->mask) {
        tok_hslot *s = &t->slots[i];
        if (s->len == UINT32_MAX || (s->hash == h && s->len == len && memcmp(t->arena + s->off, key, len) == 0))
            return s;
    }
}

static bool grow(tok_htab *t)
{
    size_t cap = (t->mask + 1) * 2;
    tok_hslot *slots = malloc(cap * sizeof *slots);
    if (!slots)
        return false;
    for (size_t i = 0; i < cap; i++)
        slots[i].len = UINT32_MAX;
    for (size_t i = 0; i <= t->mask; i++) {
        if (t->slots[i].len == UINT32_MAX)
            continue;
        size_t j = tok_hash_slot(t->slots[i].hash, cap - 1);
        while (slots[j].len != UINT32_MAX)
            j = (j + 1) & (cap - 1);
        slots[j] = t->slots[i];
    }
    free(t->slots);
    t->slots = slots;
    t->mask = cap - 1;
    return true;
}

bool tok_htab_put(tok_htab *t, const void *key, size_t len, int32_t val)
{
    if (len >= UINT32_MAX || t->arena_len + len >= UINT32_MAX)
        return false;
    if ((t->count + 1) * 2 > t->mask + 1 && !grow(t))
        return false;
    uint64_t h = tok_hash(TOK_HASH_SEED, key, len);
    tok_hslot *s = find_slot(t, h, key, len);
    if (s->len != UINT32_MAX) {
        s->val = val;
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
    if (len)
        memcpy(t->arena + t->arena_len, key, len);
    s->hash = h;
    s->off = (uint32_t)t->arena_len;
    s->len = (uint32_t)len;
    s->val = val;
    t->arena_len += len;
    t->count++;
    if (len > t->max_len)
        t->max_len = len;
    return true;
}

bool tok_htab_update(tok_htab *t, const void *key, size_t len, int32_t val)
{
    tok_hslot *s = find_slot(t, tok_hash(TOK_HASH_SEED, key, len), key, len);
    if (s->len == UINT32_MAX)
        return false;
    s->val = val;
    return true;
}
