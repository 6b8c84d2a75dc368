/* Concurrent image downloads with libcurl's multi interface.
 *
 * SSRF: every socket curl opens goes through open_socket, which sees the address curl is about to
 * connect to (after DNS, for each redirect hop and each happy-eyeballs attempt) and refuses
 * non-public ones unless allowed; checking the URL's host name instead would miss DNS rebinding
 * and redirects. Proxies from the environment are switched off: through a proxy the address seen
 * here would be the proxy's, not the target's. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <curl/curl.h>

#include "image/fetch.h"
#include "util/sys.h"

void embd_fetch_opts_default(embd_fetch_opts *o) {
    *o = (embd_fetch_opts){.concurrency = 8, .timeout_ms = 30000, .max_bytes = (size_t)10 << 20, .max_redirects = 3,
                             .retries = 2};
}

void embd_fetch_item_clear(embd_fetch_item *it) {
    free(it->data);
    it->data = NULL;
    it->len = 0;
    it->http_status = 0;
    it->error[0] = 0;
}

typedef struct {
    embd_fetch_item *it;
    CURL *h;
    const embd_fetch_opts *o;
    uint8_t *buf;
    size_t len, cap;
    bool too_big;
    const char *refused; /* class of the address open_socket refused */
    char curl_err[CURL_ERROR_SIZE];
    int attempts;    /* started so far */
    double deadline; /* embd_now() by which every attempt must be over (timeout_ms from the first) */
    double retry_at; /* > 0: out of the multi handle, to be added again then */
} xfer;

static size_t on_write(char *p, size_t size, size_t nmemb, void *ud) {
    xfer *x = ud;
    size_t n = size * nmemb;
    if (n > x->o->max_bytes - x->len) {
        x->too_big = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (x->len + n > x->cap) {
        curl_off_t cl = -1;
        curl_easy_getinfo(x->h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
        size_t cap = x->cap ? 2 * x->cap : 65536;
        if (cl > 0 && (size_t)cl <= x->o->max_bytes && (size_t)cl > cap) cap = (size_t)cl;
        if (cap < x->len + n) cap = x->len + n;
        if (cap > x->o->max_bytes) cap = x->o->max_bytes;
        uint8_t *nb = realloc(x->buf, cap);
        if (!nb) return 0;
        x->buf = nb;
        x->cap = cap;
    }
    memcpy(x->buf + x->len, p, n);
    x->len += n;
    return n;
}

static curl_socket_t open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a) {
    xfer *x = ud;
    if (!x->o->allow_private) {
        const char *why = purpose == CURLSOCKTYPE_IPCXN ? embd_addr_nonpublic(&a->addr) : "not an IP address";
        if (why) {
            x->refused = why;
            return CURL_SOCKET_BAD;
        }
    }
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

static bool http_url(const char *u) { return !strncasecmp(u, "http://", 7) || !strncasecmp(u, "https://", 8); }

static int setup(xfer *x) {
    CURL *h = x->h = curl_easy_init();
    if (!h) return -1;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                                                  \
    if (rc == CURLE_OK) rc = curl_easy_setopt(h, opt, val)
    SET(CURLOPT_URL, x->it->url);
    SET(CURLOPT_PRIVATE, x);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 1L);
    SET(CURLOPT_MAXREDIRS, (long)x->o->max_redirects);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)x->o->max_bytes); /* refuses a larger Content-Length up front */
    SET(CURLOPT_WRITEFUNCTION, on_write);
    SET(CURLOPT_WRITEDATA, x);
    SET(CURLOPT_OPENSOCKETFUNCTION, open_socket);
    SET(CURLOPT_OPENSOCKETDATA, x);
    SET(CURLOPT_PROXY, ""); /* no proxy from the environment: the guard must see the real peer */
    SET(CURLOPT_FAILONERROR, 1L);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_ERRORBUFFER, x->curl_err);
    SET(CURLOPT_USERAGENT, "embd/" EMBD_VERSION);
#undef SET
    return rc == CURLE_OK ? 0 : -1;
}

/* Failures worth another attempt: the connection broke or the server said "later". Not refused
 * addresses, size limits, timeouts (the budget is spent) or redirect and protocol errors. */
static bool transient(const xfer *x, CURLcode rc) {
    long status = 0;
    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);
    if (x->refused || x->too_big) return false;
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        return true;
    case CURLE_HTTP_RETURNED_ERROR:
        return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
    default:
        return false;
    }
}

/* Adds the transfer to m for its next attempt, with what is left of its time. */
static int start(CURLM *m, xfer *x) {
    double left_ms = (x->deadline - embd_now()) * 1e3;
    x->attempts++;
    x->len = 0;
    x->refused = NULL;
    x->curl_err[0] = 0;
    if (curl_easy_setopt(x->h, CURLOPT_TIMEOUT_MS, left_ms < 1 ? 1L : (long)left_ms) != CURLE_OK) return -1;
    return curl_multi_add_handle(m, x->h) == CURLM_OK ? 0 : -1;
}

