/* config.json and the sentence-transformers files of a Hugging Face model directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "convert/hf.h"
#include "util/sys.h"

const char *const EMBD_SP_NAMES[EMBD_SP_N] = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"};

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Loads dir/name; a missing file gives NULL with *missing set (not an error for optional files). */
static json_t *load_json(const char *dir, const char *name, bool *missing, char *err, size_t errlen) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    *missing = !file_exists(path);
    if (*missing) return NULL;
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) embd_fail(err, errlen, "%s is not valid JSON (line %d: %s)", name, je.line, je.text);
    return j;
}

static int get_int(const json_t *o, const char *key, int def) {
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (int)json_integer_value(v) : def;
}

static const struct {
    const char *name;
    embd_hf_family family;
    bool classifier;
} ARCHS[] = {
    {"BertModel", EMBD_HF_BERT, false},
    {"BertForMaskedLM", EMBD_HF_BERT, false},
    {"BertForSequenceClassification", EMBD_HF_BERT, true},
    {"XLMRobertaModel", EMBD_HF_XLMR, false},
    {"XLMRobertaForSequenceClassification", EMBD_HF_XLMR, true},
};

void embd_hf_config_free(embd_hf_config *c) {
    for (int i = 0; i < c->n_labels; i++) free(c->labels[i]);
    free(c->labels);
    c->labels = NULL;
    c->n_labels = 0;
}

/* id2label {"0": "LABEL_0", ...} in id order; every id 0..n-1 must be present. */
static int read_labels(const json_t *id2label, embd_hf_config *c, char *err, size_t errlen) {
    size_t n = json_object_size(id2label);
    if (n == 0 || n > 65536) return embd_fail(err, errlen, "config.json: id2label is empty or too large");
    c->labels = calloc(n, sizeof *c->labels);
    if (!c->labels) return embd_fail(err, errlen, "out of memory");
    c->n_labels = (int)n;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)id2label, k, v) {
        char *end;
        long id = strtol(k, &end, 10);
        if (*end || end == k || id < 0 || (size_t)id >= n || c->labels[id] || !json_is_string(v))
            return embd_fail(err, errlen, "config.json: id2label key '%s' is not an id below %zu", k, n);
        c->labels[id] = strdup(json_string_value(v));
        if (!c->labels[id]) return embd_fail(err, errlen, "out of memory");
    }
    return 0;
}

