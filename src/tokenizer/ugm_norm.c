/* Normalizers of Unigram tokenizers, as transformers.js applies them. Its Precompiled normalizer
 * does not read the precompiled charsmap: it drops a fixed set of controls, maps a fixed set of
 * spaces to ' ' and applies NFKC (leaving U+FF5E and NFKC-ing the parts between separately), which
 * approximates SentencePiece's nmt_nfkc map. The Rust tokenizers and llama.cpp use the charsmap
 * and differ on the characters where the two disagree; this follows transformers.js. Unicode
 * normalization is utf8proc's, patched where Node's newer Unicode differs (ugm_nfkc_delta.h). */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/tok_unicode.h"
#include "tokenizer/ugm_nfkc_delta.h"
#include "tokenizer/unigram.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))


/* ---------------------------------------------------------------- Unicode normalization forms */


static const ugm_nfkd_delta *nfkd_delta(uint32_t cp)
{
    if (cp < UGM_NFKD_DELTA[0].cp || cp > UGM_NFKD_DELTA[NELEM(UGM_NFKD_DELTA) - 1].cp)
        return NULL;
    size_t lo = 0, hi = NELEM(UGM_NFKD_DELTA);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (UGM_NFKD_DELTA[mid].cp < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < NELEM(UGM_NFKD_DELTA) && UGM_NFKD_DELTA[lo].cp == cp ? &UGM_NFKD_DELTA[lo] : NULL;
}

static uint32_t comp_delta(uint32_t a, uint32_t b)
{
    for (size_t i = 0; i < NELEM(UGM_COMP_DELTA) && UGM_COMP_DELTA[i][0] <= a; i++)
        if (UGM_COMP_DELTA[i][0] == a && UGM_COMP_DELTA[i][1] == b)
            return UGM_COMP_DELTA[i][2];
    return 0;
}

/* The canonical compositions utf8proc does not know, after its own: a character composes with the
 * last starter unless something between blocks it (a starter, or a mark of class >= its own). */
static size_t compose_delta(uint32_t *v, size_t n)
{
    size_t w = 0, starter = SIZE_MAX;
    int last_ccc = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = v[i];
        int cc = tu_ccc(c);
        if (starter != SIZE_MAX && (w == starter + 1 || (last_ccc != 0 && last_ccc < cc))) {
            uint32_t k = comp_delta(v[starter], c);
            if (k) {
                v[starter] = k;
                continue;
            }
        }
        if (cc == 0)
            starter = w;
        last_ccc = cc;
        v[w++] = c;
    }
    return w;
}

/* Appends the normalization (NF[K][CD]) of in[0..n) to out. */
static bool unorm(const uint32_t *in, size_t n, bool compat, bool compose, tok_cps *out)
{
    size_t start = out->n;
    bool marks = false, delta = false;
    if (!tok_cps_reserve(out, n + 16))
        return false;
    utf8proc_option_t opt = UTF8PROC_DECOMPOSE | (compat ? UTF8PROC_COMPAT : 0);
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = in[i];
        if (cp < 0xA0) { /* no decomposition, combining class 0 */
            if (!tok_cps_reserve(out, 1))
                return false;
            out->v[out->n++] = cp;
            continue;
        }
        utf8proc_int32_t buf[32];
        int last = 0;
        const ugm_nfkd_delta *d = nfkd_delta(cp);
        if (d) { /* newer Unicode than utf8proc's */
            bool canon = !compat && d->canonical;
            if (compat || canon) {
                for (int j = 0; j < d->n; j++)
                    buf[j] = (utf8proc_int32_t)d->d[j];
                delta = true;
            } else {
                buf[0] = (utf8proc_int32_t)cp;
            }
            if (!tok_cps_reserve(out, d->n))
                return false;
            for (int j = 0; j < ((compat || canon) ? d->n : 1); j++)
                out->v[out->n++] = (uint32_t)buf[j];
            marks = true;
            continue;
        }
        delta |= cp >= UGM_COMP_DELTA[0][0] && cp <= UGM_COMP_DELTA[NELEM(UGM_COMP_DELTA) - 1][0];
        utf8proc_ssize_t k = utf8proc_decompose_char((utf8proc_int32_t)cp, buf, 32, opt, &last);
        if (k <= 0 || k > 32) { /* cannot happen for assigned data (longest: 18) */
            buf[0] = (utf8proc_int32_t)cp;
            k = 1;
        }
        if (!tok_cps_reserve(out, (size_t)k))
            return false;
        for (utf8proc_ssize_t j = 0; j < k; j++) {
            out->v[out->n++] = (uint32_t)buf[j];
            marks |= buf[j] >= 0x300;
        }
    }
    if (marks) { /* canonical ordering of each run of non-starters */
        uint32_t *v = out->v + start;
        size_t m = out->n - start;
        for (size_t i = 0; i < m;) {
            if (v[i] < 0x300 || tu_ccc(v[i]) == 0) {
                i++;
                continue;
            }
            size_t j = i + 1;
            while (j < m && v[j] >= 0x300 && tu_ccc(v[j]) != 0)
                j++;
            if (j - i > 1 && !tu_order_marks(v + i, j - i))
                return false;
            i = j;
        }
    }
    if (compose && out->n > start) {
        utf8proc_ssize_t r = utf8proc_normalize_utf32((utf8proc_int32_t *)(out->v + start),
                                                      (utf8proc_ssize_t)(out->n - start),
                                                      UTF8PROC_COMPOSE | UTF8PROC_STABLE);
        if (r < 0)
            return false;
        out->n = start + (size_t)r;
        if (delta)
            out->n = start + compose_delta(out->v + start, out->n - start);
    }
    return true;
}

