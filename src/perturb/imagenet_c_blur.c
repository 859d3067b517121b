/*
 * ImageNet-C corruptions built on filters (imagenet_c.h): gaussian_blur,
 * glass_blur, motion_blur, zoom_blur, elastic_transform and defocus_blur.
 * The Gaussian filter, zoom and map_coordinates are scipy.ndimage's
 * (ndimage.h).
 */
#include "imagenet_c.h"
#include "ndimage.h"
#include "npmath.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* the image as float64 / 255 in the context's scratch slot 0 */
static double *to_unit(wobble_ctx *ctx, const wobble_image *in, core_tmp *t) {
    const size_t n = (size_t)in->width * in->height * 3u;
    double *a = core_tmp_get(ctx, 0, sizeof(double) * n, t);
    if (a) perturb_ic_unit_array(in->data, a, n);
    return a;
}

/* clip(gaussian(x, sigma=c, channel_axis=-1), 0, 1) * 255 */
int perturb_ic_gaussian_blur(wobble_ctx *ctx, const wobble_image *in, double level, const wobble_perturb_params *p,
                             wobble_image *out) {
    static const double C[5] = {1, 2, 3, 4, 6};
    (void)p;
    core_tmp ta;
    double *a = to_unit(ctx, in, &ta);
    if (!a) return core_seterr(ctx, WOBBLE_ENOMEM, "imagenet_c.gaussian_blur: out of memory");
    const double c = C[(int)level - 1];
    const int rc = perturb_nd_gaussian(a, in->height, in->width, 3, c, c, 4.0, ND_NEAREST, wobble_ctx_threads(ctx));
    if (rc == WOBBLE_OK) {
        perturb_ic_u8_array(a, out->data, (size_t)in->width * in->height * 3u);
    }
    core_tmp_put(&ta);
    return rc == WOBBLE_OK ? WOBBLE_OK : core_seterr(ctx, rc, "imagenet_c.gaussian_blur: out of memory");
}

/* x = uint8(gaussian(x, sigma) * 255); for each of `iterations` passes,
 * for h from H - d down to d + 1 and w from W - d down to d + 1:
 * (dx, dy) = randint(-d, d, size=2), then the reference's tuple "swap"
 * x[h, w], x[h + dy, w + dx] = x[h + dy, w + dx], x[h, w], which on NumPy
 * views copies pixel (h + dy, w + dx) into (h, w) and leaves the other as it
 * is; finally clip(gaussian(x / 255., sigma), 0, 1) * 255. */
int perturb_ic_glass_blur(wobble_ctx *ctx, const wobble_image *in, double level, const wobble_perturb_params *p,
                          wobble_image *out) {
    static const struct {
        double sigma;
        int delta, iterations;
    } C[5] = {{0.7, 1, 2}, {0.9, 2, 1}, {1, 2, 3}, {1.1, 3, 2}, {1.5, 4, 2}};
    uint32_t seed;
    int rc = perturb_ic_seed(ctx, "imagenet_c.glass_blur", p, level, &seed);
    if (rc != WOBBLE_OK) return rc;
    const int H = in->height, W = in->width, th = wobble_ctx_threads(ctx);
    const size_t n = (size_t)W * H * 3u;
    const int sev = (int)level - 1, d = C[sev].delta;
    core_tmp ta;
    double *a = to_unit(ctx, in, &ta);
    if (!a) return core_seterr(ctx, WOBBLE_ENOMEM, "imagenet_c.glass_blur: out of memory");
    rc = perturb_nd_gaussian(a, H, W, 3, C[sev].sigma, C[sev].sigma, 4.0, ND_NEAREST, th);
    if (rc == WOBBLE_OK) {
        uint8_t *x = out->data;
        /* uint8(a * 255): a lies in [0, 1] up to rounding, where the clip
         * changes nothing */
        perturb_ic_u8_array(a, x, n);
        perturb_mt mt;
        perturb_mt_seed(&mt, seed);
        /* each row's draws (dx, dy per pixel) at once */
        int8_t *dd = malloc((size_t)2 * W);
        if (!dd) {
            core_tmp_put(&ta);
            return core_seterr(ctx, WOBBLE_ENOMEM, "imagenet_c.glass_blur: out of memory");
        }
        for (int it = 0; it < C[sev].iterations; it++)
            for (int h = H - d; h > d; h--) {
                perturb_mt_randint_fill(&mt, -d, d, dd, (size_t)2 * (W - 2 * d));
                const int8_t *r = dd;
                for (int w = W - d; w > d; w--, r += 2)
                    memcpy(x + ((size_t)h * W + w) * 3, x + ((size_t)(h + r[1]) * W + (w + r[0])) * 3, 3);
            }
        free(dd);
        perturb_ic_unit_array(x, a, n);
        rc = perturb_nd_gaussian(a, H, W, 3, C[sev].sigma, C[sev].sigma, 4.0, ND_NEAREST, th);
        if (rc == WOBBLE_OK) perturb_ic_u8_array(a, x, n);
    }
    core_tmp_put(&ta);
    return rc == WOBBLE_OK ? WOBBLE_OK : core_seterr(ctx, rc, "imagenet_c.glass_blur: out of memory");
}

