/* Hugging Face CLIPModel directory -> one GGUF with both towers, in llama.cpp's clip naming
 * (tools/mtmd/clip-impl.h; legacy-models/convert_image_encoder_to_gguf.py writes the same layout,
 * except that it names fc1 ffn_down, which current llama.cpp converters and this one call ffn_up).
 *
 *   config.json             model_type "clip": text_config, vision_config, projection_dim (absent
 *                           fields take transformers' CLIPTextConfig / CLIPVisionConfig defaults)
 *   model.safetensors       weights (or an index and shards)
 *   preprocessor_config.json  CLIPImageProcessor settings (OpenAI CLIP's when absent)
 *   tokenizer.json          stored whole as tokenizer.huggingface.json
 *
 * Keys beyond llama.cpp's: clip.{text,vision}.hidden_act, clip.text.eos_token_id and
 * clip.text.pool_argmax (HF CLIPTextTransformer pools at argmax(input_ids) when a legacy config has
 * eos_token_id 2, else at the first eos_token_id), clip.logit_scale, embd.image.* (shortest_edge,
 * crop_height, crop_width, rescale_factor, resample). */
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <errno.h>

#include "convert/convert_impl.h"
#include "gguf.h"
#include "util/sys.h"

typedef struct {
    int n_layer, width, n_head, n_ff, n_pos;
    float eps;
    char act[32];
} tower_cfg;

typedef struct {
    tower_cfg t, v;
    int vocab, image_size, patch, proj, eos_id;
    bool pool_argmax;
    char name[256];
} clip_cfg;

typedef struct {
    int shortest_edge, crop_h, crop_w, resample;
    float rescale, mean[3], std[3];
} prep_cfg;

bool embd_hf_dir_is_clip(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_t *j = json_load_file(path, 0, NULL);
    const char *mt = json_string_value(json_object_get(j, "model_type"));
    bool yes = mt && !strcmp(mt, "clip");
    json_decref(j);
    return yes;
}

static json_t *load_json(const char *dir, const char *name, bool optional, char *err, size_t errlen) {
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (stat(path, &st) != 0) {
        if (!optional) embd_fail(err, errlen, "missing %s in %s", name, dir);
        return NULL;
    }
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) embd_fail(err, errlen, "%s is not valid JSON (line %d: %s)", name, je.line, je.text);
    else if (!json_is_object(j)) {
        embd_fail(err, errlen, "%s is not a JSON object", name);
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* An integer field within [lo, hi], or def when absent. */
static int get_int(const json_t *o, const char *sect, const char *key, int def, int lo, int hi, int *out, char *err,
                   size_t errlen) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return embd_fail(err, errlen, "%s%s is not an integer in %d..%d", sect, key, lo, hi);
    *out = (int)json_integer_value(v);
    return 0;
}

static int read_tower(const json_t *o, const char *sect, tower_cfg *t, const tower_cfg *def, char *err, size_t errlen) {
    *t = *def;
    if (o && !json_is_object(o)) return embd_fail(err, errlen, "config.json: %s is not an object", sect);
    char s[64];
    snprintf(s, sizeof s, "config.json: %s.", sect);
    if (get_int(o, s, "num_hidden_layers", def->n_layer, 1, 1024, &t->n_layer, err, errlen) ||
        get_int(o, s, "hidden_size", def->width, 1, 1 << 16, &t->width, err, errlen) ||
        get_int(o, s, "num_attention_heads", def->n_head, 1, 1024, &t->n_head, err, errlen) ||
        get_int(o, s, "intermediate_size", def->n_ff, 1, 1 << 18, &t->n_ff, err, errlen))
        return -1;
    if (t->width % t->n_head)
        return embd_fail(err, errlen, "config.json: %s.hidden_size %d is not a multiple of num_attention_heads %d", sect,
                         t->width, t->n_head);
    json_t *eps = json_object_get(o, "layer_norm_eps");
    if (eps && !(json_is_number(eps) && json_number_value(eps) > 0 && json_number_value(eps) < 1))
        return embd_fail(err, errlen, "config.json: %s.layer_norm_eps is not a number in (0, 1)", sect);
    if (eps) t->eps = (float)json_number_value(eps);
    const char *act = json_string_value(json_object_get(o, "hidden_act"));
    if (act) {
        if (strcmp(act, "quick_gelu") && strcmp(act, "gelu") && strcmp(act, "gelu_new") && strcmp(act, "gelu_pytorch_tanh"))
            return embd_fail(err, errlen,
                             "config.json: %s.hidden_act '%s' is not supported (quick_gelu, gelu, gelu_new, "
                             "gelu_pytorch_tanh)", sect, act);
        snprintf(t->act, sizeof t->act, "%s", act);
    }
    return 0;
}

