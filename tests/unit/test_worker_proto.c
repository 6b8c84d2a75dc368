/* The worker wire protocol: round trips of every frame, and every malformed frame (truncated,
 * oversized lengths, bad magic, counts that do not fit, mismatched answers) is an error, never a
 * crash or an out-of-bounds read (ASan checks the latter: decoders run on exact-size copies). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/sys.h"
#include "worker/protocol.h"

static embd_frame parse_one(const embd_proto_buf *b) {
    embd_frame f;
    size_t used;
    char err[128];
    assert_false(b->oom);
    assert_int_equal(embd_proto_parse(b->p, b->len, EMBD_PROTO_MAX_PAYLOAD, &f, &used, err, sizeof err), 1);
    assert_int_equal(used, b->len);
    return f;
}

/* The frame's payload in its own exact-size allocation (so reading past it trips ASan). */
static embd_frame exact(const embd_frame *f, size_t len, uint8_t **mem) {
    *mem = malloc(len ? len : 1);
    memcpy(*mem, f->payload, len);
    return (embd_frame){.type = f->type, .len = (uint32_t)len, .payload = *mem};
}

static void test_hello_round_trip(void **state) {
    (void)state;
    embd_proto_buf b = {0};
    embd_proto_hello h = {EMBD_PROTO_VERSION, 1234, 384, 512, 30522, 2, 1u << 20}, g;
    embd_proto_put_hello(&b, &h);
    embd_frame f = parse_one(&b);
    char err[128];
    assert_int_equal(embd_proto_get_hello(&f, &g, err, sizeof err), 0);
    assert_memory_equal(&h, &g, sizeof h);
    /* another version, bad sizes, wrong type */
    h.version = 99;
    b.len = 0;
    embd_proto_put_hello(&b, &h);
    f = parse_one(&b);
    assert_int_equal(embd_proto_get_hello(&f, &g, err, sizeof err), -1);
    assert_non_null(strstr(err, "protocol"));
    h.version = EMBD_PROTO_VERSION;
    h.n_embd = 0;
    b.len = 0;
    embd_proto_put_hello(&b, &h);
    f = parse_one(&b);
    assert_int_equal(embd_proto_get_hello(&f, &g, err, sizeof err), -1);
    b.len = 0;
    embd_proto_put_heartbeat(&b, 1, 2);
    f = parse_one(&b);
    assert_int_equal(embd_proto_get_hello(&f, &g, err, sizeof err), -1);
    assert_non_null(strstr(err, "unexpected frame type"));
    embd_proto_buf_free(&b);
}

static void test_fail_and_heartbeat(void **state) {
    (void)state;
    embd_proto_buf b = {0};
    char err[128], msg[64];
    embd_proto_put_fail(&b, "cannot open model.gguf");
    embd_frame f = parse_one(&b);
    assert_int_equal(embd_proto_get_fail(&f, msg, sizeof msg, err, sizeof err), 0);
    assert_string_equal(msg, "cannot open model.gguf");
    b.len = 0;
    embd_proto_put_heartbeat(&b, 77, 12345);
    f = parse_one(&b);
    uint64_t id, rss;
    assert_int_equal(embd_proto_get_heartbeat(&f, &id, &rss, err, sizeof err), 0);
    assert_int_equal(id, 77);
    assert_int_equal(rss, 12345);
    /* a fail frame whose message length runs past the payload */
    uint8_t *mem;
    b.len = 0;
    embd_proto_put_fail(&b, "abc");
    f = parse_one(&b);
    embd_frame t = exact(&f, f.len - 1, &mem);
    assert_int_equal(embd_proto_get_fail(&t, msg, sizeof msg, err, sizeof err), -1);
    free(mem);
    embd_proto_buf_free(&b);
}

/* The auto-scaler's THREADS and a GPU worker's DEVSTAT frames: round trip, range, truncation. */
static void test_threads_and_devstat(void **state) {
    (void)state;
    embd_proto_buf b = {0};
    char err[128];
    embd_proto_put_threads(&b, 3);
    embd_frame f = parse_one(&b);
    uint32_t t = 0;
    assert_int_equal(embd_proto_get_threads(&f, &t, err, sizeof err), 0);
    assert_int_equal(t, 3);
    b.len = 0;
    embd_proto_put_threads(&b, 0); /* zero threads is not a thing a worker can do */
    f = parse_one(&b);
    assert_int_equal(embd_proto_get_threads(&f, &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "out of range"));
    b.len = 0;
    embd_proto_devstat d = {.splits = 5, .cpu_fallbacks = 2, .weight_bytes = 1u << 30, .compute_bytes = 12345}, g;
    embd_proto_put_devstat(&b, &d);
    f = parse_one(&b);
    assert_int_equal(embd_proto_get_devstat(&f, &g, err, sizeof err), 0);
    assert_memory_equal(&d, &g, sizeof d);
    uint8_t *mem;
    embd_frame tr = exact(&f, f.len - 1, &mem); /* one byte short */
    assert_int_equal(embd_proto_get_devstat(&tr, &g, err, sizeof err), -1);
    free(mem);
    assert_int_equal(embd_proto_get_threads(&f, &t, err, sizeof err), -1); /* wrong type */
    embd_proto_buf_free(&b);
}

