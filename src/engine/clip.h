/* CLIP dual encoder as ggml graphs: a ViT image tower and a causal text transformer whose pooled
 * outputs are projected into one shared space. Weights from a GGUF in llama.cpp's clip naming
 * (general.architecture "clip", clip.vision.* / clip.text.* keys, v.* / t.* tensors) with both
 * towers, written by `embd convert` from a Hugging Face CLIPModel directory. */
#ifndef EMBD_CLIP_H
#define EMBD_CLIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image/image.h"
#include "tokenizer/tokenizer.h"

typedef struct embd_clip embd_clip;

typedef struct {
    char name[128];
    int dim;                    /* projection (shared space) width */
    int image_size, patch_size; /* the vision tower's input is image_size x image_size */
    int text_ctx;               /* max tokens per text, start and end tokens included (77) */
    int vision_layers, vision_width, text_layers, text_width;
    char weight_type[16];
    char compute_type[16];      /* what the matrices are multiplied as (bf16 when converted at load) */
    size_t file_bytes, n_params;
    char device[32];            /* "cpu" or "cuda:N" */
} embd_clip_info;

/* Whether the GGUF at path declares architecture "clip" (false if unreadable). */
bool embd_gguf_is_clip(const char *path);

/* device: embd_device_resolve spec (NULL: $EMBD_DEVICE, else auto). n_threads <= 0: all cores. */
embd_clip *embd_clip_load(const char *path, const char *device, int n_threads, char *err, size_t errlen);
void embd_clip_free(embd_clip *c);
const embd_clip_info *embd_clip_get_info(const embd_clip *c);
/* The image processor settings stored in the GGUF (size, crop, mean, std). */
void embd_clip_image_prep(const embd_clip *c, embd_image_prep *p);
/* The text tower's tokenizer (CLIP BPE, from the GGUF's tokenizer.huggingface.json). */
const embd_tokenizer *embd_clip_tokenizer(const embd_clip *c);

/* The calls below are not thread-safe on one embd_clip: callers serialise them.
 * out receives n * dim floats, L2-normalised. Return 0, or -1 with err. */
/* ids[i]: lens[i] tokens as embd_tokenizer_encode gives them (start..end), lens[i] <= text_ctx. */
int embd_clip_encode_texts(embd_clip *c, const int32_t *const *ids, const int *lens, int n, float *out,
                           char *err, size_t errlen);
/* pixels: n images, each 3 x image_size x image_size (CHW) as embd_image_preprocess writes them. */
int embd_clip_encode_images(embd_clip *c, const float *pixels, int n, float *out, char *err, size_t errlen);

#endif
