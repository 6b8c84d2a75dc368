/* Tokenizer tests: id parity with transformers.js on tests/fixtures/tokens_*.jsonl (built from
 * tokenizer.json, from a vocabulary array and from the GGUF's vocabulary), truncation, invalid
 * UTF-8, buffer reuse. Files: $EMBD_SOURCE_DIR/tests/fixtures, $EMBD_SHARED_DIR/models. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gguf.h"
#include "tokenizer/tokenizer.h"
#include "util/jsonfix.h"

#define BGE "bge-small-en-v1.5"

static char g_src[2048], g_shared[4096];

static void init_paths(void)
{
    const char *src = getenv("EMBD_SOURCE_DIR");
    const char *shared = getenv("EMBD_SHARED_DIR");
    snprintf(g_src, sizeof g_src, "%s", src && *src ? src : ".");
    if (shared && *shared)
        snprintf(g_shared, sizeof g_shared, "%s", shared);
    else
        snprintf(g_shared, sizeof g_shared, "%s/../shared", g_src);
}

/* Joins path parts into one of a few rotating static buffers: copy a result that must live long. */
static char *path_of(const char *a, const char *b, const char *c)
{
    static char buf[3][8192];
    static int k;
    char tmp[sizeof buf[0]]; /* an argument may be an earlier result: never format in place */
    k = (k + 1) % 3;
    snprintf(tmp, sizeof tmp, "%s/%s%s%s", a, b, c ? "/" : "", c ? c : "");
    memcpy(buf[k], tmp, sizeof tmp);
    return buf[k];
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 65536 > cap) {
            cap = (cap + 65536) * 2;
            char *b = realloc(buf, cap + 1);
            assert_non_null(b);
            buf = b;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

/* ---------------------------------------------------------------- fixtures */

typedef struct {
    char *id;
    char *text;
    size_t len;
    int32_t *ids;
    size_t n;
} fx_line;

typedef struct {
    char name[256];
    char base[256];
    json_t *config; /* the @config line of a synthetic fixture, or NULL */
    fx_line *lines;
    size_t n;
    bool saw_lone_surrogate_escape;
} fixture;

static void fixture_free(fixture *f)
{
    for (size_t i = 0; i < f->n; i++) {
        free(f->lines[i].id);
        free(f->lines[i].text);
        free(f->lines[i].ids);
    }
    free(f->lines);
    json_decref(f->config);
    memset(f, 0, sizeof *f);
}

/* The whole path a JSON line from a user takes: surrogate fix -> jansson (NUL allowed). */
static json_t *parse_line(char *line, size_t len, size_t *fixed)
{
    *fixed = embd_json_fix_surrogates(line, len);
    json_error_t e;
    json_t *j = json_loadb(line, len, JSON_ALLOW_NUL, &e);
    if (!j)
        print_error("bad fixture line: %s\n", e.text);
    assert_non_null(j);
    return j;
}

static void fixture_load(fixture *f, const char *dir, const char *file)
{
    memset(f, 0, sizeof *f);
    size_t name_len = strlen(file) < sizeof f->name ? strlen(file) : sizeof f->name - 1;
    memcpy(f->name, file, name_len);
    /* tokens_<model>.jsonl */
    snprintf(f->base, sizeof f->base, "%.*s", (int)(strlen(file) - strlen("tokens_") - strlen(".jsonl")),
             file + strlen("tokens_"));
    size_t len = 0;
    char *data = read_file(path_of(dir, file, NULL), &len);
    assert_non_null(data);
    size_t cap = 0;
    for (char *p = data; p < data + len;) {
        char *nl = memchr(p, '\n', (size_t)(data + len - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(data + len - p);
        if (ll) {
            size_t fixed;
            json_t *j = parse_line(p, ll, &fixed);
            const char *id = json_string_value(json_object_get(j, "id"));
            assert_non_null(id);
            if (!strcmp(id, "@config")) {
                const char *base = json_string_value(json_object_get(j, "base"));
                assert_non_null(base);
                snprintf(f->base, sizeof f->base, "%s", base);
                f->config = json_incref(j);
            } else {
                if (f->n == cap) {
                    cap = cap ? cap * 2 : 512;
                    f->lines = realloc(f->lines, cap * sizeof *f->lines);
                    assert_non_null(f->lines);
                }
                fx_line *l = &f->lines[f->n++];
                const json_t *text = json_object_get(j, "text"), *ids = json_object_get(j, "ids");
                assert_true(json_is_string(text) && json_is_array(ids));
                l->id = strdup(id);
                l->len = json_string_length(text);
                l->text = malloc(l->len + 1);
                memcpy(l->text, json_string_value(text), l->len + 1);
                l->n = json_array_size(ids);
                l->ids = malloc((l->n ? l->n : 1) * sizeof *l->ids);
                for (size_t i = 0; i < l->n; i++)
                    l->ids[i] = (int32_t)json_integer_value(json_array_get(ids, i));
                if (fixed)
                    f->saw_lone_surrogate_escape = true;
            }
            json_decref(j);
        }
        p += ll + 1;
    }
    free(data);
}

/* ---------------------------------------------------------------- tokenizer builders */

/* tokenizer.json of base, patched as the generator did: added_tokens appended, normalizer
 * replaced, model members merged. */
static embd_tokenizer *tok_from_json(const char *base, const json_t *config)
{
    char err[256] = "";
    const char *path = path_of(g_shared, "models", base);
    path = path_of(path, "tokenizer.json", NULL);
    embd_tokenizer *t;
    if (!config) {
        t = embd_tokenizer_from_json_file(path, err, sizeof err);
    } else {
        json_error_t e;
        json_t *root = json_load_file(path, 0, &e);
        assert_non_null(root);
        const json_t *added = json_object_get(config, "added_tokens");
        const json_t *norm = json_object_get(config, "normalizer");
        const json_t *model = json_object_get(config, "model");
        if (added)
            json_array_extend(json_object_get(root, "added_tokens"), (json_t *)added);
        if (norm)
            json_object_set(root, "normalizer", (json_t *)norm);
        if (model)
            json_object_update(json_object_get(root, "model"), (json_t *)model);
        char *text = json_dumps(root, 0);
        t = embd_tokenizer_from_json(text, strlen(text), err, sizeof err);
        free(text);
        json_decref(root);
    }
    if (!t)
        print_error("%s: %s\n", path, err);
    assert_non_null(t);
    return t;
}

/* The options a @config line asks for (JS truthiness, as transformers.js reads them). */
static void config_opts(const json_t *config, embd_wordpiece_opts *o)
{
    embd_wordpiece_opts_default(o);
    const json_t *norm = json_object_get(config, "normalizer");
    const json_t *mc = json_object_get(json_object_get(config, "model"), "max_input_chars_per_word");
    if (norm) {
        const json_t *sa = json_object_get(norm, "strip_accents");
        o->clean_text = json_is_true(json_object_get(norm, "clean_text"));
        o->handle_chinese_chars = json_is_true(json_object_get(norm, "handle_chinese_chars"));
        o->lowercase = json_is_true(json_object_get(norm, "lowercase"));
        o->strip_accents = json_is_null(sa) ? -1 : json_is_true(sa) ? 1 : 0;
    }
    if (mc)
        o->max_input_chars_per_word = (int)json_integer_value(mc);
}

/* Vocabulary array + GGUF-style types from tokenizer.json: special added tokens are control (3),
 * others user-defined (4). */
static embd_tokenizer *tok_from_arrays(const char *base, const embd_wordpiece_opts *opts)
{
    json_error_t e;
    json_t *root = json_load_file(path_of(path_of(g_shared, "models", base), "tokenizer.json", NULL), 0, &e);
    assert_non_null(root);
    const json_t *vocab = json_object_get(json_object_get(root, "model"), "vocab");
    size_t n = json_object_size(vocab);
    const char **toks = calloc(n, sizeof *toks);
    int32_t *types = calloc(n, sizeof *types);
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)vocab, key, val) {
        json_int_t id = json_integer_value(val);
        assert_true(id >= 0 && (size_t)id < n);
        toks[id] = key;
        types[id] = 1;
    }
    size_t i;
    json_array_foreach(json_object_get(root, "added_tokens"), i, val) {
        json_int_t id = json_integer_value(json_object_get(val, "id"));
        assert_true(id >= 0 && (size_t)id < n);
        types[id] = json_is_true(json_object_get(val, "special")) ? 3 : 4;
    }
    char err[256] = "";
    embd_tokenizer *t = embd_tokenizer_new_wordpiece(toks, types, n, opts, err, sizeof err);
    if (!t)
        print_error("arrays: %s\n", err);
    assert_non_null(t);
    free(toks);
    free(types);
    json_decref(root);
    return t;
}

static const char *gguf_path(void)
{
    return path_of(g_shared, "models/bge-small-random", "bge-small-random-q8_0.gguf");
}

/* tokenizer.ggml.tokens / token_type, as llama.cpp stores them (phantom-space vocabulary). */
static embd_tokenizer *tok_from_gguf(const char *path, const embd_wordpiece_opts *opts)
{
    struct gguf_init_params params = {.no_alloc = true, .ctx = NULL};
    struct gguf_context *g = gguf_init_from_file(path, params);
    assert_non_null(g);
    int64_t kt = gguf_find_key(g, "tokenizer.ggml.tokens");
    int64_t ky = gguf_find_key(g, "tokenizer.ggml.token_type");
    assert_true(kt >= 0 && ky >= 0);
    assert_int_equal(gguf_get_arr_type(g, ky), GGUF_TYPE_INT32);
    size_t n = gguf_get_arr_n(g, kt);
    assert_int_equal(gguf_get_arr_n(g, ky), n);
    const char **toks = calloc(n, sizeof *toks);
    for (size_t i = 0; i < n; i++)
        toks[i] = gguf_get_arr_str(g, kt, i);
    char err[256] = "";
    embd_tokenizer *t = embd_tokenizer_new_wordpiece(toks, gguf_get_arr_data(g, ky), n, opts, err, sizeof err);
    if (!t)
        print_error("gguf: %s\n", err);
    assert_non_null(t);
    free(toks);
    gguf_free(g);
    return t;
}

static bool file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* ---------------------------------------------------------------- parity */

static size_t check_parity(const embd_tokenizer *t, const fixture *f, const char *how)
{
    embd_tokens tk = {0};
    size_t bad = 0;
    for (size_t i = 0; i < f->n; i++) {
        const fx_line *l = &f->lines[i];
        size_t off = 0;
        int rc = embd_tokenizer_encode(t, l->text, l->len, 0, &tk, &off);
        bool same = rc == EMBD_TOK_OK && tk.n == l->n && tk.n_full == l->n && !tk.truncated &&
                    memcmp(tk.ids, l->ids, l->n * sizeof *l->ids) == 0;
        if (!same) {
            if (bad < 5) {
                size_t k = 0;
                while (rc == EMBD_TOK_OK && k < tk.n && k < l->n && tk.ids[k] == l->ids[k])
                    k++;
                print_error("%s [%s] %s: rc %d, %zu ids, want %zu; first difference at %zu: got %d want %d\n",
                            f->name, how, l->id, rc, tk.n, l->n, k, k < tk.n ? tk.ids[k] : -1,
                            k < l->n ? l->ids[k] : -1);
            }
            bad++;
        }
    }
    embd_tokens_free(&tk);
    printf("tokenizer parity: %s [%s]: %zu texts, %zu mismatches\n", f->name, how, f->n, bad);
    return bad;
}

static void test_parity(void **state)
{
    (void)state;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path_of(g_src, "tests", "fixtures"));
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    char names[64][256];
    size_t nf = 0;
    while ((e = readdir(d)) && nf < 64) {
        size_t l = strlen(e->d_name);
        /* tokens_xlmr.jsonl is the Unigram tokenizer's (test_tokenizer_ugm.c), tokens_clip.jsonl
         * the BPE tokenizer's (test_tokenizer_bpe.c) */
        if (!strncmp(e->d_name, "tokens_", 7) && l > 13 && !strcmp(e->d_name + l - 6, ".jsonl") &&
            strcmp(e->d_name, "tokens_xlmr.jsonl") && strcmp(e->d_name, "tokens_clip.jsonl"))
            snprintf(names[nf++], sizeof names[0], "%s", e->d_name);
    }
    closedir(d);

    bool have_gguf = file_exists(gguf_path());
    if (!have_gguf)
        printf("tokenizer parity: %s not found, GGUF vocabulary not checked\n", gguf_path());
    size_t texts = 0, bad = 0, bge_lines = 0, minilm_lines = 0, surrogate_files = 0, gguf_checked = 0;
    for (size_t k = 0; k < nf; k++) {
        fixture f;
        fixture_load(&f, dir, names[k]);
        if (!strcmp(names[k], "tokens_" BGE ".jsonl"))
            bge_lines = f.n;
        if (!strcmp(names[k], "tokens_all-MiniLM-L6-v2.jsonl"))
            minilm_lines = f.n;
        surrogate_files += f.saw_lone_surrogate_escape;
        embd_tokenizer *tj = tok_from_json(f.base, f.config);
        bad += check_parity(tj, &f, "tokenizer.json");
        texts += f.n;
        if (!json_object_get(f.config, "added_tokens")) { /* arrays carry no added-token flags */
            embd_wordpiece_opts o;
            config_opts(f.config, &o);
            embd_tokenizer *ta = tok_from_arrays(f.base, &o);
            bad += check_parity(ta, &f, "vocab array");
            texts += f.n;
            embd_tokenizer_free(ta);
            if (have_gguf && !strcmp(f.base, BGE)) {
                embd_tokenizer *tg = tok_from_gguf(gguf_path(), &o);
                bad += check_parity(tg, &f, "gguf vocab");
                texts += f.n;
                gguf_checked++;
                embd_tokenizer_free(tg);
            }
        }
        embd_tokenizer_free(tj);
        fixture_free(&f);
    }
    printf("tokenizer parity: %zu texts, %zu mismatches\n", texts, bad);
    assert_int_equal(bad, 0);
    /* the fixtures this test is about must be there: 47 edge cases + >= 300 numpy chunks */
    assert_true(bge_lines >= 347);
    assert_true(minilm_lines >= 347);
    assert_true(surrogate_files >= 2); /* the lone-surrogate edge case went through the fix */
    if (have_gguf)
        assert_true(gguf_checked >= 2);
}

