/* Tokenizer files -> the GGUF vocabulary llama.cpp's converter writes (conversion/bert.py:
 * BertModel.set_vocab, XLMRobertaModel._xlmroberta_set_vocab; gguf-py vocab.py: SpecialVocab). */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "convert/hf.h"
#include "util/sys.h"

void embd_hf_vocab_free(embd_hf_vocab *v) {
    if (v->tokens)
        for (size_t i = 0; i < v->n; i++) free(v->tokens[i]);
    free(v->tokens);
    free(v->types);
    free(v->scores);
    free(v->charsmap);
    memset(v, 0, sizeof *v);
}

static int vocab_alloc(embd_hf_vocab *v, size_t n, bool scores, char *err, size_t errlen) {
    v->n = n;
    v->tokens = calloc(n, sizeof *v->tokens);
    v->types = calloc(n, sizeof *v->types);
    v->scores = scores ? calloc(n, sizeof *v->scores) : NULL;
    if (!v->tokens || !v->types || (scores && !v->scores)) return embd_fail(err, errlen, "out of memory");
    return 0;
}

/* tokenizer_config.json's <kind>_token: a string or {"content": ...} */
static const char *tc_token(const json_t *tc, const char *kind) {
    char key[32];
    snprintf(key, sizeof key, "%s_token", kind);
    json_t *e = json_object_get(tc, key);
    if (json_is_object(e)) e = json_object_get(e, "content");
    return json_string_value(e);
}

static int added_id(const json_t *tok, const char *content) {
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(tok, "added_tokens"), i, a) {
        const char *c = json_string_value(json_object_get(a, "content"));
        json_t *id = json_object_get(a, "id");
        if (c && json_is_integer(id) && !strcmp(c, content)) return (int)json_integer_value(id);
    }
    return -1;
}

static const char *special_token_id_name(const json_t *entry) {
    return json_string_value(json_object_get(json_object_get(entry, "SpecialToken"), "id"));
}
static const char *sequence_name(const json_t *entry) {
    return json_string_value(json_object_get(json_object_get(entry, "Sequence"), "id"));
}
static bool streq(const char *a, const char *b) { return a && b && !strcmp(a, b); }

/* SpecialVocab._try_load_from_tokenizer_json: which special tokens the post-processor adds, and
 * the bos/eos names it implies. names[] holds tokenizer_config's names and is updated. */
static void parse_post_processor(const json_t *tok, bool have_tc, const char *names[EMBD_SP_N], embd_hf_vocab *v) {
    const json_t *pp = json_object_get(tok, "post_processor");
    if (!json_is_object(pp)) return;
    const json_t *list = json_object_get(pp, "processors");
    size_t n = json_is_array(list) ? json_array_size(list) : 1;
    for (size_t p = 0; p < n; p++) {
        const json_t *proc = json_is_array(list) ? json_array_get(list, p) : pp;
        const char *type = json_string_value(json_object_get(proc, "type"));
        if (streq(type, "RobertaProcessing")) {
            v->add_bos = v->add_eos = v->add_sep = 1;
            continue;
        }
        if (!streq(type, "TemplateProcessing")) continue;
        const json_t *single = json_object_get(proc, "single"), *pair = json_object_get(proc, "pair");
        size_t ns = json_array_size(single), np = json_array_size(pair);
        const char *first = NULL, *last = NULL;
        if (ns > 1) {
            first = special_token_id_name(json_array_get(single, 0));
            if (first) {
                if (!have_tc) names[EMBD_SP_BOS] = first;
                else if (!streq(first, names[EMBD_SP_BOS]) && !streq(first, names[EMBD_SP_CLS])) {
                    if (!names[EMBD_SP_BOS]) names[EMBD_SP_BOS] = first;
                    if (!names[EMBD_SP_CLS]) names[EMBD_SP_CLS] = first;
                }
                v->add_bos = streq(first, names[EMBD_SP_BOS]) || streq(first, names[EMBD_SP_CLS]);
            }
            last = special_token_id_name(json_array_get(single, ns - 1));
            if (last) {
                if (!have_tc || !streq(last, names[EMBD_SP_EOS])) names[EMBD_SP_EOS] = last;
                v->add_eos = 1;
            }
        }
        if (np) { /* "A [sep] [sep] B": does a separator sit between the two sequences? */
            size_t lo = (first && streq(special_token_id_name(json_array_get(pair, 0)), first)) ? 1 : 0;
            size_t hi = (last && streq(special_token_id_name(json_array_get(pair, np - 1)), last)) ? np - 1 : np;
            if (hi > lo + 2 && streq(sequence_name(json_array_get(pair, lo)), "A") &&
                streq(sequence_name(json_array_get(pair, hi - 1)), "B")) {
                const char *m0 = special_token_id_name(json_array_get(pair, lo + 1));
                bool is_sep0 = streq(m0, names[EMBD_SP_SEP]) || streq(m0, names[EMBD_SP_EOS]);
                int add_sep = is_sep0 && !last;
                if (hi - lo - 2 == 2) {
                    const char *m1 = special_token_id_name(json_array_get(pair, lo + 2));
                    if (streq(m1, names[EMBD_SP_SEP]) || streq(m1, names[EMBD_SP_EOS])) add_sep = 1;
                }
                v->add_sep = add_sep;
                if (add_sep && !names[EMBD_SP_SEP] && have_tc) names[EMBD_SP_SEP] = names[EMBD_SP_EOS];
            }
        }
    }
}

