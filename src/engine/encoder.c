#include "engine/encoder.h"

#include <math.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/attention.h"
#include "engine/gelu.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml.h"
#include "util/sys.h"

#define GRAPH_MAX_NODES 8192

enum { ATTN_EMBD, ATTN_FLASH, ATTN_MATMUL };

struct embd_encoder {
    const embd_model *m;
    const embd_weights *w; /* the model's host or device copy */
    bool gpu;
    ggml_backend_t backend;
    ggml_gallocr_t alloc;
    int n_threads;
    void *meta_buf; /* tensor/graph headers for one graph (no data) */
    size_t meta_size;
    /* host staging for inputs and outputs, grown on demand */
    int32_t *ids, *pos, *sel, *types;
    float *mask, *hidden;
    uint16_t *mask16, *mask16_sel; /* f16 key-padding masks for flash attention */
    size_t ids_cap, pos_cap, types_cap, mask_cap, hidden_cap, sel_cap, mask16_cap, mask16_sel_cap;
    int attn;   /* ATTN_*: which attention implementation the graph uses */
    embd_attn_params ap, ap_sel; /* the embd attention op's view of the batch (all rows / pooled rows) */
    int *lens_buf;
    size_t lens_cap;
    bool fused_gelu; /* embd's vectorised bias + GELU instead of ggml's add + scalar-erff gelu_erf */
    bool prec_f32;   /* GPU: weight GEMMs at f32 precision */
    size_t max_scores; /* GPU: attention scores (n_seq * heads * L * L) per pass, else split */
    /* GPU memory governor: passes predicted to need more than budget bytes are split before they
     * run; a pass whose allocation fails anyway is split and retried, and a single sequence that
     * does not fit runs on the CPU twin (host weights). */
    size_t budget;           /* 0: unlimited (CPU) */
    size_t fault_bytes;      /* tests: passes predicted above this fail as if out of memory */
    embd_encoder *cpu;       /* lazily made CPU twin for the fallback */
    embd_encoder_stats st;
};

static size_t env_bytes(const char *name) {
    const char *v = getenv(name);
    return v && *v ? (size_t)strtoull(v, NULL, 10) : 0;
}

/* GPU precision (EMBD_GPU_PREC): f32 (default) multiplies in true f32: weight GEMMs at f32 and
 * cuBLAS's TF32 tensor-core mode, which ggml turns on, overridden off (NVIDIA_TF32_OVERRIDE=0,
 * read by cuBLAS, so it must be set before its first use); tf32 keeps f32 GEMMs but lets cuBLAS
 * use TF32 (~1e-4 relative error, several times the speed on large models); fast is ggml's own
 * choice (f16 weights through cuBLAS with f16 accumulation). */
void embd_gpu_precision_env(void) {
    const char *prec = getenv("EMBD_GPU_PREC");
    if (!prec || !strcmp(prec, "f32")) {
        setenv("NVIDIA_TF32_OVERRIDE", "0", 0);
    } else {
        /* ggml replays captured CUDA graphs of passes that look unchanged. With cuBLAS's TF32 or
         * f16 kernels in them, a replay after the pass shapes changed failed on an H200 ("illegal
         * instruction" in cudaGraphLaunch; f32 mode ran every test and benchmark with graphs on).
         * Graphs save ~1-3 ms of launches per pass; correctness first. */
        setenv("GGML_CUDA_DISABLE_GRAPHS", "1", 0);
    }
}

