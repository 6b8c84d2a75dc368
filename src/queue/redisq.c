/* Redis Streams job queue; the data model is described in redisq.h. */
#include "queue/redisq.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "util/sys.h"

#define STREAM "embd:jobs"
#define GROUP "workers"

struct embd_redisq {
    redisContext *c;
    char host[256];
    int port, db;
    char me[96]; /* consumer name: host:pid:random */
};

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static redisContext *connect_to(const char *host, int port, int db, char *err, size_t errlen) {
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (!c || c->err) {
        embd_fail(err, errlen, "cannot connect to redis at %s:%d: %s", host, port, c ? c->errstr : "out of memory");
        if (c) redisFree(c);
        return NULL;
    }
    if (db) {
        redisReply *r = redisCommand(c, "SELECT %d", db);
        bool ok = r && r->type != REDIS_REPLY_ERROR;
        if (r) freeReplyObject(r);
        if (!ok) {
            embd_fail(err, errlen, "redis: cannot select database %d", db);
            redisFree(c);
            return NULL;
        }
    }
    return c;
}

embd_redisq *embd_redisq_open(const char *url, char *err, size_t errlen) {
    const char *p = url;
    if (strncmp(p, "redis://", 8)) {
        embd_fail(err, errlen, "redis URL must look like redis://HOST[:PORT][/DB], not '%.100s'", url);
        return NULL;
    }
    p += 8;
    embd_redisq *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    size_t hl = strcspn(p, ":/");
    if (hl == 0 || hl >= sizeof q->host) {
        free(q);
        embd_fail(err, errlen, "redis URL without a host: '%.100s'", url);
        return NULL;
    }
    memcpy(q->host, p, hl);
    q->port = 6379;
    p += hl;
    char *end = NULL;
    if (*p == ':') {
        long v = strtol(p + 1, &end, 10);
        if (end == p + 1 || v < 1 || v > 65535 || (*end && *end != '/')) {
            free(q);
            embd_fail(err, errlen, "bad port in redis URL '%.100s'", url);
            return NULL;
        }
        q->port = (int)v;
        p = end;
    }
    if (*p == '/' && p[1]) {
        long v = strtol(p + 1, &end, 10);
        if (end == p + 1 || *end || v < 0 || v > 1000) {
            free(q);
            embd_fail(err, errlen, "bad database number in redis URL '%.100s'", url);
            return NULL;
        }
        q->db = (int)v;
    }
    q->c = connect_to(q->host, q->port, q->db, err, errlen);
    if (!q->c) {
        free(q);
        return NULL;
    }
    char host[64] = "host";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    unsigned r = 0;
    getrandom(&r, sizeof r, 0);
    snprintf(q->me, sizeof q->me, "%.60s:%d:%08x", host, (int)getpid(), r);
    return q;
}

void embd_redisq_close(embd_redisq *q) {
    if (!q) return;
    if (q->c) redisFree(q->c);
    free(q);
}

