#include "worker/protocol.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/sys.h"

/* ---- encoding ---- */

void embd_proto_buf_free(embd_proto_buf *b) {
    free(b->p);
    *b = (embd_proto_buf){0};
}

static void put(embd_proto_buf *b, const void *v, size_t n) {
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, v, n);
    b->len += n;
}

static void put_u8(embd_proto_buf *b, uint8_t v) { put(b, &v, 1); }
static void put_u16(embd_proto_buf *b, uint16_t v) { put(b, &v, 2); }
static void put_u32(embd_proto_buf *b, uint32_t v) { put(b, &v, 4); }
static void put_i32(embd_proto_buf *b, int32_t v) { put(b, &v, 4); }
static void put_u64(embd_proto_buf *b, uint64_t v) { put(b, &v, 8); }

/* Starts a frame; returns the offset of its header for end_frame. */
static size_t begin_frame(embd_proto_buf *b, uint16_t type) {
    size_t at = b->len;
    put_u32(b, EMBD_PROTO_MAGIC);
    put_u16(b, type);
    put_u16(b, 0);
    put_u32(b, 0);
    return at;
}

static void end_frame(embd_proto_buf *b, size_t at) {
    if (b->oom) return;
    size_t len = b->len - at - EMBD_PROTO_HEADER;
    if (len > EMBD_PROTO_MAX_PAYLOAD) { /* the peer would refuse it: fail here, visibly */
        b->oom = true;
        return;
    }
    uint32_t l = (uint32_t)len;
    memcpy(b->p + at + 8, &l, 4);
}

void embd_proto_put_hello(embd_proto_buf *b, const embd_proto_hello *h) {
    size_t at = begin_frame(b, EMBD_MSG_HELLO);
    put_u32(b, h->version);
    put_i32(b, h->pid);
    put_i32(b, h->n_embd);
    put_i32(b, h->n_ctx);
    put_i32(b, h->n_vocab);
    put_i32(b, h->threads);
    put_u64(b, h->rss);
    end_frame(b, at);
}

void embd_proto_put_fail(embd_proto_buf *b, const char *msg) {
    size_t at = begin_frame(b, EMBD_MSG_FAIL);
    size_t n = strlen(msg);
    if (n > 1024) n = 1024;
    put_u16(b, (uint16_t)n);
    put(b, msg, n);
    end_frame(b, at);
}

void embd_proto_put_batch(embd_proto_buf *b, uint64_t id, size_t n, int width, int pooling, size_t pass_tokens,
                          const int32_t *const *ids, const size_t *lens, const int32_t *n_first) {
    size_t at = begin_frame(b, EMBD_MSG_BATCH);
    put_u64(b, id);
    put_u32(b, (uint32_t)n);
    put_u32(b, (uint32_t)width);
    put_i32(b, pooling);
    put_u32(b, pass_tokens > UINT32_MAX ? UINT32_MAX : (uint32_t)pass_tokens);
    for (size_t i = 0; i < n; i++) {
        put_u32(b, (uint32_t)lens[i]);
        put_i32(b, n_first ? n_first[i] : 0);
        put(b, ids[i], lens[i] * sizeof(int32_t));
    }
    end_frame(b, at);
}

void embd_proto_put_result(embd_proto_buf *b, uint64_t id, size_t n, int width, uint64_t peak_rss, const float *out,
                           const embd_item *res) {
    size_t at = begin_frame(b, EMBD_MSG_RESULT);
    put_u64(b, id);
    put_u32(b, (uint32_t)n);
    put_u32(b, (uint32_t)width);
    put_u64(b, peak_rss);
    for (size_t i = 0; i < n; i++) {
        const embd_item *r = &res[i];
        put_i32(b, r->status);
        put_i32(b, r->n_tokens);
        put_i32(b, r->n_tokens_full);
        put_u8(b, r->truncated ? 1 : 0);
        size_t ml = strnlen(r->message, sizeof r->message - 1);
        put_u8(b, (uint8_t)ml);
        put(b, r->message, ml);
        put(b, out + i * (size_t)width, (size_t)width * sizeof(float));
    }
    end_frame(b, at);
}

void embd_proto_put_heartbeat(embd_proto_buf *b, uint64_t batch_id, uint64_t rss) {
    size_t at = begin_frame(b, EMBD_MSG_HEARTBEAT);
    put_u64(b, batch_id);
    put_u64(b, rss);
    end_frame(b, at);
}

