/* JPEG through libjpeg-turbo with the same output colour spaces and default DCT/upsampling that
 * PIL uses, so pixels match PIL bit for bit. libjpeg reports errors through error_exit, which
 * must not return: it longjmps back here. */
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#include "image/codecs.h"
#include "util/sys.h"

/* A progressive JPEG can hold thousands of tiny scans that each cost a pass over the whole
 * coefficient buffer (a CPU bomb); real encoders write about ten. libjpeg-turbo's fuzzers cap 500. */
#define MAX_SCANS 500

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
    bool truncated;
} jpeg_err;

static void on_error(j_common_ptr c) {
    jpeg_err *e = (jpeg_err *)c->err;
    c->err->format_message(c, e->msg);
    longjmp(e->jb, 1);
}

/* Warnings (level -1) about corrupt data are tolerated as PIL tolerates them, except running out
 * of data: libjpeg would pad with grey and carry on, PIL says "image file is truncated". */
static void on_message(j_common_ptr c, int level) {
    jpeg_err *e = (jpeg_err *)c->err;
    if (level == -1 && c->err->msg_code == JWRN_JPEG_EOF) {
        e->truncated = true;
        longjmp(e->jb, 1);
    }
}

static void on_progress(j_common_ptr c) {
    if (!c->is_decompressor || ((j_decompress_ptr)c)->input_scan_number <= MAX_SCANS) return;
    jpeg_err *e = (jpeg_err *)c->err;
    snprintf(e->msg, sizeof e->msg, "more than %d progressive scans", MAX_SCANS);
    longjmp(e->jb, 1);
}

/* PIL's CMYK -> RGB (Convert.c cmyk2rgb) after its "CMYK;I" unpacking, which inverts every
 * 4-component JPEG (Adobe convention, assumed whether or not the APP14 marker is there). */
static uint8_t cmyk_channel(uint8_t stored, uint8_t stored_k) {
    int c = 255 - stored, nk = stored_k; /* nk = 255 - k, k = 255 - stored_k */
    int t = c * nk + 128;
    return (uint8_t)(nk - (((t >> 8) + t) >> 8));
}

int embd_jpeg_decode(const uint8_t *d, size_t n, size_t max_pixels, embd_image *out, char *err, size_t errlen) {
    struct jpeg_decompress_struct ci;
    jpeg_err e;
    struct jpeg_progress_mgr prog;
    memset(&prog, 0, sizeof prog);
    prog.progress_monitor = on_progress;
    uint8_t *volatile row = NULL;
    ci.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = on_error;
    e.pub.emit_message = on_message;
    e.msg[0] = 0;
    e.truncated = false;
    if (setjmp(e.jb)) {
        jpeg_destroy_decompress(&ci);
        free(row);
        if (e.truncated) return embd_fail(err, errlen, "truncated JPEG file (premature end of data)");
        return embd_fail(err, errlen, "corrupt JPEG file: %s", e.msg);
    }
    jpeg_create_decompress(&ci);
    ci.progress = &prog;
    jpeg_mem_src(&ci, d, (unsigned long)n);
    jpeg_read_header(&ci, TRUE);
    int nc = ci.num_components;
    if (nc == 1) ci.out_color_space = JCS_GRAYSCALE;
    else if (nc == 3) ci.out_color_space = JCS_RGB;
    else if (nc == 4) ci.out_color_space = JCS_CMYK; /* libjpeg turns YCCK into CMYK */
    else {
        snprintf(e.msg, sizeof e.msg, "%d colour components are not supported", nc);
        longjmp(e.jb, 1);
    }
    /* before jpeg_start_decompress, which allocates per the header (whole-image buffers when
     * progressive) */
    if (embd_image_alloc(out, ci.image_width, ci.image_height, max_pixels, "JPEG", e.msg, sizeof e.msg)) {
        jpeg_destroy_decompress(&ci);
        return embd_fail(err, errlen, "%s", e.msg);
    }
    jpeg_start_decompress(&ci);
    size_t w = ci.output_width;
    if (nc != 3) {
        row = malloc(w * (size_t)nc);
        if (!row) {
            snprintf(e.msg, sizeof e.msg, "out of memory");
            longjmp(e.jb, 1);
        }
    }
    while (ci.output_scanline < ci.output_height) {
        uint8_t *dst = out->rgb + (size_t)ci.output_scanline * w * 3;
        JSAMPROW rp = nc == 3 ? dst : row;
        if (jpeg_read_scanlines(&ci, &rp, 1) != 1) { /* only a suspending source returns 0 */
            e.truncated = true;
            longjmp(e.jb, 1);
        }
        if (nc == 1)
            for (size_t x = 0; x < w; x++) dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = row[x];
        else if (nc == 4)
            for (size_t x = 0; x < w; x++)
                for (int c = 0; c < 3; c++) dst[3 * x + c] = cmyk_channel(row[4 * x + c], row[4 * x + 3]);
    }
    /* No jpeg_finish_decompress: trailing garbage or a missing EOI after complete pixel data is
     * not worth refusing the image. */
    jpeg_destroy_decompress(&ci);
    free(row);
    return 0;
}
