/* embd_tokenizer_encode on arbitrary bytes with the bge-small-en-v1.5 vocabulary.
 * Input: byte 0 picks max_tokens (low 6 bits, 0 = no limit) and the tokenizer (high 2 bits: the
 * tokenizer.json as is, or the same vocabulary with other normalizer settings, whose code paths
 * the bge settings never reach); the rest is the text. */
#include <string.h>

#include "fuzz_common.h"
#include "tokenizer/tokenizer.h"

static embd_tokenizer *toks[4];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *dir = getenv("EMBD_SHARED_DIR");
    char path[4096], err[256] = "";
    snprintf(path, sizeof path, "%s/models/bge-small-en-v1.5/tokenizer.json",
             dir && *dir ? dir : EMBD_FUZZ_SHARED_DIR);
    embd_tokenizer *bge = embd_tokenizer_from_json_file(path, err, sizeof err);
    if (!bge) {
        fprintf(stderr, "fuzz_tokenizer: %s (set EMBD_SHARED_DIR)\n", err);
        exit(1);
    }
    size_t n = embd_tokenizer_vocab_size(bge);
    const char **vocab = malloc(n * sizeof *vocab);
    FUZZ_CHECK(vocab);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK((vocab[i] = embd_tokenizer_token(bge, (int32_t)i)));
    embd_wordpiece_opts o[3];
    for (int i = 0; i < 3; i++)
        embd_wordpiece_opts_default(&o[i]);
    o[0].lowercase = false; /* cased: accents kept too */
    o[1].clean_text = o[1].handle_chinese_chars = false;
    o[2].strip_accents = 0, o[2].max_input_chars_per_word = 5;
    toks[0] = bge;
    for (int i = 0; i < 3; i++) {
        toks[i + 1] = embd_tokenizer_new_wordpiece(vocab, NULL, n, &o[i], err, sizeof err);
        if (!toks[i + 1]) {
            fprintf(stderr, "fuzz_tokenizer: %s\n", err);
            exit(1);
        }
    }
    free(vocab);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t max_tokens = data[0] & 63;
    const embd_tokenizer *tok = toks[data[0] >> 6];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    embd_tokens full = {0}, cut = {0};
    if (fuzz_check_encode(tok, text, len, max_tokens, &full, &cut) && max_tokens) {
        /* reusing a larger buffer must give the same result as a fresh one */
        FUZZ_CHECK(embd_tokenizer_encode(tok, text, len, max_tokens, &full, NULL) == EMBD_TOK_OK);
        FUZZ_CHECK(full.n == cut.n && full.n_full == cut.n_full && full.truncated == cut.truncated);
        FUZZ_CHECK(!memcmp(full.ids, cut.ids, cut.n * sizeof *cut.ids));
    }
    embd_tokens_free(&full);
    embd_tokens_free(&cut);
    return 0;
}
