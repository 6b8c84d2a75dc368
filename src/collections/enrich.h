/* Chunk enrichment: before a chunk is embedded, a chat model (OpenAI-compatible
 * POST {url}/v1/chat/completions, or Ollama POST {url}/api/chat) writes a short context that
 * situates the chunk in its document; context + "\n\n" + chunk is what gets embedded, and the
 * context is stored with the chunk. Calls go round-robin over the endpoints through one libcurl
 * multi handle (bounded concurrency, per-call timeout, exponential backoff on connect errors,
 * timeouts, 5xx and 429). A chunk whose calls all fail keeps no context: it is embedded plain
 * ("degraded"), so an unreachable model never fails an ingest. */
#ifndef EMBD_ENRICH_H
#define EMBD_ENRICH_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum { EMBD_ENRICH_OPENAI, EMBD_ENRICH_OLLAMA } embd_enrich_api;

typedef struct {
    char *url; /* base URL (http or https), no trailing slash */
    embd_enrich_api api;
    char *model;
    char *api_key; /* sent as "Authorization: Bearer KEY"; NULL: none */
} embd_enrich_endpoint;

typedef struct {
    embd_enrich_endpoint *ep;
    size_t n_ep;
    char *prompt;       /* template: {{chunk}} {{document}} {{title}} {{id}} */
    int max_tokens;     /* of the reply */
    int concurrency;    /* calls in flight at once, over all endpoints */
    int timeout_ms;     /* per call (connect + reply) */
    int retries;        /* further tries after the first */
    int document_bytes; /* {{document}} is cut to this many bytes (at a UTF-8 boundary) */
} embd_enrich_cfg;

#define EMBD_ENRICH_DEFAULT_PROMPT                                                                            \
    "<document title=\"{{title}}\">\n{{document}}\n</document>\n"                                            \
    "Here is a chunk of that document:\n<chunk>\n{{chunk}}\n</chunk>\n"                                       \
    "Write one or two sentences of context that situate this chunk within the whole document, to improve " \
    "search retrieval of the chunk. Answer with the context only."

/* Validates the "enrich" option object ({"endpoints": [{"url", "api"?, "model", "api_key"?}],
 * "prompt"?, "max_tokens"?, "concurrency"?, "timeout_ms"?, "retries"?, "document_bytes"?}).
 * NULL with a message naming the bad field. */
embd_enrich_cfg *embd_enrich_parse(const json_t *j, char *err, size_t errlen);
void embd_enrich_free(embd_enrich_cfg *c);
/* The full configuration (stored with the collection); redact: api keys left out, "api_key_set"
 * says whether there was one (for responses). */
json_t *embd_enrich_json(const embd_enrich_cfg *c, bool redact);

typedef struct {
    const char *chunk;
    size_t chunk_len;
    const char *doc;
    size_t doc_len;
    const char *id;    /* document id */
    const char *title; /* the document's metadata "title", else its id */
} embd_enrich_item;

/* ---- the pieces of one call (unit-tested on their own) ---- */
char *embd_enrich_prompt(const embd_enrich_cfg *c, const embd_enrich_item *it); /* malloc'd; NULL: OOM */
/* The endpoint's full URL and JSON body for one prompt (malloc'd). */
char *embd_enrich_url(const embd_enrich_endpoint *e);
char *embd_enrich_body(const embd_enrich_cfg *c, const embd_enrich_endpoint *e, const char *prompt);
/* The reply's text (trimmed, malloc'd): choices[0].message.content (OpenAI) or message.content
 * (Ollama). -1 with err when the reply is not that shape or the text is empty. */
int embd_enrich_reply(embd_enrich_api api, const char *body, size_t len, char **text, char *err, size_t errlen);

typedef struct {
    size_t enriched, degraded; /* chunks */
    size_t calls, retries;     /* HTTP calls made, of which retries */
    size_t *per_endpoint;      /* calls per endpoint (n_ep entries; may be NULL) */
    char last_error[256];      /* why the last failed call failed */
} embd_enrich_stats;

typedef struct {
    double deadline;         /* embd_now() after which no call starts (its chunk degrades); 0: none */
    const atomic_int *stop;  /* when set: stop and degrade what is left; may be NULL */
    void (*progress)(void *ud, size_t done); /* after each finished chunk (enriched or degraded) */
    void *ud;
} embd_enrich_run_opts;

/* contexts[i]: the context for items[i] (malloc'd), or NULL when it degraded. Returns 0, or -1
 * with err only when nothing could run at all (out of memory, libcurl unusable). st adds up. */
int embd_enrich_run(const embd_enrich_cfg *c, const embd_enrich_item *items, size_t n,
                    const embd_enrich_run_opts *o, char **contexts, embd_enrich_stats *st, char *err, size_t errlen);

#endif