static int read_config(const char *dir, clip_cfg *c, char *err, size_t errlen) {
    json_t *j = load_json(dir, "config.json", false, err, errlen);
    if (!j) return -1;
    /* transformers' defaults: openai/clip-vit-base-patch32 */
    static const tower_cfg TDEF = {12, 512, 8, 2048, 77, 1e-5f, "quick_gelu"};
    static const tower_cfg VDEF = {12, 768, 12, 3072, 0, 1e-5f, "quick_gelu"};
    json_t *tc = json_object_get(j, "text_config"), *vc = json_object_get(j, "vision_config");
    int rc = -1, channels = 3;
    if (read_tower(tc, "text_config", &c->t, &TDEF, err, errlen) || read_tower(vc, "vision_config", &c->v, &VDEF, err, errlen) ||
        get_int(tc, "config.json: text_config.", "max_position_embeddings", 77, 2, 1 << 16, &c->t.n_pos, err, errlen) ||
        get_int(tc, "config.json: text_config.", "vocab_size", 49408, 2, 1 << 24, &c->vocab, err, errlen) ||
        get_int(tc, "config.json: text_config.", "eos_token_id", 49407, 0, 1 << 24, &c->eos_id, err, errlen) ||
        get_int(vc, "config.json: vision_config.", "image_size", 224, 1, 4096, &c->image_size, err, errlen) ||
        get_int(vc, "config.json: vision_config.", "patch_size", 32, 1, 4096, &c->patch, err, errlen) ||
        get_int(vc, "config.json: vision_config.", "num_channels", 3, 1, 64, &channels, err, errlen) ||
        get_int(j, "config.json: ", "projection_dim", 512, 1, 1 << 16, &c->proj, err, errlen))
        goto out;
    if (channels != 3) {
        embd_fail(err, errlen, "config.json: vision_config.num_channels %d is not supported (RGB: 3)", channels);
        goto out;
    }
    if (c->image_size % c->patch) {
        embd_fail(err, errlen, "config.json: image_size %d is not a multiple of patch_size %d", c->image_size, c->patch);
        goto out;
    }
    c->v.n_pos = (c->image_size / c->patch) * (c->image_size / c->patch) + 1;
    c->pool_argmax = c->eos_id == 2; /* HF: legacy configs pool at the largest id (<|endoftext|>) */
    const char *np = json_string_value(json_object_get(j, "_name_or_path"));
    if (np && *np) {
        snprintf(c->name, sizeof c->name, "%s", np);
    } else {
        char d[4096];
        snprintf(d, sizeof d, "%s", dir);
        for (size_t l = strlen(d); l > 1 && d[l - 1] == '/'; l--) d[l - 1] = 0;
        snprintf(c->name, sizeof c->name, "%s", basename(d));
    }
    rc = 0;
out:
    json_decref(j);
    return rc;
}

/* size / crop_size: an int (older processors) or an object */
static int size_field(const json_t *p, const char *key, const char *sub, int def, int *out, char *err, size_t errlen) {
    json_t *v = json_object_get(p, key);
    if (json_is_object(v)) v = json_object_get(v, sub);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 8192)
        return embd_fail(err, errlen, "preprocessor_config.json: %s%s%s is not a size in 1..8192", key, sub ? "." : "",
                         sub ? sub : "");
    *out = (int)json_integer_value(v);
    return 0;
}

static int read_f32x3(const json_t *p, const char *key, float out[3], char *err, size_t errlen) {
    json_t *a = json_object_get(p, key);
    if (!a) return 0;
    if (!json_is_array(a) || json_array_size(a) != 3)
        return embd_fail(err, errlen, "preprocessor_config.json: %s is not a list of 3 numbers", key);
    for (int k = 0; k < 3; k++) {
        if (!json_is_number(json_array_get(a, k)))
            return embd_fail(err, errlen, "preprocessor_config.json: %s is not a list of 3 numbers", key);
        out[k] = (float)json_number_value(json_array_get(a, k));
    }
    return 0;
}

