/* Reads a SentencePiece Unigram vocabulary from GGUF keys as llama.cpp writes XLM-RoBERTa
 * (convert_hf_to_gguf.py _xlmroberta_set_vocab): tokenizer.ggml.{tokens,scores,token_type,
 * precompiled_charsmap,add_space_prefix,remove_extra_whitespaces,bos/eos/unknown_token_id}. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "tokenizer/tokenizer.h"

static int64_t find(const struct gguf_context *g, const char *key, enum gguf_type type)
{
    int64_t id = gguf_find_key(g, key);
    return id >= 0 && gguf_get_kv_type(g, id) == type ? id : -1;
}

static int64_t find_arr(const struct gguf_context *g, const char *key, enum gguf_type type)
{
    int64_t id = find(g, key, GGUF_TYPE_ARRAY);
    return id >= 0 && gguf_get_arr_type(g, id) == type ? id : -1;
}

static bool get_bool(const struct gguf_context *g, const char *key, bool def)
{
    int64_t id = find(g, key, GGUF_TYPE_BOOL);
    return id >= 0 ? gguf_get_val_bool(g, id) : def;
}

static int32_t get_id(const struct gguf_context *g, const char *key)
{
    int64_t id = gguf_find_key(g, key);
    if (id < 0)
        return -1;
    switch (gguf_get_kv_type(g, id)) {
    case GGUF_TYPE_UINT32: return gguf_get_val_u32(g, id) > INT32_MAX ? -1 : (int32_t)gguf_get_val_u32(g, id);
    case GGUF_TYPE_INT32: return gguf_get_val_i32(g, id);
    default: return -1;
    }
}

embd_tokenizer *embd_tokenizer_new_unigram_gguf(const struct gguf_context *g, char *err, size_t errlen)
{
    int64_t kt = find_arr(g, "tokenizer.ggml.tokens", GGUF_TYPE_STRING);
    int64_t ks = find_arr(g, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32);
    int64_t ky = find_arr(g, "tokenizer.ggml.token_type", GGUF_TYPE_INT32);
    int64_t kc = find_arr(g, "tokenizer.ggml.precompiled_charsmap", GGUF_TYPE_UINT8);
    if (kt < 0 || ks < 0) {
        if (err && errlen)
            snprintf(err, errlen, "Unigram model without tokenizer.ggml.tokens and tokenizer.ggml.scores");
        return NULL;
    }
    size_t n = gguf_get_arr_n(g, kt);
    if (gguf_get_arr_n(g, ks) != n || (ky >= 0 && gguf_get_arr_n(g, ky) != n)) {
        if (err && errlen)
            snprintf(err, errlen, "tokenizer.ggml.* arrays differ in length");
        return NULL;
    }
    const char **toks = malloc((n ? n : 1) * sizeof *toks);
    if (!toks) {
        if (err && errlen)
            snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        toks[i] = gguf_get_arr_str(g, kt, i);
    embd_unigram_vocab v = {
        .tokens = toks,
        .scores = gguf_get_arr_data(g, ks),
        .token_types = ky >= 0 ? gguf_get_arr_data(g, ky) : NULL,
        .n_tokens = n,
        .charsmap = kc >= 0 ? gguf_get_arr_data(g, kc) : NULL,
        .charsmap_len = kc >= 0 ? gguf_get_arr_n(g, kc) : 0,
        /* llama.cpp's defaults for a "t5" vocabulary without these keys */
        .add_space_prefix = get_bool(g, "tokenizer.ggml.add_space_prefix", true),
        .remove_extra_whitespaces = get_bool(g, "tokenizer.ggml.remove_extra_whitespaces", false),
        .bos_id = get_id(g, "tokenizer.ggml.bos_token_id"),
        .eos_id = get_id(g, "tokenizer.ggml.eos_token_id"),
        .unk_id = get_id(g, "tokenizer.ggml.unknown_token_id"),
    };
    embd_tokenizer *t = embd_tokenizer_new_unigram(&v, err, errlen);
    free(toks);
    return t;
}
