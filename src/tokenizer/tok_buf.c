#include "tokenizer/tok_buf.h"

#include <stdlib.h>
#include <string.h>

bool tok_span_push(tok_spanbuf *b, size_t start, size_t end) {
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        tok_span *v = realloc(b->v, cap * sizeof *v);
        if (!v) return false;
        b->v = v;
        b->cap = cap;
    }
    b->v[b->n++] = (tok_span){start, end};
    return true;
}

bool tok_cps_reserve(tok_cps *b, size_t extra) {
    if (b->n + extra <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra) cap *= 2;
    uint32_t *v = realloc(b->v, cap * sizeof *v);
    if (!v) return false;
    b->v = v;
    b->cap = cap;
    return true;
}

char *tok_dup_bytes(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        if (n) memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}
