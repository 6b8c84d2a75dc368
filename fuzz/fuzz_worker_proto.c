/* The supervisor <-> worker frame decoder (src/worker/protocol.c) on arbitrary byte streams: the
 * frames are split off one by one and each payload goes through its decoder, as both ends do.
 * Besides "no crash, no overread": a batch that decodes re-encodes to the same bytes, and a result
 * that decodes decodes the same after re-encoding. */
#include <string.h>

#include "fuzz_common.h"
#include "worker/protocol.h"

static void check_batch(const embd_frame *f) {
    embd_proto_batch b;
    char err[160];
    if (embd_proto_get_batch(f, &b, err, sizeof err)) return;
    embd_proto_buf o = {0};
    embd_proto_put_batch(&o, b.id, b.n, (int)b.width, b.pooling, b.pass_tokens, b.ids, b.lens, b.n_first);
    FUZZ_CHECK(!o.oom && o.len == EMBD_PROTO_HEADER + f->len);
    FUZZ_CHECK(!memcmp(o.p + EMBD_PROTO_HEADER, f->payload, f->len));
    embd_proto_buf_free(&o);
    embd_proto_batch_free(&b);
}

static void check_result(const embd_frame *f) {
    if (f->len < 16) return;
    uint64_t id;
    uint32_t n, w;
    memcpy(&id, f->payload, 8);
    memcpy(&n, f->payload + 8, 4);
    memcpy(&w, f->payload + 12, 4);
    if (n > 4096 || w < 1 || w > 64) return; /* the supervisor only asks for what it sent */
    float *out = malloc((size_t)(n ? n : 1) * w * sizeof *out), *out2 = malloc((size_t)(n ? n : 1) * w * sizeof *out2);
    embd_item *res = malloc((n ? n : 1) * sizeof *res), *res2 = malloc((n ? n : 1) * sizeof *res2);
    FUZZ_CHECK(out && out2 && res && res2);
    char err[160];
    uint64_t peak;
    if (embd_proto_get_result(f, id, n, (int)w, out, res, &peak, err, sizeof err) == 0) {
        embd_proto_buf o = {0};
        embd_proto_put_result(&o, id, n, (int)w, peak, out, res);
        embd_frame g;
        size_t used;
        FUZZ_CHECK(embd_proto_parse(o.p, o.len, EMBD_PROTO_MAX_PAYLOAD, &g, &used, err, sizeof err) == 1);
        FUZZ_CHECK(embd_proto_get_result(&g, id, n, (int)w, out2, res2, NULL, err, sizeof err) == 0);
        FUZZ_CHECK(!memcmp(out, out2, (size_t)n * w * sizeof *out));
        for (uint32_t i = 0; i < n; i++) {
            FUZZ_CHECK(res[i].status == res2[i].status && res[i].n_tokens == res2[i].n_tokens);
            FUZZ_CHECK(!strcmp(res[i].message, res2[i].message));
        }
        embd_proto_buf_free(&o);
    }
    free(out), free(out2), free(res), free(res2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1); /* exact size: ASan sees any read past the end */
    FUZZ_CHECK(buf);
    memcpy(buf, data, size);
    size_t at = 0;
    char err[160];
    for (;;) {
        embd_frame f;
        size_t used;
        int rc = embd_proto_parse(buf + at, size - at, EMBD_PROTO_MAX_PAYLOAD, &f, &used, err, sizeof err);
        if (rc <= 0) break;
        FUZZ_CHECK(used == EMBD_PROTO_HEADER + f.len && used <= size - at);
        embd_proto_hello h;
        char msg[256];
        uint64_t a, b;
        switch (f.type) {
        case EMBD_MSG_HELLO: embd_proto_get_hello(&f, &h, err, sizeof err); break;
        case EMBD_MSG_FAIL: embd_proto_get_fail(&f, msg, sizeof msg, err, sizeof err); break;
        case EMBD_MSG_BATCH: check_batch(&f); break;
        case EMBD_MSG_RESULT: check_result(&f); break;
        case EMBD_MSG_HEARTBEAT: embd_proto_get_heartbeat(&f, &a, &b, err, sizeof err); break;
        default: break;
        }
        at += used;
    }
    free(buf);
    return 0;
}