/* ---------------------------------------------------------------- other behaviour */

static embd_tokenizer *g_bge;

static int setup(void **state)
{
    (void)state;
    init_paths();
    return 0;
}

static embd_tokenizer *bge(void)
{
    if (!g_bge)
        g_bge = tok_from_json(BGE, NULL);
    return g_bge;
}

static int teardown(void **state)
{
    (void)state;
    embd_tokenizer_free(g_bge);
    g_bge = NULL;
    return 0;
}

static void encode_ok(const embd_tokenizer *t, const char *s, size_t len, size_t max, embd_tokens *tk)
{
    size_t off = 12345;
    assert_int_equal(embd_tokenizer_encode(t, s, len, max, tk, &off), EMBD_TOK_OK);
    assert_int_equal(off, 12345); /* untouched on success */
}

static void test_basic(void **state)
{
    (void)state;
    const embd_tokenizer *t = bge();
    assert_int_equal(embd_tokenizer_vocab_size(t), 30522);
    assert_int_equal(embd_tokenizer_cls_id(t), 101);
    assert_int_equal(embd_tokenizer_sep_id(t), 102);
    assert_string_equal(embd_tokenizer_token(t, 101), "[CLS]");
    assert_string_equal(embd_tokenizer_token(t, 7592), "hello");
    assert_null(embd_tokenizer_token(t, -1));
    assert_null(embd_tokenizer_token(t, 30522));
    embd_tokens tk = {0};
    const char *s = "Hello, [CLS] Straße naïve 中文 unaffordable";
    encode_ok(t, s, strlen(s), 0, &tk);
    /* hello , [CLS] st ##raße naive 中 文 una ##ff ##ord ##able (from transformers.js) */
    const int32_t want[] = {101, 7592, 1010, 101, 2358, 27807, 15743, 1746, 1861, 14477, 4246, 8551, 3085, 102};
    assert_int_equal(tk.n, sizeof want / sizeof want[0]);
    assert_memory_equal(tk.ids, want, sizeof want);
    embd_tokens_free(&tk);
}