static redisReply *cmd(redisContext *c, char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!r) {
        embd_fail(err, errlen, "redis: %s", c->errstr[0] ? c->errstr : "connection lost");
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        embd_fail(err, errlen, "redis: %.200s", r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* ---- client side ------------------------------------------------------------------------------ */

int embd_redisq_submit(embd_redisq *q, const char *id, FILE *src, const embd_jobopts *o, char *err, size_t errlen) {
    if (!embd_spool_valid_id(id)) return embd_fail(err, errlen, "invalid job id");
    char key[128], items[160];
    snprintf(key, sizeof key, "embd:job:%s", id);
    snprintf(items, sizeof items, "embd:job:%s:items", id);
    redisReply *r = cmd(q->c, err, errlen, "HSETNX %s id %s", key, id);
    if (!r) return -1;
    bool fresh = r->integer == 1;
    freeReplyObject(r);
    if (!fresh) return embd_fail(err, errlen, "job '%s' already exists", id);
    char *line = NULL;
    size_t cap = 0, total = 0, pending = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, src)) > 0) {
        size_t len = (size_t)n;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
        size_t s = 0;
        while (s < len && (line[s] == ' ' || line[s] == '\t')) s++;
        total += s < len;
        redisAppendCommand(q->c, "RPUSH %s %b", items, line, len); /* pipelined */
        if (++pending == 512) {
            for (; pending; pending--) {
                redisReply *x = NULL;
                if (redisGetReply(q->c, (void **)&x) != REDIS_OK) {
                    free(line);
                    return embd_fail(err, errlen, "redis: %s", q->c->errstr);
                }
                freeReplyObject(x);
            }
        }
    }
    free(line);
    for (; pending; pending--) {
        redisReply *x = NULL;
        if (redisGetReply(q->c, (void **)&x) != REDIS_OK) return embd_fail(err, errlen, "redis: %s", q->c->errstr);
        freeReplyObject(x);
    }
    static const char *const prio[] = {"high", "normal", "low"};
    json_t *opts = json_pack("{s:b, s:b, s:s, s:f, s:s}", "normalize", o->normalize, "truncate", o->truncate, "priority",
                             prio[o->priority], "deadline", o->deadline, "format", "jsonl");
    char *os = opts ? json_dumps(opts, JSON_COMPACT) : NULL;
    json_decref(opts);
    if (!os) return embd_fail(err, errlen, "out of memory");
    char created[32];
    snprintf(created, sizeof created, "%.6f", wall_now());
    r = cmd(q->c, err, errlen, "HSET %s state queued total %llu options %s created %s lines 0 items_done 0 errors 0 tokens 0",
            key, (unsigned long long)total, os, created);
    free(os);
    if (!r) return -1;
    freeReplyObject(r);
    r = cmd(q->c, err, errlen, "XADD " STREAM " * id %s", id);
    if (!r) return -1;
    freeReplyObject(r);
    return 0;
}

json_t *embd_redisq_status(embd_redisq *q, const char *id) {
    if (!embd_spool_valid_id(id)) return NULL;
    char err[256];
    redisReply *r = cmd(q->c, err, sizeof err, "HGETALL embd:job:%s", id);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
        if (r) freeReplyObject(r);
        return NULL;
    }
    json_t *o = json_object();
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const char *k = r->element[i]->str, *v = r->element[i + 1]->str;
        if (!k || !v) continue;
        if (!strcmp(k, "options")) {
            json_t *j = json_loads(v, 0, NULL);
            if (j) {
                json_object_set(o, "priority", json_object_get(j, "priority"));
                json_object_set_new(o, "options", j);
            }
        } else if (!strcmp(k, "total") || !strcmp(k, "items_done") || !strcmp(k, "errors") || !strcmp(k, "tokens")) {
            json_object_set_new(o, k, json_integer(strtoll(v, NULL, 10)));
        } else if (!strcmp(k, "created") || !strcmp(k, "rate_tokens_s") || !strcmp(k, "eta_s") || !strcmp(k, "updated")) {
            json_object_set_new(o, k, json_real(strtod(v, NULL)));
        } else if (!strcmp(k, "id") || !strcmp(k, "state") || !strcmp(k, "worker") || (!strcmp(k, "error") && *v)) {
            json_object_set_new(o, k, json_string(v));
        }
    }
    freeReplyObject(r);
    return o;
}

int embd_redisq_results(embd_redisq *q, const char *id, bool errors, FILE *out) {
    char err[256];
    redisReply *r = cmd(q->c, err, sizeof err, "EXISTS embd:job:%s", id);
    bool exists = r && r->integer == 1;
    if (r) freeReplyObject(r);
    if (!exists) return -1;
    for (long start = 0;; start += 1000) {
        r = cmd(q->c, err, sizeof err, "LRANGE embd:job:%s:%s %ld %ld", id, errors ? "errors" : "results", start, start + 999);
        if (!r) return -1;
        for (size_t i = 0; i < r->elements; i++) fprintf(out, "%s\n", r->element[i]->str);
        size_t n = r->elements;
        freeReplyObject(r);
        if (n < 1000) return 0;
    }
}

static const char CANCEL_LUA[] =
    "local st = redis.call('HGET', KEYS[1], 'state')\n"
    "if not st then return 'unknown' end\n"
    "if st == 'queued' then redis.call('HSET', KEYS[1], 'state', 'cancelled') end\n"
    "if st == 'running' then redis.call('HSET', KEYS[1], 'cancel', '1') end\n"
    "return st\n";