static void finish(xfer *x, CURLcode rc) {
    embd_fetch_item *it = x->it;
    long status = 0;
    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);
    it->http_status = (int)status;
    const embd_fetch_opts *o = x->o;
    /* a refused address fails the connect only if no other address of the host was allowed */
    if (x->refused && rc == CURLE_COULDNT_CONNECT)
        snprintf(it->error, sizeof it->error,
                 "refused to connect to a %s address (only public addresses are allowed)", x->refused);
    else if (x->too_big || rc == CURLE_FILESIZE_EXCEEDED)
        snprintf(it->error, sizeof it->error, "image larger than the limit of %zu bytes", o->max_bytes);
    else if (rc == CURLE_OPERATION_TIMEDOUT)
        snprintf(it->error, sizeof it->error, "download timed out after %ld ms", o->timeout_ms);
    else if (rc == CURLE_TOO_MANY_REDIRECTS)
        snprintf(it->error, sizeof it->error, "too many redirects (more than %d)", o->max_redirects);
    else if (rc == CURLE_UNSUPPORTED_PROTOCOL)
        snprintf(it->error, sizeof it->error, "redirected to an unsupported protocol (only http and https)");
    else if (rc == CURLE_HTTP_RETURNED_ERROR || (rc == CURLE_OK && (status < 200 || status > 299)))
        snprintf(it->error, sizeof it->error, "HTTP status %ld", status);
    else if (rc != CURLE_OK)
        snprintf(it->error, sizeof it->error, "download failed: %.200s", x->curl_err[0] ? x->curl_err : curl_easy_strerror(rc));
    if (it->error[0] && x->attempts > 1) {
        size_t l = strlen(it->error);
        snprintf(it->error + l, sizeof it->error - l, " (%d attempts)", x->attempts);
    }
    if (it->error[0]) {
        free(x->buf);
    } else {
        it->data = x->buf ? x->buf : malloc(1); /* an empty body is for the decoder to refuse */
        it->len = x->len;
        if (!it->data) snprintf(it->error, sizeof it->error, "out of memory");
    }
    x->buf = NULL;
}

int embd_fetch_all(embd_fetch_item *items, size_t n, const embd_fetch_opts *o) {
    for (size_t i = 0; i < n; i++) {
        items[i].data = NULL;
        items[i].len = 0;
        items[i].http_status = 0;
        items[i].error[0] = 0;
    }
    if (n == 0) return 0;
    pthread_once(&curl_once, curl_init);
    xfer *xs = calloc(n, sizeof *xs);
    CURLM *m = curl_init_rc == CURLE_OK ? curl_multi_init() : NULL;
    if (!xs || !m) {
        for (size_t i = 0; i < n; i++) snprintf(items[i].error, sizeof items[i].error, "cannot set up downloads");
        free(xs);
        if (m) curl_multi_cleanup(m);
        return -1;
    }
    size_t next = 0, active = 0, conc = o->concurrency > 0 ? (size_t)o->concurrency : 1;
    for (;;) {
        while (active < conc && next < n) {
            xfer *x = &xs[next];
            x->it = &items[next++];
            x->o = o;
            x->deadline = embd_now() + (double)o->timeout_ms / 1e3;
            if (!x->it->url || !http_url(x->it->url)) {
                snprintf(x->it->error, sizeof x->it->error, "only http and https URLs are supported");
            } else if (setup(x) || start(m, x)) {
                snprintf(x->it->error, sizeof x->it->error, "cannot set up the download");
                curl_easy_cleanup(x->h);
                x->h = NULL;
            } else {
                active++;
            }
        }
        /* retries whose backoff is over go back in; the earliest other one bounds the wait below */
        double now = embd_now(), wake = 0;
        for (size_t i = 0; i < next; i++) {
            xfer *x = &xs[i];
            if (x->retry_at <= 0) continue;
            if (x->retry_at > now) {
                if (!wake || x->retry_at < wake) wake = x->retry_at;
                continue;
            }
            x->retry_at = 0;
            if (start(m, x)) {
                snprintf(x->it->error, sizeof x->it->error, "cannot set up the download");
                free(x->buf);
                x->buf = NULL;
                curl_easy_cleanup(x->h);
                x->h = NULL;
                active--;
            }
        }
        if (!active) break;
        int running = 0, left;
        curl_multi_perform(m, &running);
        bool done = false;
        for (CURLMsg *msg; (msg = curl_multi_info_read(m, &left));) {
            if (msg->msg != CURLMSG_DONE) continue;
            char *priv = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
            xfer *x = (xfer *)priv;
            CURLcode rc = msg->data.result;
            curl_multi_remove_handle(m, x->h);
            done = true;
            /* backoff 0.25 s, 0.5 s, 1 s ... with jitter, if the item's time allows it */
            double wait = 0.25 * (double)(1u << (x->attempts - 1 < 8 ? x->attempts - 1 : 8)) *
                          (0.75 + 0.5 * (double)rand() / RAND_MAX);
            if (x->attempts <= o->retries && transient(x, rc) && embd_now() + wait + 0.1 < x->deadline) {
                x->retry_at = embd_now() + wait;
                continue;
            }
            finish(x, rc);
            curl_easy_cleanup(x->h);
            x->h = NULL;
            active--;
        }
        if (!done) {
            long ms = 1000;
            if (wake) {
                double d = (wake - embd_now()) * 1e3 + 1;
                if (d < ms) ms = d < 1 ? 1 : (long)d;
            }
            curl_multi_poll(m, NULL, 0, (int)ms, NULL);
        }
    }
    curl_multi_cleanup(m);
    free(xs);
    return 0;
}
