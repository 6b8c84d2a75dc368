/* Spool-directory job queue; the file-system contract is described in spool.h. */
#include "queue/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "util/sys.h"

static const char *const STATE_DIR[] = {"queue", "running", "done", "failed", "cancelled"};
static const char *const STATE_NAME[] = {"queued", "running", "done", "failed", "cancelled", "unknown"};
static const char *const PRIO_NAME[] = {"high", "normal", "low"};

const char *embd_jstate_name(embd_jstate s) { return STATE_NAME[s <= EMBD_JS_UNKNOWN ? s : EMBD_JS_UNKNOWN]; }

embd_jstate embd_jstate_parse(const char *s) {
    for (int i = 0; i < EMBD_JS_UNKNOWN; i++)
        if (s && !strcmp(s, STATE_NAME[i])) return (embd_jstate)i;
    return EMBD_JS_UNKNOWN;
}

void embd_jobopts_default(embd_jobopts *o) {
    memset(o, 0, sizeof *o);
    o->normalize = true;
    o->truncate = true;
    o->priority = EMBD_PRIO_NORMAL;
}

int embd_jobopts_from_json(embd_jobopts *o, json_t *j, char *err, size_t errlen) {
    if (!json_is_object(j)) return embd_fail(err, errlen, "options must be a JSON object");
    json_t *v;
    if ((v = json_object_get(j, "normalize")) && !json_is_null(v)) {
        if (!json_is_boolean(v)) return embd_fail(err, errlen, "normalize: expected true or false");
        o->normalize = json_is_true(v);
    }
    if ((v = json_object_get(j, "truncate")) && !json_is_null(v)) {
        if (!json_is_boolean(v)) return embd_fail(err, errlen, "truncate: expected true or false");
        o->truncate = json_is_true(v);
    }
    if ((v = json_object_get(j, "priority")) && !json_is_null(v)) {
        const char *s = json_string_value(v);
        int p = -1;
        for (int i = 0; s && i < 3; i++)
            if (!strcmp(s, PRIO_NAME[i])) p = i;
        if (p < 0) return embd_fail(err, errlen, "priority: expected \"high\", \"normal\" or \"low\"");
        o->priority = (embd_prio)p;
    }
    if ((v = json_object_get(j, "deadline")) && !json_is_null(v)) {
        if (!json_is_number(v) || json_number_value(v) < 0)
            return embd_fail(err, errlen, "deadline: expected unix seconds (a non-negative number)");
        o->deadline = json_number_value(v);
    }
    if ((v = json_object_get(j, "format")) && !json_is_null(v)) {
        const char *s = json_string_value(v);
        if (s && !strcmp(s, "jsonl")) o->npy = false;
        else if (s && !strcmp(s, "npy")) o->npy = true;
        else return embd_fail(err, errlen, "format: expected \"jsonl\" or \"npy\"");
    }
    return 0;
}

static json_t *jobopts_json(const embd_jobopts *o) {
    return json_pack("{s:b, s:b, s:s, s:f, s:s}", "normalize", o->normalize, "truncate", o->truncate, "priority",
                     PRIO_NAME[o->priority], "deadline", o->deadline, "format", o->npy ? "npy" : "jsonl");
}

/* ---- small file helpers ------------------------------------------------------------------ */

void embd_spool_path(const embd_spool *sp, char *out, size_t outlen, const char *sub, const char *id,
                     const char *suffix) {
    snprintf(out, outlen, "%s/%s/%s%s", sp->dir, sub, id, suffix ? suffix : "");
}

int embd_spool_fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
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

static void dir_of(const char *path, char *out, size_t outlen) {
    snprintf(out, outlen, "%s", path);
    char *s = strrchr(out, '/');
    if (s) *s = 0;
}

int embd_spool_write_atomic(const char *path, const char *data, size_t len, bool durable) {
    char tmp[4200];
    unsigned r = 0;
    getrandom(&r, sizeof r, 0);
    snprintf(tmp, sizeof tmp, "%s.tmp.%d.%08x", path, (int)getpid(), r);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) return -1;
    if (write_all(fd, data, len) || (durable && fsync(fd))) {
        close(fd);
        unlink(tmp);
        return -1;
    }
    close(fd);
    if (rename(tmp, path)) {
        unlink(tmp);
        return -1;
    }
    if (durable) {
        char d[4200];
        dir_of(path, d, sizeof d);
        embd_spool_fsync_dir(d);
    }
    return 0;
}

