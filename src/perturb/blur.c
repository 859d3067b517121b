/*
 * Gaussian blur as Pillow's ImageFilter.GaussianBlur(radius=sigma): three
 * passes of an "extended" box filter (integer radius plus a fractional
 * weight on the two far taps, Gwosdek et al. 2011) horizontally, then three
 * vertically, with edge pixels repeated. Weights are 24-bit fixed point;
 * the float arithmetic that derives them is Pillow's, in the same precision.
 */
#include "perturb.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Fractional box radius giving variance sigma^2 / passes per pass. */
static float box_radius(float sigma, int passes) {
    const float sigma2 = sigma * sigma / passes;
    const float L = (float)sqrt(12.0 * sigma2 + 1.0);
    const float l = (float)floor((L - 1.0) / 2.0);
    float a = (2 * l + 1) * (l * (l + 1) - 3 * sigma2);
    a /= 6 * (sigma2 - (l + 1) * (l + 1));
    return l + a;
}

typedef struct {
    int r;       /* integer radius */
    uint32_t ww; /* weight of the 2r+1 inner taps, 2^24 scale */
    uint32_t fw; /* weight of each of the 2 far taps */
} box_t;

static box_t box_make(float radius) {
    box_t b;
    b.r = (int)radius;
    b.ww = (uint32_t)((float)(1 << 24) / (radius * 2 + 1));
    b.fw = ((1u << 24) - (uint32_t)(b.r * 2 + 1) * b.ww) / 2;
    return b;
}

static inline int clampi(int i, int n) { return i < 0 ? 0 : i >= n ? n - 1 : i; }

/* One pass over a line of n RGB pixels. in and out must not alias. */
static void box_line(const uint8_t *in, uint8_t *out, int n, box_t b) {
    const int r = b.r;
    uint32_t acc[3] = {0, 0, 0};
    /* window of x = -1: indices [-r-1, r-1], clamped */
    {
        long lo = -(long)r - 1, hi = (long)r - 1;
        long below = lo < 0 ? (hi < 0 ? hi - lo + 1 : -lo) : 0;     /* indices < 0 */
        long above = hi > n - 1 ? hi - (lo > n - 1 ? lo : n - 1) : 0; /* indices > n-1 */
        long a = lo < 0 ? 0 : lo, z = hi > n - 1 ? n - 1 : hi;
        for (int c = 0; c < 3; c++) {
            uint32_t s = (uint32_t)below * in[c] + (uint32_t)above * in[3 * (n - 1) + c];
            for (long i = a; i <= z; i++) s += in[3 * i + c];
            acc[c] = s;
        }
    }
    const uint32_t ww = b.ww, fw = b.fw;
    int x = 0;
    /* edges use clamped indices; the middle needs none */
    const int mid_lo = r + 1, mid_hi = n - r - 2; /* x with x-r-1 >= 0 and x+r+1 <= n-1 */
    for (; x < n && x < mid_lo; x++) {
        const int add = clampi(x + r, n), sub = clampi(x - r - 1, n), far = clampi(x + r + 1, n);
        for (int c = 0; c < 3; c++) {
            acc[c] += (uint32_t)in[3 * add + c] - in[3 * sub + c];
            uint32_t bulk = acc[c] * ww + (uint32_t)(in[3 * sub + c] + in[3 * far + c]) * fw;
            out[3 * x + c] = (uint8_t)((bulk + (1u << 23)) >> 24);
        }
    }
    for (; x <= mid_hi; x++) {
        const uint8_t *pa = in + 3 * (x + r), *ps = in + 3 * (x - r - 1), *pf = in + 3 * (x + r + 1);
        for (int c = 0; c < 3; c++) {
            acc[c] += (uint32_t)pa[c] - ps[c];
            uint32_t bulk = acc[c] * ww + (uint32_t)(ps[c] + pf[c]) * fw;
            out[3 * x + c] = (uint8_t)((bulk + (1u << 23)) >> 24);
        }
    }
    for (; x < n; x++) {
        const int add = clampi(x + r, n), sub = clampi(x - r - 1, n), far = clampi(x + r + 1, n);
        for (int c = 0; c < 3; c++) {
            acc[c] += (uint32_t)in[3 * add + c] - in[3 * sub + c];
            uint32_t bulk = acc[c] * ww + (uint32_t)(in[3 * sub + c] + in[3 * far + c]) * fw;
            out[3 * x + c] = (uint8_t)((bulk + (1u << 23)) >> 24);
        }
    }
}

/* `passes` box passes on every row of a (w x h) RGB image, src -> dst. */
static int blur_rows(const uint8_t *src, uint8_t *dst, int w, int h, box_t b, int passes, int threads) {
    const size_t stride = (size_t)w * 3u;
    int fail = 0;
    const int par = stride * h > WOBBLE_PAR_MIN_BYTES;
#pragma omp parallel num_threads(threads) if (par)
    {
        uint8_t *t0 = malloc(stride), *t1 = malloc(stride);
        if (!t0 || !t1) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for schedule(static)
        for (int y = 0; y < h; y++) {
            if (!t0 || !t1) continue;
            const uint8_t *cur = src + stride * y;
            for (int p = 0; p < passes; p++) {
                uint8_t *dest = (p == passes - 1) ? dst + stride * y : (p % 2 ? t1 : t0);
                box_line(cur, dest, w, b);
                cur = dest;
            }
        }
        free(t0);
        free(t1);
    }
    return fail ? WOBBLE_ENOMEM : WOBBLE_OK;
}

/* Transpose an RGB image (w x h) -> (h x w), in cache-sized tiles. */
static void transpose_rgb(const uint8_t *src, uint8_t *dst, int w, int h, int threads) {
    const int T = 32;
    const int par = (size_t)w * h * 3u > WOBBLE_PAR_MIN_BYTES;
#pragma omp parallel for num_threads(threads) schedule(static) collapse(2) if (par)
    for (int by = 0; by < h; by += T)
        for (int bx = 0; bx < w; bx += T) {
            int ey = by + T < h ? by + T : h, ex = bx + T < w ? bx + T : w;
            for (int y = by; y < ey; y++)
                for (int x = bx; x < ex; x++) {
                    const uint8_t *s = src + ((size_t)y * w + x) * 3u;
                    uint8_t *d = dst + ((size_t)x * h + y) * 3u;
                    d[0] = s[0];
                    d[1] = s[1];
                    d[2] = s[2];
                }
        }
}

int perturb_op_gaussian_blur(wobble_ctx *ctx, const wobble_image *in, double level, const wobble_perturb_params *p,
                            wobble_image *out) {
    (void)p;
    const int passes = 3;
    const float radius = box_radius((float)level, passes);
    const box_t b = box_make(radius);
    const int w = in->width, h = in->height, th = wobble_ctx_threads(ctx);
    const size_t n = (size_t)w * h * 3u;
    uint8_t *t1 = malloc(n), *t2 = malloc(n);
    if (!t1 || !t2) {
        free(t1);
        free(t2);
        return core_seterr(ctx, WOBBLE_ENOMEM, "gaussian_blur: out of memory");
    }
    int rc = blur_rows(in->data, t1, w, h, b, passes, th);
    if (rc == WOBBLE_OK) {
        transpose_rgb(t1, t2, w, h, th);
        rc = blur_rows(t2, t1, h, w, b, passes, th);
    }
    if (rc == WOBBLE_OK) transpose_rgb(t1, out->data, h, w, th);
    free(t1);
    free(t2);
    if (rc != WOBBLE_OK) return core_seterr(ctx, rc, "gaussian_blur: out of memory");
    return WOBBLE_OK;
}
