/* Private to the converters (convert.c: BERT / XLM-R, convert_clip.c: CLIP): the tensor plan and
 * the GGUF writer they share. */
#ifndef EMBD_CONVERT_IMPL_H
#define EMBD_CONVERT_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "convert/convert.h"
#include "convert/safetensors.h"

struct gguf_context;

enum { FILE_TYPE_F32 = 0, FILE_TYPE_F16 = 1, FILE_TYPE_Q8_0 = 7 }; /* gguf.LlamaFileType */
#define GGML_QUANT_VERSION_WRITTEN 2

/* One tensor's data as written: ne[1] rows of ne[0] source values converted to type (a tensor of
 * more dimensions is written as its rows; its GGUF header says its real shape). */
typedef struct {
    char name[96];
    const embd_st_tensor *src;
    int n_dims;
    int64_t ne[2];   /* ggml order: ne[0] = row length */
    int64_t row_off; /* leading rows dropped (XLM-R positions) */
    enum ggml_type type;
} out_tensor;

/* Writes g's header and metadata, then each t[i]'s data in order (the order of g's tensors), to
 * path: through a new temporary file beside it, synced, then renamed over path, so a failed or
 * interrupted conversion never leaves a partial GGUF. Returns 0, or -1 with err. */
int embd_convert_write_gguf(struct gguf_context *g, const out_tensor *t, size_t n, const char *path, char *err,
                            size_t errlen);

/* Whether dir's config.json declares a CLIP model (model_type "clip"). */
bool embd_hf_dir_is_clip(const char *dir);
/* A Hugging Face CLIPModel directory -> a two-tower GGUF (llama.cpp's clip naming). */
int embd_convert_clip(const embd_convert_opts *o, embd_convert_stats *st, char *err, size_t errlen);

#endif
