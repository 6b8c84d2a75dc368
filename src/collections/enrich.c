#include "collections/enrich.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/sys.h"

enum {
    MAX_ENDPOINTS = 16,
    MAX_URL = 2048,
    MAX_MODEL = 256,
    MAX_KEY = 1024,
    MAX_PROMPT = 16384,
    MAX_REPLY = 1 << 20, /* bytes of one HTTP reply; more is an error */
};

/* ---- configuration ---------------------------------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

void embd_enrich_free(embd_enrich_cfg *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n_ep; i++) free(c->ep[i].url), free(c->ep[i].model), free(c->ep[i].api_key);
    free(c->ep);
    free(c->prompt);
    free(c);
}

static int get_int(const json_t *o, const char *key, int lo, int hi, int def, int *v, char *err, size_t errlen) {
    json_t *x = json_object_get(o, key);
    if (!x || json_is_null(x)) return *v = def, 0;
    if (!json_is_integer(x) || json_integer_value(x) < lo || json_integer_value(x) > hi)
        return embd_fail(err, errlen, "enrich.%s must be an integer in [%d, %d]", key, lo, hi);
    *v = (int)json_integer_value(x);
    return 0;
}

/* Every {{name}} in the template is one we fill, and {{chunk}} is among them. */
static int check_template(const char *t, char *err, size_t errlen) {
    static const char *const names[] = {"chunk", "document", "title", "id"};
    bool chunk = false;
    for (const char *p = strstr(t, "{{"); p; p = strstr(p + 2, "{{")) {
        const char *q = strstr(p + 2, "}}");
        size_t nl = q ? (size_t)(q - p - 2) : 0;
        bool known = false;
        for (size_t i = 0; q && i < 4; i++) known |= strlen(names[i]) == nl && !strncmp(p + 2, names[i], nl);
        if (!known)
            return embd_fail(err, errlen, "enrich.prompt: unknown placeholder '%.40s' (use {{chunk}}, {{document}}, {{title}}, {{id}})", p);
        chunk |= nl == 5 && !strncmp(p + 2, "chunk", 5);
    }
    return chunk ? 0 : embd_fail(err, errlen, "enrich.prompt must contain {{chunk}}");
}

/* An http(s) URL with a host, no query or fragment; stored without a trailing slash. */
static char *check_url(const char *s, char *err, size_t errlen) {
    if (!*s || strlen(s) > MAX_URL || strpbrk(s, " \t\r\n")) {
        embd_fail(err, errlen, "enrich.endpoints[].url must be an http:// or https:// URL of at most %d bytes", MAX_URL);
        return NULL;
    }
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *query = NULL, *frag = NULL, *out = NULL;
    bool ok = u && !curl_url_set(u, CURLUPART_URL, s, 0) && !curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) &&
              !curl_url_get(u, CURLUPART_HOST, &host, 0) && (!strcmp(scheme, "http") || !strcmp(scheme, "https")) &&
              *host && curl_url_get(u, CURLUPART_QUERY, &query, 0) && curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0);
    if (!ok) embd_fail(err, errlen, "enrich.endpoints[].url '%.200s' is not an http:// or https:// URL (base, no query)", s);
    else if ((out = strdup(s))) {
        size_t n = strlen(out);
        while (n && out[n - 1] == '/') out[--n] = 0;
    } else embd_fail(err, errlen, "out of memory");
    curl_free(scheme), curl_free(host), curl_free(query), curl_free(frag);
    curl_url_cleanup(u);
    return out;
}

