/* Unigram (XLM-RoBERTa) tokenizer tests: id parity with transformers.js on
 * tests/fixtures/tokens_xlmr.jsonl through both loading paths (the GGUF vocabulary llama.cpp ships
 * as models/ggml-vocab-nomic-bert-moe.gguf, and the tokenizer.json tools/tokfix/
 * gguf_to_tokenizer_json.py makes of it, which is what the fixture was generated from), the two
 * paths against each other on random input, Viterbi semantics on a hand-made vocabulary, invalid
 * UTF-8, truncation, large inputs, constructor errors. The GGUF is found through GGUF_PY_DIR
 * (<llama.cpp src>/gguf-py, set by ctest) or ~/.cache/embd/llama.cpp-*. EMBD_XLMR_FIXTURE replaces
 * the fixture (tools/tokfix/xlmr_exhaustive.mjs writes a 55k-text one). */
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
#include <time.h>
#include <unistd.h>

#include "gguf.h"
#include "tokenizer/tokenizer.h"
#include "util/jsonfix.h"

#define VOCAB_GGUF "ggml-vocab-nomic-bert-moe.gguf"

static char g_src[2048], g_gguf[4096], g_json[4096];
static embd_tokenizer *g_tg, *g_tj; /* from the GGUF, from tokenizer.json */

static bool file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static void find_gguf(void)
{
    const char *gp = getenv("GGUF_PY_DIR");
    if (gp && *gp) {
        snprintf(g_gguf, sizeof g_gguf, "%s/../models/%s", gp, VOCAB_GGUF);
        return;
    }
    const char *home = getenv("HOME");
    char cache[2048];
    snprintf(cache, sizeof cache, "%s/.cache/embd", home ? home : ".");
    DIR *d = opendir(cache);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (!strncmp(e->d_name, "llama.cpp-", 10))
            snprintf(g_gguf, sizeof g_gguf, "%s/%s/src/models/%s", cache, e->d_name, VOCAB_GGUF);
    if (d)
        closedir(d);
}

static embd_tokenizer *tok_from_gguf(const char *path)
{
    struct gguf_init_params params = {.no_alloc = true, .ctx = NULL};
    struct gguf_context *g = gguf_init_from_file(path, params);
    assert_non_null(g);
    char err[256] = "";
    embd_tokenizer *t = embd_tokenizer_new_unigram_gguf(g, err, sizeof err);
    if (!t)
        print_error("%s: %s\n", path, err);
    assert_non_null(t);
    gguf_free(g);
    return t;
}

static int setup(void **state)
{
    (void)state;
    const char *src = getenv("EMBD_SOURCE_DIR");
    snprintf(g_src, sizeof g_src, "%s", src && *src ? src : ".");
    find_gguf();
    if (!file_exists(g_gguf)) {
        print_error("%s not found (set GGUF_PY_DIR or run scripts/build-llama.sh)\n", g_gguf);
        return -1;
    }
    const char *tmp = getenv("EMBD_TEST_TMP");
    const char *py = getenv("EMBD_PYTHON");
    char dir[2048];
    snprintf(dir, sizeof dir, "%s", tmp && *tmp ? tmp : "/tmp");
    mkdir(dir, 0755);
    snprintf(g_json, sizeof g_json, "%s/xlmr-tokenizer-%ld.json", dir, (long)getpid());
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "'%s' '%s/tools/tokfix/gguf_to_tokenizer_json.py' '%s' '%s'", py && *py ? py : "python3",
             g_src, g_gguf, g_json);
    if (system(cmd) != 0) {
        print_error("failed: %s\n", cmd);
        return -1;
    }
    g_tg = tok_from_gguf(g_gguf);
    char err[256] = "";
    g_tj = embd_tokenizer_from_json_file(g_json, err, sizeof err);
    if (!g_tj)
        print_error("%s: %s\n", g_json, err);
    remove(g_json);
    return g_tj ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    embd_tokenizer_free(g_tg);
    embd_tokenizer_free(g_tj);
    return 0;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    *len = 0;
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

static void encode_ok(const embd_tokenizer *t, const char *s, size_t len, size_t max, embd_tokens *tk)
{
    size_t off = 12345;
    assert_int_equal(embd_tokenizer_encode(t, s, len, max, tk, &off), EMBD_TOK_OK);
    assert_int_equal(off, 12345);
}

