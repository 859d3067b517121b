/* Depth maps: 16-bit PNG files in sensor units (docs/depth.md). */
#include "depth.h"

#include <stdlib.h>

int wobble_depth_read_png(wobble_ctx *ctx, const char *path, double scale, int *w, int *h, float **metres) {
    *metres = NULL;
    if (!(scale > 0)) return core_seterr(ctx, WOBBLE_EDOMAIN, "%s: depth scale %g is not positive", path, scale);
    uint8_t *data = NULL;
    size_t size = 0;
    int rc = core_read_file(ctx, path, &data, &size);
    if (rc) return rc;
    if (wobble_detect_format(data, size) != WOBBLE_FORMAT_PNG) {
        free(data);
        return core_seterr(ctx, WOBBLE_ECORRUPT, "%s: not a PNG file (depth maps are 16-bit grayscale PNG)", path);
    }
    uint16_t *raw = NULL;
    rc = image_png_decode_gray16(ctx, data, size, path, &raw, w, h);
    free(data);
    if (rc) return rc;
    const size_t n = (size_t)*w * *h;
    float *m = malloc(sizeof(float) * (n ? n : 1));
    if (!m) {
        free(raw);
        return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
    }
    for (size_t i = 0; i < n; i++) m[i] = (float)(raw[i] / scale);
    free(raw);
    *metres = m;
    return WOBBLE_OK;
}
