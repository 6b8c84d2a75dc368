#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <jpeglib.h>
#include <openssl/evp.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>

#include "image/fetch.h"
#include "image/image.h"

/* ---- the SSRF address classifier -------------------------------------------------------------- */

static const char *classify(const char *ip) {
    struct sockaddr_in s4 = {.sin_family = AF_INET};
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
    if (inet_pton(AF_INET, ip, &s4.sin_addr) == 1) return embd_addr_nonpublic((struct sockaddr *)&s4);
    if (inet_pton(AF_INET6, ip, &s6.sin6_addr) == 1) return embd_addr_nonpublic((struct sockaddr *)&s6);
    fail_msg("bad test address %s", ip);
    return NULL;
}

static void test_addr_classes(void **state) {
    (void)state;
    static const struct {
        const char *ip, *want; /* want NULL: public */
    } cases[] = {
        {"8.8.8.8", NULL},
        {"1.1.1.1", NULL},
        {"93.184.216.34", NULL},
        {"127.0.0.1", "loopback"},
        {"127.255.255.254", "loopback"},
        {"10.0.0.1", "private"},
        {"10.255.255.255", "private"},
        {"11.0.0.0", NULL},
        {"172.15.255.255", NULL},
        {"172.16.0.0", "private"},
        {"172.31.255.255", "private"},
        {"172.32.0.0", NULL},
        {"192.168.1.1", "private"},
        {"192.169.0.0", NULL},
        {"169.254.169.254", "link-local"}, /* cloud metadata */
        {"100.63.255.255", NULL},
        {"100.64.0.0", "shared (CGNAT)"},
        {"100.127.255.255", "shared (CGNAT)"},
        {"100.128.0.0", NULL},
        {"0.0.0.0", "unspecified"},
        {"0.1.2.3", "unspecified"},
        {"224.0.0.1", "multicast"},
        {"239.255.255.255", "multicast"},
        {"255.255.255.255", "reserved"},
        {"240.0.0.1", "reserved"},
        {"192.0.2.5", "reserved"},
        {"198.18.0.1", "reserved"},
        {"2606:4700::1111", NULL},
        {"2001:4860:4860::8888", NULL},
        {"::1", "loopback"},
        {"::", "unspecified"},
        {"fe80::1", "link-local"},
        {"febf:ffff::1", "link-local"},
        {"fec0::1", "private"},
        {"fc00::1", "private"},
        {"fd12:3456::1", "private"},
        {"ff02::1", "multicast"},
        {"::ffff:127.0.0.1", "loopback"},
        {"::ffff:10.1.2.3", "private"},
        {"::ffff:169.254.169.254", "link-local"},
        {"::ffff:8.8.8.8", NULL},
        {"::127.0.0.1", "reserved"}, /* deprecated IPv4-compatible */
        {"64:ff9b::7f00:1", "loopback"},
        {"64:ff9b::808:808", NULL},
        {"2002:c0a8:0101::1", "private"}, /* 6to4 of 192.168.1.1 */
        {"2002:0808:0808::1", NULL},
        {"2001:db8::1", "reserved"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *got = classify(cases[i].ip);
        if ((got == NULL) != (cases[i].want == NULL) || (got && strcmp(got, cases[i].want)))
            fail_msg("%s: got %s, want %s", cases[i].ip, got ? got : "public", cases[i].want ? cases[i].want : "public");
    }
    struct sockaddr un = {.sa_family = AF_UNIX};
    assert_string_equal(embd_addr_nonpublic(&un), "not an IP address");
    assert_string_equal(embd_addr_nonpublic(NULL), "not an IP address");
}

/* ---- data URIs and base64 --------------------------------------------------------------------- */

static void expect_b64(const char *in, const char *want, size_t want_len) {
    uint8_t *out = (uint8_t *)0x1;
    size_t len = 99;
    char err[256] = "";
    /* an exact-size heap copy with no NUL after it: ASan catches any overread */
    size_t n = strlen(in);
    char *copy = malloc(n ? n : 1);
    memcpy(copy, in, n);
    int rc = embd_image_source_decode(copy, n, &out, &len, err, sizeof err);
    free(copy);
    if (want) {
        if (rc != 0) fail_msg("%s: %s", in, err);
        assert_int_equal(len, want_len);
        assert_memory_equal(out, want, want_len);
        free(out);
    } else {
        if (rc == 0) fail_msg("%s: accepted", in);
        assert_null(out);
        assert_int_equal(len, 0);
        assert_true(strlen(err) > 0);
    }
}

static void test_base64(void **state) {
    (void)state;
    expect_b64("QUJD", "ABC", 3);
    expect_b64("QUI=", "AB", 2);
    expect_b64("QQ==", "A", 1);
    expect_b64("QUI", "AB", 2); /* padding restored */
    expect_b64("QQ", "A", 1);
    expect_b64(" QU\nJD\r\n\tRA== ", "ABCD", 4);
    expect_b64("AAEC", "\x00\x01\x02", 3);
    expect_b64("data:image/png;base64,QUJD", "ABC", 3);
    expect_b64("DATA:image/png;BASE64,QUJD", "ABC", 3);
    expect_b64("data:;base64,QUJD", "ABC", 3);
    expect_b64("data:image/png;foo=bar;base64,QUJD", "ABC", 3);
    expect_b64("", NULL, 0);
    expect_b64("   \n", NULL, 0);
    expect_b64("====", NULL, 0);
    expect_b64("Q", NULL, 0);         /* one symbol cannot encode a byte */
    expect_b64("QUJDR", NULL, 0);     /* 5 symbols: same */
    expect_b64("QQ=", NULL, 0);       /* half the padding */
    expect_b64("QUJD====", NULL, 0);  /* too much padding */
    expect_b64("QQ==QUJD", NULL, 0);  /* data after padding */
    expect_b64("QUJD-_", NULL, 0);    /* URL-safe alphabet */
    expect_b64("QU*D", NULL, 0);
    expect_b64("data:image/png,QUJD", NULL, 0);   /* not base64 */
    expect_b64("data:image/png;base64", NULL, 0); /* no comma */
    expect_b64("data:base64,QUJD", NULL, 0);      /* ";base64" is required, not "base64" */
    expect_b64("data:image/png;base64,", NULL, 0);
    char nul[] = {'Q', 'U', 0, 'D'};
    uint8_t *out;
    size_t len;
    char err[128];
    assert_int_equal(embd_image_source_decode(nul, 4, &out, &len, err, sizeof err), -1);

    /* round trip of 10000 random bytes, wrapped at 64 columns as EVP_EncodeUpdate writes it */
    uint8_t raw[10000];
    srand(7);
    for (size_t i = 0; i < sizeof raw; i++) raw[i] = (uint8_t)rand();
    size_t cap = sizeof raw * 2;
    char *enc = malloc(cap);
    EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
    int n1 = 0, n2 = 0;
    EVP_EncodeInit(ctx);
    assert_int_equal(EVP_EncodeUpdate(ctx, (unsigned char *)enc, &n1, raw, (int)sizeof raw), 1);
    EVP_EncodeFinal(ctx, (unsigned char *)enc + n1, &n2);
    EVP_ENCODE_CTX_free(ctx);
    assert_non_null(memchr(enc, '\n', (size_t)(n1 + n2)));
    assert_int_equal(embd_image_source_decode(enc, (size_t)(n1 + n2), &out, &len, err, sizeof err), 0);
    assert_int_equal(len, sizeof raw);
    assert_memory_equal(out, raw, sizeof raw);
    free(out);
    free(enc);
}

/* ---- decoding --------------------------------------------------------------------------------- */

/* A PNG of w x h with the given format (libpng's simplified writer), pixel (x, y) = f(x, y, c). */
static uint8_t *make_png(int w, int h, png_uint_32 format, size_t *len) {
    png_image img = {.version = PNG_IMAGE_VERSION, .width = (png_uint_32)w, .height = (png_uint_32)h, .format = format};
    int ch = (int)PNG_IMAGE_PIXEL_CHANNELS(format);
    uint8_t *px = malloc((size_t)w * h * ch);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < ch; c++) px[((size_t)y * w + x) * ch + c] = (uint8_t)(x * 7 + y * 13 + c * 50);
    png_alloc_size_t n = 0;
    assert_true(png_image_write_to_memory(&img, NULL, &n, 0, px, 0, NULL));
    uint8_t *buf = malloc(n);
    assert_true(png_image_write_to_memory(&img, buf, &n, 0, px, 0, NULL));
    free(px);
    *len = n;
    return buf;
}

