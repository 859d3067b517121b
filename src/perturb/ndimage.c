/* scipy.ndimage's Gaussian filter, zoom and map_coordinates (ndimage.h). */
#include "ndimage.h"
#include "npmath.h"
#include "nprandom.h"
#include "wobble.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

/* ------------------------------------------------------------ Gaussian */
/* the weights w[0..r] (w[k] for offsets +-k); NULL when out of memory */
static double *gauss_weights(double sigma, double truncate, int *radius) {
    const int r = (int)(truncate * sigma + 0.5);
    double *phi = malloc(sizeof(double) * (2 * (size_t)r + 1));
    if (!phi) return NULL;
    const double a = -0.5 / (sigma * sigma);
    for (int k = -r; k <= r; k++) phi[k + r] = perturb_np_exp(a * (double)((int64_t)k * k));
    const double s = perturb_np_sum(phi, 2 * (size_t)r + 1);
    for (int k = 0; k <= r; k++) phi[k] = phi[k + r] / s; /* symmetric: keep the right half */
    *radius = r;
    return phi;
}

static inline int extend(int i, int n, int mode) {
    if (i >= 0 && i < n) return i;
    if (mode == ND_NEAREST) return i < 0 ? 0 : n - 1;
    /* reflect (half-sample symmetric), period 2n */
    const int p = 2 * n;
    i %= p;
    if (i < 0) i += p;
    return i < n ? i : p - 1 - i;
}

/* acc[i] = s0[i] w0, then + (lo_k[i] + hi_k[i]) wk for k = r .. 1, where
 * lo_k and hi_k are the rows k above and k below (axis 0) or the values k
 * pixels left and right (axis 1): each output's terms in SciPy's order, the
 * outputs side by side (vectorised) */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void scale_into(double *restrict acc, const double *restrict s0, double w0, size_t len) {
    for (size_t i = 0; i < len; i++) acc[i] = s0[i] * w0;
}

/* acc += (lo_k + hi_k) w_k for four k in turn (the same order), acc kept
 * in registers across the four */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void add_pairs4(double *restrict acc, const double *const *lo, const double *const *hi, const double *w,
                       size_t len) {
    const double *restrict l0 = lo[0], *restrict l1 = lo[1], *restrict l2 = lo[2], *restrict l3 = lo[3];
    const double *restrict h0 = hi[0], *restrict h1 = hi[1], *restrict h2 = hi[2], *restrict h3 = hi[3];
    const double w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
    for (size_t i = 0; i < len; i++) {
        double v = acc[i];
        v += (l0[i] + h0[i]) * w0;
        v += (l1[i] + h1[i]) * w1;
        v += (l2[i] + h2[i]) * w2;
        v += (l3[i] + h3[i]) * w3;
        acc[i] = v;
    }
}

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void add_pair(double *restrict acc, const double *restrict lo, const double *restrict hi, double wk,
                     size_t len) {
    for (size_t i = 0; i < len; i++) acc[i] += (lo[i] + hi[i]) * wk;
}

static void correlate_rows(const double *const *rows, double *acc, size_t len, const double *wt, int r) {
    scale_into(acc, rows[r], wt[0], len);
    int k = r;
    for (; k >= 4; k -= 4) {
        const double *lo[4] = {rows[r - k], rows[r - k + 1], rows[r - k + 2], rows[r - k + 3]};
        const double *hi[4] = {rows[r + k], rows[r + k - 1], rows[r + k - 2], rows[r + k - 3]};
        const double w[4] = {wt[k], wt[k - 1], wt[k - 2], wt[k - 3]};
        add_pairs4(acc, lo, hi, w, len);
    }
    for (; k >= 1; k--) add_pair(acc, rows[r - k], rows[r + k], wt[k], len);
}

