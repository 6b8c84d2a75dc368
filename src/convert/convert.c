/* HF -> GGUF, following llama.cpp's conversion/bert.py (BertModel, XLMRobertaModel) and
 * conversion/base.py (prepare_tensors' type rules). One deliberate difference: for
 * BertForSequenceClassification llama.cpp drops the pooler (pooler.dense), although Hugging Face
 * computes classifier(tanh(pooler(h_cls))); here the pooler is written as "cls" and the
 * classifier as "cls.output", which is the RoBERTa head layout llama.cpp's rank pooling already
 * evaluates (cls -> tanh -> cls.output), so the scores match Hugging Face in both engines. */
#include "convert/convert.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert/convert_impl.h"
#include "convert/hf.h"
#include "convert/safetensors.h"
#include "gguf.h"
#include "util/sys.h"

enum { POOL_RANK = 4 };           /* llama.cpp enum llama_pooling_type */


typedef struct {
    const embd_hf_config *c;
    int pos_offset; /* XLM-R: padding_idx + 1 */
    int n_ctx;
} map_ctx;

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* HF tensor name -> GGUF name. Returns 1 mapped, 0 dropped (not used for inference), -1 unknown. */
static int map_name(const map_ctx *m, const char *hf, char *out, size_t outlen) {
    char n[256];
    snprintf(n, sizeof n, "%s", hf);
    if (m->c->family == EMBD_HF_XLMR && !strncmp(n, "roberta.", 8)) memmove(n, n + 8, strlen(n) - 7);
    if (!strncmp(n, "bert.", 5)) memmove(n, n + 5, strlen(n) - 4);
    size_t l = strlen(n);
    if (ends_with(n, ".gamma")) snprintf(n + l - 6, sizeof n - (l - 6), ".weight");
    else if (ends_with(n, ".beta")) snprintf(n + l - 5, sizeof n - (l - 5), ".bias");

    if (!strcmp(n, "embeddings.position_ids") || !strncmp(n, "cls.predictions", 15) ||
        !strncmp(n, "cls.seq_relationship", 20) || !strncmp(n, "lm_head.", 8) ||
        ends_with(n, ".attention.masked_bias") || ends_with(n, ".attention.bias") ||
        ends_with(n, ".rotary_emb.inv_freq"))
        return 0;
    const char *suffix = ends_with(n, ".weight") ? ".weight" : ends_with(n, ".bias") ? ".bias" : NULL;
    if (!suffix) return -1;
    n[strlen(n) - strlen(suffix)] = 0;
    const bool bert_cls = m->c->classifier && m->c->family == EMBD_HF_BERT;
    if (!strcmp(n, "pooler.dense")) {
        if (!bert_cls) return 0; /* embedding models: the pooler is not part of the sentence vector */
        snprintf(out, outlen, "cls%s", suffix);
        return 1;
    }
    static const struct { const char *hf, *gguf; } FIXED[] = {
        {"embeddings.word_embeddings", "token_embd"},
        {"embeddings.position_embeddings", "position_embd"},
        {"embeddings.token_type_embeddings", "token_types"},
        {"embeddings.LayerNorm", "token_embd_norm"},
        {"classifier.dense", "cls"},
        {"classifier.out_proj", "cls.output"},
    };
    for (size_t i = 0; i < sizeof FIXED / sizeof FIXED[0]; i++)
        if (!strcmp(n, FIXED[i].hf)) {
            if (!m->c->classifier && !strncmp(n, "classifier", 10)) return -1;
            snprintf(out, outlen, "%s%s", FIXED[i].gguf, suffix);
            return 1;
        }
    if (!strcmp(n, "classifier") && bert_cls) { /* BERT's single linear classifier */
        snprintf(out, outlen, "cls.output%s", suffix);
        return 1;
    }
    static const struct { const char *hf, *gguf; } LAYER[] = {
        {"attention.self.query", "attn_q"},
        {"attention.self.key", "attn_k"},
        {"attention.self.value", "attn_v"},
        {"attention.output.dense", "attn_output"},
        {"attention.output.LayerNorm", "attn_output_norm"},
        {"intermediate.dense", "ffn_up"},
        {"output.dense", "ffn_down"},
        {"output.LayerNorm", "layer_output_norm"},
    };
    int bid, pos = 0;
    if (sscanf(n, "encoder.layer.%d.%n", &bid, &pos) == 1 && pos > 0 && bid >= 0 && bid < m->c->n_layer) {
        for (size_t i = 0; i < sizeof LAYER / sizeof LAYER[0]; i++)
            if (!strcmp(n + pos, LAYER[i].hf)) {
                snprintf(out, outlen, "blk.%d.%s%s", bid, LAYER[i].gguf, suffix);
                return 1;
            }
    }
    return -1;
}