static int parse_endpoint(const json_t *e, size_t i, embd_enrich_endpoint *out, char *err, size_t errlen) {
    if (!json_is_object(e)) return embd_fail(err, errlen, "enrich.endpoints[%zu] must be an object", i);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)e, key, v) {
        if (strcmp(key, "url") && strcmp(key, "api") && strcmp(key, "model") && strcmp(key, "api_key"))
            return embd_fail(err, errlen, "enrich.endpoints[%zu]: unknown field '%.64s'", i, key);
    }
    json_t *url = json_object_get(e, "url"), *api = json_object_get(e, "api"), *model = json_object_get(e, "model"),
           *k = json_object_get(e, "api_key");
    if (!json_is_string(url)) return embd_fail(err, errlen, "enrich.endpoints[%zu].url (string) is required", i);
    const char *a = api && !json_is_null(api) ? json_string_value(api) : "openai";
    if (!a || (strcmp(a, "openai") && strcmp(a, "ollama")))
        return embd_fail(err, errlen, "enrich.endpoints[%zu].api must be \"openai\" or \"ollama\"", i);
    out->api = !strcmp(a, "ollama") ? EMBD_ENRICH_OLLAMA : EMBD_ENRICH_OPENAI;
    if (!json_is_string(model) || !json_string_length(model) || json_string_length(model) > MAX_MODEL)
        return embd_fail(err, errlen, "enrich.endpoints[%zu].model must be a string of 1-%d bytes", i, MAX_MODEL);
    if (k && !json_is_null(k) &&
        (!json_is_string(k) || !json_string_length(k) || json_string_length(k) > MAX_KEY ||
         strpbrk(json_string_value(k), "\r\n") || memchr(json_string_value(k), 0, json_string_length(k))))
        return embd_fail(err, errlen, "enrich.endpoints[%zu].api_key must be a string of 1-%d bytes without line breaks", i, MAX_KEY);
    if (!(out->url = check_url(json_string_value(url), err, errlen))) return -1;
    out->model = strdup(json_string_value(model));
    out->api_key = json_is_string(k) ? strdup(json_string_value(k)) : NULL;
    if (!out->model || (json_is_string(k) && !out->api_key)) return embd_fail(err, errlen, "out of memory");
    return 0;
}

embd_enrich_cfg *embd_enrich_parse(const json_t *j, char *err, size_t errlen) {
    if (!json_is_object(j)) {
        embd_fail(err, errlen, "'enrich' must be an object {\"endpoints\": [...], ...}");
        return NULL;
    }
    static const char *const known[] = {"endpoints", "prompt", "max_tokens", "concurrency", "timeout_ms", "retries",
                                        "document_bytes"};
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)j, key, v) {
        bool ok = false;
        for (size_t i = 0; i < sizeof known / sizeof *known; i++) ok |= !strcmp(key, known[i]);
        if (!ok) {
            embd_fail(err, errlen, "enrich: unknown option '%.64s'", key);
            return NULL;
        }
    }
    json_t *eps = json_object_get(j, "endpoints"), *prompt = json_object_get(j, "prompt");
    size_t n = json_array_size(eps);
    if (!json_is_array(eps) || !n || n > MAX_ENDPOINTS) {
        embd_fail(err, errlen, "enrich.endpoints must be an array of 1-%d endpoints", MAX_ENDPOINTS);
        return NULL;
    }
    if (prompt && !json_is_null(prompt) && (!json_is_string(prompt) || json_string_length(prompt) > MAX_PROMPT ||
                                            memchr(json_string_value(prompt), 0, json_string_length(prompt)))) {
        embd_fail(err, errlen, "enrich.prompt must be a string of at most %d bytes", MAX_PROMPT);
        return NULL;
    }
    embd_enrich_cfg *c = calloc(1, sizeof *c);
    if (!c || !(c->ep = calloc(n, sizeof *c->ep))) {
        free(c);
        embd_fail(err, errlen, "out of memory");
        return NULL;
    }
    const char *p = json_is_string(prompt) ? json_string_value(prompt) : EMBD_ENRICH_DEFAULT_PROMPT;
    int rc = check_template(p, err, errlen);
    if (!rc && !(c->prompt = strdup(p))) rc = embd_fail(err, errlen, "out of memory");
    for (size_t i = 0; i < n && !rc; i++, c->n_ep++) rc = parse_endpoint(json_array_get(eps, i), i, &c->ep[i], err, errlen);
    if (!rc) rc = get_int(j, "max_tokens", 1, 4096, 128, &c->max_tokens, err, errlen);
    if (!rc) rc = get_int(j, "concurrency", 1, 64, 4, &c->concurrency, err, errlen);
    if (!rc) rc = get_int(j, "timeout_ms", 100, 600000, 30000, &c->timeout_ms, err, errlen);
    if (!rc) rc = get_int(j, "retries", 0, 10, 2, &c->retries, err, errlen);
    if (!rc) rc = get_int(j, "document_bytes", 0, 1 << 20, 8000, &c->document_bytes, err, errlen);
    if (rc) {
        embd_enrich_free(c);
        return NULL;
    }
    return c;
}

