/* Auth and abuse limits without a server: keys-file parsing (malformed lines too), bearer headers,
 * key lookup over digests, route scopes, HMAC known answers (computed with Python's hmac module),
 * the replay cache's expiry and cap, the header/body checks as the server runs them, SIGHUP-style
 * reload, token buckets, the JSON depth pre-scan and the connection deadline sweep. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "server/auth.h"
#include "server/guard.h"
#include "server/json_depth.h"
#include "server/ratelimit.h"

#define KEY_A "aaaaaaaaaaaaaaaaaaaa"
#define KEY_B "bbbbbbbbbbbbbbbbbbbbbbbb"
/* sha256("aaaaaaaaaaaaaaaaaaaa") by Python's hashlib */
#define KEY_A_SHA "42492da06234ad0ac76f5d5debdb6d1ae027cffbe746a1c13b89bb8bc0139137"
#define SECRET "0123456789abcdef0123456789abcdef"

static embd_keyset *parse(const char *text, char *err) { return embd_keyset_parse(text, strlen(text), err, 256); }

static void test_keys_file_good(void **st) {
    (void)st;
    char err[256] = "";
    const char *text = "# comment line\n"
                       "\n"
                       "   \t\n"
                       "alice  " KEY_A "  embed,rerank  rps=2.5 tpm=600  # trailing comment\r\n"
                       "ops\t" KEY_B "\tadmin\n"
                       "all-of-it ccccccccccccccccccccccccccccc== *\n"
                       "digest sha256:" KEY_A_SHA "0" /* 65 digits: checked below separately */ "";
    embd_keyset *ks = parse(text, err);
    assert_null(ks); /* the last line has 65 hex digits */
    assert_non_null(strstr(err, "line 7"));

    text = "alice  " KEY_A "  embed,rerank  rps=2.5 tpm=600  # trailing comment\r\n"
           "ops\t" KEY_B "\tadmin\n"
           "all-of-it ccccccccccccccccccccccccccccc== *";
    ks = parse(text, err);
    assert_non_null(ks);
    assert_int_equal(embd_keyset_count(ks), 3);
    embd_principal p;
    assert_true(embd_keyset_find(ks, KEY_A, strlen(KEY_A), &p));
    assert_string_equal(p.name, "alice");
    assert_int_equal(p.scopes, EMBD_SCOPE_EMBED | EMBD_SCOPE_RERANK);
    assert_true(p.rps == 2.5 && p.tpm == 600);
    assert_true(embd_keyset_find(ks, KEY_B, strlen(KEY_B), &p));
    assert_string_equal(p.name, "ops");
    assert_int_equal(p.scopes, EMBD_SCOPE_ADMIN);
    assert_true(p.rps < 0 && p.tpm < 0); /* not given: the server's flags apply */
    assert_true(embd_keyset_find(ks, "ccccccccccccccccccccccccccccc==", 31, &p));
    assert_int_equal(p.scopes, EMBD_SCOPE_ALL);
    /* near misses: one character off, a prefix, a longer token */
    assert_false(embd_keyset_find(ks, "aaaaaaaaaaaaaaaaaaab", 20, &p));
    assert_false(embd_keyset_find(ks, KEY_A, strlen(KEY_A) - 1, &p));
    assert_false(embd_keyset_find(ks, KEY_A "a", strlen(KEY_A) + 1, &p));
    assert_false(embd_keyset_find(ks, "", 0, &p));
    embd_keyset_free(ks);
}

static void test_keys_file_digest_form(void **st) {
    (void)st;
    char err[256];
    embd_keyset *ks = parse("hashed sha256:" KEY_A_SHA " jobs,collections\n", err);
    assert_non_null(ks);
    embd_principal p;
    assert_true(embd_keyset_find(ks, KEY_A, strlen(KEY_A), &p)); /* the file never held the key */
    assert_string_equal(p.name, "hashed");
    assert_int_equal(p.scopes, EMBD_SCOPE_JOBS | EMBD_SCOPE_COLLECTIONS);
    embd_keyset_free(ks);
    /* upper-case hex is the same digest */
    char up[128];
    snprintf(up, sizeof up, "h sha256:%s embed", KEY_A_SHA);
    for (char *c = up + 9; c < up + 9 + 64; c++)
        if (*c >= 'a' && *c <= 'f') *c = (char)(*c - 32);
    ks = parse(up, err);
    assert_non_null(ks);
    assert_true(embd_keyset_find(ks, KEY_A, strlen(KEY_A), &p));
    embd_keyset_free(ks);
}

