#include "worker/cgroup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The mount-relative path of our cgroup: "0::/path" (v2) or "N:memory:/path" (v1). */
static int cgroup_path(int v2, char *out, size_t n) {
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f) return -1;
    char line[1024];
    int rc = -1;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c2 = 0;
        const char *ctrl = c1 + 1;
        if (v2 ? (!strcmp(line, "0") && !*ctrl) : (strstr(ctrl, "memory") != NULL)) {
            snprintf(out, n, "%s", c2 + 1);
            rc = 0;
            break;
        }
    }
    fclose(f);
    return rc;
}

static FILE *open_cg(int v2, const char *file) {
    char rel[900], path[1100];
    /* EMBD_CGROUP_DIR: read this directory's files instead (a cgroup mounted elsewhere; tests) */
    const char *dir = getenv("EMBD_CGROUP_DIR");
    if (dir && *dir) {
        snprintf(path, sizeof path, "%s/%s", dir, file);
        return fopen(path, "r");
    }
    if (cgroup_path(v2, rel, sizeof rel)) return NULL;
    /* inside a container the cgroup namespace makes our group the root: try both */
    snprintf(path, sizeof path, v2 ? "/sys/fs/cgroup%s/%s" : "/sys/fs/cgroup/memory%s/%s", strcmp(rel, "/") ? rel : "",
             file);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(path, sizeof path, v2 ? "/sys/fs/cgroup/%s" : "/sys/fs/cgroup/memory/%s", file);
        f = fopen(path, "r");
    }
    return f;
}

size_t embd_cgroup_memory_limit(void) {
    char buf[64] = "";
    FILE *f = open_cg(1, "memory.max");
    int v1 = !f;
    if (!f) f = open_cg(0, "memory.limit_in_bytes");
    if (!f) return 0;
    if (!fgets(buf, sizeof buf, f)) buf[0] = 0;
    fclose(f);
    if (!strncmp(buf, "max", 3)) return 0;
    char *end;
    unsigned long long v = strtoull(buf, &end, 10);
    if (end == buf) return 0;
    if (v1 && v >= (1ull << 62)) return 0; /* v1 says "unlimited" with a huge number */
    return (size_t)v;
}

long long embd_cgroup_oom_kills(void) {
    FILE *f = open_cg(1, "memory.events");
    if (!f) f = open_cg(0, "memory.oom_control");
    if (!f) return -1;
    char line[256];
    long long n = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "oom_kill %lld", &n) == 1) break;
    fclose(f);
    return n;
}