/* correlate1d along one axis of a (h, w, c) float64 array, in place.
 * Along axis 0 the image is taken in strips of ND_STRIP values across: a strip's
 * column segments, extended by r rows at the top and bottom, are copied
 * into a small buffer, and each output row of the strip is combined from
 * the buffer's rows y - r .. y + r (vectorised across the strip) and
 * written back. Along axis 1 each row is extended by r pixels on both sides
 * and filtered with offsets of k pixels (k c values). Both give each output
 * SciPy's terms in SciPy's order, as one line at a time would: the same
 * bits. */
#define ND_STRIP 64
static int correlate_axis(double *a, int h, int w, int c, int axis, const double *wt, int r, int mode, int threads) {
    const size_t rowlen = (size_t)w * c, n = rowlen * h;
    const int nstrips = (int)((rowlen + ND_STRIP - 1) / ND_STRIP);
    const size_t bufn = axis == 0 ? ((size_t)h + 2 * (size_t)r) * ND_STRIP + ND_STRIP
                                  : ((size_t)w + 2 * (size_t)r) * c + rowlen; /* extended row, output row */
    int failed = 0;
#pragma omp parallel num_threads(threads) if (n > 65536)
    {
        const double **rows = malloc(sizeof(double *) * (2 * (size_t)r + 1));
        double *buf = malloc(sizeof(double) * bufn);
        const int ok = rows && buf;
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
        if (axis == 0) {
#pragma omp for schedule(static)
            for (int st = 0; st < nstrips; st++) {
                if (!ok) continue;
                const size_t j0 = (size_t)st * ND_STRIP, cnt = rowlen - j0 < ND_STRIP ? rowlen - j0 : ND_STRIP;
                double *acc = buf + ((size_t)h + 2 * (size_t)r) * ND_STRIP;
                for (int i = -r; i < h + r; i++)
                    memcpy(buf + (size_t)(i + r) * ND_STRIP, a + (size_t)extend(i, h, mode) * rowlen + j0,
                           sizeof(double) * cnt);
                for (int y = 0; y < h; y++) {
                    for (int k = 0; k <= 2 * r; k++) rows[k] = buf + (size_t)(y + k) * ND_STRIP;
                    correlate_rows(rows, acc, cnt, wt, r);
                    memcpy(a + (size_t)y * rowlen + j0, acc, sizeof(double) * cnt);
                }
            }
        } else {
#pragma omp for schedule(static)
            for (int y = 0; y < h; y++) {
                if (!ok) continue;
                double *row = a + (size_t)y * rowlen, *acc = buf + ((size_t)w + 2 * (size_t)r) * c;
                memcpy(buf + (size_t)r * c, row, sizeof(double) * rowlen);
                for (int x = -r; x < 0; x++)
                    for (int ch = 0; ch < c; ch++) buf[(size_t)(x + r) * c + ch] = row[(size_t)extend(x, w, mode) * c + ch];
                for (int x = w; x < w + r; x++)
                    for (int ch = 0; ch < c; ch++) buf[(size_t)(x + r) * c + ch] = row[(size_t)extend(x, w, mode) * c + ch];
                for (int k = 0; k <= 2 * r; k++) rows[k] = buf + (size_t)k * c;
                correlate_rows(rows, acc, rowlen, wt, r);
                memcpy(row, acc, sizeof(double) * rowlen);
            }
        }
        free(rows);
        free(buf);
    }
    return failed ? WOBBLE_ENOMEM : WOBBLE_OK;
}

static int gaussian_any(double *a, int h, int w, int c, double sy, double sx, double truncate, int mode, int threads,
                        int to_float);

int perturb_nd_gaussian(double *a, int h, int w, int c, double sy, double sx, double truncate, int mode, int threads) {
    return gaussian_any(a, h, w, c, sy, sx, truncate, mode, threads, 0);
}

int perturb_nd_gaussian_f32(double *a, int h, int w, int c, double sy, double sx, double truncate, int mode,
                            int threads) {
    return gaussian_any(a, h, w, c, sy, sx, truncate, mode, threads, 1);
}