static embd_encoder *encoder_new(const embd_model *m, int n_threads, bool on_cpu, char *err, size_t errlen) {
    embd_encoder *e = calloc(1, sizeof *e);
    if (!e) {
        embd_fail(err, errlen, "out of memory");
        return NULL;
    }
    e->m = m;
    e->gpu = !on_cpu && embd_device_is_gpu(&m->dev);
    e->w = e->gpu ? &m->dw : &m->w;
    e->n_threads = n_threads > 0 ? n_threads : embd_cpu_count();
    e->backend = e->gpu ? ggml_backend_dev_init(m->dev.dev, NULL) : ggml_backend_cpu_init();
    if (!e->backend) {
        embd_fail(err, errlen, "cannot initialise the ggml backend for %s", e->gpu ? m->dev.name : "cpu");
        goto fail;
    }
    if (!e->gpu) ggml_backend_cpu_set_n_threads(e->backend, e->n_threads);
    /* embd's own kernel where the head fits it; EMBD_ATTN=flash|matmul picks ggml's ops instead */
    const char *attn = getenv("EMBD_ATTN");
    e->attn = attn && !strcmp(attn, "matmul") ? ATTN_MATMUL : attn && !strcmp(attn, "flash") ? ATTN_FLASH : ATTN_EMBD;
    const int dh = m->info.n_embd / m->info.n_head;
    if (e->attn == ATTN_EMBD && (dh % 16 || dh > 64)) e->attn = ATTN_FLASH; /* the kernel's head sizes */
    const char *gelu = getenv("EMBD_GELU");
    e->fused_gelu = !(gelu && !strcmp(gelu, "ggml"));
    if (e->gpu) { /* embd's kernels are CPU code; on a GPU, ggml's ops (cuBLAS batched GEMMs for attention) */
        e->attn = ATTN_MATMUL;
        e->fused_gelu = false;
        embd_gpu_precision_env();
        const char *prec = getenv("EMBD_GPU_PREC");
        e->prec_f32 = !(prec && !strcmp(prec, "fast"));
        size_t cap_scores = env_bytes("EMBD_GPU_MAX_SCORES");
        e->max_scores = cap_scores ? cap_scores : (size_t)1 << 28;
        size_t free_b, total_b;
        embd_device_memory(&m->dev, &free_b, &total_b);
        /* keep a tenth of the card (at least 512 MiB) for the backend's own pools and workspaces */
        size_t reserve = total_b / 10 > ((size_t)512 << 20) ? total_b / 10 : (size_t)512 << 20;
        e->budget = free_b > reserve ? free_b - reserve : 0;
        size_t cap = env_bytes("EMBD_GPU_MEM_BYTES");
        if (cap && (cap < e->budget || !e->budget)) e->budget = cap;
        if (!e->budget) e->budget = 1; /* nothing fits: every pass goes to the CPU */
    }
    if (!on_cpu) e->fault_bytes = env_bytes("EMBD_FAULT_ALLOC_BYTES");
    e->st.budget_bytes = e->budget;
    e->st.weight_bytes = e->gpu ? m->info.device_bytes : 0;
    e->alloc = ggml_gallocr_new(ggml_backend_get_default_buffer_type(e->backend));
    e->meta_size = ggml_tensor_overhead() * GRAPH_MAX_NODES + ggml_graph_overhead_custom(GRAPH_MAX_NODES, false);
    e->meta_buf = malloc(e->meta_size);
    if (!e->alloc || !e->meta_buf) {
        embd_fail(err, errlen, "out of memory");
        goto fail;
    }
    return e;
fail:
    embd_encoder_free(e);
    return NULL;
}

embd_encoder *embd_encoder_new(const embd_model *m, int n_threads, char *err, size_t errlen) {
    return encoder_new(m, n_threads, false, err, errlen);
}

/* Another thread (metrics) may read while a pass runs: the fields are written and read atomically. */
void embd_encoder_get_stats(const embd_encoder *e, embd_encoder_stats *st) {
    st->splits = __atomic_load_n(&e->st.splits, __ATOMIC_RELAXED);
    st->cpu_fallbacks = __atomic_load_n(&e->st.cpu_fallbacks, __ATOMIC_RELAXED);
    st->budget_bytes = e->st.budget_bytes;
    st->weight_bytes = e->st.weight_bytes;
    st->compute_bytes = __atomic_load_n(&e->st.compute_bytes, __ATOMIC_RELAXED);
}

const char *embd_encoder_device(const embd_encoder *e) { return e->gpu ? e->m->dev.name : "cpu"; }
bool embd_encoder_on_gpu(const embd_encoder *e) { return e->gpu; }

void embd_encoder_free(embd_encoder *e) {
    if (!e) return;
    embd_encoder_free(e->cpu);
    if (e->alloc) ggml_gallocr_free(e->alloc);
    if (e->backend) ggml_backend_free(e->backend);
    free(e->meta_buf);
    free(e->ids);
    free(e->pos);
    free(e->sel);
    free(e->types);
    free(e->lens_buf);
    free(e->mask);
    free(e->mask16);
    free(e->mask16_sel);
    free(e->hidden);
    free(e);
}

int embd_encoder_threads(const embd_encoder *e) { return e->n_threads; }