int embd_hf_config_load(const char *dir, embd_hf_config *c, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    bool missing;
    json_t *j = load_json(dir, "config.json", &missing, err, errlen);
    if (missing) return embd_fail(err, errlen, "missing config.json in %s", dir);
    if (!j) return -1;
    int rc = -1;
    if (!json_is_object(j)) {
        embd_fail(err, errlen, "config.json is not a JSON object");
        goto out;
    }
    const char *arch = json_string_value(json_array_get(json_object_get(j, "architectures"), 0));
    const char *mtype = json_string_value(json_object_get(j, "model_type"));
    if (!arch && mtype) /* no architectures list: the base model of its type */
        arch = !strcmp(mtype, "bert") ? "BertModel" : !strcmp(mtype, "xlm-roberta") ? "XLMRobertaModel" : NULL;
    size_t ai = 0;
    while (arch && ai < sizeof ARCHS / sizeof ARCHS[0] && strcmp(ARCHS[ai].name, arch)) ai++;
    if (!arch || ai == sizeof ARCHS / sizeof ARCHS[0]) {
        embd_fail(err, errlen,
                  "unsupported architecture '%s' in config.json (supported: BertModel, BertForMaskedLM, "
                  "BertForSequenceClassification, XLMRobertaModel, XLMRobertaForSequenceClassification)",
                  arch ? arch : mtype ? mtype : "(none)");
        goto out;
    }
    snprintf(c->arch, sizeof c->arch, "%s", arch);
    c->family = ARCHS[ai].family;
    c->classifier = ARCHS[ai].classifier;

    struct { const char *key; int *dst; } req[] = {
        {"num_hidden_layers", &c->n_layer}, {"hidden_size", &c->n_embd},
        {"num_attention_heads", &c->n_head}, {"intermediate_size", &c->n_ff},
        {"max_position_embeddings", &c->max_pos}, {"vocab_size", &c->vocab_size},
    };
    for (size_t i = 0; i < sizeof req / sizeof req[0]; i++) {
        *req[i].dst = get_int(j, req[i].key, -1);
        if (*req[i].dst <= 0 || *req[i].dst > (1 << 24)) {
            embd_fail(err, errlen, "config.json: %s is missing or out of range", req[i].key);
            goto out;
        }
    }
    if (c->n_embd % c->n_head) {
        embd_fail(err, errlen, "config.json: hidden_size %d is not a multiple of num_attention_heads %d", c->n_embd,
                  c->n_head);
        goto out;
    }
    c->type_vocab = get_int(j, "type_vocab_size", 1);
    c->pad_token_id = get_int(j, "pad_token_id", -1);
    for (int k = 0; k < EMBD_SP_N; k++) {
        char key[32];
        snprintf(key, sizeof key, "%s_token_id", EMBD_SP_NAMES[k]);
        c->cfg_special[k] = get_int(j, key, -1);
    }
    json_t *eps = json_object_get(j, "layer_norm_eps");
    c->eps = json_is_number(eps) ? (float)json_number_value(eps) : 1e-12f;
    /* embd (and llama.cpp) run exact-GELU, absolute-position BERT layers; anything else would
     * convert without complaint and compute different numbers. */
    const char *act = json_string_value(json_object_get(j, "hidden_act"));
    if (act && strcmp(act, "gelu")) {
        embd_fail(err, errlen, "config.json: hidden_act '%s' is not supported (only gelu)", act);
        goto out;
    }
    const char *pet = json_string_value(json_object_get(j, "position_embedding_type"));
    if (pet && strcmp(pet, "absolute")) {
        embd_fail(err, errlen, "config.json: position_embedding_type '%s' is not supported (only absolute)", pet);
        goto out;
    }
    if (c->family == EMBD_HF_XLMR && c->pad_token_id >= 0 && c->max_pos <= c->pad_token_id + 1) {
        embd_fail(err, errlen, "config.json: max_position_embeddings %d leaves no positions after padding_idx %d",
                  c->max_pos, c->pad_token_id);
        goto out;
    }
    json_t *id2label = json_object_get(j, "id2label");
    if (c->classifier) {
        if (json_is_object(id2label)) {
            if (read_labels(id2label, c, err, errlen)) goto out;
        } else { /* transformers' default: one LABEL_i per num_labels, 2 when unset */
            int nl = get_int(j, "num_labels", 2);
            if (nl <= 0 || nl > 65536) {
                embd_fail(err, errlen, "config.json: num_labels %d out of range", nl);
                goto out;
            }
            c->labels = calloc((size_t)nl, sizeof *c->labels);
            if (!c->labels) goto oom;
            c->n_labels = nl;
            for (int i = 0; i < nl; i++) {
                char b[32];
                snprintf(b, sizeof b, "LABEL_%d", i);
                if (!(c->labels[i] = strdup(b))) goto oom;
            }
        }
    }
    rc = 0;
    goto out;
oom:
    embd_fail(err, errlen, "out of memory");
out:
    json_decref(j);
    if (rc) embd_hf_config_free(c);
    return rc;
}

/* ---- sentence-transformers ------------------------------------------------------------------- */

void embd_sbert_config_free(embd_sbert_config *s) {
    for (int i = 0; i < s->n_prompts; i++) {
        free(s->prompt_names[i]);
        free(s->prompt_texts[i]);
    }
    free(s->prompt_names);
    free(s->prompt_texts);
    free(s->default_prompt);
    memset(s, 0, sizeof *s);
    s->pooling = -1;
}