static void test_empty_and_whitespace(void **state)
{
    (void)state;
    const embd_tokenizer *t = bge();
    const char *cases[] = {"", " ", "\t\n\r\n  ", "\xC2\xA0\xE3\x80\x80", "\x01\x02\x7F", "\xEF\xBB\xBF",
                           "\xE2\x80\x8B\xE2\x80\x8B", "\xEF\xBF\xBD"};
    embd_tokens tk = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        encode_ok(t, cases[i], strlen(cases[i]), 0, &tk);
        assert_int_equal(tk.n, 2);
        assert_int_equal(tk.n_full, 2);
        assert_false(tk.truncated);
        assert_int_equal(tk.ids[0], 101);
        assert_int_equal(tk.ids[1], 102);
    }
    encode_ok(t, "\0\0", 2, 0, &tk); /* NUL is dropped, not an end of string */
    assert_int_equal(tk.n, 2);
    encode_ok(t, NULL, 0, 0, &tk);
    assert_int_equal(tk.n, 2);
    encode_ok(t, "a\0b", 3, 0, &tk); /* "ab" */
    assert_int_equal(tk.n, 3);
    assert_int_equal(tk.ids[1], 11113);
    assert_int_equal(embd_tokenizer_encode(t, NULL, 1, 0, &tk, NULL), EMBD_TOK_EINVAL);
    assert_int_equal(embd_tokenizer_encode(NULL, "a", 1, 0, &tk, NULL), EMBD_TOK_EINVAL);
    assert_int_equal(embd_tokenizer_encode(t, "a", 1, 0, NULL, NULL), EMBD_TOK_EINVAL);
    embd_tokens_free(&tk);
}

