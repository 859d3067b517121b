/*
 * ImageNet-C corruptions computed per pixel or from global statistics: the
 * noises, contrast, brightness, saturate, jpeg_compression, pixelate and
 * fog (imagenet_c.h). The severity constants are imagecorruptions 1.1.2's.
 * Comments give the reference's expression each loop computes; x is the
 * image as float64 in [0, 1] (uint8 / 255.).
 */
#include "imagenet_c.h"
#include "../image/resample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int perturb_ic_check(wobble_ctx *ctx, const char *op, const wobble_image *in) {
    if (in->width < IC_MIN_SIDE || in->height < IC_MIN_SIDE)
        return core_seterr(ctx, WOBBLE_EDOMAIN, "%s: the image is %dx%d; ImageNet-C corruptions need at least %dx%d",
                           op, in->width, in->height, IC_MIN_SIDE, IC_MIN_SIDE);
    return WOBBLE_OK;
}

int perturb_ic_seed(wobble_ctx *ctx, const char *op, const wobble_perturb_params *p, double level, uint32_t *seed) {
    if (p->exact_seed) {
        if (p->seed > 0xffffffffull)
            return core_seterr(ctx, WOBBLE_EDOMAIN,
                               "%s: seed %llu is above 4294967295, the largest np.random.seed accepts", op,
                               (unsigned long long)p->seed);
        *seed = (uint32_t)p->seed;
        return WOBBLE_OK;
    }
    *seed = (uint32_t)(core_splitmix64(perturb_stream_key(p, level, 0x452821E638D01377ull)) >> 32);
    return WOBBLE_OK;
}

#define SEV(level) ((int)(level)-1)
/* the locals every corruption here starts from (wobble_perturb checked the
 * size) */
#define PRELUDE                                                    \
    const int sev = SEV(level);                                    \
    int rc = WOBBLE_OK;                                            \
    const size_t n = (size_t)in->width * in->height * 3u;          \
    const uint8_t *src = in->data;                                 \
    uint8_t *dst = out->data;                                      \
    (void)ctx, (void)n, (void)src, (void)dst, (void)p, (void)sev, (void)rc

#define SEEDED(NAME)                                                          \
    uint32_t seed;                                                            \
    rc = perturb_ic_seed(ctx, "imagenet_c." NAME, p, level, &seed);           \
    if (rc != WOBBLE_OK) return rc

/* ------------------------------------------------------------ arrays */

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f,avx512vl"))) static size_t u8_array_avx512(const double *v, uint8_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) perturb_ic_store8(dst + i, _mm512_loadu_pd(v + i));
    return i;
}
__attribute__((target("avx512f,avx512vl"))) static size_t u8f_array_avx512(const double *v, uint8_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) perturb_ic_store8f(dst + i, _mm512_cvtpd_ps(_mm512_loadu_pd(v + i)));
    return i;
}
__attribute__((target("avx512f,avx512vl"))) static size_t unit_array_avx512(const uint8_t *src, double *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm512_storeu_pd(dst + i, perturb_ic_unit8(src + i));
    return i;
}
#endif

/* clip by max and min: the same as perturb_ic_u8's compares but for the
 * sign of a zero, which the truncation drops */
void perturb_ic_u8_array(const double *v, uint8_t *dst, size_t n) {
    size_t i = 0;
#if defined(__x86_64__) && defined(__GNUC__)
    if (perturb_avx512()) i = u8_array_avx512(v, dst, n);
#endif
    for (; i < n; i++) dst[i] = perturb_ic_u8(v[i]);
}

void perturb_ic_u8f_array(const double *v, uint8_t *dst, size_t n) {
    size_t i = 0;
#if defined(__x86_64__) && defined(__GNUC__)
    if (perturb_avx512()) i = u8f_array_avx512(v, dst, n);
#endif
    for (; i < n; i++) {
        float f = (float)v[i];
        f = f < 0.0f ? 0.0f : f > 1.0f ? 1.0f : f;
        dst[i] = (uint8_t)(f * 255.0f);
    }
}

void perturb_ic_unit_array(const uint8_t *src, double *dst, size_t n) {
    size_t i = 0;
#if defined(__x86_64__) && defined(__GNUC__)
    if (perturb_avx512()) i = unit_array_avx512(src, dst, n);
#endif
    for (; i < n; i++) dst[i] = src[i] / 255.0;
}

