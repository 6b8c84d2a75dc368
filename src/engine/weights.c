#include "engine/weights.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml.h"
#include "gguf.h"
#include "util/sys.h"

bool embd_gguf_int(const struct gguf_context *g, const char *key, long long *out) {
    int64_t id = gguf_find_key(g, key);
    if (id < 0) return false;
    switch (gguf_get_kv_type(g, id)) {
    case GGUF_TYPE_UINT8: *out = gguf_get_val_u8(g, id); return true;
    case GGUF_TYPE_INT8: *out = gguf_get_val_i8(g, id); return true;
    case GGUF_TYPE_UINT16: *out = gguf_get_val_u16(g, id); return true;
    case GGUF_TYPE_INT16: *out = gguf_get_val_i16(g, id); return true;
    case GGUF_TYPE_UINT32: *out = gguf_get_val_u32(g, id); return true;
    case GGUF_TYPE_INT32: *out = gguf_get_val_i32(g, id); return true;
    case GGUF_TYPE_UINT64: *out = (long long)gguf_get_val_u64(g, id); return true;
    case GGUF_TYPE_INT64: *out = gguf_get_val_i64(g, id); return true;
    default: return false;
    }
}

const char *embd_gguf_str(const struct gguf_context *g, const char *key) {
    int64_t id = gguf_find_key(g, key);
    return id >= 0 && gguf_get_kv_type(g, id) == GGUF_TYPE_STRING ? gguf_get_val_str(g, id) : NULL;
}

int embd_gguf_open(const char *path, struct gguf_context **g, struct ggml_context **meta, size_t *size, char *err,
                   size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        embd_fail(err, errlen, "cannot open model '%s'", path);
        goto fail;
    }
    if (!S_ISREG(st.st_mode) || st.st_size < 32) {
        embd_fail(err, errlen, "'%s' is not a GGUF model file", path);
        goto fail;
    }
    struct gguf_init_params gp = {.no_alloc = true, .ctx = meta};
    if (!(*g = gguf_init_from_file(path, gp))) {
        embd_fail(err, errlen, "'%s' is not a valid GGUF file (bad header, metadata or tensor table)", path);
        goto fail;
    }
    *size = (size_t)st.st_size;
    return fd;
fail:
    if (fd >= 0) close(fd);
    return -1;
}

int embd_gguf_map(int fd, const char *path, size_t size, const struct gguf_context *g, struct ggml_context *meta,
                  void **map, struct ggml_backend_buffer **buf, size_t *n_params, char *err, size_t errlen) {
    *map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    if (*map == MAP_FAILED) {
        *map = NULL;
        return embd_fail(err, errlen, "cannot mmap '%s'", path);
    }
    if (!(*buf = ggml_backend_cpu_buffer_from_ptr(*map, size)))
        return embd_fail(err, errlen, "cannot create weight buffer");
    const size_t data_off = gguf_get_data_offset(g);
    const int64_t nt = gguf_get_n_tensors(g);
    for (int64_t i = 0; i < nt; i++) {
        const char *tn = gguf_get_tensor_name(g, i);
        struct ggml_tensor *t = ggml_get_tensor(meta, tn);
        size_t off = data_off + gguf_get_tensor_offset(g, i), nb = ggml_nbytes(t);
        if (off > size || nb > size - off)
            return embd_fail(err, errlen, "model file is truncated: tensor '%s' lies past the end", tn);
        if (ggml_backend_tensor_alloc(*buf, t, (char *)*map + off) != GGML_STATUS_SUCCESS)
            return embd_fail(err, errlen, "cannot place tensor '%s'", tn);
        *n_params += (size_t)ggml_nelements(t);
    }
    return 0;
}

int embd_weights_upload(const embd_device *dev, struct ggml_context *meta, void *map, size_t map_size,
                        struct ggml_context **dev_ctx, struct ggml_backend_buffer **dev_buf, char *err, size_t errlen) {
    size_t nt = 0;
    for (struct ggml_tensor *t = ggml_get_first_tensor(meta); t; t = ggml_get_next_tensor(meta, t)) nt++;
    struct ggml_init_params ip = {.mem_size = ggml_tensor_overhead() * (nt + 1), .mem_buffer = NULL, .no_alloc = true};
    if (!(*dev_ctx = ggml_init(ip))) return embd_fail(err, errlen, "out of memory");
    size_t need = 0;
    for (struct ggml_tensor *t = ggml_get_first_tensor(meta); t; t = ggml_get_next_tensor(meta, t)) {
        ggml_set_name(ggml_dup_tensor(*dev_ctx, t), ggml_get_name(t));
        need += ggml_nbytes(t);
    }
    *dev_buf = ggml_backend_alloc_ctx_tensors_from_buft(*dev_ctx, ggml_backend_dev_buffer_type(dev->dev));
    if (!*dev_buf) {
        size_t free_b, total_b;
        embd_device_memory(dev, &free_b, &total_b);
        return embd_fail(err, errlen, "not enough memory on %s (%s) for the weights: %.0f MiB needed, %.0f MiB free",
                         dev->name, dev->desc, need / 1048576.0, free_b / 1048576.0);
    }
    ggml_backend_buffer_set_usage(*dev_buf, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    for (struct ggml_tensor *t = ggml_get_first_tensor(meta); t; t = ggml_get_next_tensor(meta, t))
        ggml_backend_tensor_set(ggml_get_tensor(*dev_ctx, ggml_get_name(t)), t->data, 0, ggml_nbytes(t));
    madvise(map, map_size, MADV_DONTNEED);
    return 0;
}

struct ggml_tensor *embd_weights_twin(struct ggml_context *dev_ctx, const struct ggml_tensor *t) {
    return t ? ggml_get_tensor(dev_ctx, ggml_get_name(t)) : NULL;
}

void *embd_weights_twin_layers(struct ggml_context *dev_ctx, const void *layers, int n_layer, size_t layer_size) {
    void *out = calloc((size_t)n_layer, layer_size);
    if (!out) return NULL;
    /* an array of structs made only of pointers is one flat run of pointers */
    const size_t n = (size_t)n_layer * (layer_size / sizeof(struct ggml_tensor *));
    struct ggml_tensor *const *src = layers;
    struct ggml_tensor **dst = out;
    for (size_t i = 0; i < n; i++) dst[i] = embd_weights_twin(dev_ctx, src[i]);
    return out;
}
