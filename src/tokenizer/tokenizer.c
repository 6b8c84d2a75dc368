/* BERT WordPiece tokenizer that reproduces transformers.js (@huggingface/tokenizers) ids:
 *   added tokens split from the raw text -> BertNormalizer -> added tokens (normalized ones) ->
 *   BertPreTokenizer -> WordPiece -> [CLS] ... [SEP].
 * Where transformers.js and the Rust `tokenizers` disagree, this follows transformers.js:
 *   - CJK spacing covers the BMP ideograph ranges only (it tests UTF-16 units);
 *   - clean_text drops Cc/Cf/Co/Cs (Rust also drops unassigned Cn) and maps JS \s to ' ';
 *   - lowercasing is String.toLowerCase (full mapping with the final-sigma rule), then NFD and Mn
 *     removal (Rust strips accents before lowercasing);
 *   - added-token contents are also WordPiece vocabulary, single_word is ignored, lstrip/rstrip
 *     trim the neighbouring sections.
 * Character data follows the Node that generated the fixtures (tok_unicode.h). A Unigram model
 * (unigram.c) and a byte-level BPE model (bpe.c) sit behind the same API: encode then only adds
 * [CLS]/[SEP] (their <s>/</s>, <|startoftext|>/<|endoftext|>) and truncates. */
#include "tokenizer/tokenizer.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/bpe.h"
#include "tokenizer/tok_buf.h"
#include "tokenizer/tok_hash.h"
#include "tokenizer/tok_json.h"
#include "tokenizer/tok_unicode.h"
#include "tokenizer/unigram.h"
#include "util/sys.h"


/* Byte trie of added-token contents; leftmost-longest matching like DictionarySplitter. */
typedef struct {
    int32_t child, sibling;
    uint8_t byte;
    bool end; /* a content ends here */
} trie_node;

typedef struct {
    trie_node *nodes;
    size_t n, cap;
    bool first[256];
    bool empty;
} trie;

struct embd_tokenizer {
    embd_wordpiece_opts opts;
    bool strip; /* resolved strip_accents */
    tok_htab vocab; /* WordPiece vocabulary (+ added contents) -> final id */
    tok_htab added; /* added_tokens_map: content and normalized content -> added token index */
    tok_added *atoks;
    size_t n_atoks;
    trie raw_trie, norm_trie;
    char **id_tok; /* id -> token string (NULL for gaps) */
    size_t n_ids;
    char *prefix; /* continuing_subword_prefix */
    size_t plen;
    uint64_t prefix_hash;
    int32_t unk_id, cls_id, sep_id;
    tok_ugm *ugm; /* a Unigram model (unigram.c) instead of the WordPiece above */
    tok_bpe *bpe; /* or a byte-level BPE model (bpe.c) */
};


void embd_wordpiece_opts_default(embd_wordpiece_opts *o)
{
    o->clean_text = true;
    o->handle_chinese_chars = true;
    o->strip_accents = -1;
    o->lowercase = true;
    o->max_input_chars_per_word = 100;
}

/* ---------------------------------------------------------------- growable buffers */



/* Per-call scratch: encode is reentrant on a shared tokenizer. */
typedef struct {
    tok_cps a, b;     /* normalizer passes */
    tok_cps *cps;     /* normalized code points (a or b) */
    uint8_t *bytes; /* normalized text as UTF-8 */
    size_t bytes_cap;
    uint32_t *offs; /* byte offset of each normalized code point, plus the end */
    size_t offs_cap;
    tok_spanbuf secs, subs;
} scratch;

static void scratch_free(scratch *s)
{
    free(s->a.v);
    free(s->b.v);
    free(s->bytes);
    free(s->offs);
    free(s->secs.v);
    free(s->subs.v);
}

static inline bool is_ws(uint32_t cp)
{
    return (tu_flags_fast(cp) & TU_SPACE) != 0;
}

/* ---------------------------------------------------------------- normalizer */

static bool reserve_out(scratch *sc, size_t nbytes, size_t noffs)
{
    if (nbytes > sc->bytes_cap) {
        free(sc->bytes);
        sc->bytes_cap = nbytes + 64;
        sc->bytes = malloc(sc->bytes_cap);
        if (!sc->bytes) {
            sc->bytes_cap = 0;
            return false;
        }
    }
    if (noffs > sc->offs_cap) {
        free(sc->offs);
        sc->offs_cap = noffs + 64;
        sc->offs = malloc(sc->offs_cap * sizeof *sc->offs);
        if (!sc->offs) {
            sc->offs_cap = 0;
            return false;
        }
    }
    return true;
}

