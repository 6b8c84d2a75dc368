#include "cli/gitignore.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *pat;
    bool negate, dir_only, anchored;
} rule;

struct embd_ignore {
    char *base; /* directory of the .gitignore */
    rule *r;
    size_t n;
    embd_ignore *parent;
};

embd_ignore *embd_ignore_push(embd_ignore *parent, const char *dir) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s/.gitignore", dir) >= (int)sizeof path) return parent;
    FILE *f = fopen(path, "r");
    if (!f) return parent;
    embd_ignore *g = calloc(1, sizeof *g);
    if (!g || !(g->base = strdup(dir))) {
        free(g);
        fclose(f);
        return parent;
    }
    g->parent = parent;
    char *line = NULL;
    size_t cap = 0;
    for (ssize_t len; (len = getline(&line, &cap, f)) >= 0;) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' ')) line[--len] = 0;
        char *p = line;
        if (!*p || *p == '#') continue;
        rule x = {0};
        if (*p == '!') x.negate = true, p++;
        size_t n = strlen(p);
        if (n && p[n - 1] == '/') x.dir_only = true, p[--n] = 0;
        if (!strncmp(p, "**/", 3)) p += 3;
        else if (*p == '/') x.anchored = true, p++;
        else if (strchr(p, '/')) x.anchored = true;
        if (!*p) continue;
        rule *nr = realloc(g->r, (g->n + 1) * sizeof *nr);
        if (!nr || !(x.pat = strdup(p))) break;
        g->r = nr;
        g->r[g->n++] = x;
    }
    free(line);
    fclose(f);
    return g;
}

void embd_ignore_pop(embd_ignore *top, embd_ignore *until) {
    while (top && top != until) {
        embd_ignore *p = top->parent;
        for (size_t i = 0; i < top->n; i++) free(top->r[i].pat);
        free(top->r);
        free(top->base);
        free(top);
        top = p;
    }
}

/* The outermost layer decides first; inner layers and later lines override (git's order). */
static void apply(const embd_ignore *g, const char *path, bool is_dir, bool *ignored) {
    if (!g) return;
    apply(g->parent, path, is_dir, ignored);
    size_t bl = strlen(g->base);
    if (strncmp(path, g->base, bl) || path[bl] != '/') return;
    const char *rel = path + bl + 1, *name = strrchr(path, '/') + 1;
    for (size_t i = 0; i < g->n; i++) {
        const rule *x = &g->r[i];
        if (x->dir_only && !is_dir) continue;
        bool m = x->anchored ? !fnmatch(x->pat, rel, FNM_PATHNAME) : !fnmatch(x->pat, name, 0);
        if (m) *ignored = !x->negate;
    }
}

bool embd_ignored(const embd_ignore *top, const char *path, bool is_dir) {
    bool ignored = false;
    apply(top, path, is_dir, &ignored);
    return ignored;
}
