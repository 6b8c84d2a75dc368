/* Byte-level BPE as CLIP's tokenizer.json uses it, with transformers.js's ids
 * (@huggingface/tokenizers BPE):
 *   added tokens split from the raw text -> normalizer (ugm_norm.c: NFC, Replace \s+, Lowercase)
 *   -> normalized added tokens -> Split by CLIP's regex (matches kept) -> ByteLevel (each UTF-8
 *   byte one symbol, no prefix space) -> "</w>" on a word's last symbol -> merges by rank ->
 *   pieces not in the vocabulary become unk_token -> ids.
 * The merge loop takes the lowest (rank, position) pair first, as transformers.js's priority
 * queue does (score = rank + position / length), through a binary heap with lazy deletion:
 * O(n log n) per word, so a 100 KB word costs milliseconds. transformers.js also caches words;
 * that changes no ids, and this module keeps no state between calls (thread-safe).
 * The regex of the Split pre-tokenizer is implemented for CLIP's pattern only, by Unicode classes
 * (\p{L}, \p{N}, \s read as \p{White_Space} as transformers.js rewrites it), with Node's data. */
#include "tokenizer/bpe.h"

#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_buf.h"
#include "tokenizer/tok_hash.h"
#include "tokenizer/tok_json.h"
#include "tokenizer/tok_split.h"
#include "tokenizer/tok_unicode.h"
#include "util/sys.h"

#define MAX_IDS (1 << 24)

typedef struct {
    uint64_t key; /* left symbol << 32 | right symbol; UINT64_MAX: empty */
    int32_t rank, res;
} merge_ent;

struct tok_bpe {
    size_t n_ids;
    char **id_tok;      /* id -> token string (NULL for gaps) */
    tok_htab ids;       /* tokens_to_ids: the vocabulary, then the added contents */
    tok_addeds ad;
    ugm_norm_step *norm;
    size_t n_norm;
    bool has_norm;
    tok_htab syms;      /* symbol strings (the 512 byte symbols, merge parts and results) -> index */
    int32_t *sym_final; /* symbol -> id it becomes, or -1 (unknown and no unk_token: dropped) */
    size_t n_syms;
    int32_t byte_sym[2][256]; /* the symbol of a byte, [1]: as a word's last (with the suffix) */
    merge_ent *merges;
    size_t mmask;
    int32_t cls_id, sep_id;
};

void tok_bpe_free(tok_bpe *b)
{
    if (!b)
        return;
    if (b->id_tok)
        for (size_t i = 0; i < b->n_ids; i++)
            free(b->id_tok[i]);
    free(b->id_tok);
    tok_htab_free(&b->ids);
    tok_addeds_free(&b->ad);
    ugm_norm_free(b->norm, b->n_norm);
    tok_htab_free(&b->syms);
    free(b->sym_final);
    free(b->merges);
    free(b);
}

/* ---------------------------------------------------------------- merges table */

static inline size_t merge_slot(const tok_bpe *b, uint64_t key)
{
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 17) & b->mmask;
}

/* The merge of symbols l r: its rank and result, or -1. */
static inline int32_t merge_find(const tok_bpe *b, int32_t l, int32_t r, int32_t *res)
{
    uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    for (size_t i = merge_slot(b, key);; i = (i + 1) & b->mmask) {
        const merge_ent *e = &b->merges[i];
        if (e->key == key) {
            *res = e->res;
            return e->rank;
        }
        if (e->key == UINT64_MAX)
            return -1;
    }
}

/* A later duplicate overwrites the rank, as new Map(merges.map((x, i) => [x, i])) does. */
static void merge_put(tok_bpe *b, int32_t l, int32_t r, int32_t rank, int32_t res)
{
    uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    size_t i = merge_slot(b, key);
    while (b->merges[i].key != UINT64_MAX && b->merges[i].key != key)
        i = (i + 1) & b->mmask;
    b->merges[i] = (merge_ent){key, rank, res};
}

/* ---------------------------------------------------------------- encoding */

typedef struct {
    int32_t rank, pos, l, r; /* pair (l, r) of the nodes at pos and next[pos] when pushed */
} cand;

