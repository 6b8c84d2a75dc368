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
    size_t max_bytes;  /* encoded input above this is refused (0: EMBD_IMAGE_MAX_BYTES_DEFAULT) */
} embd_image_limits;

/* Used where lim is NULL or a field is 0. 50 Mpx is 150 MB of RGB, a bit over half of PIL's
 * MAX_IMAGE_PIXELS warning threshold. */
#define EMBD_IMAGE_MAX_PIXELS_DEFAULT ((size_t)50 * 1000 * 1000)
#define EMBD_IMAGE_MAX_BYTES_DEFAULT ((size_t)64 << 20)

/* Decodes a JPEG (grayscale and CMYK too), PNG (palette, 16-bit, grey; alpha dropped as PIL's
 * convert("RGB") does) or still WebP. Returns 0, or -1 with a one-line err meant for the client
 * (unsupported format, animated image, over the pixel limit, truncated/corrupt file).
 * The pixels are what PIL 9.4's Image.open(f).convert("RGB") gives, quirks included: 16-bit grey
 * PNG is clipped to 255 (PIL's "I" -> "RGB"), and every 4-component JPEG is read as Adobe-inverted
 * CMYK. EXIF orientation is not applied (CLIPImageProcessor does not apply it either). */
int embd_image_decode(const void *data, size_t len, const embd_image_limits *lim, embd_image *out, char *err,
                      size_t errlen);
void embd_image_free(embd_image *im);

typedef struct {
    int shortest_edge;  /* resize so the short side is this many pixels (0: no resize) */
    int crop_h, crop_w; /* center crop (0: none) */
    float rescale;      /* usually 1/255 */
    float mean[3], std[3];
} embd_image_prep;

/* CLIP's processor: shortest edge 224, center crop 224x224, 1/255, OpenAI CLIP mean/std. */
void embd_image_prep_clip(embd_image_prep *p);

/* Output size of embd_image_preprocess for im: 3 * out_h * out_w floats (the crop size when
 * cropping; without a crop, 0 x 0 where the resized image would be refused). */
void embd_image_prep_size(const embd_image *im, const embd_image_prep *p, int *out_h, int *out_w);
/* Writes the normalised CHW float tensor to out. Returns 0, or -1 with err (out of memory, or a
 * resized side over 2^24 pixels, e.g. a 1 x 100000 strip at 224: aspect ratio too extreme). Only
 * the pixels inside the crop are resampled, so the cost follows the crop, not the resized size. */
int embd_image_preprocess(const embd_image *im, const embd_image_prep *p, float *out, char *err, size_t errlen);

#endif