/* ---------------------------------------------------------------- parity */

typedef struct {
    char *id, *text;
    size_t len, n;
    int32_t *ids;
} fx_line;

static fx_line *load_fixture(size_t *count, json_t **config)
{
    char path[4096];
    const char *big = getenv("EMBD_XLMR_FIXTURE"); /* tools/tokfix/xlmr_exhaustive.mjs output */
    if (big && *big)
        snprintf(path, sizeof path, "%s", big);
    else
        snprintf(path, sizeof path, "%s/tests/fixtures/tokens_xlmr.jsonl", g_src);
    size_t len = 0;
    char *data = read_file(path, &len);
    assert_non_null(data);
    fx_line *v = NULL;
    size_t n = 0, cap = 0;
    *config = NULL;
    for (char *p = data; p < data + len;) {
        char *nl = memchr(p, '\n', (size_t)(data + len - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(data + len - p);
        if (ll) {
            embd_json_fix_surrogates(p, ll);
            json_error_t e;
            json_t *j = json_loadb(p, ll, JSON_ALLOW_NUL, &e);
            assert_non_null(j);
            const char *id = json_string_value(json_object_get(j, "id"));
            assert_non_null(id);
            if (!strcmp(id, "@config")) {
                *config = json_incref(j);
            } else {
                if (n == cap) {
                    cap = cap ? cap * 2 : 1024;
                    v = realloc(v, cap * sizeof *v);
                    assert_non_null(v);
                }
                fx_line *l = &v[n++];
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
            }
            json_decref(j);
        }
        p += ll + 1;
    }
    free(data);
    *count = n;
    return v;
}

static size_t check_parity(const embd_tokenizer *t, const fx_line *v, size_t n, const char *how)
{
    embd_tokens tk = {0};
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        const fx_line *l = &v[i];
        int rc = embd_tokenizer_encode(t, l->text, l->len, 0, &tk, NULL);
        bool same = rc == EMBD_TOK_OK && tk.n == l->n && tk.n_full == l->n &&
                    memcmp(tk.ids, l->ids, l->n * sizeof *l->ids) == 0;
        if (!same) {
            if (bad < 8) {
                size_t k = 0;
                while (rc == EMBD_TOK_OK && k < tk.n && k < l->n && tk.ids[k] == l->ids[k])
                    k++;
                print_error("xlmr [%s] %s: rc %d, %zu ids, want %zu; first difference at %zu: got %d want %d\n",
                            how, l->id, rc, tk.n, l->n, k, k < tk.n ? tk.ids[k] : -1, k < l->n ? l->ids[k] : -1);
            }
            bad++;
        }
    }
    embd_tokens_free(&tk);
    printf("tokenizer parity: tokens_xlmr.jsonl [%s]: %zu texts, %zu mismatches\n", how, n, bad);
    return bad;
}

static void test_parity(void **state)
{
    (void)state;
    size_t n;
    json_t *config;
    fx_line *v = load_fixture(&n, &config);
    assert_non_null(config);
    assert_string_equal(json_string_value(json_object_get(config, "gguf")), VOCAB_GGUF);
    size_t bad = check_parity(g_tg, v, n, "gguf") + check_parity(g_tj, v, n, "tokenizer.json");
    assert_int_equal(bad, 0);
    assert_true(n >= 700); /* edge cases, numpy chunks, multilingual and stress texts */
    for (size_t i = 0; i < n; i++) {
        free(v[i].id);
        free(v[i].text);
        free(v[i].ids);
    }
    free(v);
    json_decref(config);
}

/* ---------------------------------------------------------------- behaviour */

static void test_basic(void **state)
{
    (void)state;
    assert_int_equal(embd_tokenizer_vocab_size(g_tg), 250048); /* with llama.cpp's padding rows */
    assert_int_equal(embd_tokenizer_vocab_size(g_tj), 250002);
    const embd_tokenizer *ts[] = {g_tg, g_tj};
    for (size_t k = 0; k < 2; k++) {
        const embd_tokenizer *t = ts[k];
        assert_int_equal(embd_tokenizer_cls_id(t), 0);
        assert_int_equal(embd_tokenizer_sep_id(t), 2);
        assert_string_equal(embd_tokenizer_token(t, 0), "<s>");
        assert_string_equal(embd_tokenizer_token(t, 6), "\xE2\x96\x81");
        assert_string_equal(embd_tokenizer_token(t, 250001), "<mask>");
        assert_null(embd_tokenizer_token(t, -1));
        assert_null(embd_tokenizer_token(t, (int32_t)embd_tokenizer_vocab_size(t)));
    }
}

static void test_empty_and_nul(void **state)
{
    (void)state;
    embd_tokens tk = {0}, tk2 = {0};
    const char *empty[] = {"", "\x01\x02\x7F", "\xC2\x8F"};
    for (size_t i = 0; i < sizeof empty / sizeof empty[0]; i++) {
        encode_ok(g_tg, empty[i], strlen(empty[i]), 0, &tk);
        assert_int_equal(tk.n, 2);
        assert_int_equal(tk.ids[0], 0);
        assert_int_equal(tk.ids[1], 2);
    }
    encode_ok(g_tg, NULL, 0, 0, &tk);
    assert_int_equal(tk.n, 2);
    /* NUL is text, not an end of string: transformers.js keeps it (an unknown piece) */
    encode_ok(g_tg, "a\0b", 3, 0, &tk);
    encode_ok(g_tg, "a", 1, 0, &tk2);
    assert_true(tk.n > tk2.n);
    bool unk = false;
    for (size_t i = 0; i < tk.n; i++)
        unk |= tk.ids[i] == 3;
    assert_true(unk);
    assert_int_equal(embd_tokenizer_encode(g_tg, NULL, 1, 0, &tk, NULL), EMBD_TOK_EINVAL);
    assert_int_equal(embd_tokenizer_encode(g_tg, "a", 1, 0, NULL, NULL), EMBD_TOK_EINVAL);
    embd_tokens_free(&tk);
    embd_tokens_free(&tk2);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t len, off;
    } bad[] = {
        {"abc\xFF", 4, 3}, {"\xC0\xAF", 2, 0}, {"x\xED\xA0\x80", 4, 1}, {"abc\xE2\x82", 5, 3},
        {"\xF4\x90\x80\x80", 4, 0}, {"<s>\xFF</s>", 8, 3}, {"\xE4\xB8\xAD\xE6\x96", 5, 3},
        {"12345678901234567890\xE9", 21, 20},
    };
    embd_tokens tk = {0};
    encode_ok(g_tg, "warm", 4, 0, &tk);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t off = 999;
        assert_int_equal(embd_tokenizer_encode(g_tg, bad[i].s, bad[i].len, 0, &tk, &off), EMBD_TOK_EUTF8);
        assert_int_equal(off, bad[i].off);
        assert_int_equal(tk.n, 0);
        assert_int_equal(embd_tokenizer_encode(g_tj, bad[i].s, bad[i].len, 0, &tk, &off), EMBD_TOK_EUTF8);
    }
    embd_tokens_free(&tk);
}

