/* embd_st_parse on arbitrary bytes (a whole safetensors file image): fails with an error message,
 * or returns tensors whose data lies inside the input and matches dtype x shape. */
#include <string.h>

#include "convert/safetensors.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    memset(err, 0, sizeof err);
    embd_st_tensor *t = NULL;
    size_t n = 99;
    if (embd_st_parse(data, size, &t, &n, err, sizeof err)) {
        FUZZ_CHECK(err[0] && memchr(err, 0, sizeof err) && !t && n == 0);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(t[i].name && t[i].n_dims >= 0 && t[i].n_dims <= EMBD_ST_MAX_DIMS);
        FUZZ_CHECK(t[i].data >= data + 8 && t[i].data <= data + size);
        FUZZ_CHECK(t[i].nbytes <= (size_t)(data + size - t[i].data));
        size_t es = t[i].dtype == EMBD_ST_F32 ? 4 : (t[i].dtype == EMBD_ST_OTHER ? 0 : 2);
        if (es) {
            size_t ne = 1;
            for (int d = 0; d < t[i].n_dims; d++) ne *= (size_t)t[i].shape[d];
            FUZZ_CHECK(ne * es == t[i].nbytes);
        }
        for (size_t j = 0; j < i; j++) FUZZ_CHECK(strcmp(t[i].name, t[j].name) != 0);
    }
    embd_st_tensors_free(t, n);
    return 0;
}