/* The BERT normaliser flags llama.cpp records (tokenizer.ggml.normalizer.*). */
static void parse_normalizer(const json_t *n, embd_hf_vocab *v) {
    const char *type = json_string_value(json_object_get(n, "type"));
    if (streq(type, "Lowercase")) v->lowercase = 1;
    else if (streq(type, "StripAccents")) v->strip_accents = 1;
    else if (streq(type, "BertNormalizer")) {
        json_t *l = json_object_get(n, "lowercase"), *s = json_object_get(n, "strip_accents");
        if (json_is_boolean(l)) v->lowercase = json_is_true(l);
        if (json_is_boolean(s)) v->strip_accents = json_is_true(s);
    } else if (streq(type, "Sequence")) {
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(n, "normalizers"), i, c) parse_normalizer(c, v);
    }
}

/* Special ids: tokenizer_config names looked up among tokenizer.json's added tokens (or, with only
 * vocab.txt, in the vocabulary), then config.json's <kind>_token_id for the rest. */
static void resolve_specials(const json_t *tok, const json_t *tc, const embd_hf_vocab *vtxt, const int cfg[EMBD_SP_N],
                             embd_hf_vocab *v) {
    const char *names[EMBD_SP_N] = {0};
    for (int k = 0; k < EMBD_SP_N; k++) names[k] = tc ? tc_token(tc, EMBD_SP_NAMES[k]) : NULL;
    if (vtxt) { /* BertTokenizer's defaults */
        static const char *const dflt[EMBD_SP_N] = {NULL, NULL, "[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]"};
        for (int k = 0; k < EMBD_SP_N; k++)
            if (!names[k]) names[k] = dflt[k];
    }
    if (tok) {
        if (tc && !names[EMBD_SP_BOS] && names[EMBD_SP_CLS]) names[EMBD_SP_BOS] = names[EMBD_SP_CLS];
        if (tc && !names[EMBD_SP_EOS] && names[EMBD_SP_SEP]) names[EMBD_SP_EOS] = names[EMBD_SP_SEP];
        parse_post_processor(tok, tc != NULL, names, v);
        json_t *norm = json_object_get(tok, "normalizer");
        if (json_is_object(norm)) parse_normalizer(norm, v);
    }
    for (int k = 0; k < EMBD_SP_N; k++) {
        char key[32];
        snprintf(key, sizeof key, "add_%s_token", EMBD_SP_NAMES[k]);
        json_t *b = tc ? json_object_get(tc, key) : NULL;
        if (json_is_boolean(b)) {
            if (k == EMBD_SP_BOS) v->add_bos = json_is_true(b);
            if (k == EMBD_SP_EOS) v->add_eos = json_is_true(b);
            if (k == EMBD_SP_SEP) v->add_sep = json_is_true(b);
        }
        int id = -1;
        if (names[k] && tok) {
            id = added_id(tok, names[k]);
        } else if (names[k] && vtxt) {
            for (size_t i = 0; i < vtxt->n && id < 0; i++)
                if (vtxt->types[i] == EMBD_TT_CONTROL && !strcmp(vtxt->tokens[i], names[k])) id = (int)i;
        }
        if (id < 0) id = cfg[k];
        v->special[k] = (id >= 0 && (size_t)id < v->n) ? id : -1;
    }
}

/* does_token_look_special in llama.cpp's converter */
static bool looks_special(const char *t) {
    size_t n = strlen(t);
    if (!strcmp(t, "<pad>") || !strcmp(t, "<mask>") || !strcmp(t, "<2mass>") || !strcmp(t, "[@BOS@]")) return true;
    if (n >= 4 && !strncmp(t, "<|", 2) && !strcmp(t + n - 2, "|>")) return true;
    return n >= 8 && !strncmp(t, "<unused", 7) && t[n - 1] == '>';
}