/* ------------------------------------------------------------ noise */

/* dst[i] = uint8(clip(x + c z[i], 0, 1) * 255) with x = src[i] / 255.
 * (speckle: x + x (c z[i])); 8 values at a time where the CPU has AVX-512
 * (x / 255. divided per value: the table's bits; the clip by max and min,
 * which differ from the compares only in the sign of a zero) */
static void noise_out_c(const uint8_t *src, const double *z, double c, int speckle, uint8_t *dst, size_t m) {
    for (size_t i = 0; i < m; i++) {
        const double x = (double)src[i] / 255.0, g = 0.0 + c * z[i]; /* normal(scale=c) */
        dst[i] = perturb_ic_u8(speckle ? x + x * g : x + g);
    }
}
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f,avx512vl"))) static void noise_out_avx512(const uint8_t *src, const double *z, double c,
                                                                         int speckle, uint8_t *dst, size_t m) {
    const __m512d vc = _mm512_set1_pd(c), zero = _mm512_setzero_pd();
    size_t i = 0;
    for (; i + 8 <= m; i += 8) {
        const __m512d x = perturb_ic_unit8(src + i);
        const __m512d g = _mm512_add_pd(zero, _mm512_mul_pd(vc, _mm512_loadu_pd(z + i)));
        perturb_ic_store8(dst + i, speckle ? _mm512_add_pd(x, _mm512_mul_pd(x, g)) : _mm512_add_pd(x, g));
    }
    noise_out_c(src + i, z + i, c, speckle, dst + i, m - i);
}
static void noise_out(const uint8_t *src, const double *z, double c, int speckle, uint8_t *dst, size_t m) {
    (perturb_avx512() ? noise_out_avx512 : noise_out_c)(src, z, c, speckle, dst, m);
}
#else
#define noise_out noise_out_c
#endif

/* clip(x + normal(size=x.shape, scale=c), 0, 1) * 255 */
int perturb_ic_gaussian_noise(wobble_ctx *ctx, const wobble_image *in, double level, const wobble_perturb_params *p,
                              wobble_image *out) {
    static const double C[5] = {.08, .12, 0.18, 0.26, 0.38};
    PRELUDE;
    SEEDED("gaussian_noise");
    perturb_mt mt;
    perturb_mt_seed(&mt, seed);
    double z[1024];
    for (size_t i0 = 0; i0 < n; i0 += 1024) {
        const size_t m = n - i0 < 1024 ? n - i0 : 1024;
        perturb_mt_gauss_fill(&mt, z, m);
        noise_out(src + i0, z, C[sev], 0, dst + i0, m);
    }
    return WOBBLE_OK;
}

/* clip(poisson(x * c) / c, 0, 1) * 255 */
int perturb_ic_shot_noise(wobble_ctx *ctx, const wobble_image *in, double level, const wobble_perturb_params *p,
                          wobble_image *out) {
    static const double C[5] = {60, 25, 12, 5, 3};
    PRELUDE;
    SEEDED("shot_noise");
    perturb_mt mt;
    perturb_mt_seed(&mt, seed);
    const double c = C[sev];
    perturb_poisson P[256]; /* lam takes one value per 8-bit level */
    for (int v = 0; v < 256; v++) perturb_poisson_prepare(&P[v], v / 255.0 * c);
    uint8_t q[512]; /* the output of each small count, without a division per value */
    for (int k = 0; k < 512; k++) q[k] = perturb_ic_u8((double)k / c);
    int64_t k[4096];
    for (size_t i0 = 0; i0 < n; i0 += 4096) {
        const size_t m = n - i0 < 4096 ? n - i0 : 4096;
        perturb_mt_poisson_fill(&mt, P, 256, src + i0, k, m);
        for (size_t i = 0; i < m; i++) dst[i0 + i] = k[i] >= 0 && k[i] < 512 ? q[k[i]] : perturb_ic_u8((double)k[i] / c);
    }
    return WOBBLE_OK;
}

