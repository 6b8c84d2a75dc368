#include "worker/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "server/metrics.h"
#include "util/sys.h"
#include "worker/cgroup.h"
#include "worker/governor.h"
#include "worker/protocol.h"
#include "worker/scaler.h"

extern char **environ;

typedef struct {
    int index;
    pid_t pid; /* 0: none running */
    int fd;
    embd_proto_reader rd;
    embd_proto_buf wb;
    uint64_t next_id;
    int starts;
    /* auto-scaling */
    _Atomic int active;       /* the scheduler may give this lane batches */
    pthread_mutex_t run_mu;   /* held while a batch runs, so a lane is stopped only between batches */
    int threads_sent;         /* compute threads the worker was told */
    double run_start;         /* of the batch running now, 0: none (under the sup's smu) */
    double busy_acc, busy_seen, last_end, active_since;
} wslot;

struct embd_sup {
    embd_sup_opts o;
    _Atomic int threads;  /* per worker: cores / running workers */
    int cores;
    _Atomic int n_active; /* lanes 0..n_active-1 take batches */
    pthread_mutex_t smu;  /* busy statistics of the slots */
    pthread_t scaler;
    bool scaler_started;
    _Atomic bool quit;
    wslot *w;
    _Atomic int alive;
    _Atomic long long oom_seen; /* cgroup oom_kill count at the last look */
    int n_ctx, n_vocab;
    size_t hello_rss; /* a fresh worker's RSS */
    embd_gov *gov; /* NULL: no memory budget */
    /* emergency mode after repeated OOM kills: one batch at a time, smallest passes */
    pthread_mutex_t emu;
    double oom_times[2]; /* the last two OOM kills */
    double emergency_until;
    bool emergency_on;
};

#define EMERGENCY_WINDOW 60.0 /* two OOM kills within this enter emergency mode ... */
#define EMERGENCY_STABLE 60.0 /* ... which ends after this long without one (EMBD_EMERGENCY_STABLE_S) */

static double emergency_stable(void) {
    const char *v = getenv("EMBD_EMERGENCY_STABLE_S");
    double d = v && *v ? atof(v) : 0;
    return d > 0 ? d : EMERGENCY_STABLE;
}

void embd_sup_opts_default(embd_sup_opts *o) {
    memset(o, 0, sizeof *o);
    o->workers = 1;
    o->heartbeat_interval = 0.5;
    o->heartbeat_timeout = 10;
    o->start_timeout = 120;
    o->poison_after = 2;
}

/* One logfmt line per event on stderr, written whole. */
__attribute__((format(printf, 1, 2))) static void logev(const char *fmt, ...) {
    char line[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "embd: %s\n", line);
}

/* A value for logfmt: quoted, quotes and newlines made harmless. */
static const char *q(char *buf, size_t n, const char *s) {
    size_t k = 0;
    if (n < 3) return "\"\"";
    buf[k++] = '"';
    for (; *s && k + 2 < n; s++) buf[k++] = (*s == '"' || *s == '\n') ? '\'' : *s;
    buf[k++] = '"';
    buf[k] = 0;
    return buf;
}

static void count(embd_sup *s, const char *name, const char *help, const char *label, const char *value) {
    if (s->o.metrics) embd_metrics_count(s->o.metrics, name, help, label, value, 1);
}

static void publish_alive(embd_sup *s) {
    if (s->o.metrics)
        embd_metrics_gauge(s->o.metrics, "embd_workers", "Inference worker processes running.",
                           (double)atomic_load(&s->alive));
}

/* Waits for w's process to end (SIGKILL first when kill_now, and after `grace` seconds anyway),
 * closes its socket and says how it ended: cause is "exit", "signal", "oom" or kept as given
 * (when we killed it: "hang", "protocol"). */
