/* The two CLIP towers as ggml graphs, following Hugging Face's modeling_clip:
 *   vision: patches (conv stride = patch, i.e. a matmul over unfolded patches; no bias), class
 *           embedding prepended, + positions, pre-layernorm, layers, post-layernorm of the class
 *           token, visual projection;
 *   text:   token + position embeddings, causal layers, final layernorm, the pooled token (see
 *           clip_pool_index), text projection.
 * Layers are pre-LN: x += attn(ln1(x)); x += mlp(ln2(x)). A batch is one graph: n images, or texts
 * padded at the end to the longest (under the causal mask, padding after a token never reaches it).
 * In the last layer only the pooled row of each item goes through attention's queries and the MLP. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/clip_impl.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml.h"
#include "util/sys.h"

static struct ggml_tensor *layer_norm(struct ggml_context *c, struct ggml_tensor *x, struct ggml_tensor *w,
                                      struct ggml_tensor *b, float eps) {
    return ggml_add(c, ggml_mul(c, ggml_norm(c, x, eps), w), b);
}

static struct ggml_tensor *linear(struct ggml_context *c, struct ggml_tensor *x, struct ggml_tensor *w,
                                  struct ggml_tensor *b) {
    struct ggml_tensor *y = ggml_mul_mat(c, w, x);
    return b ? ggml_add(c, y, b) : y;
}

static struct ggml_tensor *activation(struct ggml_context *c, struct ggml_tensor *x, clip_act a) {
    switch (a) {
    case CLIP_ACT_GELU: return ggml_gelu_erf(c, x);
    case CLIP_ACT_GELU_TANH: return ggml_gelu(c, x);
    default: /* x * sigmoid(1.702 x) in f32; ggml_gelu_quick looks it up in an f16 table on CPUs */
        return ggml_mul(c, x, ggml_sigmoid(c, ggml_scale(c, x, 1.702f)));
    }
}

typedef struct {
    struct ggml_tensor *mask;     /* [L, L] additive (causal), or NULL */
    struct ggml_tensor *mask_sel; /* [L, 1, 1, B]: the pooled query's row of it, or NULL */
    struct ggml_tensor *sel;      /* [B]: the pooled row of each item in [H, L*B] */
} tower_io;

/* x [H, L*B] -> the pooled rows after all layers, [H, B]. */
static struct ggml_tensor *transformer(struct ggml_context *c, const clip_tower *t, const clip_weights *w,
                                       struct ggml_tensor *x, int L, int B, const tower_io *io) {
    const int H = t->width, nh = t->n_head, dh = H / nh;
    const float scale = 1.0f / sqrtf((float)dh);
    for (int il = 0; il < t->n_layer; il++) {
        const clip_layer *l = &w->layers[il];
        const bool last = il == t->n_layer - 1;
        const int Lq = last ? 1 : L;
        struct ggml_tensor *h = layer_norm(c, x, l->ln1_w, l->ln1_b, t->eps);
        struct ggml_tensor *hq = last ? ggml_get_rows(c, h, io->sel) : h;
        if (last) x = ggml_get_rows(c, x, io->sel);
        struct ggml_tensor *q = ggml_reshape_4d(c, linear(c, hq, l->q_w, l->q_b), dh, nh, Lq, B);
        struct ggml_tensor *k = ggml_reshape_4d(c, linear(c, h, l->k_w, l->k_b), dh, nh, L, B);
        struct ggml_tensor *v = ggml_reshape_4d(c, linear(c, h, l->v_w, l->v_b), dh, nh, L, B);
        /* contiguous per-head copies let ggml use its blocked GEMM instead of strided dot products */
        q = ggml_cont(c, ggml_permute(c, q, 0, 2, 1, 3)); /* [dh, Lq, nh, B] */
        k = ggml_cont(c, ggml_permute(c, k, 0, 2, 1, 3)); /* [dh, L, nh, B] */
        v = ggml_cont(c, ggml_permute(c, v, 1, 2, 0, 3)); /* [L, dh, nh, B] */
        struct ggml_tensor *kq = ggml_mul_mat(c, k, q);   /* [L, Lq, nh, B] */
        ggml_prec_set_acc(kq, GGML_PREC_F32);
        kq = ggml_soft_max_ext(c, kq, last ? io->mask_sel : io->mask, scale, 0.0f);
        struct ggml_tensor *kqv = ggml_mul_mat(c, v, kq); /* [dh, Lq, nh, B] */
        struct ggml_tensor *att = ggml_cont_2d(c, ggml_permute(c, kqv, 0, 2, 1, 3), H, (int64_t)Lq * B);
        x = ggml_add(c, x, linear(c, att, l->o_w, l->o_b));
        h = layer_norm(c, x, l->ln2_w, l->ln2_b, t->eps);
        h = activation(c, linear(c, h, l->up_w, l->up_b), t->act);
        x = ggml_add(c, x, linear(c, h, l->down_w, l->down_b));
    }
    return x;
}

