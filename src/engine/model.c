#include "engine/model.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine/bf16.h"
#include "engine/weights.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml.h"
#include "gguf.h"
#include "util/sys.h"

/* ggml and gguf print diagnostics on stderr; embd reports its own one-line errors instead, and
 * passes ggml's through only with EMBD_DEBUG=1 (errors always). */
/* While a file's header is parsed, gguf's complaints are replaced by embd's one-line error. */
static _Thread_local bool parsing_gguf;

static void ggml_log_filter(enum ggml_log_level level, const char *text, void *ud) {
    /* other errors stay visible: a CUDA error's cause is printed just before ggml aborts */
    if (*(const bool *)ud || (level == GGML_LOG_LEVEL_ERROR && !parsing_gguf)) fputs(text, stderr);
}

static void quiet_ggml_once(void) {
    static bool debug, done;
    if (done) return;
    done = true;
    const char *d = getenv("EMBD_DEBUG");
    debug = d && *d && strcmp(d, "0") != 0;
    ggml_log_set(ggml_log_filter, &debug);
}

static const char *POOL_NAMES[] = {"none", "mean", "cls", "last", "rank"};

const char *embd_pooling_name(embd_pooling p) {
    return (p >= EMBD_POOL_NONE && p <= EMBD_POOL_RANK) ? POOL_NAMES[p] : "unspecified";
}

embd_pooling embd_pooling_parse(const char *s) {
    for (int i = 0; i <= EMBD_POOL_RANK; i++)
        if (strcmp(s, POOL_NAMES[i]) == 0) return (embd_pooling)i;
    return EMBD_POOL_UNSPECIFIED;
}

static bool kv_arch_int(const struct gguf_context *g, const char *arch, const char *suffix, long long *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return embd_gguf_int(g, key, out);
}

/* Looks a tensor up and checks its shape, so that a malformed file fails here with a message
 * instead of asserting inside ggml later. ne1 = 0 means a 1-D tensor. */
