/*
 * Preprocessing as the models' official pipelines: resize with the
 * configured Pillow filter (short side to S with the long side truncated,
 * int(S * long / short), as torchvision and Hugging Face compute it; or to an
 * exact size), centre crop with torchvision's rounding (offsets
 * round((size - crop) / 2) with Python's round-half-even, zero padding when
 * the crop is larger), then x * rescale, (x - mean) / std.
 */
#include "model.h"
#include "../image/resample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int wobble_model_preprocess_u8(wobble_ctx *ctx, const wobble_model *m, const wobble_image *img, wobble_image **out) {
    if (!m || !img || !out) return core_seterr(ctx, WOBBLE_EINVAL, "preprocess: NULL argument");
    *out = NULL;
    int w = img->width, h = img->height;
    int nw = w, nh = h;
    if (m->resize_short > 0) {
        const int s = m->resize_short;
        if (w <= h) {
            nw = s;
            nh = (int)((double)s * h / w);
        } else {
            nh = s;
            nw = (int)((double)s * w / h);
        }
        if (nw < 1) nw = 1;
        if (nh < 1) nh = 1;
    } else if (m->resize_h > 0 && m->resize_w > 0) {
        nw = m->resize_w;
        nh = m->resize_h;
    }
    if (m->crop_h <= 0 || m->crop_w <= 0) return wobble_image_resize(ctx, img, nw, nh, m->filter, out);
    const int ch = m->crop_h, cw = m->crop_w;
    /* torchvision pads (left = (cw - w) // 2, top = (ch - h) // 2) when the crop is
     * larger, then crops at round((size - crop) / 2) */
    const int pad_l = cw > nw ? (cw - nw) / 2 : 0, pad_t = ch > nh ? (ch - nh) / 2 : 0;
    const int pw = nw + (cw > nw ? cw - nw : 0), ph = nh + (ch > nh ? ch - nh : 0);
    const int top = (int)nearbyint((ph - ch) / 2.0), left = (int)nearbyint((pw - cw) / 2.0);
    wobble_image *c = NULL;
    int rc;
    if (cw <= nw && ch <= nh && (unsigned)m->filter <= WOBBLE_FILTER_LANCZOS) {
        /* the crop lies inside the resized image: only its window of the
         * resize is computed (the full resize's coefficients, the same pixels) */
        if ((rc = image_alloc(ctx, cw, ch, &c))) return rc;
        rc = image_resize_rgb_window(img->data, w, h, c->data, nw, nh, left, top, cw, ch, m->filter,
                                     wobble_ctx_threads(ctx));
        if (rc) {
            wobble_image_free(c);
            return core_seterr(ctx, rc, "preprocess: resize: %s", wobble_strerror(rc));
        }
        *out = c;
        return WOBBLE_OK;
    }
    wobble_image *r = NULL;
    if ((rc = wobble_image_resize(ctx, img, nw, nh, m->filter, &r))) return rc;
    rc = wobble_image_create(ctx, cw, ch, &c); /* zero-filled: torchvision pads with 0 */
    if (rc) {
        wobble_image_free(r);
        return rc;
    }
    for (int y = 0; y < ch; y++) {
        int sy = y + top - pad_t;
        if (sy < 0 || sy >= nh) continue;
        for (int x = 0; x < cw; x++) {
            int sx = x + left - pad_l;
            if (sx < 0 || sx >= nw) continue;
            memcpy(c->data + ((size_t)y * cw + x) * 3, r->data + ((size_t)sy * nw + sx) * 3, 3);
        }
    }
    wobble_image_free(r);
    *out = c;
    return WOBBLE_OK;
}

/* uint8 HWC -> float CHW: rescale as Hugging Face does (double product,
 * rounded to float32), normalise in float32 as torchvision and Hugging Face
 * both do. Each channel's result is a function of the byte alone: computed
 * once for the 256 values, then looked up. */
int wobble_model_normalize(const wobble_model *m, const wobble_image *u, float *chw) {
    const size_t n = (size_t)u->height * u->width;
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) {
            const float x = (float)(v * m->rescale);
            lut[c][v] = (x - m->mean[c]) / m->std[c];
        }
    float *o0 = chw, *o1 = chw + n, *o2 = chw + 2 * n;
    const uint8_t *d = u->data;
    for (size_t i = 0; i < n; i++) {
        o0[i] = lut[0][d[3 * i]];
        o1[i] = lut[1][d[3 * i + 1]];
        o2[i] = lut[2][d[3 * i + 2]];
    }
    return WOBBLE_OK;
}

int wobble_model_preprocess(wobble_ctx *ctx, const wobble_model *m, const wobble_image *img, float *chw, int *h,
                            int *w) {
    wobble_image *u = NULL;
    int rc = wobble_model_preprocess_u8(ctx, m, img, &u);
    if (rc) return rc;
    if (h) *h = u->height;
    if (w) *w = u->width;
    if (chw) wobble_model_normalize(m, u, chw);
    wobble_image_free(u);
    return WOBBLE_OK;
}
