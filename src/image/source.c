/* Inline image sources: data URIs and bare base64, decoded with OpenSSL's EVP base64 decoder. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "image/fetch.h"
#include "util/sys.h"

static bool b64_char(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

static bool space(unsigned char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

int embd_image_source_decode(const char *s, size_t len, uint8_t **out, size_t *out_len, char *err, size_t errlen) {
    *out = NULL;
    *out_len = 0;
    const char *p = s;
    size_t n = len;
    if (n >= 5 && !strncasecmp(s, "data:", 5)) {
        const char *comma = memchr(s, ',', len);
        if (!comma) return embd_fail(err, errlen, "malformed data URI (no ',')");
        size_t meta = (size_t)(comma - s) - 5;
        if (meta < 7 || strncasecmp(comma - 7, ";base64", 7))
            return embd_fail(err, errlen, "data URI must be base64 (data:<type>;base64,...)");
        p = comma + 1;
        n = len - (size_t)(p - s);
    }
    /* EVP's decoder would stop silently at '-' (its end marker) and take other junk for
     * whitespace: check the alphabet first, and count the symbols to restore missing padding. */
    size_t sym = 0, pad = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (space(c)) continue;
        if (c == '=') {
            pad++;
        } else if (!b64_char(c) || pad) {
            if (c == '-' || c == '_') return embd_fail(err, errlen, "invalid base64 (URL-safe alphabet: '%c')", c);
            if (pad && b64_char(c)) return embd_fail(err, errlen, "invalid base64 (data after '=' padding)");
            return embd_fail(err, errlen, "invalid base64 (character 0x%02x at offset %zu)", c, i);
        } else {
            sym++;
        }
    }
    if (sym == 0) return embd_fail(err, errlen, "empty base64 data");
    if (pad > 2 || sym % 4 == 1 || (pad && (sym + pad) % 4))
        return embd_fail(err, errlen, "invalid base64 (bad length or padding)");
    static const char fill[] = "==";
    size_t missing = pad ? 0 : (4 - sym % 4) % 4;
    uint8_t *buf = malloc(n / 4 * 3 + 6);
    EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
    int o1 = 0, o2 = 0, o3 = 0;
    if (!buf || !ctx) {
        free(buf);
        EVP_ENCODE_CTX_free(ctx);
        return embd_fail(err, errlen, "out of memory");
    }
    EVP_DecodeInit(ctx);
    /* EVP_DecodeUpdate takes an int length: feed large inputs in slices */
    int rc = 0;
    size_t done = 0;
    for (size_t off = 0; off < n && rc >= 0;) {
        int chunk = n - off > (1u << 30) ? 1 << 30 : (int)(n - off);
        rc = EVP_DecodeUpdate(ctx, buf + done, &o1, (const unsigned char *)p + off, chunk);
        done += (size_t)(o1 > 0 ? o1 : 0);
        off += (size_t)chunk;
    }
    if (rc >= 0 && missing) rc = EVP_DecodeUpdate(ctx, buf + done, &o2, (const unsigned char *)fill, (int)missing);
    done += (size_t)(o2 > 0 ? o2 : 0);
    if (rc >= 0) rc = EVP_DecodeFinal(ctx, buf + done, &o3);
    done += (size_t)(o3 > 0 ? o3 : 0);
    EVP_ENCODE_CTX_free(ctx);
    if (rc < 0) {
        free(buf);
        return embd_fail(err, errlen, "invalid base64");
    }
    *out = buf;
    *out_len = done;
    return 0;
}
