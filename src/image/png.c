/* PNG decoding and encoding with libpng, matching Pillow's convert("RGB"). */
#include "../core/internal.h"

#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

struct png_src {
    const uint8_t *data;
    size_t size;
    size_t pos;
    int truncated;
    char msg[256];
};

static void png_src_read(png_structp png, png_bytep out, size_t n) {
    struct png_src *s = png_get_io_ptr(png);
    if (n > s->size - s->pos) {
        s->truncated = 1;
        png_error(png, "file is truncated");
    }
    memcpy(out, s->data + s->pos, n);
    s->pos += n;
}

static void png_on_error(png_structp png, png_const_charp msg) {
    struct png_src *s = png_get_error_ptr(png);
    if (s && !s->msg[0]) {
        strncpy(s->msg, msg ? msg : "libpng error", sizeof s->msg - 1);
        s->msg[sizeof s->msg - 1] = 0;
    }
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg; /* Pillow ignores recoverable problems too */
}

/* out: the RGB image as Pillow converts it; or, with d16, the raw samples of
 * a 16-bit grayscale PNG (anything else is refused). */
static int png_decode(wobble_ctx *ctx, const uint8_t *data, size_t size, const char *name, wobble_image **out,
                      uint16_t **d16, int *dw, int *dh) {
    struct png_src src = {data, size, 0, 0, {0}};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_on_error, png_on_warning);
    if (!png) return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory (libpng)", name);
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory (libpng)", name);
    }
    uint8_t *volatile raw = NULL;
    wobble_image *volatile img = NULL;
    png_bytep *volatile rows = NULL;
    volatile int status = WOBBLE_OK;

    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(raw);
        free(rows);
        wobble_image_free(img);
        if (status != WOBBLE_OK) return status;
        if (src.truncated)
            return core_seterr(ctx, WOBBLE_ECORRUPT, "%s: truncated PNG (ends after %zu bytes)", name, size);
        return core_seterr(ctx, WOBBLE_ECORRUPT, "%s: corrupt PNG: %s", name, src.msg[0] ? src.msg : "decoder error");
    }
    png_set_read_fn(png, &src, png_src_read);
    png_read_info(png, info);

    png_uint_32 w = 0, h = 0;
    int bit_depth = 0, color_type = 0, interlace = 0;
    png_get_IHDR(png, info, &w, &h, &bit_depth, &color_type, &interlace, NULL, NULL);
    if (ctx && ctx->max_pixels && (uint64_t)w * (uint64_t)h > ctx->max_pixels) {
        status = core_seterr(ctx, WOBBLE_ELIMIT, "%s: image is %ux%u = %llu pixels, over the limit of %llu",
                               name, (unsigned)w, (unsigned)h, (unsigned long long)w * h,
                               (unsigned long long)ctx->max_pixels);
        png_longjmp(png, 1);
    }
    const int gray16 = (color_type == PNG_COLOR_TYPE_GRAY && bit_depth == 16);
    if (d16 && !gray16) {
        status = core_seterr(ctx, WOBBLE_ECORRUPT, "%s: not a 16-bit grayscale PNG (bit depth %d, %s)", name, bit_depth,
                             color_type == PNG_COLOR_TYPE_GRAY ? "grayscale" : "colour");
        png_longjmp(png, 1);
    }
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (bit_depth == 16 && !gray16) png_set_strip_16(png); /* keeps the high byte, like Pillow */
    png_set_strip_alpha(png);                              /* convert("RGB") drops alpha */
    if (!gray16 && (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_GRAY_ALPHA))
        png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    size_t rowbytes = png_get_rowbytes(png, info);
    size_t expect = gray16 ? (size_t)w * 2u : (size_t)w * 3u;
    if (rowbytes != expect) {
        status = core_seterr(ctx, WOBBLE_EINTERNAL, "%s: unexpected PNG row size %zu (expected %zu)", name, rowbytes, expect);
        png_longjmp(png, 1);
    }
    wobble_image *im = NULL;
    int rc = d16 ? WOBBLE_OK : image_alloc(ctx, (int)w, (int)h, &im);
    if (rc != WOBBLE_OK) {
        status = rc;
        png_longjmp(png, 1);
    }
    img = im;
    rows = malloc(sizeof(png_bytep) * h);
    if (!rows) {
        status = core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", name);
        png_longjmp(png, 1);
    }
    if (gray16) {
        raw = malloc(rowbytes * h);
        if (!raw) {
            status = core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", name);
            png_longjmp(png, 1);
        }
        for (png_uint_32 y = 0; y < h; y++) rows[y] = raw + rowbytes * y;
    } else {
        for (png_uint_32 y = 0; y < h; y++) rows[y] = img->data + rowbytes * y;
    }
    png_read_image(png, rows);
    if (d16) {
        /* big-endian samples to host order, in place */
        uint16_t *v = (uint16_t *)raw;
        for (size_t i = 0; i < (size_t)w * h; i++) v[i] = (uint16_t)(raw[2 * i] << 8 | raw[2 * i + 1]);
        png_destroy_read_struct(&png, &info, NULL);
        free(rows);
        *d16 = v;
        *dw = (int)w, *dh = (int)h;
        return WOBBLE_OK;
    }
    if (gray16) {
        /* Pillow opens 16-bit gray as mode "I"; convert("RGB") clips to 0..255 */
        for (png_uint_32 y = 0; y < h; y++) {
            const uint8_t *r = raw + rowbytes * y;
            uint8_t *o = img->data + (size_t)y * w * 3u;
            for (png_uint_32 x = 0; x < w; x++) {
                unsigned v = ((unsigned)r[2 * x] << 8) | r[2 * x + 1];
                uint8_t c = v >= 255 ? 255 : (uint8_t)v;
                o[3 * x] = o[3 * x + 1] = o[3 * x + 2] = c;
            }
        }
    }
    png_destroy_read_struct(&png, &info, NULL);
    free(raw);
    free(rows);
    *out = img;
    return WOBBLE_OK;
}

