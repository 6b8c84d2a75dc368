/* SentencePiece Unigram model with transformers.js's ids (@huggingface/tokenizers Unigram):
 *   added tokens split from the raw text (lstrip/rstrip) -> normalizer (ugm_norm.c) -> normalized
 *   added tokens -> Metaspace (' ' -> U+2581, prepended) -> Viterbi over the vocabulary ->
 *   consecutive unknown pieces fused into one -> ids.
 * Where it matters, this follows transformers.js rather than SentencePiece / the Rust tokenizers /
 * llama.cpp: one lattice per section (Metaspace does not split at U+2581), whitespace is not
 * trimmed (a trailing space gives a "▁" piece), control tokens such as <s> are vocabulary of the
 * lattice with their score, the unknown piece scores min(scores) - 10, byte_fallback is not
 * applied, and equal path scores keep the path whose last piece starts first. */
#include "tokenizer/unigram.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_buf.h"
#include "tokenizer/tok_hash.h"
#include "tokenizer/tok_json.h"
#include "tokenizer/tok_split.h"
#include "tokenizer/tok_unicode.h"
#include "util/sys.h"

/* The vocabulary trie is static: built once from the sorted strings in breadth-first order, so
 * that the children of a node are consecutive nodes with ascending labels (the root's are in a
 * table). A lookup touches one or two cache lines; ~11 bytes a node. */
typedef struct {
    uint32_t *first; /* first child */
    uint16_t *cnt;   /* number of children */
    uint8_t *label;  /* byte of the edge into the node */
    int32_t *term;   /* terminal index (the string's rank among the unique strings) or -1 */
    size_t n;
    uint32_t root[256]; /* child of the root by byte; 0: none */
} ugm_ctrie;

static inline int64_t ctrie_child(const ugm_ctrie *t, uint32_t node, uint8_t b)
{
    if (!node)
        return t->root[b] ? (int64_t)t->root[b] : -1;
    uint32_t f = t->first[node], k = t->cnt[node];
    const uint8_t *l = t->label + f;
    for (uint32_t i = 0; i < k && l[i] <= b; i++)
        if (l[i] == b)
            return (int64_t)f + i;
    return -1;
}

static void ctrie_free(ugm_ctrie *t)
{
    free(t->first);
    free(t->cnt);
    free(t->label);
    free(t->term);
    memset(t, 0, sizeof *t);
}

typedef struct {
    const uint8_t *s;
    uint32_t len;
} ustr;

