/* Operations built on the codecs and the resampler: jpeg and rescale. */
#include "perturb.h"
#include "../image/resample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int perturb_op_jpeg(wobble_ctx *ctx, const wobble_image *in, double level, const wobble_perturb_params *p,
                   wobble_image *out) {
    (void)p;
    uint8_t *buf = NULL;
    size_t size = 0;
    int rc = wobble_image_encode_jpeg(ctx, in, (int)level, &buf, &size);
    if (rc != WOBBLE_OK) return rc;
    wobble_image *dec = NULL;
    rc = wobble_image_decode(ctx, buf, size, "jpeg round trip", &dec);
    free(buf);
    if (rc != WOBBLE_OK) return rc;
    if (dec->width != in->width || dec->height != in->height) {
        wobble_image_free(dec);
        return core_seterr(ctx, WOBBLE_EINTERNAL, "jpeg: round trip changed the size");
    }
    memcpy(out->data, dec->data, (size_t)in->width * in->height * 3u);
    wobble_image_free(dec);
    return WOBBLE_OK;
}

/* round(v) with halves rounded up, then at least 1 */
static int scaled(int n, double k) {
    double v = floor(n * k + 0.5);
    return v < 1.0 ? 1 : (int)v;
}

int perturb_op_rescale(wobble_ctx *ctx, const wobble_image *in, double level, const wobble_perturb_params *p,
                      wobble_image *out) {
    (void)p;
    const int w = in->width, h = in->height;
    const int sw = scaled(w, level), sh = scaled(h, level);
    uint8_t *small = malloc((size_t)sw * sh * 3u);
    if (!small) return core_seterr(ctx, WOBBLE_ENOMEM, "rescale: out of memory");
    const int th = wobble_ctx_threads(ctx);
    int rc = image_resize_rgb(in->data, w, h, small, sw, sh, WOBBLE_FILTER_BICUBIC, th);
    if (rc == WOBBLE_OK) rc = image_resize_rgb(small, sw, sh, out->data, w, h, WOBBLE_FILTER_BICUBIC, th);
    free(small);
    if (rc != WOBBLE_OK) return core_seterr(ctx, rc, "rescale: %s", wobble_strerror(rc));
    return WOBBLE_OK;
}
