/* JPEG decoding and encoding with libjpeg-turbo, with Pillow's settings. */
#include "../core/internal.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

struct jerr {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int hit_eof;
    char msg[JMSG_LENGTH_MAX];
};

static void jerr_exit(j_common_ptr cinfo) {
    struct jerr *e = (struct jerr *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->jump, 1);
}

static void jerr_emit(j_common_ptr cinfo, int level) {
    struct jerr *e = (struct jerr *)cinfo->err;
    /* Warnings: a file that ends early is an error (Pillow raises "image file
     * is truncated"); other recoverable corruption is tolerated, as in Pillow. */
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) e->hit_eof = 1;
}

static void jerr_silent(j_common_ptr cinfo) { (void)cinfo; }

static void jerr_init(struct jerr *e) {
    memset(e, 0, sizeof *e);
    jpeg_std_error(&e->pub);
    e->pub.error_exit = jerr_exit;
    e->pub.emit_message = jerr_emit;
    e->pub.output_message = jerr_silent;
}

/* (a*b + 128) / 255 rounded, as Pillow's MULDIV255 */
static inline int muldiv255(int a, int b) {
    int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

int image_jpeg_decode(wobble_ctx *ctx, const uint8_t *data, size_t size, const char *name,
                       wobble_image **out) {
    struct jpeg_decompress_struct cinfo;
    struct jerr err;
    jerr_init(&err);
    cinfo.err = &err.pub;
    wobble_image *volatile img = NULL;
    uint8_t *volatile row = NULL;
    volatile int status = WOBBLE_OK;
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        wobble_image_free(img);
        free(row);
        if (status != WOBBLE_OK) return status;
        return core_seterr(ctx, WOBBLE_ECORRUPT, "%s: corrupt JPEG: %s", name, err.msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    if (err.hit_eof) {
        jpeg_destroy_decompress(&cinfo);
        return core_seterr(ctx, WOBBLE_ECORRUPT, "%s: truncated JPEG (header incomplete, %zu bytes)", name, size);
    }
    uint64_t npix = (uint64_t)cinfo.image_width * cinfo.image_height;
    if (ctx && ctx->max_pixels && npix > ctx->max_pixels) {
        status = core_seterr(ctx, WOBBLE_ELIMIT, "%s: image is %ux%u = %llu pixels, over the limit of %llu",
                               name, cinfo.image_width, cinfo.image_height, (unsigned long long)npix,
                               (unsigned long long)ctx->max_pixels);
        longjmp(err.jump, 1);
    }
    int ncomp = cinfo.num_components;
    if (ncomp == 1) {
        cinfo.out_color_space = JCS_GRAYSCALE;
    } else if (ncomp == 3) {
        cinfo.out_color_space = JCS_RGB;
    } else if (ncomp == 4) {
        cinfo.out_color_space = JCS_CMYK;
    } else {
        status = core_seterr(ctx, WOBBLE_EFORMAT, "%s: unsupported JPEG with %d components", name, ncomp);
        longjmp(err.jump, 1);
    }
    jpeg_start_decompress(&cinfo);
    wobble_image *im = NULL;
    int rc = image_alloc(ctx, (int)cinfo.output_width, (int)cinfo.output_height, &im);
    if (rc != WOBBLE_OK) {
        status = rc;
        longjmp(err.jump, 1);
    }
    img = im;
    int w = (int)cinfo.output_width;
    if (ncomp != 3) {
        row = malloc((size_t)w * (size_t)cinfo.output_components);
        if (!row) {
            status = core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", name);
            longjmp(err.jump, 1);
        }
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        uint8_t *dst = img->data + (size_t)cinfo.output_scanline * (size_t)w * 3u;
        JSAMPROW rp = ncomp == 3 ? dst : row;
        jpeg_read_scanlines(&cinfo, &rp, 1);
        if (ncomp == 1) {
            for (int x = 0; x < w; x++) dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = row[x];
        } else if (ncomp == 4) {
            /* Pillow reads CMYK JPEGs with Adobe polarity ("CMYK;I"), then
             * converts CMYK to RGB without undercolour removal. */
            for (int x = 0; x < w; x++) {
                int c = 255 - row[4 * x], m = 255 - row[4 * x + 1], yy = 255 - row[4 * x + 2];
                int nk = row[4 * x + 3]; /* 255 - inverted K */
                int r = nk - muldiv255(c, nk), g = nk - muldiv255(m, nk), b = nk - muldiv255(yy, nk);
                dst[3 * x] = (uint8_t)(r < 0 ? 0 : r > 255 ? 255 : r);
                dst[3 * x + 1] = (uint8_t)(g < 0 ? 0 : g > 255 ? 255 : g);
                dst[3 * x + 2] = (uint8_t)(b < 0 ? 0 : b > 255 ? 255 : b);
            }
        }
        if (err.hit_eof) break;
    }
    if (err.hit_eof) {
        unsigned got = cinfo.output_scanline;
        unsigned total = cinfo.output_height;
        jpeg_destroy_decompress(&cinfo);
        wobble_image_free(img);
        free(row);
        return core_seterr(ctx, WOBBLE_ECORRUPT, "%s: truncated JPEG (data ends near row %u of %u)", name, got, total);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(row);
    *out = img;
    return WOBBLE_OK;
}

int wobble_image_encode_jpeg(wobble_ctx *ctx, const wobble_image *img, int quality, uint8_t **buf,
                             size_t *size) {
    if (!img || !buf || !size) return core_seterr(ctx, WOBBLE_EINVAL, "encode jpeg: NULL argument");
    if (quality < 1 || quality > 100)
        return core_seterr(ctx, WOBBLE_EDOMAIN, "encode jpeg: quality %d outside 1..100", quality);
    if (img->width > JPEG_MAX_DIMENSION || img->height > JPEG_MAX_DIMENSION)
        return core_seterr(ctx, WOBBLE_ELIMIT, "encode jpeg: %dx%d exceeds the JPEG limit of %d pixels a side",
                             img->width, img->height, (int)JPEG_MAX_DIMENSION);
    struct jpeg_compress_struct cinfo;
    struct jerr err;
    jerr_init(&err);
    cinfo.err = &err.pub;
    /* libjpeg writes the buffer pointer through &dst.buf: keep it in memory */
    struct {
        unsigned char *buf;
        unsigned long len;
    } dst = {NULL, 0};
    if (setjmp(err.jump)) {
        jpeg_destroy_compress(&cinfo);
        free(dst.buf);
        return core_seterr(ctx, WOBBLE_EINTERNAL, "encode jpeg: %s", err.msg);
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, &dst.buf, &dst.len);
    cinfo.image_width = (JDIMENSION)img->width;
    cinfo.image_height = (JDIMENSION)img->height;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo); /* YCbCr, 2x2 luma sampling (4:2:0), islow DCT */
    jpeg_set_quality(&cinfo, quality, TRUE);
    cinfo.optimize_coding = FALSE;
    cinfo.smoothing_factor = 0;
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW rp = img->data + (size_t)cinfo.next_scanline * (size_t)img->width * 3u;
        jpeg_write_scanlines(&cinfo, &rp, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    *buf = dst.buf;
    *size = (size_t)dst.len;
    return WOBBLE_OK;
}