static int ustr_cmp(const void *pa, const void *pb)
{
    const ustr *a = pa, *b = pb;
    int c = memcmp(a->s, b->s, a->len < b->len ? a->len : b->len);
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

/* Builds the trie of v[0..m) (sorted, unique, non-empty); terminal of v[i] is i. */
static bool ctrie_build(ugm_ctrie *t, const ustr *v, size_t m)
{
    size_t cap = 1;
    for (size_t i = 0; i < m; i++)
        cap += v[i].len;
    if (cap > UINT32_MAX)
        return false;
    uint32_t *lo = malloc(cap * sizeof *lo), *hi = malloc(cap * sizeof *hi), *depth = malloc(cap * sizeof *depth);
    memset(t, 0, sizeof *t);
    t->first = malloc(cap * sizeof *t->first);
    t->cnt = malloc(cap * sizeof *t->cnt);
    t->label = malloc(cap);
    t->term = malloc(cap * sizeof *t->term);
    bool ok = lo && hi && depth && t->first && t->cnt && t->label && t->term;
    if (ok) {
        lo[0] = 0, hi[0] = (uint32_t)m, depth[0] = 0, t->label[0] = 0, t->term[0] = -1;
        t->n = 1;
        for (size_t node = 0; node < t->n; node++) {
            uint32_t a = lo[node], e = hi[node], d = depth[node];
            if (a < e && v[a].len == d) /* the string ending here sorts first */
                t->term[node] = (int32_t)a++;
            t->first[node] = (uint32_t)t->n;
            uint32_t k = 0;
            while (a < e) {
                uint8_t b = v[a].s[d];
                uint32_t j = a + 1;
                while (j < e && v[j].s[d] == b)
                    j++;
                size_t c = t->n++;
                t->label[c] = b, t->term[c] = -1;
                lo[c] = a, hi[c] = j, depth[c] = d + 1;
                if (!node)
                    t->root[b] = (uint32_t)c;
                k++;
                a = j;
            }
            t->cnt[node] = (uint16_t)k; /* at most 256 */
        }
    }
    free(lo);
    free(hi);
    free(depth);
    if (!ok)
        ctrie_free(t);
    return ok;
}

/* ---------------------------------------------------------------- model */


struct tok_ugm {
    size_t n_ids;       /* id space: vocabulary and added tokens */
    char **id_tok;      /* id -> token string (NULL for gaps) */
    size_t n_model;     /* model vocabulary ids [0, n_model) have scores */
    double *scores;
    tok_htab ids;       /* tokens_to_ids: model vocabulary (last id wins), then added contents */
    tok_addeds ad;      /* added tokens, added_tokens_map and their splitters */
    ugm_ctrie vocab;    /* terminals index the arrays below */
    double *t_score;
    int32_t *t_final;   /* id the piece becomes */
    uint8_t *t_unk;     /* tokens_to_ids(piece) is the unknown id */
    size_t n_terms;
    ugm_norm_step *norm;
    size_t n_norm;
    bool has_norm;      /* a normalizer exists (even an empty Sequence) */
    bool meta;          /* Metaspace pre-tokenizer */
    char *meta_rep, *meta_str; /* replacement, str_rep */
    size_t meta_rep_len, meta_str_len;
    int prepend;        /* 0 never, 1 always, 2 first */
    int32_t unk_id, cls_id, sep_id;
    double unk_score;
};



void tok_ugm_free(tok_ugm *u)
{
    if (!u)
        return;
    if (u->id_tok)
        for (size_t i = 0; i < u->n_ids; i++)
            free(u->id_tok[i]);
    free(u->id_tok);
    free(u->scores);
    tok_htab_free(&u->ids);
    tok_addeds_free(&u->ad);
    ctrie_free(&u->vocab);
    free(u->t_score);
    free(u->t_final);
    free(u->t_unk);
    ugm_norm_free(u->norm, u->n_norm);
    free(u->meta_rep);
    free(u->meta_str);
    free(u);
}

static tok_ugm *ugm_alloc(size_t n_ids, size_t n_model)
{
    tok_ugm *u = calloc(1, sizeof *u);
    if (!u)
        return NULL;
    u->n_ids = n_ids;
    u->n_model = n_model;
    u->id_tok = calloc(n_ids ? n_ids : 1, sizeof *u->id_tok);
    u->scores = calloc(n_model ? n_model : 1, sizeof *u->scores);
    if (!u->id_tok || !u->scores || !tok_htab_init(&u->ids, n_model) || !tok_addeds_init(&u->ad)) {
        tok_ugm_free(u);
        return NULL;
    }
    u->unk_id = u->cls_id = u->sep_id = -1;
    return u;
}

static bool set_id_tok(tok_ugm *u, int32_t id, const char *s, size_t n)
{
    char *d = tok_dup_bytes(s, n);
    if (!d)
        return false;
    free(u->id_tok[id]);
    u->id_tok[id] = d;
    return true;
}

/* The id transformers.js gives a token string: added_tokens_map, tokens_to_ids, else unknown. */
static int32_t final_id(const tok_ugm *u, const void *s, size_t len)
{
    int32_t a = tok_addeds_lookup(&u->ad, s, len);
    if (a >= 0)
        return u->ad.atoks[a].id;
    int32_t id = tok_htab_get(&u->ids, s, len);
    return id >= 0 ? id : u->unk_id;
}

/* ---------------------------------------------------------------- scratch */


static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    void *v = realloc(*p, c * elem);
    if (!v)
        return false;
    *p = v;
    *cap = c;
    return true;
}

/* Per-call state: encode is reentrant on a shared tokenizer; buffers grow geometrically. */
typedef struct {
    tok_cps a, b;
    uint8_t *nb;       /* normalized section, UTF-8 */
    size_t nb_cap;
    uint8_t *mb;       /* after Metaspace: the lattice text */
    size_t mb_cap;
    uint32_t *coff;    /* byte offset of each lattice character, plus the end */
    size_t coff_cap;
    tok_spanbuf secs, subs;
    /* lattice nodes (struct of arrays); node 0 is BOS */
    double *bts;
    int32_t *prev, *term, *begin, *next;
    size_t nn, ncap;
    int32_t *ehead, *etail; /* nodes ending at each position, in insertion order */
    size_t ecap;
    int32_t *path;
    size_t pcap;
    tok_emit_fn emit;
    void *ctx;
} ugm_scratch;