static void test_keys_file_malformed(void **st) {
    (void)st;
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"", "no keys"},
        {"# only comments\n\n", "no keys"},
        {"alice " KEY_A "\n", "line 1: expected NAME KEY SCOPES"},
        {"alice\n", "expected NAME KEY SCOPES"},
        {"alice short embed\n", "16-256"},
        {"al!ce " KEY_A " embed\n", "name may only"},
        {"alice " KEY_A " embed,write\n", "scopes"},
        {"alice " KEY_A " embed,\n", "scopes"},
        {"alice " KEY_A " \n", "expected NAME"},
        {"alice " KEY_A " embed rps=-1\n", "rps=N"},
        {"alice " KEY_A " embed rps=fast\n", "rps=N"},
        {"alice " KEY_A " embed burst=3\n", "rps=N"},
        {"alice " KEY_A " embed rps=\n", "rps=N"},
        {"alice " KEY_A " embed rps=1 tpm=2 a b c d e\n", "too many fields"},
        {"alice aaaaaaaaaa\"aaaaaaaaaa embed\n", "key may only"},
        {"alice aaaaaaaaaa=aaaaaaaaaa embed\n", "key may only"}, /* '=' only at the end */
        {"alice sha256:abc embed\n", "64 hex"},
        {"alice sha256:" KEY_A_SHA "zz embed\n", "64 hex"},
        {"alice " KEY_A " embed\nbob " KEY_A " admin\n", "line 2: same key as 'alice'"},
        {"alice " KEY_A " embed\nalice " KEY_B " admin\n", "line 2: duplicate name"},
        {"alice sha256:" KEY_A_SHA " embed\nbob " KEY_A " admin\n", "same key"},
        {"a\0b " KEY_A " embed\n", "expected NAME"}, /* strlen stops at the NUL */
        {"ok " KEY_A " embed\n\n\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx " KEY_B " embed\n",
         "line 4: name longer"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[256] = "";
        embd_keyset *ks = parse(bad[i].text, err);
        if (ks || !strstr(err, bad[i].want)) fail_msg("case %zu: got '%s', want '%s'", i, err, bad[i].want);
    }
    /* a NUL inside the text (length given explicitly) */
    char err[256];
    const char text[] = "alice " KEY_A " em\0bed\n";
    assert_null(embd_keyset_parse(text, sizeof text - 1, err, sizeof err));
    assert_non_null(strstr(err, "NUL"));
    /* the key itself never appears in an error message */
    assert_null(parse("alice " KEY_A " nope\n", err));
    assert_null(strstr(err, KEY_A));
}