/* The shape (HF order: rows, cols) each tensor must have; 0 cols for vectors. */
static int expected_shape(const map_ctx *m, const char *g, size_t n_vocab, int64_t *rows, int64_t *cols) {
    const embd_hf_config *c = m->c;
    const int64_t H = c->n_embd, F = c->n_ff;
    const bool w = ends_with(g, ".weight");
    *cols = 0;
    if (!strcmp(g, "token_embd.weight")) *rows = (int64_t)n_vocab, *cols = H;
    else if (!strcmp(g, "position_embd.weight")) *rows = c->max_pos, *cols = H;
    else if (!strcmp(g, "token_types.weight")) *rows = c->type_vocab, *cols = H;
    else if (!strncmp(g, "cls.output.", 11)) *rows = c->n_labels, *cols = w ? H : 0;
    else if (ends_with(g, "ffn_up.weight")) *rows = F, *cols = H;
    else if (ends_with(g, "ffn_up.bias")) *rows = F;
    else if (ends_with(g, "ffn_down.weight")) *rows = H, *cols = F;
    else *rows = H, *cols = (w && !strstr(g, "norm")) ? H : 0;
    return 0;
}

/* prepare_tensors' rules: vectors, norms, positions and token types stay F32, so do biases; the
 * matrices take the requested type, F16 where a row does not fill whole quantisation blocks. */
static enum ggml_type pick_type(const char *g, int n_dims, int64_t ne0, enum ggml_type want) {
    if (n_dims <= 1 || ends_with(g, "_norm.weight") || !strcmp(g, "position_embd.weight") ||
        !strcmp(g, "token_types.weight") || !ends_with(g, ".weight"))
        return GGML_TYPE_F32;
    if (ne0 % ggml_blck_size(want) != 0) return GGML_TYPE_F16;
    return want;
}

static const char *REQUIRED_PER_LAYER[] = {
    "attn_q.weight",  "attn_q.bias",      "attn_k.weight",           "attn_k.bias",
    "attn_v.weight",  "attn_v.bias",      "attn_output.weight",      "attn_output.bias",
    "attn_output_norm.weight", "attn_output_norm.bias", "ffn_up.weight", "ffn_up.bias",
    "ffn_down.weight", "ffn_down.bias",   "layer_output_norm.weight", "layer_output_norm.bias",
};

static const out_tensor *find_out(const out_tensor *t, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(t[i].name, name)) return &t[i];
    return NULL;
}

