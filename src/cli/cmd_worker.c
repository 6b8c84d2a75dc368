/* `embd worker --spool DIR`: loads the model once and runs spool jobs until SIGTERM/SIGINT. Any
 * number of workers, on any machines that share DIR, may consume one spool. */
#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "engine/embed.h"
#include "queue/job.h"
#include "queue/redisq.h"
#include "queue/spool.h"
#include "util/download.h"
#include "util/sys.h"

static atomic_int stop_flag;

static void on_signal(int sig) {
    (void)sig;
    atomic_store(&stop_flag, 1);
}

static void worker_usage(FILE *f) {
    fprintf(f,
            "usage: embd worker --spool DIR | --redis redis://HOST:PORT [--model M.gguf] [options]\n\n"
            "Claims jobs from the spool directory (see `embd jobs`) and embeds them, a checkpoint after\n"
            "every chunk. Jobs of workers that died are taken over once their heartbeat is stale.\n"
            "SIGTERM/SIGINT: finish and checkpoint the current chunk, put the job back, exit 0.\n\n"
            "  -s, --spool DIR          spool directory (created if missing)\n"
            "      --redis URL          or: jobs from Redis Streams, redis://HOST[:PORT][/DB]\n"
            "  -m, --model FILE         GGUF embedding model (default: $EMBD_MODEL, else the pinned default)\n"
            "      --tokenizer FILE     HF tokenizer.json instead of the GGUF vocabulary\n"
            "  -t, --threads N          compute threads (default: all usable cores)\n"
            "  -b, --batch-tokens N     padded tokens per forward pass (default 4096)\n"
            "      --chunk N            items per chunk and checkpoint (default 64)\n"
            "      --stale-timeout S    seconds without heartbeat before a job is taken over (default 30)\n"
            "      --poll S             seconds between looks at an empty queue (default 0.5)\n"
            "      --exit-when-idle     exit once nothing is queued or running\n"
            "      --max-jobs N         exit after N jobs\n");
}

typedef struct {
    embd_encoder *enc;
    size_t batch_tokens;
} worker_ctx;

static int worker_embed(void *ud, const char *const *texts, const size_t *lens, size_t n, const embd_jobopts *jo,
                        float *out, embd_item *res, char *err, size_t errlen) {
    worker_ctx *w = ud;
    embd_opts o;
    embd_opts_default(&o);
    o.normalize = jo->normalize;
    o.truncate = jo->truncate;
    if (w->batch_tokens) o.batch_tokens = w->batch_tokens;
    return embd_embed_texts(w->enc, texts, lens, n, &o, out, res, err, errlen);
}

static int parse_num(const char *s, double lo, double hi, double *out) {
    char *end = NULL;
    double v = strtod(s, &end);
    if (!*s || *end || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}

static void nap(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL); /* a signal cuts it short, as it should */
}