static void scratch_free(ugm_scratch *s)
{
    free(s->a.v);
    free(s->b.v);
    free(s->nb);
    free(s->mb);
    free(s->coff);
    free(s->secs.v);
    free(s->subs.v);
    free(s->bts);
    free(s->prev);
    free(s->term);
    free(s->begin);
    free(s->next);
    free(s->ehead);
    free(s->etail);
    free(s->path);
}

static bool node_reserve(ugm_scratch *s, size_t need)
{
    if (need <= s->ncap)
        return true;
    if (need > INT32_MAX) /* node indices are int32 */
        return false;
    size_t c = s->ncap ? s->ncap : 1024;
    while (c < need)
        c *= 2;
    if (c > INT32_MAX)
        c = INT32_MAX;
    double *b = realloc(s->bts, c * sizeof *b);
    if (b)
        s->bts = b;
    int32_t **arr[] = {&s->prev, &s->term, &s->begin, &s->next};
    bool ok = b != NULL;
    for (size_t k = 0; k < 4 && ok; k++) {
        int32_t *v = realloc(*arr[k], c * sizeof *v);
        if (v)
            *arr[k] = v;
        ok = v != NULL;
    }
    if (ok)
        s->ncap = c;
    return ok;
}

/* ---------------------------------------------------------------- lattice */

static inline bool is_cont(uint8_t b)
{
    return (b & 0xC0) == 0x80;
}

/* Adds the node [pos, end) with the best predecessor among the nodes ending at pos (the first of
 * the maxima of bts + score, in insertion order, as TokenLattice.viterbi compares). */
static inline void add_node(ugm_scratch *s, int32_t pos, int32_t end, int32_t term, double score)
{
    int32_t best = -1;
    double best_score = 0;
    for (int32_t l = s->ehead[pos]; l >= 0; l = s->next[l]) {
        double sc = s->bts[l] + score;
        if (best < 0 || sc > best_score) {
            best = l;
            best_score = sc;
        }
    }
    size_t k = s->nn++;
    s->bts[k] = best_score;
    s->prev[k] = best;
    s->term[k] = term;
    s->begin[k] = pos;
    s->next[k] = -1;
    if (s->etail[end] >= 0)
        s->next[s->etail[end]] = (int32_t)k;
    else
        s->ehead[end] = (int32_t)k;
    s->etail[end] = (int32_t)k;
}

/* Whether the piece of path node p (bytes b0..b1 of the lattice text) is the unknown id for
 * fuse_unk, and whether tokens_to_ids knows it. */
static bool piece_unk(const tok_ugm *u, const ugm_scratch *s, int32_t p, size_t b0, size_t b1, bool *known)
{
    int32_t t = s->term[p];
    if (t >= 0) {
        *known = true;
        return u->t_unk[t];
    }
    int32_t id = tok_htab_get(&u->ids, s->mb + b0, b1 - b0);
    *known = id >= 0;
    return id < 0 || id == u->unk_id;
}