/* The motion-blur kernel of imagecorruptions: k_i = exp(-i^2 / (2 sigma^2))
 * / (sqrt(2 pi) sigma), i = 0..2 radius, over its sum. */
static void motion_kernel(int radius, int sigma, double *k) {
    const int width = 2 * radius + 1;
    const double norm = sqrt(2 * 3.141592653589793) * sigma;
    for (int i = 0; i < width; i++)
        k[i] = perturb_np_exp((double)(-(int64_t)i * i) / (double)(2 * sigma * sigma)) / norm;
    const double z = perturb_np_sum(k, (size_t)width);
    for (int i = 0; i < width; i++) k[i] /= z;
}

/* The taps of _motion_blur: with point = width (sin, cos) of the angle,
 * tap i shifts the image by dy = -ceil(i point_y / |point| - 0.5),
 * dx = -ceil(i point_x / |point| - 0.5), stopping at the first shift as
 * large as the image. Returns the number of taps. */
static int motion_taps(int radius, double angle_deg, int h, int w, int *dxs, int *dys) {
    const int width = 2 * radius + 1;
    const double rad = angle_deg * (3.141592653589793 / 180.0);
    const double py = width * sin(rad), px = width * cos(rad);
    const double hyp = hypot(py, px);
    int n = 0;
    for (int i = 0; i < width; i++) {
        const int dy = -(int)ceil((i * py) / hyp - 0.5);
        const int dx = -(int)ceil((i * px) / hyp - 0.5);
        if (abs(dy) >= h || abs(dx) >= w) break;
        dxs[n] = dx, dys[n] = dy, n++;
    }
    return n;
}

/* shift(image, dx, dy) of imagecorruptions: a roll whose wrapped-in band is
 * replaced by the nearest unshifted edge row or column, i.e. the source
 * index clamped to the image */
static inline int shifted(int i, int d, int n) { return perturb_clampi(i - d, 0, n - 1); }

/* o[i] = sum over taps t, in order, of k[t] * sp[t][i], for i in [i0, i1)
 * (defocus_blur's and _motion_blur's correlations on padded rows). Each
 * output keeps its own order of terms (0 + k0 s0, then + k1 s1, ...), the
 * sum built in a register over all taps instead of tap after tap over the
 * row; 64 outputs at a time where the CPU has AVX-512. */
static void taps_sum_c(const double *const *sp, const double *k, int nt, double *o, size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; i++) {
        double v = 0.0;
        for (int t = 0; t < nt; t++) v += k[t] * sp[t][i];
        o[i] = v;
    }
}
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f"))) static void taps_sum_avx512(const double *const *sp, const double *k, int nt,
                                                                  double *o, size_t i0, size_t i1) {
    size_t i = i0;
    for (; i + 64 <= i1; i += 64) {
        __m512d a[8];
        for (int v = 0; v < 8; v++) a[v] = _mm512_setzero_pd();
        for (int t = 0; t < nt; t++) {
            const __m512d kt = _mm512_set1_pd(k[t]);
            const double *s = sp[t] + i;
            for (int v = 0; v < 8; v++) a[v] = _mm512_add_pd(a[v], _mm512_mul_pd(kt, _mm512_loadu_pd(s + 8 * v)));
        }
        for (int v = 0; v < 8; v++) _mm512_storeu_pd(o + i + 8 * v, a[v]);
    }
    for (; i + 8 <= i1; i += 8) {
        __m512d a0 = _mm512_setzero_pd();
        for (int t = 0; t < nt; t++) a0 = _mm512_add_pd(a0, _mm512_mul_pd(_mm512_set1_pd(k[t]), _mm512_loadu_pd(sp[t] + i)));
        _mm512_storeu_pd(o + i, a0);
    }
    taps_sum_c(sp, k, nt, o, i, i1);
}
#endif

static void taps_sum(const double *const *sp, const double *k, int nt, double *o, size_t n, int vec) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (vec) {
        taps_sum_avx512(sp, k, nt, o, 0, n);
        return;
    }
#endif
    (void)vec;
    taps_sum_c(sp, k, nt, o, 0, n);
}

/* _motion_blur(a, radius, sigma, angle) of an (h, w, c) float64 array:
 * sum_i kernel[i] * shift(a, dx_i, dy_i), accumulated in float64 in tap
 * order (the reference's first term is added to float32 zeros, which NumPy
 * promotes to float64). */