/* The normalizer for pure ASCII in one pass; false (nothing to undo) at the first other byte. */
static bool normalize_ascii(const embd_tokenizer *t, const uint8_t *s, size_t n, scratch *sc)
{
    const embd_wordpiece_opts *o = &t->opts;
    tok_cps *cps = &sc->a;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c >= 0x80)
            return false;
        unsigned f = tu_ascii_flags[c];
        if (o->clean_text) {
            if ((f & TU_CTRL) && c != '\t' && c != '\n' && c != '\r')
                continue; /* NUL included */
            if (f & TU_SPACE)
                c = ' ';
        }
        if (o->lowercase && c >= 'A' && c <= 'Z')
            c += 32;
        sc->bytes[k] = c;
        cps->v[k] = c;
        sc->offs[k] = (uint32_t)k;
        k++;
    }
    sc->offs[k] = (uint32_t)k;
    cps->n = k;
    sc->cps = cps;
    return true;
}

/* BertNormalizer of valid UTF-8 s[0..n) into sc->cps / sc->bytes / sc->offs. */
static bool normalize(const embd_tokenizer *t, const uint8_t *s, size_t n, scratch *sc)
{
    const embd_wordpiece_opts *o = &t->opts;
    tok_cps *in = &sc->a, *out = &sc->b;
    in->n = 0;
    if (!tok_cps_reserve(in, n + 16) || !reserve_out(sc, n, n + 1))
        return false;
    if (normalize_ascii(t, s, n, sc))
        return true;
    /* clean_text + handle_chinese_chars */
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        if (s[i] < 0x80)
            cp = s[i++];
        else
            i += (size_t)tu_utf8_decode(s + i, &cp);
        if (o->clean_text) {
            unsigned f = tu_flags_fast(cp);
            if (cp == 0 || cp == 0xFFFD || ((f & TU_CTRL) && cp != '\t' && cp != '\n' && cp != '\r'))
                continue;
            if (f & TU_SPACE)
                cp = ' ';
        }
        if (o->handle_chinese_chars && tu_is_chinese(cp)) {
            if (!tok_cps_reserve(in, 3))
                return false;
            in->v[in->n++] = ' ';
            in->v[in->n++] = cp;
            in->v[in->n++] = ' ';
        } else {
            if (!tok_cps_reserve(in, 1))
                return false;
            in->v[in->n++] = cp;
        }
    }
    if (o->lowercase) {
        if (!tu_lower_cps(in, out))
            return false;
        tok_cps *x = in;
        in = out;
        out = x;
    }
    if (t->strip) {
        out->n = 0;
        if (!tok_cps_reserve(out, in->n + 16))
            return false;
        for (size_t i = 0; i < in->n; i++) {
            uint32_t cp = in->v[i];
            if (!tok_cps_reserve(out, TU_MAX_NFD))
                return false;
            if (cp < 0xC0)
                out->v[out->n++] = cp;
            else
                out->n += (size_t)tu_nfd(cp, out->v + out->n);
        }
        /* canonical ordering, then drop \p{Mn} */
        size_t w = 0;
        for (size_t i = 0; i < out->n;) {
            uint32_t cp = out->v[i];
            if (cp < 0x300 || tu_ccc(cp) == 0) {
                if (cp < 0x300 || !(tu_flags(cp) & TU_MN))
                    out->v[w++] = cp;
                i++;
                continue;
            }
            size_t j = i + 1;
            while (j < out->n && out->v[j] >= 0x300 && tu_ccc(out->v[j]) != 0)
                j++;
            if (j - i > 1 && !tu_order_marks(out->v + i, j - i))
                return false;
            for (; i < j; i++)
                if (!(tu_flags(out->v[i]) & TU_MN))
                    out->v[w++] = out->v[i];
        }
        out->n = w;
        tok_cps *x = in;
        in = out;
        out = x;
    }
    sc->cps = in;
    if (!reserve_out(sc, in->n * 4, in->n + 1))
        return false;
    size_t nb = 0;
    for (size_t i = 0; i < in->n; i++) {
        sc->offs[i] = (uint32_t)nb;
        nb += (size_t)tu_utf8_encode(in->v[i], sc->bytes + nb);
    }
    sc->offs[in->n] = (uint32_t)nb;
    return true;
}

/* ---------------------------------------------------------------- added-token trie */

static int32_t trie_new_node(trie *tr, uint8_t byte)
{
    if (tr->n == tr->cap) {
        size_t cap = tr->cap ? tr->cap * 2 : 64;
        trie_node *v = realloc(tr->nodes, cap * sizeof *v);
        if (!v)
            return -1;
        tr->nodes = v;
        tr->cap = cap;
    }
    tr->nodes[tr->n] = (trie_node){-1, -1, byte, false};
    return (int32_t)tr->n++;
}