/* ---------------------------------------------------------------- steps */

static bool precompiled_drop(uint32_t cp)
{
    return (cp >= 0x01 && cp <= 0x08) || cp == 0x0B || (cp >= 0x0E && cp <= 0x1F) || cp == 0x7F ||
           cp == 0x8F || cp == 0x9F;
}

static bool precompiled_space(uint32_t cp)
{
    switch (cp) {
    case 0x09: case 0x0A: case 0x0C: case 0x0D: case 0xA0: case 0x1680: case 0x2028: case 0x2029:
    case 0x202F: case 0x205F: case 0x2581: case 0x3000: case 0xFEFF: case 0xFFFD:
        return true;
    default:
        return cp >= 0x2000 && cp <= 0x200F;
    }
}

/* The two replacements in place, then NFKC of the parts between U+FF5E into out. */
static bool precompiled(tok_cps *in, tok_cps *out)
{
    bool ascii = true;
    size_t w = 0;
    for (size_t i = 0; i < in->n; i++) {
        uint32_t cp = in->v[i];
        if (cp < 0x100 && precompiled_drop(cp))
            continue;
        if (precompiled_space(cp))
            cp = ' ';
        ascii &= cp < 0xA0;
        in->v[w++] = cp;
    }
    in->n = w;
    out->n = 0;
    if (ascii) { /* NFKC is the identity below U+00A0 */
        if (!tok_cps_reserve(out, in->n))
            return false;
        if (in->n)
            memcpy(out->v, in->v, in->n * sizeof *in->v);
        out->n = in->n;
        return true;
    }
    size_t s = 0;
    for (size_t i = 0; i <= in->n; i++) {
        if (i < in->n && in->v[i] != 0xFF5E)
            continue;
        if (!unorm(in->v + s, i - s, true, true, out) || (i < in->n && !tok_cps_reserve(out, 1)))
            return false;
        if (i < in->n)
            out->v[out->n++] = 0xFF5E;
        s = i + 1;
    }
    return true;
}

static bool replace(const ugm_norm_step *st, const tok_cps *in, tok_cps *out)
{
    out->n = 0;
    if (!tok_cps_reserve(out, in->n + 16))
        return false;
    for (size_t i = 0; i < in->n;) {
        size_t m = 0; /* length of the match at i */
        if (st->min_run) {
            while (i + m < in->n &&
                   (st->ws_run ? (tu_flags_fast(in->v[i + m]) & TU_WSP) != 0 : in->v[i + m] == st->pat[0]))
                m++;
            if (m < st->min_run)
                m = 0;
        } else if (i + st->npat <= in->n && !memcmp(in->v + i, st->pat, st->npat * sizeof *st->pat)) {
            m = st->npat;
        }
        if (!m) {
            if (!tok_cps_reserve(out, 1))
                return false;
            out->v[out->n++] = in->v[i++];
            continue;
        }
        if (!tok_cps_reserve(out, st->nrep))
            return false;
        if (st->nrep)
            memcpy(out->v + out->n, st->rep, st->nrep * sizeof *st->rep);
        out->n += st->nrep;
        i += m;
    }
    return true;
}


static bool js_ws(uint32_t cp)
{
    return (tu_flags_fast(cp) & TU_SPACE) != 0;
}