int perturb_ic_motion(const double *a, int h, int w, int c, int radius, int sigma, double angle, double *out,
                      int threads) {
    double k[64] = {0};
    int dxs[64], dys[64];
    if (radius < 0 || 2 * radius + 1 > 64) return WOBBLE_EINVAL;
    motion_kernel(radius, sigma, k);
    const int taps = motion_taps(radius, angle, h, w, dxs, dys);
    /* the rows padded by the largest shift with their edge pixels (shift's
     * edges), so that every tap of every output lies inside its row */
    int R = 0;
    for (int t = 0; t < taps; t++) R = abs(dxs[t]) > R ? abs(dxs[t]) : R;
    const size_t rowlen = (size_t)w * c, pw = (size_t)(w + 2 * R) * c;
    double *pad = malloc(sizeof(double) * pw * (size_t)h);
    if (!pad) return WOBBLE_ENOMEM;
    for (int y = 0; y < h; y++) {
        const double *r = a + (size_t)y * rowlen;
        double *p = pad + (size_t)y * pw;
        memcpy(p + (size_t)R * c, r, sizeof(double) * rowlen);
        for (int j = 0; j < R; j++)
            for (int ch = 0; ch < c; ch++) {
                p[(size_t)j * c + ch] = r[ch];
                p[(size_t)(w + R + j) * c + ch] = r[(size_t)(w - 1) * c + ch];
            }
    }
    const int vec = perturb_avx512();
#pragma omp parallel for num_threads(threads) schedule(static) if ((size_t)w * h * c > 65536)
    for (int y = 0; y < h; y++) {
        const double *sp[64];
        for (int t = 0; t < taps; t++)
            sp[t] = pad + (size_t)shifted(y, dys[t], h) * pw + (size_t)(R - dxs[t]) * c;
        taps_sum(sp, k, taps, out + (size_t)y * rowlen, rowlen, vec);
    }
    free(pad);
    return WOBBLE_OK;
}

/* angle = uniform(-45, 45); clip(_motion_blur(x), 0, 255), truncated */
int perturb_ic_motion_blur(wobble_ctx *ctx, const wobble_image *in, double level, const wobble_perturb_params *p,
                           wobble_image *out) {
    static const int C[5][2] = {{10, 3}, {15, 5}, {15, 8}, {15, 12}, {20, 15}};
    uint32_t seed;
    int rc = perturb_ic_seed(ctx, "imagenet_c.motion_blur", p, level, &seed);
    if (rc != WOBBLE_OK) return rc;
    const int sev = (int)level - 1, H = in->height, W = in->width;
    const size_t n = (size_t)W * H * 3u;
    perturb_mt mt;
    perturb_mt_seed(&mt, seed);
    const double angle = perturb_mt_uniform(&mt, -45, 45);
    core_tmp t0, t1;
    double *a = core_tmp_get(ctx, 0, sizeof(double) * n, &t0), *b = core_tmp_get(ctx, 1, sizeof(double) * n, &t1);
    rc = a && b ? WOBBLE_OK : WOBBLE_ENOMEM;
    if (rc == WOBBLE_OK) {
        for (size_t i = 0; i < n; i++) a[i] = in->data[i];
        rc = perturb_ic_motion(a, H, W, 3, C[sev][0], C[sev][1], angle, b, wobble_ctx_threads(ctx));
    }
    if (rc == WOBBLE_OK)
        for (size_t i = 0; i < n; i++) out->data[i] = (uint8_t)(b[i] < 0 ? 0 : b[i] > 255 ? 255 : b[i]);
    core_tmp_put(&t0), core_tmp_put(&t1);
    return rc == WOBBLE_OK ? WOBBLE_OK : core_seterr(ctx, rc, "imagenet_c.motion_blur: out of memory");
}

/* np.arange(1, stop, step): 1, 1 + step, then 1 + i * ((1 + step) - 1),
 * ceil((stop - 1) / step) values (NumPy's fill) */
static int arange1(double stop, double step, double *z) {
    const int n = (int)ceil((stop - 1.0) / step);
    const double d = (1.0 + step) - 1.0;
    for (int i = 0; i < n; i++) z[i] = i == 0 ? 1.0 : i == 1 ? 1.0 + step : 1.0 + i * d;
    return n;
}

void perturb_ic_clipped_zoom_size(int h, int w, double z, int *oh, int *ow) {
    *oh = perturb_nd_zoom_size((int)ceil(h / z), z), *ow = perturb_nd_zoom_size((int)ceil(w / z), z);
}