json_t *embd_spool_load_json(const char *path) {
    json_error_t je;
    return json_load_file(path, JSON_REJECT_DUPLICATES, &je);
}

static double mtime_of(const char *path) {
    struct stat st;
    if (stat(path, &st)) return -1;
    return (double)st.st_mtim.tv_sec + (double)st.st_mtim.tv_nsec * 1e-9;
}

/* The file server's idea of now: the mtime a freshly touched file gets (see spool.h). */
static double spool_now(embd_spool *sp) {
    char p[4200];
    snprintf(p, sizeof p, "%s/.clock", sp->dir);
    int fd = open(p, O_WRONLY | O_CREAT, 0644);
    double t = -1;
    if (fd >= 0) {
        struct stat st;
        if (futimens(fd, NULL) == 0 && fstat(fd, &st) == 0)
            t = (double)st.st_mtim.tv_sec + (double)st.st_mtim.tv_nsec * 1e-9;
        close(fd);
    }
    if (t < 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        t = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    }
    return t;
}

/* ---- opening ------------------------------------------------------------------------------ */

static const char *const SUBDIRS[] = {"incoming", "inputs", "queue",   "running", "done",
                                      "failed",   "cancelled", "cancel", "results"};

int embd_spool_open(embd_spool *sp, const char *dir, bool create, char *err, size_t errlen) {
    memset(sp, 0, sizeof *sp);
    sp->stale_after = 30;
    if (create && mkdir(dir, 0777) && errno != EEXIST)
        return embd_fail(err, errlen, "cannot create spool directory '%s': %s", dir, strerror(errno));
    char *abs = realpath(dir, NULL);
    struct stat st;
    if (!abs || stat(abs, &st) || !S_ISDIR(st.st_mode)) {
        free(abs);
        return embd_fail(err, errlen, "spool directory '%s' does not exist or is not a directory", dir);
    }
    sp->dir = abs;
    for (size_t i = 0; i < sizeof SUBDIRS / sizeof *SUBDIRS; i++) {
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", abs, SUBDIRS[i]);
        if (mkdir(p, 0777) && errno != EEXIST) {
            embd_fail(err, errlen, "cannot create '%s': %s", p, strerror(errno));
            embd_spool_close(sp);
            return -1;
        }
    }
    char host[64] = "host";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    unsigned r = 0;
    getrandom(&r, sizeof r, 0);
    snprintf(sp->token, sizeof sp->token, "%.60s:%d:%08x", host, (int)getpid(), r);
    return 0;
}

void embd_spool_close(embd_spool *sp) {
    free(sp->dir);
    sp->dir = NULL;
}

