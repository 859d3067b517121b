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

/* Canny's 3x3 Sobel gradients and L1 magnitude of one row (r0, r1, r2 the
 * rows above, at and below, replicated at the image's edges); the interior
 * columns without clamping, in vectors where the CPU has them (integers:
 * the same values) */
static inline void sobel_at(const uint8_t *r0, const uint8_t *r1, const uint8_t *r2, int a, int b, int c, short *dx,
                            short *dy, int *mag) {
    const int gx = (r0[c] + 2 * r1[c] + r2[c]) - (r0[a] + 2 * r1[a] + r2[a]);
    const int gy = (r2[a] + 2 * r2[b] + r2[c]) - (r0[a] + 2 * r0[b] + r0[c]);
    *dx = (short)gx, *dy = (short)gy, *mag = abs(gx) + abs(gy);
}
__attribute__((target_clones("arch=x86-64-v4", "default"))) static void sobel_row(const uint8_t *r0, const uint8_t *r1,
                                                                                 const uint8_t *r2, int w, short *dx,
                                                                                 short *dy, int *mag) {
    sobel_at(r0, r1, r2, 0, 0, w > 1 ? 1 : 0, dx, dy, mag);
    for (int x = 1; x < w - 1; x++) sobel_at(r0, r1, r2, x - 1, x, x + 1, dx + x, dy + x, mag + x);
    if (w > 1) sobel_at(r0, r1, r2, w - 2, w - 1, w - 1, dx + w - 1, dy + w - 1, mag + w - 1);
}

/* cv2.Canny(img, low, high) with aperture 3 and the L1 gradient: 255 on
 * edges, 0 elsewhere */
