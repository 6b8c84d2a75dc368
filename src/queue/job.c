/* One spool job from its checkpoint to its end; see job.h. */
#include "queue/job.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <utf8proc.h>

#include "util/jsonfix.h"
#include "util/sys.h"

typedef struct {
    long long input_offset, results_bytes, errors_bytes;
    size_t items, lines, errors, tokens;
} ckpt;

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void ckpt_load(embd_spool *sp, const char *id, ckpt *k) {
    memset(k, 0, sizeof *k);
    char p[4200];
    embd_spool_path(sp, p, sizeof p, "results", id, ".ckpt");
    json_t *j = embd_spool_load_json(p);
    if (!j) return;
    k->input_offset = json_integer_value(json_object_get(j, "input_offset"));
    k->results_bytes = json_integer_value(json_object_get(j, "results_bytes"));
    k->errors_bytes = json_integer_value(json_object_get(j, "errors_bytes"));
    k->items = (size_t)json_integer_value(json_object_get(j, "items"));
    k->lines = (size_t)json_integer_value(json_object_get(j, "lines"));
    k->errors = (size_t)json_integer_value(json_object_get(j, "errors"));
    k->tokens = (size_t)json_integer_value(json_object_get(j, "tokens"));
    json_decref(j);
}

static int ckpt_save(embd_spool *sp, const char *id, const ckpt *k) {
    char p[4200], buf[512];
    embd_spool_path(sp, p, sizeof p, "results", id, ".ckpt");
    int n = snprintf(buf, sizeof buf,
                     "{\"input_offset\":%lld,\"results_bytes\":%lld,\"errors_bytes\":%lld,\"items\":%zu,\"lines\":%zu,"
                     "\"errors\":%zu,\"tokens\":%zu}\n",
                     k->input_offset, k->results_bytes, k->errors_bytes, k->items, k->lines, k->errors, k->tokens);
    return embd_spool_write_atomic(p, buf, (size_t)n, true);
}

typedef struct {
    double t0, started;
    size_t items0, tokens0;
} rate_base;

static void progress_save(embd_spool *sp, const embd_claim *c, const embd_runner *r, const ckpt *k, const rate_base *rb,
                          const char *error) {
    double el = embd_now() - rb->t0;
    double ir = el > 0 ? (double)(k->items - rb->items0) / el : 0, tr = el > 0 ? (double)(k->tokens - rb->tokens0) / el : 0;
    double eta = ir > 0 && c->total > k->items ? (double)(c->total - k->items) / ir : 0;
    json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:s, s:f, s:f}", "items_done", (json_int_t)k->items,
                          "total", (json_int_t)c->total, "errors", (json_int_t)k->errors, "tokens", (json_int_t)k->tokens,
                          "rate_tokens_s", tr, "rate_items_s", ir, "eta_s", eta, "worker", r->worker ? r->worker : sp->token,
                          "started", rb->started, "updated", wall_now());
    if (j && error) json_object_set_new(j, "error", json_string(error));
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s) return;
    char p[4200];
    embd_spool_path(sp, p, sizeof p, "results", c->id, ".progress.json");
    embd_spool_write_atomic(p, s, strlen(s), false); /* advisory: the checkpoint is the truth */
    free(s);
}

/* ---- heartbeat thread ------------------------------------------------------------------------ */

typedef struct {
    embd_spool *sp;
    const embd_claim *c;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool quit;
    atomic_int lost;
} beat;

static void *beat_main(void *arg) {
    beat *b = arg;
    double every = b->sp->stale_after / 4;
    if (every < 0.05) every = 0.05;
    pthread_mutex_lock(&b->mu);
    while (!b->quit) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        long long ns = ts.tv_nsec + (long long)(every * 1e9);
        ts.tv_sec += (time_t)(ns / 1000000000);
        ts.tv_nsec = (long)(ns % 1000000000);
        pthread_cond_timedwait(&b->cv, &b->mu, &ts);
        if (b->quit) break;
        pthread_mutex_unlock(&b->mu);
        if (embd_spool_heartbeat(b->sp, b->c)) atomic_store(&b->lost, 1);
        pthread_mutex_lock(&b->mu);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

/* ---- output buffers -------------------------------------------------------------------------- */

static int buf_add(embd_buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) return -1;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

static int buf_json_line(embd_buf *b, json_t *j) {
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(j);
    if (!s) return -1;
    int rc = buf_add(b, s, strlen(s));
    free(s);
    return rc ? rc : buf_add(b, "\n", 1);
}

static int write_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w, n -= (size_t)w;
    }
    return 0;
}

/* Opens an output, dropping whatever lies beyond the checkpoint (a chunk written but never
 * checkpointed: it is written again). */