static const int32_t A[] = {101, 7592, 2088, 102}, B[] = {101, 102}, C[] = {101, 2000, 102, 3000, 4000, 102};

static void put_sample_batch(embd_proto_buf *b) {
    const int32_t *ids[] = {A, B, C};
    size_t lens[] = {4, 2, 6};
    int32_t nf[] = {0, 0, 3};
    embd_proto_put_batch(b, 42, 3, 384, EMBD_POOL_CLS, 4096, ids, lens, nf);
}

static void test_batch_round_trip(void **state) {
    (void)state;
    embd_proto_buf b = {0};
    put_sample_batch(&b);
    embd_frame f = parse_one(&b);
    embd_proto_batch g;
    char err[128];
    assert_int_equal(embd_proto_get_batch(&f, &g, err, sizeof err), 0);
    assert_int_equal(g.id, 42);
    assert_int_equal(g.n, 3);
    assert_int_equal(g.width, 384);
    assert_int_equal(g.pooling, EMBD_POOL_CLS);
    assert_int_equal(g.pass_tokens, 4096);
    assert_int_equal(g.lens[0], 4);
    assert_int_equal(g.lens[1], 2);
    assert_int_equal(g.lens[2], 6);
    assert_memory_equal(g.ids[0], A, sizeof A);
    assert_memory_equal(g.ids[1], B, sizeof B);
    assert_memory_equal(g.ids[2], C, sizeof C);
    assert_int_equal(g.n_first[2], 3);
    assert_int_equal(g.n_first[0], 0);
    embd_proto_batch_free(&g);
    /* NULL n_first: all single segments; an empty batch is valid */
    b.len = 0;
    embd_proto_put_batch(&b, 1, 0, 1, 0, 1, NULL, NULL, NULL);
    f = parse_one(&b);
    assert_int_equal(embd_proto_get_batch(&f, &g, err, sizeof err), 0);
    assert_int_equal(g.n, 0);
    embd_proto_batch_free(&g);
    embd_proto_buf_free(&b);
}

static void test_batch_every_truncation_fails(void **state) {
    (void)state;
    embd_proto_buf b = {0};
    put_sample_batch(&b);
    embd_frame f = parse_one(&b);
    char err[128];
    for (size_t len = 0; len < f.len; len++) {
        uint8_t *mem;
        embd_frame t = exact(&f, len, &mem);
        embd_proto_batch g;
        assert_int_equal(embd_proto_get_batch(&t, &g, err, sizeof err), -1);
        free(mem);
    }
    /* and one stray byte too many */
    uint8_t *mem = malloc(f.len + 1);
    memcpy(mem, f.payload, f.len);
    mem[f.len] = 0;
    embd_frame t = {.type = f.type, .len = f.len + 1, .payload = mem};
    embd_proto_batch g;
    assert_int_equal(embd_proto_get_batch(&t, &g, err, sizeof err), -1);
    assert_non_null(strstr(err, "stray"));
    free(mem);
    embd_proto_buf_free(&b);
}

/* Patches a field of a batch payload and expects the decoder to refuse it. */
static void expect_bad_batch(size_t off, uint32_t v, const char *why) {
    embd_proto_buf b = {0};
    put_sample_batch(&b);
    memcpy(b.p + EMBD_PROTO_HEADER + off, &v, 4);
    embd_frame f = parse_one(&b);
    embd_proto_batch g;
    char err[128];
    assert_int_equal(embd_proto_get_batch(&f, &g, err, sizeof err), -1);
    if (!strstr(err, why)) fail_msg("error '%s' lacks '%s'", err, why);
    embd_proto_buf_free(&b);
}

static void test_batch_lying_fields(void **state) {
    (void)state;
    expect_bad_batch(8, 0xffffffffu, "does not fit");     /* n: 4 billion items in 60 bytes */
    expect_bad_batch(8, 1000, "does not fit");            /* n: more than the payload holds */
    expect_bad_batch(12, 0, "width");                     /* width 0 */
    expect_bad_batch(12, EMBD_PROTO_MAX_WIDTH + 1, "width");
    expect_bad_batch(20, 0, "pass tokens");
    expect_bad_batch(24, 0x7fffffffu, "truncated");       /* first item's length */
    expect_bad_batch(24, 3, "truncated");                 /* shorter: the next header reads ids */
    expect_bad_batch(28, 5, "first segment");             /* n_first > len */
    expect_bad_batch(28, 0xffffffffu, "first segment");   /* n_first < 0 */
}

