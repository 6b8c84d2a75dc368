/* embd_model_load on arbitrary bytes (as a file): fails with an error message, or loads a model
 * whose tokenizer only emits ids that have an embedding row. */
#include <string.h>

#include "engine/model.h"
#include "fuzz_common.h"
#include "ggml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_memfd_path(data, size);
    char err[256];
    memset(err, 0, sizeof err);
    embd_model *m = embd_model_load(path, NULL, err, sizeof err);
    if (!m) {
        FUZZ_CHECK(err[0] && memchr(err, 0, sizeof err));
        return 0;
    }
    const embd_model_info *in = &m->info;
    FUZZ_CHECK(m->tok && m->w.layers && in->n_layer > 0 && in->n_embd > 0 && in->n_head > 0);
    FUZZ_CHECK(in->n_embd % in->n_head == 0 && in->n_ctx > 0 && in->file_bytes == size);
    FUZZ_CHECK(in->n_vocab == (int)embd_tokenizer_vocab_size(m->tok) && m->w.tok_embd->ne[1] == in->n_vocab);

    static const char text[] = "Hello, world! [CLS] unaffable \xE4\xBD\xA0\xE5\xA5\xBD";
    embd_tokens tk = {0};
    FUZZ_CHECK(embd_tokenizer_encode(m->tok, text, sizeof text - 1, 0, &tk, NULL) == EMBD_TOK_OK);
    fuzz_check_tokens(m->tok, &tk, 0);
    embd_tokens_free(&tk);
    embd_model_free(m);
    return 0;
}
