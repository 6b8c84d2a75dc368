/* Image sources named on a command line (file paths, http(s) URLs, data URIs) -> the model's
 * input tensors: every URL is fetched first, concurrently, then each source is decoded and
 * preprocessed in order. For the CLI tools (embd image-prep, embd clip-embed); the server has its
 * own pipeline (server/clip_run.c) with per-request deadlines and shared decoders. */
#ifndef EMBD_IMAGE_LOAD_H
#define EMBD_IMAGE_LOAD_H

#include <stddef.h>

#include "image/fetch.h"
#include "image/image.h"

typedef struct {
    float *px;     /* 3 x h x w floats (malloc'd), NULL when the source failed */
    char err[512]; /* why, when px is NULL */
} embd_image_loaded;

/* Fills out[0..n). *h x *w is the size every image must come out at; 0 x 0 lets the first good
 * image set it (preprocessing without a crop). Returns how many sources failed. */
size_t embd_image_load_all(char *const *src, size_t n, const embd_image_prep *prep, const embd_image_limits *lim,
                           const embd_fetch_opts *fo, embd_image_loaded *out, int *h, int *w);
void embd_image_loaded_free(embd_image_loaded *out, size_t n);

/* A source's label for messages: data URIs are cut to 40 bytes. */
void embd_image_source_label(const char *src, char *buf, size_t len);

#endif