static void test_result_round_trip_and_checks(void **state) {
    (void)state;
    enum { N = 3, W = 4 };
    float out[N * W];
    for (int i = 0; i < N * W; i++) out[i] = (float)i * 0.5f - 1;
    embd_item res[N] = {{.status = EMBD_ITEM_OK, .n_tokens = 4, .n_tokens_full = 4},
                        {.status = EMBD_ITEM_FAILED, .n_tokens = 0, .n_tokens_full = 2},
                        {.status = EMBD_ITEM_OK, .n_tokens = 512, .n_tokens_full = 900, .truncated = true}};
    strcpy(res[1].message, "poison input: test");
    memset(res[2].message, 'x', sizeof res[2].message - 1); /* longest message */
    res[2].message[sizeof res[2].message - 1] = 0;
    embd_proto_buf b = {0};
    embd_proto_put_result(&b, 9, N, W, 777, out, res);
    embd_frame f = parse_one(&b);
    float got[N * W];
    embd_item gres[N];
    uint64_t peak = 0;
    char err[160];
    assert_int_equal(embd_proto_get_result(&f, 9, N, W, got, gres, &peak, err, sizeof err), 0);
    assert_memory_equal(got, out, sizeof out);
    assert_int_equal(peak, 777);
    for (int i = 0; i < N; i++) {
        assert_int_equal(gres[i].status, res[i].status);
        assert_int_equal(gres[i].n_tokens, res[i].n_tokens);
        assert_int_equal(gres[i].n_tokens_full, res[i].n_tokens_full);
        assert_int_equal(gres[i].truncated, res[i].truncated);
        assert_string_equal(gres[i].message, res[i].message);
    }
    /* an answer to another batch, count or width */
    assert_int_equal(embd_proto_get_result(&f, 8, N, W, got, gres, NULL, err, sizeof err), -1);
    assert_int_equal(embd_proto_get_result(&f, 9, N - 1, W, got, gres, NULL, err, sizeof err), -1);
    assert_int_equal(embd_proto_get_result(&f, 9, N, W + 1, got, gres, NULL, err, sizeof err), -1);
    /* every truncation */
    for (size_t len = 0; len < f.len; len++) {
        uint8_t *mem;
        embd_frame t = exact(&f, len, &mem);
        assert_int_equal(embd_proto_get_result(&t, 9, N, W, got, gres, NULL, err, sizeof err), -1);
        free(mem);
    }
    /* an unknown item status, a message length over the limit */
    int32_t bad = 17;
    memcpy(b.p + EMBD_PROTO_HEADER + 24, &bad, 4);
    f = parse_one(&b);
    assert_int_equal(embd_proto_get_result(&f, 9, N, W, got, gres, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "status"));
    b.len = 0;
    embd_proto_put_result(&b, 9, N, W, 0, out, res);
    b.p[EMBD_PROTO_HEADER + 24 + 13] = 200;
    f = parse_one(&b);
    assert_int_equal(embd_proto_get_result(&f, 9, N, W, got, gres, NULL, err, sizeof err), -1);
    embd_proto_buf_free(&b);
}

static void test_frame_header_errors(void **state) {
    (void)state;
    embd_proto_buf b = {0};
    embd_proto_put_heartbeat(&b, 1, 1);
    embd_frame f;
    size_t used;
    char err[128];
    /* incomplete: every prefix asks for more */
    for (size_t n = 0; n < b.len; n++)
        assert_int_equal(embd_proto_parse(b.p, n, EMBD_PROTO_MAX_PAYLOAD, &f, &used, err, sizeof err), 0);
    uint8_t h[EMBD_PROTO_HEADER];
    memcpy(h, b.p, sizeof h);
    /* bad magic is seen after 4 bytes */
    h[0] ^= 0xff;
    assert_int_equal(embd_proto_parse(h, 4, EMBD_PROTO_MAX_PAYLOAD, &f, &used, err, sizeof err), -1);
    assert_non_null(strstr(err, "magic"));
    memcpy(h, b.p, sizeof h);
    uint16_t type = 99;
    memcpy(h + 4, &type, 2);
    assert_int_equal(embd_proto_parse(h, sizeof h, EMBD_PROTO_MAX_PAYLOAD, &f, &used, err, sizeof err), -1);
    assert_non_null(strstr(err, "type"));
    type = 0;
    memcpy(h + 4, &type, 2);
    assert_int_equal(embd_proto_parse(h, sizeof h, EMBD_PROTO_MAX_PAYLOAD, &f, &used, err, sizeof err), -1);
    memcpy(h, b.p, sizeof h);
    h[6] = 1; /* flags */
    assert_int_equal(embd_proto_parse(h, sizeof h, EMBD_PROTO_MAX_PAYLOAD, &f, &used, err, sizeof err), -1);
    memcpy(h, b.p, sizeof h);
    uint32_t len = 0xffffffffu; /* oversized: refused from the header alone, nothing allocated */
    memcpy(h + 8, &len, 4);
    assert_int_equal(embd_proto_parse(h, sizeof h, EMBD_PROTO_MAX_PAYLOAD, &f, &used, err, sizeof err), -1);
    assert_non_null(strstr(err, "over the limit"));
    len = 100;
    memcpy(h + 8, &len, 4);
    assert_int_equal(embd_proto_parse(h, sizeof h, 99, &f, &used, err, sizeof err), -1);
    /* two frames back to back: the first is returned with its exact size */
    embd_proto_put_empty(&b, EMBD_MSG_SHUTDOWN);
    assert_int_equal(embd_proto_parse(b.p, b.len, EMBD_PROTO_MAX_PAYLOAD, &f, &used, err, sizeof err), 1);
    assert_int_equal(f.type, EMBD_MSG_HEARTBEAT);
    assert_int_equal(used, EMBD_PROTO_HEADER + 16);
    assert_int_equal(embd_proto_parse(b.p + used, b.len - used, EMBD_PROTO_MAX_PAYLOAD, &f, &used, err, sizeof err),
                     1);
    assert_int_equal(f.type, EMBD_MSG_SHUTDOWN);
    assert_int_equal(f.len, 0);
    embd_proto_buf_free(&b);
}