/* Viterbi over mb[0..nb) (valid UTF-8) and the pieces' ids to emit. */
static bool lattice(const tok_ugm *u, ugm_scratch *s, size_t nb)
{
    const uint8_t *b = s->mb;
    size_t nc = 0;
    if (!grow((void **)&s->coff, &s->coff_cap, nb + 1, sizeof *s->coff))
        return false;
    for (size_t i = 0; i < nb; i++)
        if (!is_cont(b[i]))
            s->coff[nc++] = (uint32_t)i;
    s->coff[nc] = (uint32_t)nb;
    if (!nc)
        return true;
    if (nc >= INT32_MAX / 2)
        return false;
    size_t ecap = s->ecap;
    if (!grow((void **)&s->ehead, &ecap, nc + 1, sizeof *s->ehead) ||
        !grow((void **)&s->etail, &s->ecap, nc + 1, sizeof *s->etail))
        return false;
    for (size_t i = 0; i <= nc; i++)
        s->ehead[i] = s->etail[i] = -1;
    s->nn = 0;
    if (!node_reserve(s, 2 * nc + 16))
        return false;
    /* BOS */
    s->bts[0] = 0;
    s->prev[0] = s->term[0] = -1;
    s->begin[0] = 0;
    s->next[0] = -1;
    s->ehead[0] = s->etail[0] = 0;
    s->nn = 1;
    for (size_t pos = 0; pos < nc; pos++) {
        uint32_t node = 0;
        bool single = false;
        size_t ce = pos; /* characters consumed */
        for (size_t i = s->coff[pos]; i < nb; i++) {
            int64_t c = ctrie_child(&u->vocab, node, b[i]);
            if (c < 0)
                break;
            node = (uint32_t)c;
            if (i + 1 < nb && is_cont(b[i + 1]))
                continue;
            ce++;
            int32_t t = u->vocab.term[node];
            if (t < 0)
                continue;
            if (s->nn + 2 > s->ncap && !node_reserve(s, s->nn + 2))
                return false;
            add_node(s, (int32_t)pos, (int32_t)ce, t, u->t_score[t]);
            single |= ce == pos + 1;
        }
        if (!single) {
            if (s->nn + 2 > s->ncap && !node_reserve(s, s->nn + 2))
                return false;
            add_node(s, (int32_t)pos, (int32_t)pos + 1, -1, u->unk_score);
        }
    }
    /* EOS: the first node with the best score among those ending at nc */
    int32_t best = -1;
    for (int32_t l = s->ehead[nc]; l >= 0; l = s->next[l])
        if (best < 0 || s->bts[l] + 0.0 > s->bts[best] + 0.0)
            best = l;
    size_t np = 0;
    for (int32_t p = best; p > 0; p = s->prev[p])
        np++;
    if (!grow((void **)&s->path, &s->pcap, np + 1, sizeof *s->path))
        return false;
    size_t k = np;
    for (int32_t p = best; p > 0; p = s->prev[p])
        s->path[--k] = p;
    /* ids, consecutive unknown pieces fused (fuse_unk) */
    for (size_t i = 0; i < np; i++) {
        int32_t p = s->path[i];
        size_t b0 = s->coff[s->begin[p]];
        size_t b1 = i + 1 < np ? s->coff[s->begin[s->path[i + 1]]] : nb;
        bool known;
        if (!piece_unk(u, s, p, b0, b1, &known)) {
            s->emit(s->ctx, s->term[p] >= 0 ? u->t_final[s->term[p]] : final_id(u, b + b0, b1 - b0));
            continue;
        }
        size_t j = i + 1;
        size_t e = b1;
        for (; j < np; j++) {
            int32_t q = s->path[j];
            size_t q0 = s->coff[s->begin[q]];
            size_t q1 = j + 1 < np ? s->coff[s->begin[s->path[j + 1]]] : nb;
            bool kq;
            if (!piece_unk(u, s, q, q0, q1, &kq))
                break;
            e = q1;
        }
        /* an unknown string absorbs the rest of the run; a piece that is the unknown token itself
         * stays alone and the rest are dropped */
        if (known)
            e = b1;
        s->emit(s->ctx, (known && s->term[p] >= 0) ? u->t_final[s->term[p]] : final_id(u, b + b0, e - b0));
        i = j - 1;
    }
    return true;
}

/* Metaspace (' ' -> replacement, prepended unless the text starts with it) and the model. */
static bool run_model(const tok_ugm *u, ugm_scratch *s, const uint8_t *t, size_t n, size_t section_index)
{
    if (!u->meta) {
        if (!grow((void **)&s->mb, &s->mb_cap, n + 1, 1))
            return false;
        memcpy(s->mb, t, n);
        return lattice(u, s, n);
    }
    size_t spaces = 0;
    for (size_t i = 0; i < n; i++)
        spaces += t[i] == ' ';
    if (!grow((void **)&s->mb, &s->mb_cap, n + (spaces + 1) * u->meta_str_len + 1, 1))
        return false;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (t[i] == ' ') {
            memcpy(s->mb + k, u->meta_str, u->meta_str_len);
            k += u->meta_str_len;
        } else {
            s->mb[k++] = t[i];
        }
    }
    bool starts = k >= u->meta_rep_len && !memcmp(s->mb, u->meta_rep, u->meta_rep_len);
    if (!starts && (u->prepend == 1 || (u->prepend == 2 && section_index == 0))) {
        memmove(s->mb + u->meta_str_len, s->mb, k);
        memcpy(s->mb, u->meta_str, u->meta_str_len);
        k += u->meta_str_len;
    }
    return lattice(u, s, k);
}

/* ---------------------------------------------------------------- added-token sections */