static void reap(embd_sup *s, wslot *w, bool kill_now, double grace, char *cause, size_t causelen, char *detail,
                 size_t detlen) {
    if (w->pid <= 0) return;
    bool killed = kill_now;
    if (kill_now) kill(w->pid, SIGKILL);
    double until = embd_now() + grace;
    int st = 0;
    pid_t r;
    for (;;) {
        r = waitpid(w->pid, &st, WNOHANG);
        if (r == w->pid || (r < 0 && errno != EINTR)) break;
        if (!killed && embd_now() > until) {
            kill(w->pid, SIGKILL);
            killed = true;
        }
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    long long oom = embd_cgroup_oom_kills();
    long long seen = atomic_exchange(&s->oom_seen, oom);
    if (r != w->pid) {
        snprintf(detail, detlen, "not reapable: %s", strerror(errno));
    } else if (WIFEXITED(st)) {
        if (!kill_now) snprintf(cause, causelen, "exit");
        snprintf(detail, detlen, "exit status %d", WEXITSTATUS(st));
    } else if (WIFSIGNALED(st)) {
        int sig = WTERMSIG(st);
        const char *name = sigabbrev_np(sig);
        char d[256];
        snprintf(d, sizeof d, "%s", detail);
        if (sig == SIGKILL && oom >= 0 && seen >= 0 && oom > seen) {
            snprintf(cause, causelen, "oom");
            snprintf(detail, detlen, "killed by the kernel for memory (cgroup oom_kill %lld -> %lld)", seen, oom);
        } else if (!(kill_now && sig == SIGKILL)) {
            snprintf(cause, causelen, "signal");
            snprintf(detail, detlen, "signal SIG%s (%d)%s%.200s", name ? name : "?", sig, d[0] ? "; " : "", d);
        }
    }
    close(w->fd);
    w->fd = -1;
    w->pid = 0;
    embd_proto_reader_free(&w->rd);
    atomic_fetch_sub(&s->alive, 1);
    publish_alive(s);
}

/* Starts w's worker and waits for its HELLO. A worker started by a lane thread gets SIGKILL when
 * that thread ends (PR_SET_PDEATHSIG follows the spawning thread): that happens only when the
 * scheduler stops, after its last batch. */
static int spawn(embd_sup *s, wslot *w, char *err, size_t errlen) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
        return embd_fail(err, errlen, "socketpair: %s", strerror(errno));
    int child = sv[1];
    if (child == 3) { /* dup2(3, 3) would keep close-on-exec */
        child = fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
        close(sv[1]);
        if (child < 0) {
            close(sv[0]);
            return embd_fail(err, errlen, "fcntl: %s", strerror(errno));
        }
    }
    char thr[16], hb[32], parent[24];
    w->threads_sent = atomic_load(&s->threads);
    snprintf(thr, sizeof thr, "%d", w->threads_sent);
    snprintf(hb, sizeof hb, "%.3f", s->o.heartbeat_interval);
    snprintf(parent, sizeof parent, "%ld", (long)getpid());
    const char *argv[20];
    int a = 0;
    argv[a++] = "embd";
    argv[a++] = "__worker";
    argv[a++] = "--fd";
    argv[a++] = "3";
    argv[a++] = "--model";
    argv[a++] = s->o.model_path;
    if (s->o.tokenizer_json) {
        argv[a++] = "--tokenizer";
        argv[a++] = s->o.tokenizer_json;
    }
    argv[a++] = "--threads";
    argv[a++] = thr;
    argv[a++] = "--heartbeat";
    argv[a++] = hb;
    argv[a++] = "--parent";
    argv[a++] = parent;
    argv[a] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, child, 3);
    posix_spawnattr_init(&at);
    sigset_t none, dflt;
    sigemptyset(&none);
    sigemptyset(&dflt);
    sigaddset(&dflt, SIGPIPE);
    sigaddset(&dflt, SIGTERM);
    sigaddset(&dflt, SIGCHLD);
    posix_spawnattr_setsigmask(&at, &none); /* the server blocks SIGTERM/SIGINT for sigwait */
    posix_spawnattr_setsigdefault(&at, &dflt);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid;
    const char *exe = s->o.exe ? s->o.exe : "/proc/self/exe";
    int rc = posix_spawn(&pid, exe, &fa, &at, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(child);
    if (rc) {
        close(sv[0]);
        return embd_fail(err, errlen, "cannot start a worker (%s): %s", exe, strerror(rc));
    }
    w->pid = pid;
    w->fd = sv[0];
    atomic_fetch_add(&s->alive, 1);
    embd_frame f;
    bool eof;
    char e[512] = "";
    int r = embd_proto_read(w->fd, &w->rd, embd_now() + s->o.start_timeout, &f, &eof, e, sizeof e);
    embd_proto_hello h;
    if (r == 1 && f.type == EMBD_MSG_HELLO && embd_proto_get_hello(&f, &h, e, sizeof e) == 0) {
        if (h.n_embd == s->o.n_embd) {
            s->n_ctx = h.n_ctx;
            s->n_vocab = h.n_vocab;
            if (h.rss > s->hello_rss) s->hello_rss = (size_t)h.rss;
            w->starts++;
            logev("event=worker_start worker=%d pid=%d threads=%d start=%d rss_mib=%.1f", w->index, (int)pid,
                  h.threads, w->starts, (double)h.rss / (1 << 20));
            if (w->starts > 1)
                count(s, "embd_worker_restarts_total", "Inference workers started again after one was lost.", NULL,
                      NULL);
            publish_alive(s);
            return 0;
        }
        snprintf(e, sizeof e, "worker reports %d dimensions, the server's model %d", h.n_embd, s->o.n_embd);
    } else if (r == 1 && f.type == EMBD_MSG_FAIL) {
        char m[400] = "";
        embd_proto_get_fail(&f, m, sizeof m, e, sizeof e);
        snprintf(e, sizeof e, "%s", m);
    } else if (r == 0) {
        snprintf(e, sizeof e, "no HELLO within %.0f s", s->o.start_timeout);
    } else if (r == 1) {
        snprintf(e, sizeof e, "unexpected first frame type %u", f.type);
    }
    char cause[32] = "start", detail[256] = "";
    reap(s, w, r != -1, 2, cause, sizeof cause, detail, sizeof detail);
    return embd_fail(err, errlen, "worker %d failed to start: %s%s%s", w->index, e, detail[0] ? "; " : "", detail);
}

