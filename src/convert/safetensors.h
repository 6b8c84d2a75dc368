/* Read-only access to Hugging Face safetensors weights: one model.safetensors or the shards named by
 * model.safetensors.index.json. Files are mmap'ed; tensor data is never copied here.
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
 * then the raw little-endian data; offsets are relative to the end of the header. */
#ifndef EMBD_SAFETENSORS_H
#define EMBD_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define EMBD_ST_MAX_DIMS 4

typedef enum {
    EMBD_ST_F32,
    EMBD_ST_F16,
    EMBD_ST_BF16,
    EMBD_ST_OTHER /* a valid safetensors dtype the converter cannot use (I64 position_ids, F8, ...) */
} embd_st_dtype;

typedef struct {
    char *name;
    char dtype_name[12]; /* as written in the header, for error messages */
    embd_st_dtype dtype;
    int n_dims;
    int64_t shape[EMBD_ST_MAX_DIMS]; /* outermost first, as in PyTorch */
    size_t offset, nbytes;           /* within the data section of its file */
    const uint8_t *data;             /* set once the file is mapped */
    int file;                        /* index of the shard holding it */
} embd_st_tensor;

typedef struct embd_st_set embd_st_set;

/* Parses one safetensors file image (header and data section) held in memory. Validates the
 * header: JSON object, known dtypes, shapes, offsets inside the data and matching the shape, no
 * duplicate names. On success *out holds *n tensors with data pointing into buf; free with
 * embd_st_tensors_free. Returns 0, or -1 with a one-line message in err. */
int embd_st_parse(const uint8_t *buf, size_t len, embd_st_tensor **out, size_t *n, char *err, size_t errlen);
void embd_st_tensors_free(embd_st_tensor *t, size_t n);

/* Opens the weights of an HF model directory (model.safetensors, else the index and its shards). */
embd_st_set *embd_st_open_dir(const char *dir, char *err, size_t errlen);
void embd_st_close(embd_st_set *s);
size_t embd_st_count(const embd_st_set *s);
const embd_st_tensor *embd_st_at(const embd_st_set *s, size_t i);
const embd_st_tensor *embd_st_find(const embd_st_set *s, const char *name);

#endif