/* Marks tokenizer.json's added tokens: special -> CONTROL, others USER_DEFINED. Returns -1 on a
 * bad entry. With names (vocab.txt only) the default BERT specials are the added tokens. */
static int mark_added(const json_t *tok, embd_hf_vocab *v, char *err, size_t errlen) {
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(tok, "added_tokens"), i, a) {
        json_t *id = json_object_get(a, "id");
        const char *c = json_string_value(json_object_get(a, "content"));
        if (!json_is_integer(id) || !c || json_integer_value(id) < 0 || (size_t)json_integer_value(id) >= v->n)
            return embd_fail(err, errlen, "tokenizer.json: added token %zu has no valid id (vocab_size %zu)", i, v->n);
        size_t k = (size_t)json_integer_value(id);
        if (!v->tokens[k] && !(v->tokens[k] = strdup(c))) return embd_fail(err, errlen, "out of memory");
        if (v->types[k] == EMBD_TT_UNKNOWN) continue;
        v->types[k] = (json_is_true(json_object_get(a, "special")) || looks_special(v->tokens[k])) ? EMBD_TT_CONTROL
                                                                                                  : EMBD_TT_USER;
    }
    return 0;
}

static int fill_unused(embd_hf_vocab *v, char *err, size_t errlen) {
    for (size_t i = 0; i < v->n; i++) {
        if (v->tokens[i]) {
            if (!v->types[i]) v->types[i] = EMBD_TT_NORMAL;
            continue;
        }
        char b[32];
        snprintf(b, sizeof b, "[PAD%zu]", i);
        if (!(v->tokens[i] = strdup(b))) return embd_fail(err, errlen, "out of memory");
        v->types[i] = EMBD_TT_UNUSED;
        if (v->scores) v->scores[i] = -10000.0f;
    }
    return 0;
}

/* WordPiece -> llama.cpp's "phantom space" form: word starts get U+2581, "##" continuations lose
 * the prefix; control tokens stay as they are. */
static int phantom(embd_hf_vocab *v, char *err, size_t errlen) {
    for (size_t i = 0; i < v->n; i++) {
        if (v->types[i] == EMBD_TT_CONTROL) continue;
        char *t = v->tokens[i];
        if (!strncmp(t, "##", 2)) {
            memmove(t, t + 2, strlen(t) - 1);
            continue;
        }
        char *p = malloc(strlen(t) + 4);
        if (!p) return embd_fail(err, errlen, "out of memory");
        memcpy(p, "\xE2\x96\x81", 3);
        strcpy(p + 3, t);
        free(t);
        v->tokens[i] = p;
    }
    return 0;
}

static int wordpiece_from_tokenizer_json(const json_t *tok, int vocab_size, embd_hf_vocab *v, char *err, size_t errlen) {
    const json_t *vocab = json_object_get(json_object_get(tok, "model"), "vocab");
    if (!json_is_object(vocab)) return embd_fail(err, errlen, "tokenizer.json: model.vocab is not an object");
    /* padded to vocab_size with [unused], an empty one would tokenize everything to nothing
     * (found by fuzz_hf_tokenizer) */
    if (!json_object_size(vocab)) return embd_fail(err, errlen, "tokenizer.json: the WordPiece vocabulary is empty");
    size_t n = vocab_size > 0 ? (size_t)vocab_size : json_object_size(vocab);
    if (vocab_alloc(v, n, false, err, errlen)) return -1;
    const char *k;
    json_t *id;
    json_object_foreach((json_t *)vocab, k, id) {
        if (!json_is_integer(id) || json_integer_value(id) < 0 || (size_t)json_integer_value(id) >= n)
            return embd_fail(err, errlen, "tokenizer.json: token '%.40s' has id outside the vocabulary of %zu", k, n);
        size_t i = (size_t)json_integer_value(id);
        free(v->tokens[i]);
        if (!(v->tokens[i] = strdup(k))) return embd_fail(err, errlen, "out of memory");
    }
    return mark_added(tok, v, err, errlen);
}