/* Decodes text, applies the normalizer; the result as UTF-8 in s->nb, its length in *nb. */
static bool normalize(const tok_ugm *u, ugm_scratch *s, const uint8_t *t, size_t n, size_t *nb)
{
    s->a.n = 0;
    if (!tok_cps_reserve(&s->a, n + 1))
        return false;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        if (t[i] < 0x80)
            cp = t[i++];
        else
            i += (size_t)tu_utf8_decode(t + i, &cp);
        s->a.v[s->a.n++] = cp;
    }
    tok_cps *r;
    if (!ugm_norm_apply(u->norm, u->n_norm, &s->a, &s->b, &r))
        return false;
    if (!grow((void **)&s->nb, &s->nb_cap, r->n * 4 + 1, 1))
        return false;
    size_t k = 0;
    for (size_t i = 0; i < r->n; i++)
        k += (size_t)tu_utf8_encode(r->v[i], s->nb + k);
    *nb = k;
    return true;
}

static bool encode(const tok_ugm *u, const uint8_t *text, size_t len, ugm_scratch *s)
{
    if (!tok_addeds_split(&u->ad, false, text, len, &s->secs))
        return false;
    for (size_t k = 0; k < s->secs.n; k++) {
        tok_span sec = s->secs.v[k];
        if (sec.end <= sec.start)
            continue;
        int32_t a = tok_addeds_lookup(&u->ad, text + sec.start, sec.end - sec.start);
        if (a >= 0) {
            s->emit(s->ctx, u->ad.atoks[a].id);
            continue;
        }
        const uint8_t *t = text + sec.start;
        size_t n = sec.end - sec.start;
        if (u->has_norm) {
            if (!normalize(u, s, t, n, &n))
                return false;
            t = s->nb;
        }
        if (!n)
            continue;
        if (!tok_addeds_split(&u->ad, true, t, n, &s->subs))
            return false;
        for (size_t j = 0; j < s->subs.n; j++) {
            tok_span sub = s->subs.v[j];
            if (sub.end <= sub.start)
                continue;
            a = tok_addeds_lookup(&u->ad, t + sub.start, sub.end - sub.start);
            if (a >= 0)
                s->emit(s->ctx, u->ad.atoks[a].id);
            else if (!run_model(u, s, t + sub.start, sub.end - sub.start, k))
                return false;
        }
    }
    return true;
}

/* Each thread keeps its scratch between calls (unless a large input grew it past SCRATCH_KEEP), so
 * that encoding a short text allocates nothing; pthread key destructors free it at thread exit. */
#define SCRATCH_KEEP ((size_t)8 << 20)

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static bool scratch_key_ok;

static void scratch_destroy(void *p)
{
    scratch_free(p);
    free(p);
}

static void scratch_key_init(void)
{
    scratch_key_ok = pthread_key_create(&scratch_key, scratch_destroy) == 0;
}

static size_t scratch_bytes(const ugm_scratch *s)
{
    return (s->a.cap + s->b.cap + s->coff_cap + s->ecap * 2 + s->pcap) * 4 + s->nb_cap + s->mb_cap +
           (s->secs.cap + s->subs.cap) * sizeof(tok_span) + s->ncap * 24;
}

bool tok_ugm_encode(const tok_ugm *u, const uint8_t *text, size_t len, tok_emit_fn emit, void *ctx)
{
    pthread_once(&scratch_once, scratch_key_init);
    ugm_scratch *s = scratch_key_ok ? pthread_getspecific(scratch_key) : NULL;
    if (s)
        pthread_setspecific(scratch_key, NULL); /* taken: a nested call gets its own */
    else if (!(s = calloc(1, sizeof *s)))
        return false;
    s->emit = emit;
    s->ctx = ctx;
    bool ok = encode(u, text, len, s);
    if (scratch_key_ok && scratch_bytes(s) <= SCRATCH_KEEP && pthread_setspecific(scratch_key, s) == 0)
        return ok;
    scratch_destroy(s);
    return ok;
}

size_t tok_ugm_vocab_size(const tok_ugm *u)
{
    return u->n_ids;
}

const char *tok_ugm_token(const tok_ugm *u, int32_t id)
{
    return id >= 0 && (size_t)id < u->n_ids ? u->id_tok[id] : NULL;
}

int32_t tok_ugm_cls_id(const tok_ugm *u)
{
    return u->cls_id;
}