static bool flag(const json_t *p, const char *key) {
    json_t *v = json_object_get(p, key);
    return !v || json_is_true(v); /* CLIPImageProcessor: every step on by default */
}

static int read_preprocessor(const char *dir, const clip_cfg *c, prep_cfg *pp, char *err, size_t errlen) {
    static const float MEAN[3] = {0.48145466f, 0.4578275f, 0.40821073f}, STD[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    *pp = (prep_cfg){.shortest_edge = c->image_size, .crop_h = c->image_size, .crop_w = c->image_size,
                     .resample = 3, .rescale = 1.0f / 255.0f};
    memcpy(pp->mean, MEAN, sizeof MEAN);
    memcpy(pp->std, STD, sizeof STD);
    char perr[512] = "";
    json_t *p = load_json(dir, "preprocessor_config.json", true, perr, sizeof perr);
    if (!p) return perr[0] ? embd_fail(err, errlen, "%s", perr) : 0;
    int rc = -1;
    json_t *size = json_object_get(p, "size");
    if (json_is_object(size) && !json_object_get(size, "shortest_edge")) {
        embd_fail(err, errlen, "preprocessor_config.json: size without shortest_edge is not CLIP's resize");
        goto out;
    }
    json_t *rs = json_object_get(p, "rescale_factor");
    if (size_field(p, "size", "shortest_edge", pp->shortest_edge, &pp->shortest_edge, err, errlen) ||
        size_field(p, "crop_size", "height", pp->crop_h, &pp->crop_h, err, errlen) ||
        size_field(p, "crop_size", "width", pp->crop_w, &pp->crop_w, err, errlen) ||
        get_int(p, "preprocessor_config.json: ", "resample", 3, 0, 5, &pp->resample, err, errlen) ||
        read_f32x3(p, "image_mean", pp->mean, err, errlen) || read_f32x3(p, "image_std", pp->std, err, errlen))
        goto out;
    if (rs && !(json_is_number(rs) && json_number_value(rs) > 0)) {
        embd_fail(err, errlen, "preprocessor_config.json: rescale_factor is not a positive number");
        goto out;
    }
    if (rs) pp->rescale = (float)json_number_value(rs);
    if (pp->resample != 3) { /* the image code implements PIL's bicubic */
        embd_fail(err, errlen, "preprocessor_config.json: resample %d is not supported (3: bicubic)", pp->resample);
        goto out;
    }
    if (!flag(p, "do_resize")) pp->shortest_edge = 0;
    if (!flag(p, "do_center_crop")) pp->crop_h = pp->crop_w = 0;
    if (!flag(p, "do_rescale")) pp->rescale = 1.0f;
    if (!flag(p, "do_normalize")) {
        for (int k = 0; k < 3; k++) pp->mean[k] = 0.0f, pp->std[k] = 1.0f;
    }
    for (int k = 0; k < 3; k++)
        if (!(pp->std[k] > 0)) {
            embd_fail(err, errlen, "preprocessor_config.json: image_std has a value <= 0");
            goto out;
        }
    if (pp->crop_h != c->image_size || pp->crop_w != c->image_size) {
        embd_fail(err, errlen, "preprocessor_config.json: crop %dx%d does not give the vision tower's %dx%d input",
                  pp->crop_h, pp->crop_w, c->image_size, c->image_size);
        goto out;
    }
    rc = 0;
out:
    json_decref(p);
    return rc;
}

/* tokenizer.json, whole; its ids must fit the text tower's embedding table. */
static char *read_tokenizer(const char *dir, const clip_cfg *c, char *err, size_t errlen) {
    char path[4096], rerr[512];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    size_t len;
    char *txt = embd_read_file(path, (size_t)256 << 20, &len, rerr, sizeof rerr);
    if (!txt) {
        embd_fail(err, errlen, "the text tower needs tokenizer.json: %s", rerr);
        return NULL;
    }
    json_error_t je;
    json_t *j = strlen(txt) == len ? json_loadb(txt, len, 0, &je) : NULL;
    json_t *vocab = json_object_get(json_object_get(j, "model"), "vocab");
    long long max_id = -1;
    const char *k;
    json_t *v;
    json_object_foreach(vocab, k, v) if (json_integer_value(v) > max_id) max_id = json_integer_value(v);
    size_t i;
    json_array_foreach(json_object_get(j, "added_tokens"), i, v) {
        long long id = json_integer_value(json_object_get(v, "id"));
        if (id > max_id) max_id = id;
    }
    const char *why = !j ? "is not valid JSON" : !json_is_object(vocab) ? "has no model.vocab object" : NULL;
    json_decref(j);
    if (why) {
        embd_fail(err, errlen, "tokenizer.json %s", why);
    } else if (max_id >= c->vocab) {
        embd_fail(err, errlen, "tokenizer.json has token ids up to %lld, but the text tower's vocab_size is %d", max_id,
                  c->vocab);
        why = "";
    }
    if (why) {
        free(txt);
        return NULL;
    }
    return txt;
}

/* ---- tensors ----------------------------------------------------------------------------- */

enum { K_MATRIX, K_F32, K_KERNEL };

typedef struct {
    out_tensor o;
    int n_dims;
    int64_t shape[4]; /* HF order */
    int kind;
} plan_t;

/* HF name -> GGUF name, expected shape (HF order) and kind. 1 mapped, 0 dropped, -1 unknown. */
static int map_name(const clip_cfg *c, const char *hf, plan_t *p) {
    if (!strcmp(hf, "logit_scale") || !strcmp(hf, "text_model.embeddings.position_ids") ||
        !strcmp(hf, "vision_model.embeddings.position_ids"))
        return 0;
    char *out = p->o.name;
    const size_t ol = sizeof p->o.name;
    p->kind = K_F32;
    if (!strcmp(hf, "visual_projection.weight") || !strcmp(hf, "text_projection.weight")) {
        const bool vis = hf[0] == 'v';
        snprintf(out, ol, "%s.projection.weight", vis ? "v" : "t");
        p->n_dims = 2, p->shape[0] = c->proj, p->shape[1] = vis ? c->v.width : c->t.width, p->kind = K_MATRIX;
        return 1;
    }
    const bool vis = !strncmp(hf, "vision_model.", 13);
    if (!vis && strncmp(hf, "text_model.", 11)) return -1;
    const tower_cfg *t = vis ? &c->v : &c->t;
    const char *n = hf + (vis ? 13 : 11), *pre = vis ? "v" : "t";
    const int64_t H = t->width, F = t->n_ff;
    p->n_dims = 1, p->shape[0] = H;
    static const struct { const char *hf, *gguf; int vis; } FIXED[] = {
        {"pre_layrnorm.weight", "pre_ln.weight", 1},   {"pre_layrnorm.bias", "pre_ln.bias", 1},
        {"post_layernorm.weight", "post_ln.weight", 1}, {"post_layernorm.bias", "post_ln.bias", 1},
        {"final_layer_norm.weight", "post_ln.weight", 0}, {"final_layer_norm.bias", "post_ln.bias", 0},
        {"embeddings.class_embedding", "class_embd", 1},
    };
    for (size_t i = 0; i < sizeof FIXED / sizeof FIXED[0]; i++)
        if (FIXED[i].vis == vis && !strcmp(n, FIXED[i].hf)) {
            snprintf(out, ol, "%s.%s", pre, FIXED[i].gguf);
            return 1;
        }
    if (!strcmp(n, "embeddings.position_embedding.weight")) {
        snprintf(out, ol, "%s.position_embd.weight", pre);
        p->n_dims = 2, p->shape[0] = t->n_pos, p->shape[1] = H;
        return 1;
    }
    if (!vis && !strcmp(n, "embeddings.token_embedding.weight")) {
        snprintf(out, ol, "t.token_embd.weight");
        p->n_dims = 2, p->shape[0] = c->vocab, p->shape[1] = H, p->kind = K_MATRIX;
        return 1;
    }
    if (vis && !strcmp(n, "embeddings.patch_embedding.weight")) {
        snprintf(out, ol, "v.patch_embd.weight");
        p->n_dims = 4, p->shape[0] = H, p->shape[1] = 3, p->shape[2] = c->patch, p->shape[3] = c->patch;
        p->kind = K_KERNEL;
        return 1;
    }
    static const struct { const char *hf, *gguf; int rows; } LAYER[] = {
        {"self_attn.q_proj", "attn_q", 'H'}, {"self_attn.k_proj", "attn_k", 'H'},
        {"self_attn.v_proj", "attn_v", 'H'}, {"self_attn.out_proj", "attn_out", 'H'},
        {"layer_norm1", "ln1", 'N'},         {"layer_norm2", "ln2", 'N'},
        {"mlp.fc1", "ffn_up", 'F'},          {"mlp.fc2", "ffn_down", 'D'},
    };
    int bid, pos = 0;
    if (sscanf(n, "encoder.layers.%d.%n", &bid, &pos) != 1 || pos <= 0 || bid < 0 || bid >= t->n_layer) return -1;
    n += pos;
    for (size_t i = 0; i < sizeof LAYER / sizeof LAYER[0]; i++) {
        const size_t l = strlen(LAYER[i].hf);
        if (strncmp(n, LAYER[i].hf, l) || n[l] != '.') continue;
        const char *suf = n + l + 1;
        if (strcmp(suf, "weight") && strcmp(suf, "bias")) return -1;
        snprintf(out, ol, "%s.blk.%d.%s.%s", pre, bid, LAYER[i].gguf, suf);
        const bool w = suf[0] == 'w' && LAYER[i].rows != 'N';
        p->shape[0] = LAYER[i].rows == 'F' ? F : H;
        if (w) p->n_dims = 2, p->shape[1] = LAYER[i].rows == 'D' ? F : H, p->kind = K_MATRIX;
        return 1;
    }
    return -1;
}

static enum ggml_type pick_type(const plan_t *p, enum ggml_type want) {
    if (p->kind == K_F32) return GGML_TYPE_F32;
    if (p->kind == K_KERNEL) return want == GGML_TYPE_F32 ? GGML_TYPE_F32 : GGML_TYPE_F16; /* ggml's patch matmul */
    return p->shape[1] % ggml_blck_size(want) ? GGML_TYPE_F16 : want;
}

static const plan_t *find_plan(const plan_t *t, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(t[i].o.name, name)) return &t[i];
    return NULL;
}

