/* CLIP GGUF loading (both towers, the tokenizer, the image processor settings) and the public
 * entry points; the graphs are in clip_graph.c.
 *
 * Tensor names follow llama.cpp's clip (v.* / t.*); ffn_up is fc1 (H -> F) as current llama.cpp
 * converters write it; files from llama.cpp's legacy converter, which swapped the two names, are
 * recognised by shape and read the right way round. A vision-only file (a llama.cpp mmproj) is
 * refused: embd serves both towers from one file. */
#include "engine/clip.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine/bf16.h"
#include "engine/clip_impl.h"
#include "engine/embed.h"
#include "engine/encoder.h"
#include "engine/weights.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml.h"
#include "gguf.h"
#include "util/sys.h"

#define GRAPH_MAX_NODES 4096

/* ---- metadata ---------------------------------------------------------------------------- */

static bool kv_f32(const struct gguf_context *g, const char *key, float *out) {
    int64_t id = gguf_find_key(g, key);
    if (id < 0 || gguf_get_kv_type(g, id) != GGUF_TYPE_FLOAT32) return false;
    *out = gguf_get_val_f32(g, id);
    return true;
}

static bool kv_bool(const struct gguf_context *g, const char *key, bool def) {
    int64_t id = gguf_find_key(g, key);
    return id >= 0 && gguf_get_kv_type(g, id) == GGUF_TYPE_BOOL ? gguf_get_val_bool(g, id) : def;
}

/* Three floats (mean / std per channel); false when absent or malformed. */
static bool kv_f32x3(const struct gguf_context *g, const char *key, float out[3]) {
    int64_t id = gguf_find_key(g, key);
    if (id < 0 || gguf_get_kv_type(g, id) != GGUF_TYPE_ARRAY || gguf_get_arr_type(g, id) != GGUF_TYPE_FLOAT32 ||
        gguf_get_arr_n(g, id) != 3)
        return false;
    memcpy(out, gguf_get_arr_data(g, id), 3 * sizeof *out);
    return true;
}

bool embd_gguf_is_clip(const char *path) {
    /* a FIFO or device must be read once, by the real loader */
    struct stat st;
    if (stat(path, &st) || !S_ISREG(st.st_mode)) return false;
    struct gguf_init_params gp = {.no_alloc = true, .ctx = NULL};
    struct gguf_context *g = gguf_init_from_file(path, gp);
    if (!g) return false;
    const char *arch = embd_gguf_str(g, "general.architecture");
    bool yes = arch && !strcmp(arch, "clip");
    gguf_free(g);
    return yes;
}

static int read_act(const struct gguf_context *g, const char *tower, clip_act *out, char *err, size_t errlen) {
    char key[64];
    snprintf(key, sizeof key, "clip.%s.hidden_act", tower);
    const char *a = embd_gguf_str(g, key);
    if (!a) { /* llama.cpp's files: one flag for the vision tower; OpenAI CLIP is quick_gelu */
        *out = kv_bool(g, "clip.use_gelu", false) ? CLIP_ACT_GELU : CLIP_ACT_QUICK_GELU;
        return 0;
    }
    if (!strcmp(a, "quick_gelu")) *out = CLIP_ACT_QUICK_GELU;
    else if (!strcmp(a, "gelu")) *out = CLIP_ACT_GELU;
    else if (!strcmp(a, "gelu_new") || !strcmp(a, "gelu_pytorch_tanh")) *out = CLIP_ACT_GELU_TANH;
    else return embd_fail(err, errlen, "%s: activation '%s' is not supported (quick_gelu, gelu, gelu_new)", key, a);
    return 0;
}

static int read_tower(const struct gguf_context *g, const char *tower, clip_tower *t, char *err, size_t errlen) {
    struct { const char *key; int *dst; } req[] = {
        {"block_count", &t->n_layer}, {"embedding_length", &t->width},
        {"attention.head_count", &t->n_head}, {"feed_forward_length", &t->n_ff},
    };
    for (size_t i = 0; i < sizeof req / sizeof req[0]; i++) {
        char key[96];
        long long v;
        snprintf(key, sizeof key, "clip.%s.%s", tower, req[i].key);
        if (!embd_gguf_int(g, key, &v) || v <= 0 || v > (1 << 16))
            return embd_fail(err, errlen, "model metadata %s is missing or out of range", key);
        *req[i].dst = (int)v;
    }
    if (t->width % t->n_head)
        return embd_fail(err, errlen, "clip.%s: embedding_length %d is not a multiple of head_count %d", tower, t->width,
                         t->n_head);
    char key[96];
    snprintf(key, sizeof key, "clip.%s.attention.layer_norm_epsilon", tower);
    if (!kv_f32(g, key, &t->eps)) t->eps = 1e-5f;
    if (!(t->eps > 0 && t->eps < 1)) return embd_fail(err, errlen, "%s %g is out of range", key, (double)t->eps);
    return read_act(g, tower, &t->act, err, errlen);
}

