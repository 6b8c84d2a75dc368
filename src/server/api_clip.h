/* Request and response shapes of the CLIP endpoints: POST /v1/embed/image {image},
 * /v1/embed/image-batch {images}, /v1/embed/text {text}, and /v1/embeddings (OpenAI) where a
 * string input that is a data: URI is an image. An image is {"url": "..."}, {"b64": "..."}, or a
 * string: an http(s) URL or a data URI. Independent of the HTTP library and of the model. */
#ifndef EMBD_API_CLIP_H
#define EMBD_API_CLIP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "server/api.h"

typedef enum { EMBD_CLIP_IMAGE, EMBD_CLIP_IMAGE_BATCH, EMBD_CLIP_TEXT, EMBD_CLIP_OPENAI } embd_clip_route;

typedef enum { EMBD_CITEM_TEXT, EMBD_CITEM_URL, EMBD_CITEM_INLINE /* base64 or data URI */ } embd_citem_kind;

typedef struct {
    embd_citem_kind kind;
    const char *s; /* borrowed from the request's JSON */
    size_t len;
    const char *bad; /* why this item cannot run, found while parsing (static text), else NULL */
} embd_clip_item;

typedef struct {
    embd_clip_route route;
    json_t *root; /* owns the strings the items point into */
    size_t n;
    embd_clip_item *items;
    bool single;  /* one input given as a scalar: the response also carries it at the top level */
    bool base64;  /* OpenAI encoding_format "base64" */
} embd_clip_req;

typedef struct {
    size_t max_image_batch; /* images per image-batch request (and per /v1/embeddings request) */
    size_t max_items;       /* texts per request */
    size_t max_input_chars; /* bytes of one text */
    const char *model_name;
} embd_clip_limits;

/* Validates the request's shape (takes ownership of root on success). Structural problems fail
 * the request (4xx); a bad image source is found later, per item. Returns 0 or -1 with e set. */
int embd_api_clip_parse(json_t *root, embd_clip_route route, bool bad_utf8, const embd_clip_limits *lim,
                        embd_clip_req *out, embd_api_error *e);
void embd_clip_req_free(embd_clip_req *r);

/* One item's outcome: a unit vector, or a client-facing error (its status is the one a whole
 * request gets when this item fails it: single image, text, OpenAI). */
typedef struct {
    bool ok;
    const float *vec;
    int n_tokens; /* texts */
    embd_api_error err;
} embd_clip_result;

/* The response body (malloc'd). Image batches keep every item's own outcome in input order;
 * the single-image, text and OpenAI shapes fail as a whole when an item failed (NULL, e set). */
char *embd_api_clip_response(const embd_clip_req *r, const embd_clip_result *res, int dim, const char *model_name,
                             embd_api_error *e);

#endif
