/*
 * ImageNet-C spatter (validation corruption; imagenet_c.h): water drops
 * (severities 1-3) or mud (4-5) from a smoothed random layer. The water
 * path runs a chain of OpenCV 4.6 operations on 8-bit and float images,
 * each reproduced here as OpenCV computes it: Canny (3x3 Sobel with
 * replicated borders, L1 magnitude, non-maximum suppression with its
 * fixed-point tan 22.5 test, hysteresis over 8-neighbours), the 5x5
 * chamfer distance transform (L2 mask 1, 1.4, 2.1969 in 16.16 fixed
 * point), truncation at 20, 3x3 box blurs, histogram equalisation and the
 * emboss filter2D, all with reflect-101 borders.
 */
#include "imagenet_c.h"
#include "ndimage.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The water path's work buffers, carved from one block (the context's
 * scratch): fresh allocations of this size per image cost more in page
 * faults than the work on 224 x 224 images. */
typedef struct {
    int *mag, *stack, *xi, *irow; /* canny: magnitudes (zero border), the edge stack */
    short *dx, *dy;
    uint8_t *map, *e, *d8, *d2;
    unsigned *t; /* distance5's bordered table */
    float *dist;
    double *srow;
} water_buf;

/* lays the buffers out from base (NULL: only sizes them); returns the bytes */
static size_t water_layout(int h, int w, uint8_t *base, water_buf *b) {
    const size_t n = (size_t)h * w, nb = (size_t)(h + 2) * (w + 2), nt = (size_t)(h + 4) * (w + 4);
    size_t off = 0;
#define CARVE(field, count)                                                         \
    do {                                                                            \
        if (base) b->field = (void *)(base + off);                                  \
        off += (sizeof(*b->field) * (size_t)(count) + 63) & ~(size_t)63;            \
    } while (0)
    CARVE(mag, nb);
    CARVE(stack, nb);
    CARVE(xi, (size_t)w + 2);
    CARVE(irow, w);
    CARVE(dx, n);
    CARVE(dy, n);
    CARVE(map, nb);
    CARVE(e, n);
    CARVE(d8, n);
    CARVE(d2, n);
    CARVE(t, nt);
    CARVE(dist, n);
    CARVE(srow, w);
#undef CARVE
    return off;
}

/* cv2.Canny(img, low, high) with aperture 3 and the L1 gradient: 255 on
 * edges, 0 elsewhere */
static void canny(const uint8_t *img, int h, int w, int low, int high, uint8_t *edges, water_buf *b) {
    int *mag = b->mag, *stack = b->stack; /* a pixel is pushed once, when it becomes an edge */
    short *dx = b->dx, *dy = b->dy;
    uint8_t *map = b->map;
    memset(mag, 0, sizeof(int) * (size_t)(h + 2) * (w + 2));
    const int W2 = w + 2;
#define P(y, x) img[(size_t)perturb_clampi(y, 0, h - 1) * w + perturb_clampi(x, 0, w - 1)]
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            const int gx = (P(y - 1, x + 1) + 2 * P(y, x + 1) + P(y + 1, x + 1)) -
                           (P(y - 1, x - 1) + 2 * P(y, x - 1) + P(y + 1, x - 1));
            const int gy = (P(y + 1, x - 1) + 2 * P(y + 1, x) + P(y + 1, x + 1)) -
                           (P(y - 1, x - 1) + 2 * P(y - 1, x) + P(y - 1, x + 1));
            dx[(size_t)y * w + x] = (short)gx, dy[(size_t)y * w + x] = (short)gy;
            mag[(size_t)(y + 1) * W2 + x + 1] = abs(gx) + abs(gy);
        }