void embd_proto_put_devstat(embd_proto_buf *b, const embd_proto_devstat *d) {
    size_t at = begin_frame(b, EMBD_MSG_DEVSTAT);
    put_u64(b, d->splits);
    put_u64(b, d->cpu_fallbacks);
    put_u64(b, d->weight_bytes);
    put_u64(b, d->compute_bytes);
    end_frame(b, at);
}

void embd_proto_put_threads(embd_proto_buf *b, uint32_t threads) {
    size_t at = begin_frame(b, EMBD_MSG_THREADS);
    put_u32(b, threads);
    end_frame(b, at);
}

void embd_proto_put_empty(embd_proto_buf *b, uint16_t type) { end_frame(b, begin_frame(b, type)); }

/* ---- decoding ---- */

int embd_proto_parse(const uint8_t *buf, size_t n, size_t max_payload, embd_frame *f, size_t *used, char *err,
                     size_t errlen) {
    *used = 0;
    if (n < 4) return 0;
    uint32_t magic;
    memcpy(&magic, buf, 4);
    if (magic != EMBD_PROTO_MAGIC) return embd_fail(err, errlen, "bad frame magic 0x%08x", magic);
    if (n < EMBD_PROTO_HEADER) return 0;
    uint16_t type, flags;
    uint32_t len;
    memcpy(&type, buf + 4, 2);
    memcpy(&flags, buf + 6, 2);
    memcpy(&len, buf + 8, 4);
    if (type < EMBD_MSG_HELLO || type > EMBD_MSG_THREADS) return embd_fail(err, errlen, "unknown frame type %u", type);
    if (flags) return embd_fail(err, errlen, "unknown frame flags 0x%x", flags);
    if (len > max_payload || len > EMBD_PROTO_MAX_PAYLOAD)
        return embd_fail(err, errlen, "frame payload of %u bytes is over the limit of %zu", len, max_payload);
    if (n - EMBD_PROTO_HEADER < len) return 0;
    *f = (embd_frame){.type = type, .len = len, .payload = buf + EMBD_PROTO_HEADER};
    *used = EMBD_PROTO_HEADER + (size_t)len;
    return 1;
}

typedef struct {
    const uint8_t *p;
    size_t left;
    bool bad;
} rd;

static void get(rd *r, void *v, size_t n) {
    if (r->bad || r->left < n) {
        r->bad = true;
        memset(v, 0, n);
        return;
    }
    memcpy(v, r->p, n);
    r->p += n;
    r->left -= n;
}

static uint8_t get_u8(rd *r) {
    uint8_t v;
    get(r, &v, 1);
    return v;
}
static uint16_t get_u16(rd *r) {
    uint16_t v;
    get(r, &v, 2);
    return v;
}
static uint32_t get_u32(rd *r) {
    uint32_t v;
    get(r, &v, 4);
    return v;
}
static int32_t get_i32(rd *r) {
    int32_t v;
    get(r, &v, 4);
    return v;
}
static uint64_t get_u64(rd *r) {
    uint64_t v;
    get(r, &v, 8);
    return v;
}

static int want_type(const embd_frame *f, uint16_t type, rd *r, char *err, size_t errlen) {
    if (f->type != type) return embd_fail(err, errlen, "unexpected frame type %u (wanted %u)", f->type, type);
    *r = (rd){f->payload, f->len, false};
    return 0;
}

static int finish(const rd *r, const char *what, char *err, size_t errlen) {
    if (r->bad) return embd_fail(err, errlen, "truncated %s frame", what);
    if (r->left) return embd_fail(err, errlen, "%zu stray bytes after a %s frame", r->left, what);
    return 0;
}

int embd_proto_get_hello(const embd_frame *f, embd_proto_hello *h, char *err, size_t errlen) {
    rd r = {0};
    if (want_type(f, EMBD_MSG_HELLO, &r, err, errlen)) return -1;
    h->version = get_u32(&r);
    h->pid = get_i32(&r);
    h->n_embd = get_i32(&r);
    h->n_ctx = get_i32(&r);
    h->n_vocab = get_i32(&r);
    h->threads = get_i32(&r);
    h->rss = get_u64(&r);
    if (finish(&r, "hello", err, errlen)) return -1;
    if (h->version != EMBD_PROTO_VERSION)
        return embd_fail(err, errlen, "worker speaks protocol %u, not %u", h->version, EMBD_PROTO_VERSION);
    if (h->n_embd < 1 || h->n_ctx < 1 || h->n_vocab < 1) return embd_fail(err, errlen, "hello with bad model sizes");
    return 0;
}