__attribute__((target_clones("avx512f", "avx2", "default"))) static void impulse_flags(const uint64_t *u, uint64_t flip,
                                                                                       uint8_t *f, size_t m) {
    for (size_t i = 0; i < m; i++) f[i] = u[i] <= flip;
}
/* flipped: salt (255) or pepper (0); else the pixel (uint8(x / 255. * 255)
 * is x for all 256 x) */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void impulse_apply(const uint64_t *u, uint64_t salt,
                                                                                       const uint8_t *src, uint8_t *d,
                                                                                       size_t m) {
    for (size_t i = 0; i < m; i++) {
        const uint8_t sp = u[i] <= salt ? 255 : 0;
        d[i] = d[i] ? sp : src[i];
    }
}

/* skimage 0.19 random_noise(x, mode="s&p", amount=c, seed): with
 * rng = default_rng(seed), flipped = rng.random(shape) <= c, then
 * salted = rng.random(shape) <= 0.5; flipped and salted -> 1, flipped and
 * not salted -> 0. */
int perturb_ic_impulse_noise(wobble_ctx *ctx, const wobble_image *in, double level, const wobble_perturb_params *p,
                             wobble_image *out) {
    static const double C[5] = {.03, .06, .09, 0.17, 0.27};
    PRELUDE;
    SEEDED("impulse_noise");
    perturb_pcg g;
    perturb_pcg_seed(&g, seed);
    /* random() <= c as the 53-bit integer u <= floor(c 2^53) (u and c 2^53
     * exact) */
    const uint64_t flip = (uint64_t)floor(C[sev] * 9007199254740992.0), salt = 1ull << 52;
    uint64_t u[1024];
    /* first pass: 1 where flipped (the output buffer holds the flags) */
    for (size_t i0 = 0; i0 < n; i0 += 1024) {
        const size_t m = n - i0 < 1024 ? n - i0 : 1024;
        perturb_pcg_fill53(&g, u, m);
        impulse_flags(u, flip, dst + i0, m);
    }
    for (size_t i0 = 0; i0 < n; i0 += 1024) {
        const size_t m = n - i0 < 1024 ? n - i0 : 1024;
        perturb_pcg_fill53(&g, u, m);
        impulse_apply(u, salt, src + i0, dst + i0, m);
    }
    return WOBBLE_OK;
}

/* clip(x + x * normal(size=x.shape, scale=c), 0, 1) * 255 */
int perturb_ic_speckle_noise(wobble_ctx *ctx, const wobble_image *in, double level, const wobble_perturb_params *p,
                             wobble_image *out) {
    static const double C[5] = {.15, .2, 0.35, 0.45, 0.6};
    PRELUDE;
    SEEDED("speckle_noise");
    perturb_mt mt;
    perturb_mt_seed(&mt, seed);
    double z[1024];
    for (size_t i0 = 0; i0 < n; i0 += 1024) {
        const size_t m = n - i0 < 1024 ? n - i0 : 1024;
        perturb_mt_gauss_fill(&mt, z, m);
        noise_out(src + i0, z, C[sev], 1, dst + i0, m);
    }
    return WOBBLE_OK;
}

/* ------------------------------------------------------------ digital */

/* means = mean(x, axis=(0, 1)); clip((x - means) * c + means, 0, 1) * 255.
 * NumPy sums this reduction in memory order, one running sum per channel. */
int perturb_ic_contrast(wobble_ctx *ctx, const wobble_image *in, double level, const wobble_perturb_params *p,
                        wobble_image *out) {
    static const double C[5] = {0.4, .3, .2, .1, .05};
    PRELUDE;
    double m[3] = {0, 0, 0}, unit[256];
    perturb_ic_unit_table(unit);
    for (size_t i = 0; i < n; i += 3)
        for (int ch = 0; ch < 3; ch++) m[ch] += unit[src[i + ch]];
    const double cnt = (double)in->width * in->height;
    for (int ch = 0; ch < 3; ch++) m[ch] /= cnt;
    /* the output depends on the channel and the value only: a table */
    uint8_t lut[3][256];
    for (int ch = 0; ch < 3; ch++)
        for (int v = 0; v < 256; v++) lut[ch][v] = perturb_ic_u8((unit[v] - m[ch]) * C[sev] + m[ch]);
    for (size_t i = 0; i < n; i += 3)
        for (int ch = 0; ch < 3; ch++) dst[i + ch] = lut[ch][src[i + ch]];
    return WOBBLE_OK;
}

