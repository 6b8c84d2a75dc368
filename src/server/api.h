/* Request and response shapes of the HTTP API, independent of the HTTP library: JSON in, a
 * validated request out (or a client error with its status), results in, JSON out. */
#ifndef EMBD_API_H
#define EMBD_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/model.h"

/* A client error: HTTP status, a stable machine-readable type, a message and, where one item
 * caused it, that item's index (-1 otherwise). */
typedef struct {
    int status;
    const char *type;
    char message[256];
    long index;
} embd_api_error;

/* {"error":{"type","message","index"?}} as a string (malloc'd). */
char *embd_api_error_json(const embd_api_error *e);
int embd_api_fail(embd_api_error *e, int status, const char *type, long index, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Parses a request body: repairs lone surrogate escapes, and when the body is not valid UTF-8,
 * replaces each bad sequence with U+FFFF so the JSON still parses and the string holding it can
 * be named (*had_bad_utf8 set). NULL with e filled (422) when it is not JSON. */
json_t *embd_api_parse_body(char *body, size_t len, bool *had_bad_utf8, embd_api_error *e);
/* Whether a string parsed from such a body held bad bytes. */
bool embd_api_has_sentinel(const char *s, size_t len);
/* Characters (code points) in UTF-8 text: what the max-input-chars limit counts. */
size_t embd_api_utf8_chars(const char *s, size_t len);

/* Server-side limits and defaults that shape validation. */
typedef struct {
    size_t max_items;       /* per request */
    size_t max_input_chars; /* bytes of one input text */
    bool default_truncate;  /* when the request does not say */
    int n_embd, n_ctx, n_vocab;
    const char *model_name;
    const embd_model *model; /* its prompts */
} embd_api_limits;

/* Field checks shared by the request parsers; each returns 0 or -1 with e set. */
int embd_api_get_bool(json_t *root, const char *key, bool *out, embd_api_error *e); /* absent/null: unchanged */
int embd_api_check_count(size_t n, const char *path, const embd_api_limits *lim, embd_api_error *e);
int embd_api_check_text_size(const char *s, size_t len, size_t i, const embd_api_limits *lim, embd_api_error *e);

/* {"name": "prompt text", ...} of the model's sentence-transformers prompts. */
json_t *embd_api_prompts_json(const embd_model *m);

typedef enum { EMBD_SHAPE_OPENAI, EMBD_SHAPE_TEI, EMBD_SHAPE_CHUNKS } embd_shape;


/* One embedding request after validation, whatever shape it came in. */
typedef struct {
    embd_shape shape;
    size_t n;
    json_t *root;          /* owns everything below that points into it */
    const char **text;     /* per item: NULL for token-id input or for a rejected chunk */
    size_t *text_len;
    int32_t **ids;         /* token-id input (OpenAI arrays of ints): owned copies, else NULL */
    size_t *ids_len;
    json_t **chunk_id;     /* chunk shape: borrowed from root */
    char **item_error;     /* chunk shape: per-chunk rejection (malloc'd), else NULL */
    bool normalize, truncate, truncate_left, base64;
    int dimensions;        /* 0: all */
    const char *prompt;    /* prepended to text inputs (prompt_name or the model's default) */
} embd_embed_req;

/* Validates an embedding request for shape (EMBD_SHAPE_TEI also recognises the chunk shape).
 * Takes ownership of root on success. Returns 0 or -1 with e set (4xx). */
int embd_api_embed_parse(json_t *root, embd_shape shape, const embd_api_limits *lim, embd_embed_req *out,
                         embd_api_error *e);
void embd_embed_req_free(embd_embed_req *r);

/* Tokenizes every runnable item into ids[i]/lens[i] (malloc'd; NULL/0 for a chunk rejected with
 * its own error): truncation to n_ctx on the side the request asks for, invalid UTF-8 and
 * over-long inputs found. For OpenAI/TEI such an item fails the request (-1, e set); for the chunk
 * shape it becomes that chunk's error. Returns the number of runnable items, or -1. */
long embd_api_embed_tokenize(embd_embed_req *r, const embd_tokenizer *tok, int n_ctx, bool had_bad_utf8,
                             int32_t **ids, int *lens, embd_api_error *e);

/* Per-item outcome the server hands to the response builder. vec is the raw pooled vector
 * (n_embd floats) for ok items; message otherwise. */
typedef struct {
    bool ok;
    const float *vec;
    int n_tokens;
    bool truncated;
    const char *message;
} embd_item_result;

/* A vector as a JSON array of numbers, or as base64 of little-endian float32 (OpenAI's
 * encoding_format "base64"); NULL when out of memory. */
json_t *embd_api_float_array(const float *v, int d);
json_t *embd_api_base64_floats(const float *v, int d);

/* Builds the response body (malloc'd) for a request whose items all ran. For OpenAI and TEI a
 * failed item fails the request: returns NULL with e set (the item's index in it). */
char *embd_api_embed_response(const embd_embed_req *r, const embd_item_result *items, int n_embd,
                              const char *model_name, embd_api_error *e);

/* POST /tokenize (TEI): {"inputs": str | [str], "add_special_tokens": bool}. */
char *embd_api_tokenize(json_t *root, bool had_bad_utf8, const embd_model *m, const embd_api_limits *lim, embd_api_error *e);

/* Reranking: TEI POST /rerank {query, texts, raw_scores, return_text, truncate,
 * truncation_direction} -> [{index, score, text?}] by score; Cohere/Jina POST /v1/rerank {model,
 * query, documents: [str | {text}], top_n, return_documents} -> {model, results, usage}. */
typedef enum { EMBD_RERANK_TEI, EMBD_RERANK_COHERE } embd_rerank_shape;

typedef struct {
    embd_rerank_shape shape;
    json_t *root; /* owns the strings below */
    const char *query;
    size_t query_len;
    size_t n;
    const char **doc;
    size_t *doc_len;
    bool raw_scores, return_text, truncate;
    size_t top_n; /* 0: all */
} embd_rerank_req;

/* Validates; takes ownership of root on success. bad_utf8: the body held invalid UTF-8 (see
 * embd_api_parse_body), which fails the request naming the field. Returns 0 or -1 with e (4xx). */
int embd_api_rerank_parse(json_t *root, embd_rerank_shape shape, bool bad_utf8, const embd_api_limits *lim,
                          embd_rerank_req *out, embd_api_error *e);
void embd_rerank_req_free(embd_rerank_req *r);

/* Tokenizes every (query, document) pair in the model's pair template into ids[i]/lens[i]
 * (malloc'd) and first[i] (first segment's tokens). Over-long pairs are cut on the document side,
 * or fail the request (413) when truncation is off. Returns 0, or -1 with e set. */
int embd_api_rerank_tokenize(const embd_rerank_req *r, const embd_model *m, int n_ctx, int32_t **ids, int *lens,
                             int *first, embd_api_error *e);

/* Builds the response (malloc'd) from each pair's first logit; tokens for usage. */
char *embd_api_rerank_response(const embd_rerank_req *r, const float *logits, size_t tokens, const char *model_name);

#endif
