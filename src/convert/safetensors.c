#include "convert/safetensors.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/sys.h"

/* The reference implementation refuses headers over 100 MB; so does this one (a corrupt length
 * must not make us allocate gigabytes). */
#define ST_MAX_HEADER (100u * 1024 * 1024)

static const struct {
    const char *name;
    size_t size;
    embd_st_dtype dtype;
} DTYPES[] = {
    {"F32", 4, EMBD_ST_F32},     {"F16", 2, EMBD_ST_F16},     {"BF16", 2, EMBD_ST_BF16},
    {"F64", 8, EMBD_ST_OTHER},   {"I64", 8, EMBD_ST_OTHER},   {"I32", 4, EMBD_ST_OTHER},
    {"I16", 2, EMBD_ST_OTHER},   {"I8", 1, EMBD_ST_OTHER},    {"U64", 8, EMBD_ST_OTHER},
    {"U32", 4, EMBD_ST_OTHER},   {"U16", 2, EMBD_ST_OTHER},   {"U8", 1, EMBD_ST_OTHER},
    {"BOOL", 1, EMBD_ST_OTHER},  {"F8_E4M3", 1, EMBD_ST_OTHER}, {"F8_E5M2", 1, EMBD_ST_OTHER},
};

void embd_st_tensors_free(embd_st_tensor *t, size_t n) {
    if (!t) return;
    for (size_t i = 0; i < n; i++) free(t[i].name);
    free(t);
}

static int parse_entry(const char *name, json_t *v, size_t data_len, embd_st_tensor *t, char *err, size_t errlen) {
    if (!json_is_object(v)) return embd_fail(err, errlen, "safetensors header: entry '%s' is not an object", name);
    json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape");
    json_t *offs = json_object_get(v, "data_offsets");
    if (!json_is_string(dt) || !json_is_array(shape) || !json_is_array(offs) || json_array_size(offs) != 2)
        return embd_fail(err, errlen, "safetensors header: entry '%s' lacks dtype, shape or data_offsets", name);
    size_t esize = 0;
    for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; i++)
        if (!strcmp(json_string_value(dt), DTYPES[i].name)) {
            esize = DTYPES[i].size;
            t->dtype = DTYPES[i].dtype;
            snprintf(t->dtype_name, sizeof t->dtype_name, "%s", DTYPES[i].name);
        }
    if (!esize) return embd_fail(err, errlen, "safetensors header: tensor '%s' has unknown dtype", name);
    size_t nd = json_array_size(shape);
    if (nd > EMBD_ST_MAX_DIMS)
        return embd_fail(err, errlen, "safetensors header: tensor '%s' has %zu dimensions (at most %d)", name, nd,
                         EMBD_ST_MAX_DIMS);
    t->n_dims = (int)nd;
    size_t nbytes = esize;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return embd_fail(err, errlen, "safetensors header: tensor '%s' has a bad shape", name);
        t->shape[i] = json_integer_value(d);
        if (__builtin_mul_overflow(nbytes, (size_t)t->shape[i], &nbytes))
            return embd_fail(err, errlen, "safetensors header: tensor '%s' is too large", name);
    }
    json_t *b = json_array_get(offs, 0), *e = json_array_get(offs, 1);
    if (!json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 ||
        json_integer_value(e) < json_integer_value(b) || (uint64_t)json_integer_value(e) > data_len)
        return embd_fail(err, errlen, "safetensors header: tensor '%s' has data_offsets outside the file", name);
    t->offset = (size_t)json_integer_value(b);
    t->nbytes = (size_t)(json_integer_value(e) - json_integer_value(b));
    if (t->nbytes != nbytes)
        return embd_fail(err, errlen, "safetensors header: tensor '%s' holds %zu bytes, its shape needs %zu", name,
                         t->nbytes, nbytes);
    return 0;
}

int embd_st_parse(const uint8_t *buf, size_t len, embd_st_tensor **out, size_t *n, char *err, size_t errlen) {
    *out = NULL;
    *n = 0;
    if (len < 8) return embd_fail(err, errlen, "safetensors file is shorter than its 8-byte header length");
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    if (hlen > ST_MAX_HEADER || hlen > len - 8)
        return embd_fail(err, errlen, "safetensors header length %llu is larger than the file or 100 MB",
                         (unsigned long long)hlen);
    json_error_t je;
    json_t *root = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root) return embd_fail(err, errlen, "safetensors header is not valid JSON: %s", je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return embd_fail(err, errlen, "safetensors header is not a JSON object");
    }
    const size_t data_len = len - 8 - (size_t)hlen;
    embd_st_tensor *t = calloc(json_object_size(root) + 1, sizeof *t);
    size_t k = 0;
    int rc = t ? 0 : embd_fail(err, errlen, "out of memory");
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (rc) break;
        if (!strcmp(key, "__metadata__")) continue;
        rc = parse_entry(key, v, data_len, &t[k], err, errlen);
        if (rc) break;
        t[k].name = strdup(key);
        if (!t[k].name) {
            rc = embd_fail(err, errlen, "out of memory");
            break;
        }
        t[k].data = buf + 8 + hlen + t[k].offset;
        k++;
    }
    json_decref(root);
    if (rc) {
        embd_st_tensors_free(t, k);
        return -1;
    }
    *out = t;
    *n = k;
    return 0;
}