/* ---- tensors ----------------------------------------------------------------------------- */

/* A tensor of exactly this shape (unused trailing dims 1); vectors must be f32 (added element-wise). */
static struct ggml_tensor *want(embd_clip *c, const char *name, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3,
                                char *err, size_t errlen) {
    struct ggml_tensor *t = ggml_get_tensor(c->meta, name);
    if (!t) {
        embd_fail(err, errlen, "model has no tensor '%s'", name);
        return NULL;
    }
    const int64_t e[4] = {ne0, ne1, ne2, ne3};
    if (t->ne[0] != e[0] || t->ne[1] != e[1] || t->ne[2] != e[2] || t->ne[3] != e[3]) {
        embd_fail(err, errlen, "tensor '%s' has shape [%lld,%lld,%lld,%lld], expected [%lld,%lld,%lld,%lld]", name,
                  (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
                  (long long)e[0], (long long)e[1], (long long)e[2], (long long)e[3]);
        return NULL;
    }
    if (ne1 == 1 && ne2 == 1 && t->type != GGML_TYPE_F32) {
        embd_fail(err, errlen, "tensor '%s' must be f32, is %s", name, ggml_type_name(t->type));
        return NULL;
    }
    return t;
}

/* Tables added to f32 activations element-wise. */
static int need_f32(const struct ggml_tensor *t, char *err, size_t errlen) {
    return t->type == GGML_TYPE_F32 ? 0 : embd_fail(err, errlen, "tensor '%s' must be f32, is %s", t->name, ggml_type_name(t->type));
}

/* The first of two names that exists (legacy converters kept HF's names for the projections). */
static const char *either(const embd_clip *c, const char *a, const char *b) {
    return ggml_get_tensor(c->meta, a) || !ggml_get_tensor(c->meta, b) ? a : b;
}

#define WANT(dst, name, a, b, cc, d)                                                               \
    do {                                                                                           \
        if (!((dst) = want(c, (name), (a), (b), (cc), (d), err, errlen))) return -1;               \
    } while (0)

static int load_layers(embd_clip *c, const char *p, clip_tower *t, char *err, size_t errlen) {
    const int H = t->width, F = t->n_ff;
    if (!(t->w.layers = calloc((size_t)t->n_layer, sizeof *t->w.layers))) return embd_fail(err, errlen, "out of memory");
    for (int il = 0; il < t->n_layer; il++) {
        clip_layer *l = &t->w.layers[il];
        char n[96];
        /* legacy files name fc1 ffn_down: its rows are H long there, F long in fc2 */
        snprintf(n, sizeof n, "%s.blk.%d.ffn_down.weight", p, il);
        const struct ggml_tensor *dn = ggml_get_tensor(c->meta, n);
        const bool swapped = dn && dn->ne[0] == H && dn->ne[1] == F && H != F;
        const char *up = swapped ? "ffn_down" : "ffn_up", *down = swapped ? "ffn_up" : "ffn_down";
#define W(field, suffix, a, b)                                                                     \
    snprintf(n, sizeof n, "%s.blk.%d.%s", p, il, suffix);                                          \
    WANT(l->field, n, a, b, 1, 1)
#define WF(field, base, suffix, a, b)                                                              \
    snprintf(n, sizeof n, "%s.blk.%d.%s.%s", p, il, base, suffix);                                 \
    WANT(l->field, n, a, b, 1, 1)
        W(ln1_w, "ln1.weight", H, 1); W(ln1_b, "ln1.bias", H, 1);
        W(q_w, "attn_q.weight", H, H); W(q_b, "attn_q.bias", H, 1);
        W(k_w, "attn_k.weight", H, H); W(k_b, "attn_k.bias", H, 1);
        W(v_w, "attn_v.weight", H, H); W(v_b, "attn_v.bias", H, 1);
        W(o_w, "attn_out.weight", H, H); W(o_b, "attn_out.bias", H, 1);
        W(ln2_w, "ln2.weight", H, 1); W(ln2_b, "ln2.bias", H, 1);
        WF(up_w, up, "weight", H, F); WF(up_b, up, "bias", F, 1);
        WF(down_w, down, "weight", F, H); WF(down_b, down, "bias", H, 1);
#undef W
#undef WF
    }
    return 0;
}

static int load_vision(embd_clip *c, char *err, size_t errlen) {
    clip_tower *t = &c->vis;
    embd_clip_info *in = &c->info;
    const int H = t->width, p = in->patch_size, grid = in->image_size / in->patch_size;
    t->n_pos = grid * grid + 1;
    WANT(t->w.embd, "v.patch_embd.weight", p, p, 3, H);
    if (t->w.embd->type != GGML_TYPE_F32 && t->w.embd->type != GGML_TYPE_F16)
        return embd_fail(err, errlen, "tensor 'v.patch_embd.weight' must be f32 or f16, is %s",
                         ggml_type_name(t->w.embd->type));
    if (ggml_get_tensor(c->meta, "v.patch_embd.bias"))
        return embd_fail(err, errlen, "tensor 'v.patch_embd.bias': CLIP's patch embedding has no bias");
    WANT(t->w.cls, "v.class_embd", H, 1, 1, 1);
    WANT(t->w.pos, "v.position_embd.weight", H, t->n_pos, 1, 1);
    if (need_f32(t->w.pos, err, errlen)) return -1;
    WANT(t->w.pre_w, "v.pre_ln.weight", H, 1, 1, 1);
    WANT(t->w.pre_b, "v.pre_ln.bias", H, 1, 1, 1);
    if (load_layers(c, "v", t, err, errlen)) return -1;
    WANT(t->w.post_w, "v.post_ln.weight", H, 1, 1, 1);
    WANT(t->w.post_b, "v.post_ln.bias", H, 1, 1, 1);
    WANT(t->w.proj, either(c, "v.projection.weight", "visual_projection.weight"), H, in->dim, 1, 1);
    return 0;
}

static int load_text(embd_clip *c, char *err, size_t errlen) {
    clip_tower *t = &c->txt;
    const int H = t->width;
    t->n_pos = c->info.text_ctx;
    /* the table may have more rows than the tokenizer has ids (never fewer) */
    struct ggml_tensor *te = ggml_get_tensor(c->meta, "t.token_embd.weight");
    const int64_t V = (int64_t)embd_tokenizer_vocab_size(c->tok);
    WANT(t->w.embd, "t.token_embd.weight", H, te && te->ne[1] >= V ? te->ne[1] : V, 1, 1);
    WANT(t->w.pos, "t.position_embd.weight", H, t->n_pos, 1, 1);
    if (need_f32(t->w.pos, err, errlen)) return -1;
    if (load_layers(c, "t", t, err, errlen)) return -1;
    WANT(t->w.post_w, "t.post_ln.weight", H, 1, 1, 1);
    WANT(t->w.post_b, "t.post_ln.bias", H, 1, 1, 1);
    WANT(t->w.proj, either(c, "t.projection.weight", "text_projection.weight"), H, c->info.dim, 1, 1);
    return 0;
}
#undef WANT

/* ---- GPU copy ---------------------------------------------------------------------------- */

static int twin_tower(struct ggml_context *dc, clip_tower *t, char *err, size_t errlen) {
    const clip_weights *h = &t->w;
    clip_weights *d = &t->dw;
#define T(f) d->f = embd_weights_twin(dc, h->f)
    T(embd), T(cls), T(pos), T(pre_w), T(pre_b), T(post_w), T(post_b), T(proj);
#undef T
    if (!(d->layers = embd_weights_twin_layers(dc, h->layers, t->n_layer, sizeof *h->layers)))
        return embd_fail(err, errlen, "out of memory");
    return 0;
}

/* The device copy (engine/weights.h), with both towers' pointers mapped to their twins. */
static int upload_weights(embd_clip *c, char *err, size_t errlen) {
    if (embd_weights_upload(&c->dev, c->meta, c->map, c->map_size, &c->dev_ctx, &c->dev_buf, err, errlen)) return -1;
    return twin_tower(c->dev_ctx, &c->vis, err, errlen) || twin_tower(c->dev_ctx, &c->txt, err, errlen) ? -1 : 0;
}

/* CPU: the towers' matrices as bf16 where engine/bf16.h says so (q8_0 on AVX512-BF16 CPUs). */
static int convert_matrices(embd_clip *c, char *err, size_t errlen) {
    if (!embd_want_bf16(c->vis.w.layers[0].q_w->type)) return 0;
    const int n_max = 6 * (c->vis.n_layer + c->txt.n_layer) + 2;
    struct ggml_tensor ***w = malloc((size_t)n_max * sizeof *w);
    if (!w) return embd_fail(err, errlen, "out of memory");
    int n = 0;
    clip_tower *towers[2] = {&c->vis, &c->txt};
    for (int k = 0; k < 2; k++) {
        for (int il = 0; il < towers[k]->n_layer; il++) {
            clip_layer *l = &towers[k]->w.layers[il];
            struct ggml_tensor **m[6] = {&l->q_w, &l->k_w, &l->v_w, &l->o_w, &l->up_w, &l->down_w};
            for (int j = 0; j < 6; j++)
                if (ggml_get_type_traits((*m[j])->type)->to_float) w[n++] = m[j];
        }
        w[n++] = &towers[k]->w.proj;
    }
    int rc = embd_weights_to_bf16(w, n, &c->conv_ctx, &c->conv_buf, err, errlen);
    free(w);
    return rc;
}

/* ---- load -------------------------------------------------------------------------------- */

static int read_hparams(embd_clip *c, char *err, size_t errlen) {
    const struct gguf_context *g = c->gguf;
    embd_clip_info *in = &c->info;
    const char *arch = embd_gguf_str(g, "general.architecture");
    if (!arch) return embd_fail(err, errlen, "model has no general.architecture");
    if (strcmp(arch, "clip")) return embd_fail(err, errlen, "architecture '%s' is not CLIP", arch);
    if (!kv_bool(g, "clip.has_text_encoder", false))
        return embd_fail(err, errlen,
                         "no text tower in this CLIP file (clip.has_text_encoder is not true): a vision-only file such "
                         "as a llama.cpp mmproj cannot serve text embeddings; convert the Hugging Face CLIPModel "
                         "directory with `embd convert`");
    if (!kv_bool(g, "clip.has_vision_encoder", false))
        return embd_fail(err, errlen, "no vision tower in this CLIP file (clip.has_vision_encoder is not true)");
    const char *name = embd_gguf_str(g, "general.name");
    snprintf(in->name, sizeof in->name, "%s", name ? name : "");
    if (read_tower(g, "vision", &c->vis, err, errlen) || read_tower(g, "text", &c->txt, err, errlen)) return -1;
    long long v, pv, pt, is, ps, ctx;
    if (!embd_gguf_int(g, "clip.vision.image_size", &is) || !embd_gguf_int(g, "clip.vision.patch_size", &ps) ||
        ps <= 0 || is < ps || is > 4096 || is % ps)
        return embd_fail(err, errlen, "clip.vision.image_size / patch_size are missing or not a whole number of patches");
    in->image_size = (int)is, in->patch_size = (int)ps;
    if (!embd_gguf_int(g, "clip.vision.projection_dim", &pv) || !embd_gguf_int(g, "clip.text.projection_dim", &pt) ||
        pv != pt || pv <= 0 || pv > (1 << 16))
        return embd_fail(err, errlen, "clip.vision/text.projection_dim are missing, out of range or differ: the towers "
                                      "must project into one space");
    in->dim = (int)pv;
    if (!embd_gguf_int(g, "clip.text.context_length", &ctx) || ctx < 2 || ctx > (1 << 16))
        return embd_fail(err, errlen, "model metadata clip.text.context_length is missing or out of range");
    in->text_ctx = (int)ctx;
    in->vision_layers = c->vis.n_layer, in->vision_width = c->vis.width;
    in->text_layers = c->txt.n_layer, in->text_width = c->txt.width;

    /* text pooling; without the keys, the CLIP BPE's <|endoftext|>, the largest id */
    c->pool_argmax = kv_bool(g, "clip.text.pool_argmax", true);
    c->eos_id = embd_gguf_int(g, "clip.text.eos_token_id", &v) ? (int32_t)v : -1;
    if (!c->pool_argmax && c->eos_id < 0)
        return embd_fail(err, errlen, "clip.text.pool_argmax is false but clip.text.eos_token_id is missing");

    /* image processor (CLIPImageProcessor defaults where a key is absent) */
    embd_image_prep *p = &c->prep;
    static const float MEAN[3] = {0.48145466f, 0.4578275f, 0.40821073f}, STD[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    if (!kv_f32x3(g, "clip.vision.image_mean", p->mean)) memcpy(p->mean, MEAN, sizeof MEAN);
    if (!kv_f32x3(g, "clip.vision.image_std", p->std)) memcpy(p->std, STD, sizeof STD);
    for (int k = 0; k < 3; k++)
        if (!(p->std[k] > 0)) return embd_fail(err, errlen, "clip.vision.image_std has a value <= 0");
    p->shortest_edge = embd_gguf_int(g, "embd.image.shortest_edge", &v) ? (int)v : in->image_size;
    p->crop_h = embd_gguf_int(g, "embd.image.crop_height", &v) ? (int)v : in->image_size;
    p->crop_w = embd_gguf_int(g, "embd.image.crop_width", &v) ? (int)v : in->image_size;
    if (!kv_f32(g, "embd.image.rescale_factor", &p->rescale)) p->rescale = 1.0f / 255.0f;
    if (p->shortest_edge < 0 || p->shortest_edge > 8192 || p->crop_h != in->image_size || p->crop_w != in->image_size)
        return embd_fail(err, errlen, "image processor: crop %dx%d (shortest edge %d) does not give the vision tower's "
                                      "%dx%d input", p->crop_h, p->crop_w, p->shortest_edge, in->image_size,
                         in->image_size);
    return 0;
}

static int load_tokenizer(embd_clip *c, char *err, size_t errlen) {
    int64_t id = gguf_find_key(c->gguf, "tokenizer.huggingface.json");
    if (id < 0 || gguf_get_kv_type(c->gguf, id) != GGUF_TYPE_STRING)
        return embd_fail(err, errlen, "model has no tokenizer.huggingface.json (the text tower's tokenizer)");
    const char *json = gguf_get_val_str(c->gguf, id);
    char terr[512];
    if (!(c->tok = embd_tokenizer_from_json(json, strlen(json), terr, sizeof terr)))
        return embd_fail(err, errlen, "tokenizer.huggingface.json: %s", terr);
    return 0;
}

static int init_runtime(embd_clip *c, int n_threads, char *err, size_t errlen) {
    c->gpu = embd_device_is_gpu(&c->dev);
    c->n_threads = n_threads > 0 ? n_threads : embd_cpu_count();
    c->backend = c->gpu ? ggml_backend_dev_init(c->dev.dev, NULL) : ggml_backend_cpu_init();
    if (!c->backend) return embd_fail(err, errlen, "cannot initialise the ggml backend for %s", c->dev.name);
    if (!c->gpu) ggml_backend_cpu_set_n_threads(c->backend, c->n_threads);
    if (c->gpu) { /* as the BERT encoder: weight GEMMs at f32 unless EMBD_GPU_PREC=fast */
        embd_gpu_precision_env();
        const char *prec = getenv("EMBD_GPU_PREC");
        c->prec_f32 = !(prec && !strcmp(prec, "fast"));
    }
    c->alloc = ggml_gallocr_new(ggml_backend_get_default_buffer_type(c->backend));
    c->meta_size = ggml_tensor_overhead() * GRAPH_MAX_NODES + ggml_graph_overhead_custom(GRAPH_MAX_NODES, false);
    c->meta_buf = malloc(c->meta_size);
    if (!c->alloc || !c->meta_buf) return embd_fail(err, errlen, "out of memory");
    return 0;
}

embd_clip *embd_clip_load(const char *path, const char *device, int n_threads, char *err, size_t errlen) {
    embd_clip *c = calloc(1, sizeof *c);
    if (!c) {
        embd_fail(err, errlen, "out of memory");
        return NULL;
    }
    size_t size = 0;
    int fd = embd_gguf_open(path, &c->gguf, &c->meta, &size, err, errlen);
    if (fd < 0) goto fail;
    c->info.file_bytes = c->map_size = size;
    if (read_hparams(c, err, errlen) ||
        embd_gguf_map(fd, path, size, c->gguf, c->meta, &c->map, &c->buf, &c->info.n_params, err, errlen) ||
        load_tokenizer(c, err, errlen) || load_vision(c, err, errlen) || load_text(c, err, errlen))
        goto fail;
    close(fd);
    fd = -1;
    snprintf(c->info.weight_type, sizeof c->info.weight_type, "%s", ggml_type_name(c->vis.w.layers[0].q_w->type));
    if (embd_device_resolve(device, &c->dev, err, errlen)) goto fail;
    snprintf(c->info.device, sizeof c->info.device, "%s", c->dev.name);
    /* GPUs multiply the file's types directly (cuBLAS, ggml's quantized kernels) */
    if (embd_device_is_gpu(&c->dev) ? upload_weights(c, err, errlen) : convert_matrices(c, err, errlen)) goto fail;
    snprintf(c->info.compute_type, sizeof c->info.compute_type, "%s", ggml_type_name(c->vis.w.layers[0].q_w->type));
    if (init_runtime(c, n_threads, err, errlen)) goto fail;
    return c;
fail:
    if (fd >= 0) close(fd);
    embd_clip_free(c);
    return NULL;
}

void embd_clip_free(embd_clip *c) {
    if (!c) return;
    embd_tokenizer_free(c->tok);
    free(c->vis.w.layers);
    free(c->vis.dw.layers);
    free(c->txt.w.layers);
    free(c->txt.dw.layers);
    if (c->alloc) ggml_gallocr_free(c->alloc);
    if (c->backend) ggml_backend_free(c->backend);
    free(c->meta_buf);
    free(c->stage);
    free(c->istage);
    if (c->buf) ggml_backend_buffer_free(c->buf);
    if (c->dev_buf) ggml_backend_buffer_free(c->dev_buf);
    if (c->conv_buf) ggml_backend_buffer_free(c->conv_buf);
    if (c->conv_ctx) ggml_free(c->conv_ctx);
    if (c->dev_ctx) ggml_free(c->dev_ctx);
    if (c->map) munmap(c->map, c->map_size);
    if (c->meta) ggml_free(c->meta);
    if (c->gguf) gguf_free(c->gguf);
    free(c);
}

const embd_clip_info *embd_clip_get_info(const embd_clip *c) { return &c->info; }
void embd_clip_image_prep(const embd_clip *c, embd_image_prep *p) { *p = c->prep; }
const embd_tokenizer *embd_clip_tokenizer(const embd_clip *c) { return c->tok; }

/* ---- encoding ---------------------------------------------------------------------------- */

int clip_pool_index(const embd_clip *c, const int32_t *ids, int len) {
    int best = 0;
    for (int t = 0; t < len; t++) {
        if (c->pool_argmax ? ids[t] > ids[best] : ids[t] == c->eos_id) {
            best = t;
            if (!c->pool_argmax) return t;
        }
    }
    /* HF's argmax over (ids == eos) is 0 when no eos occurs */
    return c->pool_argmax ? best : 0;
}

static void normalize_rows(float *out, int n, int dim) {
    for (int i = 0; i < n; i++) embd_l2_normalize(out + (size_t)i * dim, dim);
}

int embd_clip_encode_texts(embd_clip *c, const int32_t *const *ids, const int *lens, int n, float *out, char *err,
                           size_t errlen) {
    if (n <= 0) return 0;
    const int64_t V = c->txt.w.embd->ne[1];
    for (int i = 0; i < n; i++) {
        if (lens[i] < 1 || lens[i] > c->info.text_ctx)
            return embd_fail(err, errlen, "text %d has %d tokens (1..%d allowed)", i, lens[i], c->info.text_ctx);
        for (int t = 0; t < lens[i]; t++)
            if (ids[i][t] < 0 || ids[i][t] >= V)
                return embd_fail(err, errlen, "text %d: token id %d out of range", i, (int)ids[i][t]);
    }
    if (clip_run_text(c, ids, lens, n, out, err, errlen)) return -1;
    normalize_rows(out, n, c->info.dim);
    return 0;
}

int embd_clip_encode_images(embd_clip *c, const float *pixels, int n, float *out, char *err, size_t errlen) {
    if (n <= 0) return 0;
    if (clip_run_vision(c, pixels, n, out, err, errlen)) return -1;
    normalize_rows(out, n, c->info.dim);
    return 0;
}