void embd_encoder_set_threads(embd_encoder *e, int n) {
    if (n < 1) return;
    e->n_threads = n;
    if (!e->gpu) ggml_backend_cpu_set_n_threads(e->backend, n);
    if (e->cpu) embd_encoder_set_threads(e->cpu, n);
}
const embd_model *embd_encoder_model(const embd_encoder *e) { return e->m; }

static struct ggml_tensor *layer_norm(struct ggml_context *c, struct ggml_tensor *x, struct ggml_tensor *w,
                                      struct ggml_tensor *b, float eps) {
    return ggml_add(c, ggml_mul(c, ggml_norm(c, x, eps), w), b);
}

static struct ggml_tensor *linear(struct ggml_context *c, struct ggml_tensor *x, struct ggml_tensor *w,
                                  struct ggml_tensor *b) {
    return ggml_add(c, ggml_mul_mat(c, w, x), b);
}

typedef struct {
    struct ggml_tensor *ids, *pos, *types, *mask, *mask_sel, *sel, *out;
} graph_io;

/* The cross-encoder head on the pooled [CLS] rows, as llama.cpp's rank pooling computes it. */
static struct ggml_tensor *rank_head(struct ggml_context *c, const embd_weights *m, struct ggml_tensor *x) {
    if (m->cls_w) {
        x = ggml_mul_mat(c, m->cls_w, x);
        if (m->cls_b) x = ggml_add(c, x, m->cls_b);
        x = ggml_tanh(c, x);
    }
    if (m->cls_out_w) {
        x = ggml_mul_mat(c, m->cls_out_w, x);
        if (m->cls_out_b) x = ggml_add(c, x, m->cls_out_b);
    }
    return x;
}

/* sel_rows: when > 0, the last layer keeps only these rows (one per sequence: its CLS or last
 * token) after attention, so its FFN runs on n_seq rows instead of all tokens. */
static struct ggml_cgraph *build(embd_encoder *e, int L, int B, bool select, bool typed, bool rank, graph_io *io) {
    const embd_weights *m = e->w;
    const embd_model_info *hp = &e->m->info;
    const int H = hp->n_embd, nh = hp->n_head, dh = H / nh;
    struct ggml_init_params ip = {.mem_size = e->meta_size, .mem_buffer = e->meta_buf, .no_alloc = true};
    struct ggml_context *c = ggml_init(ip);
    struct ggml_cgraph *gf = ggml_new_graph_custom(c, GRAPH_MAX_NODES, false);

    io->ids = ggml_new_tensor_1d(c, GGML_TYPE_I32, (int64_t)L * B);
    io->pos = ggml_new_tensor_1d(c, GGML_TYPE_I32, (int64_t)L * B);
    ggml_set_input(io->ids);
    ggml_set_input(io->pos);
    io->mask = io->sel = io->mask_sel = io->types = NULL;
    struct ggml_tensor *kq_mask = NULL; /* none for embd's kernel: it reads the lengths */
    if (e->attn == ATTN_FLASH) {
        io->mask = ggml_new_tensor_4d(c, GGML_TYPE_F16, L, L, 1, B);
        ggml_set_input(io->mask);
    } else if (e->attn == ATTN_MATMUL) {
        /* one key-padding row per sequence, repeated over the queries where it is used (on a GPU
         * this saves sending L x L floats per sequence across the bus) */
        io->mask = ggml_new_tensor_4d(c, GGML_TYPE_F32, L, 1, 1, B);
        ggml_set_input(io->mask);
        kq_mask = ggml_repeat_4d(c, io->mask, L, L, 1, B);
    }
    if (typed) {
        io->types = ggml_new_tensor_1d(c, GGML_TYPE_I32, (int64_t)L * B);
        ggml_set_input(io->types);
    }
    if (select) {
        io->sel = ggml_new_tensor_1d(c, GGML_TYPE_I32, B);
        ggml_set_input(io->sel);
        if (e->attn == ATTN_FLASH) { /* flash attention reads one mask row per query: the pooled row's */
            io->mask_sel = ggml_new_tensor_4d(c, GGML_TYPE_F16, L, 1, 1, B);
            ggml_set_input(io->mask_sel);
        }
    }

    struct ggml_tensor *x = ggml_get_rows(c, m->tok_embd, io->ids);
    x = ggml_add(c, x, ggml_get_rows(c, m->pos_embd, io->pos));
    if (typed) x = ggml_add(c, x, ggml_get_rows(c, m->type_embd, io->types));
    else if (m->type_embd) x = ggml_add(c, x, ggml_view_1d(c, m->type_embd, H, 0)); /* token type 0 */
    x = layer_norm(c, x, m->embd_norm_w, m->embd_norm_b, hp->ln_eps);

