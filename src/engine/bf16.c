#include "engine/bf16.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "util/sys.h"

bool embd_want_bf16(enum ggml_type t) {
    const char *w = getenv("EMBD_WEIGHTS");
    if (w && !strcmp(w, "native")) return false;
    if (w && !strcmp(w, "bf16")) return t != GGML_TYPE_BF16 && ggml_get_type_traits(t)->to_float;
    return t == GGML_TYPE_Q8_0 && ggml_cpu_has_avx512_bf16();
}

int embd_weights_to_bf16(struct ggml_tensor **const *w, int n, struct ggml_context **ctx,
                         struct ggml_backend_buffer **buf, char *err, size_t errlen) {
    int64_t max_ne0 = 0;
    for (int i = 0; i < n; i++) {
        if (!ggml_get_type_traits((*w[i])->type)->to_float || ggml_n_dims(*w[i]) > 2)
            return embd_fail(err, errlen, "tensor '%s' cannot be converted to bf16", ggml_get_name(*w[i]));
        if ((*w[i])->ne[0] > max_ne0) max_ne0 = (*w[i])->ne[0];
    }
    struct ggml_init_params ip = {.mem_size = ggml_tensor_overhead() * (size_t)(n + 1), .mem_buffer = NULL, .no_alloc = true};
    if (!(*ctx = ggml_init(ip))) return embd_fail(err, errlen, "out of memory converting weights");
    struct ggml_tensor **dst = malloc((size_t)(n + 1) * sizeof *dst);
    if (!dst) return embd_fail(err, errlen, "out of memory converting weights");
    for (int i = 0; i < n; i++) {
        dst[i] = ggml_new_tensor_2d(*ctx, GGML_TYPE_BF16, (*w[i])->ne[0], (*w[i])->ne[1]);
        ggml_set_name(dst[i], ggml_get_name(*w[i]));
    }
    *buf = ggml_backend_alloc_ctx_tensors_from_buft(*ctx, ggml_backend_cpu_buffer_type());
    float *row = *buf ? malloc((size_t)max_ne0 * sizeof *row) : NULL;
    if (!row) {
        free(dst);
        return embd_fail(err, errlen, "out of memory converting weights to bf16");
    }
    const long page = sysconf(_SC_PAGESIZE);
    for (int i = 0; i < n; i++) {
        struct ggml_tensor *t = *w[i];
        const ggml_to_float_t to_float = ggml_get_type_traits(t->type)->to_float;
        for (int64_t r = 0; r < t->ne[1]; r++) {
            to_float((const char *)t->data + r * t->nb[1], row, t->ne[0]);
            ggml_fp32_to_bf16_row(row, (ggml_bf16_t *)((char *)dst[i]->data + r * dst[i]->nb[1]), t->ne[0]);
        }
        /* drop the file pages of the original from this process's resident set */
        uintptr_t a = ((uintptr_t)t->data + (uintptr_t)page - 1) & ~(uintptr_t)(page - 1);
        uintptr_t b = ((uintptr_t)t->data + ggml_nbytes(t)) & ~(uintptr_t)(page - 1);
        if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
        *w[i] = dst[i];
    }
    free(row);
    free(dst);
    return 0;
}
