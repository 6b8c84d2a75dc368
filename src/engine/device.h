/* Where inference runs: the CPU, or a GPU that ggml's backend registry offers (CUDA when embd is
 * built with -DEMBD_CUDA=ON). Resolving a device only enumerates; it allocates nothing on it, so a
 * server process that hands inference to workers never creates a GPU context of its own. */
#ifndef EMBD_DEVICE_H
#define EMBD_DEVICE_H

#include <stdbool.h>
#include <stddef.h>

struct ggml_backend_device;

typedef struct {
    struct ggml_backend_device *dev; /* NULL: the CPU */
    int index;                       /* N of cuda:N, -1 for the CPU */
    char name[32];                   /* "cpu" or "cuda:N" */
    char desc[128];                  /* e.g. "NVIDIA H100 80GB HBM3", or "cpu" */
} embd_device;

/* spec: "cpu", "cuda", "cuda:N", "auto" (the first GPU if the build has one, else the CPU), or NULL
 * for $EMBD_DEVICE, else "auto". cuda:N counts the GPUs this process sees, so
 * CUDA_VISIBLE_DEVICES=3 makes the machine's fourth GPU cuda:0. Returns 0, or -1 with err (no such
 * device, no GPU backend in this build, malformed spec). */
int embd_device_resolve(const char *spec, embd_device *out, char *err, size_t errlen);
bool embd_device_is_gpu(const embd_device *d);
/* Free and total bytes of the device's memory (creates the GPU context); 0/0 for the CPU. */
void embd_device_memory(const embd_device *d, size_t *free_b, size_t *total_b);
/* How many GPUs this build and process see. */
int embd_device_gpu_count(void);

#endif