static void test_truncation(void **state)
{
    (void)state;
    const embd_tokenizer *t = bge();
    char *text = malloc(64 * 1000 + 1);
    text[0] = 0;
    for (int i = 0; i < 1000; i++)
        strcat(text, i % 2 ? "tokenization works, " : "hello world ");
    size_t len = strlen(text);
    embd_tokens full = {0}, tk = {0};
    encode_ok(t, text, len, 0, &full);
    assert_true(full.n > 3000);
    assert_int_equal(full.n_full, full.n);
    assert_false(full.truncated);
    const size_t maxes[] = {512, 128, 3, 2, full.n - 1, full.n, full.n + 7};
    for (size_t k = 0; k < sizeof maxes / sizeof maxes[0]; k++) {
        size_t m = maxes[k];
        encode_ok(t, text, len, m, &tk);
        size_t want_n = m < full.n ? m : full.n;
        assert_int_equal(tk.n, want_n);
        assert_true(tk.n <= m);
        assert_int_equal(tk.n_full, full.n);
        assert_int_equal(tk.truncated, want_n < full.n);
        assert_int_equal(tk.ids[0], 101);
        assert_int_equal(tk.ids[tk.n - 1], 102);
        assert_memory_equal(tk.ids, full.ids, (tk.n - 1) * sizeof *tk.ids); /* a prefix of the pieces */
    }
    encode_ok(t, text, len, 1, &tk); /* no room for both: [CLS] alone */
    assert_int_equal(tk.n, 1);
    assert_int_equal(tk.ids[0], 101);
    assert_true(tk.truncated);
    assert_int_equal(tk.n_full, full.n);
    /* a word cut into pieces at the limit: "unaffordable" = una ##ff ##ord ##able */
    encode_ok(t, "unaffordable", 12, 4, &tk);
    const int32_t want[] = {101, 14477, 4246, 102};
    assert_int_equal(tk.n, 4);
    assert_int_equal(tk.n_full, 6);
    assert_memory_equal(tk.ids, want, sizeof want);
    /* an unknown word after the limit still counts once */
    encode_ok(t, "a b \xE2\x98\x83\xE2\x98\x83", 10, 3, &tk);
    assert_int_equal(tk.n, 3);
    assert_int_equal(tk.n_full, 5);
    free(text);
    embd_tokens_free(&full);
    embd_tokens_free(&tk);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    const embd_tokenizer *t = bge();
    static const struct {
        const char *s;
        size_t len, off;
    } bad[] = {
        {"abc\xFF", 4, 3},                 /* never valid */
        {"\xFE", 1, 0},
        {"\xC0\xAF", 2, 0},                /* overlong '/' */
        {"\xC1\xBF", 2, 0},
        {"ab\xE0\x80\xAF", 5, 2},          /* overlong, 3 bytes */
        {"\xF0\x82\x82\xAC", 4, 0},        /* overlong, 4 bytes */
        {"x\xED\xA0\x80", 4, 1},           /* U+D800 encoded */
        {"xy\xED\xBF\xBF", 5, 2},          /* U+DFFF encoded */
        {"\xED\xA0\xBD\xED\xB8\x80", 6, 0}, /* CESU-8 pair */
        {"abc\xE2\x82", 5, 3},             /* truncated at the end */
        {"\xE2\x82x", 3, 0},               /* truncated before ASCII */
        {"\xF0\x9F\x98", 3, 0},
        {"a\x80", 2, 1},                   /* stray continuation */
        {"\xC3\xA9\xA9", 3, 2},
        {"\xF4\x90\x80\x80", 4, 0},        /* > U+10FFFF */
        {"\xF5\x80\x80\x80", 4, 0},
        {"caf\xC3\xA9 ok then \xC3", 15, 14},
        {"12345678901234567890\xE9", 21, 20}, /* after the 8-byte ASCII fast path */
        {"[CLS]\xFF[SEP]", 11, 5},
    };
    embd_tokens tk = {0};
    encode_ok(t, "warm", 4, 0, &tk);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t off = 999;
        int rc = embd_tokenizer_encode(t, bad[i].s, bad[i].len, 0, &tk, &off);
        if (rc != EMBD_TOK_EUTF8 || off != bad[i].off)
            print_error("case %zu: rc %d offset %zu, want offset %zu\n", i, rc, off, bad[i].off);
        assert_int_equal(rc, EMBD_TOK_EUTF8);
        assert_int_equal(off, bad[i].off);
        assert_int_equal(tk.n, 0);
        assert_int_equal(embd_tokenizer_encode(t, bad[i].s, bad[i].len, 0, &tk, NULL), EMBD_TOK_EUTF8);
    }
    /* the boundaries of the valid ranges */
    const char *good[] = {"\xF4\x8F\xBF\xBF", "\xED\x9F\xBF", "\xEE\x80\x80", "\xC2\x80", "\xE0\xA0\x80",
                          "\xF0\x90\x80\x80", "\xEF\xBF\xBF", "\x7F"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        encode_ok(t, good[i], strlen(good[i]), 0, &tk);
    embd_tokens_free(&tk);
}