int embd_proto_get_fail(const embd_frame *f, char *msg, size_t msglen, char *err, size_t errlen) {
    rd r = {0};
    if (want_type(f, EMBD_MSG_FAIL, &r, err, errlen)) return -1;
    uint16_t n = get_u16(&r);
    if (r.bad || n > r.left) return embd_fail(err, errlen, "truncated fail frame");
    snprintf(msg, msglen, "%.*s", (int)n, (const char *)r.p);
    r.p += n, r.left -= n;
    return finish(&r, "fail", err, errlen);
}

void embd_proto_batch_free(embd_proto_batch *b) {
    free(b->ids), free(b->lens), free(b->n_first), free(b->tokens);
    memset(b, 0, sizeof *b);
}

int embd_proto_get_batch(const embd_frame *f, embd_proto_batch *b, char *err, size_t errlen) {
    memset(b, 0, sizeof *b);
    rd r = {0};
    if (want_type(f, EMBD_MSG_BATCH, &r, err, errlen)) return -1;
    b->id = get_u64(&r);
    b->n = get_u32(&r);
    b->width = get_u32(&r);
    b->pooling = get_i32(&r);
    b->pass_tokens = get_u32(&r);
    if (r.bad) return embd_fail(err, errlen, "truncated batch frame");
    /* every item needs at least its 8-byte header: bounds n by the payload before allocating */
    if (b->n > EMBD_PROTO_MAX_ITEMS || (size_t)b->n * 8 > r.left)
        return embd_fail(err, errlen, "batch of %u items does not fit its frame", b->n);
    if (b->width < 1 || b->width > EMBD_PROTO_MAX_WIDTH) return embd_fail(err, errlen, "bad output width %u", b->width);
    if (b->pass_tokens < 1) return embd_fail(err, errlen, "bad pass tokens 0");
    size_t m = b->n ? b->n : 1;
    size_t ntok = (r.left - (size_t)b->n * 8) / 4;
    b->ids = calloc(m, sizeof *b->ids);
    b->lens = calloc(m, sizeof *b->lens);
    b->n_first = calloc(m, sizeof *b->n_first);
    b->tokens = malloc((ntok ? ntok : 1) * sizeof *b->tokens);
    if (!b->ids || !b->lens || !b->n_first || !b->tokens) {
        embd_proto_batch_free(b);
        return embd_fail(err, errlen, "out of memory for a batch");
    }
    size_t at = 0;
    for (uint32_t i = 0; i < b->n; i++) {
        uint32_t len = get_u32(&r);
        int32_t nf = get_i32(&r);
        if (r.bad || (size_t)len > r.left / 4 || at + len > ntok) {
            embd_proto_batch_free(b);
            return embd_fail(err, errlen, "truncated batch frame at item %u", i);
        }
        if (nf < 0 || (uint32_t)nf > len) {
            embd_proto_batch_free(b);
            return embd_fail(err, errlen, "item %u: first segment of %d tokens in %u", i, nf, len);
        }
        get(&r, b->tokens + at, (size_t)len * 4);
        b->ids[i] = b->tokens + at;
        b->lens[i] = len;
        b->n_first[i] = nf;
        at += len;
    }
    if (finish(&r, "batch", err, errlen)) {
        embd_proto_batch_free(b);
        return -1;
    }
    return 0;
}

int embd_proto_get_result(const embd_frame *f, uint64_t id, size_t n, int width, float *out, embd_item *res,
                          uint64_t *peak_rss, char *err, size_t errlen) {
    rd r = {0};
    if (want_type(f, EMBD_MSG_RESULT, &r, err, errlen)) return -1;
    uint64_t rid = get_u64(&r);
    uint32_t rn = get_u32(&r), rw = get_u32(&r);
    uint64_t peak = get_u64(&r);
    if (r.bad) return embd_fail(err, errlen, "truncated result frame");
    if (rid != id || rn != n || (int64_t)rw != (int64_t)width)
        return embd_fail(err, errlen, "result for batch %llu (%u items x %u) does not answer batch %llu (%zu x %d)",
                         (unsigned long long)rid, rn, rw, (unsigned long long)id, n, width);
    for (size_t i = 0; i < n; i++) {
        embd_item *it = &res[i];
        memset(it, 0, sizeof *it);
        it->status = get_i32(&r);
        it->n_tokens = get_i32(&r);
        it->n_tokens_full = get_i32(&r);
        it->truncated = get_u8(&r) != 0;
        uint8_t ml = get_u8(&r);
        if (r.bad || ml >= sizeof it->message || ml > r.left)
            return embd_fail(err, errlen, "truncated result frame at item %zu", i);
        get(&r, it->message, ml);
        it->message[ml] = 0;
        get(&r, out + i * (size_t)width, (size_t)width * sizeof(float));
        if (r.bad) return embd_fail(err, errlen, "truncated result frame at item %zu", i);
        if (it->status < EMBD_ITEM_OK || it->status > EMBD_ITEM_FAILED)
            return embd_fail(err, errlen, "item %zu: unknown status %d", i, it->status);
    }
    if (finish(&r, "result", err, errlen)) return -1;
    if (peak_rss) *peak_rss = peak;
    return 0;
}

