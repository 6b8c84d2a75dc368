/* The spool queue without a model: claims race between processes and each job is taken exactly
 * once, stale claims are recovered (and their stalled owner notices), a job resumed from its
 * checkpoint after a torn write has every item exactly once, priorities, cancel, bad specs. */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "queue/job.h"
#include "queue/spool.h"

static char root[4096];

static void fresh_spool(embd_spool *sp, const char *name) {
    char d[4200], cmd[4400];
    snprintf(d, sizeof d, "%s/%s", root, name);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    assert_int_equal(system(cmd), 0);
    char err[256];
    assert_int_equal(embd_spool_open(sp, d, true, err, sizeof err), 0);
}

/* A job of n items {"id":"<prefix>i","text":...}; extra lines appended verbatim. */
static void submit(embd_spool *sp, const char *id, int n, embd_prio prio, const char *extra) {
    size_t cap = (size_t)n * 64 + 256;
    char *b = malloc(cap);
    size_t len = 0;
    for (int i = 0; i < n; i++) len += (size_t)snprintf(b + len, cap - len, "{\"id\":\"%s-%d\",\"text\":\"item %d\"}\n", id, i, i);
    if (extra) len += (size_t)snprintf(b + len, cap - len, "%s", extra);
    char err[256];
    embd_jobopts o;
    embd_jobopts_default(&o);
    o.priority = prio;
    assert_int_equal(embd_spool_write_input(sp, id, b, len, NULL, err, sizeof err), 0);
    assert_int_equal(embd_spool_enqueue(sp, id, NULL, &o, err, sizeof err), 0);
    free(b);
}

static void test_ids_and_options(void **state) {
    (void)state;
    assert_true(embd_spool_valid_id("abc_DEF-09"));
    assert_false(embd_spool_valid_id(""));
    assert_false(embd_spool_valid_id("-x"));
    assert_false(embd_spool_valid_id("../etc"));
    assert_false(embd_spool_valid_id("a/b"));
    char id[33];
    embd_spool_new_id(id);
    assert_true(embd_spool_valid_id(id));
    embd_jobopts o;
    embd_jobopts_default(&o);
    char err[256];
    json_t *j = json_loads("{\"priority\":\"urgent\"}", 0, NULL);
    assert_int_equal(embd_jobopts_from_json(&o, j, err, sizeof err), -1);
    assert_non_null(strstr(err, "priority"));
    json_decref(j);
    j = json_loads("{\"normalize\":\"yes\"}", 0, NULL);
    assert_int_equal(embd_jobopts_from_json(&o, j, err, sizeof err), -1);
    json_decref(j);
    j = json_loads("{\"format\":\"npy\",\"priority\":\"low\",\"truncate\":false}", 0, NULL);
    assert_int_equal(embd_jobopts_from_json(&o, j, err, sizeof err), 0);
    assert_true(o.npy);
    assert_false(o.truncate);
    assert_int_equal(o.priority, EMBD_PRIO_LOW);
    json_decref(j);
}

/* Several processes claim from one queue at once: every job is taken by exactly one of them. */
static void test_claim_exactly_once(void **state) {
    (void)state;
    embd_spool sp;
    fresh_spool(&sp, "race");
    enum { JOBS = 120, PROCS = 4 };
    for (int i = 0; i < JOBS; i++) {
        char id[32];
        snprintf(id, sizeof id, "j%03d", i);
        submit(&sp, id, 1, (embd_prio)(i % 3), NULL);
    }
    int fds[PROCS][2];
    pid_t pids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        assert_int_equal(pipe(fds[p]), 0);
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            close(fds[p][0]);
            embd_spool mine;
            char err[256];
            if (embd_spool_open(&mine, sp.dir, false, err, sizeof err)) _exit(1);
            embd_claim c;
            int got;
            while ((got = embd_spool_claim(&mine, &c, err, sizeof err)) == 1) {
                dprintf(fds[p][1], "%s\n", c.id);
                embd_spool_finish(&mine, &c, EMBD_JS_DONE, err, sizeof err);
                embd_claim_free(&c);
            }
            _exit(got == 0 ? 0 : 1);
        }
        close(fds[p][1]);
    }
    int seen[JOBS] = {0};
    for (int p = 0; p < PROCS; p++) {
        FILE *f = fdopen(fds[p][0], "r");
        char line[64];
        while (fgets(line, sizeof line, f)) seen[atoi(line + 1)]++;
        fclose(f);
        int st = 0;
        waitpid(pids[p], &st, 0);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    for (int i = 0; i < JOBS; i++) assert_int_equal(seen[i], 1);
    json_t *done = embd_spool_list(&sp, EMBD_JS_DONE);
    assert_int_equal(json_array_size(done), JOBS);
    json_decref(done);
    embd_spool_close(&sp);
}

