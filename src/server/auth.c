#include "server/auth.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/sys.h"

enum { KEYS_FILE_MAX = 1 << 20, SECRET_MAX = 4096, SECRET_MIN = 16, KEY_MIN = 16, KEY_MAX = 256 };

/* ---- small helpers ------------------------------------------------------------------------ */

static void sha256(const void *data, size_t len, unsigned char out[32]) {
    unsigned int n = 0;
    EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int hex32(const char *s, size_t len, unsigned char out[32]) {
    if (len != 64) return -1;
    for (size_t i = 0; i < 32; i++) {
        int hi = hexval((unsigned char)s[2 * i]), lo = hexval((unsigned char)s[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

static void to_hex(const unsigned char *b, size_t n, char *out) {
    static const char H[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) out[2 * i] = H[b[i] >> 4], out[2 * i + 1] = H[b[i] & 15];
    out[2 * n] = 0;
}

/* RFC 7235 token68 without the trailing '=' run, which the callers allow separately. */
static bool ascii_alnum(int c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool token68_char(int c) { return ascii_alnum(c) || (c && strchr("-._~+/", c)); }

static bool token68(const char *s, size_t len) {
    size_t i = 0;
    while (i < len && token68_char((unsigned char)s[i])) i++;
    if (i == 0) return false;
    while (i < len && s[i] == '=') i++;
    return i == len;
}

/* ---- scopes and routes ------------------------------------------------------------------- */

static const char *const SCOPE_NAMES[] = {"embed", "rerank", "jobs", "collections", "admin"};

const char *embd_scope_name(unsigned one_scope) {
    for (unsigned i = 0; i < 5; i++)
        if (one_scope == 1u << i) return SCOPE_NAMES[i];
    return "any";
}

unsigned embd_scopes_parse(const char *s, size_t len) {
    if (len == 1 && s[0] == '*') return EMBD_SCOPE_ALL;
    unsigned mask = 0;
    for (size_t i = 0; i <= len;) {
        size_t j = i;
        while (j < len && s[j] != ',') j++;
        unsigned bit = 0;
        for (unsigned k = 0; k < 5; k++)
            if (strlen(SCOPE_NAMES[k]) == j - i && !memcmp(s + i, SCOPE_NAMES[k], j - i)) bit = 1u << k;
        if (!bit) return 0;
        mask |= bit;
        i = j + 1;
    }
    return mask;
}

static bool path_is(const char *path, const char *base) {
    size_t n = strlen(base);
    return !strncmp(path, base, n) && (path[n] == 0 || path[n] == '/');
}

unsigned embd_route_scope(const char *path) {
    if (!strcmp(path, "/v1/embeddings") || !strcmp(path, "/embed") || !strcmp(path, "/tokenize") ||
        !strcmp(path, "/v1/embed/image") || !strcmp(path, "/v1/embed/image-batch") || !strcmp(path, "/v1/embed/text"))
        return EMBD_SCOPE_EMBED;
    if (!strcmp(path, "/rerank") || !strcmp(path, "/v1/rerank")) return EMBD_SCOPE_RERANK;
    if (path_is(path, "/v1/jobs")) return EMBD_SCOPE_JOBS;
    if (path_is(path, "/v1/collections")) return EMBD_SCOPE_COLLECTIONS;
    if (!strcmp(path, "/metrics") || !strcmp(path, "/info")) return EMBD_SCOPE_ADMIN;
    return 0;
}

int embd_bearer_parse(const char *v, const char **tok, size_t *len) {
    while (*v == ' ' || *v == '\t') v++;
    if (strncasecmp(v, "bearer", 6) || (v[6] != ' ' && v[6] != '\t')) return -1;
    v += 6;
    while (*v == ' ' || *v == '\t') v++;
    size_t n = strlen(v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
    if (n == 0 || n > 4096 || !token68(v, n)) return -1;
    *tok = v;
    *len = n;
    return 0;
}

/* ---- keys file --------------------------------------------------------------------------- */

typedef struct {
    embd_principal p;
    unsigned char digest[32];
} key_entry;

struct embd_keyset {
    key_entry *k;
    size_t n, cap;
};

static bool name_char(int c) { return ascii_alnum(c) || (c && strchr("_.@-", c)); }

/* "rps=5" / "tpm=60000" */
static int parse_limit(const char *f, size_t len, embd_principal *p) {
    const char *eq = memchr(f, '=', len);
    if (!eq || eq == f || eq + 1 == f + len) return -1;
    char num[32];
    size_t nl = (size_t)(f + len - eq - 1);
    if (nl >= sizeof num) return -1;
    memcpy(num, eq + 1, nl);
    num[nl] = 0;
    char *end = NULL;
    errno = 0;
    double x = strtod(num, &end);
    if (errno || *end || !(x >= 0) || x > 1e12) return -1;
    size_t kl = (size_t)(eq - f);
    if (kl == 3 && !memcmp(f, "rps", 3)) p->rps = x;
    else if (kl == 3 && !memcmp(f, "tpm", 3)) p->tpm = x;
    else return -1;
    return 0;
}

static int parse_key_line(const char *line, size_t len, key_entry *e, char *err, size_t errlen) {
    const char *f[8];
    size_t fl[8], nf = 0;
    for (size_t i = 0; i < len;) {
        while (i < len && isspace((unsigned char)line[i])) i++;
        if (i >= len) break;
        size_t j = i;
        while (j < len && !isspace((unsigned char)line[j])) j++;
        if (nf == 8) return embd_fail(err, errlen, "too many fields");
        f[nf] = line + i, fl[nf++] = j - i;
        i = j;
    }
    if (nf < 3) return embd_fail(err, errlen, "expected NAME KEY SCOPES [rps=N] [tpm=N]");
    memset(e, 0, sizeof *e);
    e->p.rps = e->p.tpm = -1;
    if (fl[0] >= EMBD_KEY_NAME_MAX) return embd_fail(err, errlen, "name longer than %d characters", EMBD_KEY_NAME_MAX - 1);
    for (size_t i = 0; i < fl[0]; i++)
        if (!name_char((unsigned char)f[0][i])) return embd_fail(err, errlen, "name may only hold A-Z a-z 0-9 _ . @ -");
    memcpy(e->p.name, f[0], fl[0]);
    /* Error messages never quote the key: they end up in logs. */
    if (fl[1] > 7 && !memcmp(f[1], "sha256:", 7)) {
        if (hex32(f[1] + 7, fl[1] - 7, e->digest)) return embd_fail(err, errlen, "sha256: needs 64 hex digits");
    } else {
        if (fl[1] < KEY_MIN || fl[1] > KEY_MAX)
            return embd_fail(err, errlen, "key must be %d-%d characters (or sha256:<hex>)", KEY_MIN, KEY_MAX);
        if (!token68(f[1], fl[1]))
            return embd_fail(err, errlen, "key may only hold A-Z a-z 0-9 - . _ ~ + / and trailing =");
        sha256(f[1], fl[1], e->digest);
    }
    e->p.scopes = embd_scopes_parse(f[2], fl[2]);
    if (!e->p.scopes)
        return embd_fail(err, errlen, "scopes must be '*' or a comma-separated list of %s",
                     "embed,rerank,jobs,collections,admin");
    for (size_t i = 3; i < nf; i++)
        if (parse_limit(f[i], fl[i], &e->p))
            return embd_fail(err, errlen, "expected rps=N or tpm=N, got '%.*s'", (int)(fl[i] > 40 ? 40 : fl[i]), f[i]);
    return 0;
}

embd_keyset *embd_keyset_parse(const char *text, size_t len, char *err, size_t errlen) {
    embd_keyset *ks = calloc(1, sizeof *ks);
    if (!ks) return embd_fail(err, errlen, "out of memory"), NULL;
    int line_no = 0;
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && text[j] != '\n') j++;
        line_no++;
        const char *line = text + i;
        size_t ll = j - i;
        i = j + 1;
        const char *hash = memchr(line, '#', ll);
        if (hash) ll = (size_t)(hash - line);
        if (memchr(line, 0, ll)) {
            embd_fail(err, errlen, "line %d: NUL byte", line_no);
            goto fail;
        }
        size_t k = 0;
        while (k < ll && isspace((unsigned char)line[k])) k++;
        if (k == ll) continue;
        key_entry e;
        char why[160];
        if (parse_key_line(line, ll, &e, why, sizeof why)) {
            embd_fail(err, errlen, "line %d: %s", line_no, why);
            goto fail;
        }
        for (size_t m = 0; m < ks->n; m++) {
            if (!strcmp(ks->k[m].p.name, e.p.name)) {
                embd_fail(err, errlen, "line %d: duplicate name '%s'", line_no, e.p.name);
                goto fail;
            }
            if (!memcmp(ks->k[m].digest, e.digest, 32)) {
                embd_fail(err, errlen, "line %d: same key as '%s'", line_no, ks->k[m].p.name);
                goto fail;
            }
        }
        if (ks->n == ks->cap) {
            size_t cap = ks->cap ? ks->cap * 2 : 8;
            key_entry *nk = realloc(ks->k, cap * sizeof *nk);
            if (!nk) {
                embd_fail(err, errlen, "out of memory");
                goto fail;
            }
            ks->k = nk, ks->cap = cap;
        }
        ks->k[ks->n++] = e;
    }
    if (ks->n == 0) {
        embd_fail(err, errlen, "no keys (one per line: NAME KEY SCOPES [rps=N] [tpm=N])");
        goto fail;
    }
    return ks;
fail:
    embd_keyset_free(ks);
    return NULL;
}

embd_keyset *embd_keyset_load(const char *path, char *err, size_t errlen) {
    size_t len = 0;
    char *text = embd_read_file(path, KEYS_FILE_MAX, &len, err, errlen);
    if (!text) return NULL;
    char why[256];
    embd_keyset *ks = embd_keyset_parse(text, len, why, sizeof why);
    OPENSSL_cleanse(text, len); /* it may hold plain keys */
    free(text);
    if (!ks) embd_fail(err, errlen, "keys file %s: %s", path, why);
    return ks;
}

void embd_keyset_free(embd_keyset *ks) {
    if (!ks) return;
    if (ks->k) OPENSSL_cleanse(ks->k, ks->cap * sizeof *ks->k);
    free(ks->k);
    free(ks);
}

size_t embd_keyset_count(const embd_keyset *ks) { return ks ? ks->n : 0; }

bool embd_keyset_find(const embd_keyset *ks, const char *token, size_t len, embd_principal *out) {
    unsigned char d[32];
    sha256(token, len, d);
    const key_entry *hit = NULL;
    for (size_t i = 0; i < ks->n; i++) {
        /* No early exit: every key costs the same compare whichever matched. */
        bool eq = CRYPTO_memcmp(d, ks->k[i].digest, 32) == 0;
        if (eq && !hit) hit = &ks->k[i];
    }
    if (hit) *out = hit->p;
    return hit != NULL;
}

/* ---- HMAC signing ----------------------------------------------------------------------- */

int embd_sig_timestamp_parse(const char *s, int64_t *ts) {
    size_t n = strlen(s);
    if (n == 0 || n > 12) return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    *ts = v;
    return 0;
}

int embd_sig_hex_parse(const char *s, unsigned char out[32]) { return hex32(s, strlen(s), out); }

int embd_sig_compute(const unsigned char *secret, size_t secret_len, const char *method, const char *path,
                     const char *body, size_t body_len, const char *ts_text, unsigned char out[32]) {
    unsigned char bd[32];
    char bh[65];
    sha256(body ? body : "", body_len, bd);
    to_hex(bd, 32, bh);
    size_t n = strlen(method) + strlen(path) + 64 + strlen(ts_text) + 4;
    char *msg = malloc(n);
    if (!msg) return -1;
    int ml = snprintf(msg, n, "%s|%s|%s|%s", method, path, bh, ts_text);
    unsigned int ol = 0;
    unsigned char *r = HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)msg, (size_t)ml, out, &ol);
    free(msg);
    return r && ol == 32 ? 0 : -1;
}

/* ---- replay cache: open addressing, load factor <= 1/2, expired slots swept when full ------ */

typedef struct {
    unsigned char sig[32];
    int64_t expires; /* 0: empty slot */
} replay_slot;

struct embd_replay {
    pthread_mutex_t mu;
    replay_slot *t;
    size_t mask, n, cap;
};

embd_replay *embd_replay_new(size_t cap) {
    embd_replay *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    size_t size = 16;
    while (size < cap * 2) size *= 2;
    r->t = calloc(size, sizeof *r->t);
    if (!r->t) {
        free(r);
        return NULL;
    }
    r->mask = size - 1;
    r->cap = cap ? cap : 1;
    pthread_mutex_init(&r->mu, NULL);
    return r;
}

void embd_replay_free(embd_replay *r) {
    if (!r) return;
    pthread_mutex_destroy(&r->mu);
    free(r->t);
    free(r);
}

static size_t slot_of(const embd_replay *r, const unsigned char sig[32]) {
    uint64_t h;
    memcpy(&h, sig, sizeof h); /* an HMAC output: already uniformly spread */
    return (size_t)h & r->mask;
}

static replay_slot *probe(embd_replay *r, const unsigned char sig[32]) {
    size_t i = slot_of(r, sig);
    while (r->t[i].expires && memcmp(r->t[i].sig, sig, 32)) i = (i + 1) & r->mask;
    return &r->t[i];
}

/* Rebuilds the table without the entries whose window has passed (deleting in place would break
 * the probe chains). */
static void sweep(embd_replay *r, int64_t now) {
    size_t size = r->mask + 1;
    replay_slot *old = r->t, *nt = calloc(size, sizeof *nt);
    if (!nt) return;
    r->t = nt;
    r->n = 0;
    for (size_t i = 0; i < size; i++) {
        if (!old[i].expires || old[i].expires < now) continue;
        *probe(r, old[i].sig) = old[i];
        r->n++;
    }
    free(old);
}

int embd_replay_add(embd_replay *r, const unsigned char sig[32], int64_t expires, int64_t now) {
    pthread_mutex_lock(&r->mu);
    int rc = EMBD_REPLAY_NEW;
    replay_slot *s = probe(r, sig);
    if (s->expires && s->expires >= now) {
        rc = EMBD_REPLAY_SEEN;
    } else if (s->expires) {
        s->expires = expires; /* the same signature once its window passed: a new request */
    } else {
        if (r->n >= r->cap) {
            sweep(r, now);
            s = probe(r, sig);
        }
        if (r->n >= r->cap) {
            rc = EMBD_REPLAY_FULL;
        } else {
            memcpy(s->sig, sig, 32);
            s->expires = expires > 0 ? expires : 1;
            r->n++;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

size_t embd_replay_count(embd_replay *r) {
    pthread_mutex_lock(&r->mu);
    size_t n = r->n;
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* ---- the server's view ------------------------------------------------------------------ */

struct embd_auth {
    embd_auth_opts o;
    pthread_rwlock_t lock; /* guards keys: SIGHUP swaps them while requests read them */
    embd_keyset *keys;
    bool keys_on; /* fixed at start-up: read without the lock */
    unsigned char *secret;
    size_t secret_len;
    embd_replay *replay;
    char mode[32];
};

static unsigned char *load_secret(const char *path, size_t *len, char *err, size_t errlen) {
    size_t n = 0;
    char *s = embd_read_file(path, SECRET_MAX, &n, err, errlen);
    if (!s) return NULL;
    while (n && isspace((unsigned char)s[n - 1])) n--; /* `openssl rand -hex 32 > f` ends in \n */
    if (n < SECRET_MIN) {
        OPENSSL_cleanse(s, n);
        free(s);
        embd_fail(err, errlen, "HMAC secret file %s: shorter than %d bytes", path, SECRET_MIN);
        return NULL;
    }
    *len = n;
    return (unsigned char *)s;
}

embd_auth *embd_auth_new(const embd_auth_opts *o, char *err, size_t errlen) {
    bool keys = o->api_keys_file && *o->api_keys_file, hmac = o->hmac_secret_file && *o->hmac_secret_file;
    if (!keys && !hmac && !o->insecure)
        return embd_fail(err, errlen,
                     "refusing to start without authentication: give --api-keys-file or --hmac-secret-file, "
                     "or --insecure (EMBD_INSECURE=1) to serve without"),
               NULL;
    embd_auth *a = calloc(1, sizeof *a);
    if (!a) return embd_fail(err, errlen, "out of memory"), NULL;
    a->o = *o;
    pthread_rwlock_init(&a->lock, NULL);
    if (keys && !(a->keys = embd_keyset_load(o->api_keys_file, err, errlen))) goto fail;
    a->keys_on = keys;
    if (hmac) {
        if (!(a->secret = load_secret(o->hmac_secret_file, &a->secret_len, err, errlen))) goto fail;
        if (!(a->replay = embd_replay_new(o->replay_cache_max))) {
            embd_fail(err, errlen, "out of memory for the replay cache");
            goto fail;
        }
    }
    snprintf(a->mode, sizeof a->mode, "%s",
             keys && hmac ? "api_keys+hmac" : keys ? "api_keys" : hmac ? "hmac" : "none (insecure)");
    return a;
fail:
    embd_auth_free(a);
    return NULL;
}

void embd_auth_free(embd_auth *a) {
    if (!a) return;
    embd_keyset_free(a->keys);
    if (a->secret) OPENSSL_cleanse(a->secret, a->secret_len);
    free(a->secret);
    embd_replay_free(a->replay);
    pthread_rwlock_destroy(&a->lock);
    free(a);
}

int embd_auth_reload(embd_auth *a, char *err, size_t errlen) {
    if (!a->keys_on) return embd_fail(err, errlen, "no --api-keys-file to reload");
    embd_keyset *ks = embd_keyset_load(a->o.api_keys_file, err, errlen);
    if (!ks) return -1;
    pthread_rwlock_wrlock(&a->lock);
    embd_keyset *old = a->keys;
    a->keys = ks;
    pthread_rwlock_unlock(&a->lock);
    embd_keyset_free(old);
    return 0;
}

bool embd_auth_enabled(const embd_auth *a) { return a->keys_on || a->secret; }
const char *embd_auth_mode(const embd_auth *a) { return a->mode; }

json_t *embd_auth_info(const embd_auth *a) {
    pthread_rwlock_rdlock((pthread_rwlock_t *)&a->lock);
    size_t nk = embd_keyset_count(a->keys);
    pthread_rwlock_unlock((pthread_rwlock_t *)&a->lock);
    json_t *j = json_pack("{s:s, s:I, s:b, s:b, s:b}", "mode", a->mode, "api_keys", (json_int_t)nk, "hmac",
                          a->secret != NULL, "public_health", a->o.public_health || !embd_auth_enabled(a),
                          "public_metrics", a->o.public_metrics || !embd_auth_enabled(a));
    if (j && a->secret) {
        json_object_set_new(j, "hmac_window_s", json_real(a->o.hmac_window));
        json_object_set_new(j, "replay_cache_max", json_integer((json_int_t)a->o.replay_cache_max));
    }
    return j;
}

static int unauthorized(embd_api_error *e, const char *fmt, const char *arg) {
    embd_api_fail(e, 401, "unauthorized", -1, fmt, arg);
    return EMBD_AUTH_FAIL;
}

int embd_auth_check_headers(embd_auth *a, const embd_auth_req *r, int64_t now, embd_principal *who,
                            embd_api_error *e) {
    memset(who, 0, sizeof *who);
    who->rps = who->tpm = -1;
    if (!embd_auth_enabled(a)) {
        snprintf(who->name, sizeof who->name, "anonymous");
        who->scopes = EMBD_SCOPE_ALL;
        return EMBD_AUTH_OK;
    }
    if ((a->o.public_health && !strcmp(r->path, "/health")) || (a->o.public_metrics && !strcmp(r->path, "/metrics")))
        return EMBD_AUTH_OK; /* no name: not rate-limited either */
    bool sig = r->timestamp || r->signature;
    if (!r->authorization && !sig)
        return unauthorized(e, "missing credentials: send %s",
                            a->keys_on && a->secret ? "'Authorization: Bearer <key>' or a signed request"
                            : a->keys_on            ? "'Authorization: Bearer <key>'"
                                                 : "a signed request (X-Embd-Timestamp, X-Embd-Signature)");
    unsigned need = embd_route_scope(r->path);
    if (r->authorization) {
        const char *tok;
        size_t len;
        if (embd_bearer_parse(r->authorization, &tok, &len))
            return unauthorized(e, "%s", "malformed Authorization header: expected 'Bearer <key>'");
        pthread_rwlock_rdlock(&a->lock);
        bool ok = a->keys && embd_keyset_find(a->keys, tok, len, who);
        pthread_rwlock_unlock(&a->lock);
        if (!ok) return unauthorized(e, "%s", "invalid credentials");
        if (need && !(who->scopes & need)) {
            embd_api_fail(e, 403, "forbidden", -1, "key '%s' may not use %s: it needs the '%s' scope", who->name,
                          r->path, embd_scope_name(need));
            return EMBD_AUTH_FAIL;
        }
    }
    if (!sig) return EMBD_AUTH_OK;
    if (!a->secret) return unauthorized(e, "%s", "invalid credentials: this server does not take signed requests");
    int64_t ts;
    unsigned char s[32];
    if (!r->timestamp || !r->signature)
        return unauthorized(e, "%s", "a signed request needs both X-Embd-Timestamp and X-Embd-Signature");
    if (embd_sig_timestamp_parse(r->timestamp, &ts))
        return unauthorized(e, "%s", "malformed X-Embd-Timestamp: expected Unix seconds");
    if (embd_sig_hex_parse(r->signature, s))
        return unauthorized(e, "%s", "malformed X-Embd-Signature: expected 64 hex digits");
    if (ts < now - (int64_t)a->o.hmac_window || ts > now + (int64_t)a->o.hmac_window) {
        char w[32];
        snprintf(w, sizeof w, "%.0f", a->o.hmac_window);
        return unauthorized(e, "stale request: X-Embd-Timestamp is more than %s s away from the server's clock", w);
    }
    if (!r->authorization) {
        snprintf(who->name, sizeof who->name, "hmac");
        who->scopes = EMBD_SCOPE_ALL;
    }
    return EMBD_AUTH_NEED_BODY;
}

int embd_auth_check_body(embd_auth *a, const embd_auth_req *r, const char *body, size_t len, int64_t now,
                         embd_principal *who, embd_api_error *e) {
    (void)who;
    int64_t ts;
    unsigned char got[32], want[32];
    if (!a->secret || !r->timestamp || !r->signature || embd_sig_timestamp_parse(r->timestamp, &ts) ||
        embd_sig_hex_parse(r->signature, got))
        return unauthorized(e, "%s", "invalid credentials");
    if (embd_sig_compute(a->secret, a->secret_len, r->method, r->path, body, len, r->timestamp, want)) {
        embd_api_fail(e, 503, "out_of_memory", -1, "out of memory");
        return EMBD_AUTH_FAIL;
    }
    if (CRYPTO_memcmp(got, want, 32)) return unauthorized(e, "%s", "invalid credentials");
    int64_t expires = ts + (int64_t)a->o.hmac_window;
    if (expires < now) return unauthorized(e, "%s", "stale request: the body arrived after the signature expired");
    int rc = embd_replay_add(a->replay, got, expires, now);
    if (rc == EMBD_REPLAY_SEEN) return unauthorized(e, "%s", "replayed request: this signature was already used");
    if (rc == EMBD_REPLAY_FULL) {
        embd_api_fail(e, 503, "replay_cache_full", -1, "too many signed requests in the window; retry shortly");
        return EMBD_AUTH_FAIL;
    }
    return EMBD_AUTH_OK;
}
