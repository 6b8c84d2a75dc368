#include "worker/governor.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "worker/cgroup.h"

/* Hysteresis: shrink above HIGH of the share, grow only after CALM_RUNS batches below LOW. */
#define HIGH 0.90
#define LOW 0.70
#define CALM_RUNS 4
#define GROW 1.25
/* Room kept under the share for what the model does not see (allocator slack, response buffers). */
#define HEADROOM 0.90

static size_t ram_bytes(void) {
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    return pages > 0 && psz > 0 ? (size_t)pages * (size_t)psz : 0;
}

size_t embd_mem_budget(size_t max_memory, double percent, char *why, size_t whylen) {
    if (max_memory) {
        snprintf(why, whylen, "--max-memory");
        return max_memory;
    }
    size_t ram = ram_bytes(), cg = embd_cgroup_memory_limit();
    size_t b = (size_t)((double)ram * percent / 100.0);
    snprintf(why, whylen, "%.0f%% of %zu MiB RAM", percent, ram >> 20);
    if (cg && cg < b) {
        b = cg;
        snprintf(why, whylen, "cgroup memory limit");
    }
    return b;
}

void embd_gov_init(embd_gov *g, const embd_gov_opts *o) {
    memset(g, 0, sizeof *g);
    g->o = *o;
    if (g->o.workers < 1) g->o.workers = 1;
    if (g->o.min_tokens < 1) g->o.min_tokens = 1;
    if (g->o.max_tokens < g->o.min_tokens) g->o.max_tokens = g->o.min_tokens;
    g->limit = g->o.max_tokens;
    pthread_mutex_init(&g->mu, NULL);
}

void embd_gov_destroy(embd_gov *g) { pthread_mutex_destroy(&g->mu); }

size_t embd_gov_share(const embd_gov *g) { return g->o.budget / (size_t)g->o.workers; }

void embd_gov_calibrate(embd_gov *g, size_t t1, size_t p1, size_t t2, size_t p2) {
    pthread_mutex_lock(&g->mu);
    double slope = t2 > t1 && p2 > p1 ? (double)(p2 - p1) / (double)(t2 - t1) : 0;
    g->slope = slope;
    g->base = (double)p1 - slope * (double)t1;
    if (g->base < 0) g->base = 0;
    if (p1 > g->peak) g->peak = p1;
    if (p2 > g->peak) g->peak = p2;
    pthread_mutex_unlock(&g->mu);
}

static double predict(const embd_gov *g, size_t tokens) { return g->base + g->slope * (double)tokens; }

double embd_gov_predict(embd_gov *g, size_t tokens) {
    pthread_mutex_lock(&g->mu);
    double p = predict(g, tokens);
    pthread_mutex_unlock(&g->mu);
    return p;
}

int embd_gov_check(embd_gov *g, int n_ctx, char *err, size_t errlen) {
    double need = embd_gov_predict(g, (size_t)n_ctx);
    size_t share = embd_gov_share(g);
    if (need <= (double)share) return 0;
    snprintf(err, errlen,
             "the memory budget (%zu MiB, %zu MiB per worker) is too small for one sequence of %d tokens: a worker "
             "needs about %.0f MiB; raise --max-memory/--max-memory-percent or use fewer --workers",
             g->o.budget >> 20, share >> 20, n_ctx, need / (1 << 20));
    return -1;
}

size_t embd_gov_pass_tokens(embd_gov *g, size_t max_len) {
    pthread_mutex_lock(&g->mu);
    size_t t = g->limit;
    double room = (double)embd_gov_share(g) * HEADROOM;
    if (g->slope > 0 && predict(g, t) > room) {
        double fit = (room - g->base) / g->slope;
        t = fit < 1 ? 1 : (size_t)fit;
    }
    if (t < max_len) t = max_len; /* one sequence is the least a pass can hold */
    pthread_mutex_unlock(&g->mu);
    return t;
}

int embd_gov_observe(embd_gov *g, size_t tokens, size_t peak) {
    if (!peak || !tokens) return 0;
    pthread_mutex_lock(&g->mu);
    if (peak > g->peak) g->peak = peak;
    /* a peak above the model means the model was optimistic: steepen it through this point */
    if ((double)peak > predict(g, tokens) && tokens > 0) {
        double s = ((double)peak - g->base) / (double)tokens;
        if (s > g->slope) g->slope = s;
    }
    double share = (double)embd_gov_share(g);
    int rc = 0;
    if ((double)peak > HIGH * share) {
        size_t t = g->limit / 2;
        g->limit = t < g->o.min_tokens ? g->o.min_tokens : t;
        g->streak = 0;
        g->shrinks++;
        rc = -1;
    } else if ((double)peak < LOW * share && tokens >= g->limit / 2) { /* only batches that used the room */
        if (++g->streak >= CALM_RUNS && g->limit < g->o.max_tokens) {
            size_t t = (size_t)((double)g->limit * GROW) + 1;
            g->limit = t > g->o.max_tokens ? g->o.max_tokens : t;
            g->streak = 0;
            g->grows++;
            rc = 1;
        }
    } else {
        g->streak = 0;
    }
    pthread_mutex_unlock(&g->mu);
    return rc;
}

void embd_gov_pressure(embd_gov *g) {
    pthread_mutex_lock(&g->mu);
    g->limit = g->o.min_tokens;
    g->streak = 0;
    g->shrinks++;
    pthread_mutex_unlock(&g->mu);
}

size_t embd_gov_limit(embd_gov *g) {
    pthread_mutex_lock(&g->mu);
    size_t t = g->limit;
    pthread_mutex_unlock(&g->mu);
    return t;
}