static void test_priority_then_fifo(void **state) {
    (void)state;
    embd_spool sp;
    fresh_spool(&sp, "prio");
    submit(&sp, "low1", 1, EMBD_PRIO_LOW, NULL);
    submit(&sp, "norm1", 1, EMBD_PRIO_NORMAL, NULL);
    submit(&sp, "high1", 1, EMBD_PRIO_HIGH, NULL);
    submit(&sp, "norm2", 1, EMBD_PRIO_NORMAL, NULL);
    submit(&sp, "high2", 1, EMBD_PRIO_HIGH, NULL);
    const char *order[] = {"high1", "high2", "norm1", "norm2", "low1"};
    char err[256];
    for (int i = 0; i < 5; i++) {
        embd_claim c;
        assert_int_equal(embd_spool_claim(&sp, &c, err, sizeof err), 1);
        assert_string_equal(c.id, order[i]);
        assert_int_equal(embd_spool_find(&sp, c.id, NULL, 0), EMBD_JS_RUNNING);
        embd_spool_finish(&sp, &c, EMBD_JS_DONE, err, sizeof err);
        embd_claim_free(&c);
    }
    embd_claim c;
    assert_int_equal(embd_spool_claim(&sp, &c, err, sizeof err), 0);
    /* a duplicate id is refused */
    embd_jobopts o;
    embd_jobopts_default(&o);
    assert_int_equal(embd_spool_enqueue(&sp, "low1", NULL, &o, err, sizeof err), -1);
    assert_non_null(strstr(err, "exists"));
    embd_spool_close(&sp);
}

static void test_stale_recovery(void **state) {
    (void)state;
    embd_spool a, b;
    fresh_spool(&a, "stale");
    char err[256];
    assert_int_equal(embd_spool_open(&b, a.dir, false, err, sizeof err), 0);
    a.stale_after = b.stale_after = 0.6;
    submit(&a, "s1", 2, EMBD_PRIO_NORMAL, NULL);
    embd_claim ca, cb;
    assert_int_equal(embd_spool_claim(&a, &ca, err, sizeof err), 1);
    assert_int_equal(embd_spool_recover(&b), 0); /* fresh claim */
    usleep(300000);
    assert_int_equal(embd_spool_heartbeat(&a, &ca), 0);
    usleep(400000);
    assert_int_equal(embd_spool_recover(&b), 0); /* the heartbeat kept it */
    usleep(900000);
    assert_int_equal(embd_spool_recover(&b), 1); /* a went silent */
    assert_int_equal(embd_spool_recover(&b), 0);
    assert_int_equal(embd_spool_find(&b, "s1", NULL, 0), EMBD_JS_QUEUED);
    assert_int_equal(embd_spool_heartbeat(&a, &ca), 1); /* the stalled owner learns it lost the claim */
    assert_int_equal(embd_spool_claim(&b, &cb, err, sizeof err), 1);
    assert_string_equal(cb.id, "s1");
    assert_int_equal(embd_spool_heartbeat(&a, &ca), 1);
    assert_int_equal(embd_spool_heartbeat(&b, &cb), 0);
    embd_spool_finish(&b, &cb, EMBD_JS_DONE, err, sizeof err);
    embd_claim_free(&ca);
    embd_claim_free(&cb);
    embd_spool_close(&a);
    embd_spool_close(&b);
}

/* A fake engine: vector = (len, first byte, 1, 2); stops the runner after stop_after calls. */
typedef struct {
    int calls, stop_after;
    atomic_int *stop;
} fake;

static int fake_embed(void *ud, const char *const *texts, const size_t *lens, size_t n, const embd_jobopts *o,
                      float *out, embd_item *res, char *err, size_t errlen) {
    (void)o, (void)err, (void)errlen;
    fake *f = ud;
    for (size_t i = 0; i < n; i++) {
        out[i * 4 + 0] = (float)lens[i];
        out[i * 4 + 1] = (float)(unsigned char)texts[i][0];
        out[i * 4 + 2] = 1, out[i * 4 + 3] = 2;
        res[i] = (embd_item){.status = EMBD_ITEM_OK, .n_tokens = (int)lens[i]};
        if (lens[i] == 0) res[i] = (embd_item){.status = EMBD_ITEM_TOO_LONG, .message = "empty"};
    }
    if (++f->calls == f->stop_after) atomic_store(f->stop, 1);
    return 0;
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, f);
    b[*len] = 0;
    fclose(f);
    return b;
}