/* gaussian_filter over axes 0 and 1 (sigma_y, sigma_x; 0 skips an axis) */
static int gaussian_any(double *a, int h, int w, int c, double sy, double sx, double truncate, int mode, int threads,
                        int to_float) {
    const double s[2] = {sy, sx};
    for (int axis = 0; axis < 2; axis++) {
        if (!(s[axis] > 1e-15)) continue;
        int r;
        double *wt = gauss_weights(s[axis], truncate, &r);
        if (!wt) return WOBBLE_ENOMEM;
        const int rc = correlate_axis(a, h, w, c, axis, wt, r, mode, threads);
        free(wt);
        if (rc != WOBBLE_OK) return rc;
        if (to_float)
            for (size_t i = 0; i < (size_t)h * w * c; i++) a[i] = (float)a[i];
    }
    return WOBBLE_OK;
}

/* ------------------------------------------------------------ splines */

int perturb_nd_zoom_size(int n, double z) { return (int)nearbyint(n * z); }

/* scipy's map_coordinate for the two modes met here: a coordinate outside
 * [0, len - 1] becomes -1 ("constant": the output is cval) or is reflected */
static double map_constant(double in, int len) { return (in < 0 || in > len - 1) ? -1 : in; }

static double map_reflect(double in, int len) {
    if (len <= 1) return (in < 0 || in > len - 1) ? 0 : in;
    const double sz2 = 2.0 * len;
    if (in < 0) {
        if (in < -sz2) in = sz2 * (double)(int64_t)(-in / sz2) + in;
        in = in < -len ? in + sz2 : (in > -1e-15 ? 1e-15 : -in) - 1;
    } else if (in > len - 1) {
        in -= sz2 * (double)(int64_t)(in / sz2);
        if (in >= len) in = sz2 - in - 1;
    }
    return in;
}

/* an index outside [0, len) as the spline's edge mode maps it: mirror
 * (for "constant") or reflect */
static int edge_mirror(int i, int len) {
    if (len <= 1) return 0;
    const int sz2 = 2 * len - 2;
    if (i < 0) {
        i = sz2 * (-i / sz2) + i;
        return i <= 1 - len ? i + sz2 : -i;
    }
    if (i > len - 1) {
        i -= sz2 * (i / sz2);
        if (i >= len) i = sz2 - i;
    }
    return i;
}

static int edge_reflect(int i, int len) { return (int)map_reflect(i, len); }

typedef perturb_nd_tap tap2;

perturb_nd_tap perturb_nd_tap_linear(double cc, int len, int reflect) {
    tap2 t = {0, 0, 0, 0.0, 0.0};
    cc = reflect ? map_reflect(cc, len) : map_constant(cc, len);
    if (!(cc > -1.0)) {
        t.zero = 1;
        return t;
    }
    const int start = (int)floor(cc);
    const double x = cc - floor(cc);
    t.w0 = 1.0 - x;
    t.w1 = 1.0 - t.w0;
    t.i0 = start, t.i1 = start + 1;
    if (start < 0 || start + 1 >= len) {
        t.i0 = reflect ? edge_reflect(start, len) : edge_mirror(start, len);
        t.i1 = reflect ? edge_reflect(start + 1, len) : edge_mirror(start + 1, len);
    }
    return t;
}

void perturb_nd_zoom_linear(const double *in, int h, int w, int c, size_t stride, double *out, int oh, int ow,
                            int to_float) {
    const double zy = oh > 1 ? (double)(h - 1) / (oh - 1) : 1.0;
    const double zx = ow > 1 ? (double)(w - 1) / (ow - 1) : 1.0;
    tap2 *txs = malloc(sizeof(tap2) * (size_t)ow); /* without it, each row recomputes them */
    for (int j = 0; txs && j < ow; j++) txs[j] = perturb_nd_tap_linear(j * zx, w, 0);
    for (int i = 0; i < oh; i++) {
        const tap2 ty = perturb_nd_tap_linear(i * zy, h, 0);
        for (int j = 0; j < ow; j++) {
            const tap2 tx = txs ? txs[j] : perturb_nd_tap_linear(j * zx, w, 0);
            double *o = out + ((size_t)i * ow + j) * c;
            for (int ch = 0; ch < c; ch++) {
                const double v = ty.zero || tx.zero ? 0.0
                                                    : perturb_nd_lerp(in + (size_t)ty.i0 * stride + ch,
                                                                      in + (size_t)ty.i1 * stride + ch, c, &ty, &tx);
                o[ch] = to_float ? (double)(float)v : v;
            }
        }
    }
    free(txs);
}

