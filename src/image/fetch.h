/* Image sources from requests: concurrent downloads with libcurl's multi interface (timeouts,
 * size cap, bounded redirects, http/https only, no private/loopback/link-local peers unless
 * allowed: SSRF), data URIs and base64. */
#ifndef EMBD_FETCH_H
#define EMBD_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct {
    int concurrency;     /* downloads in flight at once (default 8) */
    long timeout_ms;     /* whole transfer of one item (default 30000) */
    size_t max_bytes;    /* body size cap (default 10 MiB) */
    int max_redirects;   /* default 3 */
    int retries;         /* further attempts after a transient failure (connection, 408/429/5xx), with
                          * exponential backoff, all inside timeout_ms (default 2) */
    bool allow_private;  /* allow loopback, private, link-local and other non-global peers */
} embd_fetch_opts;

void embd_fetch_opts_default(embd_fetch_opts *o);

typedef struct {
    const char *url;  /* in */
    uint8_t *data;    /* out: the body (malloc'd), NULL on error */
    size_t len;
    int http_status;  /* last HTTP status seen, 0 if none */
    char error[256];  /* "" on success, else a one-line reason for the client */
} embd_fetch_item;

/* Downloads every item, at most o->concurrency at once (a retry keeps its slot). Per-item failures
 * land in items[i].error.
 * Returns 0, or -1 if libcurl could not be set up (every item then carries the error). */
int embd_fetch_all(embd_fetch_item *items, size_t n, const embd_fetch_opts *o);
void embd_fetch_item_clear(embd_fetch_item *it);

/* NULL if sa (AF_INET or AF_INET6) is a public unicast address; else what it is, for messages:
 * "loopback", "private", "link-local", "shared (CGNAT)", "unspecified", "multicast", "reserved",
 * "not an IP address". IPv4-mapped, NAT64 (64:ff9b::/96) and 6to4 IPv6 addresses are judged by
 * the IPv4 address inside. embd_fetch_all applies it to every address it connects to. */
const char *embd_addr_nonpublic(const struct sockaddr *sa);

/* "data:[<mediatype>][;base64],<data>" (base64 only) or bare standard base64 (whitespace allowed,
 * '=' padding optional; the URL-safe alphabet is refused). Returns 0 with *out malloc'd, or -1
 * with err (also for no data at all). */
int embd_image_source_decode(const char *s, size_t len, uint8_t **out, size_t *out_len, char *err, size_t errlen);

#endif
