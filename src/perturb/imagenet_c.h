/*
 * The ImageNet-C corruptions (Hendrycks and Dietterich, 2019) as the
 * any-size port imagecorruptions 1.1.2 computes them: 19 corruptions,
 * severities 1-5, uint8 output truncated as its final np.uint8 does.
 * docs/imagenet-c.md states the seed contract and what each one does.
 *
 * Each kernel follows the reference's arithmetic step by step (float64 or
 * float32 where NumPy computes in that type, the same order of operations)
 * so that the pixels match bit for bit; the random draws come from
 * nprandom.h.
 */
#ifndef WOBBLE_IMAGENET_C_H
#define WOBBLE_IMAGENET_C_H
#include "perturb.h"
#include "nprandom.h"

/* The smallest side imagecorruptions accepts. */
#define IC_MIN_SIDE 32

#define IC_OP(name) \
    int perturb_ic_##name(wobble_ctx *, const wobble_image *, double, const wobble_perturb_params *, wobble_image *)
IC_OP(gaussian_noise);
IC_OP(shot_noise);
IC_OP(impulse_noise);
IC_OP(speckle_noise);
IC_OP(contrast);
IC_OP(brightness);
IC_OP(saturate);
IC_OP(spatter);
IC_OP(jpeg_compression);
IC_OP(pixelate);
IC_OP(fog);
IC_OP(gaussian_blur);
IC_OP(defocus_blur);
IC_OP(glass_blur);
IC_OP(motion_blur);
IC_OP(zoom_blur);
IC_OP(elastic_transform);
IC_OP(snow);
IC_OP(frost);
#undef IC_OP

/* The seed of NumPy's generators for this call: `seed` itself when
 * p->exact_seed (checked to fit np.random.seed's 32 bits), otherwise derived
 * from (seed, image_id, level). Fails with EDOMAIN naming `op`. */
int perturb_ic_seed(wobble_ctx *ctx, const char *op, const wobble_perturb_params *p, double level, uint32_t *seed);

/* _motion_blur of imagecorruptions on an (h, w, c) float64 array (radius
 * at most 31); returns WOBBLE_OK, WOBBLE_EINVAL or WOBBLE_ENOMEM */
int perturb_ic_motion(const double *a, int h, int w, int c, int radius, int sigma, double angle, double *out,
                      int threads);
/* clipped_zoom: the centre ceil(n / z) crop zoomed by z (scipy zoom,
 * order 1) into out, (oh, ow, c) as perturb_ic_clipped_zoom_size gives */
void perturb_ic_clipped_zoom_size(int h, int w, double z, int *oh, int *ow);
void perturb_ic_clipped_zoom(const double *a, int h, int w, int c, double z, int to_float, double *out);

/* The size check (at least 32 x 32) wobble_perturb makes before calling
 * any of the corruptions above. */
int perturb_ic_check(wobble_ctx *ctx, const char *op, const wobble_image *in);

/* t[v] = v / 255. for every 8-bit value: the image as float64 without a
 * division per value (the same doubles) */
static inline void perturb_ic_unit_table(double t[256]) {
    for (int v = 0; v < 256; v++) t[v] = v / 255.0;
}

/* np.uint8(np.clip(v, 0, 1) * 255): truncation */
static inline uint8_t perturb_ic_u8(double v) {
    v = v < 0.0 ? 0.0 : v > 1.0 ? 1.0 : v;
    return (uint8_t)(v * 255.0);
}

/* the same over arrays: dst[i] = perturb_ic_u8(v[i]), and dst[i] = src[i] /
 * 255. (in vectors where the CPU has AVX-512; the same values) */
void perturb_ic_u8_array(const double *v, uint8_t *dst, size_t n);
void perturb_ic_unit_array(const uint8_t *src, double *dst, size_t n);
/* dst[i] = uint8(clip(float32(v[i]), 0, 1) * 255) computed in float32 */
void perturb_ic_u8f_array(const double *v, uint8_t *dst, size_t n);

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* 8 bytes as doubles / 255. (the table's values), and 8 doubles stored as
 * uint8(clip(v, 0, 1) * 255) (max and min: perturb_ic_u8 but for a zero's
 * sign, which the truncation drops); for the AVX-512 paths */
__attribute__((target("avx512f,avx512vl"))) static inline __m512d perturb_ic_unit8(const uint8_t *p) {
    return _mm512_div_pd(_mm512_cvtepi32_pd(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p))),
                         _mm512_set1_pd(255.0));
}
__attribute__((target("avx512f,avx512vl"))) static inline void perturb_ic_store8(uint8_t *p, __m512d v) {
    v = _mm512_min_pd(_mm512_max_pd(v, _mm512_setzero_pd()), _mm512_set1_pd(1.0));
    _mm_storel_epi64((__m128i *)p, _mm256_cvtepi32_epi8(_mm512_cvttpd_epi32(_mm512_mul_pd(v, _mm512_set1_pd(255.0)))));
}
/* the same in float32: uint8(clip(v, 0, 1) * 255f) */
__attribute__((target("avx512f,avx512vl"))) static inline void perturb_ic_store8f(uint8_t *p, __m256 v) {
    v = _mm256_min_ps(_mm256_max_ps(v, _mm256_setzero_ps()), _mm256_set1_ps(1.0f));
    _mm_storel_epi64((__m128i *)p, _mm256_cvtepi32_epi8(_mm256_cvttps_epi32(_mm256_mul_ps(v, _mm256_set1_ps(255.0f)))));
}
#endif

static inline int perturb_clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* OpenCV's BORDER_REFLECT_101 (d c b | a b c d | c b a) of index i in [0, n) */
static inline int perturb_reflect101(int i, int n) {
    if (n == 1) return 0;
    while (i < 0 || i >= n) i = i < 0 ? -i : 2 * n - 2 - i;
    return i;
}
#endif