static int open_output(const char *path, long long keep, char *err, size_t errlen) {
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    if (fd < 0) return embd_fail(err, errlen, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || st.st_size < keep) {
        close(fd);
        return embd_fail(err, errlen, "'%s' is shorter than its checkpoint says (lost writes?)", path);
    }
    if (ftruncate(fd, keep) || lseek(fd, 0, SEEK_END) != keep) {
        close(fd);
        return embd_fail(err, errlen, "cannot truncate '%s': %s", path, strerror(errno));
    }
    return fd;
}

/* ---- items ----------------------------------------------------------------------------------- */

typedef struct {
    json_t *id;
    char *text;
    size_t len;
    size_t line;
    char error[200];
} item;

/* jansson's messages quote the offending input, which may not be UTF-8 (or may be cut inside a
 * character): the error record must still be valid JSON. */
static void make_utf8(char *s) {
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &cp);
        if (k > 0) i += (size_t)k;
        else s[i++] = '?';
    }
}

static void parse_item(item *it, char *line, size_t n) {
    embd_json_fix_surrogates(line, n);
    json_error_t je;
    json_t *obj = json_loadb(line, n, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &je);
    if (!obj) {
        snprintf(it->error, sizeof it->error, "invalid JSON: %.140s", je.text);
        make_utf8(it->error);
        return;
    }
    json_t *id = json_object_get(obj, "id");
    if (id) it->id = json_incref(id);
    json_t *text = json_object_get(obj, "text");
    if (!json_is_object(obj)) {
        snprintf(it->error, sizeof it->error, "expected a JSON object {\"id\", \"text\"}");
    } else if (!json_is_string(text)) {
        snprintf(it->error, sizeof it->error, "field \"text\" is missing or not a string");
    } else {
        it->len = json_string_length(text);
        it->text = malloc(it->len + 1);
        if (it->text) memcpy(it->text, json_string_value(text), it->len + 1);
        else snprintf(it->error, sizeof it->error, "out of memory");
    }
    json_decref(obj);
}

static json_t *item_id(const item *it) { return it->id ? json_incref(it->id) : json_integer((json_int_t)it->line); }

struct embd_chunker {
    size_t cap, n;
    int H;
    item *items;
    const char **texts;
    size_t *lens, *map;
    embd_item *res;
    float *vecs;
};

embd_chunker *embd_chunker_new(size_t max_items, int n_embd) {
    embd_chunker *k = calloc(1, sizeof *k);
    if (!k) return NULL;
    k->cap = max_items ? max_items : 1;
    k->H = n_embd;
    k->items = calloc(k->cap, sizeof *k->items);
    k->texts = calloc(k->cap, sizeof *k->texts);
    k->lens = calloc(k->cap, sizeof *k->lens);
    k->map = calloc(k->cap, sizeof *k->map);
    k->res = calloc(k->cap, sizeof *k->res);
    k->vecs = malloc(k->cap * (size_t)n_embd * sizeof *k->vecs);
    if (!k->items || !k->texts || !k->lens || !k->map || !k->res || !k->vecs) {
        embd_chunker_free(k);
        return NULL;
    }
    return k;
}

static void chunker_clear(embd_chunker *k) {
    for (size_t i = 0; i < k->n; i++) {
        json_decref(k->items[i].id);
        free(k->items[i].text);
        memset(&k->items[i], 0, sizeof k->items[i]);
    }
    k->n = 0;
}

void embd_chunker_free(embd_chunker *k) {
    if (!k) return;
    if (k->items) chunker_clear(k);
    free(k->items), free(k->texts), free(k->lens), free(k->map), free(k->res), free(k->vecs), free(k);
}

size_t embd_chunker_count(const embd_chunker *k) { return k->n; }
bool embd_chunker_full(const embd_chunker *k) { return k->n >= k->cap; }

void embd_chunker_add(embd_chunker *k, char *line, size_t len, size_t line_no) {
    if (k->n >= k->cap) return;
    item *it = &k->items[k->n++];
    it->line = line_no;
    parse_item(it, line, len);
}