/* SHUTDOWN, then no more writes: the worker exits after its batch (reap() waits for it). */
static void ask_to_exit(wslot *w) {
    embd_proto_buf b = {0};
    char e[128];
    embd_proto_put_empty(&b, EMBD_MSG_SHUTDOWN);
    embd_proto_write(w->fd, &b, e, sizeof e);
    embd_proto_buf_free(&b);
    shutdown(w->fd, SHUT_WR);
}

static void emergency_gauge(embd_sup *s, int on) {
    if (s->o.metrics)
        embd_metrics_gauge(s->o.metrics, "embd_emergency_mode",
                           "1 while repeated OOM kills keep the workers to one batch at a time at the smallest size.", on);
}

/* The worker was lost in a batch: reap it, log and count how, start another. */
static void lost(embd_sup *s, wslot *w, bool kill_now, const char *why, const char *detail, size_t items) {
    pid_t pid = w->pid;
    char cause[32], det[256], qb[300];
    snprintf(cause, sizeof cause, "%s", why);
    snprintf(det, sizeof det, "%s", detail);
    reap(s, w, kill_now, 1, cause, sizeof cause, det, sizeof det);
    logev("event=worker_lost worker=%d pid=%d cause=%s items=%zu detail=%s", w->index, (int)pid, cause, items,
          q(qb, sizeof qb, det));
    count(s, "embd_worker_exits_total", "Inference workers lost while running a batch, by cause.", "cause", cause);
    if (!strcmp(cause, "oom")) {
        if (s->gov) embd_gov_pressure(s->gov);
        pthread_mutex_lock(&s->emu);
        double now = embd_now();
        s->oom_times[0] = s->oom_times[1];
        s->oom_times[1] = now;
        if (s->oom_times[0] > 0 && now - s->oom_times[0] < EMERGENCY_WINDOW) {
            s->emergency_until = now + emergency_stable();
            /* gauge before log: whoever sees the line must see the state */
            emergency_gauge(s, 1);
            if (!s->emergency_on) logev("event=emergency_mode state=on reason=\"2 OOM kills within %.0f s\"",
                                        EMERGENCY_WINDOW);
            s->emergency_on = true;
        }
        pthread_mutex_unlock(&s->emu);
    }
    char err[512];
    if (spawn(s, w, err, sizeof err)) logev("event=worker_start_failed worker=%d detail=%s", w->index, q(qb, sizeof qb, err));
}

enum { RAN = 0, LOST = -1, NO_WORKER = -2 };

/* A GPU worker's memory events and usage, published as they come (see embd_metrics_device). */
static void devstat(embd_sup *s, const embd_proto_devstat *d) {
    if (d->cpu_fallbacks)
        logev("event=gpu_cpu_fallback sequences=%llu", (unsigned long long)d->cpu_fallbacks);
    if (s->o.metrics)
        embd_metrics_device(s->o.metrics, d->splits, d->cpu_fallbacks, d->weight_bytes, d->compute_bytes);
}