typedef struct {
    tok_cps a, b;
    uint8_t *nb; /* normalized section */
    size_t nb_cap;
    tok_spanbuf secs, subs;
    int32_t *sym, *next, *prev; /* word nodes, by byte position */
    size_t ncap;
    cand *heap;
    size_t nh, hcap;
    tok_emit_fn emit;
    void *ctx;
} scratch;

static void scratch_free(scratch *s)
{
    free(s->a.v);
    free(s->b.v);
    free(s->nb);
    free(s->secs.v);
    free(s->subs.v);
    free(s->sym);
    free(s->next);
    free(s->prev);
    free(s->heap);
}

static inline bool cand_less(const cand *x, const cand *y)
{
    return x->rank != y->rank ? x->rank < y->rank : x->pos < y->pos;
}

static bool heap_push(scratch *s, cand c)
{
    if (s->nh == s->hcap) {
        size_t cap = s->hcap ? s->hcap * 2 : 64;
        cand *v = realloc(s->heap, cap * sizeof *v);
        if (!v)
            return false;
        s->heap = v;
        s->hcap = cap;
    }
    size_t i = s->nh++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&c, &s->heap[p]))
            break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = c;
    return true;
}

static cand heap_pop(scratch *s)
{
    cand top = s->heap[0], last = s->heap[--s->nh];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->nh)
            break;
        if (c + 1 < s->nh && cand_less(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!cand_less(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->nh)
        s->heap[i] = last;
    return top;
}

/* Queues the merge of the node at pos with its successor, if there is one. */
static bool consider(const tok_bpe *b, scratch *s, int32_t pos)
{
    int32_t nx = s->next[pos], res;
    if (nx < 0)
        return true;
    int32_t rank = merge_find(b, s->sym[pos], s->sym[nx], &res);
    return rank < 0 || heap_push(s, (cand){rank, pos, s->sym[pos], s->sym[nx]});
}

/* One word (the bytes w[0..n), n > 0): byte symbols, merges, ids. */
static bool bpe_word(const tok_bpe *b, scratch *s, const uint8_t *w, size_t n)
{
    if (n > INT32_MAX) /* node positions are int32 */
        return false;
    if (n > s->ncap) {
        size_t cap = n < 256 ? 256 : n;
        int32_t *sym = realloc(s->sym, cap * sizeof *sym);
        if (sym)
            s->sym = sym;
        int32_t *next = realloc(s->next, cap * sizeof *next);
        if (next)
            s->next = next;
        int32_t *prev = realloc(s->prev, cap * sizeof *prev);
        if (prev)
            s->prev = prev;
        if (!sym || !next || !prev)
            return false;
        s->ncap = cap;
    }
    for (size_t i = 0; i < n; i++) {
        s->sym[i] = b->byte_sym[i + 1 == n][w[i]];
        s->next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        s->prev[i] = (int32_t)i - 1;
    }
    s->nh = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (!consider(b, s, (int32_t)i))
            return false;
    while (s->nh) {
        cand c = heap_pop(s);
        int32_t nx = s->next[c.pos], res = -1;
        /* stale: the node was merged away (its symbol changed) or its successor changed */
        if (s->sym[c.pos] != c.l || nx < 0 || s->sym[nx] != c.r)
            continue;
        merge_find(b, c.l, c.r, &res);
        s->sym[c.pos] = res;
        s->sym[nx] = -1; /* dead: no pair can match it again */
        s->next[c.pos] = s->next[nx];
        if (s->next[nx] >= 0)
            s->prev[s->next[nx]] = c.pos;
        if ((s->prev[c.pos] >= 0 && !consider(b, s, s->prev[c.pos])) || !consider(b, s, c.pos))
            return false;
    }
    for (int32_t i = 0; i >= 0; i = s->next[i]) {
        int32_t id = b->sym_final[s->sym[i]];
        if (id >= 0)
            s->emit(s->ctx, id);
    }
    return true;
}

static inline bool starts(const uint8_t *t, size_t n, size_t i, const char *lit, size_t len)
{
    return n - i >= len && !memcmp(t + i, lit, len);
}

/* CLIP's Split regex, matches kept (invert): each match is a word for ByteLevel + BPE. */
static bool clip_split(const tok_bpe *b, scratch *s, const uint8_t *t, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = (size_t)tu_utf8_decode(t + i, &cp), j;
        if (cp == '<' && starts(t, n, i, "<|startoftext|>", 15)) {
            j = i + 15;
        } else if (cp == '<' && starts(t, n, i, "<|endoftext|>", 13)) {
            j = i + 13;
        } else if (cp == '\'' && i + 1 < n && t[i + 1] && strchr("stmd", t[i + 1])) {
            j = i + 2;
        } else if (cp == '\'' && (starts(t, n, i, "'re", 3) || starts(t, n, i, "'ve", 3) ||
                                  starts(t, n, i, "'ll", 3))) {
            j = i + 3;
        } else if (tu_letter(cp)) {
            for (j = i + l; j < n; j += l) {
                l = (size_t)tu_utf8_decode(t + j, &cp);
                if (!tu_letter(cp))
                    break;
            }
        } else if (tu_number(cp)) {
            j = i + l;
        } else if (!(tu_flags_fast(cp) & TU_WSP)) {
            for (j = i + l; j < n; j += l) {
                l = (size_t)tu_utf8_decode(t + j, &cp);
                if ((tu_flags_fast(cp) & TU_WSP) || tu_letter(cp) || tu_number(cp))
                    break;
            }
        } else {
            i += l; /* whitespace: between matches, removed */
            continue;
        }
        if (!bpe_word(b, s, t + i, j - i))
            return false;
        i = j;
    }
    return true;
}

