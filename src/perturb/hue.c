/*
 * Hue rotation as torchvision 0.14's functional.adjust_hue on a PIL image:
 * Pillow's 8-bit RGB->HSV, H += uint8(k * 255) modulo 256 (numpy's cast of a
 * negative float truncates toward zero and wraps), Pillow's HSV->RGB.
 * The float/double mix of each expression follows Pillow's Convert.c, which
 * the 8-bit results depend on.
 */
#include "perturb.h"

#include <math.h>

static inline int clip8i(int v) { return v <= 0 ? 0 : v >= 255 ? 255 : v; }

static inline void rgb_to_hsv(const uint8_t *in, uint8_t *hh, uint8_t *ss, uint8_t *vv) {
    const uint8_t r = in[0], g = in[1], b = in[2];
    uint8_t maxc = r > g ? r : g;
    maxc = maxc > b ? maxc : b;
    uint8_t minc = r < g ? r : g;
    minc = minc < b ? minc : b;
    *vv = maxc;
    if (minc == maxc) {
        *hh = 0;
        *ss = 0;
        return;
    }
    const float cr = (float)(maxc - minc);
    const float s = cr / (float)maxc;
    const float rc = (float)(maxc - r) / cr;
    const float gc = (float)(maxc - g) / cr;
    const float bc = (float)(maxc - b) / cr;
    float h;
    if (r == maxc)
        h = bc - gc;
    else if (g == maxc)
        h = (float)(2.0 + rc - bc);
    else
        h = (float)(4.0 + gc - rc);
    h = (float)fmod(h / 6.0 + 1.0, 1.0);
    *hh = (uint8_t)clip8i((int)(h * 255.0));
    *ss = (uint8_t)clip8i((int)(s * 255.0));
}

static inline void hsv_to_rgb(uint8_t h, uint8_t s, uint8_t v, uint8_t *out) {
    if (s == 0) {
        out[0] = out[1] = out[2] = v;
        return;
    }
    const int i = (int)floor((float)h * 6.0 / 255.0);
    const float f = (float)((float)h * 6.0 / 255.0 - (float)i);
    const float fs = (float)((float)s / 255.0);
    const uint8_t up = (uint8_t)clip8i((int)round((float)v * (1.0 - fs)));
    const uint8_t uq = (uint8_t)clip8i((int)round((float)v * (1.0 - fs * f)));
    const uint8_t ut = (uint8_t)clip8i((int)round((float)v * (1.0 - fs * (1.0 - f))));
    switch (i % 6) {
    case 0: out[0] = v; out[1] = ut; out[2] = up; break;
    case 1: out[0] = uq; out[1] = v; out[2] = up; break;
    case 2: out[0] = up; out[1] = v; out[2] = ut; break;
    case 3: out[0] = up; out[1] = uq; out[2] = v; break;
    case 4: out[0] = ut; out[1] = up; out[2] = v; break;
    default: out[0] = v; out[1] = up; out[2] = uq; break;
    }
}

int perturb_op_hue(wobble_ctx *ctx, const wobble_image *in, double level, const wobble_perturb_params *p,
                  wobble_image *out) {
    (void)p;
    long long t = (long long)(level * 255.0); /* truncation toward zero */
    const uint8_t shift = (uint8_t)(((t % 256) + 256) % 256);
    const size_t npix = (size_t)in->width * in->height;
    const uint8_t *s = in->data;
    uint8_t *d = out->data;
    const int par = npix * 3 > WOBBLE_PAR_MIN_BYTES;
#pragma omp parallel for num_threads(wobble_ctx_threads(ctx)) schedule(static) if (par)
    for (size_t i = 0; i < npix; i++) {
        uint8_t h, sat, v;
        rgb_to_hsv(s + 3 * i, &h, &sat, &v);
        hsv_to_rgb((uint8_t)(h + shift), sat, v, d + 3 * i);
    }
    return WOBBLE_OK;
}