bool embd_spool_valid_id(const char *id) {
    size_t n = id ? strlen(id) : 0;
    if (n < 1 || n > 64 || id[0] == '-') return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

void embd_spool_new_id(char out[33]) {
    unsigned char b[16] = {0};
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        unsigned long long x = (unsigned long long)ts.tv_nsec ^ ((unsigned long long)getpid() << 32);
        memcpy(b, &x, sizeof x);
    }
    for (int i = 0; i < 16; i++) snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* "<P>-<usec>-<id>.json" -> id (false when the name is not a job file). */
static bool parse_name(const char *name, char *id, size_t idlen, int *prio) {
    size_t n = strlen(name);
    if (n < 9 || strcmp(name + n - 5, ".json") || name[0] < '0' || name[0] > '2' || name[1] != '-') return false;
    const char *p = name + 2;
    while (*p >= '0' && *p <= '9') p++;
    if (*p != '-' || p == name + 2) return false;
    p++;
    size_t k = (size_t)(name + n - 5 - p);
    if (k == 0 || k >= idlen) return false;
    memcpy(id, p, k);
    id[k] = 0;
    if (prio) *prio = name[0] - '0';
    return embd_spool_valid_id(id);
}

static int by_name(const struct dirent **a, const struct dirent **b) { return strcmp((*a)->d_name, (*b)->d_name); }

static int job_files(const struct dirent *d) {
    char id[72];
    return parse_name(d->d_name, id, sizeof id, NULL);
}

/* ---- submitting ---------------------------------------------------------------------------- */

int embd_spool_write_input(embd_spool *sp, const char *id, const char *buf, size_t len, FILE *src, char *err,
                           size_t errlen) {
    if (!embd_spool_valid_id(id)) return embd_fail(err, errlen, "invalid job id");
    char path[4200], tmp[4300];
    embd_spool_path(sp, path, sizeof path, "inputs", id, ".jsonl");
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return embd_fail(err, errlen, "cannot create '%s': %s", tmp, strerror(errno));
    int rc = 0;
    if (buf) {
        rc = write_all(fd, buf, len);
    } else {
        char b[1 << 16];
        size_t n;
        while (!rc && (n = fread(b, 1, sizeof b, src)) > 0) rc = write_all(fd, b, n);
        if (ferror(src)) rc = -1;
    }
    if (rc || fsync(fd)) {
        close(fd);
        unlink(tmp);
        return embd_fail(err, errlen, "cannot write the job input: %s", strerror(errno));
    }
    close(fd);
    if (rename(tmp, path)) {
        unlink(tmp);
        return embd_fail(err, errlen, "cannot rename the job input: %s", strerror(errno));
    }
    dir_of(path, tmp, sizeof tmp);
    embd_spool_fsync_dir(tmp);
    return 0;
}

/* Items = non-blank lines. */
static long long count_items(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    long long n = 0;
    bool blank = true;
    int c;
    while ((c = getc(f)) != EOF) {
        if (c == '\n') {
            n += !blank;
            blank = true;
        } else if (c != ' ' && c != '\t' && c != '\r') {
            blank = false;
        }
    }
    n += !blank;
    fclose(f);
    return n;
}

int embd_spool_enqueue(embd_spool *sp, const char *id, const char *input_path, const embd_jobopts *o, char *err,
                       size_t errlen) {
    if (!embd_spool_valid_id(id)) return embd_fail(err, errlen, "invalid job id '%.80s'", id);
    if (embd_spool_find(sp, id, NULL, 0) != EMBD_JS_UNKNOWN) return embd_fail(err, errlen, "job '%s' already exists", id);
    char in[4200];
    if (input_path) snprintf(in, sizeof in, "%s", input_path);
    else embd_spool_path(sp, in, sizeof in, "inputs", id, ".jsonl");
    struct stat st;
    if (stat(in, &st) || !S_ISREG(st.st_mode)) return embd_fail(err, errlen, "input '%s' is not a readable file", in);
    long long total = count_items(in);
    if (total < 0) return embd_fail(err, errlen, "cannot read input '%s'", in);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    unsigned long long usec = (unsigned long long)tv.tv_sec * 1000000ull + (unsigned long long)tv.tv_usec;
    json_t *spec = json_pack("{s:s, s:s, s:I, s:f, s:o}", "id", id, "input", in, "total", (json_int_t)total, "created",
                             (double)tv.tv_sec + tv.tv_usec * 1e-6, "options", jobopts_json(o));
    char *txt = spec ? json_dumps(spec, JSON_COMPACT) : NULL;
    json_decref(spec);
    if (!txt) return embd_fail(err, errlen, "out of memory");
    char inc[4200], q[4200];
    embd_spool_path(sp, inc, sizeof inc, "incoming", id, ".json");
    snprintf(q, sizeof q, "%s/queue/%d-%020llu-%s.json", sp->dir, (int)o->priority, usec, id);
    int rc = embd_spool_write_atomic(inc, txt, strlen(txt), true);
    free(txt);
    if (rc) return embd_fail(err, errlen, "cannot write '%s': %s", inc, strerror(errno));
    if (rename(inc, q)) return embd_fail(err, errlen, "cannot queue the job: %s", strerror(errno));
    char qd[4200];
    snprintf(qd, sizeof qd, "%s/queue", sp->dir);
    embd_spool_fsync_dir(qd);
    return 0;
}

/* ---- claiming ------------------------------------------------------------------------------ */

void embd_claim_free(embd_claim *c) {
    json_decref(c->spec);
    c->spec = NULL;
}

static int read_small(const char *path, char *buf, size_t cap) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0) return -1;
    buf[n] = 0;
    return 0;
}

static int load_spec(embd_claim *c, const char *path, char *err, size_t errlen) {
    c->spec = embd_spool_load_json(path);
    if (!c->spec) return embd_fail(err, errlen, "job %s: spec file is not valid JSON", c->id);
    embd_jobopts_default(&c->opts);
    json_t *opts = json_object_get(c->spec, "options");
    if (opts && embd_jobopts_from_json(&c->opts, opts, err, errlen)) return -1;
    const char *in = json_string_value(json_object_get(c->spec, "input"));
    if (!in) return embd_fail(err, errlen, "job %s: spec has no input", c->id);
    snprintf(c->input, sizeof c->input, "%s", in);
    json_int_t t = json_integer_value(json_object_get(c->spec, "total"));
    c->total = t > 0 ? (size_t)t : 0;
    return 0;
}