static void test_truncation(void **state)
{
    (void)state;
    const char *part = "Tokenization of multilingual text: \xE4\xB8\xAD\xE6\x96\x87, \xD8\xA7\xD9\x84\xD8\xB9\xD8\xB1\xD8\xA8\xD9\x8A\xD8\xA9, "
                       "\xE0\xA4\xB9\xE0\xA4\xBF\xE0\xA4\xA8\xE0\xA5\x8D\xE0\xA4\xA6\xE0\xA5\x80 <mask> ";
    size_t pl = strlen(part), len = pl * 300;
    char *text = malloc(len);
    for (size_t i = 0; i < 300; i++)
        memcpy(text + i * pl, part, pl);
    embd_tokens full = {0}, tk = {0};
    encode_ok(g_tg, text, len, 0, &full);
    assert_true(full.n > 3000);
    const size_t maxes[] = {512, 128, 3, 2, full.n - 1, full.n, full.n + 7};
    for (size_t k = 0; k < sizeof maxes / sizeof maxes[0]; k++) {
        size_t m = maxes[k], want_n = m < full.n ? m : full.n;
        encode_ok(g_tg, text, len, m, &tk);
        assert_int_equal(tk.n, want_n);
        assert_int_equal(tk.n_full, full.n);
        assert_int_equal(tk.truncated, want_n < full.n);
        assert_int_equal(tk.ids[0], 0);
        assert_int_equal(tk.ids[tk.n - 1], 2);
        assert_memory_equal(tk.ids, full.ids, (tk.n - 1) * sizeof *tk.ids);
    }
    encode_ok(g_tg, text, len, 1, &tk);
    assert_int_equal(tk.n, 1);
    assert_int_equal(tk.ids[0], 0);
    assert_true(tk.truncated);
    free(text);
    embd_tokens_free(&full);
    embd_tokens_free(&tk);
}

