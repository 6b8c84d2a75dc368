/* One decoder per format, behind embd_image_decode (decode.c), which sniffs the format and applies
 * the byte limit. Each checks max_pixels from the header before it allocates pixels. */
#ifndef EMBD_IMAGE_CODECS_H
#define EMBD_IMAGE_CODECS_H

#include "image/image.h"

int embd_jpeg_decode(const uint8_t *d, size_t n, size_t max_pixels, embd_image *out, char *err, size_t errlen);
int embd_png_decode(const uint8_t *d, size_t n, size_t max_pixels, embd_image *out, char *err, size_t errlen);
int embd_webp_decode(const uint8_t *d, size_t n, size_t max_pixels, embd_image *out, char *err, size_t errlen);

/* Refuses w x h over max_pixels (or 0-sized) and allocates out->rgb; 0 or -1 with err. */
int embd_image_alloc(embd_image *out, size_t w, size_t h, size_t max_pixels, const char *fmt, char *err,
                     size_t errlen);

#endif