static bool trie_init(trie *tr)
{
    memset(tr, 0, sizeof *tr);
    tr->empty = true;
    return trie_new_node(tr, 0) == 0;
}

static bool trie_add(trie *tr, const char *s, size_t len)
{
    if (!len) /* DictionarySplitter never matches an empty token */
        return true;
    int32_t node = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = (uint8_t)s[i];
        int32_t c = tr->nodes[node].child;
        while (c >= 0 && tr->nodes[c].byte != b)
            c = tr->nodes[c].sibling;
        if (c < 0) {
            c = trie_new_node(tr, b);
            if (c < 0)
                return false;
            tr->nodes[c].sibling = tr->nodes[node].child;
            tr->nodes[node].child = c;
        }
        node = c;
    }
    tr->nodes[node].end = true;
    tr->first[(uint8_t)s[0]] = true;
    tr->empty = false;
    return true;
}

/* Length of the longest content starting at s[0] (0: none). */
static size_t trie_match(const trie *tr, const uint8_t *s, size_t n)
{
    size_t best = 0;
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t c = tr->nodes[node].child;
        while (c >= 0 && tr->nodes[c].byte != s[i])
            c = tr->nodes[c].sibling;
        if (c < 0)
            break;
        node = c;
        if (tr->nodes[node].end)
            best = i + 1;
    }
    return best;
}

/* ---------------------------------------------------------------- encoder */

typedef struct {
    embd_tokens *out;
    size_t limit;   /* pieces stored at most */
    size_t npieces; /* pieces produced (the untruncated count) */
    bool oom;
} emitter;

static void emit(emitter *e, int32_t id)
{
    if (e->npieces < e->limit) {
        size_t need = e->npieces + 3; /* [CLS] + pieces + [SEP] */
        if (need > e->out->cap) {
            size_t cap = e->out->cap ? e->out->cap * 2 : 64;
            while (cap < need)
                cap *= 2;
            int32_t *v = realloc(e->out->ids, cap * sizeof *v);
            if (!v) {
                e->oom = true;
                return;
            }
            e->out->ids = v;
            e->out->cap = cap;
        }
        e->out->ids[1 + e->npieces] = id;
    }
    e->npieces++;
}

/* WordPiece of normalized code points [s, e): greedy longest match first. */
static void wordpiece(const embd_tokenizer *t, const scratch *sc, size_t s, size_t e, emitter *em)
{
    const uint32_t *off = sc->offs;
    const uint8_t *b = sc->bytes;
    if (e - s > (size_t)t->opts.max_input_chars_per_word) {
        emit(em, t->unk_id);
        return;
    }
    size_t mark = em->npieces;
    for (size_t start = s; start < e;) {
        size_t pl = start > s ? t->plen : 0;
        size_t end = e;
        while (end > start && off[end] - off[start] + pl > t->vocab.max_len) /* cannot match */
            end--;
        int32_t id = -1;
        uint64_t h0 = start > s ? t->prefix_hash : TOK_HASH_SEED;
        for (; end > start; end--) {
            size_t len = off[end] - off[start];
            id = tok_htab_get2(&t->vocab, tok_hash(h0, b + off[start], len), t->prefix, pl,
                               b + off[start], len);
            if (id >= 0)
                break;
        }
        if (id < 0) {
            em->npieces = mark;
            emit(em, t->unk_id);
            return;
        }
        emit(em, id);
        start = end;
    }
}

/* BertPreTokenizer: runs of non-space non-punctuation, and each punctuation character alone. */
static void pretokenize(const embd_tokenizer *t, const scratch *sc, size_t s, size_t e, emitter *em)
{
    const uint32_t *v = sc->cps->v;
    for (size_t i = s; i < e;) {
        unsigned f = tu_flags_fast(v[i]);
        if (f & TU_SPACE) {
            i++;
        } else if (f & TU_PUNCT) {
            wordpiece(t, sc, i, i + 1, em);
            i++;
        } else {
            size_t j = i + 1;
            while (j < e && !(tu_flags_fast(v[j]) & (TU_SPACE | TU_PUNCT)))
                j++;
            wordpiece(t, sc, i, j, em);
            i = j;
        }
    }
}

static int32_t added_lookup(const embd_tokenizer *t, const void *s, size_t len)
{
    return t->n_atoks ? tok_htab_get(&t->added, s, len) : -1;
}

/* Splits text by a trie into sections, then applies lstrip/rstrip of the added tokens found by
 * looking each section up as transformers.js does (by its text, after earlier trims). Works on
 * bytes (raw) or on code points (normalized; ranges map to bytes through offs). */