static int plan_tensors(const map_ctx *m, const embd_st_set *st, size_t n_vocab, enum ggml_type want,
                        out_tensor **out, size_t *n_out, char *err, size_t errlen) {
    size_t n = embd_st_count(st), k = 0;
    out_tensor *t = calloc(n + 1, sizeof *t);
    if (!t) return embd_fail(err, errlen, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const embd_st_tensor *s = embd_st_at(st, i);
        out_tensor *o = &t[k];
        int r = map_name(m, s->name, o->name, sizeof o->name);
        if (r == 0) continue;
        if (r < 0) {
            free(t);
            return embd_fail(err, errlen, "unexpected tensor '%s' for %s (cannot map it to a GGUF name)", s->name,
                             m->c->arch);
        }
        if (find_out(t, k, o->name)) {
            free(t);
            return embd_fail(err, errlen, "two weights map to '%s' (second: '%s')", o->name, s->name);
        }
        if (s->dtype == EMBD_ST_OTHER) {
            free(t);
            return embd_fail(err, errlen, "tensor '%s' has dtype %s (supported: F32, F16, BF16)", s->name,
                             s->dtype_name);
        }
        int64_t rows, cols;
        expected_shape(m, o->name, n_vocab, &rows, &cols);
        bool ok = cols ? (s->n_dims == 2 && s->shape[0] == rows && s->shape[1] == cols)
                       : (s->n_dims == 1 && s->shape[0] == rows);
        if (!ok) {
            char got[96] = "", exp[48];
            for (int d = 0; d < s->n_dims; d++)
                snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? "x" : "", (long long)s->shape[d]);
            if (cols) snprintf(exp, sizeof exp, "%lldx%lld", (long long)rows, (long long)cols);
            else snprintf(exp, sizeof exp, "%lld", (long long)rows);
            free(t);
            return embd_fail(err, errlen, "tensor '%s' has shape [%s], config.json and the vocabulary imply [%s]",
                             s->name, got, exp);
        }
        o->src = s;
        o->n_dims = s->n_dims;
        o->ne[0] = cols ? cols : rows;
        o->ne[1] = cols ? rows : 1;
        if (!strcmp(o->name, "position_embd.weight")) {
            o->row_off = m->pos_offset;
            o->ne[1] -= m->pos_offset;
        }
        o->type = pick_type(o->name, o->n_dims, o->ne[0], want);
        k++;
    }
    /* everything llama.cpp's (and embd's) BERT loader requires */
    const char *req[] = {"token_embd.weight", "position_embd.weight", "token_embd_norm.weight", "token_embd_norm.bias"};
    for (size_t i = 0; i < sizeof req / sizeof req[0]; i++)
        if (!find_out(t, k, req[i])) {
            free(t);
            return embd_fail(err, errlen, "weights lack the tensor that becomes '%s'", req[i]);
        }
    for (int il = 0; il < m->c->n_layer; il++)
        for (size_t i = 0; i < sizeof REQUIRED_PER_LAYER / sizeof REQUIRED_PER_LAYER[0]; i++) {
            char nm[96];
            snprintf(nm, sizeof nm, "blk.%d.%s", il, REQUIRED_PER_LAYER[i]);
            if (!find_out(t, k, nm)) {
                free(t);
                return embd_fail(err, errlen, "weights lack the tensor that becomes '%s'", nm);
            }
        }
    if (m->c->classifier && !find_out(t, k, "cls.output.weight")) {
        free(t);
        return embd_fail(err, errlen, "%s weights lack the classifier (classifier.weight / classifier.out_proj.weight)",
                         m->c->arch);
    }
    *out = t;
    *n_out = k;
    return 0;
}

/* ---- metadata ----------------------------------------------------------------------------- */

