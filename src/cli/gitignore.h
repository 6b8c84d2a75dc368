/* The common subset of .gitignore rules for directory ingest: comments, blank lines, `!`
 * negation (last match wins), trailing `/` (directories only), patterns with a `/` anchored at
 * their file's directory (fnmatch with FNM_PATHNAME), others matched against the name at any
 * depth, a leading `**` + `/` meaning any depth. Nested .gitignore files stack. Not supported:
 * `**` inside a pattern, escapes, the global excludes file. */
#ifndef EMBD_GITIGNORE_H
#define EMBD_GITIGNORE_H

#include <stdbool.h>

typedef struct embd_ignore embd_ignore;

/* Pushes dir/.gitignore (if any) on top of parent; returns parent when there is none. */
embd_ignore *embd_ignore_push(embd_ignore *parent, const char *dir);
/* Frees the layers above (not including) until. */
void embd_ignore_pop(embd_ignore *top, embd_ignore *until);
/* Whether path (below the directories the rules came from) is ignored. */
bool embd_ignored(const embd_ignore *top, const char *path, bool is_dir);

#endif