static bool split_sections(const embd_tokenizer *t, const trie *tr, const uint8_t *b, size_t nb,
                           const uint32_t *offs, size_t ncp, tok_spanbuf *out)
{
    out->n = 0;
    size_t n = offs ? ncp : nb, start = 0;
    for (size_t i = 0; i < n;) {
        size_t bi = offs ? offs[i] : i;
        size_t mlen = tr->first[b[bi]] ? trie_match(tr, b + bi, nb - bi) : 0;
        if (!mlen) {
            i++;
            continue;
        }
        size_t j = i;
        if (offs) {
            while (offs[j] < bi + mlen)
                j++;
        } else {
            j = i + mlen;
        }
        if ((i > start && !tok_span_push(out, start, i)) || !tok_span_push(out, i, j))
            return false;
        i = start = j;
    }
    if (start < n && !tok_span_push(out, start, n))
        return false;
    /* lstrip / rstrip: trim JS whitespace of the neighbouring sections */
    for (size_t k = 0; k < out->n; k++) {
        tok_span *sec = &out->v[k];
        size_t b0 = offs ? offs[sec->start] : sec->start, b1 = offs ? offs[sec->end] : sec->end;
        int32_t a = added_lookup(t, b + b0, b1 - b0);
        if (a < 0)
            continue;
        if (t->atoks[a].lstrip && k > 0) {
            tok_span *p = &out->v[k - 1];
            while (p->end > p->start) {
                uint32_t cp;
                size_t ps = p->end - 1;
                if (!offs)
                    while (ps > p->start && (b[ps] & 0xC0) == 0x80)
                        ps--;
                tu_utf8_decode(b + (offs ? offs[ps] : ps), &cp);
                if (!is_ws(cp))
                    break;
                p->end = ps;
            }
        }
        if (t->atoks[a].rstrip && k + 1 < out->n) {
            tok_span *q = &out->v[k + 1];
            while (q->start < q->end) {
                uint32_t cp;
                size_t bs = offs ? offs[q->start] : q->start;
                int l = tu_utf8_decode(b + bs, &cp);
                if (!is_ws(cp))
                    break;
                q->start += offs ? 1 : (size_t)l;
            }
        }
    }
    return true;
}

static bool encode_text(const embd_tokenizer *t, const uint8_t *text, size_t len, scratch *sc,
                        emitter *em)
{
    if (!t->n_atoks) {
        sc->secs.n = 0;
        if (len && !tok_span_push(&sc->secs, 0, len))
            return false;
    } else if (!split_sections(t, &t->raw_trie, text, len, NULL, 0, &sc->secs)) {
        return false;
    }
    for (size_t k = 0; k < sc->secs.n; k++) {
        tok_span sec = sc->secs.v[k];
        if (sec.end <= sec.start)
            continue;
        /* looked up by text after all trims, like added_tokens_map.has(section) */
        int32_t a = added_lookup(t, text + sec.start, sec.end - sec.start);
        if (a >= 0) {
            emit(em, t->atoks[a].id);
            continue;
        }
        if (!normalize(t, text + sec.start, sec.end - sec.start, sc))
            return false;
        size_t ncp = sc->cps->n;
        if (!ncp)
            continue;
        sc->subs.n = 0;
        if (t->norm_trie.empty) {
            if (!tok_span_push(&sc->subs, 0, ncp))
                return false;
        } else if (!split_sections(t, &t->norm_trie, sc->bytes, sc->offs[ncp], sc->offs, ncp, &sc->subs)) {
            return false;
        }
        for (size_t j = 0; j < sc->subs.n; j++) {
            tok_span sub = sc->subs.v[j];
            if (sub.end <= sub.start)
                continue;
            a = added_lookup(t, sc->bytes + sc->offs[sub.start], sc->offs[sub.end] - sc->offs[sub.start]);
            if (a >= 0)
                emit(em, t->atoks[a].id);
            else
                pretokenize(t, sc, sub.start, sub.end, em);
        }
    }
    return !em->oom;
}

static void emit_cb(void *ctx, int32_t id)
{
    emit(ctx, id);
}

