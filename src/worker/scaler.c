#include "worker/scaler.h"

#include "util/sys.h"

void embd_scale_opts_default(embd_scale_opts *o) {
    *o = (embd_scale_opts){.cpu_high = 0.69, .cpu_low = 0.59, .busy_min = 0.8, .idle_s = 10, .min_workers = 1,
                           .max_workers = embd_cpu_count()};
}

void embd_scale_state_init(embd_scale_state *st) { *st = (embd_scale_state){.prev_cpu = -1}; }

int embd_scale_threads(int cores, int workers) {
    int t = workers > 0 ? cores / workers : cores;
    return t < 1 ? 1 : t;
}

int embd_scale_decide(const embd_scale_opts *o, embd_scale_state *st, const embd_scale_in *in, const char **why) {
    /* linear trend: where CPU use will be two intervals from now if it keeps moving like this */
    const double slope = st->prev_cpu < 0 ? 0 : in->cpu - st->prev_cpu;
    st->predicted = in->cpu + 2 * slope;
    st->prev_cpu = in->cpu;
    const double hi = in->cpu > st->predicted ? in->cpu : st->predicted;
    if (hi >= o->cpu_high) st->blocked = true;
    else if (hi < o->cpu_low) st->blocked = false;
    *why = "steady";
    if (in->workers > o->min_workers && in->newest_idle_s >= o->idle_s) {
        *why = "idle";
        return -1;
    }
    if (in->workers >= o->max_workers || in->min_busy < o->busy_min) {
        *why = in->workers >= o->max_workers ? "at the maximum" : "not all busy";
        return 0;
    }
    if (st->blocked) {
        *why = "cpu";
        return 0;
    }
    if (in->mem_budget && in->mem_used + in->mem_per_worker > in->mem_budget) {
        *why = "memory";
        return 0;
    }
    *why = "all busy";
    return +1;
}
