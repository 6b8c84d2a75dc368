/* Files for ingest: the directory walk (hidden entries and .gitignore'd paths skipped) and the
 * text-file reader shared by `embd collections ingest` and `embd ingest`. */
#include "cli/files.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/sys.h"

enum { MAX_FILE_BYTES = 8 << 20 };

int embd_path_add(path_list *l, const char *p) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        char **np = realloc(l->paths, cap * sizeof *np);
        if (!np) return -1;
        l->paths = np;
        l->cap = cap;
    }
    return (l->paths[l->n] = strdup(p)) ? (int)(l->n++, 0) : -1;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Regular files under p, sorted; hidden entries and what .gitignore files exclude are skipped.
 * Returns -1 only when p itself cannot be read or memory runs out. */
int embd_walk(const char *p, path_list *l, int depth, embd_ignore *ig) {
    struct stat st;
    if (stat(p, &st)) {
        fprintf(stderr, "embd: cannot read %s\n", p);
        return depth ? 0 : -1;
    }
    if (S_ISREG(st.st_mode)) return embd_path_add(l, p);
    if (!S_ISDIR(st.st_mode) || depth > 64) return 0;
    DIR *d = opendir(p);
    if (!d) return 0;
    embd_ignore *top = embd_ignore_push(ig, p);
    path_list sub = {0};
    int rc = 0;
    for (struct dirent *e; !rc && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char buf[4096];
        if (snprintf(buf, sizeof buf, "%s/%s", p, e->d_name) >= (int)sizeof buf) continue;
        struct stat es;
        if (embd_ignored(top, buf, !stat(buf, &es) && S_ISDIR(es.st_mode))) continue;
        rc = embd_path_add(&sub, buf);
    }
    closedir(d);
    if (sub.n) qsort(sub.paths, sub.n, sizeof *sub.paths, cmp_str);
    for (size_t i = 0; i < sub.n; i++) {
        if (!rc) rc = embd_walk(sub.paths[i], l, depth + 1, top);
        free(sub.paths[i]);
    }
    free(sub.paths);
    embd_ignore_pop(top, ig);
    return rc;
}

/* The file's bytes when it looks like text (no NUL in it, at most MAX_FILE_BYTES). */
char *embd_read_text(const char *path, size_t *len) {
    char *buf = embd_read_file(path, MAX_FILE_BYTES, len, NULL, 0);
    if (buf && memchr(buf, 0, *len)) {
        free(buf);
        return NULL;
    }
    return buf;
}

void embd_paths_free(path_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->paths[i]);
    free(l->paths);
    l->paths = NULL, l->n = l->cap = 0;
}

void embd_progress_init(embd_progress *p, bool quiet) {
    *p = (embd_progress){.tty = !quiet && isatty(2), .quiet = quiet, .t0 = embd_now()};
}

void embd_progress_show(embd_progress *p, size_t done, size_t total, size_t chunks, size_t enriched, size_t degraded,
                        size_t skipped, bool final) {
    if (p->quiet) return;
    double now = embd_now(), dt = now - p->t0;
    if (!p->tty && !final && now - p->last < 2.0) return; /* a log, not a flood */
    p->last = now;
    char extra[96] = "";
    if (enriched + degraded) snprintf(extra, sizeof extra, ", %zu enriched, %zu degraded", enriched, degraded);
    if (p->tty) {
        enum { W = 30 };
        char bar[W + 1];
        size_t fill = total ? done * W / total : W;
        for (size_t i = 0; i < W; i++) bar[i] = i < fill ? '#' : '.';
        bar[W] = 0;
        fprintf(stderr, "\r[%s] %zu/%zu files, %zu chunks%s, %zu skipped, %.0f chunks/s \033[K%s", bar, done, total, chunks,
                extra, skipped, dt > 0 ? (double)chunks / dt : 0.0, final ? "\n" : "");
    } else {
        fprintf(stderr, "ingest: %zu/%zu files, %zu chunks%s, %zu skipped, %.1f s%s\n", done, total, chunks, extra, skipped,
                dt, final ? " (done)" : "");
    }
}