static void test_resume_after_torn_write(void **state) {
    (void)state;
    embd_spool sp;
    fresh_spool(&sp, "resume");
    sp.stale_after = 5;
    /* 50 items + a malformed line + a line without text + an empty text (engine error). */
    submit(&sp, "r1", 50, EMBD_PRIO_NORMAL, "{oops\n\n{\"id\":7}\n{\"id\":\"empty\",\"text\":\"\"}\n");
    atomic_int stop = 0;
    fake f = {.stop_after = 2, .stop = &stop};
    embd_runner r = {.embed = fake_embed, .ud = &f, .n_embd = 4, .chunk_items = 8, .stop = &stop, .worker = "t"};
    char err[256];
    embd_claim c;
    assert_int_equal(embd_spool_claim(&sp, &c, err, sizeof err), 1);
    assert_int_equal(embd_job_run(&sp, &c, &r, err, sizeof err), EMBD_RUN_STOPPED);
    embd_claim_free(&c);
    assert_int_equal(embd_spool_find(&sp, "r1", NULL, 0), EMBD_JS_QUEUED);
    json_t *st = embd_spool_status(&sp, "r1");
    assert_int_equal(json_integer_value(json_object_get(st, "items_done")), 16);
    json_decref(st);

    /* A crash after a write but before its checkpoint: a torn record at the end of both files. */
    char rp[4200], ep[4200];
    embd_spool_path(&sp, rp, sizeof rp, "results", "r1", ".jsonl");
    embd_spool_path(&sp, ep, sizeof ep, "results", "r1", ".errors.jsonl");
    FILE *fr = fopen(rp, "ab");
    fputs("{\"id\":\"r1-16\",\"embedding\":[1,2", fr);
    fclose(fr);
    fr = fopen(ep, "ab");
    fputs("{\"id\":\"zz\",\"err", fr);
    fclose(fr);

    atomic_store(&stop, 0);
    f.stop_after = -1;
    assert_int_equal(embd_spool_claim(&sp, &c, err, sizeof err), 1);
    assert_int_equal(c.total, 53);
    assert_int_equal(embd_job_run(&sp, &c, &r, err, sizeof err), EMBD_RUN_DONE);
    embd_claim_free(&c);
    assert_int_equal(embd_spool_find(&sp, "r1", NULL, 0), EMBD_JS_DONE);

    size_t len;
    char *res = slurp(rp, &len);
    assert_non_null(res);
    int expect = 0;
    for (char *line = strtok(res, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        assert_non_null(j);
        char want[32];
        snprintf(want, sizeof want, "r1-%d", expect++);
        assert_string_equal(json_string_value(json_object_get(j, "id")), want);
        assert_int_equal(json_array_size(json_object_get(j, "embedding")), 4);
        json_decref(j);
    }
    assert_int_equal(expect, 50);
    free(res);
    char *errs = slurp(ep, &len);
    assert_non_null(strstr(errs, "invalid JSON"));
    assert_non_null(strstr(errs, "{\"id\":7,\"line\":52,\"error\":\"field \\\"text\\\" is missing or not a string\"}"));
    assert_non_null(strstr(errs, "\"empty\""));
    assert_null(strstr(errs, "zz"));
    int lines = 0;
    for (char *p = errs; *p; p++) lines += *p == '\n';
    assert_int_equal(lines, 3);
    free(errs);
    st = embd_spool_status(&sp, "r1");
    assert_string_equal(json_string_value(json_object_get(st, "state")), "done");
    assert_int_equal(json_integer_value(json_object_get(st, "items_done")), 53);
    assert_int_equal(json_integer_value(json_object_get(st, "errors")), 3);
    json_decref(st);
    embd_spool_close(&sp);
}

static void test_cancel_deadline_bad_spec(void **state) {
    (void)state;
    char p[4200];
    embd_spool sp;
    fresh_spool(&sp, "cancel");
    char err[256];
    assert_int_equal(embd_spool_cancel(&sp, "nope"), EMBD_JS_UNKNOWN);
    assert_null(embd_spool_status(&sp, "nope"));
    submit(&sp, "q1", 3, EMBD_PRIO_NORMAL, NULL);
    assert_int_equal(embd_spool_cancel(&sp, "q1"), EMBD_JS_QUEUED);
    assert_int_equal(embd_spool_find(&sp, "q1", NULL, 0), EMBD_JS_CANCELLED);
    assert_int_equal(embd_spool_cancel(&sp, "q1"), EMBD_JS_CANCELLED);

    /* running: the runner sees the request before its next chunk */
    submit(&sp, "q2", 3, EMBD_PRIO_NORMAL, NULL);
    embd_claim c;
    assert_int_equal(embd_spool_claim(&sp, &c, err, sizeof err), 1);
    assert_int_equal(embd_spool_cancel(&sp, "q2"), EMBD_JS_RUNNING);
    atomic_int stop = 0;
    fake f = {.stop_after = -1, .stop = &stop};
    embd_runner r = {.embed = fake_embed, .ud = &f, .n_embd = 4, .chunk_items = 2, .stop = &stop};
    assert_int_equal(embd_job_run(&sp, &c, &r, err, sizeof err), EMBD_RUN_CANCELLED);
    embd_claim_free(&c);
    assert_int_equal(embd_spool_find(&sp, "q2", NULL, 0), EMBD_JS_CANCELLED);
    assert_int_equal(f.calls, 0);

    /* a deadline in the past fails the job with a reason */
    embd_jobopts o;
    embd_jobopts_default(&o);
    o.deadline = 1000;
    assert_int_equal(embd_spool_write_input(&sp, "d1", "{\"text\":\"a\"}\n", 13, NULL, err, sizeof err), 0);
    assert_int_equal(embd_spool_enqueue(&sp, "d1", NULL, &o, err, sizeof err), 0);
    assert_int_equal(embd_spool_claim(&sp, &c, err, sizeof err), 1);
    assert_int_equal(embd_job_run(&sp, &c, &r, err, sizeof err), EMBD_RUN_FAILED);
    assert_non_null(strstr(err, "deadline"));
    embd_claim_free(&c);
    json_t *st = embd_spool_status(&sp, "d1");
    assert_string_equal(json_string_value(json_object_get(st, "state")), "failed");
    assert_non_null(strstr(json_string_value(json_object_get(st, "error")), "deadline"));
    json_decref(st);

    /* a malformed line quoting bytes that are not UTF-8: still a valid error record (found by
     * fuzz_job_chunk: jansson's message quotes the input) */
    static const char bad[] = "{\"id\":\"ok\",\"text\":\"fine\"}\n{\"text\": \xff\xfe\xc3 }\n";
    assert_int_equal(embd_spool_write_input(&sp, "u1", bad, sizeof bad - 1, NULL, err, sizeof err), 0);
    embd_jobopts_default(&o);
    assert_int_equal(embd_spool_enqueue(&sp, "u1", NULL, &o, err, sizeof err), 0);
    assert_int_equal(embd_spool_claim(&sp, &c, err, sizeof err), 1);
    assert_int_equal(embd_job_run(&sp, &c, &r, err, sizeof err), EMBD_RUN_DONE);
    embd_claim_free(&c);
    embd_spool_path(&sp, p, sizeof p, "results", "u1", ".errors.jsonl");
    size_t elen;
    char *etext = slurp(p, &elen);
    assert_non_null(etext);
    json_error_t je;
    json_t *rec = json_loads(etext, 0, &je);
    assert_non_null(rec);
    assert_int_equal(json_integer_value(json_object_get(rec, "id")), 1);
    assert_non_null(strstr(json_string_value(json_object_get(rec, "error")), "invalid JSON"));
    json_decref(rec);
    free(etext);

    /* a spec file that is not JSON fails on claim; the next job still runs */
    snprintf(p, sizeof p, "%s/queue/1-00000000000000000001-junk.json", sp.dir);
    FILE *fj = fopen(p, "w");
    fputs("{not json", fj);
    fclose(fj);
    submit(&sp, "after", 1, EMBD_PRIO_LOW, NULL);
    assert_int_equal(embd_spool_claim(&sp, &c, err, sizeof err), 1);
    assert_string_equal(c.id, "after");
    embd_claim_free(&c);
    assert_int_equal(embd_spool_find(&sp, "junk", NULL, 0), EMBD_JS_FAILED);
    /* an input that vanished fails the job, not the worker */
    submit(&sp, "gone", 1, EMBD_PRIO_NORMAL, NULL);
    embd_spool_path(&sp, p, sizeof p, "inputs", "gone", ".jsonl");
    unlink(p);
    assert_int_equal(embd_spool_claim(&sp, &c, err, sizeof err), 1);
    assert_int_equal(embd_job_run(&sp, &c, &r, err, sizeof err), EMBD_RUN_FAILED);
    assert_non_null(strstr(err, "cannot open input"));
    embd_claim_free(&c);
    embd_spool_close(&sp);
}

int main(void) {
    const char *tmp = getenv("EMBD_TEST_TMP");
    char tmpl[4000];
    snprintf(tmpl, sizeof tmpl, "%s/spool-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (tmp && *tmp) {
        char cmd[4100];
        snprintf(cmd, sizeof cmd, "mkdir -p '%s'", tmp);
        if (system(cmd)) return 1;
    }
    if (!mkdtemp(tmpl)) return 1;
    snprintf(root, sizeof root, "%s", tmpl);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_and_options),
        cmocka_unit_test(test_claim_exactly_once),
        cmocka_unit_test(test_priority_then_fifo),
        cmocka_unit_test(test_stale_recovery),
        cmocka_unit_test(test_resume_after_torn_write),
        cmocka_unit_test(test_cancel_deadline_bad_spec),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd)) rc = rc ? rc : 1;
    return rc;
}
