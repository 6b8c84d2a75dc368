/* Nesting depth of JSON text, measured before parsing: jansson has no depth option (only a
 * compile-time 2048), and a deep body costs recursion and allocations before any check runs. */
#ifndef EMBD_JSON_DEPTH_H
#define EMBD_JSON_DEPTH_H

#include <stdbool.h>
#include <stddef.h>

/* Whether [ and { (outside strings) nest deeper than max anywhere in s. Malformed text is left
 * for the parser to reject. */
bool embd_json_too_deep(const char *s, size_t len, int max);

#endif