int embd_spool_claim(embd_spool *sp, embd_claim *c, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    char qd[4200];
    snprintf(qd, sizeof qd, "%s/queue", sp->dir);
    struct dirent **ents = NULL;
    int n = scandir(qd, &ents, job_files, by_name);
    if (n < 0) return embd_fail(err, errlen, "cannot list '%s': %s", qd, strerror(errno));
    int got = 0;
    for (int i = 0; i < n && !got; i++) {
        char from[4400], to[4400];
        snprintf(from, sizeof from, "%s/queue/%s", sp->dir, ents[i]->d_name);
        snprintf(to, sizeof to, "%s/running/%s", sp->dir, ents[i]->d_name);
        /* Fresh mtime first, so that nobody takes the new claim for a stale one before its
         * heartbeat exists. ENOENT: someone else was quicker. */
        if (utimensat(AT_FDCWD, from, NULL, 0)) continue;
        if (rename(from, to)) continue;
        snprintf(c->name, sizeof c->name, "%s", ents[i]->d_name);
        parse_name(c->name, c->id, sizeof c->id, NULL);
        char hb[4200];
        embd_spool_path(sp, hb, sizeof hb, "running", c->id, ".hb");
        embd_spool_write_atomic(hb, sp->token, strlen(sp->token), false);
        char rd[4200];
        snprintf(rd, sizeof rd, "%s/running", sp->dir);
        embd_spool_fsync_dir(rd);
        got = 1;
        char why[256];
        if (load_spec(c, to, why, sizeof why)) { /* unusable spec: fail it, keep the queue flowing */
            fprintf(stderr, "embd: job %s failed: %s\n", c->id, why);
            json_t *pr = json_pack("{s:s}", "error", why);
            char *txt = pr ? json_dumps(pr, JSON_COMPACT) : NULL;
            char pp[4200];
            embd_spool_path(sp, pp, sizeof pp, "results", c->id, ".progress.json");
            if (txt) embd_spool_write_atomic(pp, txt, strlen(txt), false);
            free(txt);
            json_decref(pr);
            embd_spool_finish(sp, c, EMBD_JS_FAILED, why, sizeof why);
            embd_claim_free(c);
            memset(c, 0, sizeof *c);
            got = 0;
        }
    }
    for (int i = 0; i < n; i++) free(ents[i]);
    free(ents);
    return got;
}

int embd_spool_heartbeat(embd_spool *sp, const embd_claim *c) {
    char hb[4200], run[4400], tok[128];
    embd_spool_path(sp, hb, sizeof hb, "running", c->id, ".hb");
    snprintf(run, sizeof run, "%s/running/%s", sp->dir, c->name);
    if (read_small(hb, tok, sizeof tok) || strcmp(tok, sp->token) || access(run, F_OK)) return 1;
    utimensat(AT_FDCWD, hb, NULL, 0);
    return 0;
}

int embd_spool_finish(embd_spool *sp, embd_claim *c, embd_jstate st, char *err, size_t errlen) {
    char from[4400], to[4400], hb[4200], d[4200];
    snprintf(from, sizeof from, "%s/running/%s", sp->dir, c->name);
    embd_spool_path(sp, hb, sizeof hb, "running", c->id, ".hb");
    if (st == EMBD_JS_QUEUED) {
        /* Heartbeat first: once the job is back in the queue a new owner may write its own. */
        unlink(hb);
        snprintf(to, sizeof to, "%s/queue/%s", sp->dir, c->name);
        if (rename(from, to) && errno != ENOENT) return embd_fail(err, errlen, "cannot requeue %s: %s", c->id, strerror(errno));
        snprintf(d, sizeof d, "%s/queue", sp->dir);
        embd_spool_fsync_dir(d);
        return 0;
    }
    if (st < EMBD_JS_DONE || st > EMBD_JS_CANCELLED) return embd_fail(err, errlen, "bad final state");
    snprintf(to, sizeof to, "%s/%s/%s", sp->dir, STATE_DIR[st], c->name);
    if (rename(from, to)) return embd_fail(err, errlen, "cannot move %s to %s: %s", c->id, STATE_DIR[st], strerror(errno));
    snprintf(d, sizeof d, "%s/%s", sp->dir, STATE_DIR[st]);
    embd_spool_fsync_dir(d);
    unlink(hb); /* nobody else can claim a finished job, so the heartbeat is still ours */
    char cm[4200];
    embd_spool_path(sp, cm, sizeof cm, "cancel", c->id, NULL);
    unlink(cm);
    return 0;
}