int image_png_decode(wobble_ctx *ctx, const uint8_t *data, size_t size, const char *name, wobble_image **out) {
    return png_decode(ctx, data, size, name, out, NULL, NULL, NULL);
}

int image_png_decode_gray16(wobble_ctx *ctx, const uint8_t *data, size_t size, const char *name, uint16_t **out, int *w,
                            int *h) {
    return png_decode(ctx, data, size, name, NULL, out, w, h);
}

struct png_sink {
    uint8_t *buf;
    size_t len, cap;
    int oom;
};

static void png_sink_write(png_structp png, png_bytep data, size_t n) {
    struct png_sink *s = png_get_io_ptr(png);
    if (core_grow(&s->buf, &s->cap, s->len + n, 1)) {
        s->oom = 1;
        png_error(png, "out of memory");
    }
    memcpy(s->buf + s->len, data, n);
    s->len += n;
}

static void png_sink_flush(png_structp png) { (void)png; }

int wobble_image_encode_png(wobble_ctx *ctx, const wobble_image *img, uint8_t **buf, size_t *size) {
    if (!img || !buf || !size) return core_seterr(ctx, WOBBLE_EINVAL, "encode png: NULL argument");
    struct png_src err = {0};
    struct png_sink sink = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &err, png_on_error, png_on_warning);
    if (!png) return core_seterr(ctx, WOBBLE_ENOMEM, "encode png: out of memory");
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return core_seterr(ctx, WOBBLE_ENOMEM, "encode png: out of memory");
    }
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(rows);
        free(sink.buf);
        if (sink.oom) return core_seterr(ctx, WOBBLE_ENOMEM, "encode png: out of memory");
        return core_seterr(ctx, WOBBLE_EINTERNAL, "encode png: %s", err.msg[0] ? err.msg : "libpng error");
    }
    png_set_write_fn(png, &sink, png_sink_write, png_sink_flush);
    png_set_IHDR(png, info, (png_uint_32)img->width, (png_uint_32)img->height, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_compression_level(png, 6);
    rows = malloc(sizeof(png_bytep) * (size_t)img->height);
    if (!rows) {
        sink.oom = 1;
        png_error(png, "out of memory");
    }
    for (int y = 0; y < img->height; y++) rows[y] = img->data + (size_t)y * img->width * 3u;
    png_set_rows(png, info, rows);
    png_write_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    *buf = sink.buf;
    *size = sink.len;
    return WOBBLE_OK;
}
