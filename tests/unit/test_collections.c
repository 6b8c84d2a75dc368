/* Collections below the HTTP layer: the FAISS adapter against brute force, the chunker's sizes,
 * overlap and code-aware cuts, and the store's create/ingest/replace/delete/search, including
 * reopening with a stale, missing or corrupt index file (rebuilt from SQLite, consistent). */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "collections/chunker.h"
#include "collections/filter.h"
#include "collections/store.h"
#include "index/faiss_index.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static void unit_rows(float *x, size_t n, int d) {
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < d; j++) {
            x[i * d + j] = frand();
            s += (double)x[i * d + j] * x[i * d + j];
        }
        for (int j = 0; j < d; j++) x[i * d + j] /= (float)sqrt(s);
    }
}

static float dot(const float *a, const float *b, int d) {
    float s = 0;
    for (int j = 0; j < d; j++) s += a[j] * b[j];
    return s;
}

/* Whitespace-separated words: a stand-in token counter with the additivity the chunker assumes. */
static long count_words(void *ud, const char *s, size_t len) {
    (void)ud;
    long n = 0;
    bool in = false;
    for (size_t i = 0; i < len; i++) {
        bool sp = s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r';
        if (!sp && !in) n++;
        in = !sp;
    }
    return n;
}

static char tmpdir[2048];

static void fresh_dir(const char *name) {
    const char *base = getenv("EMBD_TEST_TMP");
    snprintf(tmpdir, sizeof tmpdir, "%s/%s-%d", base && *base ? base : "/tmp", name, (int)getpid());
    char cmd[4500];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", tmpdir, tmpdir);
    assert_int_equal(system(cmd), 0);
}

/* ---- FAISS adapter ------------------------------------------------------------------------- */

static void test_flat_matches_brute_force(void **st) {
    (void)st;
    enum { N = 600, D = 24, K = 10 };
    float *x = malloc(sizeof(float) * N * D), q[D];
    int64_t ids[N];
    unit_rows(x, N, D);
    for (int i = 0; i < N; i++) ids[i] = 1000 + 3 * i;
    char err[256];
    embd_vindex *v = embd_vindex_new(D, EMBD_VINDEX_FLAT, 0, err, sizeof err);
    assert_non_null(v);
    assert_int_equal(embd_vindex_add(v, N, x, ids, err, sizeof err), 0);
    assert_int_equal(embd_vindex_count(v), N);
    for (int t = 0; t < 20; t++) {
        unit_rows(q, 1, D);
        float sc[K];
        int64_t got[K];
        assert_int_equal(embd_vindex_search(v, q, K, sc, got, err, sizeof err), 0);
        /* brute force: rank of each returned row must be exactly its position */
        for (int r = 0; r < K; r++) {
            int row = (int)((got[r] - 1000) / 3);
            assert_true(row >= 0 && row < N);
            float s = dot(q, x + row * D, D);
            assert_true(fabsf(s - sc[r]) < 1e-5f);
            int better = 0;
            for (int i = 0; i < N; i++) better += dot(q, x + i * D, D) > s + 1e-6f;
            assert_int_equal(better, r);
        }
    }
    /* remove: the removed ids never come back; count drops */
    int64_t gone[3] = {1000, 1003, 999999};
    size_t removed = 0;
    assert_int_equal(embd_vindex_remove(v, 3, gone, &removed, err, sizeof err), 0);
    assert_int_equal(removed, 2);
    assert_int_equal(embd_vindex_count(v), N - 2);
    float sc[1];
    int64_t got[1];
    assert_int_equal(embd_vindex_search(v, x, 1, sc, got, err, sizeof err), 0); /* row 0 itself was removed */
    assert_true(got[0] != 1000);
    /* k beyond the count: the tail is -1 */
    embd_vindex *small = embd_vindex_new(D, EMBD_VINDEX_FLAT, 0, err, sizeof err);
    assert_int_equal(embd_vindex_add(small, 2, x, ids, err, sizeof err), 0);
    float sc5[5];
    int64_t got5[5];
    assert_int_equal(embd_vindex_search(small, q, 5, sc5, got5, err, sizeof err), 0);
    assert_true(got5[0] >= 0 && got5[1] >= 0 && got5[2] == -1 && got5[4] == -1);
    /* write + read round trip keeps ids, count and results */
    fresh_dir("vindex");
    char path[4200];
    snprintf(path, sizeof path, "%s/x.faiss", tmpdir);
    assert_int_equal(embd_vindex_write(v, path, err, sizeof err), 0);
    char tmp[4400];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    assert_int_equal(access(tmp, F_OK), -1);
    embd_vindex *r = embd_vindex_read(path, err, sizeof err);
    assert_non_null(r);
    assert_int_equal(embd_vindex_count(r), N - 2);
    int64_t m1, m2;
    uint64_t s1, s2;
    embd_vindex_id_stats(v, &m1, &s1);
    embd_vindex_id_stats(r, &m2, &s2);
    assert_int_equal(m1, m2);
    assert_true(s1 == s2);
    /* a file that is not an index is an error, not a crash */
    FILE *f = fopen(path, "wb");
    fputs("not a faiss index", f);
    fclose(f);
    assert_null(embd_vindex_read(path, err, sizeof err));
    assert_true(strlen(err) > 0);
    /* a dimension mismatch on add is caught */
    assert_null(embd_vindex_new(0, EMBD_VINDEX_FLAT, 0, err, sizeof err));
    embd_vindex_free(r);
    embd_vindex_free(small);
    embd_vindex_free(v);
    free(x);
}