static void set_metadata(struct gguf_context *g, const map_ctx *m, const embd_hf_vocab *v, const embd_sbert_config *sb,
                         const char *name, enum ggml_type want) {
    const embd_hf_config *c = m->c;
    gguf_set_val_str(g, "general.architecture", "bert");
    gguf_set_val_str(g, "general.type", "model");
    gguf_set_val_str(g, "general.name", name);
    gguf_set_val_u32(g, "bert.block_count", (uint32_t)c->n_layer);
    gguf_set_val_u32(g, "bert.context_length", (uint32_t)m->n_ctx);
    gguf_set_val_u32(g, "bert.embedding_length", (uint32_t)c->n_embd);
    gguf_set_val_u32(g, "bert.feed_forward_length", (uint32_t)c->n_ff);
    gguf_set_val_u32(g, "bert.attention.head_count", (uint32_t)c->n_head);
    gguf_set_val_f32(g, "bert.attention.layer_norm_epsilon", c->eps);
    gguf_set_val_u32(g, "general.file_type",
                     want == GGML_TYPE_F32 ? FILE_TYPE_F32 : want == GGML_TYPE_F16 ? FILE_TYPE_F16 : FILE_TYPE_Q8_0);
    gguf_set_val_bool(g, "bert.attention.causal", false);
    if (c->classifier)
        gguf_set_val_u32(g, "bert.pooling_type", POOL_RANK);
    else if (sb->pooling >= 0)
        gguf_set_val_u32(g, "bert.pooling_type", (uint32_t)sb->pooling);
    if (c->classifier)
        gguf_set_arr_str(g, "bert.classifier.output_labels", (const char **)c->labels, (size_t)c->n_labels);
    gguf_set_val_u32(g, "general.quantization_version", GGML_QUANT_VERSION_WRITTEN);

    gguf_set_val_str(g, "tokenizer.ggml.model", v->model);
    gguf_set_val_str(g, "tokenizer.ggml.pre", "default");
    gguf_set_arr_str(g, "tokenizer.ggml.tokens", (const char **)v->tokens, v->n);
    if (v->scores) gguf_set_arr_data(g, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, v->scores, v->n);
    gguf_set_arr_data(g, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, v->types, v->n);
    if (c->family == EMBD_HF_XLMR) gguf_set_val_bool(g, "tokenizer.ggml.add_space_prefix", v->add_space_prefix);
    gguf_set_val_u32(g, "tokenizer.ggml.token_type_count", (uint32_t)c->type_vocab);
    if (c->family == EMBD_HF_XLMR) {
        gguf_set_val_bool(g, "tokenizer.ggml.remove_extra_whitespaces", v->remove_extra_ws);
        if (v->charsmap_len)
            gguf_set_arr_data(g, "tokenizer.ggml.precompiled_charsmap", GGUF_TYPE_UINT8, v->charsmap, v->charsmap_len);
    }
    static const char *const KEY[EMBD_SP_N] = {"bos", "eos", "unknown", "seperator", "padding", "cls", "mask"};
    for (int k = 0; k < EMBD_SP_N; k++) {
        if (v->special[k] < 0) continue;
        char key[64];
        snprintf(key, sizeof key, "tokenizer.ggml.%s_token_id", KEY[k]); /* "seperator": llama.cpp's spelling */
        gguf_set_val_u32(g, key, (uint32_t)v->special[k]);
    }
    if (v->add_bos >= 0) gguf_set_val_bool(g, "tokenizer.ggml.add_bos_token", v->add_bos);
    if (v->add_eos >= 0) gguf_set_val_bool(g, "tokenizer.ggml.add_eos_token", v->add_eos);
    if (v->add_sep >= 0) gguf_set_val_bool(g, "tokenizer.ggml.add_sep_token", v->add_sep);
    if (v->lowercase >= 0) gguf_set_val_bool(g, "tokenizer.ggml.normalizer.lowercase", v->lowercase);
    if (v->strip_accents >= 0) gguf_set_val_bool(g, "tokenizer.ggml.normalizer.strip_accents", v->strip_accents);

    /* embd's own keys (sentence-transformers settings llama.cpp has no key for) */
    if (sb->max_seq_length > 0) gguf_set_val_u32(g, "embd.max_seq_length", (uint32_t)sb->max_seq_length);
    for (int i = 0; i < sb->n_prompts; i++) {
        char key[512];
        snprintf(key, sizeof key, "embd.prompts.%s", sb->prompt_names[i]);
        gguf_set_val_str(g, key, sb->prompt_texts[i]);
    }
    if (sb->default_prompt) gguf_set_val_str(g, "embd.default_prompt_name", sb->default_prompt);
}