    const float scale = 1.0f / sqrtf((float)dh);
    for (int il = 0; il < hp->n_layer; il++) {
        const embd_layer *l = &m->layers[il];
        /* On a GPU the pooled rows are picked after the last layer (and the rank head): GEMMs with
         * at most 16 rows go to ggml's TF32 tensor-core kernel there, which moves f32 results by
         * ~1e-4; full-batch GEMMs stay in cuBLAS at f32. */
        const bool last = il == hp->n_layer - 1 && !e->gpu;
        struct ggml_tensor *xq = (last && select) ? ggml_get_rows(c, x, io->sel) : x;
        const int Lq = (last && select) ? 1 : L;

        struct ggml_tensor *qh = linear(c, xq, l->q_w, l->q_b), *kh = linear(c, x, l->k_w, l->k_b),
                           *vh = linear(c, x, l->v_w, l->v_b);
        struct ggml_tensor *q = ggml_reshape_4d(c, qh, dh, nh, Lq, B);
        struct ggml_tensor *k = ggml_reshape_4d(c, kh, dh, nh, L, B);
        struct ggml_tensor *v = ggml_reshape_4d(c, vh, dh, nh, L, B);
        struct ggml_tensor *att;
        if (e->attn == ATTN_EMBD) {
            att = embd_attention(c, qh, kh, vh, (last && select) ? &e->ap_sel : &e->ap);
        } else if (e->attn == ATTN_FLASH) {
            /* Tiled online-softmax attention, f32 throughout with f32 K/V: no L x L score matrix
             * in memory and no tiny per-head GEMMs (head size 32 is a poor GEMM depth). */
            struct ggml_tensor *o = ggml_flash_attn_ext(c, ggml_permute(c, q, 0, 2, 1, 3), ggml_permute(c, k, 0, 2, 1, 3),
                                                        ggml_permute(c, v, 0, 2, 1, 3),
                                                        (last && select) ? io->mask_sel : io->mask, scale, 0.0f, 0.0f);
            ggml_prec_set_acc(o, GGML_PREC_F32);
            att = ggml_reshape_2d(c, o, H, (int64_t)Lq * B); /* o is [dh, nh, Lq, B] */
        } else {
            /* contiguous copies let ggml use its blocked GEMM instead of strided dot products */
            q = ggml_cont(c, ggml_permute(c, q, 0, 2, 1, 3)); /* [dh, Lq, nh, B] */
            k = ggml_cont(c, ggml_permute(c, k, 0, 2, 1, 3)); /* [dh, L, nh, B] */
            v = ggml_cont(c, ggml_permute(c, v, 1, 2, 0, 3)); /* [L, dh, nh, B] */
            struct ggml_tensor *kq = ggml_mul_mat(c, k, q);   /* [L, Lq, nh, B] */
            ggml_prec_set_acc(kq, GGML_PREC_F32); /* f32 accumulation on backends that default lower */
            kq = ggml_soft_max_ext(c, kq, kq_mask, scale, 0.0f);
            struct ggml_tensor *kqv = ggml_mul_mat(c, v, kq); /* [dh, Lq, nh, B] */
            att = ggml_cont_2d(c, ggml_permute(c, kqv, 0, 2, 1, 3), H, (int64_t)Lq * B);
        }

        x = layer_norm(c, ggml_add(c, linear(c, att, l->o_w, l->o_b), xq), l->ln1_w, l->ln1_b, hp->ln_eps);
        struct ggml_tensor *ff = e->fused_gelu ? embd_bias_gelu(c, ggml_mul_mat(c, l->up_w, x), l->up_b)
                                               : ggml_gelu_erf(c, linear(c, x, l->up_w, l->up_b));
        x = layer_norm(c, ggml_add(c, linear(c, ff, l->down_w, l->down_b), x), l->ln2_w, l->ln2_b, hp->ln_eps);
    }
    if (rank) x = rank_head(c, m, x);
    if (select && e->gpu) x = ggml_get_rows(c, x, io->sel);
    io->out = x;
    ggml_set_output(x);
    ggml_build_forward_expand(gf, x);
    /* GPU: weight GEMMs at f32 precision (ggml's default for f16 weights is cuBLAS with f16
     * accumulation, which costs fidelity: 0.99993 instead of 0.999998 centred cosine) */
    for (int i = 0; e->prec_f32 && i < ggml_graph_n_nodes(gf); i++) {
        struct ggml_tensor *n = ggml_graph_node(gf, i);
        if (n->op == GGML_OP_MUL_MAT && n->src[0]->op == GGML_OP_NONE) ggml_prec_set_acc(n, GGML_PREC_F32);
    }
    ggml_free(c); /* headers live in meta_buf; ggml_free does not release a caller's buffer */
    return gf;
}