static struct ggml_context *graph_ctx(embd_clip *c, struct ggml_cgraph **gf) {
    struct ggml_init_params ip = {.mem_size = c->meta_size, .mem_buffer = c->meta_buf, .no_alloc = true};
    struct ggml_context *ctx = ggml_init(ip);
    *gf = ggml_new_graph_custom(ctx, 4096, false);
    return ctx;
}

static void finish(embd_clip *c, struct ggml_cgraph *gf, struct ggml_tensor *out) {
    ggml_set_output(out);
    ggml_build_forward_expand(gf, out);
    /* GPU: weight GEMMs at f32 precision, as the BERT encoder runs them */
    for (int i = 0; c->prec_f32 && i < ggml_graph_n_nodes(gf); i++) {
        struct ggml_tensor *n = ggml_graph_node(gf, i);
        if (n->op == GGML_OP_MUL_MAT && n->src[0]->op == GGML_OP_NONE) ggml_prec_set_acc(n, GGML_PREC_F32);
    }
}

static bool grow(void **p, size_t *cap, size_t n, size_t elem) {
    if (n <= *cap) return true;
    void *q = realloc(*p, n * elem);
    if (!q) return false;
    *p = q;
    *cap = n;
    return true;
}

/* Inputs the graph does not read (the full causal mask of a one-layer tower) get no memory. */
static void set_input(struct ggml_tensor *t, const void *data, size_t bytes) {
    if (t->buffer) ggml_backend_tensor_set(t, data, 0, bytes);
}

static int compute(embd_clip *c, struct ggml_cgraph *gf, char *err, size_t errlen) {
    if (ggml_backend_graph_compute(c->backend, gf) != GGML_STATUS_SUCCESS)
        return embd_fail(err, errlen, "CLIP graph compute failed on %s", c->dev.name);
    return 0;
}

int clip_run_vision(embd_clip *c, const float *pixels, int n, float *out, char *err, size_t errlen) {
    const clip_tower *t = &c->vis;
    const clip_weights *w = c->gpu ? &t->dw : &t->w;
    const int H = t->width, p = c->info.patch_size, S = c->info.image_size, G = S / p, NP = G * G, T = NP + 1;
    const int K = 3 * p * p;
    const size_t n_patch = (size_t)K * NP * n;
    if (!grow((void **)&c->stage, &c->stage_cap, n_patch, sizeof *c->stage) ||
        !grow((void **)&c->istage, &c->istage_cap, (size_t)n, sizeof *c->istage))
        return embd_fail(err, errlen, "out of memory staging %d images", n);
    /* unfold: one row of 3*p*p values (channel, row, column: the conv kernel's layout) per patch */
    for (int b = 0; b < n; b++) {
        const float *img = pixels + (size_t)b * 3 * S * S;
        for (int py = 0; py < G; py++)
            for (int px = 0; px < G; px++) {
                float *row = c->stage + ((size_t)b * NP + (size_t)py * G + px) * K;
                for (int ch = 0; ch < 3; ch++)
                    for (int ky = 0; ky < p; ky++)
                        memcpy(row + (size_t)(ch * p + ky) * p, img + ((size_t)ch * S + (size_t)py * p + ky) * S + (size_t)px * p,
                               (size_t)p * sizeof *row);
            }
        c->istage[b] = b * T; /* the class token */
    }

    struct ggml_cgraph *gf;
    struct ggml_context *ctx = graph_ctx(c, &gf);
    struct ggml_tensor *patches = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, K, (int64_t)NP * n);
    struct ggml_tensor *sel = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n);
    ggml_set_input(patches);
    ggml_set_input(sel);
    struct ggml_tensor *x = ggml_mul_mat(ctx, ggml_reshape_2d(ctx, w->embd, K, H), patches); /* [H, NP*n] */
    struct ggml_tensor *cls = ggml_repeat_4d(ctx, ggml_reshape_3d(ctx, w->cls, H, 1, 1), H, 1, n, 1);
    x = ggml_concat(ctx, cls, ggml_reshape_3d(ctx, x, H, NP, n), 1); /* [H, T, n] */
    x = ggml_add(ctx, x, w->pos);                                     /* positions, broadcast over images */
    x = ggml_reshape_2d(ctx, x, H, (int64_t)T * n);
    x = layer_norm(ctx, x, w->pre_w, w->pre_b, t->eps);
    tower_io io = {.mask = NULL, .mask_sel = NULL, .sel = sel};
    x = transformer(ctx, t, w, x, T, n, &io);
    x = layer_norm(ctx, x, w->post_w, w->post_b, t->eps);
    x = ggml_mul_mat(ctx, w->proj, x); /* [dim, n] */
    finish(c, gf, x);
    ggml_free(ctx);
    if (!ggml_gallocr_alloc_graph(c->alloc, gf))
        return embd_fail(err, errlen, "cannot allocate %s compute memory for %d images", c->dev.name, n);
    set_input(patches, c->stage, n_patch * sizeof *c->stage);
    set_input(sel, c->istage, (size_t)n * sizeof *c->istage);
    if (compute(c, gf, err, errlen)) return -1;
    ggml_backend_tensor_get(x, out, 0, (size_t)n * c->info.dim * sizeof *out);
    return 0;
}

