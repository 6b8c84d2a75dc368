/* embd_tokenizer_encode on arbitrary bytes with Unigram tokenizers: XLM-RoBERTa's 250k vocabulary
 * from llama.cpp's models/ggml-vocab-nomic-bert-moe.gguf, and a small tokenizer.json whose other
 * normalizers (NFKC, NFD, literal Replace, Strip, Prepend), prepend_scheme "first" and normalized
 * / rstrip added tokens the XLM-R settings never reach. Input: byte 0 picks max_tokens (low 6 bits,
 * 0 = no limit) and the tokenizer (bit 7); the rest is the text. (test_tokenizer_ugm checks that
 * XLM-R's GGUF and tokenizer.json paths agree.) */
#include <string.h>

#include "fuzz_common.h"
#include "gguf.h"
#include "tokenizer/tokenizer.h"

static embd_tokenizer *xlmr, *small;

/* "_a" twice: the later id wins, as in transformers.js's tokens_to_ids */
static const char SMALL[] =
    "{\"added_tokens\":["
    "{\"id\":0,\"content\":\"<unk>\",\"special\":true},"
    "{\"id\":1,\"content\":\"<s>\",\"special\":true},"
    "{\"id\":2,\"content\":\"</s>\",\"special\":true,\"rstrip\":true},"
    "{\"id\":12,\"content\":\"Ab\",\"special\":false,\"normalized\":true,\"lstrip\":true}],"
    "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFKC\"},{\"type\":\"NFD\"},"
    "{\"type\":\"Replace\",\"pattern\":{\"String\":\"xy\"},\"content\":\"\\u00e9\"},"
    "{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"\\\\t+\"},\"content\":\" \"},"
    "{\"type\":\"Strip\",\"strip_left\":true,\"strip_right\":false},{\"type\":\"Prepend\",\"prepend\":\"_\"},"
    "{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"\"}]},"
    "\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"_\",\"prepend_scheme\":\"first\"},"
    "\"post_processor\":{\"type\":\"RobertaProcessing\",\"cls\":[\"<s>\",1],\"sep\":[\"</s>\",2]},"
    "\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"<unk>\",0],[\"<s>\",0],[\"</s>\",0],"
    "[\"_\",-1.5],[\"a\",-2],[\"b\",-2],[\"_a\",-2.5],[\"ab\",-3],[\"e\\u0301\",-1],[\"\\u0301\",-4],"
    "[\"\\u4e2d\",-3],[\"_ab\",-3.5],[\"Ab\",-9],[\"_a\",-2.25],[\"a\\u0301b\",-0.5]]}}";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *gp = getenv("GGUF_PY_DIR");
    char path[4096], err[256] = "";
    if (gp && *gp)
        snprintf(path, sizeof path, "%s/../models/ggml-vocab-nomic-bert-moe.gguf", gp);
    else
        snprintf(path, sizeof path, "%s/models/ggml-vocab-nomic-bert-moe.gguf", EMBD_FUZZ_LLAMA_SRC);
    struct gguf_init_params params = {.no_alloc = true, .ctx = NULL};
    struct gguf_context *g = gguf_init_from_file(path, params);
    if (!g) {
        fprintf(stderr, "fuzz_tokenizer_ugm: cannot read %s (set GGUF_PY_DIR)\n", path);
        exit(1);
    }
    xlmr = embd_tokenizer_new_unigram_gguf(g, err, sizeof err);
    gguf_free(g);
    small = embd_tokenizer_from_json(SMALL, sizeof SMALL - 1, err, sizeof err);
    if (!xlmr || !small) {
        fprintf(stderr, "fuzz_tokenizer_ugm: %s\n", err);
        exit(1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t max_tokens = data[0] & 63;
    const embd_tokenizer *tok = data[0] & 128 ? small : xlmr;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    embd_tokens full = {0}, cut = {0};
    fuzz_check_encode(tok, text, len, max_tokens, &full, &cut);
    embd_tokens_free(&full);
    embd_tokens_free(&cut);
    return 0;
}