static void test_hnsw_recall(void **st) {
    (void)st;
    enum { N = 2000, D = 32, K = 10, Q = 20 };
    float *x = malloc(sizeof(float) * N * D), q[D];
    int64_t *ids = malloc(sizeof(int64_t) * N);
    unit_rows(x, N, D);
    for (int i = 0; i < N; i++) ids[i] = i + 1;
    char err[256];
    embd_vindex *h = embd_vindex_new(D, EMBD_VINDEX_HNSW, 16, err, sizeof err);
    embd_vindex *f = embd_vindex_new(D, EMBD_VINDEX_FLAT, 0, err, sizeof err);
    assert_non_null(h);
    assert_int_equal(embd_vindex_kind_of(h), EMBD_VINDEX_HNSW);
    assert_int_equal(embd_vindex_add(h, N, x, ids, err, sizeof err), 0);
    assert_int_equal(embd_vindex_add(f, N, x, ids, err, sizeof err), 0);
    int hit = 0;
    for (int t = 0; t < Q; t++) {
        unit_rows(q, 1, D);
        float s1[K], s2[K];
        int64_t a[K], b[K];
        assert_int_equal(embd_vindex_search(h, q, K, s1, a, err, sizeof err), 0);
        assert_int_equal(embd_vindex_search(f, q, K, s2, b, err, sizeof err), 0);
        for (int i = 0; i < K; i++)
            for (int j = 0; j < K; j++) hit += a[i] == b[j];
    }
    double recall = (double)hit / (Q * K);
    printf("hnsw recall@10 on %d random vectors: %.3f\n", N, recall);
    assert_true(recall >= 0.9);
    size_t removed = 99;
    assert_int_equal(embd_vindex_remove(h, 1, ids, &removed, err, sizeof err), 1); /* caller rebuilds */
    assert_int_equal(removed, 0);
    /* the kind survives a round trip */
    fresh_dir("hnsw");
    char path[4200];
    snprintf(path, sizeof path, "%s/h.faiss", tmpdir);
    assert_int_equal(embd_vindex_write(h, path, err, sizeof err), 0);
    embd_vindex *r = embd_vindex_read(path, err, sizeof err);
    assert_non_null(r);
    assert_int_equal(embd_vindex_kind_of(r), EMBD_VINDEX_HNSW);
    embd_vindex_free(r);
    embd_vindex_free(h);
    embd_vindex_free(f);
    free(x), free(ids);
}