int embd_tokenizer_encode(const embd_tokenizer *t, const char *text, size_t len, size_t max_tokens,
                          embd_tokens *out, size_t *err_offset)
{
    if (!t || !out || (!text && len))
        return EMBD_TOK_EINVAL;
    out->n = 0;
    out->n_full = 0;
    out->truncated = false;
    const uint8_t *s = (const uint8_t *)(text ? text : "");
    size_t bad = tu_utf8_validate(s, len);
    if (bad < len) {
        if (err_offset)
            *err_offset = bad;
        return EMBD_TOK_EUTF8;
    }
    if (out->cap < 2) {
        int32_t *v = realloc(out->ids, 64 * sizeof *v);
        if (!v)
            return EMBD_TOK_ENOMEM;
        out->ids = v;
        out->cap = 64;
    }
    emitter em = {out, SIZE_MAX, 0, false};
    if (max_tokens)
        em.limit = max_tokens >= 2 ? max_tokens - 2 : 0;
    bool ok;
    if (t->ugm) {
        ok = tok_ugm_encode(t->ugm, s, len, emit_cb, &em) && !em.oom;
    } else if (t->bpe) {
        ok = tok_bpe_encode(t->bpe, s, len, emit_cb, &em) && !em.oom;
    } else {
        scratch sc;
        memset(&sc, 0, sizeof sc);
        ok = encode_text(t, s, len, &sc, &em);
        scratch_free(&sc);
    }
    if (!ok)
        return EMBD_TOK_ENOMEM;
    size_t stored = em.npieces < em.limit ? em.npieces : em.limit;
    out->ids[0] = embd_tokenizer_cls_id(t);
    out->n_full = em.npieces + 2;
    if (max_tokens == 1) {
        out->n = 1; /* room for [CLS] only */
    } else {
        out->ids[1 + stored] = embd_tokenizer_sep_id(t);
        out->n = stored + 2;
    }
    out->truncated = out->n < out->n_full;
    return EMBD_TOK_OK;
}

void embd_tokens_free(embd_tokens *tk)
{
    if (!tk)
        return;
    free(tk->ids);
    memset(tk, 0, sizeof *tk);
}

/* ---------------------------------------------------------------- construction */

void embd_tokenizer_free(embd_tokenizer *t)
{
    if (!t)
        return;
    tok_htab_free(&t->vocab);
    tok_htab_free(&t->added);
    for (size_t i = 0; i < t->n_atoks; i++)
        free(t->atoks[i].content);
    free(t->atoks);
    free(t->raw_trie.nodes);
    free(t->norm_trie.nodes);
    if (t->id_tok)
        for (size_t i = 0; i < t->n_ids; i++)
            free(t->id_tok[i]);
    free(t->id_tok);
    free(t->prefix);
    tok_ugm_free(t->ugm);
    tok_bpe_free(t->bpe);
    free(t);
}


static embd_tokenizer *tok_alloc(const embd_wordpiece_opts *opts, size_t n_vocab)
{
    embd_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    if (opts)
        t->opts = *opts;
    else
        embd_wordpiece_opts_default(&t->opts);
    if (t->opts.max_input_chars_per_word < 0)
        t->opts.max_input_chars_per_word = 0;
    t->strip = t->opts.strip_accents < 0 ? t->opts.lowercase : t->opts.strip_accents > 0;
    if (!tok_htab_init(&t->vocab, n_vocab) || !tok_htab_init(&t->added, 16) ||
        !trie_init(&t->raw_trie) || !trie_init(&t->norm_trie)) {
        embd_tokenizer_free(t);
        return NULL;
    }
    return t;
}

static bool set_id_tok(embd_tokenizer *t, int32_t id, const char *s, size_t n)
{
    if (id < 0 || (size_t)id >= t->n_ids)
        return false;
    char *d = tok_dup_bytes(s, n);
    if (!d)
        return false;
    free(t->id_tok[id]);
    t->id_tok[id] = d;
    return true;
}

static bool add_token(embd_tokenizer *t, const tok_added *a, size_t *cap)
{
    if (t->n_atoks == *cap) {
        size_t c = *cap ? *cap * 2 : 8;
        tok_added *v = realloc(t->atoks, c * sizeof *v);
        if (!v)
            return false;
        t->atoks = v;
        *cap = c;
    }
    tok_added *d = &t->atoks[t->n_atoks];
    *d = *a;
    d->content = tok_dup_bytes(a->content, a->len);
    if (!d->content)
        return false;
    t->n_atoks++;
    return true;
}

/* Looks a token string up as the final id mapping of transformers.js does. */
static int32_t final_id(const embd_tokenizer *t, const char *s)
{
    int32_t a = added_lookup(t, s, strlen(s));
    return a >= 0 ? t->atoks[a].id : tok_htab_get(&t->vocab, s, strlen(s));
}