static struct ggml_tensor *want(embd_model *m, const char *name, int64_t ne0, int64_t ne1, char *err,
                                size_t errlen) {
    struct ggml_tensor *t = ggml_get_tensor(m->meta, name);
    if (!t) {
        embd_fail(err, errlen, "model has no tensor '%s'", name);
        return NULL;
    }
    int64_t e1 = ne1 ? ne1 : 1;
    if (t->ne[0] != ne0 || t->ne[1] != e1 || t->ne[2] != 1 || t->ne[3] != 1) {
        embd_fail(err, errlen, "tensor '%s' has shape [%lld,%lld,%lld,%lld], expected [%lld,%lld]", name,
                  (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
                  (long long)ne0, (long long)e1);
        return NULL;
    }
    /* Vectors (biases, norms) are added element-wise in f32. */
    if (!ne1 && t->type != GGML_TYPE_F32) {
        embd_fail(err, errlen, "tensor '%s' must be f32, is %s", name, ggml_type_name(t->type));
        return NULL;
    }
    return t;
}

#define WANT(field, name, a, b)                                                                    \
    do {                                                                                           \
        if (!((field) = want(m, (name), (a), (b), err, errlen))) goto fail;                        \
    } while (0)

/* An uncased vocabulary has no uppercase ASCII in its ordinary tokens; GGUF does not record
 * the normaliser's lowercase flag, so this is how a cased BERT is told apart. */
static bool vocab_is_uncased(const struct gguf_context *g, int64_t tok_id, const int32_t *types) {
    size_t n = gguf_get_arr_n(g, tok_id);
    for (size_t i = 0; i < n; i++) {
        if (types && types[i] != 1) continue;
        const char *s = gguf_get_arr_str(g, tok_id, i);
        if (s[0] == '[') continue;
        for (const char *c = s; *c; c++)
            if (isupper((unsigned char)*c)) return false;
    }
    return true;
}

static embd_tokenizer *tokenizer_from_gguf(const struct gguf_context *g, char *err, size_t errlen) {
    int64_t tid = gguf_find_key(g, "tokenizer.ggml.tokens");
    if (tid < 0 || gguf_get_kv_type(g, tid) != GGUF_TYPE_ARRAY || gguf_get_arr_type(g, tid) != GGUF_TYPE_STRING) {
        embd_fail(err, errlen, "model has no tokenizer.ggml.tokens vocabulary");
        return NULL;
    }
    const char *tmodel = embd_gguf_str(g, "tokenizer.ggml.model");
    if (tmodel && !strcmp(tmodel, "t5")) /* SentencePiece Unigram: XLM-RoBERTa */
        return embd_tokenizer_new_unigram_gguf(g, err, errlen);
    if (tmodel && strcmp(tmodel, "bert") != 0) {
        embd_fail(err, errlen, "tokenizer model '%s' is not supported (WordPiece 'bert', Unigram 't5')", tmodel);
        return NULL;
    }
    size_t n = gguf_get_arr_n(g, tid);
    const int32_t *types = NULL;
    int64_t yid = gguf_find_key(g, "tokenizer.ggml.token_type");
    if (yid >= 0 && gguf_get_kv_type(g, yid) == GGUF_TYPE_ARRAY && gguf_get_arr_type(g, yid) == GGUF_TYPE_INT32 &&
        gguf_get_arr_n(g, yid) == n)
        types = gguf_get_arr_data(g, yid);
    const char **toks = malloc(n * sizeof *toks);
    if (!toks) {
        embd_fail(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) toks[i] = gguf_get_arr_str(g, tid, i);
    embd_wordpiece_opts o;
    embd_wordpiece_opts_default(&o);
    o.lowercase = vocab_is_uncased(g, tid, types);
    embd_tokenizer *t = embd_tokenizer_new_wordpiece(toks, types, n, &o, err, errlen);
    free(toks);
    return t;
}

/* q8_0 matrices become bf16 at load on AVX512-BF16 CPUs (engine/bf16.h; EMBD_WEIGHTS=native keeps
 * the file's type). */
static int convert_matrices(embd_model *m, char *err, size_t errlen) {
    enum { MAX_LAYERS = 64, PER_LAYER = 6 };
    const int nl = m->info.n_layer;
    if (!embd_want_bf16(m->w.layers[0].q_w->type) || nl > MAX_LAYERS) return 0; /* bigger models keep their type */
    struct ggml_tensor **src[PER_LAYER * MAX_LAYERS];
    int n = 0;
    for (int il = 0; il < nl; il++) {
        embd_layer *l = &m->w.layers[il];
        src[n++] = &l->q_w, src[n++] = &l->k_w, src[n++] = &l->v_w;
        src[n++] = &l->o_w, src[n++] = &l->up_w, src[n++] = &l->down_w;
    }
    for (int i = 0; i < n; i++)
        if (!ggml_get_type_traits((*src[i])->type)->to_float) return 0;
    return embd_weights_to_bf16(src, n, &m->conv_ctx, &m->conv_buf, err, errlen);
}

/* The device copy (engine/weights.h), with the host weights' pointers mapped to their twins. */
static int upload_weights(embd_model *m, char *err, size_t errlen) {
    if (embd_weights_upload(&m->dev, m->meta, m->map, m->map_size, &m->dev_ctx, &m->dev_buf, err, errlen)) return -1;
    m->info.device_bytes = ggml_backend_buffer_get_size(m->dev_buf);
    const embd_weights *h = &m->w;
    embd_weights *d = &m->dw;
    struct ggml_context *dc = m->dev_ctx;
#define T(f) d->f = embd_weights_twin(dc, h->f)
    T(tok_embd), T(pos_embd), T(type_embd), T(embd_norm_w), T(embd_norm_b);
    T(cls_w), T(cls_b), T(cls_out_w), T(cls_out_b);
#undef T
    if (!(d->layers = embd_weights_twin_layers(dc, h->layers, m->info.n_layer, sizeof *h->layers)))
        return embd_fail(err, errlen, "out of memory");
    return 0;
}

/* Optional 2-D tensor (any type ggml can multiply) with its optional f32 bias. */
static int want_linear(embd_model *m, const char *name, int64_t ne0, struct ggml_tensor **w, struct ggml_tensor **b,
                       char *err, size_t errlen) {
    char n[64];
    snprintf(n, sizeof n, "%s.weight", name);
    *w = ggml_get_tensor(m->meta, n);
    *b = NULL;
    if (!*w) return 0;
    if ((*w)->ne[0] != ne0 || (*w)->ne[1] < 1 || (*w)->ne[1] > (1 << 16) || (*w)->ne[2] != 1 || (*w)->ne[3] != 1)
        return embd_fail(err, errlen, "tensor '%s' has shape [%lld,%lld,%lld,%lld], expected [%lld,n]", n,
                         (long long)(*w)->ne[0], (long long)(*w)->ne[1], (long long)(*w)->ne[2],
                         (long long)(*w)->ne[3], (long long)ne0);
    snprintf(n, sizeof n, "%s.bias", name);
    if (ggml_get_tensor(m->meta, n) && !(*b = want(m, n, (*w)->ne[1], 0, err, errlen))) return -1;
    return 0;
}

/* A cross-encoder's head as llama.cpp names it: `cls` (BERT pooler / RoBERTa dense, then tanh)
 * and `cls.output` (the label projection); either may be missing (jina-reranker-v1 has no
 * output projection). Only read for rank pooling. */
static int load_head(embd_model *m, char *err, size_t errlen) {
    embd_model_info *in = &m->info;
    if (in->pooling != EMBD_POOL_RANK) return 0;
    if (want_linear(m, "cls", in->n_embd, &m->w.cls_w, &m->w.cls_b, err, errlen)) return -1;
    int64_t width = m->w.cls_w ? m->w.cls_w->ne[1] : in->n_embd;
    if (want_linear(m, "cls.output", width, &m->w.cls_out_w, &m->w.cls_out_b, err, errlen)) return -1;
    if (!m->w.cls_w && !m->w.cls_out_w)
        return embd_fail(err, errlen, "pooling_type is rank but the model has no classification head (cls.weight)");
    in->n_labels = (int)(m->w.cls_out_w ? m->w.cls_out_w->ne[1] : width);
    return 0;
}

/* Keys written by `embd convert` from the sentence-transformers files. */
static int load_st_config(embd_model *m, char *err, size_t errlen) {
    const struct gguf_context *g = m->gguf;
    embd_model_info *in = &m->info;
    long long v;
    if (embd_gguf_int(g, "embd.max_seq_length", &v)) {
        if (v < 2) return embd_fail(err, errlen, "embd.max_seq_length %lld is too small", v);
        if (v < in->n_ctx) in->n_ctx = (int)v; /* a longer value cannot exceed the position table */
    }
    static const char prefix[] = "embd.prompts.";
    const int64_t nk = gguf_get_n_kv(g);
    for (int64_t i = 0; i < nk; i++)
        if (!strncmp(gguf_get_key(g, i), prefix, sizeof prefix - 1)) m->n_prompts++;
    if (m->n_prompts) {
        m->prompt_names = calloc(m->n_prompts, sizeof *m->prompt_names);
        m->prompt_texts = calloc(m->n_prompts, sizeof *m->prompt_texts);
        if (!m->prompt_names || !m->prompt_texts) return embd_fail(err, errlen, "out of memory");
        size_t k = 0;
        for (int64_t i = 0; i < nk; i++) {
            const char *key = gguf_get_key(g, i);
            if (strncmp(key, prefix, sizeof prefix - 1)) continue;
            if (gguf_get_kv_type(g, i) != GGUF_TYPE_STRING)
                return embd_fail(err, errlen, "model metadata %s is not a string", key);
            m->prompt_names[k] = key + sizeof prefix - 1;
            m->prompt_texts[k++] = gguf_get_val_str(g, i);
        }
    }
    m->default_prompt = embd_gguf_str(g, "embd.default_prompt_name");
    if (m->default_prompt && !embd_model_prompt(m, m->default_prompt))
        return embd_fail(err, errlen, "embd.default_prompt_name '%s' names no embd.prompts entry", m->default_prompt);
    return 0;
}

const char *embd_model_prompt(const embd_model *m, const char *name) {
    for (size_t i = 0; name && i < m->n_prompts; i++)
        if (!strcmp(m->prompt_names[i], name)) return m->prompt_texts[i];
    return NULL;
}

int embd_model_out_dim(const embd_model *m, embd_pooling p) {
    if (p == EMBD_POOL_UNSPECIFIED) p = m->info.pooling;
    return p == EMBD_POOL_RANK ? m->info.n_labels : m->info.n_embd;
}

bool embd_model_is_reranker(const embd_model *m) { return m->info.pooling == EMBD_POOL_RANK; }

embd_model *embd_model_load(const char *path, const embd_model_params *p, char *err, size_t errlen) {
    quiet_ggml_once();
    embd_model *m = calloc(1, sizeof *m);
    int fd = -1;
    if (!m) {
        embd_fail(err, errlen, "out of memory");
        return NULL;
    }
    size_t size = 0;
    parsing_gguf = true;
    fd = embd_gguf_open(path, &m->gguf, &m->meta, &size, err, errlen);
    parsing_gguf = false;
    if (fd < 0) goto fail;
    const struct gguf_context *g = m->gguf;
    embd_model_info *in = &m->info;
    in->file_bytes = size;
    const char *arch = embd_gguf_str(g, "general.architecture");
    if (!arch) {
        embd_fail(err, errlen, "model has no general.architecture");
        goto fail;
    }
    if (strcmp(arch, "bert") != 0) {
        embd_fail(err, errlen, "architecture '%s' is not supported (supported: bert)", arch);
        goto fail;
    }
    snprintf(in->arch, sizeof in->arch, "%s", arch);
    const char *name = embd_gguf_str(g, "general.name");
    snprintf(in->name, sizeof in->name, "%s", name ? name : "");

    long long v;
    struct { const char *key; int *dst; } req[] = {
        {"block_count", &in->n_layer},         {"embedding_length", &in->n_embd},
        {"attention.head_count", &in->n_head}, {"feed_forward_length", &in->n_ff},
        {"context_length", &in->n_ctx},
    };
    for (size_t i = 0; i < sizeof req / sizeof req[0]; i++) {
        if (!kv_arch_int(g, arch, req[i].key, &v) || v <= 0 || v > (1 << 20)) {
            embd_fail(err, errlen, "model metadata %s.%s is missing or out of range", arch, req[i].key);
            goto fail;
        }
        *req[i].dst = (int)v;
    }
    if (in->n_embd % in->n_head != 0) {
        embd_fail(err, errlen, "embedding_length %d is not a multiple of head_count %d", in->n_embd, in->n_head);
        goto fail;
    }
    char key[128];
    snprintf(key, sizeof key, "%s.attention.layer_norm_epsilon", arch);
    int64_t eid = gguf_find_key(g, key);
    in->ln_eps = (eid >= 0 && gguf_get_kv_type(g, eid) == GGUF_TYPE_FLOAT32) ? gguf_get_val_f32(g, eid) : 1e-12f;
    if (embd_device_resolve(p ? p->device : NULL, &m->dev, err, errlen)) goto fail;
    snprintf(in->device, sizeof in->device, "%s", m->dev.name);
    in->pooling = EMBD_POOL_CLS;
    if (kv_arch_int(g, arch, "pooling_type", &v)) {
        if (v < EMBD_POOL_NONE || v > EMBD_POOL_RANK) {
            embd_fail(err, errlen, "pooling_type %lld is not supported", v);
            goto fail;
        }
        in->pooling = (embd_pooling)v;
    }

    /* Map the file: weights stay in the page cache, shared by every process serving it. */
    m->map_size = size;
    if (embd_gguf_map(fd, path, size, g, m->meta, &m->map, &m->buf, &in->n_params, err, errlen)) goto fail;
    close(fd);
    fd = -1;

    if (p && p->tokenizer_json)
        m->tok = embd_tokenizer_from_json_file(p->tokenizer_json, err, errlen);
    else
        m->tok = tokenizer_from_gguf(g, err, errlen);
    if (!m->tok) goto fail;
    in->n_vocab = (int)embd_tokenizer_vocab_size(m->tok);

    const int H = in->n_embd, F = in->n_ff;
    struct ggml_tensor *tt = ggml_get_tensor(m->meta, "token_types.weight");
    in->n_token_types = tt ? (int)tt->ne[1] : 0;
    WANT(m->w.tok_embd, "token_embd.weight", H, in->n_vocab);
    WANT(m->w.pos_embd, "position_embd.weight", H, in->n_ctx);
    if (in->n_token_types > 0) WANT(m->w.type_embd, "token_types.weight", H, in->n_token_types);
    WANT(m->w.embd_norm_w, "token_embd_norm.weight", H, 0);
    WANT(m->w.embd_norm_b, "token_embd_norm.bias", H, 0);
    m->w.layers = calloc((size_t)in->n_layer, sizeof *m->w.layers);
    if (!m->w.layers) {
        embd_fail(err, errlen, "out of memory");
        goto fail;
    }
    for (int il = 0; il < in->n_layer; il++) {
        embd_layer *l = &m->w.layers[il];
        char n[96];
#define W(field, suffix, a, b)                                                                     \
    snprintf(n, sizeof n, "blk.%d.%s", il, suffix);                                                \
    WANT(l->field, n, a, b)
        W(q_w, "attn_q.weight", H, H); W(q_b, "attn_q.bias", H, 0);
        W(k_w, "attn_k.weight", H, H); W(k_b, "attn_k.bias", H, 0);
        W(v_w, "attn_v.weight", H, H); W(v_b, "attn_v.bias", H, 0);
        W(o_w, "attn_output.weight", H, H); W(o_b, "attn_output.bias", H, 0);
        W(ln1_w, "attn_output_norm.weight", H, 0); W(ln1_b, "attn_output_norm.bias", H, 0);
        W(up_w, "ffn_up.weight", H, F); W(up_b, "ffn_up.bias", F, 0);
        W(down_w, "ffn_down.weight", F, H); W(down_b, "ffn_down.bias", H, 0);
        W(ln2_w, "layer_output_norm.weight", H, 0); W(ln2_b, "layer_output_norm.bias", H, 0);
#undef W
    }
    if (load_head(m, err, errlen)) goto fail;
    in->n_positions = in->n_ctx;
    if (load_st_config(m, err, errlen)) goto fail;
    const char *tmodel = embd_gguf_str(g, "tokenizer.ggml.model");
    in->pair_double_sep = tmodel && !strcmp(tmodel, "t5"); /* XLM-R's SentencePiece vocabulary */
    snprintf(in->weight_type, sizeof in->weight_type, "%s", ggml_type_name(m->w.layers[0].q_w->type));
    /* GPUs multiply the file's types directly (cuBLAS, ggml's quantized kernels) */
    if (embd_device_is_gpu(&m->dev) ? upload_weights(m, err, errlen) : convert_matrices(m, err, errlen)) goto fail;
    snprintf(in->compute_type, sizeof in->compute_type, "%s", ggml_type_name(m->w.layers[0].q_w->type));
    return m;
fail:
    if (fd >= 0) close(fd);
    embd_model_free(m);
    return NULL;
}

void embd_model_free(embd_model *m) {
    if (!m) return;
    embd_tokenizer_free(m->tok);
    free(m->w.layers);
    free(m->dw.layers);
    free(m->prompt_names);
    free(m->prompt_texts);
    if (m->buf) ggml_backend_buffer_free(m->buf);
    if (m->conv_buf) ggml_backend_buffer_free(m->conv_buf);
    if (m->conv_ctx) ggml_free(m->conv_ctx);
    if (m->dev_buf) ggml_backend_buffer_free(m->dev_buf);
    if (m->dev_ctx) ggml_free(m->dev_ctx);
    if (m->map) munmap(m->map, m->map_size);
    if (m->meta) ggml_free(m->meta);
    if (m->gguf) gguf_free(m->gguf);
    free(m);
}