#undef P
    memset(map, 1, (size_t)(h + 2) * W2);
    int sp = 0;
    const int TG22 = 13573;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            const int *ma = mag + (size_t)(y + 1) * W2 + x + 1;
            const int m = *ma;
            uint8_t *pm = map + (size_t)(y + 1) * W2 + x + 1;
            if (m <= low) continue; /* stays 1 */
            const int xs = dx[(size_t)y * w + x], ys = dy[(size_t)y * w + x];
            const int ax = abs(xs), ay = abs(ys) << 15;
            const int tg22x = ax * TG22;
            int peak;
            if (ay < tg22x) {
                peak = m > ma[-1] && m >= ma[1];
            } else {
                const int tg67x = tg22x + (ax << 16);
                if (ay > tg67x) {
                    peak = m > ma[-W2] && m >= ma[W2];
                } else {
                    const int s = (xs ^ ys) < 0 ? -1 : 1;
                    peak = m > ma[-W2 - s] && m > ma[W2 + s];
                }
            }
            if (!peak) continue;
            if (m > high) {
                *pm = 2;
                stack[sp++] = (int)(pm - map);
            } else {
                *pm = 0;
            }
        }
    static const int dy8[8] = {-1, -1, -1, 0, 0, 1, 1, 1}, dx8[8] = {-1, 0, 1, -1, 1, -1, 0, 1};
    while (sp > 0) {
        const int at = stack[--sp];
        for (int k = 0; k < 8; k++) {
            const int nb = at + dy8[k] * W2 + dx8[k];
            if (map[nb] == 0) {
                map[nb] = 2;
                stack[sp++] = nb;
            }
        }
    }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) edges[(size_t)y * w + x] = map[(size_t)(y + 1) * W2 + x + 1] == 2 ? 255 : 0;
}

/* cv2.distanceTransform(src, DIST_L2, 5): distance to the nearest zero,
 * two chamfer passes in 16.16 fixed point, as float */
static void distance5(const uint8_t *src, int h, int w, float *dist, unsigned *t) {
    const int B = 2, W4 = w + 2 * B;
    const unsigned HV = (unsigned)lrint(1.0f * 65536.0), DIAG = (unsigned)lrint((double)1.4f * 65536.0),
                   LONG = (unsigned)lrint((double)2.1969f * 65536.0);
    const unsigned INIT = INT_MAX, DMAX = INT_MAX >> 2;
    for (size_t i = 0; i < (size_t)(h + 2 * B) * W4; i++) t[i] = INIT;
    const int st = W4;
    for (int i = 0; i < h; i++) {
        unsigned *r = t + (size_t)(i + B) * W4 + B;
        for (int j = 0; j < w; j++) {
            if (!src[(size_t)i * w + j]) {
                r[j] = 0;
                continue;
            }
            unsigned t0 = r[j - 2 * st - 1] + LONG, v;
#define MIN_WITH(expr) v = (expr), t0 = t0 > v ? v : t0
            MIN_WITH(r[j - 2 * st + 1] + LONG);
            MIN_WITH(r[j - st - 2] + LONG);
            MIN_WITH(r[j - st - 1] + DIAG);
            MIN_WITH(r[j - st] + HV);
            MIN_WITH(r[j - st + 1] + DIAG);
            MIN_WITH(r[j - st + 2] + LONG);
            MIN_WITH(r[j - 1] + HV);
            r[j] = t0;
        }
    }
    const float scale = 1.f / 65536;
    for (int i = h - 1; i >= 0; i--) {
        unsigned *r = t + (size_t)(i + B) * W4 + B;
        for (int j = w - 1; j >= 0; j--) {
            unsigned t0 = r[j], v;
            if (t0 > HV) {
                MIN_WITH(r[j + 2 * st + 1] + LONG);
                MIN_WITH(r[j + 2 * st - 1] + LONG);
                MIN_WITH(r[j + st + 2] + LONG);
                MIN_WITH(r[j + st + 1] + DIAG);
                MIN_WITH(r[j + st] + HV);
                MIN_WITH(r[j + st - 1] + DIAG);
                MIN_WITH(r[j + st - 2] + LONG);
                MIN_WITH(r[j + 1] + HV);
                r[j] = t0;
            }
#undef MIN_WITH
            t0 = t0 > DMAX ? DMAX : t0;
            dist[(size_t)i * w + j] = (float)t0 * scale;
        }
    }
}

/* the reflect-101 column index of x - 1 .. w for 3 x 3 windows: xi[x + 1] */
static void cols101(int w, int *xi) {
    for (int x = -1; x <= w; x++) xi[x + 1] = perturb_reflect101(x, w);
}

/* 3 x 3 window sums at row y, every x, reflect-101 borders (exact in
 * double for the float input; in integers for the 8-bit one) */
static void box9f_row(const float *a, int y, int h, int w, const int *xi, double *out) {
    const float *r[3] = {a + (size_t)perturb_reflect101(y - 1, h) * w, a + (size_t)y * w, a + (size_t)perturb_reflect101(y + 1, h) * w};
    for (int x = 0; x < w; x++) {
        double s = 0;
        for (int k = 0; k < 3; k++) s += (double)r[k][xi[x]] + r[k][xi[x + 1]] + r[k][xi[x + 2]];
        out[x] = s;
    }
}