static bool grow(void **p, size_t *cap, size_t n, size_t elem) {
    if (n <= *cap) return true;
    void *q = realloc(*p, n * elem);
    if (!q) return false;
    *p = q;
    *cap = n;
    return true;
}

enum { RUN_OOM = -2 };

static int run_once(embd_encoder *e, const int32_t *const *ids, const int *lens, const int *n_first, int n_seq,
                    embd_pooling pool, float *out, char *err, size_t errlen) {
    const embd_model_info *hp = &e->m->info;
    const int H = hp->n_embd;
    int L = 0;
    for (int b = 0; b < n_seq; b++) {
        if (lens[b] < 1 || lens[b] > hp->n_ctx) return embd_fail(err, errlen, "sequence length %d out of range", lens[b]);
        if (lens[b] > L) L = lens[b];
    }
    if (n_seq <= 0) return 0;
    /* ggml's tiled f32 GEMM (llamafile sgemm) needs the reduction length of attention x values
     * (the keys) in multiples of its vector width, 16 floats with AVX-512, or it falls back to dot
     * products; padded keys are masked, so rounding up only costs a few wasted columns. */
    L = (L + 15) & ~15;
    if (e->gpu && L < 32) L = 32; /* > 16 rows per GEMM: cuBLAS, not the TF32 kernel (above) */
    const size_t nt = (size_t)L * n_seq, nm = (size_t)L * L * n_seq;
    if (!grow((void **)&e->ids, &e->ids_cap, nt, sizeof *e->ids) || !grow((void **)&e->pos, &e->pos_cap, nt, sizeof *e->pos) ||
        (e->attn == ATTN_EMBD ? false
         : e->attn == ATTN_FLASH ? !grow((void **)&e->mask16, &e->mask16_cap, nm, sizeof *e->mask16) ||
                                    !grow((void **)&e->mask16_sel, &e->mask16_sel_cap, nt, sizeof *e->mask16_sel)
                              : !grow((void **)&e->mask, &e->mask_cap, nt, sizeof *e->mask)) ||
        !grow((void **)&e->sel, &e->sel_cap, (size_t)n_seq, sizeof *e->sel))
        return embd_fail(err, errlen, "out of memory staging a batch of %d x %d tokens", n_seq, L);

    const bool rank = pool == EMBD_POOL_RANK;
    if (rank && !e->m->info.n_labels) return embd_fail(err, errlen, "the model has no classification head");
    const bool select = pool == EMBD_POOL_CLS || pool == EMBD_POOL_LAST || rank;
    /* Segment B of a pair gets token type 1 where the model has one (BERT; XLM-R has a single type). */
    bool typed = false;
    for (int b = 0; n_first && hp->n_token_types > 1 && b < n_seq; b++) typed |= n_first[b] > 0 && n_first[b] < lens[b];
    if (typed && !grow((void **)&e->types, &e->types_cap, nt, sizeof *e->types))
        return embd_fail(err, errlen, "out of memory staging a batch of %d x %d tokens", n_seq, L);
    const int32_t pad = 0;
    for (int b = 0; b < n_seq; b++) {
        int32_t *row = e->ids + (size_t)b * L, *prow = e->pos + (size_t)b * L;
        for (int t = 0; t < L; t++) {
            row[t] = t < lens[b] ? ids[b][t] : pad;
            prow[t] = t < hp->n_ctx ? t : hp->n_ctx - 1;
        }
        for (int t = 0; t < lens[b]; t++)
            if (row[t] < 0 || row[t] >= hp->n_vocab) return embd_fail(err, errlen, "token id %d out of range", row[t]);
        if (e->attn == ATTN_EMBD) {
        } else if (e->attn == ATTN_FLASH) {
            uint16_t *mrow = e->mask16 + (size_t)b * L * L, *srow = e->mask16_sel + (size_t)b * L;
            for (int t = 0; t < L; t++) mrow[t] = t < lens[b] ? 0x0000 : 0xFC00; /* f16 0 and -inf */
            for (int q = 1; q < L; q++) memcpy(mrow + (size_t)q * L, mrow, (size_t)L * sizeof *mrow);
            memcpy(srow, mrow, (size_t)L * sizeof *srow);
        } else {
            float *mrow = e->mask + (size_t)b * L;
            for (int t = 0; t < L; t++) mrow[t] = t < lens[b] ? 0.0f : -INFINITY;
        }
        e->sel[b] = b * L + (pool == EMBD_POOL_LAST ? lens[b] - 1 : 0);
        if (typed) {
            const int nf = n_first[b] > 0 ? n_first[b] : L;
            for (int t = 0; t < L; t++) e->types[(size_t)b * L + t] = t >= nf && t < lens[b];
        }
    }

    if (!grow((void **)&e->lens_buf, &e->lens_cap, (size_t)n_seq, sizeof *e->lens_buf))
        return embd_fail(err, errlen, "out of memory staging a batch of %d x %d tokens", n_seq, L);
    memcpy(e->lens_buf, lens, (size_t)n_seq * sizeof *lens);
    e->ap = (embd_attn_params){.lens = e->lens_buf, .n_seq = n_seq, .L = L, .Lq = L, .n_head = hp->n_head,
                               .d_head = H / hp->n_head, .scale = 1.0f / sqrtf((float)(H / hp->n_head))};
    e->ap_sel = e->ap;
    e->ap_sel.Lq = 1;

    graph_io io;
    struct ggml_cgraph *gf = build(e, L, n_seq, select, typed, rank, &io);
    if ((e->fault_bytes && embd_encoder_estimate(e, n_seq, L) > e->fault_bytes) || !ggml_gallocr_alloc_graph(e->alloc, gf)) {
        embd_fail(err, errlen, "cannot allocate %s compute memory for %d x %d tokens", embd_encoder_device(e), n_seq, L);
        return RUN_OOM;
    }
    __atomic_store_n(&e->st.compute_bytes, ggml_gallocr_get_buffer_size(e->alloc, 0), __ATOMIC_RELAXED);
    ggml_backend_tensor_set(io.ids, e->ids, 0, nt * sizeof *e->ids);
    ggml_backend_tensor_set(io.pos, e->pos, 0, nt * sizeof *e->pos);
    if (io.types) ggml_backend_tensor_set(io.types, e->types, 0, nt * sizeof *e->types);
    if (e->attn == ATTN_EMBD) {
    } else if (e->attn == ATTN_FLASH) {
        ggml_backend_tensor_set(io.mask, e->mask16, 0, nm * sizeof *e->mask16);
        if (io.mask_sel) ggml_backend_tensor_set(io.mask_sel, e->mask16_sel, 0, nt * sizeof *e->mask16_sel);
    } else {
        ggml_backend_tensor_set(io.mask, e->mask, 0, nt * sizeof *e->mask);
    }
    if (io.sel) ggml_backend_tensor_set(io.sel, e->sel, 0, (size_t)n_seq * sizeof *e->sel);
    if (ggml_backend_graph_compute(e->backend, gf) != GGML_STATUS_SUCCESS)
        return embd_fail(err, errlen, "graph compute failed");

    if (select) {
        ggml_backend_tensor_get(io.out, out, 0, (size_t)n_seq * (rank ? hp->n_labels : H) * sizeof(float));
        return 0;
    }
    if (pool != EMBD_POOL_MEAN && pool != EMBD_POOL_NONE)
        return embd_fail(err, errlen, "pooling '%s' is not supported here", embd_pooling_name(pool));
    if (!grow((void **)&e->hidden, &e->hidden_cap, nt * H, sizeof *e->hidden))
        return embd_fail(err, errlen, "out of memory reading hidden states");
    ggml_backend_tensor_get(io.out, e->hidden, 0, nt * H * sizeof(float));
    if (pool == EMBD_POOL_NONE) { /* every real token's state, sequences one after another */
        for (int b = 0; b < n_seq; b++) {
            memcpy(out, e->hidden + (size_t)b * L * H, (size_t)lens[b] * H * sizeof *out);
            out += (size_t)lens[b] * H;
        }
        return 0;
    }
    for (int b = 0; b < n_seq; b++) {
        float *o = out + (size_t)b * H;
        memset(o, 0, (size_t)H * sizeof *o);
        for (int t = 0; t < lens[b]; t++) {
            const float *h = e->hidden + ((size_t)b * L + t) * H;
            for (int i = 0; i < H; i++) o[i] += h[i];
        }
        for (int i = 0; i < H; i++) o[i] /= (float)lens[b];
    }
    return 0;
}