/* ---- chunker ------------------------------------------------------------------------------- */

static void check_cover(const char *text, const embd_chunk *c, size_t n, size_t size) {
    size_t len = strlen(text), covered_to = 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(c[i].start < c[i].end && c[i].end <= len);
        long t = count_words(NULL, text + c[i].start, c[i].end - c[i].start);
        assert_true(t > 0 && (size_t)t <= size);
        assert_int_equal((size_t)t, c[i].n_tokens);
        if (i) assert_true(c[i].start > c[i - 1].start && c[i].end > c[i - 1].end);
        /* no gap with visible text between consecutive chunks */
        if (c[i].start > covered_to) assert_int_equal(count_words(NULL, text + covered_to, c[i].start - covered_to), 0);
        covered_to = c[i].end > covered_to ? c[i].end : covered_to;
    }
    assert_int_equal(count_words(NULL, text + covered_to, len - covered_to), 0);
}

static void test_chunk_sizes_and_overlap(void **st) {
    (void)st;
    /* 40 lines of 7 words, paragraphs of 5 lines */
    char text[8192] = "";
    for (int i = 0; i < 40; i++) {
        char line[128];
        snprintf(line, sizeof line, "line%d alpha beta gamma delta eps zeta\n%s", i, i % 5 == 4 ? "\n" : "");
        strcat(text, line);
    }
    char err[256];
    embd_chunk *c = NULL;
    size_t n = 0;
    embd_chunk_opts o = {.chunk_size = 50, .overlap = 0};
    assert_int_equal(embd_chunk_text(text, strlen(text), &o, count_words, NULL, &c, &n, err, sizeof err), 0);
    check_cover(text, c, n, 50);
    assert_true(n >= 6 && n <= 12);
    for (size_t i = 0; i + 1 < n; i++) assert_true(c[i + 1].start >= c[i].end); /* no overlap asked */
    /* each cut lands on a paragraph boundary: a chunk of 35 words (5 lines) fits, 50 does not hold 2 */
    for (size_t i = 1; i < n; i++) assert_true(c[i].start >= 2 && text[c[i].start - 1] == '\n' && text[c[i].start - 2] == '\n');
    free(c);

    o.overlap = 14; /* two lines */
    assert_int_equal(embd_chunk_text(text, strlen(text), &o, count_words, NULL, &c, &n, err, sizeof err), 0);
    check_cover(text, c, n, 50);
    for (size_t i = 0; i + 1 < n; i++) {
        assert_true(c[i + 1].start < c[i].end); /* overlaps ... */
        long ov = count_words(NULL, text + c[i + 1].start, c[i].end - c[i + 1].start);
        assert_true(ov > 0 && ov <= 14); /* ... by at most the overlap */
        assert_true(text[c[i + 1].start - 1] == '\n'); /* starting at a line */
    }
    free(c);

    /* one line longer than a chunk: cut between words; one huge word: cut inside it */
    char longline[4096] = "", word[700];
    for (int i = 0; i < 120; i++) strcat(longline, "w ");
    memset(word, 'x', sizeof word - 1);
    word[sizeof word - 1] = 0;
    strcat(longline, word);
    o = (embd_chunk_opts){.chunk_size = 30, .overlap = 5};
    assert_int_equal(embd_chunk_text(longline, strlen(longline), &o, count_words, NULL, &c, &n, err, sizeof err), 0);
    check_cover(longline, c, n, 30);
    assert_true(n >= 5);
    free(c);

    /* blank text: no chunks; bad options: errors */
    assert_int_equal(embd_chunk_text(" \n\n\t ", 5, &o, count_words, NULL, &c, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    free(c);
    o.overlap = 30;
    assert_int_equal(embd_chunk_text("a b", 3, &o, count_words, NULL, &c, &n, err, sizeof err), -1);
    assert_non_null(strstr(err, "overlap"));
    o = (embd_chunk_opts){0};
    assert_int_equal(embd_chunk_text("a b", 3, &o, count_words, NULL, &c, &n, err, sizeof err), -1);
}

static void test_chunk_code_aware(void **st) {
    (void)st;
    /* 12 functions of 6 lines (about 20 words each, no blank lines between some of them) */
    char text[16384] = "import os\n\n";
    for (int i = 0; i < 12; i++) {
        char fn[512];
        snprintf(fn, sizeof fn,
                 "def f%d(a, b):\n    x = a + b\n    if x > %d:\n        return x\n    y = x * 2\n    return y\n%s", i, i,
                 i % 3 ? "" : "\n");
        strcat(text, fn);
    }
    char err[256];
    embd_chunk *c = NULL;
    size_t n = 0;
    embd_chunk_opts o = {.chunk_size = 64, .overlap = 0, .code_aware = true};
    assert_int_equal(embd_chunk_text(text, strlen(text), &o, count_words, NULL, &c, &n, err, sizeof err), 0);
    check_cover(text, c, n, 64);
    assert_true(n >= 3);
    for (size_t i = 1; i < n; i++) assert_true(!strncmp(text + c[i].start, "def ", 4)); /* never inside a function */
    free(c);
    /* without code-awareness, line cuts inside functions happen for the same input */
    o.code_aware = false;
    assert_int_equal(embd_chunk_text(text, strlen(text), &o, count_words, NULL, &c, &n, err, sizeof err), 0);
    check_cover(text, c, n, 64);
    int inside = 0;
    for (size_t i = 1; i < n; i++) inside += strncmp(text + c[i].start, "def ", 4) != 0;
    assert_true(inside > 0);
    free(c);
}

/* ---- store --------------------------------------------------------------------------------- */

enum { DIMS = 16 };

/* A document of nch chunks whose vectors are deterministic in (seed, chunk). */
typedef struct {
    char text[512];
    embd_chunk ch[8];
    float vec[8 * DIMS];
    embd_doc d;
} doc_buf;

static void make_doc(doc_buf *b, const char *id, const char *meta, size_t nch, int seed) {
    b->text[0] = 0;
    for (size_t k = 0; k < nch; k++) {
        size_t start = strlen(b->text);
        char part[64];
        snprintf(part, sizeof part, "%s part %zu seed %d\n", id, k, seed);
        strcat(b->text, part);
        b->ch[k] = (embd_chunk){start, strlen(b->text), 5};
        rng = 1234567ull * (uint64_t)(seed + 1) + k * 7919ull;
        unit_rows(b->vec + k * DIMS, 1, DIMS);
    }
    b->d = (embd_doc){.id = id, .metadata = meta, .text = b->text, .text_len = strlen(b->text), .hash = "h",
                      .chunks = b->ch, .n_chunks = nch, .vectors = b->vec};
}

static size_t search(embd_store *s, const char *coll, const float *q, size_t k, const char *filter, embd_hit **h) {
    json_t *f = filter ? json_loads(filter, 0, NULL) : NULL;
    size_t n = 0;
    char err[256];
    int rc = embd_store_search(s, coll, "m", DIMS, q, k, f, h, &n, err, sizeof err);
    if (rc) fprintf(stderr, "search: %s\n", err);
    assert_int_equal(rc, 0);
    json_decref(f);
    return n;
}

static void test_store_lifecycle(void **st) {
    (void)st;
    fresh_dir("store");
    char err[256];
    embd_store *s = embd_store_open(tmpdir, err, sizeof err);
    assert_non_null(s);
    embd_coll_opts o = {.chunk_size = 100, .overlap = 10, .index = EMBD_VINDEX_FLAT};
    assert_int_equal(embd_store_create(s, "docs", "m", DIMS, &o, err, sizeof err), 0);
    assert_int_equal(embd_store_create(s, "docs", "m", DIMS, &o, err, sizeof err), EMBD_STORE_EXISTS);
    assert_int_equal(embd_store_create(s, "../x", "m", DIMS, &o, err, sizeof err), EMBD_STORE_INVALID);
    assert_int_equal(embd_store_create(s, "", "m", DIMS, &o, err, sizeof err), EMBD_STORE_INVALID);
    embd_coll_opts bad = {.chunk_size = 10, .overlap = 10};
    assert_int_equal(embd_store_create(s, "bad", "m", DIMS, &bad, err, sizeof err), EMBD_STORE_INVALID);

    static doc_buf a, b, c;
    make_doc(&a, "a", "{\"lang\":\"en\",\"n\":1}", 3, 1);
    make_doc(&b, "b", "{\"lang\":\"de\",\"n\":2,\"flag\":true}", 2, 2);
    make_doc(&c, "c", "{\"lang\":\"fr\",\"n\":1.0}", 1, 3);
    embd_doc docs[3] = {a.d, b.d, c.d};
    assert_int_equal(embd_store_put(s, "docs", "m", DIMS, docs, 3, err, sizeof err), 0);
    assert_int_equal(embd_store_put(s, "nope", "m", DIMS, docs, 1, err, sizeof err), EMBD_STORE_NOTFOUND);
    assert_int_equal(embd_store_put(s, "docs", "other", DIMS, docs, 1, err, sizeof err), EMBD_STORE_MISMATCH);
    embd_doc twice[2] = {a.d, a.d};
    assert_int_equal(embd_store_put(s, "docs", "m", DIMS, twice, 2, err, sizeof err), EMBD_STORE_INVALID);

    embd_coll_info info;
    bool rebuilt = true;
    assert_int_equal(embd_store_info(s, "docs", &info, &rebuilt, err, sizeof err), 0);
    assert_int_equal(info.n_documents, 3);
    assert_int_equal(info.n_chunks, 6);
    assert_int_equal(info.n_vectors, 6);

    /* each stored vector finds its own chunk first, with cosine 1 */
    embd_hit *h = NULL;
    size_t n = search(s, "docs", b.vec + DIMS, 3, NULL, &h);
    assert_int_equal(n, 3);
    assert_string_equal(h[0].doc_id, "b");
    assert_int_equal(h[0].seq, 1);
    assert_true(fabsf(h[0].score - 1.0f) < 1e-5f);
    assert_true(h[0].score >= h[1].score && h[1].score >= h[2].score);
    assert_memory_equal(h[0].text, b.text + b.ch[1].start, b.ch[1].end - b.ch[1].start);
    assert_non_null(strstr(h[0].metadata, "\"de\""));
    embd_hits_free(h, n);

    /* filters: equality, "in", numbers by value (1 == 1.0), booleans by type */
    n = search(s, "docs", b.vec, 10, "{\"lang\":\"en\"}", &h);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++) assert_string_equal(h[i].doc_id, "a");
    embd_hits_free(h, n);
    n = search(s, "docs", b.vec, 10, "{\"lang\":{\"in\":[\"fr\",\"de\"]}}", &h);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++) assert_true(!strcmp(h[i].doc_id, "b") || !strcmp(h[i].doc_id, "c"));
    embd_hits_free(h, n);
    n = search(s, "docs", b.vec, 10, "{\"n\":1}", &h);
    assert_int_equal(n, 4); /* a (3 chunks) and c (n: 1.0) */
    embd_hits_free(h, n);
    n = search(s, "docs", b.vec, 10, "{\"flag\":true}", &h);
    assert_int_equal(n, 2);
    embd_hits_free(h, n);
    n = search(s, "docs", b.vec, 10, "{\"n\":true}", &h);
    assert_int_equal(n, 0);
    embd_hits_free(h, n);
    n = search(s, "docs", b.vec, 10, "{\"missing\":\"x\"}", &h);
    assert_int_equal(n, 0);
    embd_hits_free(h, n);
    /* malformed filters are refused before anything runs */
    const char *badf[] = {"[1]", "{\"k\":[1]}", "{\"k\":{\"in\":[]}}", "{\"k\":{\"eq\":1}}", "{\"a\\\"b\":1}",
                          "{\"k\":{\"in\":[{}]}}"};
    for (size_t i = 0; i < sizeof badf / sizeof *badf; i++) {
        json_t *f = json_loads(badf[i], 0, NULL);
        assert_non_null(f);
        assert_int_equal(embd_store_search(s, "docs", "m", DIMS, b.vec, 3, f, &h, &n, err, sizeof err),
                         EMBD_STORE_INVALID);
        json_decref(f);
    }

    /* re-ingest of "a" with one chunk replaces its three */
    static doc_buf a2;
    make_doc(&a2, "a", "{\"lang\":\"en\",\"v\":2}", 1, 9);
    assert_int_equal(embd_store_put(s, "docs", "m", DIMS, &a2.d, 1, err, sizeof err), 0);
    assert_int_equal(embd_store_info(s, "docs", &info, NULL, err, sizeof err), 0);
    assert_int_equal(info.n_documents, 3);
    assert_int_equal(info.n_chunks, 4);
    assert_int_equal(info.n_vectors, 4);
    n = search(s, "docs", a.vec, 10, "{\"lang\":\"en\"}", &h);
    assert_int_equal(n, 1);
    assert_non_null(strstr(h[0].text, "seed 9"));
    embd_hits_free(h, n);

    /* delete */
    assert_int_equal(embd_store_delete_doc(s, "docs", "b", err, sizeof err), 0);
    assert_int_equal(embd_store_delete_doc(s, "docs", "b", err, sizeof err), EMBD_STORE_NOTFOUND);
    assert_int_equal(embd_store_delete_doc(s, "nope", "b", err, sizeof err), EMBD_STORE_NOTFOUND);
    n = search(s, "docs", b.vec, 10, NULL, &h);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) assert_string_not_equal(h[i].doc_id, "b");
    embd_hits_free(h, n);
    embd_store_close(s);

    /* reopen: the saved index matches, no rebuild */
    s = embd_store_open(tmpdir, err, sizeof err);
    embd_store *other = embd_store_open(tmpdir, err, sizeof err); /* a second process, in effect */
    assert_int_equal(embd_store_info(s, "docs", &info, &rebuilt, err, sizeof err), 0);
    assert_false(rebuilt);
    assert_int_equal(info.n_vectors, 2);
    embd_coll_info *all = NULL;
    size_t nall = 0;
    assert_int_equal(embd_store_list(s, &all, &nall, err, sizeof err), 0);
    assert_int_equal(nall, 1);
    assert_string_equal(all[0].name, "docs");
    free(all);
    /* a commit through the other connection is seen here although this index was loaded before */
    static doc_buf o2;
    make_doc(&o2, "from-other", NULL, 1, 77);
    assert_int_equal(embd_store_put(other, "docs", "m", DIMS, &o2.d, 1, err, sizeof err), 0);
    n = search(s, "docs", o2.vec, 1, NULL, &h);
    assert_string_equal(h[0].doc_id, "from-other");
    embd_hits_free(h, n);
    assert_int_equal(embd_store_delete_doc(s, "docs", "from-other", err, sizeof err), 0);
    n = search(other, "docs", o2.vec, 5, NULL, &h);
    for (size_t i = 0; i < n; i++) assert_string_not_equal(h[i].doc_id, "from-other");
    embd_hits_free(h, n);
    embd_store_close(other);

    /* a commit whose index save never happened (a crash in between): stale file -> rebuilt */
    setenv("EMBD_TEST_SKIP_INDEX_SAVE", "1", 1);
    assert_int_equal(embd_store_put(s, "docs", "m", DIMS, &b.d, 1, err, sizeof err), 0);
    unsetenv("EMBD_TEST_SKIP_INDEX_SAVE");
    embd_store_close(s);
    s = embd_store_open(tmpdir, err, sizeof err);
    assert_int_equal(embd_store_info(s, "docs", &info, &rebuilt, err, sizeof err), 0);
    assert_true(rebuilt);
    assert_int_equal(info.n_chunks, 4);
    assert_int_equal(info.n_vectors, 4);
    n = search(s, "docs", b.vec + DIMS, 1, NULL, &h);
    assert_string_equal(h[0].doc_id, "b");
    embd_hits_free(h, n);
    embd_store_close(s);

    /* missing and corrupt index files: rebuilt as well */
    char path[4200];
    snprintf(path, sizeof path, "%s/c%lld.faiss", tmpdir, (long long)info.id);
    for (int mode = 0; mode < 2; mode++) {
        if (mode == 0) {
            assert_int_equal(unlink(path), 0);
        } else {
            FILE *f = fopen(path, "wb");
            fputs("garbage", f);
            fclose(f);
        }
        s = embd_store_open(tmpdir, err, sizeof err);
        assert_int_equal(embd_store_info(s, "docs", &info, &rebuilt, err, sizeof err), 0);
        assert_true(rebuilt);
        assert_int_equal(info.n_vectors, 4);
        embd_store_close(s);
    }

    /* drop removes rows and the index file */
    s = embd_store_open(tmpdir, err, sizeof err);
    assert_int_equal(embd_store_drop(s, "docs", err, sizeof err), 0);
    assert_int_equal(embd_store_drop(s, "docs", err, sizeof err), EMBD_STORE_NOTFOUND);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(embd_store_info(s, "docs", &info, NULL, err, sizeof err), EMBD_STORE_NOTFOUND);
    embd_store_close(s);
}