int cmd_worker(int argc, char **argv) {
    static const struct option lo[] = {
        {"spool", required_argument, 0, 's'},        {"model", required_argument, 0, 'm'},
        {"tokenizer", required_argument, 0, 'k'},    {"threads", required_argument, 0, 't'},
        {"batch-tokens", required_argument, 0, 'b'}, {"chunk", required_argument, 0, 'c'},
        {"stale-timeout", required_argument, 0, 'S'}, {"poll", required_argument, 0, 'p'},
        {"exit-when-idle", no_argument, 0, 'x'},     {"max-jobs", required_argument, 0, 'J'},
        {"redis", required_argument, 0, 'R'},        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *spool_dir = NULL, *redis_url = NULL, *model_path = getenv("EMBD_MODEL"), *tok_json = NULL;
    double threads = 0, batch = 0, chunk = 64, stale = 30, poll_s = 0.5, max_jobs = 0;
    bool exit_idle = false;
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "s:m:t:b:h", lo, NULL)) != -1;) {
        int bad = 0;
        switch (c) {
        case 's': spool_dir = optarg; break;
        case 'R': redis_url = optarg; break;
        case 'm': model_path = optarg; break;
        case 'k': tok_json = optarg; break;
        case 'x': exit_idle = true; break;
        case 't': bad = parse_num(optarg, 1, 4096, &threads); break;
        case 'b': bad = parse_num(optarg, 1, 1 << 24, &batch); break;
        case 'c': bad = parse_num(optarg, 1, 1 << 20, &chunk); break;
        case 'S': bad = parse_num(optarg, 0.1, 1e7, &stale); break;
        case 'p': bad = parse_num(optarg, 0.001, 3600, &poll_s); break;
        case 'J': bad = parse_num(optarg, 1, 1e12, &max_jobs); break;
        case 'h': worker_usage(stdout); return EMBD_EXIT_OK;
        default: worker_usage(stderr); return EMBD_EXIT_USAGE;
        }
        if (bad) {
            const char *name = "?";
            for (size_t i = 0; lo[i].name; i++)
                if (lo[i].val == c) name = lo[i].name;
            fprintf(stderr, "embd worker: invalid value '%s' for --%s\n", optarg, name);
            return EMBD_EXIT_USAGE;
        }
    }
    if (!spool_dir == !redis_url || optind < argc) {
        fprintf(stderr,
                optind < argc ? "embd worker: unexpected argument '%s'\n" : "embd worker: give --spool DIR or --redis URL%s\n",
                optind < argc ? argv[optind] : " (one of them)");
        return EMBD_EXIT_USAGE;
    }
    char err[512], path[4096];
    if (!model_path || !*model_path) {
        if (embd_default_model(path, sizeof path, err, sizeof err)) {
            fprintf(stderr, "embd worker: no --model given and no default model: %s\n", err);
            return EMBD_EXIT_UNUSABLE;
        }
        model_path = path;
    }
    embd_spool sp = {0};
    embd_redisq *rq = NULL;
    if (redis_url ? !(rq = embd_redisq_open(redis_url, err, sizeof err)) : embd_spool_open(&sp, spool_dir, true, err, sizeof err)) {
        fprintf(stderr, "embd worker: %s\n", err);
        return EMBD_EXIT_UNUSABLE;
    }
    sp.stale_after = stale;
    embd_model_params mp = {.tokenizer_json = tok_json};
    embd_model *m = embd_model_load(model_path, &mp, err, sizeof err);
    embd_encoder *enc = m ? embd_encoder_new(m, (int)threads, err, sizeof err) : NULL;
    if (!enc) {
        fprintf(stderr, "embd worker: %s\n", err);
        embd_model_free(m);
        embd_spool_close(&sp);
        embd_redisq_close(rq);
        return EMBD_EXIT_UNUSABLE;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    worker_ctx w = {.enc = enc, .batch_tokens = (size_t)batch};
    embd_runner r = {.embed = worker_embed, .ud = &w, .n_embd = m->info.n_embd, .chunk_items = (size_t)chunk,
                     .stop = &stop_flag, .worker = sp.token};
    fprintf(stderr, "embd: worker %s on %s: ready (%s, %d dims)\n", rq ? "" : sp.token, rq ? redis_url : sp.dir,
            model_path, m->info.n_embd);
    long jobs = 0;
    int status = EMBD_EXIT_OK;
    if (rq) {
        jobs = embd_redisq_work(rq, &r, stale, poll_s, exit_idle, (long)max_jobs, err, sizeof err);
        if (jobs < 0) {
            fprintf(stderr, "embd worker: %s\n", err);
            status = EMBD_EXIT_UNUSABLE;
        }
    }
    while (!rq && !atomic_load(&stop_flag) && (max_jobs == 0 || jobs < (long)max_jobs)) {
        embd_spool_recover(&sp);
        embd_claim c;
        int got = embd_spool_claim(&sp, &c, err, sizeof err);
        if (got < 0) {
            fprintf(stderr, "embd worker: %s\n", err);
            nap(poll_s);
            continue;
        }
        if (got == 0) {
            if (exit_idle) {
                json_t *run = embd_spool_list(&sp, EMBD_JS_RUNNING), *q = embd_spool_list(&sp, EMBD_JS_QUEUED);
                bool idle = json_array_size(run) == 0 && json_array_size(q) == 0;
                json_decref(run), json_decref(q);
                if (idle) break;
            }
            nap(poll_s);
            continue;
        }
        double t0 = embd_now();
        fprintf(stderr, "embd: job %s: claimed (%zu items)\n", c.id, c.total);
        embd_run_outcome o = embd_job_run(&sp, &c, &r, err, sizeof err);
        static const char *const what[] = {"done", "failed", "cancelled", "stopped; requeued", "lost to another worker"};
        fprintf(stderr, "embd: job %s: %s in %.2f s%s%s\n", c.id, what[o], embd_now() - t0, o == EMBD_RUN_FAILED ? ": " : "",
                o == EMBD_RUN_FAILED ? err : "");
        embd_claim_free(&c);
        jobs++;
    }
    fprintf(stderr, "embd: worker stopped after %ld jobs\n", jobs);
    embd_encoder_free(enc);
    embd_model_free(m);
    embd_spool_close(&sp);
    embd_redisq_close(rq);
    return status;
}