/* Random byte strings: the reference error offset for invalid UTF-8, and for valid text the two
 * loading paths agree and frame the pieces with <s> </s>. */
static void test_random_bytes(void **state)
{
    (void)state;
    static const char *frags[] = {"a", "Z", " ", "  ", "<s>", "<mask>", "<", "\xE2\x96\x81", "\xC3\xA9", "\xCC\x81",
                                  "\xE4\xB8\xAD", "\xF0\x9F\x98\x80", "\xEF\xBD\x9E", "\xEF\xBC\xA1", "\xD8\xA7",
                                  "\xE0\xA4\xB9", "\0", "\t", "\x01", "\xEF\xBF\xBD", "\x80", "\xC3", "\xFF",
                                  "\xED\xA0\x80", "\xE1\x84\x80", "\xE1\x85\xA1", "\xEF\xAC\x81", "\xE3\x80\x80"};
    uint32_t x = 777;
    embd_tokens a = {0}, b = {0};
    uint8_t buf[512];
    size_t errors = 0;
    for (int it = 0; it < 6000; it++) {
        size_t n = 0;
        x = x * 1664525u + 1013904223u;
        size_t parts = (x >> 24) % 40;
        for (size_t p = 0; p < parts; p++) {
            x = x * 1664525u + 1013904223u;
            if ((x >> 28) < 2) {
                buf[n++] = (uint8_t)(x >> 16);
            } else {
                const char *f = frags[(x >> 16) % (sizeof frags / sizeof frags[0])];
                size_t fl = f[0] ? strlen(f) : 1;
                memcpy(buf + n, f, fl);
                n += fl;
            }
        }
        size_t off = 0, off2 = 0;
        int rc = embd_tokenizer_encode(g_tg, (const char *)buf, n, it % 3 ? 0 : 7, &a, &off);
        int rc2 = embd_tokenizer_encode(g_tj, (const char *)buf, n, it % 3 ? 0 : 7, &b, &off2);
        assert_int_equal(rc, rc2);
        if (rc == EMBD_TOK_EUTF8) {
            assert_int_equal(off, off2);
            errors++;
            continue;
        }
        assert_int_equal(rc, EMBD_TOK_OK);
        assert_true(a.n >= 2 && a.n <= a.n_full);
        assert_int_equal(a.ids[0], 0);
        assert_int_equal(a.ids[a.n - 1], 2);
        assert_int_equal(a.n, b.n);
        assert_int_equal(a.n_full, b.n_full);
        assert_memory_equal(a.ids, b.ids, a.n * sizeof *a.ids);
    }
    assert_true(errors > 300 && errors < 5700);
    embd_tokens_free(&a);
    embd_tokens_free(&b);
}