/* Bytes one pass of n_seq x L padded tokens needs on the encoder's device: the graph allocator's
 * peak (ggml reuses a tensor's memory once its last reader ran, so the peak is the widest point of
 * a layer: attention scores and their softmax, or the FFN's up projection and GELU, next to the
 * residual stream) plus the backend's temporaries (activations converted for the GEMMs). */
size_t embd_encoder_estimate(const embd_encoder *e, int n_seq, int L) {
    const embd_model_info *hp = &e->m->info;
    const double B = n_seq, T = (double)n_seq * ((L + 15) & ~15), H = hp->n_embd, F = hp->n_ff, nh = hp->n_head;
    const double Lp = (L + 15) & ~15;
    double scores = e->attn == ATTN_MATMUL ? 2 * B * nh * Lp * Lp + B * Lp * Lp : 0;
    double attn = scores + 8 * T * H, ffn = 2 * T * F + 4 * T * H;
    double bytes = 4 * (attn > ffn ? attn : ffn);
    if (e->gpu) bytes += 2 * T * F + ((size_t)64 << 20);
    return (size_t)(bytes * 1.125);
}

/* The first half of the sequences, then the second, each as embd_encoder_run does it. */
static int run_halves(embd_encoder *e, const int32_t *const *ids, const int *lens, const int *n_first, int n_seq,
                      embd_pooling pool, float *out, char *err, size_t errlen) {
    const int h = n_seq / 2;
    size_t off = (size_t)h * (size_t)embd_model_out_dim(e->m, pool);
    if (pool == EMBD_POOL_NONE) { /* token states: rows per token, not per sequence */
        off = 0;
        for (int b = 0; b < h; b++) off += (size_t)lens[b] * (size_t)e->m->info.n_embd;
    }
    if (embd_encoder_run(e, ids, lens, n_first, h, pool, out, err, errlen)) return -1;
    return embd_encoder_run(e, ids + h, lens + h, n_first ? n_first + h : NULL, n_seq - h, pool, out + off, err, errlen);
}