bool ugm_norm_apply(const ugm_norm_step *steps, size_t n, tok_cps *a, tok_cps *b, tok_cps **res)
{
    tok_cps *in = a, *out = b;
    for (size_t k = 0; k < n; k++) {
        const ugm_norm_step *st = &steps[k];
        bool ok = true, swap = true;
        switch (st->kind) {
        case UGM_N_PRECOMPILED:
            ok = precompiled(in, out);
            break;
        case UGM_N_NFC: case UGM_N_NFD: case UGM_N_NFKC: case UGM_N_NFKD:
            out->n = 0;
            ok = unorm(in->v, in->n, st->kind == UGM_N_NFKC || st->kind == UGM_N_NFKD,
                       st->kind == UGM_N_NFC || st->kind == UGM_N_NFKC, out);
            break;
        case UGM_N_REPLACE:
            ok = replace(st, in, out);
            break;
        case UGM_N_LOWERCASE:
            ok = tu_lower_cps(in, out);
            break;
        case UGM_N_STRIP: { /* in place: JS trim / trimStart / trimEnd */
            size_t s = 0, e = in->n;
            if (st->left)
                while (s < e && js_ws(in->v[s]))
                    s++;
            if (st->right)
                while (e > s && js_ws(in->v[e - 1]))
                    e--;
            memmove(in->v, in->v + s, (e - s) * sizeof *in->v);
            in->n = e - s;
            swap = false;
            break;
        }
        case UGM_N_PREPEND:
            out->n = 0;
            ok = tok_cps_reserve(out, in->n + st->nrep);
            if (ok) {
                if (st->nrep)
                    memcpy(out->v, st->rep, st->nrep * sizeof *st->rep);
                if (in->n)
                    memcpy(out->v + st->nrep, in->v, in->n * sizeof *in->v);
                out->n = in->n + st->nrep;
            }
            break;
        default:
            swap = false;
        }
        if (!ok)
            return false;
        if (swap) {
            tok_cps *x = in;
            in = out;
            out = x;
        }
    }
    *res = in;
    return true;
}

bool ugm_norm_utf8(const ugm_norm_step *steps, size_t n, const uint8_t *t, size_t len, tok_cps *a, tok_cps *b,
                   uint8_t **buf, size_t *cap, size_t *out_len)
{
    a->n = 0;
    if (!tok_cps_reserve(a, len + 1))
        return false;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        if (t[i] < 0x80)
            cp = t[i++];
        else
            i += (size_t)tu_utf8_decode(t + i, &cp);
        a->v[a->n++] = cp;
    }
    tok_cps *r;
    if (!ugm_norm_apply(steps, n, a, b, &r))
        return false;
    size_t need = r->n * 4 + 1;
    if (need > *cap) {
        uint8_t *v = realloc(*buf, need);
        if (!v)
            return false;
        *buf = v;
        *cap = need;
    }
    size_t k = 0;
    for (size_t i = 0; i < r->n; i++)
        k += (size_t)tu_utf8_encode(r->v[i], *buf + k);
    *out_len = k;
    return true;
}

/* ---------------------------------------------------------------- parsing */

static bool to_cps(const char *s, size_t len, uint32_t **out, size_t *n)
{
    const uint8_t *u = (const uint8_t *)s;
    if (tu_utf8_validate(u, len) != len)
        return false;
    *out = malloc((len + 1) * sizeof **out);
    if (!*out)
        return false;
    size_t k = 0;
    for (size_t i = 0; i < len;)
        i += (size_t)tu_utf8_decode(u + i, &(*out)[k++]);
    *n = k;
    return true;
}

/* "x{n,}" or "x+" (x one character, possibly escaped): a run of x; "\s" as x: a run of
 * \p{White_Space} (*ws). */
static bool parse_run_regex(const char *re, uint32_t *ch, size_t *min_run, bool *ws)
{
    const uint8_t *p = (const uint8_t *)re;
    size_t len = strlen(re);
    *ws = false;
    if (tu_utf8_validate(p, len) != len || !len)
        return false;
    if (p[0] == '\\' && p[1] == 's') {
        *ws = true;
        *ch = ' ';
        p += 2;
    } else if (p[0] == '\\') {
        static const char esc[] = "tnrfv", ctl[] = "\t\n\r\f\v";
        const char *e = len >= 2 && p[1] ? strchr(esc, p[1]) : NULL;
        if (e)
            *ch = (uint8_t)ctl[e - esc];
        else if (len >= 2 && p[1] && strchr(" .*+?^${}()|[]\\/-", p[1]))
            *ch = p[1];
        else
            return false;
        p += 2;
    } else {
        if (strchr(".*+?^${}()|[]\\", p[0]))
            return false;
        p += tu_utf8_decode(p, ch);
    }
    if (!strcmp((const char *)p, "+")) {
        *min_run = 1;
        return true;
    }
    unsigned long n;
    char *end;
    if (*p != '{' || p[1] < '0' || p[1] > '9')
        return false;
    n = strtoul((const char *)p + 1, &end, 10);
    if (strcmp(end, ",}") || n == 0 || n > 1000)
        return false;
    *min_run = n;
    return true;
}

