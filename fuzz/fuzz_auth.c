/* What a hostile client or a broken keys file can hand to server/auth.c: the input is parsed as a
 * keys file, as an Authorization value, and as "TIMESTAMP\nSIGNATURE\nAUTHORIZATION\nBODY" through the
 * same header and body checks the server runs (against a fixed key and secret). Besides "no
 * crash": parsed keys are non-empty, a bearer token lies inside its header and is token68, every
 * refusal is a 401/403/503 with a message, and a request signed with the real secret passes once
 * and is then a replay. */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "server/auth.h"
#include "server/json_depth.h"

#define KEY "fuzz-key-0123456789abcdef"
#define SECRET "fuzz-secret-0123456789abcdef"

static const char *memfd_with(const char *name, const char *text) {
    int fd = memfd_create(name, MFD_CLOEXEC);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    static char paths[2][64];
    static int n;
    char *p = paths[n++ & 1];
    snprintf(p, 64, "/proc/self/fd/%d", fd);
    return p;
}

static embd_auth *auth(void) {
    static embd_auth *a;
    if (!a) {
        embd_auth_opts o = {.api_keys_file = memfd_with("keys", "fuzz " KEY " embed,admin rps=5\n"),
                            .hmac_secret_file = memfd_with("secret", SECRET "\n"),
                            .hmac_window = 300,
                            .replay_cache_max = 4096};
        char err[256];
        a = embd_auth_new(&o, err, sizeof err);
        if (!a) fprintf(stderr, "%s\n", err);
        FUZZ_CHECK(a);
    }
    return a;
}

static void check_refusal(int rc, const embd_api_error *e) {
    if (rc != EMBD_AUTH_FAIL) return;
    FUZZ_CHECK((e->status == 401 || e->status == 403 || e->status == 503) && e->type && e->message[0]);
    FUZZ_CHECK(!strstr(e->message, KEY) && !strstr(e->message, SECRET));
}

/* The next '\n'-terminated field of [*p, end) as a NUL-terminated copy, or NULL when none is left. */
static char *field(const char **p, const char *end) {
    if (*p >= end) return NULL;
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    const char *stop = nl ? nl : end;
    size_t n = (size_t)(stop - *p);
    char *s = malloc(n + 1);
    FUZZ_CHECK(s);
    memcpy(s, *p, n);
    s[n] = 0;
    *p = nl ? nl + 1 : end;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    char err[256];
    embd_keyset *ks = embd_keyset_parse(text, size, err, sizeof err);
    if (ks) {
        FUZZ_CHECK(embd_keyset_count(ks) >= 1);
        embd_principal p;
        if (embd_keyset_find(ks, text, size, &p)) FUZZ_CHECK(p.name[0] && p.scopes);
        embd_keyset_free(ks);
    } else {
        FUZZ_CHECK(err[0]);
    }
    (void)embd_json_too_deep(text, size, 8);

    char *whole = malloc(size + 1);
    FUZZ_CHECK(whole);
    memcpy(whole, data, size);
    whole[size] = 0;
    const char *tok;
    size_t len;
    if (!embd_bearer_parse(whole, &tok, &len)) {
        FUZZ_CHECK(tok >= whole && tok + len <= whole + strlen(whole) && len >= 1);
        for (size_t i = 0; i < len; i++) FUZZ_CHECK(tok[i] != ' ' && tok[i] != '\t' && tok[i] != ',');
    }
    free(whole);

    const char *p = text, *end = text + size;
    char *ts = field(&p, end), *sig = field(&p, end), *authz = field(&p, end);
    const char *body = p;
    size_t body_len = (size_t)(end - p);
    const char *path = (size & 1) ? "/v1/embeddings" : "/info";
    int64_t now = 1700000000;
    embd_auth_req r = {.method = "POST", .path = path, .authorization = authz, .timestamp = ts, .signature = sig};
    embd_principal who;
    embd_api_error e;
    int rc = embd_auth_check_headers(auth(), &r, now, &who, &e);
    check_refusal(rc, &e);
    if (rc == EMBD_AUTH_NEED_BODY) {
        rc = embd_auth_check_body(auth(), &r, body, body_len, now, &who, &e);
        check_refusal(rc, &e);
    }
    if (rc == EMBD_AUTH_OK) FUZZ_CHECK(authz || ts || sig); /* no credentials never pass */

    /* the same body signed properly: accepted once, then a replay (or the cache is full) */
    int64_t t;
    if (ts && !embd_sig_timestamp_parse(ts, &t) && t >= now - 300 && t <= now + 300) {
        unsigned char mac[32];
        char hex[65];
        FUZZ_CHECK(!embd_sig_compute((const unsigned char *)SECRET, strlen(SECRET), "POST", path, body, body_len, ts,
                                     mac));
        for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", mac[i]);
        embd_auth_req good = {.method = "POST", .path = path, .timestamp = ts, .signature = hex};
        rc = embd_auth_check_headers(auth(), &good, now, &who, &e);
        FUZZ_CHECK(rc == EMBD_AUTH_NEED_BODY);
        rc = embd_auth_check_body(auth(), &good, body, body_len, now, &who, &e);
        FUZZ_CHECK(rc == EMBD_AUTH_OK || (rc == EMBD_AUTH_FAIL && (e.status == 503 || e.status == 401)));
        if (rc == EMBD_AUTH_OK) {
            rc = embd_auth_check_body(auth(), &good, body, body_len, now, &who, &e);
            FUZZ_CHECK(rc == EMBD_AUTH_FAIL && (e.status == 401 || e.status == 503));
        }
    }
    free(ts), free(sig), free(authz);
    return 0;
}