/* Reference validator, written differently from the tokenizer's: decode, then reject. */
static size_t ref_validate(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t b = s[i];
        size_t k = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
        if (!k || i + k > n)
            return i;
        uint32_t cp = k == 1 ? b : b & (0x7F >> k);
        for (size_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[k] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += k;
    }
    return n;
}

/* Random byte strings: never a crash (ASan), the error offset of the reference, [CLS]..[SEP]. */
static void test_random_bytes(void **state)
{
    (void)state;
    const embd_tokenizer *t = bge();
    static const char *frags[] = {"a", "Z", " ", "[CLS]", "[", "##", "\xC3\xA9", "\xCE\xA3", "\xE4\xB8\xAD",
                                  "\xF0\x9F\x98\x80", "\xCC\x81", "\xF0\x9D\x85\xA5", "\xED\x9F\xBF", "\x80",
                                  "\xC3", "\xE4\xB8", "\xFF", "\xED\xA0\x80", "\0", "\t", "\xEF\xBF\xBD", "\xC4\xB0"};
    uint32_t x = 12345;
    embd_tokens tk = {0};
    uint8_t buf[512];
    size_t errors = 0;
    for (int it = 0; it < 20000; it++) {
        size_t n = 0;
        x = x * 1664525u + 1013904223u;
        size_t parts = (x >> 24) % 40;
        for (size_t p = 0; p < parts; p++) {
            x = x * 1664525u + 1013904223u;
            if ((x >> 28) < 3) {
                buf[n++] = (uint8_t)(x >> 16);
            } else {
                const char *f = frags[(x >> 16) % (sizeof frags / sizeof frags[0])];
                size_t fl = f[0] ? strlen(f) : 1;
                memcpy(buf + n, f, fl);
                n += fl;
            }
        }
        size_t want = ref_validate(buf, n), off = 0;
        int rc = embd_tokenizer_encode(t, (const char *)buf, n, it % 3 ? 0 : 5, &tk, &off);
        if (want < n) {
            assert_int_equal(rc, EMBD_TOK_EUTF8);
            assert_int_equal(off, want);
            errors++;
        } else {
            assert_int_equal(rc, EMBD_TOK_OK);
            assert_true(tk.n >= 2 && tk.n <= tk.n_full);
            assert_int_equal(tk.ids[0], 101);
            assert_int_equal(tk.ids[tk.n - 1], 102);
        }
    }
    assert_true(errors > 1000 && errors < 19000); /* both paths exercised */
    embd_tokens_free(&tk);
}