/* Python's float % 1. as NumPy computes it (fmod, then the divisor's sign) */
static inline double mod1(double a) {
    double m = fmod(a, 1.0);
    if (m != 0.0) {
        if (m < 0.0) m += 1.0;
    } else {
        m = 0.0;
    }
    return m;
}

/* skimage 0.19 rgb2hsv for one pixel: the hue of the last channel equal to
 * the maximum wins (the reference assigns R, then G, then B); gray -> 0. */
static void rgb2hsv(const double rgb[3], double hsv[3]) {
    const double r = rgb[0], g = rgb[1], b = rgb[2];
    const double v = fmax(fmax(r, g), b), lo = fmin(fmin(r, g), b);
    const double delta = v - lo;
    if (delta == 0.0) {
        hsv[0] = 0.0, hsv[1] = 0.0, hsv[2] = v;
        return;
    }
    double h;
    if (b == v)
        h = 4. + (r - g) / delta;
    else if (g == v)
        h = 2. + (b - r) / delta;
    else
        h = (g - b) / delta;
    hsv[0] = mod1(h / 6.);
    hsv[1] = delta / v;
    hsv[2] = v;
}

/* skimage 0.19 hsv2rgb for one pixel */
static void hsv2rgb(const double hsv[3], double rgb[3]) {
    const double h6 = hsv[0] * 6, s = hsv[1], v = hsv[2];
    const double hi = floor(h6), f = h6 - hi;
    const double pp = v * (1 - s), q = v * (1 - f * s), t = v * (1 - (1 - f) * s);
    switch (((uint8_t)hi) % 6) {
    case 0: rgb[0] = v, rgb[1] = t, rgb[2] = pp; break;
    case 1: rgb[0] = q, rgb[1] = v, rgb[2] = pp; break;
    case 2: rgb[0] = pp, rgb[1] = v, rgb[2] = t; break;
    case 3: rgb[0] = pp, rgb[1] = q, rgb[2] = v; break;
    case 4: rgb[0] = t, rgb[1] = pp, rgb[2] = v; break;
    default: rgb[0] = v, rgb[1] = pp, rgb[2] = q; break;
    }
}

/* HSV: v = clip(v + c, 0, 1) (brightness) or s = clip(s * a + b, 0, 1)
 * (saturate), back to RGB, clip(., 0, 1) * 255 */
static void hsv_edit_px(const uint8_t *s, uint8_t *d, int channel, double mul, double add) {
    double rgb[3] = {s[0] / 255., s[1] / 255., s[2] / 255.}, hsv[3];
    rgb2hsv(rgb, hsv);
    const double e = hsv[channel] * mul + add; /* x * 1.0 is exact */
    hsv[channel] = e < 0.0 ? 0.0 : e > 1.0 ? 1.0 : e;
    hsv2rgb(hsv, rgb);
    for (int ch = 0; ch < 3; ch++) d[ch] = perturb_ic_u8(rgb[ch]);
}

#if defined(__x86_64__) && defined(__GNUC__)
/* the same for 8 pixels at a time: rgb2hsv's and hsv2rgb's branches as
 * masks over the operations both compute (IEEE +, -, *, / and floor give
 * the same bits in vectors; max and min equal fmax and fmin without NaN;
 * fmod(a, 1.) is a itself for |a| < 1, and h / 6 lies in (-1/6, 5/6]) */
