/* `embd jobs submit|status|list|watch|results|cancel --spool DIR`: the client side of the spool
 * queue. Works without a running server: everything is files. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "queue/redisq.h"
#include "queue/spool.h"
#include "util/sys.h"

static void jobs_usage(FILE *f) {
    fprintf(f,
            "usage: embd jobs <command> --spool DIR [options]\n\n"
            "  submit  [-i FILE|-] [--id ID] [--priority high|normal|low] [--no-normalize]\n"
            "          [--no-truncate] [--deadline SECONDS] [--format jsonl|npy] [--in-place]\n"
            "          queue a job of JSONL items {\"id\",\"text\"}; prints its id. The input is copied\n"
            "          into the spool, or with --in-place read from FILE where it is (FILE must then\n"
            "          stay, and be readable by the workers at the same path).\n"
            "  status  [ID] [--state S]   one job's state and progress as JSON, or all jobs (JSONL)\n"
            "  watch   ID [--interval S]  progress until the job ends (a bar on a terminal, lines else);\n"
            "                             exit 0 done, 3 failed or cancelled\n"
            "  results ID [--errors]      the results written so far (JSONL; --errors: the item errors)\n"
            "  cancel  ID                 cancel a queued or running job\n\n"
            "With --redis redis://HOST[:PORT][/DB] instead of --spool: the same on the Redis backend\n"
            "(submit, status ID, watch, results, cancel; jobs are run by `embd worker --redis`).\n"
            "Exit status: 0 ok, 1 usage, 2 spool or job unusable (unknown id), 3 job failed/cancelled.\n");
}

typedef struct {
    const char *spool, *redis, *input, *id, *state;
    embd_jobopts o;
    double deadline_in, interval;
    bool in_place, errors;
} jobs_args;

static int parse_args(int argc, char **argv, jobs_args *a) {
    static const struct option lo[] = {
        {"spool", required_argument, 0, 's'},     {"input", required_argument, 0, 'i'},
        {"id", required_argument, 0, 'I'},        {"priority", required_argument, 0, 'P'},
        {"no-normalize", no_argument, 0, 'n'},    {"normalize", no_argument, 0, 'N'},
        {"no-truncate", no_argument, 0, 'U'},     {"truncate", no_argument, 0, 'T'},
        {"deadline", required_argument, 0, 'D'},  {"format", required_argument, 0, 'f'},
        {"in-place", no_argument, 0, 'X'},        {"state", required_argument, 0, 'S'},
        {"interval", required_argument, 0, 'v'},  {"errors", no_argument, 0, 'e'},
        {"redis", required_argument, 0, 'R'},     {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    embd_jobopts_default(&a->o);
    a->input = "-";
    a->interval = 0.5;
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "s:i:h", lo, NULL)) != -1;) {
        char *end = NULL;
        char err[200];
        switch (c) {
        case 's': a->spool = optarg; break;
        case 'R': a->redis = optarg; break;
        case 'i': a->input = optarg; break;
        case 'I': a->id = optarg; break;
        case 'n': a->o.normalize = false; break;
        case 'N': a->o.normalize = true; break;
        case 'U': a->o.truncate = false; break;
        case 'T': a->o.truncate = true; break;
        case 'X': a->in_place = true; break;
        case 'e': a->errors = true; break;
        case 'S': a->state = optarg; break;
        case 'P':
        case 'f': {
            json_t *j = json_pack("{s:s}", c == 'P' ? "priority" : "format", optarg);
            int rc = embd_jobopts_from_json(&a->o, j, err, sizeof err);
            json_decref(j);
            if (rc) {
                fprintf(stderr, "embd jobs: --%s\n", err);
                return -1;
            }
            break;
        }
        case 'D':
        case 'v': {
            double v = strtod(optarg, &end);
            if (!*optarg || *end || !(v > 0 && v < 1e9)) {
                fprintf(stderr, "embd jobs: --%s needs a positive number of seconds\n", c == 'D' ? "deadline" : "interval");
                return -1;
            }
            if (c == 'D') a->deadline_in = v;
            else a->interval = v;
            break;
        }
        case 'h': jobs_usage(stdout); exit(EMBD_EXIT_OK);
        default: jobs_usage(stderr); return -1;
        }
    }
    if (optind < argc) a->id = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, "embd jobs: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (!a->spool == !a->redis) {
        fprintf(stderr, "embd jobs: give --spool DIR or --redis URL (one of them)\n");
        return -1;
    }
    return 0;
}

static void print_json(json_t *j, bool pretty) {
    char *s = j ? json_dumps(j, pretty ? JSON_INDENT(2) : JSON_COMPACT) : NULL;
    if (s) puts(s);
    free(s);
}

static int do_submit(embd_spool *sp, jobs_args *a) {
    char idbuf[33], err[512];
    const char *id = a->id;
    if (!id) {
        embd_spool_new_id(idbuf);
        id = idbuf;
    } else if (!embd_spool_valid_id(id)) {
        fprintf(stderr, "embd jobs: invalid job id '%s' (1-64 of A-Z a-z 0-9 _ -)\n", id);
        return EMBD_EXIT_USAGE;
    }
    if (a->deadline_in > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        a->o.deadline = (double)ts.tv_sec + a->deadline_in;
    }
    char *abs = NULL;
    if (a->in_place) {
        if (!strcmp(a->input, "-")) {
            fprintf(stderr, "embd jobs: --in-place needs --input FILE\n");
            return EMBD_EXIT_USAGE;
        }
        abs = realpath(a->input, NULL);
        if (!abs) {
            fprintf(stderr, "embd jobs: cannot open input '%s'\n", a->input);
            return EMBD_EXIT_UNUSABLE;
        }
    } else {
        FILE *f = strcmp(a->input, "-") ? fopen(a->input, "rb") : stdin;
        if (!f) {
            fprintf(stderr, "embd jobs: cannot open input '%s'\n", a->input);
            return EMBD_EXIT_UNUSABLE;
        }
        int rc = embd_spool_write_input(sp, id, NULL, 0, f, err, sizeof err);
        if (f != stdin) fclose(f);
        if (rc) {
            fprintf(stderr, "embd jobs: %s\n", err);
            return EMBD_EXIT_UNUSABLE;
        }
    }
    int rc = embd_spool_enqueue(sp, id, abs, &a->o, err, sizeof err);
    free(abs);
    if (rc) {
        fprintf(stderr, "embd jobs: %s\n", err);
        return EMBD_EXIT_UNUSABLE;
    }
    printf("%s\n", id);
    return EMBD_EXIT_OK;
}

static void show(json_t *st, bool tty) {
    json_int_t done = json_integer_value(json_object_get(st, "items_done"));
    json_int_t total = json_integer_value(json_object_get(st, "total"));
    json_int_t errs = json_integer_value(json_object_get(st, "errors"));
    double rate = json_number_value(json_object_get(st, "rate_tokens_s"));
    double eta = json_number_value(json_object_get(st, "eta_s"));
    const char *state = json_string_value(json_object_get(st, "state"));
    if (tty) {
        char bar[31] = {0};
        int fill = total > 0 ? (int)(30.0 * (double)done / (double)total) : 0;
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
        fprintf(stderr, "\r%-9s [%s] %lld/%lld items  %lld errors  %.0f tok/s  ETA %d:%02d ", state, bar, (long long)done,
                (long long)total, (long long)errs, rate, (int)eta / 60, (int)eta % 60);
    } else {
        fprintf(stderr, "%s %lld/%lld items %lld errors %.0f tok/s eta %.0f s\n", state, (long long)done, (long long)total,
                (long long)errs, rate, eta);
    }
}

typedef json_t *(*status_fn)(void *ctx, const char *id);
static json_t *spool_status(void *ctx, const char *id) { return embd_spool_status(ctx, id); }
static json_t *redis_status(void *ctx, const char *id) { return embd_redisq_status(ctx, id); }

static int do_watch(status_fn get, void *ctx, jobs_args *a) {
    bool tty = isatty(2);
    char last[256] = "";
    for (;;) {
        json_t *st = get(ctx, a->id);
        if (!st) {
            fprintf(stderr, "embd jobs: no job '%s'\n", a->id);
            return EMBD_EXIT_UNUSABLE;
        }
        embd_jstate s = embd_jstate_parse(json_string_value(json_object_get(st, "state")));
        char now[256];
        snprintf(now, sizeof now, "%s %lld", embd_jstate_name(s), (long long)json_integer_value(json_object_get(st, "items_done")));
        if (tty || strcmp(now, last)) show(st, tty); /* lines only when something changed */
        snprintf(last, sizeof last, "%s", now);
        bool end = s == EMBD_JS_DONE || s == EMBD_JS_FAILED || s == EMBD_JS_CANCELLED;
        if (end) {
            if (tty) fputc('\n', stderr);
            const char *e = json_string_value(json_object_get(st, "error"));
            if (e) fprintf(stderr, "embd jobs: %s: %s\n", a->id, e);
        }
        json_decref(st);
        if (end) return s == EMBD_JS_DONE ? EMBD_EXIT_OK : EMBD_EXIT_ITEM_ERRORS;
        struct timespec ts = {(time_t)a->interval, (long)((a->interval - (double)(time_t)a->interval) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

static int do_results(embd_spool *sp, jobs_args *a) {
    embd_jstate s = embd_spool_find(sp, a->id, NULL, 0);
    if (s == EMBD_JS_UNKNOWN) {
        fprintf(stderr, "embd jobs: no job '%s'\n", a->id);
        return EMBD_EXIT_UNUSABLE;
    }
    char p[4200];
    embd_spool_path(sp, p, sizeof p, "results", a->id, a->errors ? ".errors.jsonl" : ".jsonl");
    long long limit = embd_spool_results_bytes(sp, a->id, a->errors); /* checkpointed bytes only */
    FILE *f = fopen(p, "rb");
    if (!f) return EMBD_EXIT_OK; /* nothing written yet */
    char b[1 << 16];
    long long sent = 0;
    size_t n;
    while ((limit < 0 || sent < limit) && (n = fread(b, 1, sizeof b, f)) > 0) {
        if (limit >= 0 && sent + (long long)n > limit) n = (size_t)(limit - sent);
        fwrite(b, 1, n, stdout);
        sent += (long long)n;
    }
    fclose(f);
    return fflush(stdout) ? EMBD_EXIT_UNUSABLE : EMBD_EXIT_OK;
}

static int jobs_redis(const char *sub, jobs_args *a) {
    char err[512];
    embd_redisq *q = embd_redisq_open(a->redis, err, sizeof err);
    if (!q) {
        fprintf(stderr, "embd jobs: %s\n", err);
        return EMBD_EXIT_UNUSABLE;
    }
    int rc = EMBD_EXIT_OK;
    if (!strcmp(sub, "submit")) {
        char idbuf[33];
        const char *id = a->id;
        if (!id) embd_spool_new_id(idbuf), id = idbuf;
        if (a->deadline_in > 0) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            a->o.deadline = (double)ts.tv_sec + a->deadline_in;
        }
        FILE *f = strcmp(a->input, "-") ? fopen(a->input, "rb") : stdin;
        if (!embd_spool_valid_id(id)) {
            fprintf(stderr, "embd jobs: invalid job id '%s' (1-64 of A-Z a-z 0-9 _ -)\n", id);
            rc = EMBD_EXIT_USAGE;
        } else if (a->o.npy || a->in_place) {
            fprintf(stderr, "embd jobs: --format npy and --in-place are spool-only\n");
            rc = EMBD_EXIT_USAGE;
        } else if (!f) {
            fprintf(stderr, "embd jobs: cannot open input '%s'\n", a->input);
            rc = EMBD_EXIT_UNUSABLE;
        } else if (embd_redisq_submit(q, id, f, &a->o, err, sizeof err)) {
            fprintf(stderr, "embd jobs: %s\n", err);
            rc = EMBD_EXIT_UNUSABLE;
        } else {
            printf("%s\n", id);
        }
        if (f && f != stdin) fclose(f);
    } else if (!a->id) {
        fprintf(stderr, "embd jobs %s: a job id is required with --redis\n", sub);
        rc = EMBD_EXIT_USAGE;
    } else if (!strcmp(sub, "status") || !strcmp(sub, "list")) {
        json_t *st = embd_redisq_status(q, a->id);
        if (!st) fprintf(stderr, "embd jobs: no job '%s'\n", a->id), rc = EMBD_EXIT_UNUSABLE;
        print_json(st, true);
        json_decref(st);
    } else if (!strcmp(sub, "watch")) {
        rc = do_watch(redis_status, q, a);
    } else if (!strcmp(sub, "results")) {
        if (embd_redisq_results(q, a->id, a->errors, stdout)) fprintf(stderr, "embd jobs: no job '%s'\n", a->id), rc = EMBD_EXIT_UNUSABLE;
    } else {
        embd_jstate s = embd_redisq_cancel(q, a->id);
        if (s == EMBD_JS_UNKNOWN) fprintf(stderr, "embd jobs: no job '%s'\n", a->id), rc = EMBD_EXIT_UNUSABLE;
        else fprintf(stderr, "embd jobs: %s: %s\n", a->id, s == EMBD_JS_QUEUED ? "cancelled" : s == EMBD_JS_RUNNING ? "cancel requested" : embd_jstate_name(s));
    }
    embd_redisq_close(q);
    return rc;
}

int cmd_jobs(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        jobs_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EMBD_EXIT_USAGE : EMBD_EXIT_OK;
    }
    const char *sub = argv[1];
    static const char *const subs[] = {"submit", "status", "list", "watch", "results", "cancel"};
    bool known = false;
    for (size_t i = 0; i < sizeof subs / sizeof *subs; i++) known |= !strcmp(sub, subs[i]);
    if (!known) {
        fprintf(stderr, "embd jobs: unknown command '%s'\n", sub);
        jobs_usage(stderr);
        return EMBD_EXIT_USAGE;
    }
    jobs_args a = {0};
    if (parse_args(argc - 1, argv + 1, &a)) return EMBD_EXIT_USAGE;
    bool needs_id = !strcmp(sub, "watch") || !strcmp(sub, "results") || !strcmp(sub, "cancel");
    if (needs_id && !a.id) {
        fprintf(stderr, "embd jobs %s: a job id is required\n", sub);
        return EMBD_EXIT_USAGE;
    }
    embd_jstate only = EMBD_JS_UNKNOWN;
    if (a.state && (only = embd_jstate_parse(a.state)) == EMBD_JS_UNKNOWN) {
        fprintf(stderr, "embd jobs: --state must be queued, running, done, failed or cancelled\n");
        return EMBD_EXIT_USAGE;
    }
    if (a.redis) return jobs_redis(sub, &a);
    embd_spool sp;
    char err[512];
    if (embd_spool_open(&sp, a.spool, !strcmp(sub, "submit"), err, sizeof err)) {
        fprintf(stderr, "embd jobs: %s\n", err);
        return EMBD_EXIT_UNUSABLE;
    }
    int rc = EMBD_EXIT_OK;
    if (!strcmp(sub, "submit")) {
        rc = do_submit(&sp, &a);
    } else if ((!strcmp(sub, "status") || !strcmp(sub, "list")) && !a.id) {
        json_t *arr = embd_spool_list(&sp, only);
        for (size_t i = 0; i < json_array_size(arr); i++) print_json(json_array_get(arr, i), false);
        json_decref(arr);
    } else if (!strcmp(sub, "status") || !strcmp(sub, "list")) {
        json_t *st = embd_spool_status(&sp, a.id);
        if (!st) {
            fprintf(stderr, "embd jobs: no job '%s'\n", a.id);
            rc = EMBD_EXIT_UNUSABLE;
        }
        print_json(st, true);
        json_decref(st);
    } else if (!strcmp(sub, "watch")) {
        rc = do_watch(spool_status, &sp, &a);
    } else if (!strcmp(sub, "results")) {
        rc = do_results(&sp, &a);
    } else {
        embd_jstate s = embd_spool_cancel(&sp, a.id);
        if (s == EMBD_JS_UNKNOWN) {
            fprintf(stderr, "embd jobs: no job '%s'\n", a.id);
            rc = EMBD_EXIT_UNUSABLE;
        } else if (s == EMBD_JS_QUEUED || s == EMBD_JS_RUNNING) {
            fprintf(stderr, "embd jobs: %s: %s\n", a.id, s == EMBD_JS_QUEUED ? "cancelled" : "cancel requested (the worker stops after its current chunk)");
        } else {
            fprintf(stderr, "embd jobs: %s: already %s\n", a.id, embd_jstate_name(s));
        }
    }
    embd_spool_close(&sp);
    return rc;
}