json_t *embd_enrich_json(const embd_enrich_cfg *c, bool redact) {
    json_t *eps = json_array();
    for (size_t i = 0; i < c->n_ep; i++) {
        const embd_enrich_endpoint *e = &c->ep[i];
        json_t *o = json_pack("{s:s, s:s, s:s}", "url", e->url, "api", e->api == EMBD_ENRICH_OLLAMA ? "ollama" : "openai",
                              "model", e->model);
        if (o && redact) json_object_set_new(o, "api_key_set", json_boolean(e->api_key != NULL));
        else if (o && e->api_key) json_object_set_new(o, "api_key", json_string(e->api_key));
        json_array_append_new(eps, o);
    }
    return json_pack("{s:o, s:s, s:i, s:i, s:i, s:i, s:i}", "endpoints", eps, "prompt", c->prompt, "max_tokens",
                     c->max_tokens, "concurrency", c->concurrency, "timeout_ms", c->timeout_ms, "retries", c->retries,
                     "document_bytes", c->document_bytes);
}

/* ---- one call --------------------------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

static bool sb_add(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return false;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return true;
}

char *embd_enrich_prompt(const embd_enrich_cfg *c, const embd_enrich_item *it) {
    size_t dl = it->doc_len;
    if (dl > (size_t)c->document_bytes) { /* cut at a UTF-8 boundary */
        dl = (size_t)c->document_bytes;
        while (dl && ((unsigned char)it->doc[dl] & 0xC0) == 0x80) dl--;
    }
    sbuf b = {0};
    bool ok = sb_add(&b, "", 0);
    const char *t = c->prompt;
    for (const char *p; ok && (p = strstr(t, "{{"));) {
        const char *q = strstr(p + 2, "}}");
        if (!q) break;
        ok = sb_add(&b, t, (size_t)(p - t));
        size_t nl = (size_t)(q - p - 2);
        const char *name = p + 2;
        if (nl == 5 && !strncmp(name, "chunk", 5)) ok = ok && sb_add(&b, it->chunk, it->chunk_len);
        else if (nl == 8 && !strncmp(name, "document", 8)) ok = ok && sb_add(&b, it->doc, dl);
        else if (nl == 5 && !strncmp(name, "title", 5)) ok = ok && sb_add(&b, it->title ? it->title : it->id, strlen(it->title ? it->title : it->id));
        else if (nl == 2 && !strncmp(name, "id", 2)) ok = ok && sb_add(&b, it->id, strlen(it->id));
        else ok = ok && sb_add(&b, p, (size_t)(q + 2 - p)); /* not ours (parse refuses these): verbatim */
        t = q + 2;
    }
    if (ok) ok = sb_add(&b, t, strlen(t));
    if (!ok) free(b.p);
    return ok ? b.p : NULL;
}

char *embd_enrich_url(const embd_enrich_endpoint *e) {
    char *s = NULL;
    if (asprintf(&s, "%s%s", e->url, e->api == EMBD_ENRICH_OLLAMA ? "/api/chat" : "/v1/chat/completions") < 0) return NULL;
    return s;
}