static int require(const plan_t *t, size_t n, const char *name, char *err, size_t errlen) {
    return find_plan(t, n, name) ? 0 : embd_fail(err, errlen, "weights lack the tensor that becomes '%s'", name);
}

static int check_complete(const clip_cfg *c, const plan_t *t, size_t n, char *err, size_t errlen) {
    static const char *FIXED[] = {"t.token_embd.weight", "t.position_embd.weight", "t.post_ln.weight", "t.post_ln.bias",
                                  "t.projection.weight", "v.patch_embd.weight", "v.class_embd", "v.position_embd.weight",
                                  "v.pre_ln.weight", "v.pre_ln.bias", "v.post_ln.weight", "v.post_ln.bias",
                                  "v.projection.weight"};
    static const char *PER_LAYER[] = {"attn_q", "attn_k", "attn_v", "attn_out", "ln1", "ln2", "ffn_up", "ffn_down"};
    for (size_t i = 0; i < sizeof FIXED / sizeof FIXED[0]; i++)
        if (require(t, n, FIXED[i], err, errlen)) return -1;
    for (int tw = 0; tw < 2; tw++)
        for (int il = 0; il < (tw ? c->v.n_layer : c->t.n_layer); il++)
            for (size_t i = 0; i < sizeof PER_LAYER / sizeof PER_LAYER[0]; i++)
                for (int b = 0; b < 2; b++) {
                    char nm[96];
                    snprintf(nm, sizeof nm, "%s.blk.%d.%s.%s", tw ? "v" : "t", il, PER_LAYER[i], b ? "bias" : "weight");
                    if (require(t, n, nm, err, errlen)) return -1;
                }
    return 0;
}