static void test_decode_png(void **state) {
    (void)state;
    size_t len;
    char err[256];
    embd_image im;
    /* RGBA: alpha dropped, colour kept as is (not composited) */
    uint8_t *png = make_png(17, 9, PNG_FORMAT_RGBA, &len);
    assert_int_equal(embd_image_decode(png, len, NULL, &im, err, sizeof err), 0);
    assert_int_equal(im.w, 17);
    assert_int_equal(im.h, 9);
    for (int y = 0; y < 9; y++)
        for (int x = 0; x < 17; x++)
            for (int c = 0; c < 3; c++) assert_int_equal(im.rgb[(y * 17 + x) * 3 + c], (uint8_t)(x * 7 + y * 13 + c * 50));
    embd_image_free(&im);
    assert_null(im.rgb);

    /* limits, from the header */
    embd_image_limits lim = {.max_pixels = 17 * 9 - 1};
    assert_int_equal(embd_image_decode(png, len, &lim, &im, err, sizeof err), -1);
    assert_non_null(strstr(err, "17x9 = 153 pixels, over the limit of 152"));
    assert_null(im.rgb);
    lim = (embd_image_limits){.max_bytes = len - 1};
    assert_int_equal(embd_image_decode(png, len, &lim, &im, err, sizeof err), -1);
    assert_non_null(strstr(err, "over the limit"));

    /* every truncation is refused, none crashes */
    for (size_t cut = 1; cut < len; cut += cut < 64 ? 1 : 7) {
        uint8_t *t = malloc(cut);
        memcpy(t, png, cut);
        int rc = embd_image_decode(t, cut, NULL, &im, err, sizeof err);
        free(t);
        if (rc == 0) {
            /* only a file cut after the last IDAT (IEND missing) may decode */
            assert_true(cut >= len - 12);
            embd_image_free(&im);
        } else {
            assert_true(strstr(err, "truncated") || strstr(err, "corrupt"));
        }
    }
    free(png);

    /* grey: replicated into R, G and B */
    png = make_png(5, 3, PNG_FORMAT_GRAY, &len);
    assert_int_equal(embd_image_decode(png, len, NULL, &im, err, sizeof err), 0);
    for (int i = 0; i < 15; i++) {
        uint8_t v = (uint8_t)((i % 5) * 7 + (i / 5) * 13);
        assert_int_equal(im.rgb[3 * i], v);
        assert_int_equal(im.rgb[3 * i + 1], v);
        assert_int_equal(im.rgb[3 * i + 2], v);
    }
    embd_image_free(&im);
    free(png);
}

