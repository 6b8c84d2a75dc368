/* Helpers shared by the libFuzzer targets (header-only: each target is one translation unit). */
#ifndef EMBD_FUZZ_COMMON_H
#define EMBD_FUZZ_COMMON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tokenizer/tokenizer.h"

/* assert() would vanish under NDEBUG; a failed invariant must abort so libFuzzer records it. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The APIs under test take a path: the input goes into one memfd per process, reused by every run
 * (no disk I/O, nothing left behind), opened again through /proc/self/fd. */
static inline const char *fuzz_memfd_path(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("embd-fuzz", MFD_CLOEXEC);
        if (fd < 0) {
            perror("memfd_create");
            abort();
        }
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    FUZZ_CHECK(ftruncate(fd, 0) == 0);
    for (size_t off = 0; off < size;) {
        ssize_t w = pwrite(fd, data + off, size - off, (off_t)off);
        FUZZ_CHECK(w > 0);
        off += (size_t)w;
    }
    return path;
}

/* Length of the longest prefix of s that is well-formed UTF-8 (Unicode 15, table 3-7): written
 * independently of the tokenizer's validator so that the two can be compared. */
static inline size_t fuzz_utf8_valid_prefix(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t b = s[i];
        size_t n;
        uint32_t cp, min;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xE0) == 0xC0) {
            n = 2, cp = b & 0x1F, min = 0x80;
        } else if ((b & 0xF0) == 0xE0) {
            n = 3, cp = b & 0x0F, min = 0x800;
        } else if ((b & 0xF8) == 0xF0) {
            n = 4, cp = b & 0x07, min = 0x10000;
        } else {
            return i;
        }
        if (len - i < n)
            return i;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return i;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += n;
    }
    return len;
}

/* What every successful encoding must satisfy. max_tokens as passed to embd_tokenizer_encode. */
static inline void fuzz_check_tokens(const embd_tokenizer *t, const embd_tokens *tk, size_t max_tokens)
{
    size_t V = embd_tokenizer_vocab_size(t);
    FUZZ_CHECK(tk->ids && tk->n >= 1 && tk->n <= tk->cap);
    FUZZ_CHECK(tk->n <= tk->n_full && tk->truncated == (tk->n < tk->n_full));
    if (max_tokens == 0)
        FUZZ_CHECK(tk->n == tk->n_full && tk->n >= 2);
    else if (max_tokens == 1)
        FUZZ_CHECK(tk->n == 1);
    else /* truncation keeps as many pieces as fit */
        FUZZ_CHECK(tk->n == (tk->n_full < max_tokens ? tk->n_full : max_tokens));
    for (size_t i = 0; i < tk->n; i++)
        FUZZ_CHECK(tk->ids[i] >= 0 && (size_t)tk->ids[i] < V && embd_tokenizer_token(t, tk->ids[i]));
    FUZZ_CHECK(tk->ids[0] == embd_tokenizer_cls_id(t));
    if (tk->n >= 2)
        FUZZ_CHECK(tk->ids[tk->n - 1] == embd_tokenizer_sep_id(t));
}

/* The checks every tokenizer target makes on one input: text that is not UTF-8 is refused at its
 * first bad byte with no tokens; valid text encodes to well-formed tokens; with max_tokens, the
 * truncated encoding keeps the full one's count and its leading pieces. full and cut hold the
 * encodings (the caller frees them). Returns whether the text was valid and encoded. */
static inline bool fuzz_check_encode(const embd_tokenizer *tok, const char *text, size_t len, size_t max_tokens,
                                     embd_tokens *full, embd_tokens *cut)
{
    size_t off = SIZE_MAX;
    int rc = embd_tokenizer_encode(tok, text, len, 0, full, &off);
    size_t valid = fuzz_utf8_valid_prefix((const uint8_t *)text, len);
    if (valid < len) {
        FUZZ_CHECK(rc == EMBD_TOK_EUTF8);
        FUZZ_CHECK(off < len && off == valid);
        FUZZ_CHECK(full->n == 0);
        return false;
    }
    FUZZ_CHECK(rc == EMBD_TOK_OK);
    fuzz_check_tokens(tok, full, 0);
    if (max_tokens) {
        FUZZ_CHECK(embd_tokenizer_encode(tok, text, len, max_tokens, cut, NULL) == EMBD_TOK_OK);
        fuzz_check_tokens(tok, cut, max_tokens);
        FUZZ_CHECK(cut->n_full == full->n_full);
        /* right-side truncation: the kept pieces are the first pieces of the full encoding */
        if (cut->n >= 2)
            FUZZ_CHECK(!memcmp(cut->ids + 1, full->ids + 1, (cut->n - 2) * sizeof *cut->ids));
    }
    return true;
}

#endif
