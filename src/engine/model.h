/* A GGUF encoder model: hyperparameters, weights (mmapped, zero-copy) and tokenizer. */
#ifndef EMBD_MODEL_H
#define EMBD_MODEL_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/device.h"
#include "tokenizer/tokenizer.h"

struct ggml_tensor;

/* Values match llama.cpp's enum llama_pooling_type as stored in GGUF `<arch>.pooling_type`. */
typedef enum {
    EMBD_POOL_UNSPECIFIED = -1,
    EMBD_POOL_NONE = 0,
    EMBD_POOL_MEAN = 1,
    EMBD_POOL_CLS = 2,
    EMBD_POOL_LAST = 3,
    EMBD_POOL_RANK = 4, /* cross-encoder: [CLS] through the classification head -> scores */
} embd_pooling;

const char *embd_pooling_name(embd_pooling p);
embd_pooling embd_pooling_parse(const char *s); /* EMBD_POOL_UNSPECIFIED if unknown */

typedef struct {
    char arch[32];
    char name[128];
    int n_layer, n_embd, n_head, n_ff, n_ctx, n_vocab, n_token_types;
    float ln_eps;
    embd_pooling pooling;
    int n_labels;          /* classification head outputs (cross-encoders), else 0 */
    bool pair_double_sep;  /* RoBERTa pair template <s> A </s></s> B </s> (else BERT's) */
    char weight_type[16];  /* ggml type name of the attention/FFN matrices in the file */
    char compute_type[16]; /* what they are multiplied as (bf16 when converted at load) */
    int n_positions;       /* rows of the position table; n_ctx may be less (max_seq_length) */
    size_t file_bytes;
    size_t n_params;
    char device[32];       /* where the weights are: "cpu" or "cuda:N" */
    size_t device_bytes;   /* weight bytes in GPU memory (0 on the CPU) */
} embd_model_info;

typedef struct {
    struct ggml_tensor *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;
    struct ggml_tensor *ln1_w, *ln1_b, *up_w, *up_b, *down_w, *down_b, *ln2_w, *ln2_b;
} embd_layer;

struct gguf_context;
struct ggml_context;
struct ggml_backend_buffer;

/* One copy of the weights, in host memory or on a device. */
typedef struct {
    struct ggml_tensor *tok_embd, *pos_embd, *type_embd, *embd_norm_w, *embd_norm_b;
    struct ggml_tensor *cls_w, *cls_b, *cls_out_w, *cls_out_b; /* classification head, optional */
    embd_layer *layers;
} embd_weights;

struct embd_model {
    embd_model_info info;
    embd_tokenizer *tok;
    embd_weights w;      /* host copy (the mapped file): the CPU path and the GPU's CPU fallback */
    embd_weights dw;     /* device copy when dev is a GPU (dw.layers == NULL otherwise) */
    embd_device dev;
    /* sentence-transformers prompts (GGUF embd.prompts.<name>), strings owned by gguf */
    const char **prompt_names, **prompt_texts;
    size_t n_prompts;
    const char *default_prompt; /* name, or NULL */
    /* owned resources */
    struct gguf_context *gguf;
    struct ggml_context *meta; /* tensor headers; data lives in the mapping */
    struct ggml_backend_buffer *buf;
    struct ggml_context *conv_ctx;          /* converted matrices, if any */
    struct ggml_backend_buffer *conv_buf;
    struct ggml_context *dev_ctx;           /* device copies of every tensor */
    struct ggml_backend_buffer *dev_buf;
    void *map;
    size_t map_size;
};
typedef struct embd_model embd_model;

typedef struct {
    const char *tokenizer_json; /* optional HF tokenizer.json overriding the GGUF vocabulary */
    const char *device;         /* embd_device_resolve spec; NULL: $EMBD_DEVICE, else auto */
} embd_model_params;

/* Floats per sequence that pooling p yields: the hidden size, or the head's labels for rank. */
int embd_model_out_dim(const embd_model *m, embd_pooling p);
bool embd_model_is_reranker(const embd_model *m);
/* The text of a named prompt (prepended to inputs, as sentence-transformers does), or NULL. */
const char *embd_model_prompt(const embd_model *m, const char *name);

embd_model *embd_model_load(const char *path, const embd_model_params *p, char *err, size_t errlen);
void embd_model_free(embd_model *m);

#endif