int embd_chunker_run(embd_chunker *k, const embd_runner *r, const embd_jobopts *o, embd_buf *res, embd_buf *errs,
                     size_t *tokens, size_t *errors, char *err, size_t errlen) {
    const int H = k->H;
    size_t m = 0;
    for (size_t i = 0; i < k->n; i++)
        if (!k->items[i].error[0]) k->texts[m] = k->items[i].text, k->lens[m] = k->items[i].len, k->map[m++] = i;
    if (m && r->embed(r->ud, k->texts, k->lens, m, o, k->vecs, k->res, err, errlen)) {
        chunker_clear(k);
        return -1;
    }
    int brc = 0;
    for (size_t j = 0, i = 0; i < k->n; i++) {
        item *it = &k->items[i];
        const embd_item *er = !it->error[0] ? &k->res[j] : NULL;
        const float *v = !it->error[0] ? k->vecs + j * (size_t)H : NULL;
        if (!it->error[0]) j++;
        if (er && er->status == EMBD_ITEM_OK) {
            json_t *e = json_array();
            for (int d = 0; d < H && e; d++) json_array_append_new(e, json_real(v[d]));
            *tokens += (size_t)er->n_tokens;
            brc |= buf_json_line(res, json_pack("{s:o, s:o*, s:i, s:b}", "id", item_id(it), "embedding", e, "tokens",
                                                er->n_tokens, "truncated", er->truncated));
        } else {
            (*errors)++;
            brc |= buf_json_line(errs, json_pack("{s:o, s:I, s:s}", "id", item_id(it), "line", (json_int_t)it->line,
                                                 "error", er ? er->message : it->error));
        }
    }
    chunker_clear(k);
    return brc ? embd_fail(err, errlen, "out of memory while writing results") : 0;
}

/* ---- npy export ------------------------------------------------------------------------------ */

/* results/<id>.npy: the vectors of the jsonl, float32, streamed row by row. */
static int export_npy(embd_spool *sp, const embd_claim *c, int H, size_t rows, char *err, size_t errlen) {
    char src[4200], dst[4200], tmp[4300];
    embd_spool_path(sp, src, sizeof src, "results", c->id, ".jsonl");
    embd_spool_path(sp, dst, sizeof dst, "results", c->id, ".npy");
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", dst, (int)getpid());
    FILE *in = fopen(src, "rb"), *out = fopen(tmp, "wb");
    float *row = malloc((size_t)H * sizeof *row);
    int rc = -1;
    char *line = NULL;
    size_t cap = 0, got = 0;
    if (!in || !out || !row) goto done;
    char hdr[128];
    int hl = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, %d), }", rows, H);
    int total = 10 + hl + 1, pad = (64 - total % 64) % 64;
    unsigned short hlen = (unsigned short)(hl + pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, out);
    fputc(hlen & 0xff, out), fputc(hlen >> 8, out);
    fwrite(hdr, 1, (size_t)hl, out);
    for (int i = 0; i < pad; i++) fputc(' ', out);
    fputc('\n', out);
    ssize_t n;
    while ((n = getline(&line, &cap, in)) > 0) {
        json_error_t je;
        json_t *j = json_loadb(line, (size_t)n, 0, &je);
        json_t *e = json_object_get(j, "embedding");
        if (json_array_size(e) != (size_t)H) {
            json_decref(j);
            goto done;
        }
        for (int k = 0; k < H; k++) row[k] = (float)json_number_value(json_array_get(e, (size_t)k));
        json_decref(j);
        fwrite(row, sizeof *row, (size_t)H, out);
        got++;
    }
    if (got == rows && !ferror(out) && fflush(out) == 0 && fsync(fileno(out)) == 0) rc = 0;
done:
    if (in) fclose(in);
    if (out && fclose(out)) rc = -1;
    free(row), free(line);
    if (rc == 0 && rename(tmp, dst)) rc = -1;
    if (rc) {
        unlink(tmp);
        embd_fail(err, errlen, "cannot write the npy results");
    }
    return rc;
}

/* ---- the job --------------------------------------------------------------------------------- */