/* Shared tail of both constructors: vocab holds the model vocabulary, atoks the added tokens. */
static embd_tokenizer *finish(embd_tokenizer *t, const char *unk, const char *cls, const char *sep,
                              const char *prefix, char *err, size_t errlen)
{
    scratch sc;
    memset(&sc, 0, sizeof sc);
    t->prefix = tok_dup_bytes(prefix, strlen(prefix));
    if (!t->prefix)
        goto oom;
    t->plen = strlen(prefix);
    t->prefix_hash = tok_hash(TOK_HASH_SEED, prefix, t->plen);
    for (size_t i = 0; i < t->n_atoks; i++) {
        tok_added *a = &t->atoks[i];
        if (tu_utf8_validate((const uint8_t *)a->content, a->len) != a->len) {
            embd_fail(err, errlen, "added token %d is not valid UTF-8", (int)a->id);
            goto fail;
        }
        /* tokens_to_ids.set(content, id): added contents are WordPiece vocabulary too */
        if (!tok_htab_put(&t->vocab, a->content, a->len, a->id) ||
            !set_id_tok(t, a->id, a->content, a->len))
            goto oom;
    }
    for (size_t i = 0; i < t->n_atoks; i++) {
        tok_added *a = &t->atoks[i];
        if (!tok_htab_put(&t->added, a->content, a->len, (int32_t)i))
            goto oom;
        if (a->normalized) {
            if (!normalize(t, (const uint8_t *)a->content, a->len, &sc))
                goto oom;
            size_t nl = sc.offs[sc.cps->n];
            if (!tok_htab_put(&t->added, sc.bytes, nl, (int32_t)i) ||
                !trie_add(&t->norm_trie, (const char *)sc.bytes, nl))
                goto oom;
        } else if (!trie_add(&t->raw_trie, a->content, a->len)) {
            goto oom;
        }
    }
    /* ids: added_tokens_map first, so a vocabulary string that is an added token's (normalized)
     * content maps to that token */
    for (size_t i = 0; i < t->added.count; i++) {
        const tok_hent *e = &t->added.ents[i];
        tok_htab_update(&t->vocab, t->added.arena + e->off, e->len, t->atoks[e->val].id);
    }
    t->unk_id = final_id(t, unk);
    t->cls_id = final_id(t, cls);
    t->sep_id = final_id(t, sep);
    if (t->unk_id < 0 || t->cls_id < 0 || t->sep_id < 0) {
        embd_fail(err, errlen, "token %s not in the vocabulary",
                t->unk_id < 0 ? unk : t->cls_id < 0 ? cls : sep);
        goto fail;
    }
    scratch_free(&sc);
    return t;
oom:
    embd_fail(err, errlen, "out of memory");
fail:
    scratch_free(&sc);
    embd_tokenizer_free(t);
    return NULL;
}

#define PHANTOM "\xE2\x96\x81" /* U+2581, llama.cpp's word-start marker */

embd_tokenizer *embd_tokenizer_new_wordpiece(const char *const *tokens, const int32_t *token_types,
                                             size_t n_tokens, const embd_wordpiece_opts *opts,
                                             char *err, size_t errlen)
{
    if (!tokens || !n_tokens || n_tokens > INT32_MAX) {
        embd_fail(err, errlen, "empty or oversized vocabulary");
        return NULL;
    }
    embd_tokenizer *t = tok_alloc(opts, n_tokens);
    if (!t) {
        embd_fail(err, errlen, "out of memory");
        return NULL;
    }
    /* llama.cpp's GGUF conversion writes "##x" as "x" and "x" as "\u2581x" (control tokens
     * unchanged); undo it when the vocabulary looks converted */
    bool has_cont = false, has_phantom = false;
    for (size_t i = 0; i < n_tokens; i++) {
        if (!tokens[i]) {
            embd_fail(err, errlen, "token %zu is NULL", i);
            embd_tokenizer_free(t);
            return NULL;
        }
        has_cont |= strncmp(tokens[i], "##", 2) == 0;
        has_phantom |= strncmp(tokens[i], PHANTOM, 3) == 0;
    }
    bool phantom = has_phantom && !has_cont;
    const char *unk = "[UNK]";
    size_t acap = 0;
    char buf[256];
    t->n_ids = n_tokens;
    t->id_tok = calloc(n_tokens, sizeof *t->id_tok);
    if (!t->id_tok)
        goto oom;
    for (size_t i = 0; i < n_tokens; i++) {
        const char *tok = tokens[i];
        size_t len = strlen(tok);
        int32_t type = token_types ? token_types[i] : 1;
        char *conv = NULL;
        bool bracketed = len >= 2 && tok[0] == '[' && tok[len - 1] == ']';
        if (phantom && type != 3 && !(!token_types && bracketed)) {
            if (strncmp(tok, PHANTOM, 3) == 0) {
                tok += 3;
                len -= 3;
            } else {
                conv = len + 3 <= sizeof buf ? buf : malloc(len + 3);
                if (!conv)
                    goto oom;
                memcpy(conv, "##", 2);
                memcpy(conv + 2, tok, len + 1);
                tok = conv;
                len += 2;
            }
        }
        bool ok = tok_htab_put(&t->vocab, tok, len, (int32_t)i) && set_id_tok(t, (int32_t)i, tok, len);
        bool is_added = token_types ? (type == 2 || type == 3 || type == 4)
                                    : (!strcmp(tok, "[PAD]") || !strcmp(tok, "[UNK]") ||
                                       !strcmp(tok, "[CLS]") || !strcmp(tok, "[SEP]") ||
                                       !strcmp(tok, "[MASK]"));
        if (ok && is_added) {
            tok_added a = {.content = (char *)tok, .len = len, .id = (int32_t)i,
                           .special = type != 4};
            ok = add_token(t, &a, &acap);
            if (ok && type == 2 && token_types)
                unk = t->atoks[t->n_atoks - 1].content;
        }
        if (conv && conv != buf)
            free(conv);
        if (!ok)
            goto oom;
    }
    return finish(t, unk, "[CLS]", "[SEP]", "##", err, errlen);
oom:
    embd_fail(err, errlen, "out of memory");
    embd_tokenizer_free(t);
    return NULL;
}


