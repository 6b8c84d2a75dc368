/* Output of `embd embed`: JSONL records, a NumPy .npy matrix, or raw float32 rows. */
#ifndef EMBD_WRITER_H
#define EMBD_WRITER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "engine/embed.h"

typedef enum { OUT_JSONL, OUT_NPY, OUT_F32 } out_format;

typedef struct {
    FILE *f, *meta; /* meta: JSONL sidecar with id/tokens/error per row for npy and f32 */
    out_format fmt;
    int dim;
    size_t rows;
} writer;

int writer_open(writer *w, const char *path, out_format fmt, int dim, char *err, size_t errlen);
/* vec is NULL for a failed item; it then gets a NaN row (npy/f32) or an error record. */
int writer_put(writer *w, json_t *id, const float *vec, const embd_item *it, const char *error);
/* JSONL only: {"id","token_embeddings":[[..] per token],"tokens","truncated"} (pooling none). */
int writer_put_tokens(writer *w, json_t *id, const float *states, const embd_item *it, const char *error);
/* Finishes the file (the npy header's row count); returns 0 or -1 on an I/O error. */
int writer_close(writer *w, char *err, size_t errlen);

#endif
