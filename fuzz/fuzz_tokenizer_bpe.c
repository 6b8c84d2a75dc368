/* embd_tokenizer_encode on arbitrary bytes with byte-level BPE (CLIP-shaped) tokenizers built here:
 * all 512 byte symbols ("x" and "x</w>"), merges that chain into words, emoji and accented
 * letters (so merges cross UTF-8 byte boundaries), CLIP's normalizers and split, and added tokens
 * matched in the raw text (lstrip/rstrip) and in the normalized text. Input: byte 0 picks max_tokens
 * (low 6 bits, 0 = no limit) and the tokenizer (bit 7: the one without unk_token, whose unknown
 * pieces vanish; it also lacks some byte symbols); the rest is the text. Checks: UTF-8 errors at the
 * first bad byte, ids within the vocabulary, start/end tokens, truncation keeps a prefix. */
#include <jansson.h>
#include <string.h>

#include "fuzz_common.h"
#include "tokenizer/tokenizer.h"

static embd_tokenizer *with_unk, *without_unk;

/* GPT-2's bytes_to_unicode as UTF-8. */
static void byte_char(int b, char out[8])
{
    int cp = b;
    if (!((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)) {
        int k = 0;
        for (int x = 0; x < b; x++)
            k += !((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE);
        cp = 0x100 + k;
    }
    if (cp < 0x80) {
        out[0] = (char)cp, out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | (cp >> 6)), out[1] = (char)(0x80 | (cp & 0x3F)), out[2] = 0;
    }
}

static const char *const MERGES[] = {
    "t h", "th e</w>", "i n", "in g</w>", "a n", "an d</w>", "e r", "o n</w>", "c a", "ca t</w>", "ph o",
    "p h", "pho to</w>", "t o</w>", "a </w>", "' s</w>", "' t</w>", "! !", "!! !</w>",
    "Ã ©", "c af", "a f", "caf Ã©</w>", /* café: merges across a 2-byte character */
    "ð Ł", "ðŁ ĺ", "ðŁĺ Ģ</w>",       /* U+1F600 */
    "ä ¸", "ä¸ Ń</w>",                 /* 中 */
    "1 2", "a a", "aa aa", "aaaa aaaa", "a a</w>", "th e", "the r", "ther e</w>",
};

static embd_tokenizer *build(bool unk)
{
    json_t *vocab = json_object(), *merges = json_array();
    json_int_t id = 0;
    char c[8], w[16];
    for (int b = 0; b < 256; b++) {
        if (!unk && b >= 0x80 && b < 0x90) /* some byte symbols missing: dropped pieces */
            continue;
        byte_char(b, c);
        json_object_set_new(vocab, c, json_integer(id++));
    }
    for (int b = 0; b < 256; b++) {
        byte_char(b, c);
        snprintf(w, sizeof w, "%s</w>", c);
        json_object_set_new(vocab, w, json_integer(id++));
    }
    for (size_t i = 0; i < sizeof MERGES / sizeof MERGES[0]; i++) {
        char buf[64];
        const char *sp = strchr(MERGES[i], ' ');
        snprintf(buf, sizeof buf, "%.*s%s", (int)(sp - MERGES[i]), MERGES[i], sp + 1);
        if (!json_object_get(vocab, buf) && strcmp(MERGES[i], "1 2")) /* "12": a merge, no token */
            json_object_set_new(vocab, buf, json_integer(id++));
        json_array_append_new(merges, json_string(MERGES[i]));
    }
    json_int_t sot = id++, eot = id++, raw = id++, norm = id++;
    json_object_set_new(vocab, "<|startoftext|>", json_integer(sot));
    json_object_set_new(vocab, "<|endoftext|>", json_integer(eot));
    json_t *root = json_pack(
        "{s:[{s:I,s:s,s:b,s:b},{s:I,s:s,s:b,s:b},{s:I,s:s,s:b,s:b,s:b,s:b},{s:I,s:s,s:b,s:b}],"
        "s:{s:s,s:[{s:s},{s:s,s:{s:s},s:s},{s:s}]},"
        "s:{s:s,s:[{s:s,s:{s:s},s:s,s:b},{s:s,s:b,s:b,s:b}]},"
        "s:{s:s,s:[s,I],s:[s,I]},"
        "s:{s:s,s:o,s:s,s:o,s:o}}",
        "added_tokens", "id", sot, "content", "<|startoftext|>", "normalized", 1, "special", 1,
        "id", eot, "content", "<|endoftext|>", "normalized", 1, "special", 1,
        "id", raw, "content", "<X>", "normalized", 0, "special", 1, "lstrip", 1, "rstrip", 1,
        "id", norm, "content", "Naïve", "normalized", 1, "special", 0,
        "normalizer", "type", "Sequence", "normalizers", "type", "NFC", "type", "Replace", "pattern", "Regex", "\\s+",
        "content", " ", "type", "Lowercase",
        "pre_tokenizer", "type", "Sequence", "pretokenizers", "type", "Split", "pattern", "Regex",
        "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+",
        "behavior", "Removed", "invert", 1, "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1,
        "use_regex", 0,
        "post_processor", "type", "RobertaProcessing", "sep", "<|endoftext|>", eot, "cls", "<|startoftext|>", sot,
        "model", "type", "BPE", "unk_token", unk ? json_string("<|endoftext|>") : json_null(), "end_of_word_suffix",
        "</w>", "vocab", vocab, "merges", merges);
    FUZZ_CHECK(root);
    char *text = json_dumps(root, 0), err[256] = "";
    embd_tokenizer *t = embd_tokenizer_from_json(text, strlen(text), err, sizeof err);
    if (!t)
        fprintf(stderr, "fuzz_tokenizer_bpe: %s\n", err);
    FUZZ_CHECK(t);
    free(text);
    json_decref(root);
    return t;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    with_unk = build(true);
    without_unk = build(false);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t max_tokens = data[0] & 63;
    const embd_tokenizer *tok = data[0] & 128 ? without_unk : with_unk;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    embd_tokens full = {0}, cut = {0};
    if (fuzz_check_encode(tok, text, len, max_tokens, &full, &cut))
        /* a byte of the normalized text becomes at most one piece (merges only shrink a word);
         * NFC grows UTF-8 at most 3x, lowercasing 1.5x */
        FUZZ_CHECK(full.n <= 5 * len + 2);
    embd_tokens_free(&full);
    embd_tokens_free(&cut);
    return 0;
}