static void box9u_row(const uint8_t *a, int y, int h, int w, const int *xi, int *out) {
    const uint8_t *r[3] = {a + (size_t)perturb_reflect101(y - 1, h) * w, a + (size_t)y * w, a + (size_t)perturb_reflect101(y + 1, h) * w};
    for (int x = 0; x < w; x++) {
        int s = 0;
        for (int k = 0; k < 3; k++) s += r[k][xi[x]] + r[k][xi[x + 1]] + r[k][xi[x + 2]];
        out[x] = s;
    }
}

/* the water path's drop mask m (float32 gray values before the channel
 * scaling) from the uint8 liquid layer */
static int water_mask(wobble_ctx *ctx, const uint8_t *liquid, int h, int w, float *m) {
    const size_t n = (size_t)h * w;
    water_buf B;
    const size_t bytes = water_layout(h, w, NULL, &B);
    core_tmp tw;
    uint8_t *base = core_tmp_get(ctx, bytes <= (64u << 20) ? 3 : -1, bytes, &tw);
    if (!base) return WOBBLE_ENOMEM;
    water_layout(h, w, base, &B);
    uint8_t *e = B.e, *d8 = B.d8, *d2 = B.d2;
    float *dist = B.dist;
    int *xi = B.xi, *irow = B.irow;
    double *srow = B.srow;
    cols101(w, xi);
    canny(liquid, h, w, 50, 150, e, &B);
    for (size_t i = 0; i < n; i++) e[i] = (uint8_t)(255 - e[i]);
    distance5(e, h, w, dist, B.t);
    for (size_t i = 0; i < n; i++) dist[i] = dist[i] > 20.0f ? 20.0f : dist[i]; /* THRESH_TRUNC */
    /* blur (float, sums in double) -> uint8 by truncation */
    for (int y = 0; y < h; y++) {
        box9f_row(dist, y, h, w, xi, srow);
        for (int x = 0; x < w; x++) d8[(size_t)y * w + x] = (uint8_t)(float)(srow[x] * (1.0 / 9));
    }
    /* equalizeHist */
    {
        int hist[256] = {0}, lut[256] = {0};
        for (size_t i = 0; i < n; i++) hist[d8[i]]++;
        int i = 0;
        while (!hist[i]) ++i;
        if ((size_t)hist[i] == n) {
            for (size_t k = 0; k < n; k++) d8[k] = (uint8_t)i;
        } else {
            const float scale = (256 - 1.f) / (float)(n - (size_t)hist[i]);
            int sum = 0;
            for (lut[i++] = 0; i < 256; ++i) {
                sum += hist[i];
                const int v = (int)lrintf((float)sum * scale);
                lut[i] = v < 0 ? 0 : v > 255 ? 255 : v;
            }
            for (size_t k = 0; k < n; k++) d8[k] = (uint8_t)lut[d8[k]];
        }
    }
    /* filter2D(CV_8U) with the emboss kernel, saturated */
    static const int K[3][3] = {{-2, -1, 0}, {-1, 1, 1}, {0, 1, 2}};
    for (int y = 0; y < h; y++) {
        const uint8_t *r[3] = {d8 + (size_t)perturb_reflect101(y - 1, h) * w, d8 + (size_t)y * w, d8 + (size_t)perturb_reflect101(y + 1, h) * w};
        for (int x = 0; x < w; x++) {
            int s = 0;
            for (int a = 0; a < 3; a++)
                for (int b = 0; b < 3; b++) s += K[a][b] * r[a][xi[x + b]];
            d2[(size_t)y * w + x] = (uint8_t)(s < 0 ? 0 : s > 255 ? 255 : s);
        }
    }
    /* blur of uint8: the rounded mean, then float */
    for (int y = 0; y < h; y++) {
        box9u_row(d2, y, h, w, xi, irow);
        for (int x = 0; x < w; x++) {
            const float dd = (float)((irow[x] + 4) / 9);
            m[(size_t)y * w + x] = (float)liquid[(size_t)y * w + x] * dd;
        }
    }
    core_tmp_put(&tw);
    return WOBBLE_OK;
}

