/*
 * Pillow's ImageEnhance family: out = blend(degenerate, image, k) with
 * Pillow's float32 blend: t = a + k * (b - a) in single precision, clipped
 * to [0, 255] and truncated. The degenerate image is black (brightness), the
 * mean gray level (contrast), the grayscale image (saturation) or the
 * SMOOTH-filtered image (sharpness).
 */
#include "perturb.h"

#include <stdlib.h>
#include <string.h>

static inline uint8_t blend1(int a, int b, float k) {
    float t = (float)a + k * (float)(b - a);
    return t <= 0.0f ? 0 : t >= 255.0f ? 255 : (uint8_t)t;
}

/* ITU-R 601-2 luma in Pillow's fixed point (convert("L")). */
static inline int luma(const uint8_t *p) { return (p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16; }

static void apply_lut(wobble_ctx *ctx, const wobble_image *in, const uint8_t lut[256], wobble_image *out) {
    const size_t n = (size_t)in->width * in->height * 3u;
    const uint8_t *s = in->data;
    uint8_t *d = out->data;
    const int par = n > WOBBLE_PAR_MIN_BYTES;
#pragma omp parallel for num_threads(wobble_ctx_threads(ctx)) schedule(static) if (par)
    for (size_t i = 0; i < n; i++) d[i] = lut[s[i]];
}

int perturb_op_brightness(wobble_ctx *ctx, const wobble_image *in, double level, const wobble_perturb_params *p,
                         wobble_image *out) {
    (void)p;
    const float k = (float)level;
    uint8_t lut[256];
    for (int v = 0; v < 256; v++) lut[v] = blend1(0, v, k);
    apply_lut(ctx, in, lut, out);
    return WOBBLE_OK;
}

int perturb_op_contrast(wobble_ctx *ctx, const wobble_image *in, double level, const wobble_perturb_params *p,
                       wobble_image *out) {
    (void)p;
    const size_t npix = (size_t)in->width * in->height;
    uint64_t sum = 0;
    const uint8_t *s = in->data;
    const int par = npix * 3 > WOBBLE_PAR_MIN_BYTES;
#pragma omp parallel for num_threads(wobble_ctx_threads(ctx)) schedule(static) reduction(+ : sum) if (par)
    for (size_t i = 0; i < npix; i++) sum += (uint64_t)luma(s + 3 * i);
    /* ImageStat mean in double, rounded half up as int(mean + 0.5) */
    const int mean = (int)((double)sum / (double)npix + 0.5);
    const float k = (float)level;
    uint8_t lut[256];
    for (int v = 0; v < 256; v++) lut[v] = blend1(mean, v, k);
    apply_lut(ctx, in, lut, out);
    return WOBBLE_OK;
}

int perturb_op_saturation(wobble_ctx *ctx, const wobble_image *in, double level, const wobble_perturb_params *p,
                         wobble_image *out) {
    (void)p;
    const size_t npix = (size_t)in->width * in->height;
    const float k = (float)level;
    const uint8_t *s = in->data;
    uint8_t *d = out->data;
    const int par = npix * 3 > WOBBLE_PAR_MIN_BYTES;
#pragma omp parallel for num_threads(wobble_ctx_threads(ctx)) schedule(static) if (par)
    for (size_t i = 0; i < npix; i++) {
        const uint8_t *q = s + 3 * i;
        const int g = luma(q);
        d[3 * i] = blend1(g, q[0], k);
        d[3 * i + 1] = blend1(g, q[1], k);
        d[3 * i + 2] = blend1(g, q[2], k);
    }
    return WOBBLE_OK;
}

/*
 * Sharpness. Pillow's SMOOTH kernel is (1 1 1 / 1 5 1 / 1 1 1) / 13 in
 * float32, evaluated as 0.5 + the three row sums, clipped and truncated.
 * With S the integer weighted sum, the exact value 0.5 + S/13 = (S + 6.5)/13
 * is never closer than 0.5/13 = 0.038 to an integer, while the float32
 * evaluation errs by less than 3e-4 (twelve roundings of terms below 256,
 * plus the rounding of 1/13 and 5/13). Truncating it therefore always gives
 * floor((2S + 13) / 26), which is what we compute, in integers that
 * vectorise. The parity tests confirm it on every golden. S <= 13 * 255
 * gives at most 255, so no clipping is needed. Border pixels (first and last
 * row and column) are copied by Pillow and so come out unchanged; images
 * under 3x3 are left unchanged.
 */
int perturb_op_sharpness(wobble_ctx *ctx, const wobble_image *in, double level, const wobble_perturb_params *p,
                        wobble_image *out) {
    (void)p;
    const int w = in->width, h = in->height;
    const size_t stride = (size_t)w * 3u;
    if (w < 3 || h < 3) {
        memcpy(out->data, in->data, stride * h);
        return WOBBLE_OK;
    }
    const float k = (float)level;
    memcpy(out->data, in->data, stride);
    memcpy(out->data + stride * (h - 1), in->data + stride * (h - 1), stride);
    const int par = stride * h > WOBBLE_PAR_MIN_BYTES;
    int fail = 0;
#pragma omp parallel num_threads(wobble_ctx_threads(ctx)) if (par)
    {
        uint16_t *col = malloc(sizeof(uint16_t) * stride);
        if (!col) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for schedule(static)
        for (int y = 1; y < h - 1; y++) {
            if (!col) continue;
            const uint8_t *up = in->data + stride * (y - 1);
            const uint8_t *mid = in->data + stride * y;
            const uint8_t *dn = in->data + stride * (y + 1);
            uint8_t *o = out->data + stride * y;
            for (size_t i = 0; i < stride; i++) col[i] = (uint16_t)(up[i] + mid[i] + dn[i]);
            memcpy(o, mid, 3);
            for (size_t i = 3; i < stride - 3; i++) {
                const int S = col[i - 3] + col[i] + col[i + 3] + 4 * mid[i];
                const int smooth = (2 * S + 13) / 26;
                o[i] = blend1(smooth, mid[i], k);
            }
            memcpy(o + stride - 3, mid + stride - 3, 3);
        }
        free(col);
    }
    if (fail) return core_seterr(ctx, WOBBLE_ENOMEM, "sharpness: out of memory");
    return WOBBLE_OK;
}