/* Runs items [lo, hi) of b on w once. */
static int try_batch(embd_sup *s, wslot *w, const embd_batch *b, size_t lo, size_t hi, size_t pass, float *out,
                     embd_item *res, uint64_t *peak, char *why, size_t whylen) {
    for (int tries = 0; w->pid <= 0; tries++) {
        if (tries == 3) return NO_WORKER;
        if (tries) {
            struct timespec ts = {0, 200000000L * tries};
            nanosleep(&ts, NULL);
        }
        if (spawn(s, w, why, whylen)) logev("event=worker_start_failed worker=%d", w->index);
    }
    const int width = s->o.width;
    const size_t n = hi - lo;
    uint64_t id = ++w->next_id;
    w->wb.len = 0;
    w->wb.oom = false;
    embd_proto_put_batch(&w->wb, id, n, width, b->pooling, pass, b->ids + lo, b->lens + lo,
                         b->n_first ? b->n_first + lo : NULL);
    char e[512];
    if (embd_proto_write(w->fd, &w->wb, e, sizeof e)) {
        if (w->wb.oom) { /* nothing was sent: smaller halves may fit */
            snprintf(why, whylen, "%s", e);
            return LOST;
        }
        lost(s, w, false, "exit", e, n);
        snprintf(why, whylen, "worker lost: %.400s", e);
        return LOST;
    }
    /* Heartbeats come from their own thread; a compute loop that never ends would still send them,
     * so a whole batch also has a generous deadline. */
    size_t tokens = 0;
    for (size_t i = lo; i < hi; i++) tokens += b->lens[i];
    double t0 = embd_now(), limit = 600 + 0.2 * (double)tokens;
    double deadline = t0 + s->o.heartbeat_timeout;
    for (;;) {
        embd_frame f;
        bool eof;
        int r = embd_proto_read(w->fd, &w->rd, deadline < t0 + limit ? deadline : t0 + limit, &f, &eof, e, sizeof e);
        if (r == 0) {
            if (embd_now() >= t0 + limit)
                snprintf(e, sizeof e, "batch of %zu tokens still running after %.0f s", tokens, limit);
            else
                snprintf(e, sizeof e, "no heartbeat for %.1f s", s->o.heartbeat_timeout);
            lost(s, w, true, "hang", e, n);
            snprintf(why, whylen, "worker hung: %.400s", e);
            return LOST;
        }
        if (r < 0) {
            /* EOF: it is dying; give it a moment so the exit status is its own */
            lost(s, w, !eof && strncmp(e, "connection closed", 17), eof ? "exit" : "protocol", e, n);
            snprintf(why, whylen, "worker lost: %.400s", e);
            return LOST;
        }
        deadline = embd_now() + s->o.heartbeat_timeout;
        if (f.type == EMBD_MSG_HEARTBEAT) continue;
        if (f.type == EMBD_MSG_DEVSTAT) {
            embd_proto_devstat d;
            if (embd_proto_get_devstat(&f, &d, e, sizeof e) == 0) {
                devstat(s, &d);
                continue;
            }
        }
        if (f.type == EMBD_MSG_RESULT &&
            embd_proto_get_result(&f, id, n, width, out + lo * (size_t)width, res + lo, peak, e, sizeof e) == 0)
            return RAN;
        if (f.type != EMBD_MSG_RESULT) snprintf(e, sizeof e, "unexpected frame type %u", f.type);
        lost(s, w, true, "protocol", e, n);
        snprintf(why, whylen, "worker lost: %.400s", e);
        return LOST;
    }
}

/* Whether emergency mode is on (and leaves it after a stable period). */
static bool emergency(embd_sup *s) {
    pthread_mutex_lock(&s->emu);
    if (s->emergency_on && embd_now() > s->emergency_until) {
        s->emergency_on = false;
        emergency_gauge(s, 0);
        logev("event=emergency_mode state=off stable_s=%.0f", emergency_stable());
    }
    bool on = s->emergency_on;
    pthread_mutex_unlock(&s->emu);
    return on;
}

static void govern(embd_sup *s, wslot *w, size_t tokens, uint64_t peak) {
    int ch = embd_gov_observe(s->gov, tokens, (size_t)peak);
    size_t limit = embd_gov_limit(s->gov);
    if (ch < 0)
        logev("event=memory_pressure worker=%d peak_mib=%.1f share_mib=%.1f batch_tokens=%zu", w->index,
              (double)peak / (1 << 20), (double)embd_gov_share(s->gov) / (1 << 20), limit);
    else if (ch > 0)
        logev("event=batch_grow worker=%d peak_mib=%.1f batch_tokens=%zu", w->index, (double)peak / (1 << 20), limit);
    if (s->o.metrics) {
        embd_metrics_gauge(s->o.metrics, "embd_batch_tokens_limit",
                           "Adaptive forward-pass size (tokens) chosen by the memory governor.", (double)limit);
        embd_metrics_gauge(s->o.metrics, "embd_worker_peak_memory_bytes",
                           "Highest peak RSS of an inference worker during a batch.", (double)s->gov->peak);
    }
}