/* Runs a pass as is, or in halves when the device memory will not hold it (predicted, or the
 * allocation failed), down to single sequences, which then run on the CPU. */
int embd_encoder_run(embd_encoder *e, const int32_t *const *ids, const int *lens, const int *n_first, int n_seq,
                     embd_pooling pool, float *out, char *err, size_t errlen) {
    if (n_seq <= 0) return 0;
    int L = 0;
    for (int b = 0; b < n_seq; b++) L = lens[b] > L ? lens[b] : L;
    int rc = RUN_OOM;
    /* Very large attention passes are split up front (2^28 scores, 1 GiB of f32: smaller passes
     * lose nothing on throughput, and the score tensors stay far from 32-bit index limits). */
    if (e->gpu && n_seq > 1 && (size_t)n_seq * (size_t)e->m->info.n_head * (size_t)L * (size_t)L > e->max_scores)
        return run_halves(e, ids, lens, n_first, n_seq, pool, out, err, errlen);
    const bool fits = !e->budget || embd_encoder_estimate(e, n_seq, L) <= e->budget;
    if (fits) rc = run_once(e, ids, lens, n_first, n_seq, pool, out, err, errlen);
    if (rc != RUN_OOM) return rc;
    if (n_seq > 1) {
        __atomic_fetch_add(&e->st.splits, 1, __ATOMIC_RELAXED);
        return run_halves(e, ids, lens, n_first, n_seq, pool, out, err, errlen);
    }
    if (!e->cpu && !(e->cpu = encoder_new(e->m, e->n_threads, true, err, errlen))) return -1;
    __atomic_fetch_add(&e->st.cpu_fallbacks, 1, __ATOMIC_RELAXED);
    fprintf(stderr, "embd: warning: %s has no memory for a %d-token sequence (%s); running it on the CPU\n",
            embd_encoder_device(e), lens[0], fits ? "allocation failed" : "over the memory budget");
    return run_once(e->cpu, ids, lens, n_first, 1, pool, out, err, errlen) == 0 ? 0 : -1;
}