static void test_buffer_reuse(void **state)
{
    (void)state;
    const embd_tokenizer *t = bge();
    const char *texts[] = {"short",
                           ("a much longer text with many words in it, repeated: one two three four "
                            "five six seven eight nine ten eleven twelve thirteen fourteen"),
                           "", "x", "mid length text here"};
    embd_tokens shared = {0};
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
            embd_tokens fresh = {0};
            encode_ok(t, texts[i], strlen(texts[i]), round == 2 ? 6 : 0, &fresh);
            size_t cap_before = shared.cap;
            encode_ok(t, texts[i], strlen(texts[i]), round == 2 ? 6 : 0, &shared);
            assert_true(shared.cap >= cap_before); /* grows, never shrinks */
            assert_int_equal(shared.n, fresh.n);
            assert_int_equal(shared.n_full, fresh.n_full);
            assert_int_equal(shared.truncated, fresh.truncated);
            assert_memory_equal(shared.ids, fresh.ids, fresh.n * sizeof *fresh.ids);
            embd_tokens_free(&fresh);
            assert_null(fresh.ids);
        }
    }
    embd_tokens_free(&shared);
    embd_tokens_free(&shared); /* idempotent */
}

/* Long inputs stay linear: a 1 MB word, 200k punctuation marks, a 100k combining-mark run. */
static void test_long_inputs(void **state)
{
    (void)state;
    const embd_tokenizer *t = bge();
    size_t n = 1 << 20;
    char *s = malloc(n);
    embd_tokens tk = {0};
    memset(s, 'a', n);
    encode_ok(t, s, n, 0, &tk);
    assert_int_equal(tk.n, 3);
    assert_int_equal(tk.ids[1], 100); /* longer than 100 characters: [UNK] */
    memset(s, '!', 200000);
    encode_ok(t, s, 200000, 512, &tk);
    assert_int_equal(tk.n, 512);
    assert_int_equal(tk.n_full, 200002);
    s[0] = 'e';
    for (size_t i = 1; i + 1 < 200001; i += 2) { /* U+0301 U+0316 alternating: reordering work */
        s[i] = (char)0xCC;
        s[i + 1] = (char)((i / 2) % 2 ? 0x81 : 0x96);
    }
    encode_ok(t, s, 200001, 0, &tk);
    assert_int_equal(tk.n, 3);
    assert_int_equal(tk.ids[1], 1041); /* "e": every mark stripped */
    free(s);
    embd_tokens_free(&tk);
}

