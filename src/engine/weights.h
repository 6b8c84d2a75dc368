/* What the BERT loader (model.c) and the CLIP loader (clip.c) share: GGUF metadata reads, opening
 * and mapping the file zero-copy, and the GPU copy of its weights. */
#ifndef EMBD_WEIGHTS_H
#define EMBD_WEIGHTS_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/device.h"

struct gguf_context;
struct ggml_context;
struct ggml_tensor;
struct ggml_backend_buffer;

/* Integer metadata, whichever integer type the converter stored; false when absent or not an integer. */
bool embd_gguf_int(const struct gguf_context *g, const char *key, long long *out);
/* String metadata, owned by g; NULL when absent or not a string. */
const char *embd_gguf_str(const struct gguf_context *g, const char *key);

/* Opens path, checks it is a regular file large enough for a GGUF header, and parses the header
 * and tensor table (*g, *meta: tensor headers without data; the caller frees them, even on error).
 * Returns the open descriptor (the caller closes it) and the file's size, or -1 with err. */
int embd_gguf_open(const char *path, struct gguf_context **g, struct ggml_context **meta, size_t *size, char *err,
                   size_t errlen);

/* Maps the file (fd, size bytes) read-only and shared, so the weights stay in the page cache for
 * every process serving it, and places each tensor of meta at its data in the mapping, checking
 * that it lies inside the file. *map, *buf: the caller unmaps / frees them, even on error. Adds
 * the tensors' element count to *n_params. Returns 0, or -1 with err. */
int embd_gguf_map(int fd, const char *path, size_t size, const struct gguf_context *g, struct ggml_context *meta,
                  void **map, struct ggml_backend_buffer **buf, size_t *n_params, char *err, size_t errlen);

/* The device copy: every tensor of meta duplicated by name into one buffer on dev (*dev_ctx,
 * *dev_buf: the caller frees them, even on error), then the mapping's pages (map, map_size) leave
 * this process's resident set; the mapping itself stays for the CPU fallback. Returns 0, or -1
 * with err (naming the memory needed and free when the buffer cannot be allocated). */
int embd_weights_upload(const embd_device *dev, struct ggml_context *meta, void *map, size_t map_size,
                        struct ggml_context **dev_ctx, struct ggml_backend_buffer **dev_buf, char *err, size_t errlen);

/* The device twin of a host tensor (same name in dev_ctx), or NULL for NULL. */
struct ggml_tensor *embd_weights_twin(struct ggml_context *dev_ctx, const struct ggml_tensor *t);

/* A new array of n_layer layers (each a struct of layer_size bytes made only of tensor pointers)
 * whose pointers are the twins of those in layers; free() it. NULL when out of memory. */
void *embd_weights_twin_layers(struct ggml_context *dev_ctx, const void *layers, int n_layer, size_t layer_size);

#endif