static void fail_items(embd_item *res, size_t lo, size_t hi, const char *fmt, const char *arg) {
    for (size_t i = lo; i < hi; i++) {
        res[i] = (embd_item){.status = EMBD_ITEM_FAILED};
        snprintf(res[i].message, sizeof res[i].message, fmt, arg);
    }
}

/* Runs [lo, hi) until every item has an outcome: a lost batch is re-run in halves, a lone item
 * gets poison_after tries. */
static void run_range(embd_sup *s, wslot *w, const embd_batch *b, size_t lo, size_t hi, float *out, embd_item *res,
                      uint8_t *deaths) {
    size_t max_len = 0, tokens = 0;
    for (size_t i = lo; i < hi; i++) {
        tokens += b->lens[i];
        if (b->lens[i] > max_len) max_len = b->lens[i];
    }
    for (;;) {
        char why[512] = "";
        size_t pass = s->gov ? embd_gov_pass_tokens(s->gov, max_len) : b->pass_tokens;
        if (emergency(s)) pass = max_len > s->o.min_batch ? max_len : s->o.min_batch;
        uint64_t peak = 0;
        int rc = try_batch(s, w, b, lo, hi, pass, out, res, &peak, why, sizeof why);
        if (rc == RAN) {
            if (s->gov) govern(s, w, pass < tokens ? pass : tokens, peak);
            return;
        }
        if (rc == NO_WORKER) {
            fail_items(res, lo, hi, "no inference worker: %.100s", why);
            return;
        }
        if (hi - lo > 1) {
            size_t mid = lo + (hi - lo) / 2;
            logev("event=batch_split worker=%d items=%zu halves=%zu+%zu", w->index, hi - lo, mid - lo, hi - mid);
            count(s, "embd_batch_splits_total", "Batches re-run in halves after their worker was lost.", NULL, NULL);
            run_range(s, w, b, lo, mid, out, res, deaths);
            run_range(s, w, b, mid, hi, out, res, deaths);
            return;
        }
        if (++deaths[lo] >= s->o.poison_after) {
            logev("event=poison_input worker=%d tokens=%zu deaths=%d", w->index, b->lens[lo], deaths[lo]);
            count(s, "embd_poison_items_total", "Items failed alone because their worker died on them repeatedly.",
                  NULL, NULL);
            res[lo] = (embd_item){.status = EMBD_ITEM_FAILED};
            snprintf(res[lo].message, sizeof res[lo].message,
                     "poison input: the inference worker died on this item alone %d times", deaths[lo]);
            return;
        }
    }
}

static int sup_run(void *ud, int lane, const embd_batch *b, float *out, embd_item *res, char *err, size_t errlen) {
    embd_sup *s = ud;
    if (lane < 0 || lane >= s->o.workers) return embd_fail(err, errlen, "no worker lane %d", lane);
    uint8_t *deaths = calloc(b->n ? b->n : 1, 1);
    if (!deaths) return embd_fail(err, errlen, "out of memory");
    memset(out, 0, b->n * (size_t)s->o.width * sizeof *out);
    bool serial = emergency(s);
    static pthread_mutex_t one_at_a_time = PTHREAD_MUTEX_INITIALIZER;
    if (serial) pthread_mutex_lock(&one_at_a_time);
    wslot *w = &s->w[lane];
    pthread_mutex_lock(&w->run_mu);
    const int want = atomic_load(&s->threads);
    if (w->pid > 0 && w->threads_sent != want) { /* the cores were re-divided: tell it before the batch */
        embd_proto_buf tb = {0};
        char e[128];
        embd_proto_put_threads(&tb, (uint32_t)want);
        if (!tb.oom && !embd_proto_write(w->fd, &tb, e, sizeof e)) w->threads_sent = want;
        embd_proto_buf_free(&tb);
    }
    pthread_mutex_lock(&s->smu);
    w->run_start = embd_now();
    pthread_mutex_unlock(&s->smu);
    run_range(s, w, b, 0, b->n, out, res, deaths);
    pthread_mutex_lock(&s->smu);
    double now = embd_now();
    w->busy_acc += now - w->run_start;
    w->run_start = 0;
    w->last_end = now;
    pthread_mutex_unlock(&s->smu);
    pthread_mutex_unlock(&w->run_mu);
    if (serial) pthread_mutex_unlock(&one_at_a_time);
    free(deaths);
    return 0;
}

static int sup_active(void *ud, int lane) { return atomic_load(&((embd_sup *)ud)->w[lane].active); }