static void test_constructors(void **state)
{
    (void)state;
    char err[256] = "";
    assert_null(embd_tokenizer_from_json_file("/nonexistent/tokenizer.json", err, sizeof err));
    assert_true(strlen(err) > 0);
    err[0] = 0;
    const char *bpe = "{\"model\":{\"type\":\"BPE\",\"vocab\":{}},\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"}}";
    assert_null(embd_tokenizer_from_json(bpe, strlen(bpe), err, sizeof err)); /* (test_tokenizer_bpe) */
    assert_non_null(strstr(err, "BPE model without a vocabulary"));
    const char *other = "{\"model\":{\"type\":\"WordLevel\",\"vocab\":{\"a\":0}}}";
    assert_null(embd_tokenizer_from_json(other, strlen(other), err, sizeof err));
    assert_non_null(strstr(err, "WordLevel is not WordPiece"));
    assert_null(embd_tokenizer_from_json("{", 1, err, sizeof err));

    /* minimal vocabulary, types NULL: the five BERT specials are added tokens */
    const char *toks[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "##s", "!"};
    embd_tokenizer *t = embd_tokenizer_new_wordpiece(toks, NULL, 9, NULL, err, sizeof err);
    assert_non_null(t);
    embd_tokens tk = {0};
    encode_ok(t, "Hello worlds![MASK]x", 20, 0, &tk);
    const int32_t want[] = {2, 5, 6, 7, 8, 4, 1, 3};
    assert_int_equal(tk.n, 8);
    assert_memory_equal(tk.ids, want, sizeof want);
    embd_tokenizer_free(t);

    /* the same in llama.cpp's phantom-space form, with types */
    const char *ph[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "\xE2\x96\x81hello", "\xE2\x96\x81world",
                        "s", "\xE2\x96\x81!"};
    const int32_t types[] = {3, 3, 3, 3, 3, 1, 1, 1, 1};
    t = embd_tokenizer_new_wordpiece(ph, types, 9, NULL, err, sizeof err);
    assert_non_null(t);
    assert_string_equal(embd_tokenizer_token(t, 7), "##s");
    assert_string_equal(embd_tokenizer_token(t, 5), "hello");
    encode_ok(t, "Hello worlds![MASK]x", 20, 0, &tk);
    assert_memory_equal(tk.ids, want, sizeof want);
    embd_tokenizer_free(t);

    /* options: no lowercasing, accents kept */
    embd_wordpiece_opts o;
    embd_wordpiece_opts_default(&o);
    o.lowercase = false;
    const char *cased[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Hello", "caf", "##\xC3\xA9", "cafe"};
    t = embd_tokenizer_new_wordpiece(cased, NULL, 9, &o, err, sizeof err);
    assert_non_null(t);
    encode_ok(t, "Hello hello caf\xC3\xA9", 17, 0, &tk);
    const int32_t want2[] = {2, 5, 1, 6, 7, 3};
    assert_int_equal(tk.n, 6);
    assert_memory_equal(tk.ids, want2, sizeof want2);
    embd_tokenizer_free(t);

    const char *nocls[] = {"[UNK]", "a"};
    assert_null(embd_tokenizer_new_wordpiece(nocls, NULL, 2, NULL, err, sizeof err));
    assert_non_null(strstr(err, "[CLS]"));
    embd_tokens_free(&tk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_empty_and_whitespace),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_buffer_reuse),
        cmocka_unit_test(test_long_inputs),
        cmocka_unit_test(test_constructors),
        cmocka_unit_test(test_parity),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
