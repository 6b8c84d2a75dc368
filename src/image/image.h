/* Untrusted image bytes -> RGB pixels -> a model's input tensor, as Hugging Face's
 * CLIPImageProcessor computes it (PIL bicubic resize of the shortest side, center crop, rescale,
 * normalise). Decoding uses libjpeg-turbo, libpng and libwebp. */
#ifndef EMBD_IMAGE_H
#define EMBD_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int w, h;
    uint8_t *rgb; /* w * h * 3 bytes, row-major, RGB */
} embd_image;

typedef struct {
    size_t max_pixels; /* w * h above this is refused from the header, before decoding (bombs) */
} embd_image_limits;

/* Decodes a JPEG (grayscale and CMYK too), PNG (palette, 16-bit, grey; alpha dropped as PIL's
 * convert("RGB") does) or still WebP. Returns 0, or -1 with a one-line err meant for the client
 * (unsupported format, animated image, over the pixel limit, truncated/corrupt file). */
int embd_image_decode(const void *data, size_t len, const embd_image_limits *lim, embd_image *out, char *err,
                      size_t errlen);
void embd_image_free(embd_image *im);

typedef struct {
    int shortest_edge;  /* resize so the short side is this many pixels (0: no resize) */
    int crop_h, crop_w; /* center crop (0: none) */
    float rescale;      /* usually 1/255 */
    float mean[3], std[3];
} embd_image_prep;

/* Output size of embd_image_preprocess for im: 3 * out_h * out_w floats. */
void embd_image_prep_size(const embd_image *im, const embd_image_prep *p, int *out_h, int *out_w);
/* Writes the normalised CHW float tensor to out. Returns 0, or -1 with err (out of memory). */
int embd_image_preprocess(const embd_image *im, const embd_image_prep *p, float *out, char *err, size_t errlen);

#endif