static void test_bearer_parse(void **st) {
    (void)st;
    const char *t;
    size_t n;
    assert_int_equal(embd_bearer_parse("Bearer abc.def", &t, &n), 0);
    assert_int_equal(n, 7);
    assert_memory_equal(t, "abc.def", 7);
    assert_int_equal(embd_bearer_parse("  bEaReR \t tok==  ", &t, &n), 0);
    assert_int_equal(n, 5);
    assert_memory_equal(t, "tok==", 5);
    static const char *const bad[] = {"", "Bearer", "Bearer ", "Bearer  ", "Basic dXNlcjpwYXNz", "Bearertok",
                                      "Bearer a b", "Bearer =abc", "Bearer a=b", "Bearer a\"b", "Token abc",
                                      "Bearer a,b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (!embd_bearer_parse(bad[i], &t, &n)) fail_msg("accepted '%s'", bad[i]);
    char big[5000];
    memcpy(big, "Bearer ", 7);
    memset(big + 7, 'x', sizeof big - 8);
    big[sizeof big - 1] = 0;
    assert_int_equal(embd_bearer_parse(big, &t, &n), -1); /* > 4096 characters */
}

static void test_scopes_and_routes(void **st) {
    (void)st;
    assert_int_equal(embd_scopes_parse("embed", 5), EMBD_SCOPE_EMBED);
    assert_int_equal(embd_scopes_parse("admin,embed", 11), EMBD_SCOPE_ADMIN | EMBD_SCOPE_EMBED);
    assert_int_equal(embd_scopes_parse("*", 1), EMBD_SCOPE_ALL);
    assert_int_equal(embd_scopes_parse("embedx", 6), 0);
    assert_int_equal(embd_scopes_parse("", 0), 0);
    assert_int_equal(embd_scopes_parse(",", 1), 0);
    assert_int_equal(embd_route_scope("/v1/embeddings"), EMBD_SCOPE_EMBED);
    assert_int_equal(embd_route_scope("/embed"), EMBD_SCOPE_EMBED);
    assert_int_equal(embd_route_scope("/tokenize"), EMBD_SCOPE_EMBED);
    assert_int_equal(embd_route_scope("/v1/embed/image"), EMBD_SCOPE_EMBED); /* CLIP */
    assert_int_equal(embd_route_scope("/v1/embed/image-batch"), EMBD_SCOPE_EMBED);
    assert_int_equal(embd_route_scope("/v1/embed/text"), EMBD_SCOPE_EMBED);
    assert_int_equal(embd_route_scope("/v1/embed/imagex"), 0);
    assert_int_equal(embd_route_scope("/rerank"), EMBD_SCOPE_RERANK);
    assert_int_equal(embd_route_scope("/v1/rerank"), EMBD_SCOPE_RERANK);
    assert_int_equal(embd_route_scope("/v1/jobs"), EMBD_SCOPE_JOBS);
    assert_int_equal(embd_route_scope("/v1/jobs/123/results"), EMBD_SCOPE_JOBS);
    assert_int_equal(embd_route_scope("/v1/jobsx"), 0);
    assert_int_equal(embd_route_scope("/v1/collections/c1"), EMBD_SCOPE_COLLECTIONS);
    assert_int_equal(embd_route_scope("/metrics"), EMBD_SCOPE_ADMIN);
    assert_int_equal(embd_route_scope("/info"), EMBD_SCOPE_ADMIN);
    assert_int_equal(embd_route_scope("/health"), 0);
    assert_string_equal(embd_scope_name(EMBD_SCOPE_JOBS), "jobs");
}

static void hex(const unsigned char *b, char *out) {
    for (int i = 0; i < 32; i++) sprintf(out + 2 * i, "%02x", b[i]);
}

static void test_hmac_known_answers(void **st) {
    (void)st;
    unsigned char mac[32];
    char h[65];
    /* python3: hmac.new(SECRET, b"POST|/v1/embeddings|" + sha256(body).hexdigest() + b"|1700000000") */
    const char *body = "{\"input\":\"hi\"}";
    assert_int_equal(embd_sig_compute((const unsigned char *)SECRET, 32, "POST", "/v1/embeddings", body, strlen(body),
                                      "1700000000", mac),
                     0);
    hex(mac, h);
    assert_string_equal(h, "15205e5ef18398dda1ec4b79c7133c04e247b1e9a962a7e985660e391c7d269e");
    /* empty body: sha256("") in the message */
    assert_int_equal(embd_sig_compute((const unsigned char *)SECRET, 32, "GET", "/info", NULL, 0, "42", mac), 0);
    hex(mac, h);
    assert_string_equal(h, "6d3d6a97be5dec8feb582e7ec22c43a35728869f41d5ad84cb4c6133043073a5");

    int64_t ts;
    assert_int_equal(embd_sig_timestamp_parse("1700000000", &ts), 0);
    assert_true(ts == 1700000000);
    static const char *const bad_ts[] = {"", "-5", "+5", "1.5", "12a", " 12", "1234567890123"};
    for (size_t i = 0; i < sizeof bad_ts / sizeof bad_ts[0]; i++)
        if (!embd_sig_timestamp_parse(bad_ts[i], &ts)) fail_msg("accepted timestamp '%s'", bad_ts[i]);
    unsigned char sig[32];
    assert_int_equal(embd_sig_hex_parse("15205E5EF18398DDA1EC4B79C7133C04E247B1E9A962A7E985660E391C7D269E", sig), 0);
    assert_int_equal(embd_sig_hex_parse("15205e5e", sig), -1);
    assert_int_equal(embd_sig_hex_parse("g5205e5ef18398dda1ec4b79c7133c04e247b1e9a962a7e985660e391c7d269e", sig), -1);
}

static void test_replay_cache(void **st) {
    (void)st;
    embd_replay *r = embd_replay_new(4);
    assert_non_null(r);
    unsigned char s[6][32];
    for (int i = 0; i < 6; i++) memset(s[i], 0x11 * (i + 1), 32);
    assert_int_equal(embd_replay_add(r, s[0], 1000, 900), EMBD_REPLAY_NEW);
    assert_int_equal(embd_replay_add(r, s[0], 1000, 950), EMBD_REPLAY_SEEN);
    assert_int_equal(embd_replay_add(r, s[0], 1000, 1000), EMBD_REPLAY_SEEN); /* still inside */
    assert_int_equal(embd_replay_add(r, s[1], 1100, 950), EMBD_REPLAY_NEW);
    assert_int_equal(embd_replay_add(r, s[2], 1200, 950), EMBD_REPLAY_NEW);
    assert_int_equal(embd_replay_add(r, s[3], 1300, 950), EMBD_REPLAY_NEW);
    assert_int_equal(embd_replay_count(r), 4);
    /* full, nothing expired: refused rather than grown */
    assert_int_equal(embd_replay_add(r, s[4], 1400, 960), EMBD_REPLAY_FULL);
    assert_int_equal(embd_replay_count(r), 4);
    /* s[0] and s[1] expired by 1150: swept, room again */
    assert_int_equal(embd_replay_add(r, s[4], 1400, 1150), EMBD_REPLAY_NEW);
    assert_int_equal(embd_replay_count(r), 3);
    assert_int_equal(embd_replay_add(r, s[2], 1200, 1150), EMBD_REPLAY_SEEN); /* survived the sweep */
    assert_int_equal(embd_replay_add(r, s[0], 2000, 1150), EMBD_REPLAY_NEW);  /* its window passed */
    assert_int_equal(embd_replay_add(r, s[5], 2000, 1150), EMBD_REPLAY_FULL);
    embd_replay_free(r);

    /* many entries with colliding low bits probe correctly */
    r = embd_replay_new(1000);
    unsigned char x[32] = {0};
    for (int i = 0; i < 1000; i++) {
        x[31] = (unsigned char)i, x[30] = (unsigned char)(i >> 8);
        assert_int_equal(embd_replay_add(r, x, 10, 0), EMBD_REPLAY_NEW);
    }
    for (int i = 0; i < 1000; i++) {
        x[31] = (unsigned char)i, x[30] = (unsigned char)(i >> 8);
        assert_int_equal(embd_replay_add(r, x, 10, 5), EMBD_REPLAY_SEEN);
    }
    embd_replay_free(r);
}

static char *write_tmp(const char *name, const char *text) {
    const char *dir = getenv("EMBD_TEST_TMP");
    if (dir && *dir) mkdir(dir, 0777); /* ctest's may not exist yet */
    char *path = malloc(4096);
    snprintf(path, 4096, "%s/test_auth_%d_%s", dir && *dir ? dir : "/tmp", (int)getpid(), name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static int check(embd_auth *a, const char *method, const char *path, const char *authz, const char *ts, const char *sig,
                 const char *body, int64_t now, embd_principal *who, embd_api_error *e) {
    embd_auth_req r = {.method = method, .path = path, .authorization = authz, .timestamp = ts, .signature = sig};
    int rc = embd_auth_check_headers(a, &r, now, who, e);
    if (rc != EMBD_AUTH_NEED_BODY) return rc;
    return embd_auth_check_body(a, &r, body, body ? strlen(body) : 0, now, who, e);
}

static void sign(const char *method, const char *path, const char *body, const char *ts, char out[65]) {
    unsigned char mac[32];
    assert_int_equal(embd_sig_compute((const unsigned char *)SECRET, 32, method, path, body, body ? strlen(body) : 0, ts,
                                      mac),
                     0);
    hex(mac, out);
}

static void test_auth_checks(void **st) {
    (void)st;
    char err[256];
    char *keys = write_tmp("keys", "alice " KEY_A " embed\nops " KEY_B " admin\n");
    char *secret = write_tmp("secret", SECRET "\n"); /* the trailing newline is not part of it */
    embd_auth_opts o = {.api_keys_file = keys, .hmac_secret_file = secret, .hmac_window = 300,
                        .replay_cache_max = 100, .public_health = true};
    embd_auth *a = embd_auth_new(&o, err, sizeof err);
    assert_non_null(a);
    assert_string_equal(embd_auth_mode(a), "api_keys+hmac");
    embd_principal who;
    embd_api_error e;
    const int64_t now = 1700000000;
    /* 401 / 403 / 200 */
    assert_int_equal(check(a, "POST", "/embed", NULL, NULL, NULL, NULL, now, &who, &e), EMBD_AUTH_FAIL);
    assert_int_equal(e.status, 401);
    assert_int_equal(check(a, "POST", "/embed", "Bearer " KEY_A, NULL, NULL, NULL, now, &who, &e), EMBD_AUTH_OK);
    assert_string_equal(who.name, "alice");
    assert_int_equal(check(a, "GET", "/info", "Bearer " KEY_A, NULL, NULL, NULL, now, &who, &e), EMBD_AUTH_FAIL);
    assert_int_equal(e.status, 403);
    assert_non_null(strstr(e.message, "admin"));
    assert_int_equal(check(a, "GET", "/info", "Bearer " KEY_B, NULL, NULL, NULL, now, &who, &e), EMBD_AUTH_OK);
    assert_int_equal(check(a, "GET", "/info", "Bearer " KEY_B "x", NULL, NULL, NULL, now, &who, &e), EMBD_AUTH_FAIL);
    assert_int_equal(e.status, 401);
    assert_int_equal(check(a, "GET", "/info", "Basic abc", NULL, NULL, NULL, now, &who, &e), EMBD_AUTH_FAIL);
    assert_int_equal(e.status, 401);
    assert_int_equal(check(a, "GET", "/health", NULL, NULL, NULL, NULL, now, &who, &e), EMBD_AUTH_OK);
    assert_string_equal(who.name, ""); /* public: nobody to rate-limit */
    assert_int_equal(check(a, "GET", "/metrics", NULL, NULL, NULL, NULL, now, &who, &e), EMBD_AUTH_FAIL);

    /* HMAC: good, replayed, bad, stale, future, malformed */
    const char *body = "{\"input\":\"hi\"}";
    char sig[65];
    sign("POST", "/embed", body, "1700000000", sig);
    assert_int_equal(check(a, "POST", "/embed", NULL, "1700000000", sig, body, now, &who, &e), EMBD_AUTH_OK);
    assert_string_equal(who.name, "hmac");
    assert_int_equal(check(a, "POST", "/embed", NULL, "1700000000", sig, body, now + 1, &who, &e), EMBD_AUTH_FAIL);
    assert_int_equal(e.status, 401);
    assert_non_null(strstr(e.message, "replayed"));
    sign("POST", "/embed", body, "1700000001", sig);
    assert_int_equal(check(a, "POST", "/embed", NULL, "1700000001", sig, "{\"input\":\"ho\"}", now, &who, &e),
                     EMBD_AUTH_FAIL); /* body changed */
    assert_int_equal(check(a, "POST", "/tokenize", NULL, "1700000001", sig, body, now, &who, &e),
                     EMBD_AUTH_FAIL); /* path changed */
    assert_int_equal(check(a, "PUT", "/embed", NULL, "1700000001", sig, body, now, &who, &e), EMBD_AUTH_FAIL);
    assert_int_equal(check(a, "POST", "/embed", NULL, "1700000001", sig, body, now, &who, &e), EMBD_AUTH_OK);
    sign("POST", "/embed", body, "1699999699", sig); /* 301 s old */
    assert_int_equal(check(a, "POST", "/embed", NULL, "1699999699", sig, body, now, &who, &e), EMBD_AUTH_FAIL);
    assert_non_null(strstr(e.message, "stale"));
    sign("POST", "/embed", body, "1699999700", sig); /* exactly 300 s: inside */
    assert_int_equal(check(a, "POST", "/embed", NULL, "1699999700", sig, body, now, &who, &e), EMBD_AUTH_OK);
    sign("POST", "/embed", body, "1700000301", sig);
    assert_int_equal(check(a, "POST", "/embed", NULL, "1700000301", sig, body, now, &who, &e), EMBD_AUTH_FAIL);
    assert_int_equal(check(a, "POST", "/embed", NULL, "1700000000", NULL, body, now, &who, &e), EMBD_AUTH_FAIL);
    assert_int_equal(check(a, "POST", "/embed", NULL, NULL, sig, body, now, &who, &e), EMBD_AUTH_FAIL);
    assert_int_equal(check(a, "POST", "/embed", NULL, "17e8", sig, body, now, &who, &e), EMBD_AUTH_FAIL);
    assert_int_equal(check(a, "POST", "/embed", NULL, "1700000000", "xyz", body, now, &who, &e), EMBD_AUTH_FAIL);
    /* a key and a signature: both must hold, the key's scopes apply */
    sign("GET", "/info", NULL, "1700000002", sig);
    assert_int_equal(check(a, "GET", "/info", "Bearer " KEY_A, "1700000002", sig, NULL, now, &who, &e),
                     EMBD_AUTH_FAIL);
    assert_int_equal(e.status, 403);
    assert_int_equal(check(a, "GET", "/info", "Bearer " KEY_B, "1700000002", sig, NULL, now, &who, &e), EMBD_AUTH_OK);
    assert_string_equal(who.name, "ops");

    /* reload: a changed file swaps in; a broken one leaves the old keys */
    FILE *f = fopen(keys, "w");
    fputs("bob " KEY_B " embed\n", f);
    fclose(f);
    assert_int_equal(embd_auth_reload(a, err, sizeof err), 0);
    assert_int_equal(check(a, "POST", "/embed", "Bearer " KEY_A, NULL, NULL, NULL, now, &who, &e), EMBD_AUTH_FAIL);
    assert_int_equal(check(a, "POST", "/embed", "Bearer " KEY_B, NULL, NULL, NULL, now, &who, &e), EMBD_AUTH_OK);
    assert_string_equal(who.name, "bob");
    f = fopen(keys, "w");
    fputs("bob tooshort embed\n", f);
    fclose(f);
    assert_int_equal(embd_auth_reload(a, err, sizeof err), -1);
    assert_non_null(strstr(err, "line 1"));
    assert_int_equal(check(a, "POST", "/embed", "Bearer " KEY_B, NULL, NULL, NULL, now, &who, &e), EMBD_AUTH_OK);
    embd_auth_free(a);

    /* no credentials configured: refused unless insecure */
    embd_auth_opts none = {.hmac_window = 300};
    assert_null(embd_auth_new(&none, err, sizeof err));
    assert_non_null(strstr(err, "--insecure"));
    none.insecure = true;
    a = embd_auth_new(&none, err, sizeof err);
    assert_non_null(a);
    assert_false(embd_auth_enabled(a));
    assert_string_equal(embd_auth_mode(a), "none (insecure)");
    assert_int_equal(check(a, "GET", "/info", NULL, NULL, NULL, NULL, now, &who, &e), EMBD_AUTH_OK);
    embd_auth_free(a);
    /* unusable files */
    embd_auth_opts missing = {.api_keys_file = "/nonexistent/keys"};
    assert_null(embd_auth_new(&missing, err, sizeof err));
    assert_non_null(strstr(err, "cannot open"));
    char *short_secret = write_tmp("short", "abc\n");
    embd_auth_opts weak = {.hmac_secret_file = short_secret, .replay_cache_max = 10};
    assert_null(embd_auth_new(&weak, err, sizeof err));
    assert_non_null(strstr(err, "shorter"));
    unlink(keys), unlink(secret), unlink(short_secret);
    free(keys), free(secret), free(short_secret);
}

static void test_token_bucket(void **st) {
    (void)st;
    embd_bucket b;
    embd_bucket_init(&b, 2, 4, 100); /* 2/s, burst 4, starts full */
    for (int i = 0; i < 4; i++) assert_true(embd_bucket_take(&b, 1, 100) == 0);
    double w = embd_bucket_take(&b, 1, 100);
    assert_true(w > 0.49 && w < 0.51); /* one unit at 2/s */
    assert_true(embd_bucket_take(&b, 1, 100.25) > 0);
    assert_true(embd_bucket_take(&b, 1, 100.5) == 0); /* refilled */
    assert_true(embd_bucket_take(&b, 1, 200) == 0);   /* capped at burst... */
    for (int i = 0; i < 3; i++) assert_true(embd_bucket_take(&b, 1, 200) == 0);
    assert_true(embd_bucket_take(&b, 1, 200) > 0); /* ...not 200 s worth */
    /* larger than the burst: granted when full, then in debt */
    embd_bucket_init(&b, 1, 10, 0);
    assert_true(embd_bucket_take(&b, 25, 0) == 0);
    w = embd_bucket_take(&b, 1, 0);
    assert_true(w > 15.9 && w < 16.1);

    embd_ratelimit *rl = embd_ratelimit_new();
    assert_true(embd_ratelimit_request(rl, "a", 0, 0) == 0); /* 0: unlimited */
    assert_true(embd_ratelimit_request(rl, "a", 2, 0) == 0);
    assert_true(embd_ratelimit_request(rl, "a", 2, 0) == 0);
    assert_true(embd_ratelimit_request(rl, "a", 2, 0) > 0);
    assert_true(embd_ratelimit_request(rl, "b", 2, 0) == 0); /* per caller */
    assert_true(embd_ratelimit_request(rl, "", 2, 0) == 0);  /* public: not limited */
    assert_true(embd_ratelimit_tokens(rl, "a", 600, 600, 0) == 0);
    w = embd_ratelimit_tokens(rl, "a", 600, 10, 0); /* 10 tokens at 10/s */
    assert_true(w > 0.99 && w < 1.01);
    assert_true(embd_ratelimit_tokens(rl, "a", 600, 10, 1.0) == 0);
    assert_true(embd_ratelimit_request(rl, "a", 1, 0) == 0); /* a changed limit starts over */
    embd_ratelimit_free(rl);
}

static void test_json_depth(void **st) {
    (void)st;
    char deep[200];
    for (int i = 0; i < 100; i++) deep[i] = '[', deep[100 + i - 0] = ']';
    assert_true(embd_json_too_deep(deep, 200, 32));
    assert_false(embd_json_too_deep(deep, 200, 100));
    const char *s = "{\"input\":[[1,2],[3]],\"x\":{\"y\":{}}}";
    assert_false(embd_json_too_deep(s, strlen(s), 3));
    assert_true(embd_json_too_deep(s, strlen(s), 2));
    s = "{\"input\":\"[[[[[[[[[[\\\"[[[[[[\"}"; /* brackets inside a string, with an escaped quote */
    assert_false(embd_json_too_deep(s, strlen(s), 1));
    s = "]]]]}}}[[";
    assert_false(embd_json_too_deep(s, strlen(s), 2)); /* malformed: the parser's job */
    assert_true(embd_json_too_deep(s, strlen(s), 1));
}

static void test_guard_sweep(void **st) {
    (void)st;
    int sv[2], sv2[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv2), 0);
    embd_guard *g = embd_guard_new(2, 10);
    void *c1 = NULL, *c2 = NULL;
    embd_guard_opened(g, sv[0], &c1, 100);
    embd_guard_opened(g, sv2[0], &c2, 100);
    assert_int_equal(embd_guard_connections(g), 2);
    embd_guard_headers_done(g, c2, 101); /* c2 sends its body, 10 s allowed */
    assert_int_equal(embd_guard_sweep(g, 101.9), 0);
    assert_int_equal(embd_guard_sweep(g, 102.5), 1); /* c1's headers are late */
    char buf[4];
    assert_int_equal(read(sv[1], buf, sizeof buf), 0); /* the peer sees the connection end */
    assert_int_equal(embd_guard_sweep(g, 103), 0);     /* cut once */
    embd_guard_body_done(g, c2);                       /* the server's now: no deadline */
    assert_int_equal(embd_guard_sweep(g, 500), 0);
    embd_guard_request_done(g, c2, 500);
    assert_int_equal(embd_guard_sweep(g, 501), 0);
    assert_int_equal(embd_guard_sweep(g, 503), 1); /* the next request's headers are late */
    embd_guard_closed(g, &c1);
    embd_guard_closed(g, &c2);
    assert_null(c1);
    assert_int_equal(embd_guard_connections(g), 0);
    embd_guard_free(g);
    close(sv[0]), close(sv[1]), close(sv2[0]), close(sv2[1]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_file_good),   cmocka_unit_test(test_keys_file_digest_form),
        cmocka_unit_test(test_keys_file_malformed), cmocka_unit_test(test_bearer_parse),
        cmocka_unit_test(test_scopes_and_routes), cmocka_unit_test(test_hmac_known_answers),
        cmocka_unit_test(test_replay_cache),      cmocka_unit_test(test_auth_checks),
        cmocka_unit_test(test_token_bucket),      cmocka_unit_test(test_json_depth),
        cmocka_unit_test(test_guard_sweep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
