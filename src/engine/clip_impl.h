/* Private to the CLIP engine: the loaded model (clip.c) and its graphs (clip_graph.c). */
#ifndef EMBD_CLIP_IMPL_H
#define EMBD_CLIP_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/clip.h"
#include "engine/device.h"

struct ggml_tensor;
struct ggml_context;
struct ggml_cgraph;

/* hidden_act of Hugging Face's CLIP configs */
typedef enum { CLIP_ACT_QUICK_GELU, CLIP_ACT_GELU, CLIP_ACT_GELU_TANH } clip_act;

/* One pre-LN transformer layer (HF CLIPEncoderLayer); a flat run of tensor pointers. */
typedef struct {
    struct ggml_tensor *ln1_w, *ln1_b, *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;
    struct ggml_tensor *ln2_w, *ln2_b, *up_w, *up_b, *down_w, *down_b;
} clip_layer;

/* One copy of a tower's tensors, in host memory or on a device. */
typedef struct {
    struct ggml_tensor *embd;          /* text: token table [H, V]; vision: patch kernel [p, p, 3, H] */
    struct ggml_tensor *cls;           /* vision: class embedding [H] */
    struct ggml_tensor *pos;           /* [H, n_pos] */
    struct ggml_tensor *pre_w, *pre_b; /* vision: pre-layernorm */
    struct ggml_tensor *post_w, *post_b, *proj;
    clip_layer *layers;
} clip_weights;

typedef struct {
    int n_layer, width, n_head, n_ff, n_pos;
    float eps;
    clip_act act;
    clip_weights w;  /* host (the mapped file) */
    clip_weights dw; /* device copy when the model runs on a GPU */
} clip_tower;

struct embd_clip {
    embd_clip_info info;
    clip_tower vis, txt;
    embd_tokenizer *tok;
    embd_image_prep prep;
    int32_t eos_id;   /* text pooling: first eos_id, or the largest id when pool_argmax */
    bool pool_argmax; /* HF's rule for legacy configs (eos_token_id == 2) */
    embd_device dev;
    bool gpu, prec_f32;
    /* runtime */
    struct ggml_backend *backend;
    struct ggml_gallocr *alloc;
    int n_threads;
    void *meta_buf; /* tensor/graph headers of one graph */
    size_t meta_size;
    float *stage;   /* host staging for inputs (patches, masks), grown on demand */
    size_t stage_cap;
    int32_t *istage;
    size_t istage_cap;
    /* owned resources */
    struct gguf_context *gguf;
    struct ggml_context *meta;
    struct ggml_backend_buffer *buf;
    struct ggml_context *dev_ctx;
    struct ggml_backend_buffer *dev_buf;
    struct ggml_context *conv_ctx; /* bf16 copies of the matrices (engine/bf16.h), if any */
    struct ggml_backend_buffer *conv_buf;
    void *map;
    size_t map_size;
};

/* Which row of a text's tokens is pooled (HF CLIPTextTransformer's rule). */
int clip_pool_index(const embd_clip *c, const int32_t *ids, int len);

/* Forward passes (clip_graph.c); inputs already validated. out: n * dim floats, not normalised. */
int clip_run_vision(embd_clip *c, const float *pixels, int n, float *out, char *err, size_t errlen);
int clip_run_text(embd_clip *c, const int32_t *const *ids, const int *lens, int n, float *out, char *err,
                  size_t errlen);

#endif