static void publish_scale(embd_sup *s) {
    if (!s->o.metrics) return;
    embd_metrics_gauge(s->o.metrics, "embd_workers_active", "Inference workers taking batches (auto-scaling).",
                       (double)atomic_load(&s->n_active));
    embd_metrics_gauge(s->o.metrics, "embd_worker_threads", "Compute threads of each inference worker.",
                       (double)atomic_load(&s->threads));
}

static double env_num(const char *name, double dflt) {
    const char *v = getenv(name);
    return v && *v ? atof(v) : dflt;
}

/* The auto-scaler: every scale_interval, measure (machine CPU, how busy each running worker was,
 * how long the newest one idled, memory) and let embd_scale_decide grow or shrink by one. */
static void *scaler_main(void *arg) {
    embd_sup *s = arg;
    embd_scale_opts so;
    embd_scale_opts_default(&so);
    so.min_workers = s->o.min_workers;
    so.max_workers = s->o.workers;
    /* EMBD_AUTOSCALE_* override the thresholds (tests, tuning) */
    so.cpu_high = env_num("EMBD_AUTOSCALE_CPU_HIGH", so.cpu_high);
    so.cpu_low = env_num("EMBD_AUTOSCALE_CPU_LOW", so.cpu_low);
    so.idle_s = env_num("EMBD_AUTOSCALE_IDLE_S", so.idle_s);
    embd_scale_state st;
    embd_scale_state_init(&st);
    unsigned long long b0 = 0, t0 = 0, b1, t1;
    bool have_cpu = embd_cpu_times(&b0, &t0) == 0;
    double last = embd_now();
    while (!atomic_load(&s->quit)) {
        for (double slept = 0; slept < s->o.scale_interval && !atomic_load(&s->quit); slept += 0.05) {
            struct timespec ts = {0, 50000000L};
            nanosleep(&ts, NULL);
        }
        if (atomic_load(&s->quit)) break;
        double now = embd_now(), dt = now - last;
        last = now;
        embd_scale_in in = {.cpu = 0, .workers = atomic_load(&s->n_active), .min_busy = 1};
        if (have_cpu && embd_cpu_times(&b1, &t1) == 0 && t1 > t0) {
            in.cpu = (double)(b1 - b0) / (double)(t1 - t0);
            b0 = b1, t0 = t1;
        }
        pthread_mutex_lock(&s->smu);
        for (int i = 0; i < in.workers; i++) {
            wslot *w = &s->w[i];
            double total = w->busy_acc + (w->run_start > 0 ? now - w->run_start : 0);
            double frac = dt > 0 ? (total - w->busy_seen) / dt : 0;
            w->busy_seen = total;
            if (frac < in.min_busy) in.min_busy = frac;
        }
        wslot *nw = &s->w[in.workers - 1];
        double since = nw->last_end > nw->active_since ? nw->last_end : nw->active_since;
        in.newest_idle_s = nw->run_start > 0 ? 0 : now - since;
        pthread_mutex_unlock(&s->smu);
        if (s->gov) {
            in.mem_budget = embd_gov_share(s->gov) * (size_t)s->o.workers;
            in.mem_per_worker = s->gov->peak > s->hello_rss ? (size_t)s->gov->peak : s->hello_rss;
            in.mem_used = in.mem_per_worker * (size_t)in.workers;
        }
        const char *why;
        int d = embd_scale_decide(&so, &st, &in, &why);
        if (d == 0) continue;
        int n = in.workers + d;
        if (d > 0) {
            wslot *w = &s->w[n - 1];
            atomic_store(&s->threads, embd_scale_threads(s->cores, n));
            char err[512];
            pthread_mutex_lock(&w->run_mu);
            int rc = w->pid > 0 ? 0 : spawn(s, w, err, sizeof err);
            pthread_mutex_unlock(&w->run_mu);
            if (rc) {
                atomic_store(&s->threads, embd_scale_threads(s->cores, in.workers));
                logev("event=scale_up_failed workers=%d detail=\"%.300s\"", n, err);
                continue;
            }
            pthread_mutex_lock(&s->smu);
            w->active_since = embd_now();
            w->busy_seen = w->busy_acc;
            pthread_mutex_unlock(&s->smu);
            atomic_store(&s->n_active, n);
            atomic_store(&w->active, 1);
        } else {
            wslot *w = &s->w[in.workers - 1];
            atomic_store(&w->active, 0);
            atomic_store(&s->n_active, n);
            pthread_mutex_lock(&w->run_mu); /* a batch it already took finishes first */
            if (w->pid > 0) {
                char cause[32] = "scale_down", detail[256] = "";
                ask_to_exit(w);
                reap(s, w, false, 5, cause, sizeof cause, detail, sizeof detail);
            }
            pthread_mutex_unlock(&w->run_mu);
            atomic_store(&s->threads, embd_scale_threads(s->cores, n));
        }
        logev("event=scale_%s workers=%d threads=%d cpu=%.2f predicted=%.2f busy=%.2f reason=\"%s\"",
              d > 0 ? "up" : "down", n, atomic_load(&s->threads), in.cpu, st.predicted, in.min_busy, why);
        publish_scale(s);
    }
    return NULL;
}