static bool encode(const tok_bpe *b, const uint8_t *text, size_t len, scratch *s)
{
    if (!tok_addeds_split(&b->ad, false, text, len, &s->secs))
        return false;
    for (size_t k = 0; k < s->secs.n; k++) {
        tok_span sec = s->secs.v[k];
        if (sec.end <= sec.start)
            continue;
        int32_t a = tok_addeds_lookup(&b->ad, text + sec.start, sec.end - sec.start);
        if (a >= 0) {
            s->emit(s->ctx, b->ad.atoks[a].id);
            continue;
        }
        const uint8_t *t = text + sec.start;
        size_t n = sec.end - sec.start;
        if (b->has_norm) {
            if (!ugm_norm_utf8(b->norm, b->n_norm, t, n, &s->a, &s->b, &s->nb, &s->nb_cap, &n))
                return false;
            t = s->nb;
        }
        if (!tok_addeds_split(&b->ad, true, t, n, &s->subs))
            return false;
        for (size_t j = 0; j < s->subs.n; j++) {
            tok_span sub = s->subs.v[j];
            if (sub.end <= sub.start)
                continue;
            a = tok_addeds_lookup(&b->ad, t + sub.start, sub.end - sub.start);
            if (a >= 0)
                s->emit(s->ctx, b->ad.atoks[a].id);
            else if (!clip_split(b, s, t + sub.start, sub.end - sub.start))
                return false;
        }
    }
    return true;
}

bool tok_bpe_encode(const tok_bpe *b, const uint8_t *text, size_t len, tok_emit_fn emit, void *ctx)
{
    scratch s;
    memset(&s, 0, sizeof s);
    s.emit = emit;
    s.ctx = ctx;
    bool ok = encode(b, text, len, &s);
    scratch_free(&s);
    return ok;
}

size_t tok_bpe_vocab_size(const tok_bpe *b)
{
    return b->n_ids;
}

const char *tok_bpe_token(const tok_bpe *b, int32_t id)
{
    return id >= 0 && (size_t)id < b->n_ids ? b->id_tok[id] : NULL;
}

int32_t tok_bpe_cls_id(const tok_bpe *b)
{
    return b->cls_id;
}

int32_t tok_bpe_sep_id(const tok_bpe *b)
{
    return b->sep_id;
}

/* ---------------------------------------------------------------- construction */

/* The id transformers.js gives a token string: added_tokens_map, tokens_to_ids, else -1. */
static int32_t final_id(const tok_bpe *b, const void *s, size_t len)
{
    int32_t a = tok_addeds_lookup(&b->ad, s, len);
    return a >= 0 ? b->ad.atoks[a].id : tok_htab_get(&b->ids, s, len);
}