int clip_run_text(embd_clip *c, const int32_t *const *ids, const int *lens, int n, float *out, char *err,
                  size_t errlen) {
    const clip_tower *t = &c->txt;
    const clip_weights *w = c->gpu ? &t->dw : &t->w;
    const int H = t->width;
    int L = 0;
    for (int b = 0; b < n; b++) L = lens[b] > L ? lens[b] : L;
    /* staging: ids [L*n], sel [n] | mask [L*L], mask_sel [L*n] */
    const size_t ni = (size_t)L * n + n, nf = (size_t)L * L + (size_t)L * n;
    if (!grow((void **)&c->istage, &c->istage_cap, ni, sizeof *c->istage) ||
        !grow((void **)&c->stage, &c->stage_cap, nf, sizeof *c->stage))
        return embd_fail(err, errlen, "out of memory staging %d texts", n);
    int32_t *tok = c->istage, *selv = c->istage + (size_t)L * n;
    float *mask = c->stage, *mask_sel = c->stage + (size_t)L * L;
    for (int q = 0; q < L; q++)
        for (int k = 0; k < L; k++) mask[(size_t)q * L + k] = k <= q ? 0.0f : -INFINITY;
    for (int b = 0; b < n; b++) {
        for (int i = 0; i < L; i++) tok[(size_t)b * L + i] = i < lens[b] ? ids[b][i] : 0;
        const int at = clip_pool_index(c, ids[b], lens[b]);
        selv[b] = b * L + at;
        memcpy(mask_sel + (size_t)b * L, mask + (size_t)at * L, (size_t)L * sizeof *mask);
    }

    struct ggml_cgraph *gf;
    struct ggml_context *ctx = graph_ctx(c, &gf);
    struct ggml_tensor *in_ids = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, (int64_t)L * n);
    struct ggml_tensor *sel = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n);
    struct ggml_tensor *in_mask = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, L, L);
    struct ggml_tensor *in_mask_sel = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, L, 1, 1, n);
    ggml_set_input(in_ids);
    ggml_set_input(sel);
    ggml_set_input(in_mask);
    ggml_set_input(in_mask_sel);
    struct ggml_tensor *x = ggml_reshape_3d(ctx, ggml_get_rows(ctx, w->embd, in_ids), H, L, n);
    struct ggml_tensor *pos = ggml_view_2d(ctx, w->pos, H, L, w->pos->nb[1], 0); /* positions 0..L-1 */
    x = ggml_reshape_2d(ctx, ggml_add(ctx, x, pos), H, (int64_t)L * n);
    tower_io io = {.mask = in_mask, .mask_sel = in_mask_sel, .sel = sel};
    x = transformer(ctx, t, w, x, L, n, &io);
    x = layer_norm(ctx, x, w->post_w, w->post_b, t->eps);
    x = ggml_mul_mat(ctx, w->proj, x); /* [dim, n] */
    finish(c, gf, x);
    ggml_free(ctx);
    if (!ggml_gallocr_alloc_graph(c->alloc, gf))
        return embd_fail(err, errlen, "cannot allocate %s compute memory for %d texts", c->dev.name, n);
    set_input(in_ids, tok, (size_t)L * n * sizeof *tok);
    set_input(sel, selv, (size_t)n * sizeof *selv);
    set_input(in_mask, mask, (size_t)L * L * sizeof *mask);
    set_input(in_mask_sel, mask_sel, (size_t)L * n * sizeof *mask_sel);
    if (compute(c, gf, err, errlen)) return -1;
    ggml_backend_tensor_get(x, out, 0, (size_t)n * c->info.dim * sizeof *out);
    return 0;
}