embd_jstate embd_redisq_cancel(embd_redisq *q, const char *id) {
    if (!embd_spool_valid_id(id)) return EMBD_JS_UNKNOWN;
    char err[256], key[128];
    snprintf(key, sizeof key, "embd:job:%s", id);
    redisReply *r = cmd(q->c, err, sizeof err, "EVAL %s 1 %s", CANCEL_LUA, key);
    embd_jstate s = r && r->str ? embd_jstate_parse(r->str) : EMBD_JS_UNKNOWN;
    if (r) freeReplyObject(r);
    return s;
}

/* ---- worker side ------------------------------------------------------------------------------ */

/* Takes a delivered stream entry: the job's owner becomes us, unless it is over or cancelled. */
static const char CLAIM_LUA[] =
    "local st = redis.call('HGET', KEYS[1], 'state')\n"
    "local over = not st or st == 'done' or st == 'failed' or st == 'cancelled'\n"
    "if not over and redis.call('HGET', KEYS[1], 'cancel') == '1' then\n"
    "  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'owner', ''); st = 'cancelled'; over = true end\n"
    "if over then redis.call('XACK', KEYS[2], ARGV[2], ARGV[3]); redis.call('XDEL', KEYS[2], ARGV[3])\n"
    "  return st or 'gone' end\n"
    "redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'state', 'running', 'worker', ARGV[1], 'msg', ARGV[3])\n"
    "return 'claimed'\n";

static const char BEAT_LUA[] =
    "if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end\n"
    "redis.call('XCLAIM', KEYS[2], ARGV[2], ARGV[1], 0, ARGV[3], 'JUSTID')\n"
    "return 1\n";

/* ARGV: me, nres, nerr, lines, items_done, errors, tokens, records... */
static const char COMMIT_LUA[] =
    "if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end\n"
    "local nres = tonumber(ARGV[2]); local nerr = tonumber(ARGV[3])\n"
    "for i = 1, nres do redis.call('RPUSH', KEYS[2], ARGV[7 + i]) end\n"
    "for i = 1, nerr do redis.call('RPUSH', KEYS[3], ARGV[7 + nres + i]) end\n"
    "redis.call('HSET', KEYS[1], 'lines', ARGV[4], 'items_done', ARGV[5], 'errors', ARGV[6], 'tokens', ARGV[7])\n"
    "return 1\n";

/* ARGV: me, group, msg, final state, error, requeue */
static const char FINISH_LUA[] =
    "if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end\n"
    "redis.call('XACK', KEYS[2], ARGV[2], ARGV[3]); redis.call('XDEL', KEYS[2], ARGV[3])\n"
    "if ARGV[6] == '1' then\n"
    "  redis.call('HSET', KEYS[1], 'state', 'queued', 'owner', '')\n"
    "  redis.call('XADD', KEYS[2], '*', 'id', redis.call('HGET', KEYS[1], 'id'))\n"
    "else redis.call('HSET', KEYS[1], 'state', ARGV[4], 'owner', '', 'error', ARGV[5]) end\n"
    "return 1\n";

typedef struct {
    embd_redisq *q;
    const char *key, *msg;
    double every;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool quit;
    atomic_int lost;
} beat;

static void *beat_main(void *arg) {
    beat *b = arg;
    char err[256];
    redisContext *c = connect_to(b->q->host, b->q->port, b->q->db, err, sizeof err); /* contexts are per thread */
    pthread_mutex_lock(&b->mu);
    while (!b->quit) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        long long ns = ts.tv_nsec + (long long)(b->every * 1e9);
        ts.tv_sec += (time_t)(ns / 1000000000);
        ts.tv_nsec = (long)(ns % 1000000000);
        pthread_cond_timedwait(&b->cv, &b->mu, &ts);
        if (b->quit || !c) continue;
        pthread_mutex_unlock(&b->mu);
        redisReply *r = cmd(c, err, sizeof err, "EVAL %s 2 %s " STREAM " %s " GROUP " %s", BEAT_LUA, b->key, b->q->me, b->msg);
        if (r && r->type == REDIS_REPLY_INTEGER && r->integer == 0) atomic_store(&b->lost, 1);
        if (r) freeReplyObject(r);
        pthread_mutex_lock(&b->mu);
    }
    pthread_mutex_unlock(&b->mu);
    if (c) redisFree(c);
    return NULL;
}