/* As llama.cpp's _try_set_pooling_type: the first module whose type ends in "Pooling". */
static int read_pooling(const char *dir, embd_sbert_config *s, char *err, size_t errlen) {
    bool missing;
    json_t *mods = load_json(dir, "modules.json", &missing, err, errlen);
    if (missing) return 0;
    if (!mods) return -1;
    const char *path = NULL;
    size_t i;
    json_t *m;
    json_array_foreach(mods, i, m) {
        const char *type = json_string_value(json_object_get(m, "type"));
        size_t tl = type ? strlen(type) : 0;
        if (tl >= 7 && !strcmp(type + tl - 7, "Pooling")) {
            path = json_string_value(json_object_get(m, "path"));
            break;
        }
    }
    int rc = 0;
    if (path) {
        char rel[1024];
        snprintf(rel, sizeof rel, "%s/config.json", path);
        json_t *p = load_json(dir, rel, &missing, err, errlen);
        if (missing) {
            rc = embd_fail(err, errlen, "modules.json names a pooling module but %s is missing", rel);
        } else if (!p) {
            rc = -1;
        } else {
            const char *mode = json_string_value(json_object_get(p, "pooling_mode"));
            if (json_is_true(json_object_get(p, "pooling_mode_mean_tokens")))
                s->pooling = 1;
            else if (json_is_true(json_object_get(p, "pooling_mode_cls_token")))
                s->pooling = 2;
            else if (json_is_true(json_object_get(p, "pooling_mode_lasttoken")))
                s->pooling = 3;
            else if (mode && !strcmp(mode, "mean"))
                s->pooling = 1;
            else if (mode && !strcmp(mode, "cls"))
                s->pooling = 2;
            else if (mode && !strcmp(mode, "lasttoken"))
                s->pooling = 3;
            else
                rc = embd_fail(err, errlen, "%s: only mean, cls and lasttoken pooling are supported", rel);
            json_decref(p);
        }
    }
    json_decref(mods);
    return rc;
}

static int read_prompts(const char *dir, embd_sbert_config *s, char *err, size_t errlen) {
    bool missing;
    json_t *j = load_json(dir, "config_sentence_transformers.json", &missing, err, errlen);
    if (missing) return 0;
    if (!j) return -1;
    int rc = 0;
    json_t *pr = json_object_get(j, "prompts");
    size_t n = json_is_object(pr) ? json_object_size(pr) : 0;
    if (n) {
        s->prompt_names = calloc(n, sizeof *s->prompt_names);
        s->prompt_texts = calloc(n, sizeof *s->prompt_texts);
        if (!s->prompt_names || !s->prompt_texts) rc = embd_fail(err, errlen, "out of memory");
        const char *k;
        json_t *v;
        json_object_foreach(pr, k, v) {
            if (rc) break;
            if (!json_is_string(v)) {
                rc = embd_fail(err, errlen, "config_sentence_transformers.json: prompt '%s' is not a string", k);
                break;
            }
            s->prompt_names[s->n_prompts] = strdup(k);
            s->prompt_texts[s->n_prompts] = strdup(json_string_value(v));
            s->n_prompts++;
            if (!s->prompt_names[s->n_prompts - 1] || !s->prompt_texts[s->n_prompts - 1])
                rc = embd_fail(err, errlen, "out of memory");
        }
    }
    const char *def = json_string_value(json_object_get(j, "default_prompt_name"));
    if (!rc && def) {
        int found = 0;
        for (int i = 0; i < s->n_prompts; i++) found |= !strcmp(s->prompt_names[i], def);
        if (!found)
            rc = embd_fail(err, errlen, "config_sentence_transformers.json: default_prompt_name '%s' is not a prompt",
                           def);
        else if (!(s->default_prompt = strdup(def)))
            rc = embd_fail(err, errlen, "out of memory");
    }
    json_decref(j);
    return rc;
}

int embd_sbert_config_load(const char *dir, embd_sbert_config *s, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    s->pooling = -1;
    bool missing;
    json_t *sb = load_json(dir, "sentence_bert_config.json", &missing, err, errlen);
    if (!missing && !sb) return -1;
    if (sb) {
        json_t *m = json_object_get(sb, "max_seq_length");
        if (json_is_integer(m) && json_integer_value(m) > 0 && json_integer_value(m) < (1 << 24))
            s->max_seq_length = (int)json_integer_value(m);
        json_decref(sb);
    }
    if (read_pooling(dir, s, err, errlen) || read_prompts(dir, s, err, errlen)) {
        embd_sbert_config_free(s);
        return -1;
    }
    return 0;
}