static int wordpiece_from_vocab_txt(const char *txt, size_t len, const json_t *tc, int vocab_size, embd_hf_vocab *v,
                                    char *err, size_t errlen) {
    size_t lines = 0;
    for (size_t i = 0; i < len; i++) lines += txt[i] == '\n';
    if (len && txt[len - 1] != '\n') lines++;
    size_t n = vocab_size > 0 ? (size_t)vocab_size : lines;
    if (lines > n) return embd_fail(err, errlen, "vocab.txt has %zu tokens, config.json vocab_size %zu", lines, n);
    if (!lines) return embd_fail(err, errlen, "vocab.txt is empty");
    if (vocab_alloc(v, n, false, err, errlen)) return -1;
    size_t i = 0;
    for (const char *p = txt, *end = txt + len; p < end; i++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        size_t l = (size_t)(e - p);
        if (l && p[l - 1] == '\r') l--;
        if (memchr(p, 0, l)) return embd_fail(err, errlen, "vocab.txt line %zu contains a NUL byte", i + 1);
        if (!(v->tokens[i] = strndup(p, l))) return embd_fail(err, errlen, "out of memory");
        p = nl ? nl + 1 : end;
    }
    /* BertTokenizer's added tokens are its special tokens (defaults [UNK] [SEP] [PAD] [CLS] [MASK]) */
    static const char *const defaults[] = {"[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]"};
    static const char *const kinds[] = {"unk", "sep", "pad", "cls", "mask"};
    for (int k = 0; k < 5; k++) {
        const char *name = tc ? tc_token(tc, kinds[k]) : NULL;
        if (!name) name = defaults[k];
        for (size_t j = 0; j < lines; j++)
            if (!strcmp(v->tokens[j], name)) v->types[j] = EMBD_TT_CONTROL;
    }
    return 0;
}

/* base64 (tokenizer.json's precompiled_charsmap) */
static int b64_decode(const char *s, uint8_t **out, size_t *outlen) {
    size_t n = strlen(s);
    if (n % 4 || n > (1u << 30)) return -1;
    uint8_t *b = malloc(n / 4 * 3 + 1);
    if (!b) return -1;
    int r = n ? EVP_DecodeBlock(b, (const unsigned char *)s, (int)n) : 0;
    if (r < 0) {
        free(b);
        return -1;
    }
    size_t len = (size_t)r;
    if (n && s[n - 1] == '=') len--;
    if (n > 1 && s[n - 2] == '=') len--;
    *out = b;
    *outlen = len;
    return 0;
}

static const json_t *find_typed(const json_t *node, const char *list_key, const char *type) {
    if (!json_is_object(node)) return NULL;
    if (streq(json_string_value(json_object_get(node, "type")), type)) return node;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(node, list_key), i, c) {
        const json_t *r = find_typed(c, list_key, type);
        if (r) return r;
    }
    return NULL;
}

static int unigram_from_tokenizer_json(const json_t *tok, const json_t *tc, int vocab_size, embd_hf_vocab *v, char *err,
                                       size_t errlen) {
    const json_t *model = json_object_get(tok, "model");
    const json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_array(vocab) || !json_array_size(vocab))
        return embd_fail(err, errlen, "tokenizer.json: Unigram model.vocab is not a non-empty array");
    size_t nv = json_array_size(vocab);
    size_t n = (vocab_size > 0 && (size_t)vocab_size > nv) ? (size_t)vocab_size : nv;
    if (vocab_alloc(v, n, true, err, errlen)) return -1;
    for (size_t i = 0; i < nv; i++) {
        const json_t *e = json_array_get(vocab, i);
        const char *piece = json_string_value(json_array_get(e, 0));
        const json_t *score = json_array_get(e, 1);
        if (!piece || !json_is_number(score))
            return embd_fail(err, errlen, "tokenizer.json: Unigram vocab entry %zu is not [piece, score]", i);
        if (!(v->tokens[i] = strdup(piece))) return embd_fail(err, errlen, "out of memory");
        v->scores[i] = (float)json_number_value(score);
    }
    /* unknown token: tokenizer_config's unk_token among the added tokens, else model.unk_id (3) */
    const char *unk_name = tc ? tc_token(tc, "unk") : NULL;
    int unk = unk_name ? added_id(tok, unk_name) : -1;
    if (unk < 0) {
        json_t *u = json_object_get(model, "unk_id");
        unk = json_is_integer(u) ? (int)json_integer_value(u) : 3;
    }
    if (unk >= 0 && (size_t)unk < n) v->types[unk] = EMBD_TT_UNKNOWN;
    if (mark_added(tok, v, err, errlen)) return -1;

    const json_t *pc = find_typed(json_object_get(tok, "normalizer"), "normalizers", "Precompiled");
    const char *cm = pc ? json_string_value(json_object_get(pc, "precompiled_charsmap")) : NULL;
    if (cm && *cm && b64_decode(cm, &v->charsmap, &v->charsmap_len))
        return embd_fail(err, errlen, "tokenizer.json: precompiled_charsmap is not valid base64");
    /* the Metaspace pre-tokeniser says whether a space is prepended (old and new field names) */
    const json_t *ms = find_typed(json_object_get(tok, "pre_tokenizer"), "pretokenizers", "Metaspace");
    v->add_space_prefix = true;
    if (ms) {
        json_t *ap = json_object_get(ms, "add_prefix_space");
        const char *scheme = json_string_value(json_object_get(ms, "prepend_scheme"));
        if (json_is_boolean(ap)) v->add_space_prefix = json_is_true(ap);
        if (scheme) v->add_space_prefix = strcmp(scheme, "never") != 0;
    }
    json_t *cl = tc ? json_object_get(tc, "clean_up_tokenization_spaces") : NULL;
    v->remove_extra_ws = json_is_boolean(cl) ? json_is_true(cl) : true;
    return 0;
}