/* Symbol index of s[0..len), interned. */
static int32_t intern(tok_bpe *b, const char *s, size_t len)
{
    int32_t v = tok_htab_get(&b->syms, s, len);
    if (v >= 0)
        return v;
    if (b->n_syms >= INT32_MAX || !tok_htab_put(&b->syms, s, len, (int32_t)b->n_syms))
        return -1;
    return (int32_t)b->n_syms++;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the others for
 * U+0100 onwards in byte order. */
static uint32_t byte_char(uint8_t c)
{
    if ((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE)
        return c;
    uint32_t k = 0;
    for (uint32_t x = 0; x < c; x++)
        k += !((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE);
    return 0x100 + k;
}

static bool is_clip_pretokenizer(const json_t *pre)
{
    const json_t *list = json_object_get(pre, "pretokenizers");
    if (strcmp(tok_json_str(pre, "type", ""), "Sequence") || json_array_size(list) != 2)
        return false;
    const json_t *split = json_array_get(list, 0), *bl = json_array_get(list, 1);
    const json_t *pat = json_object_get(json_object_get(split, "pattern"), "Regex");
    return !strcmp(tok_json_str(split, "type", ""), "Split") && json_is_string(pat) &&
           !strcmp(json_string_value(pat), TOK_BPE_CLIP_REGEX) && tok_json_true(split, "invert") &&
           !strcmp(tok_json_str(bl, "type", ""), "ByteLevel") && !tok_json_true(bl, "add_prefix_space") &&
           json_is_false(json_object_get(bl, "use_regex"));
}

/* The first two space-separated parts of a merge string (JS x.split(" ", 2)), or the two
 * strings of a [a, b] merge; false when it can never match (fewer parts, an empty one). */
static bool merge_parts(const json_t *m, const char **a, size_t *al, const char **c, size_t *cl)
{
    if (json_is_array(m)) {
        const json_t *x = json_array_get(m, 0), *y = json_array_get(m, 1);
        if (json_array_size(m) != 2 || !json_is_string(x) || !json_is_string(y))
            return false;
        *a = json_string_value(x);
        *al = json_string_length(x);
        *c = json_string_value(y);
        *cl = json_string_length(y);
    } else {
        const char *s = json_string_value(m);
        const char *sp = s ? memchr(s, ' ', json_string_length(m)) : NULL;
        if (!sp)
            return false;
        const char *end = memchr(sp + 1, ' ', json_string_length(m) - (size_t)(sp + 1 - s));
        *a = s;
        *al = (size_t)(sp - s);
        *c = sp + 1;
        *cl = end ? (size_t)(end - (sp + 1)) : json_string_length(m) - *al - 1;
    }
    return *al && *cl;
}

/* Checks the options transformers.js and the Rust tokenizers would not both apply as here. */
static const char *unsupported_option(const json_t *model)
{
    const json_t *d = json_object_get(model, "dropout");
    if (d && !json_is_null(d) && !(json_is_number(d) && json_number_value(d) == 0))
        return "dropout";
    if (tok_json_true(model, "continuing_subword_prefix"))
        return "continuing_subword_prefix";
    if (tok_json_true(model, "continuing_subword_suffix"))
        return "continuing_subword_suffix";
    if (tok_json_true(model, "byte_fallback"))
        return "byte_fallback";
    if (tok_json_true(model, "ignore_merges"))
        return "ignore_merges";
    return NULL;
}

static bool set_id_tok(tok_bpe *b, int32_t id, const char *s, size_t n)
{
    char *d = tok_dup_bytes(s, n);
    if (!d)
        return false;
    free(b->id_tok[id]);
    b->id_tok[id] = d;
    return true;
}

/* Vocabulary, added tokens and normalizer; the parts that need no symbols. */
static bool load_vocab(tok_bpe *b, const json_t *root, char *err, size_t errlen)
{
    const json_t *vocab = json_object_get(json_object_get(root, "model"), "vocab");
    const json_t *added = json_object_get(root, "added_tokens");
    const char *key;
    const json_t *val;
    size_t i;
    json_int_t max_id = -1;
    json_object_foreach((json_t *)vocab, key, val) {
        json_int_t id = json_integer_value(val);
        if (!json_is_integer(val) || id < 0 || id >= MAX_IDS) {
            embd_fail(err, errlen, "bad vocabulary id for %s", key);
            return false;
        }
        max_id = id > max_id ? id : max_id;
    }
    json_array_foreach(added, i, val) {
        json_int_t id = json_integer_value(json_object_get(val, "id"));
        if (!json_is_string(json_object_get(val, "content")) || id < 0 || id >= MAX_IDS) {
            embd_fail(err, errlen, "bad added token %zu", i);
            return false;
        }
        max_id = id > max_id ? id : max_id;
    }
    b->n_ids = (size_t)(max_id + 1);
    b->id_tok = calloc(b->n_ids ? b->n_ids : 1, sizeof *b->id_tok);
    if (!b->id_tok || !tok_htab_init(&b->ids, json_object_size(vocab)) || !tok_addeds_init(&b->ad))
        goto oom;
    json_object_foreach((json_t *)vocab, key, val) {
        /* jansson object keys stop at NUL; tokenizer.json vocabularies have none */
        int32_t id = (int32_t)json_integer_value(val);
        if (!tok_htab_put(&b->ids, key, strlen(key), id) || !set_id_tok(b, id, key, strlen(key)))
            goto oom;
    }
    const json_t *norm = json_object_get(root, "normalizer");
    if (!ugm_norm_parse(norm, &b->norm, &b->n_norm, err, errlen))
        return false;
    b->has_norm = norm && !json_is_null(norm);
    json_array_foreach(added, i, val) {
        tok_added a = tok_json_added(val);
        if (tu_utf8_validate((const uint8_t *)a.content, a.len) != a.len) {
            embd_fail(err, errlen, "added token %d is not valid UTF-8", (int)a.id);
            return false;
        }
        if (!tok_addeds_push(&b->ad, &a))
            goto oom;
    }
    /* tokens_to_ids.set(content, id) and model.vocab[id] = content for each added token, then
     * added_tokens_map and the splitters */
    scratch s;
    memset(&s, 0, sizeof s);
    for (i = 0; i < b->ad.n; i++) {
        tok_added *a = &b->ad.atoks[i];
        if (!tok_htab_put(&b->ids, a->content, a->len, a->id) || !set_id_tok(b, a->id, a->content, a->len))
            goto oom_s;
    }
    for (i = 0; i < b->ad.n; i++) {
        tok_added *a = &b->ad.atoks[i];
        size_t nl = 0;
        bool normed = a->normalized && b->has_norm && a->len;
        if ((normed && !ugm_norm_utf8(b->norm, b->n_norm, (const uint8_t *)a->content, a->len, &s.a, &s.b,
                                      &s.nb, &s.nb_cap, &nl)) ||
            !tok_addeds_register(&b->ad, i, normed ? s.nb : NULL, nl))
            goto oom_s;
    }
    scratch_free(&s);
    return true;
oom_s:
    scratch_free(&s);
oom:
    embd_fail(err, errlen, "out of memory");
    return false;
}

/* Symbols: the 512 byte symbols, then each merge's parts and result; the merges table. */
static bool load_merges(tok_bpe *b, const json_t *model, const char *suffix, char *err, size_t errlen)
{
    const json_t *merges = json_object_get(model, "merges");
    size_t nm = json_array_size(merges), slen = strlen(suffix);
    char buf[64];
    if (!tok_htab_init(&b->syms, 512 + nm * 2))
        goto oom;
    for (int c = 0; c < 256; c++) {
        size_t l = (size_t)tu_utf8_encode(byte_char((uint8_t)c), (uint8_t *)buf);
        if (slen + l > sizeof buf) {
            embd_fail(err, errlen, "end_of_word_suffix too long");
            return false;
        }
        memcpy(buf + l, suffix, slen);
        if ((b->byte_sym[0][c] = intern(b, buf, l)) < 0 || (b->byte_sym[1][c] = intern(b, buf, l + slen)) < 0)
            goto oom;
    }
    size_t cap = 16;
    while (cap < nm * 2)
        cap *= 2;
    b->merges = malloc(cap * sizeof *b->merges);
    if (!b->merges)
        goto oom;
    memset(b->merges, 0xFF, cap * sizeof *b->merges);
    b->mmask = cap - 1;
    char *cat = NULL;
    size_t cat_cap = 0;
    for (size_t i = 0; i < nm; i++) {
        const char *x, *y;
        size_t xl, yl;
        if (!merge_parts(json_array_get(merges, i), &x, &xl, &y, &yl))
            continue; /* cannot match any pair of symbols */
        if (xl + yl > cat_cap) {
            char *v = realloc(cat, xl + yl + 64);
            if (!v) {
                free(cat);
                goto oom;
            }
            cat = v;
            cat_cap = xl + yl + 64;
        }
        memcpy(cat, x, xl);
        memcpy(cat + xl, y, yl);
        int32_t l = intern(b, x, xl), r = intern(b, y, yl), res = intern(b, cat, xl + yl);
        if (l < 0 || r < 0 || res < 0) {
            free(cat);
            goto oom;
        }
        merge_put(b, l, r, (int32_t)i, res);
    }
    free(cat);
    return true;
oom:
    embd_fail(err, errlen, "out of memory");
    return false;
}

tok_bpe *tok_bpe_from_json(const json_t *root, char *err, size_t errlen)
{
    const json_t *model = json_object_get(root, "model");
    const json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    const json_t *unk = json_object_get(model, "unk_token");
    const json_t *sfx = json_object_get(model, "end_of_word_suffix");
    const char *cls = NULL, *sep = NULL, *bad = unsupported_option(model);
    if (!json_is_object(vocab) || !json_object_size(vocab) || json_object_size(vocab) > MAX_IDS) {
        embd_fail(err, errlen, "BPE model without a vocabulary object");
        return NULL;
    }
    if (!json_is_array(merges) || json_array_size(merges) > MAX_IDS) {
        embd_fail(err, errlen, "BPE model without a merges array");
        return NULL;
    }
    if (bad) {
        embd_fail(err, errlen, "unsupported BPE option %s", bad);
        return NULL;
    }
    if ((unk && !json_is_null(unk) && !json_is_string(unk)) || (sfx && !json_is_null(sfx) && !json_is_string(sfx))) {
        embd_fail(err, errlen, "bad BPE unk_token or end_of_word_suffix");
        return NULL;
    }
    if (!is_clip_pretokenizer(json_object_get(root, "pre_tokenizer"))) {
        embd_fail(err, errlen, "unsupported pre_tokenizer for a BPE model (want CLIP's Split + ByteLevel)");
        return NULL;
    }
    if (!tok_json_post_specials(json_object_get(root, "post_processor"), true, &cls, &sep)) {
        embd_fail(err, errlen, "unsupported post_processor (want <|startoftext|> $A <|endoftext|>)");
        return NULL;
    }
    const char *suffix = json_is_string(sfx) ? json_string_value(sfx) : "";
    if (strlen(suffix) != json_string_length(sfx) ||
        tu_utf8_validate((const uint8_t *)suffix, strlen(suffix)) != strlen(suffix)) {
        embd_fail(err, errlen, "bad end_of_word_suffix");
        return NULL;
    }
    tok_bpe *b = calloc(1, sizeof *b);
    if (!b) {
        embd_fail(err, errlen, "out of memory");
        return NULL;
    }
    if (!load_vocab(b, root, err, errlen) || !load_merges(b, model, suffix, err, errlen))
        goto fail;
    int32_t unk_id = -1;
    if (json_is_string(unk)) {
        unk_id = final_id(b, json_string_value(unk), json_string_length(unk));
        if (unk_id < 0) {
            embd_fail(err, errlen, "unk_token %s is not in the vocabulary", json_string_value(unk));
            goto fail;
        }
    }
    /* each symbol's id: pieces missing from tokens_to_ids become unk_token (or vanish without) */
    b->sym_final = malloc(b->n_syms * sizeof *b->sym_final);
    if (!b->sym_final) {
        embd_fail(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < b->syms.count; i++) {
        const tok_hent *e = &b->syms.ents[i];
        const char *s = b->syms.arena + e->off;
        b->sym_final[e->val] = tok_htab_get(&b->ids, s, e->len) >= 0 ? final_id(b, s, e->len) : unk_id;
    }
    b->cls_id = final_id(b, cls, strlen(cls));
    b->sep_id = final_id(b, sep, strlen(sep));
    if (b->cls_id < 0 || b->sep_id < 0) {
        embd_fail(err, errlen, "token %s not in the vocabulary", b->cls_id < 0 ? cls : sep);
        goto fail;
    }
    return b;
fail:
    tok_bpe_free(b);
    return NULL;
}