#define HSV_AVX512 __attribute__((target("avx512f,avx512vl")))
HSV_AVX512 static void hsv_edit8(const uint8_t *s, uint8_t *d, int channel, double mul, double add) {
    double pr[8], pg[8], pb[8];
    for (int k = 0; k < 8; k++) pr[k] = s[3 * k], pg[k] = s[3 * k + 1], pb[k] = s[3 * k + 2];
    const __m512d k255 = _mm512_set1_pd(255.0), zero = _mm512_setzero_pd(), one = _mm512_set1_pd(1.0);
    const __m512d r = _mm512_div_pd(_mm512_loadu_pd(pr), k255), g = _mm512_div_pd(_mm512_loadu_pd(pg), k255),
                  b = _mm512_div_pd(_mm512_loadu_pd(pb), k255);
    const __m512d v = _mm512_max_pd(_mm512_max_pd(r, g), b), lo = _mm512_min_pd(_mm512_min_pd(r, g), b);
    const __m512d delta = _mm512_sub_pd(v, lo);
    const __mmask8 gray = _mm512_cmp_pd_mask(delta, zero, _CMP_EQ_OQ);
    const __mmask8 bmax = _mm512_cmp_pd_mask(b, v, _CMP_EQ_OQ), gmax = _mm512_cmp_pd_mask(g, v, _CMP_EQ_OQ);
    __m512d h = _mm512_div_pd(_mm512_sub_pd(g, b), delta);
    h = _mm512_mask_mov_pd(h, gmax, _mm512_add_pd(_mm512_set1_pd(2.), _mm512_div_pd(_mm512_sub_pd(b, r), delta)));
    h = _mm512_mask_mov_pd(h, bmax, _mm512_add_pd(_mm512_set1_pd(4.), _mm512_div_pd(_mm512_sub_pd(r, g), delta)));
    __m512d a = _mm512_div_pd(h, _mm512_set1_pd(6.));
    a = _mm512_mask_add_pd(a, _mm512_cmp_pd_mask(a, zero, _CMP_LT_OQ), a, one);
    a = _mm512_mask_mov_pd(a, _mm512_cmp_pd_mask(a, zero, _CMP_EQ_OQ) | gray, zero);
    __m512d hsv[3] = {a, _mm512_mask_mov_pd(_mm512_div_pd(delta, v), gray, zero), v};
    __m512d e = _mm512_add_pd(_mm512_mul_pd(hsv[channel], _mm512_set1_pd(mul)), _mm512_set1_pd(add));
    e = _mm512_mask_mov_pd(e, _mm512_cmp_pd_mask(e, zero, _CMP_LT_OQ), zero);
    hsv[channel] = _mm512_mask_mov_pd(e, _mm512_cmp_pd_mask(e, one, _CMP_GT_OQ), one);
    const __m512d h6 = _mm512_mul_pd(hsv[0], _mm512_set1_pd(6.)), S = hsv[1], V = hsv[2];
    const __m512d hi = _mm512_roundscale_pd(h6, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC), f = _mm512_sub_pd(h6, hi);
    const __m512d pp = _mm512_mul_pd(V, _mm512_sub_pd(one, S));
    const __m512d q = _mm512_mul_pd(V, _mm512_sub_pd(one, _mm512_mul_pd(f, S)));
    const __m512d t = _mm512_mul_pd(V, _mm512_sub_pd(one, _mm512_mul_pd(_mm512_sub_pd(one, f), S)));
    /* the sector (uint8)hi % 6: hi is 0..6 */
    const __m512d sec = _mm512_mask_mov_pd(hi, _mm512_cmp_pd_mask(hi, _mm512_set1_pd(6.), _CMP_GE_OQ), zero);
    __mmask8 m[6];
    for (int k = 0; k < 6; k++) m[k] = _mm512_cmp_pd_mask(sec, _mm512_set1_pd((double)k), _CMP_EQ_OQ);
    const __m512d R = _mm512_mask_mov_pd(_mm512_mask_mov_pd(_mm512_mask_mov_pd(V, m[1], q), m[2] | m[3], pp), m[4], t);
    const __m512d G = _mm512_mask_mov_pd(_mm512_mask_mov_pd(_mm512_mask_mov_pd(pp, m[1] | m[2], V), m[0], t), m[3], q);
    const __m512d B = _mm512_mask_mov_pd(_mm512_mask_mov_pd(_mm512_mask_mov_pd(V, m[0] | m[1], pp), m[2], t), m[5], q);
    const __m512d rgb[3] = {R, G, B};
    int32_t o[3][8];
    for (int ch = 0; ch < 3; ch++) {
        const __m512d c = _mm512_min_pd(_mm512_max_pd(rgb[ch], zero), one);
        _mm256_storeu_si256((__m256i *)o[ch], _mm512_cvttpd_epi32(_mm512_mul_pd(c, k255)));
    }
    for (int k = 0; k < 8; k++) d[3 * k] = (uint8_t)o[0][k], d[3 * k + 1] = (uint8_t)o[1][k], d[3 * k + 2] = (uint8_t)o[2][k];
}
#endif