static void canny(const uint8_t *img, int h, int w, int low, int high, uint8_t *edges, water_buf *b) {
    int *mag = b->mag, *stack = b->stack; /* a pixel is pushed once, when it becomes an edge */
    short *dx = b->dx, *dy = b->dy;
    uint8_t *map = b->map;
    memset(mag, 0, sizeof(int) * (size_t)(h + 2) * (w + 2));
    const int W2 = w + 2;
    for (int y = 0; y < h; y++) {
        const uint8_t *r0 = img + (size_t)perturb_clampi(y - 1, 0, h - 1) * w, *r1 = img + (size_t)y * w,
                      *r2 = img + (size_t)perturb_clampi(y + 1, 0, h - 1) * w;
        sobel_row(r0, r1, r2, w, dx + (size_t)y * w, dy + (size_t)y * w, mag + (size_t)(y + 1) * W2 + 1);
    }
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
 * two chamfer passes in 16.16 fixed point, as float. Each pass takes the
 * minimum over the mask's taps; those in the rows already done are
 * independent along the row and computed for the whole row first (in
 * vectors where the CPU has them), then the one same-row tap in order
 * (the minimum of unsigned sums is the same in any order; OpenCV's
 * backward pass skips the taps when t <= 1.0 (DT_HV), where none can win,
 * each being at least 1.0 more than a value >= 0). */
#define DT_HV 65536u
#define DT_DIAG 91750u  /* lrint(1.4f * 65536) */
#define DT_LONG 143976u /* lrint(2.1969f * 65536) */
__attribute__((target_clones("arch=x86-64-v4", "default"))) static void dt_rows_min(const unsigned *a, const unsigned *b,
                                                                                   unsigned *m, int w) {
    /* m[j]: the mask's taps in the row two away (a) and the adjacent one
     * (b) of the bordered table; the mask is symmetric, so the forward pass
     * (rows above) and the backward one (rows below) both use it */
    for (int j = 0; j < w; j++) {
        unsigned t = a[j - 1] + DT_LONG, v;
#define MIN_WITH(expr) v = (expr), t = t > v ? v : t
        MIN_WITH(a[j + 1] + DT_LONG);
        MIN_WITH(b[j - 2] + DT_LONG);
        MIN_WITH(b[j - 1] + DT_DIAG);
        MIN_WITH(b[j] + DT_HV);
        MIN_WITH(b[j + 1] + DT_DIAG);
        MIN_WITH(b[j + 2] + DT_LONG);
#undef MIN_WITH
        m[j] = t;
    }
}

static void distance5(const uint8_t *src, int h, int w, float *dist, unsigned *t, unsigned *m) {
    const int B = 2, W4 = w + 2 * B;
    const unsigned INIT = INT_MAX, DMAX = INT_MAX >> 2;
    for (size_t i = 0; i < (size_t)(h + 2 * B) * W4; i++) t[i] = INIT;
    const int st = W4;
    for (int i = 0; i < h; i++) {
        unsigned *r = t + (size_t)(i + B) * W4 + B;
        dt_rows_min(r - 2 * st, r - st, m, w);
        unsigned left = r[-1];
        for (int j = 0; j < w; j++) {
            unsigned v = left + DT_HV;
            v = m[j] < v ? m[j] : v;
            r[j] = left = src[(size_t)i * w + j] ? v : 0;
        }
    }
    const float scale = 1.f / 65536;
    for (int i = h - 1; i >= 0; i--) {
        unsigned *r = t + (size_t)(i + B) * W4 + B;
        dt_rows_min(r + 2 * st, r + st, m, w);
        unsigned right = r[w];
        for (int j = w - 1; j >= 0; j--) {
            unsigned v = right + DT_HV, t0 = r[j];
            v = m[j] < v ? m[j] : v;
            t0 = t0 > v ? v : t0;
            r[j] = right = t0;
            t0 = t0 > DMAX ? DMAX : t0;
            dist[(size_t)i * w + j] = (float)t0 * scale;
        }
    }
}

/* the reflect-101 column index of x - 1 .. w for 3 x 3 windows: xi[x + 1] */
static void cols101(int w, int *xi) {
    for (int x = -1; x <= w; x++) xi[x + 1] = perturb_reflect101(x, w);
}

/* the interior columns of box9f_row (no index table; vectorised where
 * the CPU allows, the same sums) */
__attribute__((target_clones("arch=x86-64-v4", "default"))) static void box9f_in(const float *r0, const float *r1,
                                                                                const float *r2, int w, double *out) {
    for (int x = 1; x < w - 1; x++) {
        double s = 0;
        s += (double)r0[x - 1] + r0[x] + r0[x + 1];
        s += (double)r1[x - 1] + r1[x] + r1[x + 1];
        s += (double)r2[x - 1] + r2[x] + r2[x + 1];
        out[x] = s;
    }
}

/* 3 x 3 window sums at row y, every x, reflect-101 borders (exact in
 * double for the float input; in integers for the 8-bit one) */
static void box9f_row(const float *a, int y, int h, int w, const int *xi, double *out) {
    const float *r[3] = {a + (size_t)perturb_reflect101(y - 1, h) * w, a + (size_t)y * w, a + (size_t)perturb_reflect101(y + 1, h) * w};
    box9f_in(r[0], r[1], r[2], w, out);
    for (int e = 0; e < (w > 1 ? 2 : 1); e++) { /* the edge columns */
        const int x = e ? w - 1 : 0;
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

/* the emboss filter2D's interior columns: K = ((-2, -1, 0), (-1, 1, 1),
 * (0, 1, 2)), saturated to 8 bits (integers: the same on any ISA) */
__attribute__((target_clones("arch=x86-64-v4", "default"))) static void emboss_in(const uint8_t *r0, const uint8_t *r1,
                                                                                 const uint8_t *r2, int w, uint8_t *d) {
    for (int x = 1; x < w - 1; x++) {
        const int s = -2 * r0[x - 1] - r0[x] - r1[x - 1] + r1[x] + r1[x + 1] + r2[x] + 2 * r2[x + 1];
        d[x] = (uint8_t)(s < 0 ? 0 : s > 255 ? 255 : s);
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
    distance5(e, h, w, dist, B.t, (unsigned *)B.irow);
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
        emboss_in(r[0], r[1], r[2], w, d2 + (size_t)y * w);
        for (int e = 0; e < (w > 1 ? 2 : 1); e++) { /* the edge columns */
            const int x = e ? w - 1 : 0;
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

/* the water path's output: x + (m / mx) intensity colour, clipped, in
 * float32 (mx > 0); 16 pixels (48 values) at a time where the CPU has
 * AVX-512, the same operations */
static const float WATER_COL[3] = {(float)(175 / 255.), (float)(238 / 255.), (float)(238 / 255.)};
static void water_out_c(const uint8_t *in, const float *m, float mx, float intensity, uint8_t *out, size_t i0,
                        size_t npix) {
    for (size_t i = i0; i < npix; i++) {
        const float mi = (m[i] / mx) * intensity;
        for (int k = 0; k < 3; k++) {
            float v = (float)in[3 * i + k] / 255.0f + mi * WATER_COL[k];
            v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
            out[3 * i + k] = (uint8_t)(v * 255.0f);
        }
    }
}
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f,avx512vl"))) static size_t water_out_avx512(const uint8_t *in, const float *m,
                                                                                    float mx, float intensity,
                                                                                    uint8_t *out, size_t npix) {
    __m512i idx[3];
    __m512 col[3];
    for (int v = 0; v < 3; v++) {
        int32_t ix[16];
        float cv[16];
        for (int l = 0; l < 16; l++) ix[l] = (16 * v + l) / 3, cv[l] = WATER_COL[(16 * v + l) % 3];
        idx[v] = _mm512_loadu_si512(ix), col[v] = _mm512_loadu_ps(cv);
    }
    const __m512 vmx = _mm512_set1_ps(mx), vin = _mm512_set1_ps(intensity), k255 = _mm512_set1_ps(255.0f),
                 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
    size_t i = 0;
    for (; i + 16 <= npix; i += 16) {
        const __m512 mi = _mm512_mul_ps(_mm512_div_ps(_mm512_loadu_ps(m + i), vmx), vin);
        for (int v = 0; v < 3; v++) {
            const __m512 x = _mm512_div_ps(
                _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(in + 3 * i + 16 * v)))), k255);
            __m512 r = _mm512_add_ps(x, _mm512_mul_ps(_mm512_permutexvar_ps(idx[v], mi), col[v]));
            r = _mm512_min_ps(_mm512_max_ps(r, zero), one);
            _mm_storeu_si128((__m128i *)(out + 3 * i + 16 * v), _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(_mm512_mul_ps(r, k255))));
        }
    }
    return i;
}
#endif
static void water_out(const uint8_t *in, const float *m, float mx, float intensity, uint8_t *out, size_t npix) {
    size_t i = 0;
#if defined(__x86_64__) && defined(__GNUC__)
    if (perturb_avx512()) i = water_out_avx512(in, m, mx, intensity, out, npix);
#endif
    water_out_c(in, m, mx, intensity, out, i, npix);
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
        if (mx == 0.0f) /* an image without drops: m / mx is 0 / 0, which NumPy's cast makes 0 */
            memset(out->data, 0, npix * 3);
        else
            water_out(in->data, m, mx, (float)C[sev].intensity, out->data, npix);
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
