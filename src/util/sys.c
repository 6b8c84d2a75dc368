#include "util/sys.h"

#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double embd_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static size_t status_kib(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    size_t kib = 0, klen = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            kib = (size_t)strtoull(line + klen + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kib * 1024;
}

size_t embd_peak_rss_bytes(void) { return status_kib("VmHWM"); }
size_t embd_rss_bytes(void) { return status_kib("VmRSS"); }

/* cgroup v2 cpu.max "quota period": a container limited to 2 CPUs on a 64-core host must not
 * start 64 threads. */
static int cgroup_cpu_limit(void) {
    FILE *f = fopen("/sys/fs/cgroup/cpu.max", "r");
    if (!f) return 0;
    char quota[32] = {0};
    long period = 0;
    int n = fscanf(f, "%31s %ld", quota, &period);
    fclose(f);
    if (n != 2 || strcmp(quota, "max") == 0 || period <= 0) return 0;
    long q = atol(quota);
    int cpus = (int)((q + period - 1) / period);
    return cpus > 0 ? cpus : 0;
}

int embd_cpu_count(void) {
    int n = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
    if (n <= 0) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    int lim = cgroup_cpu_limit();
    if (lim > 0 && lim < n) n = lim;
    return n > 0 ? n : 1;
}

int embd_fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int embd_cpu_times(unsigned long long *busy, unsigned long long *total) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
                   &v[7]);
    fclose(f);
    if (n < 4) return -1;
    *total = 0;
    for (int i = 0; i < 8; i++) *total += v[i];
    *busy = *total - v[3] - v[4]; /* minus idle and iowait */
    return 0;
}

char *embd_read_file(const char *path, size_t max, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        embd_fail(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t n = 0, cap = 0;
    bool oom = false, bad = false;
    for (;;) { /* read up to max + 1 bytes: one more than allowed says "too large" */
        if (n == cap) {
            cap = cap ? 2 * cap : 65536;
            if (cap > max + 1) cap = max + 1;
            char *nb = cap > n ? realloc(buf, cap + 1) : NULL;
            if (!nb) {
                oom = cap > n;
                break;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) {
            bad = ferror(f);
            break;
        }
    }
    fclose(f);
    if (oom || bad || n > max) {
        free(buf);
        embd_fail(err, errlen, "cannot read %s: %s", path, oom ? "out of memory" : bad ? "read error" : "file too large");
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}