void perturb_ic_clipped_zoom(const double *a, int h, int w, int c, double z, int to_float, double *out) {
    const int ch0 = (int)ceil(h / z), top0 = (h - ch0) / 2;
    const int ch1 = (int)ceil(w / z), top1 = (w - ch1) / 2;
    perturb_nd_zoom_linear(a + ((size_t)top0 * w + top1) * c, ch0, ch1, c, (size_t)w * c, out,
                           perturb_nd_zoom_size(ch0, z), perturb_nd_zoom_size(ch1, z), to_float);
}

/* x = float32(x); out = sum over z of clipped_zoom(x, z)[:h, :w] (float32
 * sums, in the order of z); clip((x + out) / (n + 1), 0, 1) * 255 in
 * float32. Each zoom is computed only where the crop [:h, :w] keeps it,
 * reading the centre crop in place, rows in parallel. */
/* zoom_blur's sum of one zoomed row into acc, 8 values (j, ch) at a time
 * where the CPU has AVX-512: the taps of 8 consecutive values lie within
 * 16 doubles of the row (zooms are >= 1), so two loads and a permutation
 * per row stand in for 8 gathers, and perturb_nd_lerp's operations run in
 * its order on 8 lanes. A block whose taps spread wider (the mirrored
 * taps at the right edge) takes the scalar code. */
typedef struct {
    int base, vec;       /* first double of the window; 0 = scalar block */
    int64_t i0[8], i1[8]; /* the taps, relative to base */
    double w0[8], w1[8]; /* x weights (0 for the zero taps: + 0 leaves acc as it is) */
} zoom_block;

static void zoom_blocks(const perturb_nd_tap *tx, int ww, zoom_block *B) {
    const int nv = 3 * ww, nb = (nv + 7) / 8;
    for (int b = 0; b < nb; b++) {
        int lo = 1 << 30, hi = -1;
        for (int l = 0; l < 8 && 8 * b + l < nv; l++) {
            const int k = 8 * b + l, j = k / 3, ch = k % 3;
            if (tx[j].zero) continue;
            const int s0 = 3 * tx[j].i0 + ch, s1 = 3 * tx[j].i1 + ch;
            lo = s0 < lo ? s0 : lo, lo = s1 < lo ? s1 : lo;
            hi = s0 > hi ? s0 : hi, hi = s1 > hi ? s1 : hi;
        }
        zoom_block *z = &B[b];
        if (hi < 0) lo = hi = 0;
        z->base = lo, z->vec = hi - lo < 16;
        for (int l = 0; l < 8; l++) {
            const int k = 8 * b + l, j = k / 3, ch = k % 3;
            if (k >= nv || tx[j].zero) {
                z->i0[l] = z->i1[l] = 0, z->w0[l] = z->w1[l] = 0.0;
                continue;
            }
            z->i0[l] = 3 * tx[j].i0 + ch - lo, z->i1[l] = 3 * tx[j].i1 + ch - lo;
            z->w0[l] = tx[j].w0, z->w1[l] = tx[j].w1;
        }
    }
}

