/* embd_tokenizer_from_json on arbitrary bytes: NULL with an error message, or a tokenizer that
 * encodes (a fixed text and the input's own bytes) within its vocabulary. */
#include <string.h>

#include "fuzz_common.h"
#include "tokenizer/tokenizer.h"

static void encode_check(const embd_tokenizer *t, const char *text, size_t len)
{
    embd_tokens tk = {0};
    size_t off = SIZE_MAX;
    size_t valid = fuzz_utf8_valid_prefix((const uint8_t *)text, len);
    int rc = embd_tokenizer_encode(t, text, len, 0, &tk, &off);
    if (valid < len) {
        FUZZ_CHECK(rc == EMBD_TOK_EUTF8 && off == valid);
    } else {
        FUZZ_CHECK(rc == EMBD_TOK_OK);
        fuzz_check_tokens(t, &tk, 0);
        FUZZ_CHECK(embd_tokenizer_encode(t, text, len, 3, &tk, NULL) == EMBD_TOK_OK);
        fuzz_check_tokens(t, &tk, 3);
    }
    embd_tokens_free(&tk);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    memset(err, 0, sizeof err);
    embd_tokenizer *t = embd_tokenizer_from_json((const char *)data, size, err, sizeof err);
    if (!t) {
        FUZZ_CHECK(err[0] && memchr(err, 0, sizeof err));
        return 0;
    }
    size_t V = embd_tokenizer_vocab_size(t);
    FUZZ_CHECK(V > 0);
    FUZZ_CHECK(embd_tokenizer_cls_id(t) >= 0 && (size_t)embd_tokenizer_cls_id(t) < V);
    FUZZ_CHECK(embd_tokenizer_sep_id(t) >= 0 && (size_t)embd_tokenizer_sep_id(t) < V);
    static const char text[] = "Hello, W\xC3\xB6rld! [CLS] unaffable\t##ing \xE4\xBD\xA0\xE5\xA5\xBD [UNK]x";
    encode_check(t, text, sizeof text - 1);
    /* the JSON's own bytes contain its vocabulary and added tokens */
    encode_check(t, (const char *)data, size < 512 ? size : 512);
    embd_tokenizer_free(t);
    return 0;
}