int perturb_ic_spatter(wobble_ctx *ctx, const wobble_image *in, double level, const wobble_perturb_params *p,
                       wobble_image *out) {
    static const struct {
        double loc, scale, sigma, threshold, intensity;
        int mud;
    } C[5] = {{0.65, 0.3, 4, 0.69, 0.6, 0},
              {0.65, 0.3, 3, 0.68, 0.6, 0},
              {0.65, 0.3, 2, 0.68, 0.5, 0},
              {0.65, 0.3, 1, 0.65, 1.5, 1},
              {0.67, 0.4, 1, 0.65, 1.5, 1}};
    uint32_t seed;
    int rc = perturb_ic_seed(ctx, "imagenet_c.spatter", p, level, &seed);
    if (rc != WOBBLE_OK) return rc;
    const int H = in->height, W = in->width, sev = (int)level - 1, th = wobble_ctx_threads(ctx);
    const size_t npix = (size_t)W * H;
    core_tmp t0, t1, t2;
    double *liq = core_tmp_get(ctx, 0, sizeof(double) * npix, &t0);
    float *m = core_tmp_get(ctx, 1, sizeof(float) * npix, &t1);
    uint8_t *l8 = core_tmp_get(ctx, 2, npix, &t2);
    if (!liq || !m || !l8) {
        rc = WOBBLE_ENOMEM;
        goto done;
    }
    perturb_mt mt;
    perturb_mt_seed(&mt, seed);
    perturb_mt_gauss_fill(&mt, liq, npix);
    for (size_t i = 0; i < npix; i++) liq[i] = C[sev].loc + C[sev].scale * liq[i]; /* normal(loc, scale) */
    if ((rc = perturb_nd_gaussian(liq, H, W, 1, C[sev].sigma, C[sev].sigma, 4.0, ND_NEAREST, th)) != WOBBLE_OK) goto done;
    for (size_t i = 0; i < npix; i++)
        if (liq[i] < C[sev].threshold) liq[i] = 0;
    if (!C[sev].mud) {
        /* water: liquid = uint8(liquid * 255) (NumPy's cast of a float
         * above 255 wraps; the blurred layer stays below 1) */
        for (size_t i = 0; i < npix; i++) l8[i] = (uint8_t)(int64_t)(liq[i] * 255);
        if ((rc = water_mask(ctx, l8, H, W, m)) != WOBBLE_OK) goto done;
        float mx = 0;
        for (size_t i = 0; i < npix; i++) mx = m[i] > mx ? m[i] : mx;
        const float intensity = (float)C[sev].intensity;
        const float col[3] = {(float)(175 / 255.), (float)(238 / 255.), (float)(238 / 255.)};
        for (size_t i = 0; i < npix; i++) {
            const float mi = (m[i] / mx) * intensity;
            for (int k = 0; k < 3; k++) {
                const float x = (float)in->data[3 * i + k] / 255.0f;
                float v = x + mi * col[k];
                if (isnan(v)) { /* an image without drops: 0 / 0, which NumPy's cast makes 0 */
                    out->data[3 * i + k] = 0;
                    continue;
                }
                v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
                out->data[3 * i + k] = (uint8_t)(v * 255.0f);
            }
        }
    } else {
        /* mud: m = gaussian(float32(liquid > t), sigma) (float32), values
         * below 0.8 dropped; x (1 - m) + brown m */
        for (size_t i = 0; i < npix; i++) liq[i] = liq[i] > C[sev].threshold ? 1.0 : 0.0;
        if ((rc = perturb_nd_gaussian_f32(liq, H, W, 1, C[sev].intensity, C[sev].intensity, 4.0, ND_NEAREST, th)) !=
            WOBBLE_OK)
            goto done;
        static const double brown[3] = {63 / 255., 42 / 255., 20 / 255.};
        for (size_t i = 0; i < npix; i++) {
            const float mi = liq[i] < 0.8 ? 0.0f : (float)liq[i];
            for (int k = 0; k < 3; k++) {
                const float x = ((float)in->data[3 * i + k] / 255.0f) * (1.0f - mi);
                double v = (double)x + brown[k] * (double)mi;
                v = v < 0.0 ? 0.0 : v > 1.0 ? 1.0 : v;
                out->data[3 * i + k] = (uint8_t)(v * 255);
            }
        }
    }
done:
    core_tmp_put(&t0), core_tmp_put(&t1), core_tmp_put(&t2);
    return rc == WOBBLE_OK ? WOBBLE_OK : core_seterr(ctx, rc, "imagenet_c.spatter: out of memory");
}
