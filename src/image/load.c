/* See load.h. */
#include "image/load.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/sys.h"

typedef enum { SRC_FILE, SRC_URL, SRC_DATA } src_kind;

static src_kind kind_of(const char *s) {
    if (!strncasecmp(s, "data:", 5)) return SRC_DATA;
    if (!strncasecmp(s, "http://", 7) || !strncasecmp(s, "https://", 8)) return SRC_URL;
    return SRC_FILE;
}

void embd_image_source_label(const char *src, char *buf, size_t len) {
    bool data = kind_of(src) == SRC_DATA;
    snprintf(buf, len, "%.*s%s", data ? 40 : 4096, src, data && strlen(src) > 40 ? "..." : "");
}

/* One source's bytes: handed over from its download, base64-decoded, or read from its file. */
static uint8_t *source_bytes(const char *src, embd_fetch_item *dl, size_t max_bytes, size_t *len, char *err,
                             size_t errlen) {
    uint8_t *bytes = NULL;
    switch (kind_of(src)) {
    case SRC_URL:
        if (dl->error[0]) {
            embd_fail(err, errlen, "%s", dl->error);
            return NULL;
        }
        bytes = dl->data, *len = dl->len, dl->data = NULL;
        return bytes;
    case SRC_DATA:
        return embd_image_source_decode(src, strlen(src), &bytes, len, err, errlen) ? NULL : bytes;
    default:
        return (uint8_t *)embd_read_file(src, max_bytes, len, err, errlen);
    }
}

size_t embd_image_load_all(char *const *src, size_t n, const embd_image_prep *prep, const embd_image_limits *lim,
                           const embd_fetch_opts *fo, embd_image_loaded *out, int *h, int *w) {
    size_t nurl = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        out[i].px = NULL, out[i].err[0] = 0;
        nurl += kind_of(src[i]) == SRC_URL;
    }
    embd_fetch_item *items = calloc(nurl ? nurl : 1, sizeof *items);
    if (!items) {
        for (size_t i = 0; i < n; i++) snprintf(out[i].err, sizeof out[i].err, "out of memory");
        return n;
    }
    for (size_t i = 0, u = 0; i < n; i++)
        if (kind_of(src[i]) == SRC_URL) items[u++].url = src[i];
    if (nurl) embd_fetch_all(items, nurl, fo);

    bool shape_set = *h > 0 || *w > 0;
    for (size_t i = 0, u = 0; i < n; i++) {
        char *err = out[i].err;
        const size_t el = sizeof out[i].err;
        size_t len = 0;
        uint8_t *bytes = source_bytes(src[i], kind_of(src[i]) == SRC_URL ? &items[u++] : NULL, lim->max_bytes, &len,
                                      err, el);
        embd_image im = {0};
        int rc = bytes ? embd_image_decode(bytes, len, lim, &im, err, el) : -1;
        free(bytes);
        if (rc == 0) {
            int oh, ow;
            embd_image_prep_size(&im, prep, &oh, &ow);
            if (!shape_set && oh > 0 && ow > 0) *h = oh, *w = ow, shape_set = true;
            if (oh != *h || ow != *w || oh <= 0 || ow <= 0)
                rc = embd_fail(err, el, "comes out %dx%d, not %dx%d like the others (use --crop)", ow, oh, *w, *h);
            else if (!(out[i].px = malloc((size_t)3 * oh * ow * sizeof(float))))
                rc = embd_fail(err, el, "out of memory");
            else
                rc = embd_image_preprocess(&im, prep, out[i].px, err, el);
        }
        embd_image_free(&im);
        if (rc != 0) {
            free(out[i].px);
            out[i].px = NULL;
            failed++;
        }
    }
    for (size_t i = 0; i < nurl; i++) embd_fetch_item_clear(&items[i]);
    free(items);
    return failed;
}

void embd_image_loaded_free(embd_image_loaded *out, size_t n) {
    for (size_t i = 0; out && i < n; i++) {
        free(out[i].px);
        out[i].px = NULL;
    }
}
