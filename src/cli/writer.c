#include "cli/writer.h"

#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "util/sys.h"

/* The header is written with room for any row count and rewritten at the end, so vectors can
 * stream out without knowing the count up front. */
#define NPY_HEADER 128

static void npy_header(FILE *f, size_t rows, int dim) {
    char h[NPY_HEADER];
    memset(h, ' ', sizeof h);
    memcpy(h, "\x93NUMPY\x01\x00", 8);
    h[8] = (char)(NPY_HEADER - 10);
    h[9] = 0;
    int n = snprintf(h + 10, sizeof h - 10, "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, %d), }", rows, dim);
    h[10 + n] = ' ';
    h[NPY_HEADER - 1] = '\n';
    fwrite(h, 1, sizeof h, f);
}

int writer_open(writer *w, const char *path, out_format fmt, int dim, char *err, size_t errlen) {
    memset(w, 0, sizeof *w);
    w->fmt = fmt;
    w->dim = dim;
    bool to_stdout = !strcmp(path, "-");
    if (fmt == OUT_NPY && to_stdout) return embd_fail(err, errlen, "--format npy needs an --output file (the header is rewritten at the end)");
    w->f = to_stdout ? stdout : fopen(path, "wb");
    if (!w->f) return embd_fail(err, errlen, "cannot open output '%s'", path);
    if (fmt != OUT_JSONL && !to_stdout) {
        char mp[4096];
        snprintf(mp, sizeof mp, "%s.meta.jsonl", path);
        w->meta = fopen(mp, "wb");
        if (!w->meta) return embd_fail(err, errlen, "cannot open '%s'", mp);
    }
    if (fmt == OUT_NPY) npy_header(w->f, 0, dim);
    return 0;
}

static void put_id(FILE *f, json_t *id) {
    char *s = json_dumps(id, JSON_ENCODE_ANY | JSON_COMPACT);
    fputs(s ? s : "null", f);
    free(s);
}

static void put_floats(FILE *f, const float *v, int dim) {
    fputc('[', f);
    for (int i = 0; i < dim; i++) fprintf(f, i ? ",%.9g" : "%.9g", (double)v[i]);
    fputc(']', f);
}

/* rows > 0: vec holds that many token vectors (pooling none). */
static void put_record(FILE *f, json_t *id, const float *vec, int dim, int rows, const embd_item *it,
                       const char *error) {
    fputs("{\"id\":", f);
    put_id(f, id);
    if (vec && rows == 0) {
        fputs(",\"embedding\":", f);
        put_floats(f, vec, dim);
    } else if (vec) {
        fputs(",\"token_embeddings\":[", f);
        for (int r = 0; r < rows; r++) {
            if (r) fputc(',', f);
            put_floats(f, vec + (size_t)r * dim, dim);
        }
        fputc(']', f);
    }
    if (it) fprintf(f, ",\"tokens\":%d,\"truncated\":%s", it->n_tokens, it->truncated ? "true" : "false");
    if (error) {
        json_t *e = json_string(error);
        char *s = e ? json_dumps(e, JSON_ENCODE_ANY) : NULL;
        fprintf(f, ",\"error\":%s", s ? s : "\"error\"");
        free(s);
        json_decref(e);
    }
    fputs("}\n", f);
}

int writer_put(writer *w, json_t *id, const float *vec, const embd_item *it, const char *error) {
    w->rows++;
    if (w->fmt == OUT_JSONL) {
        put_record(w->f, id, vec, w->dim, 0, it, error);
    } else {
        for (int i = 0; i < w->dim; i++) {
            float x = vec ? vec[i] : NAN;
            fwrite(&x, sizeof x, 1, w->f);
        }
        if (w->meta) put_record(w->meta, id, NULL, 0, 0, it, error);
    }
    return ferror(w->f) ? -1 : 0;
}

int writer_put_tokens(writer *w, json_t *id, const float *states, const embd_item *it, const char *error) {
    w->rows++;
    put_record(w->f, id, states, w->dim, it ? it->n_tokens : 0, it, error);
    return ferror(w->f) ? -1 : 0;
}

int writer_close(writer *w, char *err, size_t errlen) {
    int rc = 0;
    if (w->fmt == OUT_NPY && w->f) {
        if (fseek(w->f, 0, SEEK_SET) != 0) rc = embd_fail(err, errlen, "cannot rewrite the npy header");
        else npy_header(w->f, w->rows, w->dim);
    }
    if (w->f && (fflush(w->f) != 0 || ferror(w->f))) rc = embd_fail(err, errlen, "write error on output");
    if (w->f && w->f != stdout) fclose(w->f);
    if (w->meta && fclose(w->meta) != 0) rc = embd_fail(err, errlen, "write error on the meta file");
    memset(w, 0, sizeof *w);
    return rc;
}