int32_t tok_ugm_sep_id(const tok_ugm *u)
{
    return u->sep_id;
}

/* ---------------------------------------------------------------- construction */

/* After the vocabulary (id_tok, scores, ids for ids < n_model; in_model marks the ids that are
 * model vocabulary), the added tokens, the normalizer and unk_id are set: builds the maps, tries
 * and the unknown score like the transformers.js constructors. */
static bool finish(tok_ugm *u, const uint8_t *in_model, char *err, size_t errlen)
{
    if (u->unk_id < 0 || (size_t)u->unk_id >= u->n_model || !in_model[u->unk_id]) {
        embd_fail(err, errlen, "unknown token id %d is not in the vocabulary", (int)u->unk_id);
        return false;
    }
    /* min_score over the vocabulary, then the unknown token scores 10 below it */
    double min = INFINITY;
    for (size_t i = 0; i < u->n_model; i++)
        if (in_model[i] && u->scores[i] < min)
            min = u->scores[i];
    u->unk_score = min - 10;
    u->scores[u->unk_id] = u->unk_score;
    for (size_t i = 0; i < u->ad.n; i++) {
        tok_added *a = &u->ad.atoks[i];
        if (tu_utf8_validate((const uint8_t *)a->content, a->len) != a->len) {
            embd_fail(err, errlen, "added token %d is not valid UTF-8", (int)a->id);
            return false;
        }
        if (!tok_htab_put(&u->ids, a->content, a->len, a->id))
            goto oom;
    }
    ugm_scratch s;
    memset(&s, 0, sizeof s);
    for (size_t i = 0; i < u->ad.n; i++) {
        tok_added *a = &u->ad.atoks[i];
        size_t nl = 0;
        bool norm = a->normalized && u->has_norm && a->len;
        if ((norm && !normalize(u, &s, (const uint8_t *)a->content, a->len, &nl)) ||
            !tok_addeds_register(&u->ad, i, norm ? s.nb : NULL, nl))
            goto oom_s;
    }
    scratch_free(&s);
    /* the lattice vocabulary, from the model's own strings (transformers.js builds its trie before
     * the added tokens rename vocabulary entries): each string once, scored as tokens_to_ids says */
    ustr *v = malloc((u->n_model ? u->n_model : 1) * sizeof *v);
    if (!v)
        goto oom;
    size_t m = 0;
    for (size_t i = 0; i < u->n_model; i++) {
        const char *tok = u->id_tok[i];
        if (!in_model[i] || !tok || !*tok)
            continue;
        size_t len = strlen(tok);
        if (len > UINT32_MAX / 2 || tu_utf8_validate((const uint8_t *)tok, len) != len)
            continue; /* cannot occur in a JavaScript string */
        v[m++] = (ustr){(const uint8_t *)tok, (uint32_t)len};
    }
    qsort(v, m, sizeof *v, ustr_cmp);
    size_t w = 0;
    for (size_t i = 0; i < m; i++)
        if (!w || ustr_cmp(&v[w - 1], &v[i]))
            v[w++] = v[i];
    m = w;
    u->t_score = malloc((m ? m : 1) * sizeof *u->t_score);
    u->t_final = malloc((m ? m : 1) * sizeof *u->t_final);
    u->t_unk = malloc(m ? m : 1);
    if (!u->t_score || !u->t_final || !u->t_unk || !ctrie_build(&u->vocab, v, m)) {
        free(v);
        goto oom;
    }
    for (size_t t = 0; t < m; t++) {
        int32_t id = tok_htab_get(&u->ids, v[t].s, v[t].len);
        u->t_score[t] = (id >= 0 && (size_t)id < u->n_model) ? u->scores[id] : NAN;
        u->t_final[t] = final_id(u, v[t].s, v[t].len);
        u->t_unk[t] = id == u->unk_id;
    }
    u->n_terms = m;
    free(v);
    for (size_t i = 0; i < u->ad.n; i++) /* model.vocab[id] = content */
        if (!set_id_tok(u, u->ad.atoks[i].id, u->ad.atoks[i].content, u->ad.atoks[i].len))
            goto oom;
    return true;
oom_s:
    scratch_free(&s);
oom:
    embd_fail(err, errlen, "out of memory");
    return false;
}

