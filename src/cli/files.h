/* Files for ingest: the directory walk and the text-file reader of `embd collections ingest`
 * and `embd ingest`. */
#ifndef EMBD_CLI_FILES_H
#define EMBD_CLI_FILES_H

#include <stdbool.h>
#include <stddef.h>

#include "cli/gitignore.h"

typedef struct {
    char **paths;
    size_t n, cap;
} path_list;

int embd_path_add(path_list *l, const char *p); /* -1: out of memory */
void embd_paths_free(path_list *l);
/* Regular files under p (or p itself), sorted; hidden entries and what .gitignore files exclude
 * are skipped. Call with depth 0 and ig NULL. Returns -1 only when p itself cannot be read or
 * memory runs out. */
int embd_walk(const char *p, path_list *l, int depth, embd_ignore *ig);
/* The file's bytes when it looks like text (no NUL byte, at most 8 MiB), else NULL. */
char *embd_read_text(const char *path, size_t *len);

/* Ingest progress on stderr: a bar redrawn in place on a terminal, else one line every few
 * seconds (and a last one when done). */
typedef struct {
    bool tty, quiet;
    double t0, last;
} embd_progress;
void embd_progress_init(embd_progress *p, bool quiet);
void embd_progress_show(embd_progress *p, size_t done, size_t total, size_t chunks, size_t enriched, size_t degraded,
                        size_t skipped, bool final);

#endif