/* Splits "rec\nrec\n" into argv entries (records hold no raw newline: compact JSON). */
static size_t split_records(char *p, size_t n, const char **argv, size_t *argl, size_t max) {
    size_t k = 0;
    for (size_t s = 0, i = 0; i < n && k < max; i++)
        if (p[i] == '\n') {
            argv[k] = p + s;
            argl[k++] = i - s;
            s = i + 1;
        }
    return k;
}

static embd_run_outcome run_one(embd_redisq *q, const char *id, const char *msg, const embd_runner *r, double stale_after,
                                char *err, size_t errlen) {
    char key[128], ikey[160], rkey[160], ekey[160];
    snprintf(key, sizeof key, "embd:job:%s", id);
    snprintf(ikey, sizeof ikey, "%s:items", key);
    snprintf(rkey, sizeof rkey, "%s:results", key);
    snprintf(ekey, sizeof ekey, "%s:errors", key);
    json_t *st = embd_redisq_status(q, id);
    embd_jobopts o;
    embd_jobopts_default(&o);
    json_t *jo = json_object_get(st, "options");
    char e2[256];
    if (jo) embd_jobopts_from_json(&o, jo, e2, sizeof e2);
    size_t total = (size_t)json_integer_value(json_object_get(st, "total"));
    size_t items = (size_t)json_integer_value(json_object_get(st, "items_done"));
    size_t errors = (size_t)json_integer_value(json_object_get(st, "errors"));
    size_t tokens = (size_t)json_integer_value(json_object_get(st, "tokens"));
    json_decref(st);
    redisReply *x = cmd(q->c, err, errlen, "HGET %s lines", key);
    long long lines = x && x->str ? strtoll(x->str, NULL, 10) : 0;
    if (x) freeReplyObject(x);
    if (items) fprintf(stderr, "embd: job %s: resuming at item %zu of %zu\n", id, items, total);

    const size_t CH = r->chunk_items ? r->chunk_items : 64;
    embd_chunker *ch = embd_chunker_new(CH, r->n_embd);
    embd_buf rb = {0}, eb = {0};
    const char **argv = malloc((13 + 2 * CH) * sizeof *argv);
    size_t *argl = malloc((13 + 2 * CH) * sizeof *argl);
    beat b = {.q = q, .key = key, .msg = msg, .every = stale_after / 4 > 0.05 ? stale_after / 4 : 0.05,
              .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    pthread_t bt;
    bool beating = pthread_create(&bt, NULL, beat_main, &b) == 0;
    embd_run_outcome out = EMBD_RUN_FAILED;
    double t0 = embd_now();
    size_t items0 = items, tokens0 = tokens;
    err[0] = 0;
    if (!ch || !argv || !argl) {
        embd_fail(err, errlen, "out of memory");
        goto end;
    }
    for (;;) {
        if (atomic_load(&b.lost)) { out = EMBD_RUN_LOST; break; }
        x = cmd(q->c, err, errlen, "HGET %s cancel", key);
        bool cancel = x && x->str && !strcmp(x->str, "1");
        if (x) freeReplyObject(x);
        if (cancel) { out = EMBD_RUN_CANCELLED; break; }
        if (r->stop && atomic_load(r->stop)) { out = EMBD_RUN_STOPPED; break; }
        if (o.deadline > 0 && wall_now() > o.deadline) {
            embd_fail(err, errlen, "deadline passed with %zu of %zu items done", items, total);
            break;
        }
        /* Fill one chunk from the list, skipping blank lines. */
        long long next = lines;
        size_t n = 0;
        bool end_of_list = false;
        while (!embd_chunker_full(ch) && !end_of_list) {
            x = cmd(q->c, err, errlen, "LRANGE %s %lld %lld", ikey, next, next + (long long)(CH - n) - 1);
            if (!x) goto end;
            end_of_list = x->elements < CH - n;
            for (size_t i = 0; i < x->elements; i++) {
                char *s = x->element[i]->str;
                size_t len = x->element[i]->len, p = 0;
                while (p < len && (s[p] == ' ' || s[p] == '\t')) p++;
                if (p < len) embd_chunker_add(ch, s, len, (size_t)next), n++;
                next++;
            }
            freeReplyObject(x);
        }
        if (next == lines) { out = EMBD_RUN_DONE; break; }
        rb.n = eb.n = 0;
        size_t ct = 0, ce = 0;
        if (embd_chunker_run(ch, r, &o, &rb, &eb, &ct, &ce, err, errlen)) {
            if (r->stop && atomic_load(r->stop)) out = EMBD_RUN_STOPPED;
            break;
        }
        char a_lines[32], a_items[32], a_err[32], a_tok[32], a_nres[32], a_nerr[32];
        size_t nres = split_records(rb.p, rb.n, argv + 13, argl + 13, CH);
        size_t nerr = split_records(eb.p, eb.n, argv + 13 + nres, argl + 13 + nres, CH);
        snprintf(a_nres, sizeof a_nres, "%zu", nres);
        snprintf(a_nerr, sizeof a_nerr, "%zu", nerr);
        snprintf(a_lines, sizeof a_lines, "%lld", next);
        snprintf(a_items, sizeof a_items, "%zu", items + n);
        snprintf(a_err, sizeof a_err, "%zu", errors + ce);
        snprintf(a_tok, sizeof a_tok, "%zu", tokens + ct);
        const char *head[13] = {"EVAL", COMMIT_LUA, "3",     key,    rkey,  ekey, q->me,
                                a_nres, a_nerr,     a_lines, a_items, a_err, a_tok};
        for (int i = 0; i < 13; i++) argv[i] = head[i], argl[i] = strlen(head[i]);
        x = redisCommandArgv(q->c, (int)(13 + nres + nerr), argv, argl);
        if (!x || x->type == REDIS_REPLY_ERROR) {
            embd_fail(err, errlen, "redis: %s", x ? x->str : q->c->errstr);
            if (x) freeReplyObject(x);
            goto end;
        }
        bool ok = x->type == REDIS_REPLY_INTEGER && x->integer == 1;
        freeReplyObject(x);
        if (!ok) { out = EMBD_RUN_LOST; break; }
        lines = next, items += n, errors += ce, tokens += ct;
        double el = embd_now() - t0, ir = el > 0 ? (double)(items - items0) / el : 0;
        x = cmd(q->c, err, errlen, "HSET %s rate_tokens_s %f eta_s %f updated %f", key,
                el > 0 ? (double)(tokens - tokens0) / el : 0.0, ir > 0 && total > items ? (double)(total - items) / ir : 0.0,
                wall_now());
        if (x) freeReplyObject(x);
    }
end:
    if (beating) {
        pthread_mutex_lock(&b.mu);
        b.quit = true;
        pthread_cond_signal(&b.cv);
        pthread_mutex_unlock(&b.mu);
        pthread_join(bt, NULL);
    }
    embd_chunker_free(ch);
    free(rb.p), free(eb.p), free(argv), free(argl);
    if (out == EMBD_RUN_FAILED && !err[0]) embd_fail(err, errlen, "job failed");
    if (out != EMBD_RUN_LOST) {
        const char *state = out == EMBD_RUN_DONE ? "done" : out == EMBD_RUN_CANCELLED ? "cancelled" : "failed";
        x = cmd(q->c, e2, sizeof e2, "EVAL %s 2 %s " STREAM " %s " GROUP " %s %s %s %s", FINISH_LUA, key, q->me, msg, state,
                out == EMBD_RUN_FAILED ? err : "", out == EMBD_RUN_STOPPED ? "1" : "0");
        if (x) freeReplyObject(x);
    }
    return out;
}

/* One delivered entry from an XREADGROUP or XAUTOCLAIM reply's entry list. */
static int take_entry(redisReply *entries, char *msg, size_t msglen, char *id, size_t idlen) {
    for (size_t i = 0; entries && i < entries->elements; i++) {
        redisReply *e = entries->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 || !e->element[0]->str) continue;
        snprintf(msg, msglen, "%s", e->element[0]->str);
        redisReply *f = e->element[1];
        id[0] = 0;
        for (size_t k = 0; f && f->type == REDIS_REPLY_ARRAY && k + 1 < f->elements; k += 2)
            if (f->element[k]->str && !strcmp(f->element[k]->str, "id") && f->element[k + 1]->str)
                snprintf(id, idlen, "%s", f->element[k + 1]->str);
        return 1;
    }
    return 0;
}

