/* Readers for the JSON files of a Hugging Face model directory: config.json (architecture and
 * hyper-parameters), the sentence-transformers files (pooling, max_seq_length, prompts), and the
 * tokenizer (tokenizer.json / vocab.txt / tokenizer_config.json) as llama.cpp's converter writes
 * it into GGUF. */
#ifndef EMBD_CONVERT_HF_H
#define EMBD_CONVERT_HF_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { EMBD_HF_BERT, EMBD_HF_XLMR } embd_hf_family;

/* special token kinds, in the order llama.cpp's SpecialVocab looks them up */
enum { EMBD_SP_BOS, EMBD_SP_EOS, EMBD_SP_UNK, EMBD_SP_SEP, EMBD_SP_PAD, EMBD_SP_CLS, EMBD_SP_MASK, EMBD_SP_N };
extern const char *const EMBD_SP_NAMES[EMBD_SP_N]; /* "bos", "eos", ... */

typedef struct {
    char arch[64]; /* architectures[0] */
    embd_hf_family family;
    bool classifier; /* *ForSequenceClassification: rank pooling, classification head */
    int n_layer, n_embd, n_head, n_ff, max_pos, type_vocab, vocab_size;
    int pad_token_id; /* -1 when absent */
    float eps;
    char **labels; /* classifier output labels in id order */
    int n_labels;
    int cfg_special[EMBD_SP_N]; /* <kind>_token_id from config.json, -1 when absent */
} embd_hf_config;

int embd_hf_config_load(const char *dir, embd_hf_config *c, char *err, size_t errlen);
void embd_hf_config_free(embd_hf_config *c);

/* sentence-transformers metadata; every field optional */
typedef struct {
    int pooling;        /* llama.cpp enum: 1 mean, 2 cls, 3 last; -1 when not given */
    int max_seq_length; /* 0 when not given */
    char **prompt_names, **prompt_texts;
    int n_prompts;
    char *default_prompt; /* NULL when not given */
} embd_sbert_config;

int embd_sbert_config_load(const char *dir, embd_sbert_config *s, char *err, size_t errlen);
void embd_sbert_config_free(embd_sbert_config *s);

/* gguf.TokenType */
enum { EMBD_TT_NORMAL = 1, EMBD_TT_UNKNOWN = 2, EMBD_TT_CONTROL = 3, EMBD_TT_USER = 4, EMBD_TT_UNUSED = 5 };

typedef struct {
    const char *model; /* tokenizer.ggml.model: "bert" (WordPiece) or "t5" (SentencePiece Unigram) */
    char **tokens;
    int32_t *types;
    float *scores; /* t5 only */
    size_t n;
    int special[EMBD_SP_N]; /* -1 when unknown */
    int add_bos, add_eos, add_sep; /* -1 unknown, else 0/1 */
    int lowercase, strip_accents;  /* BERT normaliser flags, -1 unknown */
    uint8_t *charsmap;             /* t5: precompiled_charsmap */
    size_t charsmap_len;
    bool add_space_prefix, remove_extra_ws; /* t5 */
} embd_hf_vocab;

/* Reads the vocabulary the architecture needs from dir: WordPiece (tokenizer.json or vocab.txt)
 * for BERT, Unigram (tokenizer.json) for XLM-R. */
int embd_hf_vocab_load(const char *dir, const embd_hf_config *c, embd_hf_vocab *v, char *err, size_t errlen);

/* The same from already parsed files (tok: tokenizer.json or NULL, vocab_txt: vocab.txt bytes or
 * NULL, tc: tokenizer_config.json or NULL); the entry point for fuzzing. */
int embd_hf_vocab_from_json(embd_hf_family fam, const json_t *tok, const char *vocab_txt, size_t vocab_txt_len,
                            const json_t *tc, int vocab_size, const int cfg_special[EMBD_SP_N], embd_hf_vocab *v,
                            char *err, size_t errlen);
void embd_hf_vocab_free(embd_hf_vocab *v);

#endif