/* 1 MB of mixed text through one lattice: linear, and a rough throughput figure. */
static void test_large_input(void **state)
{
    (void)state;
    const char *part = "The quick brown fox jumps over the lazy dog. \xE6\x9C\xBA\xE5\x99\xA8\xE5\xAD\xA6\xE4\xB9\xA0 "
                       "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82 \xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7 "
                       "na\xC3\xAFve caf\xC3\xA9 1234.5 \xF0\x9F\x98\x80\n";
    size_t pl = strlen(part), len = 1 << 20;
    char *text = malloc(len);
    for (size_t i = 0; i < len; i++)
        text[i] = part[i % pl];
    size_t cut = len;
    while (cut > 0 && ((uint8_t)text[cut - 1] & 0xC0) == 0x80) /* end on a character boundary */
        cut--;
    if (cut && (uint8_t)text[cut - 1] >= 0xC0)
        cut--;
    embd_tokens tk = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    encode_ok(g_tg, text, cut, 0, &tk);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    printf("xlmr: 1 MB mixed text -> %zu tokens in %.3f s (%.0f tokens/s, %.1f MB/s)\n", tk.n, s, (double)tk.n / s,
           (double)cut / s / 1e6);
    assert_true(tk.n > 200000);
    /* one long run of a character, and a 100k combining-mark run */
    memset(text, 'a', len);
    encode_ok(g_tg, text, len, 0, &tk);
    assert_true(tk.n > 2 && tk.n < len / 2);
    text[0] = 'e';
    for (size_t i = 1; i + 1 < 200001; i += 2) {
        text[i] = (char)0xCC;
        text[i + 1] = (char)((i / 2) % 2 ? 0x81 : 0x96);
    }
    encode_ok(g_tg, text, 200001, 16, &tk);
    assert_int_equal(tk.n, 16);
    free(text);
    embd_tokens_free(&tk);
}

/* A hand-made vocabulary whose Viterbi results follow from the scores. */
static void test_small_vocab(void **state)
{
    (void)state;
    const char *toks[] = {"<s>", "<pad>", "</s>", "<unk>", "\xE2\x96\x81", "a", "b", "\xE2\x96\x81" "ab", "c",
                          "\xE2\x96\x81" "a", "bc", "<mask>", "[PAD1]"};
    const float scores[] = {0, 0, 0, 0, -2, -3, -3, -4, -9, -2, -2, 0, -10000};
    const int32_t types[] = {3, 3, 3, 2, 1, 1, 1, 1, 1, 1, 1, 3, 5};
    embd_unigram_vocab v = {.tokens = toks, .scores = scores, .token_types = types, .n_tokens = 13,
                            .add_space_prefix = true, .remove_extra_whitespaces = true,
                            .bos_id = 0, .eos_id = 2, .unk_id = -1};
    char err[256] = "";
    embd_tokenizer *t = embd_tokenizer_new_unigram(&v, err, sizeof err);
    assert_non_null(t);
    assert_int_equal(embd_tokenizer_vocab_size(t), 13);
    embd_tokens tk = {0};
    /* "▁ab": ▁ab (-4) beats ▁a b (-5) and ▁ a b (-8) */
    encode_ok(t, "ab", 2, 0, &tk);
    const int32_t w1[] = {0, 7, 2};
    assert_int_equal(tk.n, 3);
    assert_memory_equal(tk.ids, w1, sizeof w1);
    /* "▁abc": ▁a bc (-4) beats ▁ab c (-13) */
    encode_ok(t, "abc", 3, 0, &tk);
    const int32_t w2[] = {0, 9, 10, 2};
    assert_int_equal(tk.n, 4);
    assert_memory_equal(tk.ids, w2, sizeof w2);
    /* unknown characters: one <unk> per run (fuse_unk); spaces collapse; trailing space stays */
    encode_ok(t, "a  xyz b ", 9, 0, &tk);
    const int32_t w3[] = {0, 9, 4, 3, 4, 6, 4, 2};
    assert_int_equal(tk.n, 8);
    assert_memory_equal(tk.ids, w3, sizeof w3);
    /* <mask> strips the whitespace on its left; [PAD1] (type 5) is not vocabulary */
    encode_ok(t, "a <mask>[PAD1]", 14, 0, &tk);
    assert_int_equal(tk.ids[1], 9);
    assert_int_equal(tk.ids[2], 11);
    assert_int_equal(tk.ids[3], 4);
    assert_int_equal(tk.ids[4], 3);
    embd_tokenizer_free(t);
    embd_tokens_free(&tk);
}