static int plan_tensors(const clip_cfg *c, const embd_st_set *st, enum ggml_type want, plan_t **out, size_t *n_out,
                        float *logit_scale, char *err, size_t errlen) {
    const size_t n = embd_st_count(st);
    size_t k = 0;
    plan_t *t = calloc(n + 1, sizeof *t);
    if (!t) return embd_fail(err, errlen, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const embd_st_tensor *s = embd_st_at(st, i);
        plan_t *p = &t[k];
        if (!strcmp(s->name, "logit_scale") && s->dtype == EMBD_ST_F32 && s->nbytes == 4) memcpy(logit_scale, s->data, 4);
        const int r = map_name(c, s->name, p);
        if (r == 0) continue;
        if (r < 0) {
            free(t);
            return embd_fail(err, errlen, "unexpected tensor '%s' for CLIPModel (cannot map it to a GGUF name)", s->name);
        }
        if (find_plan(t, k, p->o.name)) {
            free(t);
            return embd_fail(err, errlen, "two weights map to '%s' (second: '%s')", p->o.name, s->name);
        }
        if (s->dtype == EMBD_ST_OTHER) {
            free(t);
            return embd_fail(err, errlen, "tensor '%s' has dtype %s (supported: F32, F16, BF16)", s->name, s->dtype_name);
        }
        bool ok = s->n_dims == p->n_dims;
        for (int d = 0; ok && d < p->n_dims; d++) ok = s->shape[d] == p->shape[d];
        if (!ok) {
            char got[96] = "", exp[96] = "";
            for (int d = 0; d < s->n_dims; d++)
                snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? "x" : "", (long long)s->shape[d]);
            for (int d = 0; d < p->n_dims; d++)
                snprintf(exp + strlen(exp), sizeof exp - strlen(exp), "%s%lld", d ? "x" : "", (long long)p->shape[d]);
            free(t);
            return embd_fail(err, errlen, "tensor '%s' has shape [%s], config.json implies [%s]", s->name, got, exp);
        }
        p->o.src = s;
        p->o.n_dims = p->n_dims;
        p->o.ne[0] = p->shape[p->n_dims - 1]; /* written as rows of the innermost dimension */
        p->o.ne[1] = 1;
        for (int d = 0; d < p->n_dims - 1; d++) p->o.ne[1] *= p->shape[d];
        p->o.type = pick_type(p, want);
        k++;
    }
    if (check_complete(c, t, k, err, errlen)) {
        free(t);
        return -1;
    }
    *out = t;
    *n_out = k;
    return 0;
}