static void hsv_edit(const wobble_image *in, wobble_image *out, int channel, double mul, double add, int threads) {
    const size_t npix = (size_t)in->width * in->height;
    const int par = npix * 3 > WOBBLE_PAR_MIN_BYTES;
    const int vec = perturb_avx512();
    const size_t nvec = vec ? npix / 8 : 0;
#pragma omp parallel num_threads(threads) if (par)
    {
#if defined(__x86_64__) && defined(__GNUC__)
#pragma omp for schedule(static)
        for (size_t j = 0; j < nvec; j++) hsv_edit8(in->data + 24 * j, out->data + 24 * j, channel, mul, add);
#endif
#pragma omp for schedule(static)
        for (size_t i = 8 * nvec; i < npix; i++) hsv_edit_px(in->data + 3 * i, out->data + 3 * i, channel, mul, add);
    }
}

int perturb_ic_brightness(wobble_ctx *ctx, const wobble_image *in, double level, const wobble_perturb_params *p,
                          wobble_image *out) {
    static const double C[5] = {.1, .2, .3, .4, .5};
    PRELUDE;
    hsv_edit(in, out, 2, 1.0, C[sev], wobble_ctx_threads(ctx));
    return WOBBLE_OK;
}

int perturb_ic_saturate(wobble_ctx *ctx, const wobble_image *in, double level, const wobble_perturb_params *p,
                        wobble_image *out) {
    static const double C[5][2] = {{0.3, 0}, {0.1, 0}, {2, 0}, {5, 0.1}, {20, 0.2}};
    PRELUDE;
    hsv_edit(in, out, 1, C[sev][0], C[sev][1], wobble_ctx_threads(ctx));
    return WOBBLE_OK;
}

/* Pillow save(format="JPEG", quality=c), decoded back: wobble's jpeg op */
int perturb_ic_jpeg_compression(wobble_ctx *ctx, const wobble_image *in, double level,
                                const wobble_perturb_params *p, wobble_image *out) {
    static const double C[5] = {25, 18, 15, 10, 7};
    PRELUDE;
    return perturb_op_jpeg(ctx, in, C[sev], p, out);
}

/* Pillow resize((int(w * c), int(h * c)), BOX), then resize((w, h), NEAREST) */
int perturb_ic_pixelate(wobble_ctx *ctx, const wobble_image *in, double level, const wobble_perturb_params *p,
                        wobble_image *out) {
    static const double C[5] = {0.6, 0.5, 0.4, 0.3, 0.25};
    PRELUDE;
    const int w = in->width, h = in->height;
    const int sw = (int)(w * C[sev]), sh = (int)(h * C[sev]);
    uint8_t *small = malloc((size_t)sw * sh * 3u);
    if (!small) return core_seterr(ctx, WOBBLE_ENOMEM, "imagenet_c.pixelate: out of memory");
    rc = image_resize_rgb(src, w, h, small, sw, sh, WOBBLE_FILTER_BOX, wobble_ctx_threads(ctx));
    if (rc == WOBBLE_OK) rc = image_resize_nearest_rgb(small, sw, sh, dst, w, h);
    free(small);
    if (rc != WOBBLE_OK) return core_seterr(ctx, rc, "imagenet_c.pixelate: %s", wobble_strerror(rc));
    return WOBBLE_OK;
}

/* ------------------------------------------------------------ fog */

/* dst[i] = uint8(clip((src[i] / 255. + f[i]) * mx / d, 0, 1) * 255); in
 * vectors where the CPU has AVX-512 (the same operations) */