static void zoom_row_c(float *a, const double *r0, const double *r1, const perturb_nd_tap *ty, const perturb_nd_tap *tx,
                       int k0, int k1) {
    for (int k = k0; k < k1; k++) {
        const int j = k / 3, ch = k % 3;
        if (!tx[j].zero) a[k] += (float)perturb_nd_lerp(r0 + ch, r1 + ch, 3, ty, &tx[j]);
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
/* one or two output rows at once (rows a and b, taps tya and tyb; ab NULL:
 * row a alone): the two rows' source rows are often shared (zooms >= 1
 * move less than a row per output row), and a shared row's window is
 * loaded and permuted once */
__attribute__((target("avx512f,avx512vl"))) static inline __attribute__((always_inline)) void
zoom_rows_body(float *aa, float *ab, const double *crop, size_t rs, const perturb_nd_tap *tya, const perturb_nd_tap *tyb,
               const perturb_nd_tap *tx, const zoom_block *B, int ww) {
    const int nv = 3 * ww, nb = (nv + 7) / 8;
    /* the distinct source rows and where each tap finds its row */
    int rows[4], ns = 0, at[4];
    const int want[4] = {tya->i0, tya->i1, tyb->i0, tyb->i1};
    for (int k = 0; k < 4; k++) {
        int f = 0;
        while (f < ns && rows[f] != want[k]) f++;
        if (f == ns) rows[ns++] = want[k];
        at[k] = f;
    }
    const double *src[4];
    for (int k = 0; k < ns; k++) src[k] = crop + (size_t)rows[k] * rs;
    const __m512d wa0 = _mm512_set1_pd(tya->w0), wa1 = _mm512_set1_pd(tya->w1), wb0 = _mm512_set1_pd(tyb->w0),
                  wb1 = _mm512_set1_pd(tyb->w1);
    for (int b = 0; b < nb; b++) {
        const zoom_block *z = &B[b];
        if (!z->vec) {
            const int k1 = 8 * b + 8 < nv ? 8 * b + 8 : nv;
            zoom_row_c(aa, src[at[0]], src[at[1]], tya, tx, 8 * b, k1);
            if (ab) zoom_row_c(ab, src[at[2]], src[at[3]], tyb, tx, 8 * b, k1);
            continue;
        }
        const __m512i i0 = _mm512_loadu_si512(z->i0), i1 = _mm512_loadu_si512(z->i1);
        const __m512d wx0 = _mm512_loadu_pd(z->w0), wx1 = _mm512_loadu_pd(z->w1);
        __m512d p0[4], p1[4];
        for (int k = 0; k < ns; k++) {
            const double *p = src[k] + z->base;
            const __m512d lo = _mm512_loadu_pd(p), hi = _mm512_loadu_pd(p + 8);
            p0[k] = _mm512_permutex2var_pd(lo, i0, hi), p1[k] = _mm512_permutex2var_pd(lo, i1, hi);
        }
        __m512d ta = _mm512_add_pd(_mm512_setzero_pd(), _mm512_mul_pd(_mm512_mul_pd(p0[at[0]], wa0), wx0));
        ta = _mm512_add_pd(ta, _mm512_mul_pd(_mm512_mul_pd(p1[at[0]], wa0), wx1));
        ta = _mm512_add_pd(ta, _mm512_mul_pd(_mm512_mul_pd(p0[at[1]], wa1), wx0));
        ta = _mm512_add_pd(ta, _mm512_mul_pd(_mm512_mul_pd(p1[at[1]], wa1), wx1));
        const __mmask8 m = nv - 8 * b >= 8 ? 0xff : (__mmask8)((1u << (nv - 8 * b)) - 1);
        _mm256_mask_storeu_ps(aa + 8 * b, m, _mm256_add_ps(_mm256_maskz_loadu_ps(m, aa + 8 * b), _mm512_cvtpd_ps(ta)));
        if (!ab) continue;
        __m512d tb = _mm512_add_pd(_mm512_setzero_pd(), _mm512_mul_pd(_mm512_mul_pd(p0[at[2]], wb0), wx0));
        tb = _mm512_add_pd(tb, _mm512_mul_pd(_mm512_mul_pd(p1[at[2]], wb0), wx1));
        tb = _mm512_add_pd(tb, _mm512_mul_pd(_mm512_mul_pd(p0[at[3]], wb1), wx0));
        tb = _mm512_add_pd(tb, _mm512_mul_pd(_mm512_mul_pd(p1[at[3]], wb1), wx1));
        _mm256_mask_storeu_ps(ab + 8 * b, m, _mm256_add_ps(_mm256_maskz_loadu_ps(m, ab + 8 * b), _mm512_cvtpd_ps(tb)));
    }
}
/* the body specialised for one row and for two */
__attribute__((target("avx512f,avx512vl"))) static void zoom_rows_avx512(float *aa, float *ab, const double *crop,
                                                                         size_t rs, const perturb_nd_tap *tya,
                                                                         const perturb_nd_tap *tyb,
                                                                         const perturb_nd_tap *tx,
                                                                         const zoom_block *B, int ww) {
    if (ab)
        zoom_rows_body(aa, ab, crop, rs, tya, tyb, tx, B, ww);
    else
        zoom_rows_body(aa, NULL, crop, rs, tya, tya, tx, B, ww);
}
/* the whole groups of 8 of zoom_load and zoom_store; return how many values they did */
__attribute__((target("avx512f,avx512vl"))) static size_t zoom_load_avx512(const uint8_t *src, double *x, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm512_storeu_pd(x + i, _mm512_cvtps_pd(_mm512_cvtpd_ps(perturb_ic_unit8(src + i))));
    return i;
}
__attribute__((target("avx512f,avx512vl"))) static size_t zoom_store_avx512(const double *x, const float *acc, float div,
                                                                            uint8_t *out, size_t n) {
    const __m256 d = _mm256_set1_ps(div);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        perturb_ic_store8f(out + i, _mm256_div_ps(_mm256_add_ps(_mm512_cvtpd_ps(_mm512_loadu_pd(x + i)), _mm256_loadu_ps(acc + i)), d));
    return i;
}
#endif

/* x = float32(u8 / 255.) as doubles; out = uint8(clip((float32(x) + acc) /
 * div, 0, 1) * 255) in float32: 8 values at a time where the CPU has
 * AVX-512 (the same conversions and operations; clip by max and min) */
static void zoom_load(const uint8_t *src, double *x, size_t n, int vec) {
    size_t i = 0;
#if defined(__x86_64__) && defined(__GNUC__)
    if (vec) i = zoom_load_avx512(src, x, n);
#endif
    for (; i < n; i++) x[i] = (float)(src[i] / 255.);
}
static void zoom_store(const double *x, const float *acc, float div, uint8_t *out, size_t n, int vec) {
    size_t i = 0;
#if defined(__x86_64__) && defined(__GNUC__)
    if (vec) i = zoom_store_avx512(x, acc, div, out, n);
#endif
    for (; i < n; i++) {
        float v = ((float)x[i] + acc[i]) / div;
        v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
        out[i] = (uint8_t)(v * 255.0f);
    }
}

int perturb_ic_zoom_blur(wobble_ctx *ctx, const wobble_image *in, double level, const wobble_perturb_params *p,
                         wobble_image *out) {
    static const double C[5][2] = {{1.11, 0.01}, {1.16, 0.01}, {1.21, 0.02}, {1.26, 0.02}, {1.31, 0.03}};
    (void)p;
    const int H = in->height, W = in->width, sev = (int)level - 1, th = wobble_ctx_threads(ctx);
    const size_t n = (size_t)W * H * 3u;
    double zs[32];
    const int nz = arange1(C[sev][0], C[sev][1], zs);
    core_tmp t0, t1;
    /* float32 values, and 16 doubles more that the vector path may load
     * (and not use) past the last row */
    double *x = core_tmp_get(ctx, 0, sizeof(double) * (n + 16), &t0);
    float *acc = core_tmp_get(ctx, 1, sizeof(float) * n, &t1);
    perturb_nd_tap *tx = malloc(sizeof(perturb_nd_tap) * (size_t)W);
    const int vec = perturb_avx512();
    zoom_block *B = vec ? malloc(sizeof(zoom_block) * (size_t)((3 * W + 7) / 8)) : NULL;
    if (!x || !acc || !tx || (vec && !B)) {
        core_tmp_put(&t0), core_tmp_put(&t1), free(tx), free(B);
        return core_seterr(ctx, WOBBLE_ENOMEM, "imagenet_c.zoom_blur: out of memory");
    }
    memset(acc, 0, sizeof(float) * n);
    memset(x + n, 0, sizeof(double) * 16);
    zoom_load(in->data, x, n, vec);
    for (int k = 0; k < nz; k++) {
        const double z = zs[k];
        const int ch0 = (int)ceil(H / z), top0 = (H - ch0) / 2;
        const int ch1 = (int)ceil(W / z), top1 = (W - ch1) / 2;
        const int oh = perturb_nd_zoom_size(ch0, z), ow = perturb_nd_zoom_size(ch1, z);
        const int hh = oh < H ? oh : H, ww = ow < W ? ow : W;
        const double zy = oh > 1 ? (double)(ch0 - 1) / (oh - 1) : 1.0;
        const double zx = ow > 1 ? (double)(ch1 - 1) / (ow - 1) : 1.0;
        for (int j = 0; j < ww; j++) tx[j] = perturb_nd_tap_linear(j * zx, ch1, 0);
        const double *crop = x + ((size_t)top0 * W + top1) * 3;
        if (vec) zoom_blocks(tx, ww, B);
        /* output rows in pairs (the vector path takes both at once) */
#pragma omp parallel for num_threads(th) schedule(static) if (n > 65536)
        for (int i2 = 0; i2 < (hh + 1) / 2; i2++) {
            const int i = 2 * i2;
            perturb_nd_tap ty[2];
            ty[0] = perturb_nd_tap_linear(i * zy, ch0, 0);
            ty[1] = i + 1 < hh ? perturb_nd_tap_linear((i + 1) * zy, ch0, 0) : (perturb_nd_tap){0, 0, 1, 0.0, 0.0};
            /* the pair's rows that add anything (a zero tap adds float32 zeros) */
            float *rows[2];
            const perturb_nd_tap *tys[2];
            int nr = 0;
            for (int r = 0; r < 2; r++)
                if (!ty[r].zero) rows[nr] = acc + (size_t)(i + r) * W * 3, tys[nr++] = &ty[r];
            if (!nr) continue;
#if defined(__x86_64__) && defined(__GNUC__)
            if (vec) {
                zoom_rows_avx512(rows[0], nr > 1 ? rows[1] : NULL, crop, (size_t)W * 3, tys[0], tys[nr - 1], tx, B, ww);
                continue;
            }
#endif
            for (int r = 0; r < nr; r++)
                zoom_row_c(rows[r], crop + (size_t)tys[r]->i0 * W * 3, crop + (size_t)tys[r]->i1 * W * 3, tys[r], tx, 0,
                           3 * ww);
        }
    }
    zoom_store(x, acc, (float)(nz + 1), out->data, n, vec);
    core_tmp_put(&t0), core_tmp_put(&t1), free(tx), free(B);
    return WOBBLE_OK;
}

/* x = float32(x) (as float32 / 255); two displacement fields, each
 * float32(gaussian(uniform(-m, m, (h, w)), sigma = 0.01 (h, w), reflect,
 * truncate 3) * alpha) with m = 0.005 h; then
 * clip(map_coordinates(x, (y + dy, x + dx, ch), order 1, reflect), 0, 1) * 255,
 * all float32 */
int perturb_ic_elastic_transform(wobble_ctx *ctx, const wobble_image *in, double level,
                                 const wobble_perturb_params *p, wobble_image *out) {
    static const double ALPHA[5] = {250 * 0.05, 250 * 0.065, 250 * 0.085, 250 * 0.1, 250 * 0.12};
    uint32_t seed;
    int rc = perturb_ic_seed(ctx, "imagenet_c.elastic_transform", p, level, &seed);
    if (rc != WOBBLE_OK) return rc;
    const int H = in->height, W = in->width, th = wobble_ctx_threads(ctx);
    const size_t npix = (size_t)W * H, n = npix * 3u;
    const double alpha = ALPHA[(int)level - 1], m = H * 0.005, sy = H * 0.01, sx = W * 0.01;
    core_tmp t0, t1, t2, t3;
    double *img = core_tmp_get(ctx, 0, sizeof(double) * n, &t0), *dx = core_tmp_get(ctx, 1, sizeof(double) * npix, &t1);
    double *dy = core_tmp_get(ctx, 2, sizeof(double) * npix, &t2), *res = core_tmp_get(ctx, 3, sizeof(double) * n, &t3);
    if (!img || !dx || !dy || !res) {
        rc = WOBBLE_ENOMEM;
        goto done;
    }
    for (size_t i = 0; i < n; i++) img[i] = (double)((float)in->data[i] / 255.0f);
    perturb_mt mt;
    perturb_mt_seed(&mt, seed);
    double *fields[2] = {dx, dy};
    for (int f = 0; f < 2; f++) {
        perturb_mt_uniform_fill(&mt, -m, m, fields[f], npix);
        rc = perturb_nd_gaussian(fields[f], H, W, 1, sy, sx, 3.0, ND_REFLECT, th);
        if (rc != WOBBLE_OK) goto done;
        for (size_t i = 0; i < npix; i++) fields[f][i] = (float)(fields[f][i] * alpha);
    }
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            const size_t i = (size_t)y * W + x;
            dy[i] = (double)y + dy[i];
            dx[i] = (double)x + dx[i];
        }
    perturb_nd_map_linear(img, H, W, 3, dy, dx, res, 1, th);
    perturb_ic_u8f_array(res, out->data, n);
done:
    core_tmp_put(&t0), core_tmp_put(&t1), core_tmp_put(&t2), core_tmp_put(&t3);
    return rc == WOBBLE_OK ? WOBBLE_OK : core_seterr(ctx, rc, "imagenet_c.elastic_transform: out of memory");
}

/* ------------------------------------------------------------ defocus */

/* disk(radius, alias_blur) of imagecorruptions, float32, side 17 (radius
 * <= 8) or 2 radius + 1: the aliased disk over its count, then
 * cv2.GaussianBlur(ksize 3 or 5, sigma) with OpenCV 4.6's kernel (its
 * bit-exact exp construction: t_i = exp(x_i^2 (-0.125 / sigma^2)) for
 * x = 1 - n, 3 - n, ..., centre 1 / (1 + 2 sum t), sides t_i times that)
 * and arithmetic: the row pass fma(c, k0, (l + r) k1) for 3 taps and
 * c k0 then fma(l + r, k_d, s) outwards for 5, the column pass the latter,
 * borders reflected about the edge pixel (reflect-101). Returns the side. */
static int defocus_kernel(int radius, double alias, float *k) {
    const int side = radius <= 8 ? 17 : 2 * radius + 1, half = side / 2, ks = radius <= 8 ? 3 : 5, r = ks / 2;
    int count = 0;
    for (int y = -half; y <= half; y++)
        for (int x = -half; x <= half; x++) count += x * x + y * y <= radius * radius;
    const float inv = 1.0f / (float)count;
    float a[41 * 41], tmp[41 * 41];
    for (int y = -half; y <= half; y++)
        for (int x = -half; x <= half; x++) a[(y + half) * side + x + half] = x * x + y * y <= radius * radius ? inv : 0.0f;
    /* OpenCV's Gaussian kernel */
    double t[2] = {0, 0}, sum = 0;
    const double scale = -0.125 / (alias * alias);
    for (int i = 0, x = 1 - ks; i < r; i++, x += 2) {
        t[i] = exp((double)(x * x) * scale);
        sum += t[i];
    }
    sum = 1.0 / (sum * 2 + 1.0);
    float g[5];
    for (int i = 0; i < r; i++) g[i] = g[ks - 1 - i] = (float)(t[i] * sum);
    g[r] = (float)sum;
    /* rows into tmp, columns into k */
    for (int y = 0; y < side; y++)
        for (int x = 0; x < side; x++) {
            const float *row = a + y * side;
            float s;
            if (ks == 3) {
                s = fmaf(row[x], g[1], (row[perturb_reflect101(x - 1, side)] + row[perturb_reflect101(x + 1, side)]) * g[2]);
            } else {
                s = row[x] * g[2];
                for (int d = 1; d <= 2; d++)
                    s = fmaf(row[perturb_reflect101(x - d, side)] + row[perturb_reflect101(x + d, side)], g[2 + d], s);
            }
            tmp[y * side + x] = s;
        }
    for (int y = 0; y < side; y++)
        for (int x = 0; x < side; x++) {
            float s = tmp[y * side + x] * g[r];
            for (int d = 1; d <= r; d++)
                s = fmaf(tmp[perturb_reflect101(y - d, side) * side + x] + tmp[perturb_reflect101(y + d, side) * side + x], g[r + d], s);
            k[y * side + x] = s;
        }
    return side;
}

/* x / 255 correlated per channel with the disk (cv2.filter2D, float64,
 * reflect-101 borders; OpenCV takes a DFT for kernels this large, computed
 * here directly), clip(., 0, 1) * 255 */
int perturb_ic_defocus_blur(wobble_ctx *ctx, const wobble_image *in, double level, const wobble_perturb_params *p,
                            wobble_image *out) {
    static const double C[5][2] = {{3, 0.1}, {4, 0.5}, {6, 0.5}, {8, 0.5}, {10, 0.5}};
    (void)p;
    const int sev = (int)level - 1, H = in->height, W = in->width;
    float kf[21 * 21];
    const int side = defocus_kernel((int)C[sev][0], C[sev][1], kf), half = side / 2;
    double k[21 * 21];
    for (int i = 0; i < side * side; i++) k[i] = kf[i];
    /* the nonzero taps in row-major order; each output adds them in that
     * order, computed tap by tap over whole rows */
    int ty[21 * 21], tx[21 * 21], nt = 0;
    for (int i = 0; i < side * side; i++)
        if (k[i] != 0.0) ty[nt] = i / side - half, tx[nt] = i % side - half, k[nt++] = k[i];
    /* x / 255. with reflect101 borders of half the kernel's side around it
     * (OpenCV's border; half < 32 <= W, H), so that every output's taps lie
     * inside the padded rows */
    const size_t rowlen = (size_t)W * 3, n = rowlen * H, pw = (size_t)(W + 2 * half) * 3;
    core_tmp tx0;
    double *x = core_tmp_get(ctx, 0, sizeof(double) * pw * (size_t)(H + 2 * half), &tx0);
    if (!x) return core_seterr(ctx, WOBBLE_ENOMEM, "imagenet_c.defocus_blur: out of memory");
    for (int py = 0; py < H + 2 * half; py++) {
        const uint8_t *srow = in->data + (size_t)perturb_reflect101(py - half, H) * rowlen;
        double *prow = x + (size_t)py * pw;
        perturb_ic_unit_array(srow, prow + (size_t)half * 3, rowlen);
        for (int e = 0; e < half; e++)
            for (int ch = 0; ch < 3; ch++) {
                prow[(size_t)e * 3 + ch] = prow[(size_t)(2 * half - e) * 3 + ch];
                prow[(size_t)(W + 2 * half - 1 - e) * 3 + ch] = prow[(size_t)(W - 1 + e) * 3 + ch];
            }
    }
    const int vec = perturb_avx512();
    int failed = 0;
#pragma omp parallel num_threads(wobble_ctx_threads(ctx)) if (n > WOBBLE_PAR_MIN_BYTES)
    {
        double *acc = malloc(sizeof(double) * rowlen);
        const double **sp = malloc(sizeof(double *) * (size_t)nt);
        if (!acc || !sp) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int y = 0; y < H; y++) {
            if (!acc || !sp) continue;
            for (int t = 0; t < nt; t++) sp[t] = x + (size_t)(y + half + ty[t]) * pw + (size_t)(half + tx[t]) * 3;
            taps_sum(sp, k, nt, acc, rowlen, vec);
            uint8_t *o = out->data + (size_t)y * rowlen;
            perturb_ic_u8_array(acc, o, rowlen);
        }
        free(acc);
        free(sp);
    }
    core_tmp_put(&tx0);
    if (failed) return core_seterr(ctx, WOBBLE_ENOMEM, "imagenet_c.defocus_blur: out of memory");
    return WOBBLE_OK;
}
