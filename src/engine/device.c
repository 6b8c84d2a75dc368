#include "engine/device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml-backend.h"
#include "util/sys.h"

/* The i-th GPU device in ggml's registry (CUDA registers one per visible GPU). */
static ggml_backend_dev_t nth_gpu(int n, int *count) {
    ggml_backend_dev_t hit = NULL;
    int k = 0;
    for (size_t i = 0; i < ggml_backend_dev_count(); i++) {
        ggml_backend_dev_t d = ggml_backend_dev_get(i);
        if (ggml_backend_dev_type(d) != GGML_BACKEND_DEVICE_TYPE_GPU) continue;
        if (k == n) hit = d;
        k++;
    }
    if (count) *count = k;
    return hit;
}

int embd_device_gpu_count(void) {
    int k = 0;
    nth_gpu(-1, &k);
    return k;
}

int embd_device_resolve(const char *spec, embd_device *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (!spec || !*spec) spec = getenv("EMBD_DEVICE");
    if (!spec || !*spec) spec = "auto";
    int n = -1, count = 0;
    if (!strcmp(spec, "cpu")) {
        n = -1;
    } else if (!strcmp(spec, "auto")) {
        n = nth_gpu(0, &count) ? 0 : -1;
    } else if (!strcmp(spec, "cuda") || !strcmp(spec, "gpu")) {
        n = 0;
    } else if (!strncmp(spec, "cuda:", 5) || !strncmp(spec, "gpu:", 4)) {
        const char *num = spec + (spec[0] == 'c' ? 5 : 4);
        char *end;
        long v = strtol(num, &end, 10);
        if (end == num || *end || v < 0 || v > 1023)
            return embd_fail(err, errlen, "device '%s': expected cpu, auto, cuda or cuda:N", spec);
        n = (int)v;
    } else {
        return embd_fail(err, errlen, "device '%s': expected cpu, auto, cuda or cuda:N", spec);
    }
    if (n < 0) {
        out->index = -1;
        snprintf(out->name, sizeof out->name, "cpu");
        snprintf(out->desc, sizeof out->desc, "cpu");
        return 0;
    }
    ggml_backend_dev_t d = nth_gpu(n, &count);
    if (!d) {
        if (!count)
            return embd_fail(err, errlen,
                             "device '%s': no GPU is usable (this build %s a GPU backend; build with -DEMBD_CUDA=ON, "
                             "check the driver and CUDA_VISIBLE_DEVICES)",
                             spec, ggml_backend_reg_by_name("CUDA") ? "has" : "has no");
        return embd_fail(err, errlen, "device '%s': only %d GPU%s visible (cuda:0..cuda:%d)", spec, count,
                         count == 1 ? " is" : "s are", count - 1);
    }
    out->dev = d;
    out->index = n;
    snprintf(out->name, sizeof out->name, "cuda:%d", n);
    snprintf(out->desc, sizeof out->desc, "%s", ggml_backend_dev_description(d));
    return 0;
}

bool embd_device_is_gpu(const embd_device *d) { return d && d->dev; }

void embd_device_memory(const embd_device *d, size_t *free_b, size_t *total_b) {
    *free_b = *total_b = 0;
    if (d && d->dev) ggml_backend_dev_memory(d->dev, free_b, total_b);
}