/* ---- metadata ---------------------------------------------------------------------------- */

static void set_tower(struct gguf_context *g, const char *tw, const tower_cfg *t, int proj) {
    char key[96];
#define U32(suffix, val) (snprintf(key, sizeof key, "clip.%s.%s", tw, suffix), gguf_set_val_u32(g, key, (uint32_t)(val)))
    U32("embedding_length", t->width);
    U32("feed_forward_length", t->n_ff);
    U32("block_count", t->n_layer);
    U32("attention.head_count", t->n_head);
    U32("projection_dim", proj);
#undef U32
    snprintf(key, sizeof key, "clip.%s.attention.layer_norm_epsilon", tw);
    gguf_set_val_f32(g, key, t->eps);
    snprintf(key, sizeof key, "clip.%s.hidden_act", tw);
    gguf_set_val_str(g, key, t->act);
}

static void set_metadata(struct gguf_context *g, const clip_cfg *c, const prep_cfg *pp, const char *tok_json,
                         float logit_scale, enum ggml_type want) {
    gguf_set_val_str(g, "general.architecture", "clip");
    gguf_set_val_str(g, "general.type", "model");
    gguf_set_val_str(g, "general.name", c->name);
    gguf_set_val_str(g, "general.description", "two-tower CLIP model");
    gguf_set_val_u32(g, "general.file_type",
                     want == GGML_TYPE_F32 ? FILE_TYPE_F32 : want == GGML_TYPE_F16 ? FILE_TYPE_F16 : FILE_TYPE_Q8_0);
    gguf_set_val_u32(g, "general.quantization_version", GGML_QUANT_VERSION_WRITTEN);
    gguf_set_val_bool(g, "clip.has_text_encoder", true);
    gguf_set_val_bool(g, "clip.has_vision_encoder", true);
    gguf_set_val_bool(g, "clip.has_llava_projector", false);
    gguf_set_val_bool(g, "clip.use_gelu", !strcmp(c->v.act, "gelu"));
    if (isfinite(logit_scale)) gguf_set_val_f32(g, "clip.logit_scale", logit_scale);

    set_tower(g, "vision", &c->v, c->proj);
    gguf_set_val_u32(g, "clip.vision.image_size", (uint32_t)c->image_size);
    gguf_set_val_u32(g, "clip.vision.patch_size", (uint32_t)c->patch);
    gguf_set_arr_data(g, "clip.vision.image_mean", GGUF_TYPE_FLOAT32, pp->mean, 3);
    gguf_set_arr_data(g, "clip.vision.image_std", GGUF_TYPE_FLOAT32, pp->std, 3);
    gguf_set_val_u32(g, "embd.image.shortest_edge", (uint32_t)pp->shortest_edge);
    gguf_set_val_u32(g, "embd.image.crop_height", (uint32_t)pp->crop_h);
    gguf_set_val_u32(g, "embd.image.crop_width", (uint32_t)pp->crop_w);
    gguf_set_val_f32(g, "embd.image.rescale_factor", pp->rescale);
    gguf_set_val_u32(g, "embd.image.resample", (uint32_t)pp->resample);

    set_tower(g, "text", &c->t, c->proj);
    gguf_set_val_u32(g, "clip.text.context_length", (uint32_t)c->t.n_pos);
    gguf_set_val_u32(g, "clip.text.eos_token_id", (uint32_t)c->eos_id);
    gguf_set_val_bool(g, "clip.text.pool_argmax", c->pool_argmax);
    gguf_set_val_str(g, "tokenizer.huggingface.json", tok_json);
}