/* One synthetic batch of n sequences of len tokens on worker 0: its peak RSS, 0 on failure. */
static size_t calib_run(embd_sup *s, size_t n, size_t len) {
    int32_t *ids = malloc(len * sizeof *ids);
    const int32_t **pp = malloc(n * sizeof *pp);
    size_t *lens = malloc(n * sizeof *lens);
    float *out = malloc(n * (size_t)s->o.width * sizeof *out);
    embd_item *res = malloc(n * sizeof *res);
    uint64_t peak = 0;
    if (ids && pp && lens && out && res) {
        for (size_t i = 0; i < len; i++) ids[i] = (int32_t)((100 + i % 1000) % (size_t)s->n_vocab); /* any ids */
        for (size_t i = 0; i < n; i++) pp[i] = ids, lens[i] = len;
        embd_batch b = {.ids = pp, .lens = lens, .n = n, .tokens = n * len, .pooling = EMBD_POOL_UNSPECIFIED};
        char why[512];
        if (try_batch(s, &s->w[0], &b, 0, n, n * len, out, res, &peak, why, sizeof why) != RAN) peak = 0;
    }
    free(ids), free(pp), free(lens), free(out), free(res);
    return (size_t)peak;
}

/* Budget minus what the server itself holds, split between the workers; calibrated on worker 0
 * with a short and a long pass (the long one at the model's context length, where attention
 * costs most per token). */
static int start_governor(embd_sup *s, char *err, size_t errlen) {
    size_t server = embd_rss_bytes();
    if (s->o.mem_budget <= server)
        return embd_fail(err, errlen, "the memory budget (%zu MiB) is below what the server alone uses (%zu MiB)",
                         s->o.mem_budget >> 20, server >> 20);
    s->gov = calloc(1, sizeof *s->gov);
    if (!s->gov) return embd_fail(err, errlen, "out of memory");
    embd_gov_opts go = {.budget = s->o.mem_budget - server, .workers = s->o.workers,
                        .min_tokens = s->o.min_batch, .max_tokens = s->o.max_batch};
    embd_gov_init(s->gov, &go);
    size_t long_len = s->n_ctx < 128 ? (size_t)s->n_ctx : 128;
    size_t t1 = 16, t2 = 2 * long_len;
    double t0 = embd_now();
    if (s->o.calibrate) {
        size_t p1 = calib_run(s, 1, t1), p2 = calib_run(s, 2, long_len);
        if (!p1 || !p2) return embd_fail(err, errlen, "memory calibration failed: worker 0 did not run its batches");
        embd_gov_calibrate(s->gov, t1, p1, t2, p2);
    } else { /* a roomy default budget: start from the idle size, learn the slope from real batches */
        embd_gov_calibrate(s->gov, 1, s->hello_rss, 1, s->hello_rss);
    }
    logev("event=memory_calibration measured=%s budget_mib=%.1f why_budget=\"%s\" share_mib=%.1f base_mib=%.1f kib_per_token=%.2f "
          "peak_at_%d_tokens_mib=%.1f batch_tokens=%zu seconds=%.2f",
          s->o.calibrate ? "yes" : "no", (double)s->o.mem_budget / (1 << 20), s->o.mem_budget_why[0] ? s->o.mem_budget_why : "given",
          (double)embd_gov_share(s->gov) / (1 << 20), s->gov->base / (1 << 20), s->gov->slope / 1024, s->n_ctx,
          embd_gov_predict(s->gov, (size_t)s->n_ctx) / (1 << 20), embd_gov_pass_tokens(s->gov, 1), embd_now() - t0);
    if (s->o.metrics) {
        embd_metrics_gauge(s->o.metrics, "embd_memory_budget_bytes", "Memory budget of the server and its workers.",
                           (double)s->o.mem_budget);
        embd_metrics_gauge(s->o.metrics, "embd_batch_tokens_limit",
                           "Adaptive forward-pass size (tokens) chosen by the memory governor.",
                           (double)embd_gov_limit(s->gov));
    }
    return embd_gov_check(s->gov, s->n_ctx, err, errlen);
}