static void test_decode_refusals(void **state) {
    (void)state;
    char err[256];
    embd_image im;
    static const struct {
        const char *data;
        size_t len;
        const char *want;
    } cases[] = {
        {"", 0, "empty image"},
        {"GIF89a\x01\x00\x01\x00", 10, "GIF images are not supported"},
        {"BM\x00\x00", 4, "unsupported image format"},
        {"\xFF\xD8", 2, "truncated"},
        {"\xFF\xD8\xFF\xE0", 4, "truncated JPEG"},
        {"\x89PNG", 4, "truncated"},
        {"\x89PNG\r\n\x1A\n", 8, "truncated PNG"},
        {"RIFF\x10\x00\x00\x00WEBPVP8 ", 16, "WebP"},
        {"hello world, not an image", 25, "unsupported image format"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        err[0] = 0;
        assert_int_equal(embd_image_decode(cases[i].data, cases[i].len, NULL, &im, err, sizeof err), -1);
        if (!strstr(err, cases[i].want)) fail_msg("case %zu: '%s' does not say '%s'", i, err, cases[i].want);
        assert_null(im.rgb);
    }
}

/* A w x h JPEG from the given samples (nc components, in_cs), stored as jpeg_cs, optionally with a
 * custom scan script (progressive). */
static uint8_t *make_jpeg(const uint8_t *px, int w, int h, int nc, J_COLOR_SPACE in_cs, J_COLOR_SPACE jpeg_cs,
                          const jpeg_scan_info *scans, int nscans, unsigned long *len) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    unsigned char *buf = NULL;
    jpeg_mem_dest(&c, &buf, len);
    c.image_width = (JDIMENSION)w, c.image_height = (JDIMENSION)h, c.input_components = nc, c.in_color_space = in_cs;
    jpeg_set_defaults(&c);
    jpeg_set_colorspace(&c, jpeg_cs);
    jpeg_set_quality(&c, 100, TRUE);
    if (scans) c.scan_info = scans, c.num_scans = nscans;
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(px + (size_t)c.next_scanline * w * nc);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    return buf;
}