static void fog_out_c(const uint8_t *src, const double *f, double mx, double d, uint8_t *dst, size_t m) {
    for (size_t i = 0; i < m; i++) dst[i] = perturb_ic_u8((src[i] / 255.0 + f[i]) * mx / d);
}
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f,avx512vl"))) static void fog_out_avx512(const uint8_t *src, const double *f, double mx,
                                                                       double d, uint8_t *dst, size_t m) {
    const __m512d vm = _mm512_set1_pd(mx), vd = _mm512_set1_pd(d);
    size_t i = 0;
    for (; i + 8 <= m; i += 8)
        perturb_ic_store8(dst + i, _mm512_div_pd(_mm512_mul_pd(_mm512_add_pd(perturb_ic_unit8(src + i), _mm512_loadu_pd(f + i)), vm), vd));
    fog_out_c(src + i, f + i, mx, d, dst + i, m - i);
}
static void fog_out(const uint8_t *src, const double *f, double mx, double d, uint8_t *dst, size_t m) {
    (perturb_avx512() ? fog_out_avx512 : fog_out_c)(src, f, mx, d, dst, m);
}
#else
#define fog_out fog_out_c
#endif

/* The diamond-square height map of plasma_fractal(mapsize, wibbledecay): a
 * float32 map; the means are float32 sums, the displacement
 * wibble * uniform(-wibble, wibble) is float64, and each new value is
 * rounded to float32 when stored. Written to `m` (size x size floats),
 * normalised to [0, 1]. The subgrids are walked row by row, as NumPy draws
 * for them. The work buffers are the context's scratch slots 1 and 2;
 * returns 0 when out of memory. */
static int plasma(wobble_ctx *ctx, float *m, int size, double decay, perturb_mt *mt) {
    const size_t sub = (size_t)(size / 2 + 1) * (size / 2 + 1); /* a subgrid: at most size/2 a side */
    core_tmp t1, t2;
    float *tmp = core_tmp_get(ctx, 1, sizeof(float) * sub, &t1);
    double *u = core_tmp_get(ctx, 2, sizeof(double) * sub, &t2); /* a subgrid's uniform(-wibble, wibble), in NumPy's order */
    if (!tmp || !u) {
        core_tmp_put(&t1), core_tmp_put(&t2);
        return 0;
    }
#define M(r, c) m[(size_t)(r)*size + (c)]
    M(0, 0) = 0.0f;
    double wibble = 100;
    for (int step = size; step >= 2; step /= 2, wibble /= decay) {
        const int half = step / 2, g = size / step; /* g x g subgrid */
        const size_t gg = (size_t)g * g;
#define WIBBLED(sum, k) ((float)((double)((sum) / 4.0f) + wibble * u[k]))
        /* squares: corners (0::step) summed with their lower, then the
         * (row + lower row) sums with their right neighbour (indices wrap:
         * the next of g - 1 is 0) */
        for (int i = 0; i < g; i++) {
            const int i1 = i + 1 == g ? 0 : i + 1;
            for (int j = 0; j < g; j++) tmp[(size_t)i * g + j] = M(i * step, j * step) + M(i1 * step, j * step);
        }
        perturb_mt_uniform_fill(mt, -wibble, wibble, u, gg);
        for (int i = 0; i < g; i++)
            for (int j = 0; j < g; j++) {
                const int j1 = j + 1 == g ? 0 : j + 1;
                const float s = tmp[(size_t)i * g + j] + tmp[(size_t)i * g + j1];
                M(half + i * step, half + j * step) = WIBBLED(s, (size_t)i * g + j);
            }
        /* diamonds: dr = (half::step), ul = (0::step) */
        perturb_mt_uniform_fill(mt, -wibble, wibble, u, gg);
        for (int i = 0; i < g; i++) {
            const int ip = i == 0 ? g - 1 : i - 1;
            for (int j = 0; j < g; j++) {
                const int j1 = j + 1 == g ? 0 : j + 1;
                const float ldr = M(half + i * step, half + j * step) + M(half + ip * step, half + j * step);
                const float lul = M(i * step, j * step) + M(i * step, j1 * step);
                M(i * step, half + j * step) = WIBBLED(ldr + lul, (size_t)i * g + j);
            }
        }
        perturb_mt_uniform_fill(mt, -wibble, wibble, u, gg);
        for (int i = 0; i < g; i++) {
            const int i1 = i + 1 == g ? 0 : i + 1;
            for (int j = 0; j < g; j++) {
                const int jp = j == 0 ? g - 1 : j - 1;
                const float tdr = M(half + i * step, half + j * step) + M(half + i * step, half + jp * step);
                const float tul = M(i * step, j * step) + M(i1 * step, j * step);
                M(half + i * step, j * step) = WIBBLED(tdr + tul, (size_t)i * g + j);
            }
        }
#undef WIBBLED
    }
    /* min and max by compares in 16 running lanes (no NaN here; a zero's
     * sign changes no difference below); max(m - lo) is max(m) - lo, as
     * rounding is monotone; then (m - lo) / (max - lo), rounded twice as
     * NumPy's two steps are */
    const size_t N = (size_t)size * size;
    float lo = m[0], hi = m[0];
    size_t i = 0;
    if (N >= 16) {
        float l[16], h[16];
        for (int k = 0; k < 16; k++) l[k] = h[k] = m[0];
        for (; i + 16 <= N; i += 16)
            for (int k = 0; k < 16; k++) {
                l[k] = m[i + k] < l[k] ? m[i + k] : l[k];
                h[k] = m[i + k] > h[k] ? m[i + k] : h[k];
            }
        for (int k = 0; k < 16; k++) lo = l[k] < lo ? l[k] : lo, hi = h[k] > hi ? h[k] : hi;
    }
    for (; i < N; i++) lo = m[i] < lo ? m[i] : lo, hi = m[i] > hi ? m[i] : hi;
    hi -= lo;
    for (i = 0; i < N; i++) {
        const float d = m[i] - lo;
        m[i] = d / hi;
    }
#undef M
    core_tmp_put(&t1), core_tmp_put(&t2);
    return 1;
}

