#include "worker/worker.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "engine/embed.h"
#include "util/sys.h"
#include "worker/protocol.h"

typedef struct {
    int fd;
    pthread_mutex_t wmu; /* frames from the two threads must not interleave */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool quit;
    _Atomic uint64_t batch; /* id of the batch being computed, 0 when idle */
    double interval;
} wstate;

static int send_frame(wstate *w, const embd_proto_buf *b) {
    char err[128];
    pthread_mutex_lock(&w->wmu);
    int rc = embd_proto_write(w->fd, b, err, sizeof err);
    pthread_mutex_unlock(&w->wmu);
    return rc;
}

static void *heartbeat_main(void *arg) {
    wstate *w = arg;
    embd_proto_buf b = {0};
    pthread_mutex_lock(&w->mu);
    while (!w->quit) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        long ns = ts.tv_nsec + (long)(w->interval * 1e9);
        ts.tv_sec += ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
        if (w->quit) break;
        pthread_mutex_unlock(&w->mu);
        b.len = 0;
        embd_proto_put_heartbeat(&b, atomic_load(&w->batch), embd_rss_bytes());
        int rc = send_frame(w, &b);
        pthread_mutex_lock(&w->mu);
        if (rc) break; /* the supervisor is gone; the main thread sees EOF */
    }
    pthread_mutex_unlock(&w->mu);
    embd_proto_buf_free(&b);
    return NULL;
}

/* "ID,ID,..." -> ids; n = 0 when unset or malformed. */
static size_t parse_ids(const char *s, int32_t *ids, size_t cap) {
    size_t n = 0;
    while (s && *s && n < cap) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s) return 0;
        ids[n++] = (int32_t)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return 0;
    }
    return n;
}

static bool contains(const int32_t *ids, size_t len, const int32_t *pat, size_t np) {
    for (size_t i = 0; np && i + np <= len; i++)
        if (!memcmp(ids + i, pat, np * sizeof *pat)) return true;
    return false;
}

/* Resets VmHWM so the next read is the peak of one batch (Linux >= 4.0; harmless elsewhere). */
static void reset_peak(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return;
    fputs("5", f);
    fclose(f);
}

static void fail_start(int fd, const char *msg) {
    embd_proto_buf b = {0};
    char err[64];
    embd_proto_put_fail(&b, msg);
    embd_proto_write(fd, &b, err, sizeof err);
    embd_proto_buf_free(&b);
}