int embd_convert_clip(const embd_convert_opts *o, embd_convert_stats *stats, char *err, size_t errlen) {
    clip_cfg c;
    prep_cfg pp;
    memset(&c, 0, sizeof c);
    if (read_config(o->hf_dir, &c, err, errlen) || read_preprocessor(o->hf_dir, &c, &pp, err, errlen)) return -1;
    char *tok = read_tokenizer(o->hf_dir, &c, err, errlen);
    if (!tok) return -1;
    embd_st_set *weights = NULL;
    plan_t *plan = NULL;
    out_tensor *ot = NULL;
    struct gguf_context *g = NULL;
    struct ggml_context *meta = NULL;
    size_t n = 0, n_params = 0;
    float logit_scale = NAN;
    int rc = -1;
    if (!(weights = embd_st_open_dir(o->hf_dir, err, errlen))) goto out;
    if (plan_tensors(&c, weights, o->type, &plan, &n, &logit_scale, err, errlen)) goto out;
    g = gguf_init_empty();
    struct ggml_init_params ip = {.mem_size = ggml_tensor_overhead() * (n + 1), .mem_buffer = NULL, .no_alloc = true};
    meta = ggml_init(ip);
    ot = calloc(n + 1, sizeof *ot);
    if (!g || !meta || !ot) {
        embd_fail(err, errlen, "out of memory");
        goto out;
    }
    set_metadata(g, &c, &pp, tok, logit_scale, o->type);
    for (size_t i = 0; i < n; i++) {
        int64_t ne[4] = {1, 1, 1, 1}; /* ggml order: HF's reversed */
        for (int d = 0; d < plan[i].n_dims; d++) ne[d] = plan[i].shape[plan[i].n_dims - 1 - d];
        struct ggml_tensor *gt = ggml_new_tensor(meta, plan[i].o.type, plan[i].n_dims, ne);
        ggml_set_name(gt, plan[i].o.name);
        gguf_add_tensor(g, gt);
        n_params += (size_t)ggml_nelements(gt);
        ot[i] = plan[i].o;
    }
    if (embd_convert_write_gguf(g, ot, n, o->out_path, err, errlen)) goto out;
    if (stats) {
        struct stat st;
        stats->n_tensors = n;
        stats->n_params = n_params;
        stats->out_bytes = stat(o->out_path, &st) == 0 ? (size_t)st.st_size : 0;
        snprintf(stats->arch, sizeof stats->arch, "CLIPModel");
    }
    rc = 0;
out:
    if (meta) ggml_free(meta);
    if (g) gguf_free(g);
    free(ot);
    free(plan);
    embd_st_close(weights);
    free(tok);
    return rc;
}