embd_run_outcome embd_job_run(embd_spool *sp, embd_claim *c, const embd_runner *r, char *err, size_t errlen) {
    const size_t CH = r->chunk_items ? r->chunk_items : 64;
    const int H = r->n_embd;
    embd_run_outcome out = EMBD_RUN_FAILED;
    ckpt k;
    ckpt_load(sp, c->id, &k);
    rate_base rb = {.t0 = embd_now(), .started = wall_now(), .items0 = k.items, .tokens0 = k.tokens};
    char rp[4200], ep[4200];
    embd_spool_path(sp, rp, sizeof rp, "results", c->id, ".jsonl");
    embd_spool_path(sp, ep, sizeof ep, "results", c->id, ".errors.jsonl");
    int rfd = -1, efd = -1;
    FILE *in = NULL;
    char *line = NULL;
    size_t line_cap = 0;
    embd_chunker *ch = embd_chunker_new(CH, H);
    embd_buf rbuf = {0}, ebuf = {0};
    beat b = {.sp = sp, .c = c, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    pthread_t bt;
    bool beating = pthread_create(&bt, NULL, beat_main, &b) == 0;
    err[0] = 0;

    if (!ch) {
        embd_fail(err, errlen, "out of memory");
        goto end;
    }
    in = fopen(c->input, "rb");
    if (!in) {
        embd_fail(err, errlen, "cannot open input '%s': %s", c->input, strerror(errno));
        goto end;
    }
    if (fseeko(in, (off_t)k.input_offset, SEEK_SET)) {
        embd_fail(err, errlen, "cannot seek the input to its checkpoint");
        goto end;
    }
    if ((rfd = open_output(rp, k.results_bytes, err, errlen)) < 0 || (efd = open_output(ep, k.errors_bytes, err, errlen)) < 0)
        goto end;
    if (k.items) fprintf(stderr, "embd: job %s: resuming at item %zu of %zu\n", c->id, k.items, c->total);
    progress_save(sp, c, r, &k, &rb, NULL);

    for (;;) {
        if (atomic_load(&b.lost)) { out = EMBD_RUN_LOST; break; }
        if (embd_spool_cancel_requested(sp, c->id)) { out = EMBD_RUN_CANCELLED; break; }
        if (r->stop && atomic_load(r->stop)) { out = EMBD_RUN_STOPPED; break; }
        if (c->opts.deadline > 0 && wall_now() > c->opts.deadline) {
            embd_fail(err, errlen, "deadline passed with %zu of %zu items done", k.items, c->total);
            break;
        }
        /* Read one chunk; remember where it ends in the input. */
        size_t n = 0, lines = 0;
        long long off = k.input_offset;
        ssize_t got = 0;
        while (!embd_chunker_full(ch) && (got = getline(&line, &line_cap, in)) > 0) {
            off += got;
            size_t len = (size_t)got, no = k.lines + lines++;
            while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
            size_t s = 0;
            while (s < len && (line[s] == ' ' || line[s] == '\t')) s++;
            if (s == len) continue;
            embd_chunker_add(ch, line, len, no);
            n++;
        }
        if (got < 0 && ferror(in)) {
            embd_fail(err, errlen, "read error on the input");
            break;
        }
        if (n == 0 && lines == 0) { out = EMBD_RUN_DONE; break; }
        rbuf.n = ebuf.n = 0;
        size_t tokens = 0, errors = 0;
        if (embd_chunker_run(ch, r, &c->opts, &rbuf, &ebuf, &tokens, &errors, err, errlen)) {
            if (r->stop && atomic_load(r->stop)) out = EMBD_RUN_STOPPED;
            break;
        }
        /* Last look before writing: a stalled owner whose claim was recovered must not write. */
        if (atomic_load(&b.lost) || embd_spool_heartbeat(sp, c)) { out = EMBD_RUN_LOST; break; }
        if (write_all(rfd, rbuf.p, rbuf.n) || write_all(efd, ebuf.p, ebuf.n) || fsync(rfd) || fsync(efd)) {
            embd_fail(err, errlen, "cannot write results: %s", strerror(errno));
            break;
        }
        k.input_offset = off;
        k.results_bytes += (long long)rbuf.n;
        k.errors_bytes += (long long)ebuf.n;
        k.items += n;
        k.lines += lines;
        k.errors += errors;
        k.tokens += tokens;
        if (ckpt_save(sp, c->id, &k)) {
            embd_fail(err, errlen, "cannot write the checkpoint: %s", strerror(errno));
            break;
        }
        progress_save(sp, c, r, &k, &rb, NULL);
    }
    if (out == EMBD_RUN_DONE && c->opts.npy && export_npy(sp, c, H, k.items - k.errors, err, errlen)) out = EMBD_RUN_FAILED;

end:
    if (beating) {
        pthread_mutex_lock(&b.mu);
        b.quit = true;
        pthread_cond_signal(&b.cv);
        pthread_mutex_unlock(&b.mu);
        pthread_join(bt, NULL);
    }
    if (rfd >= 0) close(rfd);
    if (efd >= 0) close(efd);
    if (in) fclose(in);
    embd_chunker_free(ch);
    free(line), free(rbuf.p), free(ebuf.p);
    if (out == EMBD_RUN_FAILED && !err[0]) embd_fail(err, errlen, "job failed");
    if (out != EMBD_RUN_LOST) {
        if (out != EMBD_RUN_STOPPED) progress_save(sp, c, r, &k, &rb, out == EMBD_RUN_FAILED ? err : NULL);
        embd_jstate st = out == EMBD_RUN_DONE        ? EMBD_JS_DONE
                         : out == EMBD_RUN_CANCELLED ? EMBD_JS_CANCELLED
                         : out == EMBD_RUN_STOPPED   ? EMBD_JS_QUEUED
                                                     : EMBD_JS_FAILED;
        char e2[256];
        if (embd_spool_finish(sp, c, st, e2, sizeof e2)) fprintf(stderr, "embd: %s\n", e2);
    }
    return out;
}