int embd_worker_main(int argc, char **argv) {
    int fd = -1, threads = 0;
    long parent = 0;
    double interval = 0.5;
    const char *model = NULL, *tokenizer = NULL;
    static const struct option lo[] = {{"fd", required_argument, NULL, 'f'},
                                       {"model", required_argument, NULL, 'm'},
                                       {"tokenizer", required_argument, NULL, 'k'},
                                       {"threads", required_argument, NULL, 't'},
                                       {"heartbeat", required_argument, NULL, 'h'},
                                       {"parent", required_argument, NULL, 'p'},
                                       {0, 0, 0, 0}};
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "", lo, NULL)) != -1;) {
        switch (c) {
        case 'f': fd = atoi(optarg); break;
        case 'm': model = optarg; break;
        case 'k': tokenizer = optarg; break;
        case 't': threads = atoi(optarg); break;
        case 'h': interval = atof(optarg); break;
        case 'p': parent = atol(optarg); break;
        default: return 1;
        }
    }
    if (fd < 0 || !model || !(interval > 0)) {
        fprintf(stderr, "embd __worker: started by `embd serve`, not by hand\n");
        return 1;
    }
    /* Die with the server, even when it is SIGKILLed; and close the race with a parent that
     * died before the prctl. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (parent && getppid() != (pid_t)parent) return 1;
    /* A terminal's ^C or a service manager's SIGTERM to the whole group is the server's to handle:
     * it drains, then closes our socket. SIGKILL still works. */
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);

    int32_t crash_on[64], hang_on[64];
    size_t n_crash = parse_ids(getenv("EMBD_TEST_CRASH_ON"), crash_on, 64);
    size_t n_hang = parse_ids(getenv("EMBD_TEST_HANG_ON"), hang_on, 64);

    char err[256];
    embd_model_params mp = {.tokenizer_json = tokenizer};
    embd_model *m = embd_model_load(model, &mp, err, sizeof err);
    embd_encoder *enc = m ? embd_encoder_new(m, threads, err, sizeof err) : NULL;
    if (!enc) {
        fail_start(fd, err);
        embd_model_free(m);
        return 2;
    }
    wstate w = {.fd = fd, .interval = interval};
    embd_encoder_stats last = {0}; /* counts already reported in DEVSTAT frames */
    pthread_mutex_init(&w.wmu, NULL);
    pthread_mutex_init(&w.mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w.cv, &ca);
    pthread_condattr_destroy(&ca);

    embd_proto_buf out = {0};
    embd_proto_hello h = {.version = EMBD_PROTO_VERSION,
                          .pid = (int32_t)getpid(),
                          .n_embd = m->info.n_embd,
                          .n_ctx = m->info.n_ctx,
                          .n_vocab = m->info.n_vocab,
                          .threads = embd_encoder_threads(enc),
                          .rss = embd_rss_bytes()};
    embd_proto_put_hello(&out, &h);
    int rc = send_frame(&w, &out);
    pthread_t hb;
    bool hb_started = rc == 0 && pthread_create(&hb, NULL, heartbeat_main, &w) == 0;
    if (!hb_started) rc = 1;

    embd_proto_reader rd = {0};
    float *vec = NULL;
    embd_item *res = NULL;
    size_t cap = 0;
    while (rc == 0) {
        embd_frame f;
        bool eof;
        if (embd_proto_read(fd, &rd, 0, &f, &eof, err, sizeof err) != 1) {
            if (!eof) fprintf(stderr, "embd worker %d: %s\n", (int)getpid(), err);
            break;
        }
        if (f.type == EMBD_MSG_SHUTDOWN) break;
        if (f.type == EMBD_MSG_THREADS) {
            uint32_t t;
            if (embd_proto_get_threads(&f, &t, err, sizeof err)) {
                fprintf(stderr, "embd worker %d: %s\n", (int)getpid(), err);
                rc = 1;
                break;
            }
            embd_encoder_set_threads(enc, (int)t);
            continue;
        }
        embd_proto_batch b;
        if (embd_proto_get_batch(&f, &b, err, sizeof err)) {
            fprintf(stderr, "embd worker %d: %s\n", (int)getpid(), err);
            rc = 1;
            break;
        }
        for (uint32_t i = 0; i < b.n; i++) {
            if (n_crash && contains(b.ids[i], b.lens[i], crash_on, n_crash)) abort();
            if (n_hang && contains(b.ids[i], b.lens[i], hang_on, n_hang)) raise(SIGSTOP);
        }
        size_t need = (b.n ? b.n : 1) * (size_t)b.width; /* floats; res needs fewer entries */
        if (need > cap) {
            free(vec), free(res);
            vec = malloc(need * sizeof *vec);
            res = malloc(need * sizeof *res);
            cap = vec && res ? need : 0;
        }
        if (!cap) {
            embd_proto_batch_free(&b);
            rc = 1; /* out of memory: exit, the supervisor retries elsewhere/smaller */
            break;
        }
        atomic_store(&w.batch, b.id);
        reset_peak();
        int erc = -1;
        const int width = embd_model_out_dim(m, (embd_pooling)b.pooling);
        if ((int)b.width != width) {
            snprintf(err, sizeof err, "output width %u is not the model's %d", b.width, width);
        } else {
            embd_opts eo;
            embd_opts_default(&eo);
            eo.normalize = false;
            eo.truncate = true;
            eo.pooling = (embd_pooling)b.pooling;
            eo.batch_tokens = b.pass_tokens;
            erc = embd_embed_token_pairs(enc, b.ids, b.lens, b.n_first, b.n, &eo, vec, res, err, sizeof err);
        }
        if (erc) {
            memset(vec, 0, b.n * (size_t)b.width * sizeof *vec);
            for (uint32_t i = 0; i < b.n; i++) {
                res[i] = (embd_item){.status = EMBD_ITEM_FAILED};
                snprintf(res[i].message, sizeof res[i].message, "inference failed: %.100s", err);
            }
        }
        out.len = 0;
        embd_encoder_stats st;
        embd_encoder_get_stats(enc, &st);
        /* GPU workers report every batch (memory in use); CPU ones only splits and fallbacks */
        if (embd_encoder_on_gpu(enc) || st.splits != last.splits || st.cpu_fallbacks != last.cpu_fallbacks) {
            embd_proto_devstat d = {.splits = st.splits - last.splits, .cpu_fallbacks = st.cpu_fallbacks - last.cpu_fallbacks,
                                    .weight_bytes = st.weight_bytes, .compute_bytes = st.compute_bytes};
            last = st;
            embd_proto_put_devstat(&out, &d);
        }
        embd_proto_put_result(&out, b.id, b.n, (int)b.width, embd_peak_rss_bytes(), vec, res);
        atomic_store(&w.batch, 0);
        embd_proto_batch_free(&b);
        if (send_frame(&w, &out)) break;
    }
    if (hb_started) {
        pthread_mutex_lock(&w.mu);
        w.quit = true;
        pthread_cond_signal(&w.cv);
        pthread_mutex_unlock(&w.mu);
        pthread_join(hb, NULL);
    }
    free(vec), free(res);
    embd_proto_reader_free(&rd);
    embd_proto_buf_free(&out);
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    pthread_mutex_destroy(&w.wmu);
    embd_encoder_free(enc);
    embd_model_free(m);
    close(fd);
    return rc ? 1 : 0;
}