static bool set_meta(tok_ugm *u, const char *rep, const char *str_rep, int prepend)
{
    u->meta = true;
    u->meta_rep = tok_dup_bytes(rep, strlen(rep));
    u->meta_str = tok_dup_bytes(str_rep, strlen(str_rep));
    u->meta_rep_len = strlen(rep);
    u->meta_str_len = strlen(str_rep);
    u->prepend = prepend;
    return u->meta_rep && u->meta_str;
}

#define METASPACE "\xE2\x96\x81"

tok_ugm *tok_ugm_new(const embd_unigram_vocab *v, char *err, size_t errlen)
{
    if (!v || !v->tokens || !v->n_tokens || v->n_tokens > (1u << 24)) {
        embd_fail(err, errlen, "empty or oversized vocabulary");
        return NULL;
    }
    size_t n = v->n_tokens;
    tok_ugm *u = ugm_alloc(n, n);
    uint8_t *in_model = calloc(n, 1);
    if (!u || !in_model)
        goto oom;
    int32_t unk = v->unk_id;
    for (size_t i = 0; i < n; i++) {
        const char *tok = v->tokens[i];
        if (!tok) {
            embd_fail(err, errlen, "token %zu is NULL", i);
            goto fail;
        }
        int32_t type = v->token_types ? v->token_types[i] : 1;
        if (unk < 0 && type == 2)
            unk = (int32_t)i;
        size_t len = strlen(tok);
        if (!set_id_tok(u, (int32_t)i, tok, len))
            goto oom;
        if (type == 5) /* llama.cpp's padding rows: not in the Hugging Face vocabulary */
            continue;
        double sc = v->scores ? (double)v->scores[i] : 0.0;
        if (isnan(sc)) {
            embd_fail(err, errlen, "token %zu has a NaN score", i);
            goto fail;
        }
        u->scores[i] = sc;
        in_model[i] = 1;
        if (!tok_htab_put(&u->ids, tok, len, (int32_t)i))
            goto oom;
    }
    if (unk < 0)
        unk = tok_htab_get(&u->ids, "<unk>", 5);
    u->unk_id = unk;
    for (size_t i = 0; i < n; i++) {
        int32_t type = v->token_types ? v->token_types[i] : 1;
        bool special_id = (int32_t)i == unk || (int32_t)i == v->bos_id || (int32_t)i == v->eos_id;
        if (!(type == 2 || type == 3 || type == 4 || (!v->token_types && special_id)))
            continue;
        tok_added a = {.content = u->id_tok[i], .len = strlen(u->id_tok[i]), .id = (int32_t)i,
                       .special = type != 4, .lstrip = type == 3 && !strcmp(u->id_tok[i], "<mask>")};
        if (!tok_addeds_push(&u->ad, &a))
            goto oom;
    }
    if (v->charsmap && v->charsmap_len) {
        ugm_norm_step st = {.kind = UGM_N_PRECOMPILED};
        ugm_norm_step *sv = malloc(2 * sizeof *sv);
        if (!sv)
            goto oom;
        u->norm = sv;
        u->norm[u->n_norm++] = st;
    }
    if (v->remove_extra_whitespaces) {
        ugm_norm_step st = {.kind = UGM_N_REPLACE, .min_run = 2, .npat = 1, .nrep = 1};
        st.pat = malloc(sizeof *st.pat);
        st.rep = malloc(sizeof *st.rep);
        ugm_norm_step *sv = realloc(u->norm, (u->n_norm + 1) * sizeof *sv);
        if (sv)
            u->norm = sv;
        if (!st.pat || !st.rep || !sv) {
            free(st.pat);
            free(st.rep);
            goto oom;
        }
        st.pat[0] = st.rep[0] = ' ';
        u->norm[u->n_norm++] = st;
    }
    u->has_norm = u->n_norm > 0;
    if (!set_meta(u, METASPACE, METASPACE, v->add_space_prefix ? 1 : 0))
        goto oom;
    int32_t bos = v->bos_id >= 0 ? v->bos_id : tok_htab_get(&u->ids, "<s>", 3);
    int32_t eos = v->eos_id >= 0 ? v->eos_id : tok_htab_get(&u->ids, "</s>", 4);
    if (bos < 0 || (size_t)bos >= n || eos < 0 || (size_t)eos >= n) {
        embd_fail(err, errlen, "no <s> / </s> token");
        goto fail;
    }
    u->cls_id = bos;
    u->sep_id = eos;
    if (!finish(u, in_model, err, errlen))
        goto fail;
    free(in_model);
    return u;
oom:
    embd_fail(err, errlen, "out of memory");
fail:
    free(in_model);
    tok_ugm_free(u);
    return NULL;
}


