/* Per-sequence multi-head attention as one ggml custom op, for encoder shapes: short sequences,
 * small heads (32 or 64 dims), a key-padding mask. ggml's tiled flash attention spends ~3x more
 * time per FLOP here than the GEMMs around it (one query row at a time, online softmax); this
 * kernel computes each (sequence, head) as two register-blocked products around an exact f32
 * softmax, and skips padded queries and keys altogether. */
#ifndef EMBD_ATTENTION_H
#define EMBD_ATTENTION_H

struct ggml_context;
struct ggml_tensor;

typedef struct {
    const int *lens; /* real tokens per sequence (keys beyond are padding) */
    int n_seq;       /* B */
    int L;           /* padded keys per sequence */
    int Lq;          /* query rows per sequence: L, or 1 when only the pooled row is kept */
    int n_head, d_head;
    float scale;
} embd_attn_params;

/* q [H, Lq*B], k and v [H, L*B] (f32, contiguous; H = n_head*d_head) -> [H, Lq*B]. p must stay
 * valid until the graph has run. Query rows past a sequence's length get zeros. d_head: 16, 32, 48 or 64. */
struct ggml_tensor *embd_attention(struct ggml_context *c, struct ggml_tensor *q, struct ggml_tensor *k,
                                   struct ggml_tensor *v, const embd_attn_params *p);

#endif