int embd_spool_recover(embd_spool *sp) {
    char rd[4200];
    snprintf(rd, sizeof rd, "%s/running", sp->dir);
    struct dirent **ents = NULL;
    int n = scandir(rd, &ents, job_files, by_name);
    if (n < 0) return 0;
    int recovered = 0;
    double now = n ? spool_now(sp) : 0;
    for (int i = 0; i < n; i++) {
        char id[72], run[4400], hb[4200], q[4400], tok[128] = "";
        parse_name(ents[i]->d_name, id, sizeof id, NULL);
        snprintf(run, sizeof run, "%s/running/%s", sp->dir, ents[i]->d_name);
        embd_spool_path(sp, hb, sizeof hb, "running", id, ".hb");
        double t = mtime_of(run), th = mtime_of(hb);
        if (th > t) t = th;
        if (t < 0 || now - t <= sp->stale_after) continue;
        read_small(hb, tok, sizeof tok);
        snprintf(q, sizeof q, "%s/queue/%s", sp->dir, ents[i]->d_name);
        if (rename(run, q)) continue; /* another process recovered it, or its owner finished */
        recovered++;
        fprintf(stderr, "embd: job %s: owner %s stopped heartbeating; requeued\n", id, tok[0] ? tok : "(none)");
        /* Tombstone the dead owner's heartbeat (unless a new owner already wrote one): should it
         * only have stalled, it sees the claim is gone before it writes again. */
        char cur[128] = "";
        if (read_small(hb, cur, sizeof cur) == 0 && !strcmp(cur, tok))
            embd_spool_write_atomic(hb, "recovered", 9, false);
    }
    if (recovered) {
        char qd[4200];
        snprintf(qd, sizeof qd, "%s/queue", sp->dir);
        embd_spool_fsync_dir(qd);
    }
    for (int i = 0; i < n; i++) free(ents[i]);
    free(ents);
    return recovered;
}

/* ---- looking up ------------------------------------------------------------------------------ */

static embd_jstate find_once(embd_spool *sp, const char *id, char *path, size_t pathlen) {
    for (int s = EMBD_JS_QUEUED; s <= EMBD_JS_CANCELLED; s++) {
        char d[4200];
        snprintf(d, sizeof d, "%s/%s", sp->dir, STATE_DIR[s]);
        DIR *dir = opendir(d);
        if (!dir) continue;
        struct dirent *e;
        bool found = false;
        while (!found && (e = readdir(dir))) {
            char jid[72];
            if (parse_name(e->d_name, jid, sizeof jid, NULL) && !strcmp(jid, id)) {
                found = true;
                if (path) snprintf(path, pathlen, "%s/%s", d, e->d_name);
            }
        }
        closedir(dir);
        if (found) return (embd_jstate)s;
    }
    return EMBD_JS_UNKNOWN;
}

embd_jstate embd_spool_find(embd_spool *sp, const char *id, char *path, size_t pathlen) {
    if (!embd_spool_valid_id(id)) return EMBD_JS_UNKNOWN;
    /* Folders are scanned in the order jobs move through them; a job moved backwards (requeued)
     * while we looked can be missed once, hence the retries. */
    for (int i = 0; i < 3; i++) {
        embd_jstate s = find_once(sp, id, path, pathlen);
        if (s != EMBD_JS_UNKNOWN) return s;
    }
    return EMBD_JS_UNKNOWN;
}