/* ---- tensor data -------------------------------------------------------------------------- */

static void to_f32(const embd_st_tensor *s, size_t first, size_t count, float *dst, void *scratch) {
    const size_t es = s->dtype == EMBD_ST_F32 ? 4 : 2;
    const uint8_t *p = s->data + first * es;
    if (s->dtype == EMBD_ST_F32) {
        memcpy(dst, p, count * 4); /* safetensors data need not be aligned */
        return;
    }
    memcpy(scratch, p, count * 2);
    if (s->dtype == EMBD_ST_F16)
        ggml_fp16_to_fp32_row(scratch, dst, (int64_t)count);
    else
        ggml_bf16_to_fp32_row(scratch, dst, (int64_t)count);
}

static int write_all(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n ? 0 : -1; }

/* Streams one tensor: source rows -> f32 -> target type, a block of rows at a time. */
static int write_tensor(FILE *f, const out_tensor *o, size_t alignment) {
    const int64_t ne0 = o->ne[0], nrows = o->ne[1];
    int64_t chunk = (1 << 20) / ne0;
    if (chunk < 1) chunk = 1;
    if (chunk > nrows) chunk = nrows;
    const size_t row_bytes = ggml_row_size(o->type, ne0);
    float *f32 = malloc((size_t)(chunk * ne0) * sizeof *f32);
    void *scratch = malloc((size_t)(chunk * ne0) * 2 + 1);
    void *dst = malloc((size_t)chunk * row_bytes + 1);
    int rc = (f32 && scratch && dst) ? 0 : -1;
    for (int64_t r = 0; !rc && r < nrows; r += chunk) {
        const int64_t nr = r + chunk <= nrows ? chunk : nrows - r;
        const size_t count = (size_t)(nr * ne0);
        to_f32(o->src, (size_t)((r + o->row_off) * ne0), count, f32, scratch);
        const void *out = f32;
        if (o->type == GGML_TYPE_F16) {
            ggml_fp32_to_fp16_row(f32, dst, (int64_t)count);
            out = dst;
        } else if (o->type != GGML_TYPE_F32) {
            ggml_quantize_chunk(o->type, f32, dst, 0, nr, ne0, NULL);
            out = dst;
        }
        rc = write_all(f, out, (size_t)nr * row_bytes);
    }
    static const uint8_t zeros[64] = {0};
    size_t nb = (size_t)nrows * row_bytes, pad = GGML_PAD(nb, alignment) - nb;
    while (!rc && pad) {
        size_t w = pad < sizeof zeros ? pad : sizeof zeros;
        rc = write_all(f, zeros, w);
        pad -= w;
    }
    free(f32);
    free(scratch);
    free(dst);
    return rc;
}

/* The file tmp, created anew: header, metadata and tensor data, synced. */
static int write_file(struct gguf_context *g, const out_tensor *t, size_t n, const char *tmp, char *err,
                      size_t errlen) {
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return embd_fail(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        return embd_fail(err, errlen, "cannot open %s: %s", tmp, strerror(errno));
    }
    int rc = gguf_write_to_file_ptr(g, f, true) ? 0 : -1;
    const size_t alignment = gguf_get_alignment(g);
    for (size_t i = 0; !rc && i < n; i++) rc = write_tensor(f, &t[i], alignment);
    if (!rc && (fflush(f) != 0 || fsync(fileno(f)) != 0)) rc = -1;
    int saved = errno;
    if (fclose(f) != 0 && !rc) {
        rc = -1;
        saved = errno;
    }
    if (rc) return embd_fail(err, errlen, "cannot write %s: %s", tmp, strerror(saved ? saved : EIO));
    return 0;
}