static embd_tokenizer *wrap_ugm(tok_ugm *u)
{
    embd_tokenizer *t = u ? calloc(1, sizeof *t) : NULL;
    if (!t) {
        tok_ugm_free(u);
        return NULL;
    }
    t->ugm = u;
    return t;
}

embd_tokenizer *embd_tokenizer_new_unigram(const embd_unigram_vocab *v, char *err, size_t errlen)
{
    tok_ugm *u = tok_ugm_new(v, err, errlen);
    embd_tokenizer *t = wrap_ugm(u);
    if (u && !t)
        embd_fail(err, errlen, "out of memory");
    return t;
}

static embd_tokenizer *from_json(json_t *root, char *err, size_t errlen)
{
    const json_t *model = json_object_get(root, "model");
    const json_t *vocab = json_object_get(model, "vocab");
    const json_t *norm = json_object_get(root, "normalizer");
    const json_t *pre = json_object_get(root, "pre_tokenizer");
    const json_t *post = json_object_get(root, "post_processor");
    const json_t *added = json_object_get(root, "added_tokens");
    const char *mtype = tok_json_str(model, "type", json_is_array(vocab)                  ? "Unigram"
                                                    : json_object_get(model, "merges") ? "BPE"
                                                                                       : "WordPiece");
    const char *cls = NULL, *sep = NULL;
    if (!strcmp(mtype, "BPE")) {
        tok_bpe *b = tok_bpe_from_json(root, err, errlen);
        embd_tokenizer *t = b ? calloc(1, sizeof *t) : NULL;
        if (b && !t) {
            tok_bpe_free(b);
            embd_fail(err, errlen, "out of memory");
        } else if (t) {
            t->bpe = b;
        }
        return t;
    }
    if (!strcmp(mtype, "Unigram")) {
        tok_ugm *u = tok_ugm_from_json(root, err, errlen);
        embd_tokenizer *t = wrap_ugm(u);
        if (u && !t)
            embd_fail(err, errlen, "out of memory");
        return t;
    }
    if (!json_is_object(vocab) || strcmp(mtype, "WordPiece")) {
        embd_fail(err, errlen, "model %s is not WordPiece, Unigram or BPE", mtype);
        return NULL;
    }
    if (norm && !json_is_null(norm) && strcmp(tok_json_str(norm, "type", ""), "BertNormalizer")) {
        embd_fail(err, errlen, "unsupported normalizer %s", tok_json_str(norm, "type", "?"));
        return NULL;
    }
    if (strcmp(tok_json_str(pre, "type", ""), "BertPreTokenizer")) {
        embd_fail(err, errlen, "unsupported pre_tokenizer %s", tok_json_str(pre, "type", "?"));
        return NULL;
    }
    if (!tok_json_post_specials(post, false, &cls, &sep)) {
        embd_fail(err, errlen, "unsupported post_processor (want [CLS] $A [SEP])");
        return NULL;
    }
    /* transformers.js reads these options as given: an absent one is falsy */
    embd_wordpiece_opts o;
    embd_wordpiece_opts_default(&o);
    if (norm && !json_is_null(norm)) {
        const json_t *sa = json_object_get(norm, "strip_accents");
        o.clean_text = tok_json_true(norm, "clean_text");
        o.handle_chinese_chars = tok_json_true(norm, "handle_chinese_chars");
        o.lowercase = tok_json_true(norm, "lowercase");
        /* JS: lowercase ? strip_accents !== false : !!strip_accents */
        o.strip_accents = json_is_false(sa) ? 0 : tok_json_true(norm, "strip_accents") ? 1 : -1;
    } else {
        o.clean_text = o.handle_chinese_chars = o.lowercase = false;
        o.strip_accents = 0;
    }
    const json_t *mc = json_object_get(model, "max_input_chars_per_word");
    if (json_is_integer(mc))
        o.max_input_chars_per_word = json_integer_value(mc) < 0 ? 0
                                     : json_integer_value(mc) > INT32_MAX ? INT32_MAX
                                                                          : (int)json_integer_value(mc);

    embd_tokenizer *t = tok_alloc(&o, json_object_size(vocab));
    if (!t) {
        embd_fail(err, errlen, "out of memory");
        return NULL;
    }
    json_int_t max_id = -1;
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)vocab, key, val) {
        json_int_t id = json_integer_value(val);
        if (!json_is_integer(val) || id < 0 || id >= (1 << 24)) {
            embd_fail(err, errlen, "bad vocabulary id for %s", key);
            embd_tokenizer_free(t);
            return NULL;
        }
        if (id > max_id)
            max_id = id;
    }
    size_t i;
    json_array_foreach(added, i, val) {
        json_int_t id = json_integer_value(json_object_get(val, "id"));
        if (!json_is_string(json_object_get(val, "content")) || id < 0 || id >= (1 << 24)) {
            embd_fail(err, errlen, "bad added token %zu", i);
            embd_tokenizer_free(t);
            return NULL;
        }
        if (id > max_id)
            max_id = id;
    }
    t->n_ids = (size_t)(max_id + 1);
    t->id_tok = calloc(t->n_ids ? t->n_ids : 1, sizeof *t->id_tok);
    if (!t->id_tok)
        goto oom;
    json_object_foreach((json_t *)vocab, key, val) {
        /* jansson object keys stop at NUL; tokenizer.json vocabularies have none */
        size_t len = strlen(key);
        int32_t id = (int32_t)json_integer_value(val);
        if (!tok_htab_put(&t->vocab, key, len, id) || !set_id_tok(t, id, key, len))
            goto oom;
    }
    size_t acap = 0;
    json_array_foreach(added, i, val) {
        tok_added a = tok_json_added(val);
        if (!norm || json_is_null(norm))
            a.normalized = false; /* no normalizer: all contents match the raw text */
        if (!add_token(t, &a, &acap))
            goto oom;
    }
    return finish(t, tok_json_str(model, "unk_token", "[UNK]"), cls, sep,
                  tok_json_str(model, "continuing_subword_prefix", "##"), err, errlen);
