#include "../core/internal.h"

#include <stdlib.h>
#include <string.h>

/* Largest side accepted anywhere (JPEG's own limit is 65500). */
#define WOBBLE_MAX_SIDE 1000000

int image_alloc(wobble_ctx *ctx, int width, int height, wobble_image **out) {
    if (!out) return core_seterr(ctx, WOBBLE_EINVAL, "image: NULL output pointer");
    *out = NULL;
    if (width <= 0 || height <= 0 || width > WOBBLE_MAX_SIDE || height > WOBBLE_MAX_SIDE)
        return core_seterr(ctx, WOBBLE_EINVAL, "image: invalid size %dx%d", width, height);
    size_t n = (size_t)width * (size_t)height * 3u;
    wobble_image *img = malloc(sizeof *img);
    if (!img) return core_seterr(ctx, WOBBLE_ENOMEM, "image: out of memory");
    img->data = malloc(n);
    if (!img->data) {
        free(img);
        return core_seterr(ctx, WOBBLE_ENOMEM, "image: out of memory for %dx%d pixels", width, height);
    }
    img->width = width;
    img->height = height;
    *out = img;
    return WOBBLE_OK;
}

int wobble_image_create(wobble_ctx *ctx, int width, int height, wobble_image **out) {
    int rc = image_alloc(ctx, width, height, out);
    if (rc == WOBBLE_OK) memset((*out)->data, 0, (size_t)width * (size_t)height * 3u);
    return rc;
}

int wobble_image_from_rgb(wobble_ctx *ctx, int width, int height, const uint8_t *rgb,
                          wobble_image **out) {
    if (!rgb) return core_seterr(ctx, WOBBLE_EINVAL, "image: NULL pixel buffer");
    int rc = image_alloc(ctx, width, height, out);
    if (rc == WOBBLE_OK) memcpy((*out)->data, rgb, (size_t)width * (size_t)height * 3u);
    return rc;
}

int wobble_image_clone(wobble_ctx *ctx, const wobble_image *img, wobble_image **out) {
    if (!img) return core_seterr(ctx, WOBBLE_EINVAL, "image: NULL input");
    return wobble_image_from_rgb(ctx, img->width, img->height, img->data, out);
}

void wobble_image_free(wobble_image *img) {
    if (!img) return;
    free(img->data);
    free(img);
}

int wobble_image_width(const wobble_image *img) { return img ? img->width : 0; }
int wobble_image_height(const wobble_image *img) { return img ? img->height : 0; }
const uint8_t *wobble_image_data(const wobble_image *img) { return img ? img->data : NULL; }
uint8_t *wobble_image_data_mut(wobble_image *img) { return img ? img->data : NULL; }

uint64_t wobble_image_hash(const wobble_image *img) {
    if (!img) return CORE_FNV_INIT;
    const uint32_t dims[2] = {(uint32_t)img->width, (uint32_t)img->height};
    return core_fnv1a(core_fnv1a(CORE_FNV_INIT, dims, sizeof dims), img->data,
                      (size_t)img->width * (size_t)img->height * 3u);
}

wobble_format wobble_detect_format(const void *data, size_t size) {
    const uint8_t *p = data;
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (!p) return WOBBLE_FORMAT_UNKNOWN;
    if (size >= 8 && memcmp(p, png_sig, 8) == 0) return WOBBLE_FORMAT_PNG;
    if (size >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) return WOBBLE_FORMAT_JPEG;
    return WOBBLE_FORMAT_UNKNOWN;
}

int image_png_decode(wobble_ctx *ctx, const uint8_t *data, size_t size, const char *name,
                      wobble_image **out);
int image_jpeg_decode(wobble_ctx *ctx, const uint8_t *data, size_t size, const char *name,
                       wobble_image **out);

int wobble_image_decode(wobble_ctx *ctx, const void *data, size_t size, const char *name,
                        wobble_image **out) {
    const char *nm = core_name_or(name);
    if (!out) return core_seterr(ctx, WOBBLE_EINVAL, "%s: NULL output pointer", nm);
    *out = NULL;
    if (!data && size) return core_seterr(ctx, WOBBLE_EINVAL, "%s: NULL data", nm);
    if (size == 0) return core_seterr(ctx, WOBBLE_ECORRUPT, "%s: empty file", nm);
    switch (wobble_detect_format(data, size)) {
    case WOBBLE_FORMAT_PNG: return image_png_decode(ctx, data, size, nm, out);
    case WOBBLE_FORMAT_JPEG: return image_jpeg_decode(ctx, data, size, nm, out);
    default:
        return core_seterr(ctx, WOBBLE_EFORMAT, "%s: unknown image format (not PNG or JPEG)", nm);
    }
}

int wobble_image_read(wobble_ctx *ctx, const char *path, wobble_image **out) {
    if (!out) return core_seterr(ctx, WOBBLE_EINVAL, "read: NULL output pointer");
    *out = NULL;
    uint8_t *buf = NULL;
    size_t size = 0;
    int rc = core_read_file(ctx, path, &buf, &size);
    if (rc != WOBBLE_OK) return rc;
    rc = wobble_image_decode(ctx, buf, size, path, out);
    free(buf);
    return rc;
}

static int ends_with_ci(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    if (m > n) return 0;
    for (size_t i = 0; i < m; i++) {
        char a = s[n - m + i], b = suffix[i];
        if (a >= 'A' && a <= 'Z') a = (char)(a - 'A' + 'a');
        if (a != b) return 0;
    }
    return 1;
}

int wobble_image_write_jpeg(wobble_ctx *ctx, const wobble_image *img, const char *path,
                            int quality) {
    uint8_t *buf = NULL;
    size_t size = 0;
    int rc = wobble_image_encode_jpeg(ctx, img, quality, &buf, &size);
    if (rc != WOBBLE_OK) return rc;
    rc = wobble_write_file_atomic(ctx, path, buf, size);
    free(buf);
    return rc;
}

int wobble_image_write(wobble_ctx *ctx, const wobble_image *img, const char *path) {
    if (!img || !path) return core_seterr(ctx, WOBBLE_EINVAL, "write: NULL argument");
    if (ends_with_ci(path, ".jpg") || ends_with_ci(path, ".jpeg"))
        return wobble_image_write_jpeg(ctx, img, path, 95);
    if (!ends_with_ci(path, ".png"))
        return core_seterr(ctx, WOBBLE_EFORMAT, "%s: unsupported output extension (use .png, .jpg or .jpeg)", path);
    uint8_t *buf = NULL;
    size_t size = 0;
    int rc = wobble_image_encode_png(ctx, img, &buf, &size);
    if (rc != WOBBLE_OK) return rc;
    rc = wobble_write_file_atomic(ctx, path, buf, size);
    free(buf);
    return rc;
}