int embd_hf_vocab_from_json(embd_hf_family fam, const json_t *tok, const char *vocab_txt, size_t vocab_txt_len,
                            const json_t *tc, int vocab_size, const int cfg_special[EMBD_SP_N], embd_hf_vocab *v,
                            char *err, size_t errlen) {
    memset(v, 0, sizeof *v);
    v->add_bos = v->add_eos = v->add_sep = v->lowercase = v->strip_accents = -1;
    if (tc && !json_is_object(tc)) tc = NULL;
    if (tok && !json_is_object(tok)) return embd_fail(err, errlen, "tokenizer.json is not a JSON object");
    const char *mtype = tok ? json_string_value(json_object_get(json_object_get(tok, "model"), "type")) : NULL;
    int rc;
    if (fam == EMBD_HF_BERT) {
        v->model = "bert";
        if (tok && !streq(mtype, "WordPiece"))
            return embd_fail(err, errlen, "tokenizer.json: model type '%s', BERT needs WordPiece", mtype ? mtype : "?");
        rc = tok ? wordpiece_from_tokenizer_json(tok, vocab_size, v, err, errlen)
             : vocab_txt ? wordpiece_from_vocab_txt(vocab_txt, vocab_txt_len, tc, vocab_size, v, err, errlen)
                         : embd_fail(err, errlen, "missing tokenizer: no tokenizer.json or vocab.txt");
        if (!rc) rc = fill_unused(v, err, errlen);
        if (!rc) resolve_specials(tok, tc, tok ? NULL : v, cfg_special, v);
        if (!rc) rc = phantom(v, err, errlen);
    } else {
        v->model = "t5";
        if (!tok)
            return embd_fail(err, errlen, "missing tokenizer.json (XLM-R needs its Unigram tokenizer.json; "
                                          "sentencepiece.bpe.model alone is not supported)");
        if (!streq(mtype, "Unigram"))
            return embd_fail(err, errlen, "tokenizer.json: model type '%s', XLM-R needs Unigram", mtype ? mtype : "?");
        rc = unigram_from_tokenizer_json(tok, tc, vocab_size, v, err, errlen);
        if (!rc) rc = fill_unused(v, err, errlen);
        if (!rc) resolve_specials(tok, tc, NULL, cfg_special, v);
    }
    if (rc) embd_hf_vocab_free(v);
    return rc;
}

int embd_hf_vocab_load(const char *dir, const embd_hf_config *c, embd_hf_vocab *v, char *err, size_t errlen) {
    char path[4096];
    json_error_t je;
    struct stat st;
    json_t *tok = NULL, *tc = NULL;
    char *txt = NULL;
    size_t txt_len = 0;
    int rc = 0;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (stat(path, &st) == 0 && !(tok = json_load_file(path, 0, &je)))
        rc = embd_fail(err, errlen, "tokenizer.json is not valid JSON (line %d: %s)", je.line, je.text);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    if (!rc && stat(path, &st) == 0 && !(tc = json_load_file(path, 0, &je)))
        rc = embd_fail(err, errlen, "tokenizer_config.json is not valid JSON (line %d: %s)", je.line, je.text);
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    if (!rc && !tok && c->family == EMBD_HF_BERT && stat(path, &st) == 0 &&
        !(txt = embd_read_file(path, (size_t)1 << 30, &txt_len, err, errlen)))
        rc = -1;
    if (!rc)
        rc = embd_hf_vocab_from_json(c->family, tok, txt, txt_len, tc, c->vocab_size, c->cfg_special, v, err, errlen);
    json_decref(tok);
    json_decref(tc);
    free(txt);
    return rc;
}