char *embd_enrich_body(const embd_enrich_cfg *c, const embd_enrich_endpoint *e, const char *prompt) {
    json_t *msgs = json_pack("[{s:s, s:s}]", "role", "user", "content", prompt);
    json_t *j;
    /* temperature 0: the same chunk gets the same context on a re-ingest (where the model allows) */
    if (e->api == EMBD_ENRICH_OLLAMA)
        j = json_pack("{s:s, s:o, s:b, s:{s:i, s:i}}", "model", e->model, "messages", msgs, "stream", 0, "options",
                      "num_predict", c->max_tokens, "temperature", 0);
    else
        j = json_pack("{s:s, s:o, s:i, s:i, s:b}", "model", e->model, "messages", msgs, "max_tokens", c->max_tokens,
                      "temperature", 0, "stream", 0);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

int embd_enrich_reply(embd_enrich_api api, const char *body, size_t len, char **text, char *err, size_t errlen) {
    *text = NULL;
    json_error_t je;
    json_t *j = json_loadb(body, len, 0, &je);
    if (!j) return embd_fail(err, errlen, "the reply is not JSON: %s", je.text);
    json_t *msg = api == EMBD_ENRICH_OLLAMA ? json_object_get(j, "message")
                                             : json_object_get(json_array_get(json_object_get(j, "choices"), 0), "message");
    const char *s = json_string_value(json_object_get(msg, "content"));
    int rc = 0;
    if (!s) {
        rc = embd_fail(err, errlen, "the reply has no %s",
                       api == EMBD_ENRICH_OLLAMA ? "message.content" : "choices[0].message.content");
    } else {
        size_t n = json_string_length(json_object_get(msg, "content"));
        while (n && strchr(" \t\r\n", s[n - 1])) n--;
        while (n && strchr(" \t\r\n", *s)) s++, n--;
        if (!n) rc = embd_fail(err, errlen, "the reply's text is empty");
        else if (memchr(s, 0, n)) rc = embd_fail(err, errlen, "the reply's text contains a NUL character");
        else if (!(*text = strndup(s, n))) rc = embd_fail(err, errlen, "out of memory");
    }
    json_decref(j);
    return rc;
}

/* ---- many calls at once ----------------------------------------------------------------------- */

typedef struct {
    CURL *h;
    struct curl_slist *hdr;
    sbuf reply;
    size_t item, ep;
} xfer;

typedef struct {
    int attempts;
    size_t ep;         /* of the last call */
    double not_before; /* backoff: no retry before this */
} item_state;

static size_t on_data(char *p, size_t sz, size_t nm, void *ud) {
    sbuf *b = ud;
    size_t n = sz * nm;
    if (b->n + n > MAX_REPLY || !sb_add(b, p, n)) return 0; /* aborts: CURLE_WRITE_ERROR */
    return n;
}

static void xfer_end(CURLM *m, xfer *x) {
    curl_multi_remove_handle(m, x->h);
    curl_easy_cleanup(x->h);
    curl_slist_free_all(x->hdr);
    free(x->reply.p);
    free(x);
}

static xfer *xfer_start(CURLM *m, const embd_enrich_cfg *c, const embd_enrich_endpoint *e, const embd_enrich_item *it,
                        size_t item) {
    xfer *x = calloc(1, sizeof *x);
    char *prompt = embd_enrich_prompt(c, it), *url = embd_enrich_url(e), *body = prompt ? embd_enrich_body(c, e, prompt) : NULL;
    bool ok = x && url && body && (x->h = curl_easy_init());
    if (ok) {
        x->item = item;
        x->hdr = curl_slist_append(NULL, "Content-Type: application/json");
        char auth[MAX_KEY + 32];
        if (e->api_key) {
            snprintf(auth, sizeof auth, "Authorization: Bearer %s", e->api_key);
            struct curl_slist *h2 = x->hdr ? curl_slist_append(x->hdr, auth) : NULL;
            if (h2) x->hdr = h2;
            else ok = false;
        }
        ok = ok && x->hdr;
    }
    if (ok) {
        CURL *h = x->h;
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, x->hdr);
        curl_easy_setopt(h, CURLOPT_COPYPOSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &x->reply);
        curl_easy_setopt(h, CURLOPT_USERAGENT, "embd/" EMBD_VERSION);
        ok = curl_multi_add_handle(m, h) == CURLM_OK;
    }
    free(prompt), free(url), free(body);
    if (!ok && x) {
        if (x->h) curl_easy_cleanup(x->h);
        curl_slist_free_all(x->hdr);
        free(x);
        x = NULL;
    }
    return x;
}

/* Transport failures and overload answers are worth another try; a 4xx or a malformed reply is not. */
static bool retryable(CURLcode res, long code) {
    if (res != CURLE_OK)
        return res != CURLE_WRITE_ERROR && res != CURLE_UNSUPPORTED_PROTOCOL && res != CURLE_URL_MALFORMAT &&
               res != CURLE_OUT_OF_MEMORY;
    return code == 429 || code >= 500;
}

static double backoff(int attempt, uint64_t *rng) {
    *rng ^= *rng << 13, *rng ^= *rng >> 7, *rng ^= *rng << 17; /* xorshift: jitter */
    double base = 0.1 * (double)(1u << (attempt < 6 ? attempt : 6));
    if (base > 5) base = 5;
    return base * (0.5 + (double)(*rng % 1000) / 2000.0);
}