/* the taps of 8 coordinates in reflect mode: those inside [0, len - 1]
 * (nearly all, for elastic_transform's small displacements) in vectors
 * with perturb_nd_tap_linear's operations (floor, 1 - x, 1 - w0; the right
 * tap of len - 1 is len - 1 itself, as the reflection gives), the others
 * through it */
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f,avx512vl"))) static void taps8_reflect(const double *cc, int len, tap2 *t) {
    const __m512d v = _mm512_loadu_pd(cc), one = _mm512_set1_pd(1.0);
    const __mmask8 in = _mm512_cmp_pd_mask(v, _mm512_setzero_pd(), _CMP_GE_OQ) &
                        _mm512_cmp_pd_mask(v, _mm512_set1_pd((double)(len - 1)), _CMP_LE_OQ);
    const __m512d fl = _mm512_roundscale_pd(v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    const __m512d w0 = _mm512_sub_pd(one, _mm512_sub_pd(v, fl)), w1 = _mm512_sub_pd(one, w0);
    const __m256i i0 = _mm512_cvttpd_epi32(fl);
    const __m256i i1 = _mm256_min_epi32(_mm256_add_epi32(i0, _mm256_set1_epi32(1)), _mm256_set1_epi32(len - 1));
    double a0[8], a1[8];
    int32_t b0[8], b1[8];
    _mm512_storeu_pd(a0, w0), _mm512_storeu_pd(a1, w1);
    _mm256_storeu_si256((__m256i *)b0, i0), _mm256_storeu_si256((__m256i *)b1, i1);
    for (int q = 0; q < 8; q++)
        if (in >> q & 1) {
            t[q].i0 = b0[q], t[q].i1 = b1[q], t[q].zero = 0, t[q].w0 = a0[q], t[q].w1 = a1[q];
        } else {
            t[q] = perturb_nd_tap_linear(cc[q], len, 1);
        }
}
#endif

void perturb_nd_map_linear(const double *in, int h, int w, int c, const double *ys, const double *xs, double *out,
                           int to_float, int threads) {
    const size_t npix = (size_t)h * w, nb = (npix + 7) / 8;
    const int vec = perturb_avx512();
#pragma omp parallel for num_threads(threads) schedule(static) if (npix * c > 65536)
    for (size_t b = 0; b < nb; b++) {
        const size_t p0 = b * 8, m = npix - p0 < 8 ? npix - p0 : 8;
        tap2 ty[8], tx[8];
#if defined(__x86_64__) && defined(__GNUC__)
        if (vec && m == 8) {
            taps8_reflect(ys + p0, h, ty);
            taps8_reflect(xs + p0, w, tx);
        } else
#endif
            for (size_t q = 0; q < m; q++)
                ty[q] = perturb_nd_tap_linear(ys[p0 + q], h, 1), tx[q] = perturb_nd_tap_linear(xs[p0 + q], w, 1);
        for (size_t q = 0; q < m; q++) {
            const size_t p = p0 + q;
            for (int ch = 0; ch < c; ch++) {
                const double v = perturb_nd_lerp(in + (size_t)ty[q].i0 * w * c + ch, in + (size_t)ty[q].i1 * w * c + ch,
                                                 c, &ty[q], &tx[q]);
                out[p * c + ch] = to_float ? (double)(float)v : v;
            }
        }
    }
    (void)vec;
}