/* PIL's reading of a stored 4-component sample (inverted CMYK) as RGB, for one channel. */
static int pil_cmyk(int stored, int stored_k) {
    int nk = stored_k, t = (255 - stored) * nk + 128;
    return nk - (((t >> 8) + t) >> 8);
}

static void test_decode_jpeg_ycck(void **state) {
    (void)state;
    /* flat 8x8 blocks of different inks, so that q100 compression keeps them within a level or two */
    enum { W = 32, H = 16 };
    uint8_t px[W * H * 4];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 4; c++) px[(y * W + x) * 4 + c] = (uint8_t)(((x / 8) * 60 + (y / 8) * 90 + c * 45) % 256);
    for (int ycck = 0; ycck < 2; ycck++) {
        unsigned long len = 0;
        uint8_t *jpg = make_jpeg(px, W, H, 4, JCS_CMYK, ycck ? JCS_YCCK : JCS_CMYK, NULL, 0, &len);
        embd_image im;
        char err[256];
        assert_int_equal(embd_image_decode(jpg, len, NULL, &im, err, sizeof err), 0);
        int worst = 0;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                if (x % 8 == 0 || x % 8 == 7 || y % 8 == 0 || y % 8 == 7) continue; /* block edges: upsampling */
                const uint8_t *s = px + (y * W + x) * 4;
                for (int c = 0; c < 3; c++) {
                    int d = abs(im.rgb[(y * W + x) * 3 + c] - pil_cmyk(s[c], s[3]));
                    if (d > worst) worst = d;
                }
            }
        if (worst > 4) fail_msg("%s: off by %d from PIL's inverted-CMYK reading", ycck ? "YCCK" : "CMYK", worst);
        embd_image_free(&im);
        free(jpg);
    }
}

static void test_decode_jpeg_scan_cap(void **state) {
    (void)state;
    /* A valid progressive greyscale JPEG of 1 + 63 * 11 = 694 scans: every AC coefficient on its
     * own, refined one bit at a time. Real encoders write about ten; each scan is a pass over the
     * whole image, so the decoder stops at 500. */
    enum { NS = 1 + 63 * 11 };
    static jpeg_scan_info scans[NS];
    int n = 0;
    scans[n++] = (jpeg_scan_info){.comps_in_scan = 1, .component_index = {0}, .Ss = 0, .Se = 0, .Ah = 0, .Al = 0};
    for (int k = 1; k <= 63; k++) {
        scans[n++] = (jpeg_scan_info){.comps_in_scan = 1, .Ss = k, .Se = k, .Ah = 0, .Al = 10};
        for (int al = 9; al >= 0; al--)
            scans[n++] = (jpeg_scan_info){.comps_in_scan = 1, .Ss = k, .Se = k, .Ah = al + 1, .Al = al};
    }
    assert_int_equal(n, NS);
    uint8_t px[16 * 16];
    for (int i = 0; i < 256; i++) px[i] = (uint8_t)(i * 7);
    unsigned long len = 0;
    uint8_t *jpg = make_jpeg(px, 16, 16, 1, JCS_GRAYSCALE, JCS_GRAYSCALE, scans, NS, &len);
    embd_image im;
    char err[256];
    assert_int_equal(embd_image_decode(jpg, len, NULL, &im, err, sizeof err), -1);
    assert_non_null(strstr(err, "more than 500 progressive scans"));
    free(jpg);
    /* the first 496 of those scans (coefficients 1..45) are under the cap: decoded */
    jpg = make_jpeg(px, 16, 16, 1, JCS_GRAYSCALE, JCS_GRAYSCALE, scans, 1 + 45 * 11, &len);
    assert_int_equal(embd_image_decode(jpg, len, NULL, &im, err, sizeof err), 0);
    assert_int_equal(im.w, 16);
    embd_image_free(&im);
    free(jpg);
}