static void test_constructor_errors(void **state)
{
    (void)state;
    char err[256] = "";
    assert_null(embd_tokenizer_new_unigram(NULL, err, sizeof err));
    embd_unigram_vocab v = {0};
    assert_null(embd_tokenizer_new_unigram(&v, err, sizeof err));
    assert_true(strlen(err) > 0);
    const char *toks[] = {"a", "b"};
    v = (embd_unigram_vocab){.tokens = toks, .n_tokens = 2, .bos_id = -1, .eos_id = -1, .unk_id = -1};
    assert_null(embd_tokenizer_new_unigram(&v, err, sizeof err)); /* no <unk>, <s>, </s> */
    static const struct {
        const char *json, *want;
    } bad[] = {
        {"{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", "vocabulary"},
        {"{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"<unk>\",0],[\"<s>\",0],[\"</s>\",0]]},"
         "\"post_processor\":{\"type\":\"RobertaProcessing\",\"cls\":[\"<s>\",1],\"sep\":[\"</s>\",2]}}",
         "unk_id"},
        {"{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"<unk>\",0],[\"<s>\",\"x\"]]},"
         "\"post_processor\":{\"type\":\"RobertaProcessing\",\"cls\":[\"<s>\",1],\"sep\":[\"</s>\",2]}}",
         "vocabulary entry"},
        {"{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"<unk>\",0]]},\"post_processor\":null}",
         "post_processor"},
        {"{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"<unk>\",0]]},"
         "\"post_processor\":{\"type\":\"RobertaProcessing\",\"cls\":[\"<s>\",1],\"sep\":[\"</s>\",2]},"
         "\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}",
         "pre_tokenizer"},
        {"{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"<unk>\",0]]},"
         "\"post_processor\":{\"type\":\"RobertaProcessing\",\"cls\":[\"<s>\",1],\"sep\":[\"</s>\",2]},"
         "\"normalizer\":{\"type\":\"BertNormalizer\"}}",
         "normalizer"},
        {"{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"<unk>\",0]]},"
         "\"post_processor\":{\"type\":\"RobertaProcessing\",\"cls\":[\"<s>\",1],\"sep\":[\"</s>\",2]},"
         "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"[a-z]+\"},\"content\":\"\"}]}}",
         "Replace"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        embd_tokenizer *t = embd_tokenizer_from_json(bad[i].json, strlen(bad[i].json), err, sizeof err);
        if (t || !strstr(err, bad[i].want))
            print_error("case %zu: error '%s', want '%s'\n", i, err, bad[i].want);
        assert_null(t);
        assert_non_null(strstr(err, bad[i].want));
    }
    /* a minimal valid one: no normalizer, Metaspace, <s>/</s> mapped through the vocabulary */
    const char *ok = "{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"<unk>\",0],[\"<s>\",0],[\"</s>\",0],"
                     "[\"\\u2581hi\",-1],[\"\\u2581\",-2],[\"h\",-3],[\"i\",-3]]},"
                     "\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\",\"prepend_scheme\":\"first\"},"
                     "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\"}},"
                     "{\"Sequence\":{\"id\":\"A\"}},{\"SpecialToken\":{\"id\":\"</s>\"}}]}}";
    embd_tokenizer *t = embd_tokenizer_from_json(ok, strlen(ok), err, sizeof err);
    if (!t)
        print_error("%s\n", err);
    assert_non_null(t);
    embd_tokens tk = {0};
    encode_ok(t, "hi hi", 5, 0, &tk);
    const int32_t want[] = {1, 3, 3, 2};
    assert_int_equal(tk.n, 4);
    assert_memory_equal(tk.ids, want, sizeof want);
    embd_tokens_free(&tk);
    embd_tokenizer_free(t);
}

static void test_buffer_reuse(void **state)
{
    (void)state;
    const char *texts[] = {"short", "a much longer text, with \xE4\xB8\xAD\xE6\x96\x87 and <mask> in it, repeated a few times",
                           "", "x", "mid \xF0\x9F\x98\x80 length"};
    embd_tokens shared = {0};
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
            embd_tokens fresh = {0};
            encode_ok(g_tj, texts[i], strlen(texts[i]), round == 2 ? 6 : 0, &fresh);
            encode_ok(g_tj, texts[i], strlen(texts[i]), round == 2 ? 6 : 0, &shared);
            assert_int_equal(shared.n, fresh.n);
            assert_int_equal(shared.n_full, fresh.n_full);
            assert_memory_equal(shared.ids, fresh.ids, fresh.n * sizeof *fresh.ids);
            embd_tokens_free(&fresh);
        }
    }
    embd_tokens_free(&shared);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_empty_and_nul),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_small_vocab),
        cmocka_unit_test(test_constructor_errors),
        cmocka_unit_test(test_buffer_reuse),
        cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_large_input),
        cmocka_unit_test(test_parity),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