embd_sup *embd_sup_new(const embd_sup_opts *o, char *err, size_t errlen) {
    if (o->workers < 1 || o->workers > 256 || !o->model_path || o->n_embd < 1 || o->poison_after < 1 ||
        !(o->heartbeat_interval > 0) || !(o->heartbeat_timeout > o->heartbeat_interval) || !(o->start_timeout > 0)) {
        embd_fail(err, errlen, "bad worker options (workers 1..256, heartbeat timeout > interval > 0)");
        return NULL;
    }
    embd_sup *s = calloc(1, sizeof *s);
    wslot *w = calloc((size_t)o->workers, sizeof *w);
    if (!s || !w) {
        free(s), free(w);
        embd_fail(err, errlen, "out of memory");
        return NULL;
    }
    s->o = *o;
    if (s->o.width < 1) s->o.width = s->o.n_embd; /* callers that only embed */
    s->w = w;
    s->cores = o->threads > 0 ? o->threads : embd_cpu_count();
    if (s->o.min_workers < 1 || s->o.min_workers > o->workers) s->o.min_workers = o->autoscale ? 1 : o->workers;
    if (!s->o.autoscale) s->o.min_workers = o->workers;
    if (!(s->o.scale_interval > 0)) s->o.scale_interval = 2;
    const int start = s->o.min_workers;
    atomic_store(&s->n_active, start);
    atomic_store(&s->threads, embd_scale_threads(s->cores, o->autoscale ? start : o->workers));
    atomic_store(&s->oom_seen, embd_cgroup_oom_kills());
    for (int i = 0; i < o->workers; i++) {
        s->w[i] = (wslot){.index = i, .fd = -1};
        atomic_store(&s->w[i].active, i < start);
        pthread_mutex_init(&s->w[i].run_mu, NULL);
    }
    pthread_mutex_init(&s->emu, NULL);
    pthread_mutex_init(&s->smu, NULL);
    for (int i = 0; i < start; i++)
        if (spawn(s, &s->w[i], err, errlen)) {
            embd_sup_free(s);
            return NULL;
        }
    if (o->mem_budget && start_governor(s, err, errlen)) {
        embd_sup_free(s);
        return NULL;
    }
    emergency_gauge(s, 0);
    publish_scale(s);
    if (s->o.autoscale && s->o.workers > start) {
        if (pthread_create(&s->scaler, NULL, scaler_main, s)) {
            embd_fail(err, errlen, "cannot start the auto-scaler thread");
            embd_sup_free(s);
            return NULL;
        }
        s->scaler_started = true;
        logev("event=autoscale workers=%d..%d threads_per_worker=%d cores=%d interval_s=%.1f", start, s->o.workers,
              atomic_load(&s->threads), s->cores, s->o.scale_interval);
    }
    return s;
}

void embd_sup_executor(embd_sup *s, embd_executor *x) {
    *x = (embd_executor){.lanes = s->o.workers, .width = s->o.width, .run = sup_run, .ud = s,
                         .active = s->o.autoscale ? sup_active : NULL};
}

int embd_sup_threads(const embd_sup *s) { return atomic_load(&s->threads); }
int embd_sup_workers(const embd_sup *s) { return atomic_load(&s->n_active); }

void embd_sup_free(embd_sup *s) {
    if (!s) return;
    atomic_store(&s->quit, true);
    if (s->scaler_started) pthread_join(s->scaler, NULL);
    for (int i = 0; i < s->o.workers; i++) { /* all first, so that they exit in parallel */
        wslot *w = &s->w[i];
        if (w->pid > 0) ask_to_exit(w);
    }
    for (int i = 0; i < s->o.workers; i++) {
        wslot *w = &s->w[i];
        char cause[32] = "shutdown", detail[256] = "";
        pid_t pid = w->pid;
        if (pid > 0) {
            reap(s, w, false, 5, cause, sizeof cause, detail, sizeof detail);
            logev("event=worker_stop worker=%d pid=%d detail=\"%s\"", i, (int)pid, detail);
        }
        embd_proto_reader_free(&w->rd);
        embd_proto_buf_free(&w->wb);
    }
    for (int i = 0; i < s->o.workers; i++) pthread_mutex_destroy(&s->w[i].run_mu);
    free(s->w);
    pthread_mutex_destroy(&s->smu);
    if (s->gov) embd_gov_destroy(s->gov);
    free(s->gov);
    pthread_mutex_destroy(&s->emu);
    free(s);
}
