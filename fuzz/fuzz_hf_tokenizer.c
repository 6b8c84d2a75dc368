/* embd_hf_vocab_from_json (the converter's tokenizer.json reader: WordPiece for BERT, Unigram for
 * XLM-R, special tokens from the post-processor) on arbitrary JSON. The first byte picks the
 * family and a config vocab_size; the rest is tokenizer.json. Fails with a message, or returns a
 * complete vocabulary whose special ids are in range. */
#include <jansson.h>
#include <string.h>

#include "convert/hf.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const embd_hf_family fam = (data[0] & 1) ? EMBD_HF_XLMR : EMBD_HF_BERT;
    const int vocab_size = (data[0] >> 1) & 63; /* 0: the tokenizer's own size */
    json_t *tok = json_loadb((const char *)data + 1, size - 1, 0, NULL);
    if (!tok) return 0;
    static const char tc_text[] = "{\"cls_token\":\"[CLS]\",\"sep_token\":\"[SEP]\",\"unk_token\":\"<unk>\","
                                  "\"mask_token\":{\"content\":\"<mask>\"},\"add_sep_token\":true}";
    json_t *tc = json_loads(tc_text, 0, NULL);
    const int cfg[EMBD_SP_N] = {0, 2, -1, 2, 1, 0, 50};
    char err[256];
    memset(err, 0, sizeof err);
    embd_hf_vocab v;
    if (embd_hf_vocab_from_json(fam, tok, NULL, 0, (data[0] & 128) ? tc : NULL, vocab_size, cfg, &v, err,
                                sizeof err)) {
        FUZZ_CHECK(err[0] && memchr(err, 0, sizeof err));
    } else {
        FUZZ_CHECK(v.n > 0 && v.tokens && v.types && v.model);
        FUZZ_CHECK(vocab_size == 0 || v.n >= (size_t)vocab_size);
        for (size_t i = 0; i < v.n; i++) FUZZ_CHECK(v.tokens[i] && v.types[i] >= 1 && v.types[i] <= 5);
        for (int k = 0; k < EMBD_SP_N; k++) FUZZ_CHECK(v.special[k] >= -1 && v.special[k] < (int)v.n);
        FUZZ_CHECK((fam == EMBD_HF_XLMR) == (v.scores != NULL));
        embd_hf_vocab_free(&v);
    }
    json_decref(tc);
    json_decref(tok);
    return 0;
}