int embd_proto_get_heartbeat(const embd_frame *f, uint64_t *batch_id, uint64_t *rss, char *err, size_t errlen) {
    rd r = {0};
    if (want_type(f, EMBD_MSG_HEARTBEAT, &r, err, errlen)) return -1;
    *batch_id = get_u64(&r);
    *rss = get_u64(&r);
    return finish(&r, "heartbeat", err, errlen);
}

int embd_proto_get_devstat(const embd_frame *f, embd_proto_devstat *d, char *err, size_t errlen) {
    rd r = {0};
    if (want_type(f, EMBD_MSG_DEVSTAT, &r, err, errlen)) return -1;
    d->splits = get_u64(&r);
    d->cpu_fallbacks = get_u64(&r);
    d->weight_bytes = get_u64(&r);
    d->compute_bytes = get_u64(&r);
    return finish(&r, "devstat", err, errlen);
}

int embd_proto_get_threads(const embd_frame *f, uint32_t *threads, char *err, size_t errlen) {
    rd r = {0};
    if (want_type(f, EMBD_MSG_THREADS, &r, err, errlen)) return -1;
    *threads = get_u32(&r);
    if (finish(&r, "threads", err, errlen)) return -1;
    if (*threads < 1 || *threads > 4096) return embd_fail(err, errlen, "threads %u out of range", *threads);
    return 0;
}

/* ---- I/O ---- */

void embd_proto_reader_free(embd_proto_reader *r) {
    free(r->p);
    memset(r, 0, sizeof *r);
}

int embd_proto_read(int fd, embd_proto_reader *r, double deadline, embd_frame *f, bool *eof, char *err,
                    size_t errlen) {
    *eof = false;
    if (r->consumed) {
        memmove(r->p, r->p + r->consumed, r->len - r->consumed);
        r->len -= r->consumed;
        r->consumed = 0;
    }
    for (;;) {
        size_t used;
        int rc = embd_proto_parse(r->p, r->len, EMBD_PROTO_MAX_PAYLOAD, f, &used, err, errlen);
        if (rc < 0) return -1;
        if (rc > 0) {
            r->consumed = used;
            return 1;
        }
        /* grow to fit the frame announced by a whole header, else a read's worth */
        size_t want = r->len + 65536;
        if (r->len >= EMBD_PROTO_HEADER) {
            uint32_t len;
            memcpy(&len, r->p + 8, 4);
            if (EMBD_PROTO_HEADER + (size_t)len > want) want = EMBD_PROTO_HEADER + (size_t)len;
        }
        if (want > r->cap) {
            uint8_t *p = realloc(r->p, want);
            if (!p) return embd_fail(err, errlen, "out of memory for a %zu-byte frame", want);
            r->p = p;
            r->cap = want;
        }
        if (deadline > 0) {
            double left = deadline - embd_now();
            if (left <= 0) return 0;
            struct pollfd p = {.fd = fd, .events = POLLIN};
            int pr = poll(&p, 1, (int)(left * 1000) + 1);
            if (pr < 0 && errno != EINTR) return embd_fail(err, errlen, "poll: %s", strerror(errno));
            if (pr <= 0) continue; /* timeout or EINTR: the deadline check above decides */
        }
        ssize_t k = read(fd, r->p + r->len, r->cap - r->len);
        if (k < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            return embd_fail(err, errlen, "read: %s", strerror(errno));
        }
        if (k == 0) {
            *eof = r->len == 0;
            return embd_fail(err, errlen, r->len ? "connection closed inside a frame" : "connection closed");
        }
        r->len += (size_t)k;
    }
}

int embd_proto_write(int fd, const embd_proto_buf *b, char *err, size_t errlen) {
    if (b->oom) return embd_fail(err, errlen, "out of memory building a frame");
    size_t off = 0;
    while (off < b->len) {
        ssize_t k = send(fd, b->p + off, b->len - off, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR) continue;
            return embd_fail(err, errlen, "write: %s", strerror(errno));
        }
        off += (size_t)k;
    }
    return 0;
}