embd_jstate embd_spool_cancel(embd_spool *sp, const char *id) {
    for (int tries = 0; tries < 5; tries++) {
        char path[4400];
        embd_jstate s = embd_spool_find(sp, id, path, sizeof path);
        if (s == EMBD_JS_QUEUED) {
            const char *base = strrchr(path, '/') + 1;
            char to[4400];
            snprintf(to, sizeof to, "%s/cancelled/%s", sp->dir, base);
            if (rename(path, to) == 0) {
                char d[4200];
                snprintf(d, sizeof d, "%s/cancelled", sp->dir);
                embd_spool_fsync_dir(d);
                return s;
            }
            continue; /* claimed meanwhile: cancel the running job instead */
        }
        if (s == EMBD_JS_RUNNING) {
            char cm[4200];
            embd_spool_path(sp, cm, sizeof cm, "cancel", id, NULL);
            int fd = open(cm, O_WRONLY | O_CREAT, 0644);
            if (fd >= 0) close(fd);
            /* A claim made meanwhile from the queue still sees the marker: the runner checks it
             * before every chunk. */
        }
        return s;
    }
    return EMBD_JS_QUEUED;
}

bool embd_spool_cancel_requested(embd_spool *sp, const char *id) {
    char cm[4200];
    embd_spool_path(sp, cm, sizeof cm, "cancel", id, NULL);
    return access(cm, F_OK) == 0;
}

long long embd_spool_results_bytes(embd_spool *sp, const char *id, bool errors) {
    char p[4200];
    if (embd_spool_find(sp, id, NULL, 0) == EMBD_JS_DONE) {
        struct stat st;
        embd_spool_path(sp, p, sizeof p, "results", id, errors ? ".errors.jsonl" : ".jsonl");
        return stat(p, &st) ? 0 : (long long)st.st_size;
    }
    embd_spool_path(sp, p, sizeof p, "results", id, ".ckpt");
    json_t *ck = embd_spool_load_json(p);
    long long n = ck ? (long long)json_integer_value(json_object_get(ck, errors ? "errors_bytes" : "results_bytes")) : 0;
    json_decref(ck);
    return n;
}

static json_t *status_of(embd_spool *sp, const char *id, embd_jstate s, const char *spec_path) {
    json_t *spec = embd_spool_load_json(spec_path);
    json_t *out = json_pack("{s:s, s:s}", "id", id, "state", embd_jstate_name(s));
    if (!out) {
        json_decref(spec);
        return NULL;
    }
    json_t *opts = json_object_get(spec, "options");
    if (opts) {
        json_object_set(out, "priority", json_object_get(opts, "priority"));
        json_object_set(out, "options", opts);
    }
    json_object_set(out, "created", json_object_get(spec, "created"));
    json_t *total = json_object_get(spec, "total");
    json_object_set_new(out, "total", total ? json_incref(total) : json_integer(0));
    char pp[4200];
    embd_spool_path(sp, pp, sizeof pp, "results", id, ".progress.json");
    json_t *pr = embd_spool_load_json(pp);
    static const char *const keys[] = {"items_done", "errors", "tokens", "rate_tokens_s", "rate_items_s",
                                       "eta_s",      "worker", "error",  "started",       "updated"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        json_t *v = pr ? json_object_get(pr, keys[i]) : NULL;
        if (v) json_object_set(out, keys[i], v);
        else if (i < 3) json_object_set_new(out, keys[i], json_integer(0));
    }
    if (s == EMBD_JS_RUNNING && embd_spool_cancel_requested(sp, id)) json_object_set_new(out, "cancel_requested", json_true());
    json_decref(pr);
    json_decref(spec);
    return out;
}

json_t *embd_spool_status(embd_spool *sp, const char *id) {
    char path[4400];
    embd_jstate s = embd_spool_find(sp, id, path, sizeof path);
    if (s == EMBD_JS_UNKNOWN) return NULL;
    return status_of(sp, id, s, path);
}

json_t *embd_spool_list(embd_spool *sp, embd_jstate only) {
    json_t *arr = json_array();
    for (int s = EMBD_JS_QUEUED; s <= EMBD_JS_CANCELLED && arr; s++) {
        if (only != EMBD_JS_UNKNOWN && only != (embd_jstate)s) continue;
        char d[4200];
        snprintf(d, sizeof d, "%s/%s", sp->dir, STATE_DIR[s]);
        struct dirent **ents = NULL;
        int n = scandir(d, &ents, job_files, by_name);
        for (int i = 0; i < n; i++) {
            char id[72], p[4600];
            parse_name(ents[i]->d_name, id, sizeof id, NULL);
            snprintf(p, sizeof p, "%s/%s", d, ents[i]->d_name);
            json_t *st = status_of(sp, id, (embd_jstate)s, p);
            if (st) json_array_append_new(arr, st);
            free(ents[i]);
        }
        free(ents);
    }
    return arr;
}