static void test_store_hnsw(void **st) {
    (void)st;
    fresh_dir("store-hnsw");
    char err[256];
    embd_store *s = embd_store_open(tmpdir, err, sizeof err);
    embd_coll_opts o = {.chunk_size = 100, .overlap = 0, .index = EMBD_VINDEX_HNSW};
    assert_int_equal(embd_store_create(s, "h", "m", DIMS, &o, err, sizeof err), 0);
    static doc_buf d[6];
    char ids[6][8];
    for (int i = 0; i < 6; i++) {
        snprintf(ids[i], sizeof ids[i], "d%d", i);
        make_doc(&d[i], ids[i], NULL, 2, 20 + i);
        assert_int_equal(embd_store_put(s, "h", "m", DIMS, &d[i].d, 1, err, sizeof err), 0);
    }
    /* HNSW cannot remove: a delete rebuilds, and the deleted document is gone */
    assert_int_equal(embd_store_delete_doc(s, "h", "d3", err, sizeof err), 0);
    embd_coll_info info;
    assert_int_equal(embd_store_info(s, "h", &info, NULL, err, sizeof err), 0);
    assert_int_equal(info.n_vectors, 10);
    assert_int_equal(info.opts.index, EMBD_VINDEX_HNSW);
    embd_hit *h;
    size_t n = search(s, "h", d[3].vec, 10, NULL, &h);
    assert_int_equal(n, 10);
    for (size_t i = 0; i < n; i++) assert_string_not_equal(h[i].doc_id, "d3");
    embd_hits_free(h, n);
    n = search(s, "h", d[4].vec + DIMS, 1, NULL, &h);
    assert_string_equal(h[0].doc_id, "d4");
    embd_hits_free(h, n);
    embd_store_close(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flat_matches_brute_force), cmocka_unit_test(test_hnsw_recall),
        cmocka_unit_test(test_chunk_sizes_and_overlap),  cmocka_unit_test(test_chunk_code_aware),
        cmocka_unit_test(test_store_lifecycle),          cmocka_unit_test(test_store_hnsw),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