/* ---- directory: one file or an index of shards -------------------------------------------- */

typedef struct {
    void *map;
    size_t len;
} st_file;

struct embd_st_set {
    st_file *files;
    size_t n_files;
    embd_st_tensor *t;
    size_t n;
};

void embd_st_close(embd_st_set *s) {
    if (!s) return;
    embd_st_tensors_free(s->t, s->n);
    for (size_t i = 0; i < s->n_files; i++)
        if (s->files[i].map) munmap(s->files[i].map, s->files[i].len);
    free(s->files);
    free(s);
}

size_t embd_st_count(const embd_st_set *s) { return s->n; }
const embd_st_tensor *embd_st_at(const embd_st_set *s, size_t i) { return i < s->n ? &s->t[i] : NULL; }

const embd_st_tensor *embd_st_find(const embd_st_set *s, const char *name) {
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->t[i].name, name)) return &s->t[i];
    return NULL;
}

/* Maps one file and appends its tensors to the set. */
static int add_file(embd_st_set *s, const char *dir, const char *fname, char *err, size_t errlen) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, fname);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        return embd_fail(err, errlen, "cannot open weights file %s", path);
    }
    st_file *nf = realloc(s->files, (s->n_files + 1) * sizeof *nf);
    if (!nf) {
        close(fd);
        return embd_fail(err, errlen, "out of memory");
    }
    s->files = nf;
    st_file *f = &s->files[s->n_files++];
    f->len = (size_t)st.st_size;
    f->map = f->len ? mmap(NULL, f->len, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        return embd_fail(err, errlen, "cannot mmap %s: %s", path, strerror(errno));
    }
    embd_st_tensor *t;
    size_t n;
    char e2[384];
    if (embd_st_parse(f->map, f->len, &t, &n, e2, sizeof e2))
        return embd_fail(err, errlen, "%s: %s", fname, e2);
    embd_st_tensor *all = realloc(s->t, (s->n + n + 1) * sizeof *all);
    if (!all) {
        embd_st_tensors_free(t, n);
        return embd_fail(err, errlen, "out of memory");
    }
    s->t = all;
    for (size_t i = 0; i < n; i++) {
        if (embd_st_find(s, t[i].name)) {
            embd_fail(err, errlen, "tensor '%s' appears in more than one weights file", t[i].name);
            for (size_t j = i; j < n; j++) free(t[j].name);
            free(t);
            return -1;
        }
        t[i].file = (int)(s->n_files - 1);
        s->t[s->n++] = t[i];
    }
    free(t); /* names moved into the set */
    return 0;
}

static int open_index(embd_st_set *s, const char *dir, const char *idx, char *err, size_t errlen) {
    json_error_t je;
    json_t *root = json_load_file(idx, 0, &je);
    if (!root) return embd_fail(err, errlen, "model.safetensors.index.json is not valid JSON: %s", je.text);
    json_t *wm = json_object_get(root, "weight_map");
    int rc = 0;
    if (!json_is_object(wm) || json_object_size(wm) == 0)
        rc = embd_fail(err, errlen, "model.safetensors.index.json has no weight_map");
    /* shards in first-mention order, each opened once */
    const char *name;
    json_t *v;
    json_object_foreach(wm, name, v) {
        if (rc) break;
        const char *fn = json_string_value(v);
        if (!fn || !*fn || strchr(fn, '/') || !strcmp(fn, "..") || !strcmp(fn, ".")) {
            rc = embd_fail(err, errlen, "model.safetensors.index.json: bad file name for tensor '%s'", name);
            break;
        }
        bool seen = false;
        const char *n2;
        json_t *v2;
        json_object_foreach(wm, n2, v2) {
            if (v2 == v) break;
            if (json_is_string(v2) && !strcmp(json_string_value(v2), fn)) {
                seen = true;
                break;
            }
        }
        if (!seen) rc = add_file(s, dir, fn, err, errlen);
    }
    json_object_foreach(wm, name, v) {
        if (rc) break;
        const embd_st_tensor *t = embd_st_find(s, name);
        if (!t) rc = embd_fail(err, errlen, "tensor '%s' listed in the index is missing from %s", name,
                               json_string_value(v));
    }
    json_decref(root);
    return rc;
}

embd_st_set *embd_st_open_dir(const char *dir, char *err, size_t errlen) {
    embd_st_set *s = calloc(1, sizeof *s);
    if (!s) {
        embd_fail(err, errlen, "out of memory");
        return NULL;
    }
    char path[4096];
    struct stat st;
    int rc;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (stat(path, &st) == 0) {
        rc = add_file(s, dir, "model.safetensors", err, errlen);
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        if (stat(path, &st) == 0) {
            rc = open_index(s, dir, path, err, errlen);
        } else {
            snprintf(path, sizeof path, "%s/pytorch_model.bin", dir);
            if (stat(path, &st) == 0)
                rc = embd_fail(err, errlen, "%s has only pytorch_model.bin; convert needs model.safetensors", dir);
            else
                rc = embd_fail(err, errlen, "missing weights: no model.safetensors or model.safetensors.index.json in %s",
                               dir);
        }
    }
    if (rc) {
        embd_st_close(s);
        return NULL;
    }
    return s;
}