long embd_redisq_work(embd_redisq *q, const embd_runner *r, double stale_after, double poll, bool exit_when_idle,
                      long max_jobs, char *err, size_t errlen) {
    redisReply *x = redisCommand(q->c, "XGROUP CREATE " STREAM " " GROUP " 0 MKSTREAM");
    if (!x) return embd_fail(err, errlen, "redis: %s", q->c->errstr);
    freeReplyObject(x); /* BUSYGROUP: it exists, fine */
    long jobs = 0;
    while (!(r->stop && atomic_load(r->stop)) && (max_jobs == 0 || jobs < max_jobs)) {
        char msg[64] = "", id[80] = "";
        bool recovered = false;
        /* First the entries of dead workers (idle beyond the stale timeout), then new ones. */
        x = cmd(q->c, err, errlen, "XAUTOCLAIM " STREAM " " GROUP " %s %lld 0-0 COUNT 1", q->me,
                (long long)(stale_after * 1000));
        if (!x) return -1;
        if (x->type == REDIS_REPLY_ARRAY && x->elements >= 2) recovered = take_entry(x->element[1], msg, sizeof msg, id, sizeof id);
        freeReplyObject(x);
        if (!recovered) {
            x = cmd(q->c, err, errlen, "XREADGROUP GROUP " GROUP " %s COUNT 1 BLOCK %d STREAMS " STREAM " >", q->me,
                    (int)(poll * 1000) > 0 ? (int)(poll * 1000) : 1);
            if (!x) return -1;
            if (x->type == REDIS_REPLY_ARRAY && x->elements == 1 && x->element[0]->elements == 2)
                take_entry(x->element[0]->element[1], msg, sizeof msg, id, sizeof id);
            freeReplyObject(x);
        }
        if (!msg[0]) {
            if (exit_when_idle) {
                x = cmd(q->c, err, errlen, "XPENDING " STREAM " " GROUP);
                bool idle = x && x->type == REDIS_REPLY_ARRAY && x->elements > 0 && x->element[0]->integer == 0;
                if (x) freeReplyObject(x);
                if (idle) break;
            }
            continue;
        }
        if (!embd_spool_valid_id(id)) { /* not ours: drop it */
            x = cmd(q->c, err, errlen, "XACK " STREAM " " GROUP " %s", msg);
            if (x) freeReplyObject(x);
            continue;
        }
        char key[128];
        snprintf(key, sizeof key, "embd:job:%s", id);
        x = cmd(q->c, err, errlen, "EVAL %s 2 %s " STREAM " %s " GROUP " %s", CLAIM_LUA, key, q->me, msg);
        if (!x) return -1;
        bool claimed = x->str && !strcmp(x->str, "claimed");
        freeReplyObject(x);
        if (!claimed) continue;
        if (recovered) fprintf(stderr, "embd: job %s: its worker stopped heartbeating; taken over\n", id);
        fprintf(stderr, "embd: job %s: claimed\n", id);
        double t0 = embd_now();
        embd_run_outcome o = run_one(q, id, msg, r, stale_after, err, errlen);
        static const char *const what[] = {"done", "failed", "cancelled", "stopped; requeued", "lost to another worker"};
        fprintf(stderr, "embd: job %s: %s in %.2f s%s%s\n", id, what[o], embd_now() - t0, o == EMBD_RUN_FAILED ? ": " : "",
                o == EMBD_RUN_FAILED ? err : "");
        jobs++;
    }
    return jobs;
}