/* x += c0 * plasma[:h, :w] (float32 product); clip(x * max / (max + c0)) */
int perturb_ic_fog(wobble_ctx *ctx, const wobble_image *in, double level, const wobble_perturb_params *p,
                   wobble_image *out) {
    static const double C[5][2] = {{1.5, 2}, {2., 2}, {2.5, 1.7}, {2.5, 1.5}, {3., 1.4}};
    PRELUDE;
    SEEDED("fog");
    const int w = in->width, h = in->height, side = w > h ? w : h;
    int size = 1;
    while (size < side) size *= 2;
    /* the reference draws a whole size x size map whatever the image's
     * other side: refuse maps over the context's pixel limit */
    const uint64_t lim = ctx ? ctx->max_pixels : 0;
    if (lim && (uint64_t)size * size > lim)
        return core_seterr(ctx, WOBBLE_ELIMIT,
                           "imagenet_c.fog: a %dx%d image needs a %dx%d plasma map (%llu pixels), over the limit of %llu",
                           w, h, size, size, (unsigned long long)size * size, (unsigned long long)lim);
    perturb_mt mt;
    perturb_mt_seed(&mt, seed);
    /* the map and the row buffer in the context's scratch (slot 0; the
     * map's work buffers take 1 and 2, the row 3): mapping them afresh
     * for each image cost fog most of its second thread (0.23 -> 0.11 ms
     * an image on 2 threads) */
    core_tmp t0, t3;
    const size_t mapb = sizeof(float) * (size_t)size * size;
    float *map = core_tmp_get(ctx, mapb <= (64u << 20) ? 0 : -1, mapb, &t0); /* a larger one is not kept */
    double *f3 = core_tmp_get(ctx, 3, sizeof(double) * 3 * (size_t)w, &t3);
    if (!map || !f3 || !plasma(ctx, map, size, C[sev][1], &mt)) {
        core_tmp_put(&t0), core_tmp_put(&t3);
        return core_seterr(ctx, WOBBLE_ENOMEM, "imagenet_c.fog: out of memory");
    }
    uint8_t vmax = 0;
    for (size_t i = 0; i < n; i++) vmax = src[i] > vmax ? src[i] : vmax;
    const double mx = vmax / 255.0, c0 = C[sev][0];
    const float c0f = (float)c0;
    for (int y = 0; y < h; y++) {
        /* the row's fog, float32 products, once per channel */
        for (int x = 0; x < w; x++) f3[3 * x] = f3[3 * x + 1] = f3[3 * x + 2] = (double)(c0f * map[(size_t)y * size + x]);
        fog_out(src + (size_t)y * w * 3, f3, mx, mx + c0, dst + (size_t)y * w * 3, (size_t)w * 3);
    }
    core_tmp_put(&t0), core_tmp_put(&t3);
    return WOBBLE_OK;
}
