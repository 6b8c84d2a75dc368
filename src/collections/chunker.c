#include "collections/chunker.h"

#include <stdlib.h>
#include <string.h>

#include "util/sys.h"

/* A piece is a line, or part of a line too long for one chunk. score rates the cut *before* it:
 * 0 inside a line, 1 line start, 2 after a blank line, 3 before a top-level definition (code). */
typedef struct {
    size_t start, end;
    size_t tokens;
    int score;
} piece;

typedef struct {
    piece *p;
    size_t n, cap;
} pieces;

static int push(pieces *ps, size_t start, size_t end, size_t tokens, int score) {
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? 2 * ps->cap : 64;
        piece *p = realloc(ps->p, cap * sizeof *p);
        if (!p) return -1;
        ps->p = p;
        ps->cap = cap;
    }
    ps->p[ps->n++] = (piece){start, end, tokens, score};
    return 0;
}

long embd_chunk_count_tokens(void *ud, const char *s, size_t len) {
    embd_tokens tk = {0};
    size_t off = 0;
    int rc = embd_tokenizer_encode(ud, s, len, 0, &tk, &off);
    long n = rc == EMBD_TOK_OK ? (long)tk.n - 2 : -1;
    embd_tokens_free(&tk);
    return n < 0 && rc == EMBD_TOK_OK ? 0 : n;
}

static bool is_blank(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n' && s[i] != '\f' && s[i] != '\v') return false;
    return true;
}

static bool starts_with_word(const char *s, size_t len, const char *w) {
    size_t n = strlen(w);
    return len > n && !memcmp(s, w, n) && (s[n] == ' ' || s[n] == '\t' || s[n] == '(' || s[n] == '<');
}

/* A line that opens a function, type or block in common languages. */
static bool opens_definition(const char *s, size_t len) {
    static const char *const kw[] = {"def", "async", "class", "func", "fn", "pub", "function", "export", "impl",
                                     "struct", "enum", "interface", "trait", "type", "module", "static", "public",
                                     "private", "protected", "package", "template", "namespace", "#", "##", "###",
                                     "@", "describe", "it", "test", "CREATE", "SELECT"};
    for (size_t i = 0; i < sizeof kw / sizeof kw[0]; i++)
        if (starts_with_word(s, len, kw[i])) return true;
    return len > 0 && s[0] == '@'; /* decorators */
}

/* Cuts s[start, end) (one over-long word or run) into parts that fit, halving at UTF-8 boundaries. */
static int split_bytes(const char *text, size_t start, size_t end, const embd_chunk_opts *o, embd_token_count_fn count,
                       void *ud, pieces *ps, int score, char *err, size_t errlen) {
    long t = count(ud, text + start, end - start);
    if (t < 0) return embd_fail(err, errlen, "cannot tokenize the text at byte %zu", start);
    if ((size_t)t <= o->chunk_size || end - start <= 1) {
        if (push(ps, start, end, (size_t)t, score)) return embd_fail(err, errlen, "out of memory");
        return 0;
    }
    size_t mid = start + (end - start) / 2;
    while (mid > start && ((unsigned char)text[mid] & 0xC0) == 0x80) mid--;
    if (mid == start) mid = start + (end - start) / 2 + 1;
    while (mid < end && ((unsigned char)text[mid] & 0xC0) == 0x80) mid++;
    if (mid >= end) { /* one code point: cannot be cut further */
        if (push(ps, start, end, (size_t)t, score)) return embd_fail(err, errlen, "out of memory");
        return 0;
    }
    if (split_bytes(text, start, mid, o, count, ud, ps, score, err, errlen)) return -1;
    return split_bytes(text, mid, end, o, count, ud, ps, 0, err, errlen);
}

/* An over-long line: one piece per word (with its trailing spaces), words split further if need be. */
static int split_line(const char *text, size_t start, size_t end, const embd_chunk_opts *o, embd_token_count_fn count,
                      void *ud, pieces *ps, int score, char *err, size_t errlen) {
    size_t i = start;
    while (i < end) {
        size_t j = i;
        while (j < end && text[j] != ' ' && text[j] != '\t') j++;
        while (j < end && (text[j] == ' ' || text[j] == '\t')) j++;
        if (split_bytes(text, i, j, o, count, ud, ps, i == start ? score : 0, err, errlen)) return -1;
        i = j;
    }
    return 0;
}

