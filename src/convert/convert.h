/* Hugging Face model directory -> GGUF with llama.cpp's tensor names and metadata keys
 * (architecture "bert": BERT and XLM-RoBERTa encoders, and their sequence-classification
 * cross-encoders; architecture "clip": CLIPModel's two towers, convert_clip.c), written through
 * ggml's gguf API and quantised through ggml. */
#ifndef EMBD_CONVERT_H
#define EMBD_CONVERT_H

#include <stddef.h>

#include "ggml.h"

typedef struct {
    const char *hf_dir;
    const char *out_path;
    enum ggml_type type; /* GGML_TYPE_F32, GGML_TYPE_F16 or GGML_TYPE_Q8_0 for the 2-D matrices */
} embd_convert_opts;

typedef struct {
    size_t n_tensors, n_params, out_bytes;
    char arch[64]; /* the HF architecture converted */
} embd_convert_stats;

/* Writes out_path.tmp.<pid> and renames it into place only when complete; on failure nothing is
 * left at out_path (an existing file there is untouched). Returns 0, or -1 with a one-line reason. */
int embd_convert(const embd_convert_opts *o, embd_convert_stats *st, char *err, size_t errlen);

#endif