int embd_enrich_run(const embd_enrich_cfg *c, const embd_enrich_item *items, size_t n, const embd_enrich_run_opts *o,
                    char **contexts, embd_enrich_stats *st, char *err, size_t errlen) {
    static const embd_enrich_run_opts none = {0};
    if (!o) o = &none;
    for (size_t i = 0; i < n; i++) contexts[i] = NULL;
    if (!n) return 0;
    pthread_once(&curl_once, curl_init_once);
    CURLM *m = curl_multi_init();
    item_state *is = calloc(n, sizeof *is);
    xfer **live = calloc((size_t)c->concurrency, sizeof *live);
    size_t *retry = calloc(n, sizeof *retry); /* items waiting for their next try */
    if (!m || !is || !live || !retry) {
        curl_multi_cleanup(m);
        free(is), free(live), free(retry);
        return embd_fail(err, errlen, "out of memory");
    }
    size_t next = 0, n_retry = 0, done = 0, active = 0, rr = 0;
    uint64_t rng = (uint64_t)(embd_now() * 1e6) | 1;
    while (done < n) {
        if (o->stop && atomic_load(o->stop)) break;
        double now = embd_now();
        bool late = o->deadline > 0 && now > o->deadline;
        /* start calls: retries whose backoff is over first, then new items */
        while (active < (size_t)c->concurrency) {
            size_t item = SIZE_MAX;
            for (size_t k = 0; k < n_retry; k++)
                if (late || is[retry[k]].not_before <= now) {
                    item = retry[k];
                    retry[k] = retry[--n_retry];
                    break;
                }
            if (item == SIZE_MAX && next < n) item = next++;
            if (item == SIZE_MAX) break;
            if (late) { /* no time left: the chunk goes in plain */
                st->degraded++, done++;
                snprintf(st->last_error, sizeof st->last_error, "the ingest's time for enrichment ran out");
                if (o->progress) o->progress(o->ud, done);
                continue;
            }
            size_t ep = rr++ % c->n_ep;
            xfer *x = xfer_start(m, c, &c->ep[ep], &items[item], item);
            if (!x) { /* out of memory for this one call: it degrades */
                st->degraded++, done++;
                if (o->progress) o->progress(o->ud, done);
                continue;
            }
            x->ep = is[item].ep = ep;
            for (size_t k = 0; k < (size_t)c->concurrency; k++)
                if (!live[k]) {
                    live[k] = x;
                    break;
                }
            active++;
            st->calls++;
            if (is[item].attempts) st->retries++;
            is[item].attempts++;
            if (st->per_endpoint) st->per_endpoint[ep]++;
        }
        if (done == n) break;
        int running = 0;
        curl_multi_perform(m, &running);
        int left = 0;
        for (CURLMsg *msg; (msg = curl_multi_info_read(m, &left));) {
            if (msg->msg != CURLMSG_DONE) continue;
            xfer *x = NULL;
            size_t slot = 0;
            for (; slot < (size_t)c->concurrency; slot++)
                if (live[slot] && live[slot]->h == msg->easy_handle) {
                    x = live[slot];
                    break;
                }
            if (!x) continue;
            CURLcode res = msg->data.result;
            long code = 0;
            curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &code);
            size_t item = x->item;
            char why[200] = "";
            int failed = -1;
            if (res == CURLE_OK && code == 200)
                failed = embd_enrich_reply(c->ep[x->ep].api, x->reply.p ? x->reply.p : "", x->reply.n, &contexts[item],
                                           why, sizeof why);
            else if (res != CURLE_OK) snprintf(why, sizeof why, "%s", curl_easy_strerror(res));
            else snprintf(why, sizeof why, "HTTP %ld: %.120s", code, x->reply.p ? x->reply.p : "");
            live[slot] = NULL;
            xfer_end(m, x);
            active--;
            const bool again = failed && retryable(res, code) && is[item].attempts <= c->retries;
            if (failed) snprintf(st->last_error, sizeof st->last_error, "%s: %s", c->ep[is[item].ep].url, why);
            if (again) {
                is[item].not_before = embd_now() + backoff(is[item].attempts - 1, &rng);
                retry[n_retry++] = item;
                continue;
            }
            if (failed) st->degraded++;
            else st->enriched++;
            done++;
            if (o->progress) o->progress(o->ud, done);
        }
        if (done == n) break;
        /* sleep until a call has news, a backoff ends, or 100 ms pass (to see stop/deadline) */
        int wait_ms = 100;
        if (n_retry) {
            double soonest = 1e300;
            for (size_t k = 0; k < n_retry; k++)
                if (is[retry[k]].not_before < soonest) soonest = is[retry[k]].not_before;
            double d = (soonest - embd_now()) * 1000;
            wait_ms = d < 0 ? 0 : d < 100 ? (int)d + 1 : 100;
        }
        if (active || n_retry) curl_multi_poll(m, NULL, 0, wait_ms, NULL);
    }
    /* stopped: in-flight calls are dropped, everything unfinished goes in plain */
    for (size_t k = 0; k < (size_t)c->concurrency; k++)
        if (live[k]) xfer_end(m, live[k]);
    st->degraded += n - done;
    curl_multi_cleanup(m);
    free(is), free(live), free(retry);
    return 0;
}