oom:
    embd_fail(err, errlen, "out of memory");
    embd_tokenizer_free(t);
    return NULL;
}

embd_tokenizer *embd_tokenizer_from_json(const char *json, size_t len, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_ALLOW_NUL, &je);
    if (!root) {
        embd_fail(err, errlen, "tokenizer JSON: %s (line %d)", je.text, je.line);
        return NULL;
    }
    embd_tokenizer *t = from_json(root, err, errlen);
    json_decref(root);
    return t;
}

embd_tokenizer *embd_tokenizer_from_json_file(const char *path, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_load_file(path, JSON_ALLOW_NUL, &je);
    if (!root) {
        embd_fail(err, errlen, "%s: %s (line %d)", path, je.text, je.line);
        return NULL;
    }
    embd_tokenizer *t = from_json(root, err, errlen);
    json_decref(root);
    return t;
}

size_t embd_tokenizer_vocab_size(const embd_tokenizer *t)
{
    return !t ? 0 : t->ugm ? tok_ugm_vocab_size(t->ugm) : t->bpe ? tok_bpe_vocab_size(t->bpe) : t->n_ids;
}

const char *embd_tokenizer_token(const embd_tokenizer *t, int32_t id)
{
    if (t && t->ugm)
        return tok_ugm_token(t->ugm, id);
    if (t && t->bpe)
        return tok_bpe_token(t->bpe, id);
    if (!t || id < 0 || (size_t)id >= t->n_ids)
        return NULL;
    return t->id_tok[id];
}

int32_t embd_tokenizer_cls_id(const embd_tokenizer *t)
{
    return !t ? -1 : t->ugm ? tok_ugm_cls_id(t->ugm) : t->bpe ? tok_bpe_cls_id(t->bpe) : t->cls_id;
}

int32_t embd_tokenizer_sep_id(const embd_tokenizer *t)
{
    return !t ? -1 : t->ugm ? tok_ugm_sep_id(t->ugm) : t->bpe ? tok_bpe_sep_id(t->bpe) : t->sep_id;
}