int embd_convert_write_gguf(struct gguf_context *g, const out_tensor *t, size_t n, const char *path, char *err,
                            size_t errlen) {
    char tmp[4096 + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    int rc = write_file(g, t, n, tmp, err, errlen);
    if (!rc && rename(tmp, path) != 0)
        rc = embd_fail(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (rc) unlink(tmp);
    return rc;
}

int embd_convert(const embd_convert_opts *o, embd_convert_stats *stats, char *err, size_t errlen) {
    if (o->type != GGML_TYPE_F32 && o->type != GGML_TYPE_F16 && o->type != GGML_TYPE_Q8_0)
        return embd_fail(err, errlen, "output type must be f32, f16 or q8_0");
    struct stat st;
    if (stat(o->hf_dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return embd_fail(err, errlen, "%s is not a directory", o->hf_dir);
    embd_hf_config c;
    embd_sbert_config sb;
    embd_hf_vocab v;
    memset(&v, 0, sizeof v);
    embd_st_set *weights = NULL;
    out_tensor *t = NULL;
    size_t nt = 0;
    struct gguf_context *g = NULL;
    struct ggml_context *meta = NULL;
    int rc = -1;
    if (embd_hf_dir_is_clip(o->hf_dir)) return embd_convert_clip(o, stats, err, errlen); /* convert_clip.c */
    if (embd_hf_config_load(o->hf_dir, &c, err, errlen)) return -1;
    if (embd_sbert_config_load(o->hf_dir, &sb, err, errlen)) {
        embd_hf_config_free(&c);
        return -1;
    }
    if (embd_hf_vocab_load(o->hf_dir, &c, &v, err, errlen)) goto out;
    if (!(weights = embd_st_open_dir(o->hf_dir, err, errlen))) goto out;

    map_ctx m = {.c = &c, .pos_offset = 0, .n_ctx = c.max_pos};
    if (c.family == EMBD_HF_XLMR && c.pad_token_id >= 0) { /* positions start at padding_idx + 1 */
        m.pos_offset = c.pad_token_id + 1;
        m.n_ctx = c.max_pos - m.pos_offset;
    }
    if (plan_tensors(&m, weights, v.n, o->type, &t, &nt, err, errlen)) goto out;

    g = gguf_init_empty();
    struct ggml_init_params ip = {.mem_size = ggml_tensor_overhead() * (nt + 1), .mem_buffer = NULL, .no_alloc = true};
    meta = ggml_init(ip);
    if (!g || !meta) {
        embd_fail(err, errlen, "out of memory");
        goto out;
    }
    char dirbuf[4096];
    snprintf(dirbuf, sizeof dirbuf, "%s", o->hf_dir);
    size_t dl = strlen(dirbuf);
    while (dl > 1 && dirbuf[dl - 1] == '/') dirbuf[--dl] = 0;
    set_metadata(g, &m, &v, &sb, basename(dirbuf), o->type);
    size_t n_params = 0;
    for (size_t i = 0; i < nt; i++) {
        struct ggml_tensor *gt = t[i].n_dims == 1 ? ggml_new_tensor_1d(meta, t[i].type, t[i].ne[0])
                                                  : ggml_new_tensor_2d(meta, t[i].type, t[i].ne[0], t[i].ne[1]);
        ggml_set_name(gt, t[i].name);
        gguf_add_tensor(g, gt);
        n_params += (size_t)ggml_nelements(gt);
    }

    if (embd_convert_write_gguf(g, t, nt, o->out_path, err, errlen)) goto out;
    if (stats) {
        stats->n_tensors = nt;
        stats->n_params = n_params;
        stats->out_bytes = stat(o->out_path, &st) == 0 ? (size_t)st.st_size : 0;
        snprintf(stats->arch, sizeof stats->arch, "%s", c.arch);
    }
    rc = 0;
out:
    if (meta) ggml_free(meta);
    if (g) gguf_free(g);
    free(t);
    embd_st_close(weights);
    embd_hf_vocab_free(&v);
    embd_sbert_config_free(&sb);
    embd_hf_config_free(&c);
    return rc;
}