/* ---- preprocessing ---------------------------------------------------------------------------- */

static embd_image synth(int w, int h, uint8_t (*f)(int x, int y, int c)) {
    embd_image im = {.w = w, .h = h, .rgb = malloc((size_t)w * h * 3)};
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) im.rgb[((size_t)y * w + x) * 3 + c] = f(x, y, c);
    return im;
}

static uint8_t pos_value(int x, int y, int c) { return (uint8_t)(x + 10 * y + 100 * c); }
static uint8_t constant(int x, int y, int c) { return (uint8_t)(c == 0 ? 200 : c == 1 ? 3 : 255); }

/* rescale 1, mean 0, std 1: the output is the pixel value itself */
static embd_image_prep raw_prep(int edge, int ch, int cw) {
    return (embd_image_prep){.shortest_edge = edge, .crop_h = ch, .crop_w = cw, .rescale = 1, .std = {1, 1, 1}};
}

static void test_prep_sizes(void **state) {
    (void)state;
    embd_image_prep p;
    embd_image_prep_clip(&p);
    int h, w;
    embd_image im = {.w = 640, .h = 480};
    embd_image_prep_size(&im, &p, &h, &w);
    assert_int_equal(h, 224), assert_int_equal(w, 224);
    p.crop_h = p.crop_w = 0;
    embd_image_prep_size(&im, &p, &h, &w);
    assert_int_equal(h, 224), assert_int_equal(w, 298); /* int(224 * 640 / 480) = 298 */
    im = (embd_image){.w = 480, .h = 640};
    embd_image_prep_size(&im, &p, &h, &w);
    assert_int_equal(h, 298), assert_int_equal(w, 224);
    im = (embd_image){.w = 3, .h = 1000};
    embd_image_prep_size(&im, &p, &h, &w);
    assert_int_equal(h, 74666), assert_int_equal(w, 224);
    im = (embd_image){.w = 7, .h = 5};
    p.shortest_edge = 0;
    embd_image_prep_size(&im, &p, &h, &w);
    assert_int_equal(h, 5), assert_int_equal(w, 7);
    p.crop_h = 3, p.crop_w = 4;
    embd_image_prep_size(&im, &p, &h, &w);
    assert_int_equal(h, 3), assert_int_equal(w, 4);
}

static void test_prep_crop_offsets(void **state) {
    (void)state;
    char err[128];
    /* 5x4, no resize, crop 3x3: top = (4 - 3) // 2 = 0, left = (5 - 3) // 2 = 1 */
    embd_image im = synth(5, 4, pos_value);
    embd_image_prep p = raw_prep(0, 3, 3);
    float out[3 * 3 * 3];
    assert_int_equal(embd_image_preprocess(&im, &p, out, err, sizeof err), 0);
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 3; y++)
            for (int x = 0; x < 3; x++) assert_float_equal(out[c * 9 + y * 3 + x], pos_value(x + 1, y, c), 0);
    embd_image_free(&im);

    /* 2x1 crop 4x4: padded; top = (1 - 4) // 2 = -2 (floor), left = (2 - 4) // 2 = -1 */
    im = synth(2, 1, pos_value);
    p = raw_prep(0, 4, 4);
    p.mean[0] = 0.5f, p.std[0] = 2; /* padding is 0 before normalisation: (0 - 0.5) / 2 */
    float o2[3 * 16];
    assert_int_equal(embd_image_preprocess(&im, &p, o2, err, sizeof err), 0);
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 4; x++) {
                int sy = y - 2, sx = x - 1;
                float v = sy == 0 && sx >= 0 && sx < 2 ? (float)pos_value(sx, 0, c) : 0.0f;
                assert_float_equal(o2[c * 16 + y * 4 + x], (v - p.mean[c]) / p.std[c], 1e-6);
            }
    embd_image_free(&im);
}

