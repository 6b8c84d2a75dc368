/* Who may call `embd serve`: API keys (bearer tokens, per-key scopes), HMAC-signed requests with a
 * replay cache, and the route -> scope map. Independent of the HTTP library: the server hands in
 * header values and the body, gets back a principal or a client error.
 *
 * Keys file, one key per line (blank lines and `#` comments ignored):
 *     NAME  KEY  SCOPES  [rps=N] [tpm=N]
 * NAME: 1-63 of [A-Za-z0-9_.@-], unique. KEY: the bearer token itself (16-256 characters of
 * [A-Za-z0-9-._~+/=]) or `sha256:` + its SHA-256 in hex, so the file need not hold the secret.
 * SCOPES: comma-separated embed,rerank,jobs,collections,admin, or `*` for all. rps/tpm: this
 * key's request/s and input tokens/min limits (0 = unlimited), overriding the server's flags.
 * Only SHA-256 digests are kept in memory; a presented token is hashed and compared with every
 * key in constant time (CRYPTO_memcmp). */
#ifndef EMBD_AUTH_H
#define EMBD_AUTH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/api.h"

enum {
    EMBD_SCOPE_EMBED = 1,
    EMBD_SCOPE_RERANK = 2,
    EMBD_SCOPE_JOBS = 4,
    EMBD_SCOPE_COLLECTIONS = 8,
    EMBD_SCOPE_ADMIN = 16,
    EMBD_SCOPE_ALL = 31,
};
#define EMBD_KEY_NAME_MAX 64

/* A caller that passed authentication. rps/tpm < 0: use the server-wide limits. */
typedef struct {
    char name[EMBD_KEY_NAME_MAX];
    unsigned scopes;
    double rps, tpm;
} embd_principal;

/* ---- keys file ---------------------------------------------------------------------------- */
typedef struct embd_keyset embd_keyset;

/* Parses a keys file's text. NULL with err ("line N: ...") on any malformed line, a duplicate
 * name or key, or a file without keys. */
embd_keyset *embd_keyset_parse(const char *text, size_t len, char *err, size_t errlen);
embd_keyset *embd_keyset_load(const char *path, char *err, size_t errlen);
void embd_keyset_free(embd_keyset *ks);
size_t embd_keyset_count(const embd_keyset *ks);
/* The key whose digest matches token (every key is compared, in constant time); false if none. */
bool embd_keyset_find(const embd_keyset *ks, const char *token, size_t len, embd_principal *out);

/* "embed,rerank" -> mask; 0 when a name is unknown. */
unsigned embd_scopes_parse(const char *s, size_t len);
/* The scope a request path needs: 0 for paths any valid credential may use. */
unsigned embd_route_scope(const char *path);
const char *embd_scope_name(unsigned one_scope);

/* `Authorization` value -> the bearer token (pointer into value). -1 when it is not
 * "Bearer <token68>" (scheme case-insensitive, surrounding spaces allowed). */
int embd_bearer_parse(const char *value, const char **tok, size_t *len);

/* ---- HMAC request signing ----------------------------------------------------------------- */
/* X-Embd-Timestamp: 1-12 decimal digits (Unix seconds). */
int embd_sig_timestamp_parse(const char *s, int64_t *ts);
/* X-Embd-Signature: 64 hex digits (either case) -> 32 bytes. */
int embd_sig_hex_parse(const char *s, unsigned char out[32]);
/* HMAC-SHA256(secret, METHOD|PATH|hex(SHA256(body))|TIMESTAMP). ts_text is the header as sent. */
int embd_sig_compute(const unsigned char *secret, size_t secret_len, const char *method, const char *path,
                     const char *body, size_t body_len, const char *ts_text, unsigned char out[32]);

/* Signatures seen inside the window. Each entry lives until its timestamp leaves the window, and
 * at most cap entries are held. */
typedef struct embd_replay embd_replay;
embd_replay *embd_replay_new(size_t cap);
void embd_replay_free(embd_replay *r);
enum { EMBD_REPLAY_NEW, EMBD_REPLAY_SEEN, EMBD_REPLAY_FULL };
/* Records sig (valid until expires, Unix seconds) unless already there; expired entries are
 * dropped first when needed. */
int embd_replay_add(embd_replay *r, const unsigned char sig[32], int64_t expires, int64_t now);
size_t embd_replay_count(embd_replay *r);

/* ---- the server's view -------------------------------------------------------------------- */
typedef struct {
    const char *api_keys_file;
    const char *hmac_secret_file;
    bool insecure;           /* serve without credentials when neither of the above is given */
    bool public_health, public_metrics;
    double hmac_window;      /* seconds either side of now */
    size_t replay_cache_max; /* signatures remembered */
} embd_auth_opts;

typedef struct embd_auth embd_auth;

/* Loads the keys file and the secret. NULL with err when one cannot be used, or when neither is
 * given without o->insecure. */
embd_auth *embd_auth_new(const embd_auth_opts *o, char *err, size_t errlen);
void embd_auth_free(embd_auth *a);
/* SIGHUP: loads the keys file again and swaps it in; on error the old keys stay. */
int embd_auth_reload(embd_auth *a, char *err, size_t errlen);
bool embd_auth_enabled(const embd_auth *a);
/* "api_keys", "api_keys+hmac", "hmac" or "none (insecure)". */
const char *embd_auth_mode(const embd_auth *a);
json_t *embd_auth_info(const embd_auth *a);

/* Request headers as the client sent them (NULL when absent). */
typedef struct {
    const char *method, *path;
    const char *authorization, *timestamp, *signature;
} embd_auth_req;

enum { EMBD_AUTH_OK, EMBD_AUTH_NEED_BODY, EMBD_AUTH_FAIL };
/* First look, before the body is read: public paths, bearer keys and scopes, the signature
 * headers' form and the timestamp window. EMBD_AUTH_NEED_BODY: a signed request whose HMAC is
 * checked by embd_auth_check_body once the body is complete. EMBD_AUTH_FAIL: e is the answer
 * (401: missing or invalid credentials, the caller adds WWW-Authenticate; 403: wrong scope). */
int embd_auth_check_headers(embd_auth *a, const embd_auth_req *r, int64_t now, embd_principal *who,
                            embd_api_error *e);
/* The HMAC over the complete body, then the replay cache (401 replayed, 503 cache full). */
int embd_auth_check_body(embd_auth *a, const embd_auth_req *r, const char *body, size_t len, int64_t now,
                         embd_principal *who, embd_api_error *e);

#endif
