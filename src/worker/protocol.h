/* The supervisor <-> worker wire protocol: length-prefixed binary frames over a stream socket
 * (a socketpair; both ends are processes of the same binary on the same host, so integers are
 * native-endian). Every length read from the wire is checked before it is used: a torn or hostile
 * frame is an error, never an out-of-bounds read or an unbounded allocation.
 *
 * frame    = magic u32 | type u16 | flags u16 (0) | payload length u32 | payload
 * HELLO    (worker -> supervisor, once, when the model is loaded)
 *          = version u32 | pid i32 | n_embd i32 | n_ctx i32 | n_vocab i32 | threads i32 | rss u64
 * FAIL     (worker -> supervisor, instead of HELLO) = message length u16 | message
 * BATCH    (supervisor -> worker) = id u64 | n u32 | width u32 | pooling i32 | pass_tokens u32 |
 *          n x (len u32 | n_first i32 | len x token id i32)
 *          width: floats per item in the answer; n_first: tokens of the first segment of a pair
 *          (cross-encoders), 0 = a single segment.
 * RESULT   (worker -> supervisor) = id u64 | n u32 | width u32 | peak_rss u64 |
 *          n x (status i32 | n_tokens i32 | n_tokens_full i32 | truncated u8 | msg_len u8 |
 *               msg | width x f32)
 * HEARTBEAT (worker -> supervisor, periodically) = batch id u64 (0: idle) | rss u64
 * SHUTDOWN (supervisor -> worker) = empty
 * THREADS  (supervisor -> worker, between batches) = compute threads u32 (auto-scaling re-divides
 *          the cores when workers come and go)
 * DEVSTAT  (worker -> supervisor, before a RESULT, GPU workers only) = splits u64 | cpu_fallbacks u64 |
 *          weight_bytes u64 | compute_bytes u64; the counts are this batch's, the bytes what the
 *          device holds now */
#ifndef EMBD_WORKER_PROTOCOL_H
#define EMBD_WORKER_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/embed.h"

#define EMBD_PROTO_MAGIC 0x57424d45u /* "EMBW" */
#define EMBD_PROTO_VERSION 1u
#define EMBD_PROTO_HEADER 12u
#define EMBD_PROTO_MAX_PAYLOAD (256u << 20)
#define EMBD_PROTO_MAX_ITEMS (1u << 20)
#define EMBD_PROTO_MAX_WIDTH (1u << 16)

enum {
    EMBD_MSG_HELLO = 1,
    EMBD_MSG_FAIL = 2,
    EMBD_MSG_BATCH = 3,
    EMBD_MSG_RESULT = 4,
    EMBD_MSG_HEARTBEAT = 5,
    EMBD_MSG_SHUTDOWN = 6,
    EMBD_MSG_DEVSTAT = 7,
    EMBD_MSG_THREADS = 8,
};

typedef struct {
    uint16_t type;
    uint32_t len;
    const uint8_t *payload; /* points into the caller's buffer */
} embd_frame;

/* Looks for one whole frame at the start of buf[0..n). Returns 1 (frame in *f, *used bytes),
 * 0 (incomplete: read more), or -1 with err (bad magic, unknown type, flags, length over max). */
int embd_proto_parse(const uint8_t *buf, size_t n, size_t max_payload, embd_frame *f, size_t *used, char *err,
                     size_t errlen);

/* ---- payloads ---- */

typedef struct {
    uint32_t version;
    int32_t pid, n_embd, n_ctx, n_vocab, threads;
    uint64_t rss;
} embd_proto_hello;

typedef struct {
    uint64_t id;
    uint32_t n, width;
    int32_t pooling;
    uint32_t pass_tokens;
    const int32_t **ids; /* n pointers into tokens */
    size_t *lens;
    int32_t *n_first;
    int32_t *tokens; /* one allocation for all ids */
} embd_proto_batch;

typedef struct {
    uint64_t splits, cpu_fallbacks, weight_bytes, compute_bytes;
} embd_proto_devstat;

/* Growable output buffer; oom latches so callers check once at the end. */
typedef struct {
    uint8_t *p;
    size_t len, cap;
    bool oom;
} embd_proto_buf;

void embd_proto_buf_free(embd_proto_buf *b);

/* Encoders: append one whole frame to b (b->oom on allocation failure). */
void embd_proto_put_hello(embd_proto_buf *b, const embd_proto_hello *h);
void embd_proto_put_fail(embd_proto_buf *b, const char *msg);
void embd_proto_put_batch(embd_proto_buf *b, uint64_t id, size_t n, int width, int pooling, size_t pass_tokens,
                          const int32_t *const *ids, const size_t *lens, const int32_t *n_first);
void embd_proto_put_result(embd_proto_buf *b, uint64_t id, size_t n, int width, uint64_t peak_rss, const float *out,
                           const embd_item *res);
void embd_proto_put_heartbeat(embd_proto_buf *b, uint64_t batch_id, uint64_t rss);
void embd_proto_put_devstat(embd_proto_buf *b, const embd_proto_devstat *d);
void embd_proto_put_threads(embd_proto_buf *b, uint32_t threads);
void embd_proto_put_empty(embd_proto_buf *b, uint16_t type);

/* Decoders: 0, or -1 with err when the payload is malformed (nothing is left allocated). */
int embd_proto_get_hello(const embd_frame *f, embd_proto_hello *h, char *err, size_t errlen);
int embd_proto_get_fail(const embd_frame *f, char *msg, size_t msglen, char *err, size_t errlen);
int embd_proto_get_batch(const embd_frame *f, embd_proto_batch *b, char *err, size_t errlen);
void embd_proto_batch_free(embd_proto_batch *b);
/* The answer to batch `id` of n items of `width` floats: fills out (n * width) and res. */
int embd_proto_get_result(const embd_frame *f, uint64_t id, size_t n, int width, float *out, embd_item *res,
                          uint64_t *peak_rss, char *err, size_t errlen);
int embd_proto_get_heartbeat(const embd_frame *f, uint64_t *batch_id, uint64_t *rss, char *err, size_t errlen);
int embd_proto_get_devstat(const embd_frame *f, embd_proto_devstat *d, char *err, size_t errlen);
int embd_proto_get_threads(const embd_frame *f, uint32_t *threads, char *err, size_t errlen); /* 1..4096 */

/* ---- blocking I/O on a socket ---- */

typedef struct {
    uint8_t *p;
    size_t len, cap, consumed; /* bytes of the frame returned last, dropped on the next read */
} embd_proto_reader;

void embd_proto_reader_free(embd_proto_reader *r);

/* Reads until one frame is whole. deadline: embd_now() time, <= 0 for none. Returns 1 (frame; its
 * payload stays valid until the next call), 0 (deadline passed), -1 (EOF, I/O or framing error:
 * err says which; *eof is set for a clean EOF between frames). */
int embd_proto_read(int fd, embd_proto_reader *r, double deadline, embd_frame *f, bool *eof, char *err,
                    size_t errlen);
/* Writes all of b; -1 with err on failure (the peer is gone). */
int embd_proto_write(int fd, const embd_proto_buf *b, char *err, size_t errlen);

#endif