/* The blocking reader over a real socketpair: frames split across writes, deadlines, EOF. */
static void test_reader_socket(void **state) {
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    embd_proto_buf b = {0};
    put_sample_batch(&b);
    embd_proto_put_heartbeat(&b, 5, 6);
    embd_proto_reader r = {0};
    embd_frame f;
    bool eof;
    char err[128];
    /* nothing yet: the deadline passes */
    double t0 = embd_now();
    assert_int_equal(embd_proto_read(sv[0], &r, embd_now() + 0.05, &f, &eof, err, sizeof err), 0);
    assert_true(embd_now() - t0 >= 0.04);
    /* first 5 bytes, then the rest */
    assert_int_equal(write(sv[1], b.p, 5), 5);
    assert_int_equal(embd_proto_read(sv[0], &r, embd_now() + 0.05, &f, &eof, err, sizeof err), 0);
    assert_int_equal(write(sv[1], b.p + 5, b.len - 5), (ssize_t)(b.len - 5));
    assert_int_equal(embd_proto_read(sv[0], &r, embd_now() + 5, &f, &eof, err, sizeof err), 1);
    assert_int_equal(f.type, EMBD_MSG_BATCH);
    embd_proto_batch g;
    assert_int_equal(embd_proto_get_batch(&f, &g, err, sizeof err), 0);
    assert_int_equal(g.n, 3);
    embd_proto_batch_free(&g);
    assert_int_equal(embd_proto_read(sv[0], &r, 0, &f, &eof, err, sizeof err), 1);
    assert_int_equal(f.type, EMBD_MSG_HEARTBEAT);
    /* half a frame, then the peer closes: an error, not a clean EOF */
    assert_int_equal(write(sv[1], b.p, 7), 7);
    close(sv[1]);
    assert_int_equal(embd_proto_read(sv[0], &r, embd_now() + 5, &f, &eof, err, sizeof err), -1);
    assert_false(eof);
    assert_non_null(strstr(err, "inside a frame"));
    embd_proto_reader_free(&r);
    close(sv[0]);
    /* clean EOF between frames; garbage is an error */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(write(sv[1], "GARBAGE!GARBAGE!", 16), 16);
    assert_int_equal(embd_proto_read(sv[0], &r, embd_now() + 5, &f, &eof, err, sizeof err), -1);
    assert_non_null(strstr(err, "magic"));
    embd_proto_reader_free(&r);
    close(sv[1]);
    assert_int_equal(embd_proto_read(sv[0], &r, embd_now() + 5, &f, &eof, err, sizeof err), -1);
    assert_true(eof);
    embd_proto_reader_free(&r);
    close(sv[0]);
    /* writing to a closed peer fails instead of raising SIGPIPE */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    close(sv[1]);
    assert_int_equal(embd_proto_write(sv[0], &b, err, sizeof err), -1);
    close(sv[0]);
    embd_proto_buf_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_round_trip),
        cmocka_unit_test(test_fail_and_heartbeat),
        cmocka_unit_test(test_threads_and_devstat),
        cmocka_unit_test(test_batch_round_trip),
        cmocka_unit_test(test_batch_every_truncation_fails),
        cmocka_unit_test(test_batch_lying_fields),
        cmocka_unit_test(test_result_round_trip_and_checks),
        cmocka_unit_test(test_frame_header_errors),
        cmocka_unit_test(test_reader_socket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