static int make_pieces(const char *text, size_t len, const embd_chunk_opts *o, embd_token_count_fn count, void *ud,
                       pieces *ps, char *err, size_t errlen) {
    bool prev_blank = true;
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - text) + 1 : len;
        const char *line = text + i;
        size_t ll = end - i;
        bool blank = is_blank(line, ll);
        int score = prev_blank ? 2 : 1;
        if (o->code_aware && !blank) {
            bool top = line[0] != ' ' && line[0] != '\t';
            if (top && (prev_blank || opens_definition(line, ll))) score = 3;
            else if (opens_definition(line + strspn(line, " \t"), ll - strspn(line, " \t"))) score = 2;
            else if (top && score < 2 && line[0] != '}' && line[0] != ')' && line[0] != ']') score = 2;
        }
        long t = blank ? 0 : count(ud, line, ll);
        if (t < 0) return embd_fail(err, errlen, "cannot tokenize the text at byte %zu", i);
        if ((size_t)t <= o->chunk_size) {
            if (push(ps, i, end, (size_t)t, score)) return embd_fail(err, errlen, "out of memory");
        } else if (split_line(text, i, end, o, count, ud, ps, score, err, errlen)) {
            return -1;
        }
        prev_blank = blank;
        i = end;
    }
    return 0;
}

int embd_chunk_text(const char *text, size_t len, const embd_chunk_opts *o, embd_token_count_fn count, void *ud,
                    embd_chunk **out, size_t *n, char *err, size_t errlen) {
    *out = NULL;
    *n = 0;
    if (!o->chunk_size) return embd_fail(err, errlen, "chunk_size must be positive");
    if (o->overlap >= o->chunk_size) return embd_fail(err, errlen, "overlap must be smaller than chunk_size");
    pieces ps = {0};
    if (make_pieces(text, len, o, count, ud, &ps, err, errlen)) {
        free(ps.p);
        return -1;
    }
    embd_chunk *ch = NULL;
    size_t nch = 0, cap = 0;
    /* A cut may move back from the fullest one to a better boundary while the chunk keeps this much. */
    const size_t min_fill = o->code_aware ? o->chunk_size / 4 : o->chunk_size / 2;
    size_t i = 0, prev_end = 0; /* prev_end: piece index where the previous chunk ended */
    while (i < ps.n) {
        while (i < ps.n && !ps.p[i].tokens) i++;
        if (i >= ps.n) break;
        size_t j = i, sum = 0;
        while (j < ps.n && (j == i || sum + ps.p[j].tokens <= o->chunk_size)) sum += ps.p[j++].tokens;
        size_t best = j, best_sum = sum;
        if (j < ps.n) {
            int best_score = ps.p[j].score;
            size_t cum = sum;
            size_t q = prev_end; /* the chunk must hold this piece: the first with tokens past the last chunk */
            while (q < ps.n && !ps.p[q].tokens) q++;
            for (size_t c = j; c > i + 1 && c - 1 > q; c--) {
                cum -= ps.p[c - 1].tokens; /* cum = tokens of pieces [i, c-1) */
                if (cum < min_fill) break;
                if (ps.p[c - 1].score > best_score) best = c - 1, best_sum = cum, best_score = ps.p[c - 1].score;
            }
        }
        if (nch == cap) {
            cap = cap ? 2 * cap : 16;
            embd_chunk *nc = realloc(ch, cap * sizeof *nc);
            if (!nc) {
                free(ch), free(ps.p);
                return embd_fail(err, errlen, "out of memory");
            }
            ch = nc;
        }
        /* trailing blank pieces belong to no chunk */
        size_t last = best;
        while (last > i + 1 && !ps.p[last - 1].tokens) last--;
        ch[nch++] = (embd_chunk){ps.p[i].start, ps.p[last - 1].end, best_sum};
        if (best >= ps.n) break;
        /* The next chunk starts far enough back to repeat about `overlap` tokens, at a line start
         * when one is in reach. */
        size_t s = best, ov = 0, next = best;
        while (next < ps.n && !ps.p[next].tokens) next++;
        if (next >= ps.n) break; /* only blanks left */
        while (s - 1 > i && ov + ps.p[s - 1].tokens <= o->overlap &&
               ov + ps.p[s - 1].tokens + ps.p[next].tokens <= o->chunk_size) /* leave room to move on */
            ov += ps.p[--s].tokens;
        for (size_t t = s; t < best; t++)
            if (ps.p[t].score > 0) {
                s = t;
                break;
            }
        prev_end = best;
        i = s;
    }
    free(ps.p);
    *out = ch;
    *n = nch;
    return 0;
}
