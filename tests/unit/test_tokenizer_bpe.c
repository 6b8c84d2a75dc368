/* Byte-level BPE (CLIP) tokenizer tests: id parity with transformers.js on
 * tests/fixtures/tokens_clip.jsonl, whose tokenizer.json tests/clip/make_clip_tokenizer.py
 * generates (run here into $EMBD_TEST_TMP/clip-tokenizer unless a copy with the fixture's sha256 is
 * there); truncation to CLIP's 77 keeping <|startoftext|> and <|endoftext|>; BPE specifics on
 * hand-made vocabularies (merge priority by rank, leftmost first, duplicate merges, the "</w>"
 * suffix, unknown bytes with and without unk_token, both merges formats); invalid UTF-8; constructor
 * errors; a 100 KB word and 100 KB of text in bounded time. EMBD_CLIP_FIXTURE replaces the fixture
 * (tools/tokfix/clip_exhaustive.mjs writes a 65k-text one). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tokenizer/tokenizer.h"

#define CLIP_MAX 77
#define SOT 49406
#define EOT 49407

static char g_src[2048], g_dir[2048];
static embd_tokenizer *g_clip;

typedef struct {
    char *id, *text;
    size_t len, n;
    int32_t *ids;
} fx_line;

static fx_line *g_lines;
static size_t g_n;
static char g_sha[65];

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
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

static void sha256_hex(const char *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static bool load_fixture(void)
{
    char path[4096];
    const char *alt = getenv("EMBD_CLIP_FIXTURE"); /* tools/tokfix/clip_exhaustive.mjs writes one */
    if (alt && *alt)
        snprintf(path, sizeof path, "%s", alt);
    else
        snprintf(path, sizeof path, "%s/tests/fixtures/tokens_clip.jsonl", g_src);
    size_t len;
    char *data = read_file(path, &len);
    if (!data) {
        print_error("%s not found\n", path);
        return false;
    }
    size_t cap = 0;
    for (char *p = data; p < data + len;) {
        char *nl = memchr(p, '\n', (size_t)(data + len - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(data + len - p);
        json_error_t e;
        json_t *j = ll ? json_loadb(p, ll, JSON_ALLOW_NUL, &e) : NULL;
        p += ll + 1;
        if (!j)
            continue;
        const char *id = json_string_value(json_object_get(j, "id"));
        if (id && !strcmp(id, "@config")) {
            snprintf(g_sha, sizeof g_sha, "%s", json_string_value(json_object_get(j, "sha256")) ?: "");
        } else if (id) {
            if (g_n == cap) {
                cap = cap ? cap * 2 : 1024;
                g_lines = realloc(g_lines, cap * sizeof *g_lines);
            }
            fx_line *l = &g_lines[g_n++];
            const json_t *text = json_object_get(j, "text"), *ids = json_object_get(j, "ids");
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
    free(data);
    return g_n > 0 && strlen(g_sha) == 64;
}

/* tokenizer.json of the fixture: the cached one if its sha256 matches, else generated anew. */
static char *clip_json(size_t *len)
{
    char path[4096], sha[65];
    snprintf(path, sizeof path, "%s/tokenizer.json", g_dir);
    char *json = read_file(path, len);
    if (json) {
        sha256_hex(json, *len, sha);
        if (!strcmp(sha, g_sha))
            return json;
        free(json);
    }
    const char *py = getenv("EMBD_PYTHON"), *shared = getenv("EMBD_SHARED_DIR");
    char script[4096];
    snprintf(script, sizeof script, "%s/tests/clip/make_clip_tokenizer.py", g_src);
    pid_t pid = fork();
    if (pid == 0) {
        if (shared && *shared)
            execlp(py && *py ? py : "python3", "python3", script, g_dir, "--shared", shared, (char *)NULL);
        else
            execlp(py && *py ? py : "python3", "python3", script, g_dir, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) {
        print_error("make_clip_tokenizer.py failed\n");
        return NULL;
    }
    json = read_file(path, len);
    if (!json)
        return NULL;
    sha256_hex(json, *len, sha);
    if (strcmp(sha, g_sha)) {
        print_error("tokens_clip.jsonl was made from another tokenizer.json (sha256 %s, generated %s): "
                    "regenerate it (cd tools/tokfix && node gen_token_fixtures.mjs clip)\n", g_sha, sha);
        free(json);
        return NULL;
    }
    return json;
}

static int setup(void **state)
{
    (void)state;
    const char *src = getenv("EMBD_SOURCE_DIR"), *tmp = getenv("EMBD_TEST_TMP");
    snprintf(g_src, sizeof g_src, "%s", src && *src ? src : ".");
    snprintf(g_dir, sizeof g_dir, "%s/clip-tokenizer", tmp && *tmp ? tmp : "/tmp");
    if (tmp && *tmp)
        mkdir(tmp, 0777);
    if (!load_fixture())
        return -1;
    size_t len;
    char *json = clip_json(&len);
    if (!json)
        return -1;
    char err[256] = "";
    g_clip = embd_tokenizer_from_json(json, len, err, sizeof err);
    free(json);
    if (!g_clip)
        print_error("CLIP tokenizer.json: %s\n", err);
    return g_clip ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    embd_tokenizer_free(g_clip);
    for (size_t i = 0; i < g_n; i++) {
        free(g_lines[i].id);
        free(g_lines[i].text);
        free(g_lines[i].ids);
    }
    free(g_lines);
    return 0;
}

static void encode_ok(const embd_tokenizer *t, const char *s, size_t len, size_t max, embd_tokens *tk)
{
    size_t off = 12345;
    assert_int_equal(embd_tokenizer_encode(t, s, len, max, tk, &off), EMBD_TOK_OK);
    assert_int_equal(off, 12345);
}

/* ---------------------------------------------------------------- parity */

static void test_parity(void **state)
{
    (void)state;
    embd_tokens tk = {0};
    size_t bad = 0, overlong = 0;
    for (size_t i = 0; i < g_n; i++) {
        const fx_line *l = &g_lines[i];
        encode_ok(g_clip, l->text, l->len, 0, &tk);
        bool same = tk.n == l->n && tk.n_full == l->n && !tk.truncated &&
                    !memcmp(tk.ids, l->ids, l->n * sizeof *l->ids);
        if (!same) {
            size_t k = 0;
            while (k < tk.n && k < l->n && tk.ids[k] == l->ids[k])
                k++;
            if (bad < 5)
                print_error("%s: %zu ids, want %zu; first difference at %zu: got %d want %d\n", l->id, tk.n, l->n,
                            k, k < tk.n ? tk.ids[k] : -1, k < l->n ? l->ids[k] : -1);
            bad++;
            continue;
        }
        /* CLIP's 77: the first 75 pieces between the start and end tokens (Hugging Face's
         * truncation; transformers.js would cut <|endoftext|> off too) */
        if (l->n > CLIP_MAX) {
            overlong++;
            encode_ok(g_clip, l->text, l->len, CLIP_MAX, &tk);
            assert_int_equal(tk.n, CLIP_MAX);
            assert_int_equal(tk.n_full, l->n);
            assert_true(tk.truncated);
            assert_memory_equal(tk.ids, l->ids, (CLIP_MAX - 1) * sizeof *tk.ids);
            assert_int_equal(tk.ids[CLIP_MAX - 1], EOT);
        }
    }
    printf("clip tokenizer parity: %zu texts (%zu over %d tokens), %zu mismatches\n", g_n, overlong, CLIP_MAX, bad);
    assert_int_equal(bad, 0);
    assert_true(g_n > 1000);
    assert_true(overlong >= 10);
    embd_tokens_free(&tk);
}

static void test_basic(void **state)
{
    (void)state;
    assert_int_equal(embd_tokenizer_vocab_size(g_clip), 49408);
    assert_int_equal(embd_tokenizer_cls_id(g_clip), SOT);
    assert_int_equal(embd_tokenizer_sep_id(g_clip), EOT);
    assert_string_equal(embd_tokenizer_token(g_clip, SOT), "<|startoftext|>");
    assert_string_equal(embd_tokenizer_token(g_clip, 0), "!");
    assert_string_equal(embd_tokenizer_token(g_clip, 256), "!</w>");
    assert_null(embd_tokenizer_token(g_clip, 49408));
    embd_tokens tk = {0};
    /* whitespace only and empty: just the start and end tokens */
    encode_ok(g_clip, " \t\n ", 4, 0, &tk);
    assert_int_equal(tk.n, 2);
    assert_int_equal(tk.ids[0], SOT);
    assert_int_equal(tk.ids[1], EOT);
    encode_ok(g_clip, NULL, 0, 0, &tk);
    assert_int_equal(tk.n, 2);
    /* case and whitespace runs do not matter; the special tokens are matched in the text */
    embd_tokens a = {0};
    encode_ok(g_clip, "A  Photo\tOF a\u3000CAT", strlen("A  Photo\tOF a\u3000CAT"), 0, &a);
    encode_ok(g_clip, "a photo of a cat", 16, 0, &tk);
    assert_int_equal(a.n, tk.n);
    assert_memory_equal(a.ids, tk.ids, tk.n * sizeof *tk.ids);
    encode_ok(g_clip, "x<|endoftext|>y", 15, 0, &tk);
    assert_int_equal(tk.n, 5);
    assert_int_equal(tk.ids[2], EOT);
    /* each byte of an unmerged character is a byte-level symbol: U+E000 is 3 bytes, the last with
     * "</w>" */
    encode_ok(g_clip, "\xEE\x80\x80", 3, 0, &tk);
    assert_true(tk.n >= 3 && tk.n <= 5);
    embd_tokens_free(&a);
    embd_tokens_free(&tk);
}

static void test_truncation(void **state)
{
    (void)state;
    const char *text = "one two three four five six seven eight nine ten";
    embd_tokens full = {0}, tk = {0};
    encode_ok(g_clip, text, strlen(text), 0, &full);
    assert_int_equal(full.n, 12);
    for (size_t max = 1; max <= 14; max++) {
        encode_ok(g_clip, text, strlen(text), max, &tk);
        size_t want = max < full.n ? max : full.n;
        assert_int_equal(tk.n, want);
        assert_int_equal(tk.n_full, full.n);
        assert_int_equal(tk.truncated, want < full.n);
        assert_int_equal(tk.ids[0], SOT);
        if (max >= 2) {
            assert_int_equal(tk.ids[want - 1], EOT);
            assert_memory_equal(tk.ids, full.ids, (want - 1) * sizeof *tk.ids);
        }
    }
    embd_tokens_free(&full);
    embd_tokens_free(&tk);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t len, off;
    } cases[] = {{"ab\xFF", 3, 2}, {"\xC0\x80", 2, 0}, {"ok \xED\xA0\x80", 6, 3}, {"abc\xE2\x82", 5, 3}};
    embd_tokens tk = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t off = 999;
        assert_int_equal(embd_tokenizer_encode(g_clip, cases[i].s, cases[i].len, 0, &tk, &off), EMBD_TOK_EUTF8);
        assert_int_equal(off, cases[i].off);
        assert_int_equal(tk.n, 0);
    }
    assert_int_equal(embd_tokenizer_encode(g_clip, NULL, 3, 0, &tk, NULL), EMBD_TOK_EINVAL);
    embd_tokens_free(&tk);
}

/* ---------------------------------------------------------------- hand-made vocabularies */

/* A CLIP-shaped tokenizer.json over vocab[] (ids in order) and merges[]; unk NULL: no unk_token. */
static embd_tokenizer *tiny(const char *const *vocab, size_t nv, const char *const *merges, size_t nm,
                            const char *unk, bool array_merges, char *err, size_t errlen)
{
    json_t *v = json_object(), *m = json_array();
    for (size_t i = 0; i < nv; i++)
        json_object_set_new(v, vocab[i], json_integer((json_int_t)i));
    json_object_set_new(v, "<|startoftext|>", json_integer((json_int_t)nv));
    json_object_set_new(v, "<|endoftext|>", json_integer((json_int_t)nv + 1));
    for (size_t i = 0; i < nm; i++) {
        if (!array_merges) {
            json_array_append_new(m, json_string(merges[i]));
            continue;
        }
        const char *sp = strchr(merges[i], ' ');
        json_array_append_new(m, json_pack("[s#s]", merges[i], (int)(sp - merges[i]), sp + 1));
    }
    json_t *root = json_pack(
        "{s:[{s:i,s:s,s:b,s:b},{s:i,s:s,s:b,s:b}],"
        "s:{s:s,s:[{s:s},{s:s,s:{s:s},s:s},{s:s}]},"
        "s:{s:s,s:[{s:s,s:{s:s},s:s,s:b},{s:s,s:b,s:b,s:b}]},"
        "s:{s:s,s:[s,i],s:[s,i]},"
        "s:{s:s,s:o,s:s,s:o,s:o}}",
        "added_tokens", "id", (int)nv, "content", "<|startoftext|>", "normalized", 1, "special", 1,
        "id", (int)nv + 1, "content", "<|endoftext|>", "normalized", 1, "special", 1,
        "normalizer", "type", "Sequence", "normalizers", "type", "NFC", "type", "Replace", "pattern", "Regex", "\\s+",
        "content", " ", "type", "Lowercase",
        "pre_tokenizer", "type", "Sequence", "pretokenizers", "type", "Split", "pattern", "Regex",
        "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+",
        "behavior", "Removed", "invert", 1, "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1,
        "use_regex", 0,
        "post_processor", "type", "RobertaProcessing", "sep", "<|endoftext|>", (int)nv + 1, "cls", "<|startoftext|>",
        (int)nv,
        "model", "type", "BPE", "unk_token", unk ? json_string(unk) : json_null(), "end_of_word_suffix", "</w>",
        "vocab", v, "merges", m);
    assert_non_null(root);
    char *text = json_dumps(root, 0);
    embd_tokenizer *t = embd_tokenizer_from_json(text, strlen(text), err, errlen);
    free(text);
    json_decref(root);
    return t;
}

/* Encodes s and compares the pieces (without start/end) with want[0..n). */
static void expect(const embd_tokenizer *t, const char *s, const int32_t *want, size_t n)
{
    embd_tokens tk = {0};
    encode_ok(t, s, strlen(s), 0, &tk);
    if (tk.n != n + 2 || memcmp(tk.ids + 1, want, n * sizeof *want)) {
        print_error("'%s': got", s);
        for (size_t i = 0; i < tk.n; i++)
            print_error(" %d", tk.ids[i]);
        print_error("\n");
    }
    assert_int_equal(tk.n, n + 2);
    assert_memory_equal(tk.ids + 1, want, n * sizeof *want);
    embd_tokens_free(&tk);
}

enum { A, B, C, AW, BW, CW, AB, BC, BCW, ABW, AAW, AA, ABC, NV };
static const char *const V[NV] = {"a", "b", "c", "a</w>", "b</w>", "c</w>", "ab", "bc", "bc</w>", "ab</w>",
                                  "aa</w>", "aa", "abc</w>"};

static void test_merge_priority(void **state)
{
    (void)state;
    char err[256] = "";
    /* "b c</w>" ranks before "a b": abc -> a + bc</w> */
    const char *m1[] = {"b c</w>", "a b", "a bc</w>"};
    embd_tokenizer *t = tiny(V, NV, m1, 2, "<|endoftext|>", false, err, sizeof err);
    assert_non_null(t);
    expect(t, "abc", (const int32_t[]){A, BCW}, 2);
    embd_tokenizer_free(t);
    /* reversed ranks: ab + c</w> */
    const char *m2[] = {"a b", "b c</w>"};
    t = tiny(V, NV, m2, 2, "<|endoftext|>", false, err, sizeof err);
    assert_non_null(t);
    expect(t, "abc", (const int32_t[]){AB, CW}, 2);
    embd_tokenizer_free(t);
    /* a later duplicate sets the rank (transformers.js builds its map in order): "a b" now ranks
     * after "b c</w>" */
    const char *m3[] = {"a b", "b c</w>", "a b"};
    t = tiny(V, NV, m3, 3, "<|endoftext|>", false, err, sizeof err);
    assert_non_null(t);
    expect(t, "abc", (const int32_t[]){A, BCW}, 2);
    embd_tokenizer_free(t);
    /* merges chain to a whole word; the same merges as [a, b] arrays give the same ids */
    for (int arr = 0; arr < 2; arr++) {
        t = tiny(V, NV, m1, 3, "<|endoftext|>", arr, err, sizeof err);
        assert_non_null(t);
        expect(t, "abc ABC", (const int32_t[]){ABC, ABC}, 2);
        embd_tokenizer_free(t);
    }
    /* equal ranks: the leftmost pair first; "aa a</w>" has no rule */
    const char *m4[] = {"a a", "a a</w>"};
    t = tiny(V, NV, m4, 2, "<|endoftext|>", false, err, sizeof err);
    assert_non_null(t);
    expect(t, "aaa", (const int32_t[]){AA, AW}, 2);
    expect(t, "aaaa", (const int32_t[]){AA, AAW}, 2); /* a a a a</w> -> aa a a</w> -> aa aa</w> */
    expect(t, "aa", (const int32_t[]){AAW}, 1);      /* only "a a</w>" applies */
    embd_tokenizer_free(t);
}

static void test_end_of_word_and_unknown(void **state)
{
    (void)state;
    char err[256] = "";
    const char *m[] = {"a b", "a b</w>"};
    embd_tokenizer *t = tiny(V, NV, m, 2, "<|endoftext|>", false, err, sizeof err);
    assert_non_null(t);
    /* the suffix marks a word's last symbol: ab inside, ab</w> at the end */
    expect(t, "ab", (const int32_t[]){ABW}, 1);
    expect(t, "abab", (const int32_t[]){AB, ABW}, 2);
    expect(t, "b a", (const int32_t[]){BW, AW}, 2);
    /* the "</w>" of the text is characters, not the suffix: words a, </, w, > (unknown here) */
    expect(t, "a</w>", (const int32_t[]){AW, NV + 1, NV + 1, NV + 1, NV + 1}, 5);
    /* bytes without a symbol in the vocabulary: unk_token each ("d", and the 2 bytes of é) */
    expect(t, "dab", (const int32_t[]){NV + 1, ABW}, 2);
    expect(t, "\xC3\xA9", (const int32_t[]){NV + 1, NV + 1}, 2);
    embd_tokenizer_free(t);
    /* no unk_token: unknown pieces vanish */
    t = tiny(V, NV, m, 2, NULL, false, err, sizeof err);
    assert_non_null(t);
    expect(t, "dab x \xC3\xA9", (const int32_t[]){ABW}, 1);
    embd_tokenizer_free(t);
}

static void test_constructor_errors(void **state)
{
    (void)state;
    char err[256] = "";
    const char *m[] = {"a b"};
    /* unk_token absent from the vocabulary */
    assert_null(tiny(V, NV, m, 1, "<unk>", false, err, sizeof err));
    assert_non_null(strstr(err, "unk_token"));
    size_t len;
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", g_dir);
    char *base = read_file(path, &len);
    assert_non_null(base);
    static const struct {
        const char *path, *value, *want; /* JSON pointer-ish: member of model / root */
    } bad[] = {
        {"model.dropout", "0.1", "dropout"},
        {"model.continuing_subword_prefix", "\"##\"", "continuing_subword_prefix"},
        {"model.byte_fallback", "true", "byte_fallback"},
        {"model.ignore_merges", "true", "ignore_merges"},
        {"model.merges", "{}", "merges"},
        {"model.vocab", "[]", "vocabulary"},
        {"model.vocab", "{}", "vocabulary"},
        {"model.end_of_word_suffix", "7", "end_of_word_suffix"},
        {"model.unk_token", "\"<nope>\"", "unk_token"},
        {"pre_tokenizer", "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true}", "pre_tokenizer"},
        {"pre_tokenizer", "null", "pre_tokenizer"},
        {"post_processor", "null", "post_processor"},
        {"post_processor", "{\"type\":\"RobertaProcessing\",\"cls\":[\"<nope>\",1],\"sep\":[\"<|endoftext|>\",2]}",
         "<nope>"},
        {"normalizer", "{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"[a-z]\"},\"content\":\"\"}", "Replace"},
        {"model.type", "\"Word\"", "not WordPiece"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *root = json_loadb(base, len, 0, NULL);
        assert_non_null(root);
        json_t *val = json_loads(bad[i].value, JSON_DECODE_ANY, NULL);
        assert_non_null(val);
        const char *key = bad[i].path;
        json_t *obj = root;
        if (!strncmp(key, "model.", 6)) {
            obj = json_object_get(root, "model");
            key += 6;
        }
        json_object_set_new(obj, key, val);
        char *text = json_dumps(root, 0);
        err[0] = 0;
        embd_tokenizer *t = embd_tokenizer_from_json(text, strlen(text), err, sizeof err);
        if (t || !strstr(err, bad[i].want))
            print_error("case %zu (%s): error '%s', want '%s'\n", i, bad[i].path, err, bad[i].want);
        assert_null(t);
        assert_non_null(strstr(err, bad[i].want));
        free(text);
        json_decref(root);
    }
    free(base);
}

/* ---------------------------------------------------------------- large inputs */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Time bounds: generous for a loaded machine, and 10x under the sanitizers (a quadratic merge loop
 * would still take minutes on these inputs). */
#if defined(__SANITIZE_ADDRESS__)
#define SLOW 10.0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLOW 10.0
#endif
#endif
#ifndef SLOW
#define SLOW 1.0
#endif

static double time_encode(const char *s, size_t len, embd_tokens *tk)
{
    double t0 = now();
    encode_ok(g_clip, s, len, 0, tk);
    return now() - t0;
}

static void test_large_input(void **state)
{
    (void)state;
    size_t big = 100 * 1024;
    char *text = malloc(big);
    embd_tokens tk = {0};
    /* one word of 100 KB (letters: one regex match, one BPE word) against one of 10 KB: the merge
     * loop is O(n log n), so 10x the length must not cost anywhere near 100x */
    const char *alpha = "thequickbrownfoxjumpsoverthelazydog";
    for (size_t i = 0; i < big; i++)
        text[i] = alpha[(i * 7 + i / 13) % strlen(alpha)];
    double t10 = time_encode(text, big / 10, &tk);
    size_t n10 = tk.n;
    double t100 = time_encode(text, big, &tk);
    printf("clip bpe: one 10 KB word %.4f s (%zu tokens), one 100 KB word %.4f s (%zu tokens)\n", t10, n10, t100,
           tk.n);
    assert_true(tk.n > n10 * 5 && tk.n < big);
    assert_true(t100 < 2.0 * SLOW);
    assert_true(t100 < 60 * t10 + 0.1 * SLOW);
    /* 100 KB of mixed text */
    const char *part = "A photo of a cat, sitting on 3 mats! it's \xE4\xB8\xAD\xE6\x96\x87 na\xC3\xAFve \xF0\x9F\x98\x80\n";
    size_t pl = strlen(part);
    for (size_t i = 0; i < big; i++)
        text[i] = part[i % pl];
    size_t cut = big - big % pl;
    double tm = time_encode(text, cut, &tk);
    printf("clip bpe: 100 KB of mixed text %.4f s (%zu tokens, %.1f MB/s)\n", tm, tk.n, (double)cut / tm / 1e6);
    assert_true(tk.n > cut / 10);
    assert_true(tm < 2.0 * SLOW);
    /* one 100 KB run of a single letter: every pair has the same rank */
    memset(text, 'a', big);
    double ta = time_encode(text, big, &tk);
    printf("clip bpe: 100 KB of 'a' %.4f s (%zu tokens)\n", ta, tk.n);
    assert_true(tk.n > 2 && tk.n < big / 2);
    assert_true(ta < 2.0 * SLOW);
    free(text);
    embd_tokens_free(&tk);
}

static void test_buffer_reuse(void **state)
{
    (void)state;
    embd_tokens shared = {0};
    for (size_t i = 0; i < g_n && i < 200; i++) {
        const fx_line *l = &g_lines[i];
        encode_ok(g_clip, l->text, l->len, i % 3 ? 0 : CLIP_MAX, &shared);
        embd_tokens fresh = {0};
        encode_ok(g_clip, l->text, l->len, i % 3 ? 0 : CLIP_MAX, &fresh);
        assert_int_equal(shared.n, fresh.n);
        assert_memory_equal(shared.ids, fresh.ids, fresh.n * sizeof *fresh.ids);
        embd_tokens_free(&fresh);
    }
    embd_tokens_free(&shared);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_merge_priority),
        cmocka_unit_test(test_end_of_word_and_unknown),
        cmocka_unit_test(test_constructor_errors),
        cmocka_unit_test(test_buffer_reuse),
        cmocka_unit_test(test_large_input),
        cmocka_unit_test(test_parity),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