tok_ugm *tok_ugm_from_json(const json_t *root, char *err, size_t errlen)
{
    const json_t *model = json_object_get(root, "model");
    const json_t *vocab = json_object_get(model, "vocab");
    const json_t *added = json_object_get(root, "added_tokens");
    const json_t *pre = json_object_get(root, "pre_tokenizer");
    const char *cls = NULL, *sep = NULL;
    size_t nv = json_array_size(vocab);
    if (!json_is_array(vocab) || !nv || nv > (1u << 24)) {
        embd_fail(err, errlen, "Unigram model without a vocabulary array");
        return NULL;
    }
    if (!tok_json_post_specials(json_object_get(root, "post_processor"), true, &cls, &sep)) {
        embd_fail(err, errlen, "unsupported post_processor (want <s> $A </s>)");
        return NULL;
    }
    if (pre && !json_is_null(pre) && strcmp(tok_json_str(pre, "type", ""), "Metaspace")) {
        embd_fail(err, errlen, "unsupported pre_tokenizer %s for a Unigram model", tok_json_str(pre, "type", "?"));
        return NULL;
    }
    const json_t *unk = json_object_get(model, "unk_id");
    if (!json_is_integer(unk) || json_integer_value(unk) < 0 || (size_t)json_integer_value(unk) >= nv) {
        embd_fail(err, errlen, "Unigram model without a valid unk_id");
        return NULL;
    }
    size_t n_ids = nv, i;
    const json_t *val;
    json_array_foreach(added, i, val) {
        json_int_t id = json_integer_value(json_object_get(val, "id"));
        if (!json_is_string(json_object_get(val, "content")) || id < 0 || id >= (1 << 24)) {
            embd_fail(err, errlen, "bad added token %zu", i);
            return NULL;
        }
        if ((size_t)id + 1 > n_ids)
            n_ids = (size_t)id + 1;
    }
    tok_ugm *u = ugm_alloc(n_ids, nv);
    uint8_t *in_model = malloc(nv);
    if (!u || !in_model)
        goto oom;
    memset(in_model, 1, nv);
    json_array_foreach(vocab, i, val) {
        const json_t *s = json_array_get(val, 0), *sc = json_array_get(val, 1);
        if (!json_is_string(s) || !json_is_number(sc)) {
            embd_fail(err, errlen, "bad vocabulary entry %zu", i);
            goto fail;
        }
        const char *tok = json_string_value(s);
        size_t len = json_string_length(s);
        u->scores[i] = json_number_value(sc);
        if (!set_id_tok(u, (int32_t)i, tok, len) || !tok_htab_put(&u->ids, tok, len, (int32_t)i))
            goto oom;
    }
    u->unk_id = (int32_t)json_integer_value(unk);
    json_array_foreach(added, i, val) {
        tok_added a = tok_json_added(val);
        if (!tok_addeds_push(&u->ad, &a))
            goto oom;
    }
    const json_t *norm = json_object_get(root, "normalizer");
    if (!ugm_norm_parse(norm, &u->norm, &u->n_norm, err, errlen))
        goto fail;
    u->has_norm = norm && !json_is_null(norm);
    if (pre && !json_is_null(pre)) {
        /* transformers.js: prepend_scheme defaults to "always" (add_prefix_space is not read) */
        const char *rep = tok_json_str(pre, "replacement", METASPACE);
        const char *str_rep = tok_json_str(pre, "str_rep", "");
        const char *scheme = tok_json_str(pre, "prepend_scheme", "always");
        if (!*rep || tu_utf8_validate((const uint8_t *)rep, strlen(rep)) != strlen(rep)) {
            embd_fail(err, errlen, "bad Metaspace replacement");
            goto fail;
        }
        if (!set_meta(u, rep, *str_rep ? str_rep : rep,
                      !strcmp(scheme, "always") ? 1 : !strcmp(scheme, "first") ? 2 : 0))
            goto oom;
    }
    if (!finish(u, in_model, err, errlen))
        goto fail;
    u->cls_id = final_id(u, cls, strlen(cls));
    u->sep_id = final_id(u, sep, strlen(sep));
    free(in_model);
    return u;
oom:
    embd_fail(err, errlen, "out of memory");
fail:
    free(in_model);
    tok_ugm_free(u);
    return NULL;
}