static void test_prep_resize(void **state) {
    (void)state;
    char err[160];
    /* shortest side already at the target: no resampling, the crop only */
    embd_image im = synth(9, 6, pos_value);
    embd_image_prep p = raw_prep(6, 6, 6);
    float out[3 * 36];
    assert_int_equal(embd_image_preprocess(&im, &p, out, err, sizeof err), 0);
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 6; y++)
            for (int x = 0; x < 6; x++) assert_float_equal(out[c * 36 + y * 6 + x], pos_value(x + 1, y, c), 0);
    embd_image_free(&im);

    /* a flat colour stays exactly flat through the fixed-point filter, up or down, any ratio */
    static const int sizes[][3] = {{1, 1, 7}, {640, 480, 224}, {3, 1000, 32}, {97, 31, 50}, {13, 17, 200}, {5000, 5, 16}};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        im = synth(sizes[i][0], sizes[i][1], constant);
        int e = sizes[i][2];
        p = raw_prep(e, e, e);
        float *o = malloc((size_t)3 * e * e * sizeof *o);
        assert_int_equal(embd_image_preprocess(&im, &p, o, err, sizeof err), 0);
        for (int c = 0; c < 3; c++)
            for (int k = 0; k < e * e; k++) assert_float_equal(o[c * e * e + k], constant(0, 0, c), 0);
        free(o);
        embd_image_free(&im);
    }

    /* CLIP normalisation of the flat colour */
    im = synth(50, 40, constant);
    embd_image_prep_clip(&p);
    float *o = malloc((size_t)3 * 224 * 224 * sizeof *o);
    assert_int_equal(embd_image_preprocess(&im, &p, o, err, sizeof err), 0);
    for (int c = 0; c < 3; c++)
        assert_float_equal(o[c * 224 * 224 + 1234], ((float)constant(0, 0, c) / 255.0f - p.mean[c]) / p.std[c], 1e-6);
    free(o);
    embd_image_free(&im);

    /* a 1 x 100000 strip would resize to 224 x 22,400,000: refused rather than attempted */
    im = synth(1, 100000, constant);
    float o3[3 * 4];
    p = raw_prep(224, 2, 2);
    assert_int_equal(embd_image_preprocess(&im, &p, o3, err, sizeof err), -1);
    assert_non_null(strstr(err, "aspect ratio"));
    embd_image_free(&im);
}

/* ---- fetch without a network ------------------------------------------------------------------ */

static void test_fetch_local_refusals(void **state) {
    (void)state;
    embd_fetch_opts o;
    embd_fetch_opts_default(&o);
    assert_int_equal(o.concurrency, 8);
    assert_int_equal(o.timeout_ms, 30000);
    assert_int_equal(o.max_bytes, 10u << 20);
    assert_int_equal(o.max_redirects, 3);
    assert_false(o.allow_private);
    assert_int_equal(embd_fetch_all(NULL, 0, &o), 0);
    embd_fetch_item it[3] = {{.url = "file:///etc/passwd"}, {.url = "ftp://example.com/a.png"}, {.url = NULL}};
    assert_int_equal(embd_fetch_all(it, 3, &o), 0);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(it[i].error, "only http and https URLs are supported");
        assert_null(it[i].data);
        embd_fetch_item_clear(&it[i]);
    }
    /* loopback by address: refused at connect time, before any byte is sent */
    embd_fetch_item lo = {.url = "http://127.0.0.1:9/x.png"};
    assert_int_equal(embd_fetch_all(&lo, 1, &o), 0);
    assert_non_null(strstr(lo.error, "refused to connect to a loopback address"));
    embd_fetch_item_clear(&lo);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_classes),      cmocka_unit_test(test_base64),
        cmocka_unit_test(test_decode_png),        cmocka_unit_test(test_decode_refusals),
        cmocka_unit_test(test_decode_jpeg_ycck),  cmocka_unit_test(test_decode_jpeg_scan_cap),
        cmocka_unit_test(test_prep_sizes),        cmocka_unit_test(test_prep_crop_offsets),
        cmocka_unit_test(test_prep_resize),       cmocka_unit_test(test_fetch_local_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