static bool push_step(ugm_norm_step **steps, size_t *n, const ugm_norm_step *st)
{
    ugm_norm_step *v = realloc(*steps, (*n + 1) * sizeof *v);
    if (!v)
        return false;
    v[*n] = *st;
    *steps = v;
    (*n)++;
    return true;
}

static const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static bool parse_one(const json_t *norm, ugm_norm_step **steps, size_t *n, char *err, size_t errlen, int depth)
{
    if (!norm || json_is_null(norm))
        return true;
    const char *type = jstr(norm, "type");
    ugm_norm_step st;
    memset(&st, 0, sizeof st);
    if (!type) {
        snprintf(err, errlen, "normalizer without a type");
        return false;
    }
    if (!strcmp(type, "Sequence")) {
        const json_t *list = json_object_get(norm, "normalizers");
        size_t i;
        const json_t *x;
        if (depth > 8 || !json_is_array(list)) {
            snprintf(err, errlen, "bad Sequence normalizer");
            return false;
        }
        json_array_foreach(list, i, x) {
            if (!parse_one(x, steps, n, err, errlen, depth + 1))
                return false;
        }
        return true;
    }
    if (!strcmp(type, "Precompiled")) {
        st.kind = UGM_N_PRECOMPILED;
    } else if (!strcmp(type, "NFC")) {
        st.kind = UGM_N_NFC;
    } else if (!strcmp(type, "NFD")) {
        st.kind = UGM_N_NFD;
    } else if (!strcmp(type, "NFKC")) {
        st.kind = UGM_N_NFKC;
    } else if (!strcmp(type, "NFKD")) {
        st.kind = UGM_N_NFKD;
    } else if (!strcmp(type, "Lowercase")) {
        st.kind = UGM_N_LOWERCASE;
    } else if (!strcmp(type, "Strip")) {
        st.kind = UGM_N_STRIP;
        st.left = json_is_true(json_object_get(norm, "strip_left"));
        st.right = json_is_true(json_object_get(norm, "strip_right"));
    } else if (!strcmp(type, "Prepend") || !strcmp(type, "Replace")) {
        bool rep = !strcmp(type, "Replace");
        const json_t *c = json_object_get(norm, rep ? "content" : "prepend");
        st.kind = rep ? UGM_N_REPLACE : UGM_N_PREPEND;
        if (c && !json_is_string(c)) {
            snprintf(err, errlen, "bad %s normalizer", type);
            return false;
        }
        if (!to_cps(c ? json_string_value(c) : "", c ? json_string_length(c) : 0, &st.rep, &st.nrep)) {
            snprintf(err, errlen, "bad %s normalizer text", type);
            return false;
        }
        if (rep) {
            const json_t *pat = json_object_get(norm, "pattern");
            const json_t *s = json_object_get(pat, "String"), *r = json_object_get(pat, "Regex");
            bool ok = false;
            if (json_is_string(s) && json_string_length(s)) {
                ok = to_cps(json_string_value(s), json_string_length(s), &st.pat, &st.npat);
            } else if (json_is_string(r)) {
                uint32_t ch;
                ok = parse_run_regex(json_string_value(r), &ch, &st.min_run, &st.ws_run) &&
                     (st.pat = malloc(sizeof ch));
                if (ok) {
                    st.pat[0] = ch;
                    st.npat = 1;
                }
            }
            if (!ok) {
                free(st.rep);
                snprintf(err, errlen, "unsupported Replace pattern (literal strings, \"x{n,}\" and \"\\s+\" runs only)");
                return false;
            }
        }
    } else {
        snprintf(err, errlen, "unsupported normalizer %s", type);
        return false;
    }
    if (!push_step(steps, n, &st)) {
        free(st.pat);
        free(st.rep);
        snprintf(err, errlen, "out of memory");
        return false;
    }
    return true;
}

bool ugm_norm_parse(const json_t *norm, ugm_norm_step **steps, size_t *n, char *err, size_t errlen)
{
    *steps = NULL;
    *n = 0;
    if (parse_one(norm, steps, n, err, errlen, 0))
        return true;
    ugm_norm_free(*steps, *n);
    *steps = NULL;
    *n = 0;
    return false;
}

void ugm_norm_free(ugm_norm_step *steps, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(steps[i].pat);
        free(steps[i].rep);
    }
    free(steps);
}
