/*
 * ImageNet-C weather corruptions: snow (imagenet_c.h). fog is with the
 * per-pixel corruptions in imagenet_c.c.
 */
#include "imagenet_c.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* snow's last step for pixels [x0, x1) of a row: s the row's pixels, b1
 * the blurred layer's row, b2 the rotated row's pixel for x = 0 (b2[-x]) */
static void snow_row_c(const uint8_t *s, const double *b1, const double *b2, float blend, float rest, uint8_t *d,
                       int x0, int x1) {
    for (int x = x0; x < x1; x++) {
        const uint8_t *p = s + (size_t)x * 3;
        const float r = (float)p[0] / 255.0f, g = (float)p[1] / 255.0f, b = (float)p[2] / 255.0f;
        const float gray = fmaf(b, 0.114f, fmaf(g, 0.587f, r * 0.299f));
        const float lift = gray * 1.5f + 0.5f;
        const float ch[3] = {r, g, b};
        for (int k = 0; k < 3; k++) {
            const float xb = blend * ch[k] + rest * (ch[k] > lift ? ch[k] : lift);
            d[(size_t)x * 3 + k] = perturb_ic_u8(((double)xb + b1[x]) + b2[-x]);
        }
    }
}
#if defined(__x86_64__) && defined(__GNUC__)
/* the same, 8 pixels at a time (fused as fmaf; max(c, lift) is lift on ties
 * either way); returns the pixels done */
__attribute__((target("avx512f,avx512vl,fma"))) static int snow_row_avx512(const uint8_t *s, const double *b1,
                                                                           const double *b2, float blend, float rest,
                                                                           uint8_t *d, int w) {
    const __m256 k255 = _mm256_set1_ps(255.0f), vb = _mm256_set1_ps(blend), vr = _mm256_set1_ps(rest);
    const __m512d zero = _mm512_setzero_pd(), one = _mm512_set1_pd(1.0), d255 = _mm512_set1_pd(255.0);
    const __m512i rev = _mm512_setr_epi64(7, 6, 5, 4, 3, 2, 1, 0);
    int x = 0;
    for (; x + 8 <= w; x += 8) {
        float c[3][8];
        for (int k = 0; k < 8; k++)
            for (int ch = 0; ch < 3; ch++) c[ch][k] = s[(size_t)(x + k) * 3 + ch];
        __m256 v[3];
        for (int ch = 0; ch < 3; ch++) v[ch] = _mm256_div_ps(_mm256_loadu_ps(c[ch]), k255);
        const __m256 gray = _mm256_fmadd_ps(v[2], _mm256_set1_ps(0.114f),
                                            _mm256_fmadd_ps(v[1], _mm256_set1_ps(0.587f),
                                                            _mm256_mul_ps(v[0], _mm256_set1_ps(0.299f))));
        const __m256 lift = _mm256_add_ps(_mm256_mul_ps(gray, _mm256_set1_ps(1.5f)), _mm256_set1_ps(0.5f));
        const __m512d l1 = _mm512_loadu_pd(b1 + x);
        const __m512d l2 = _mm512_permutexvar_pd(rev, _mm512_loadu_pd(b2 - x - 7));
        int32_t o[3][8];
        for (int ch = 0; ch < 3; ch++) {
            const __m256 hi = _mm256_mask_mov_ps(lift, _mm256_cmp_ps_mask(v[ch], lift, _CMP_GT_OQ), v[ch]);
            const __m256 xb = _mm256_add_ps(_mm256_mul_ps(vb, v[ch]), _mm256_mul_ps(vr, hi));
            __m512d t = _mm512_add_pd(_mm512_add_pd(_mm512_cvtps_pd(xb), l1), l2);
            t = _mm512_min_pd(_mm512_max_pd(t, zero), one);
            _mm256_storeu_si256((__m256i *)o[ch], _mm512_cvttpd_epi32(_mm512_mul_pd(t, d255)));
        }
        for (int k = 0; k < 8; k++)
            for (int ch = 0; ch < 3; ch++) d[(size_t)(x + k) * 3 + ch] = (uint8_t)o[ch][k];
    }
    return x;
}
#endif

/* snow, step by step as the reference computes it:
 *  x = float32(x) / 255 (float32)
 *  layer = normal(loc, scale, (h, w)); clipped_zoom by z (float64, scipy
 *    zoom order 1); values below t set to 0; clip to [0, 1]
 *  layer = _motion_blur(layer, radius, sigma, uniform(-135, -45))
 *  layer = round(layer * 255) as uint8 / 255 (halves to even), cropped to
 *    (h, w)
 *  gray = cv2.cvtColor(x, RGB2GRAY) = fma(b, .114, fma(g, .587, r * .299))
 *    in float32, as OpenCV's AVX2 kernel computes it
 *  x = blend * x + (1 - blend) * max(x, gray * 1.5 + 0.5)   (float32)
 *  clip(x + layer + rot180(layer), 0, 1) * 255 (float64), truncated */
int perturb_ic_snow(wobble_ctx *ctx, const wobble_image *in, double level, const wobble_perturb_params *p,
                    wobble_image *out) {
    static const struct {
        double loc, scale, zoom, threshold;
        int radius, sigma;
        double blend;
    } C[5] = {{0.1, 0.3, 3, 0.5, 10, 4, 0.8},
              {0.2, 0.3, 2, 0.5, 12, 4, 0.7},
              {0.55, 0.3, 4, 0.9, 12, 8, 0.7},
              {0.55, 0.3, 4.5, 0.85, 12, 8, 0.65},
              {0.55, 0.3, 2.5, 0.85, 12, 12, 0.55}};
    uint32_t seed;
    int rc = perturb_ic_seed(ctx, "imagenet_c.snow", p, level, &seed);
    if (rc != WOBBLE_OK) return rc;
    const int H = in->height, W = in->width, sev = (int)level - 1, th = wobble_ctx_threads(ctx);
    const size_t npix = (size_t)W * H;
    perturb_mt mt;
    perturb_mt_seed(&mt, seed);
    int oh, ow;
    perturb_ic_clipped_zoom_size(H, W, C[sev].zoom, &oh, &ow);
    if (oh < H || ow < W)
        return core_seterr(ctx, WOBBLE_EINTERNAL, "imagenet_c.snow: the zoomed layer (%dx%d) is smaller than the image",
                           ow, oh);
    core_tmp t0, t1, t2;
    double *snow = core_tmp_get(ctx, 0, sizeof(double) * npix, &t0);
    double *layer = core_tmp_get(ctx, 1, sizeof(double) * (size_t)oh * ow, &t1);
    double *blurred = core_tmp_get(ctx, 2, sizeof(double) * (size_t)oh * ow, &t2);
    if (!snow || !layer || !blurred) {
        core_tmp_put(&t0), core_tmp_put(&t1), core_tmp_put(&t2);
        return core_seterr(ctx, WOBBLE_ENOMEM, "imagenet_c.snow: out of memory");
    }
    perturb_mt_gauss_fill(&mt, snow, npix);
    for (size_t i = 0; i < npix; i++) snow[i] = C[sev].loc + C[sev].scale * snow[i]; /* normal(loc, scale) */
    perturb_ic_clipped_zoom(snow, H, W, 1, C[sev].zoom, 0, layer);
    const size_t nl = (size_t)oh * ow;
    for (size_t i = 0; i < nl; i++) {
        double v = layer[i] < C[sev].threshold ? 0.0 : layer[i];
        layer[i] = v < 0.0 ? 0.0 : v > 1.0 ? 1.0 : v;
    }
    const double angle = perturb_mt_uniform(&mt, -135, -45);
    if (perturb_ic_motion(layer, oh, ow, 1, C[sev].radius, C[sev].sigma, angle, blurred, th) != WOBBLE_OK) {
        core_tmp_put(&t0), core_tmp_put(&t1), core_tmp_put(&t2);
        return core_seterr(ctx, WOBBLE_ENOMEM, "imagenet_c.snow: out of memory");
    }
    for (size_t i = 0; i < nl; i++) blurred[i] = (uint8_t)nearbyint(blurred[i] * 255) / 255.;
    const float blend = (float)C[sev].blend, rest = (float)(1 - C[sev].blend);
    const int vec = perturb_avx512();
    for (int y = 0; y < H; y++) {
        const uint8_t *s = in->data + (size_t)y * W * 3;
        uint8_t *d = out->data + (size_t)y * W * 3;
        const double *b1 = blurred + (size_t)y * ow, *b2 = blurred + (size_t)(H - 1 - y) * ow + (W - 1);
        int x = 0;
#if defined(__x86_64__) && defined(__GNUC__)
        if (vec) x = snow_row_avx512(s, b1, b2, blend, rest, d, W);
#endif
        snow_row_c(s, b1, b2, blend, rest, d, x, W);
    }
    core_tmp_put(&t0), core_tmp_put(&t1), core_tmp_put(&t2);
    return WOBBLE_OK;
}

/* ------------------------------------------------------------ frost */

#ifndef WOBBLE_FROST_INSTALL_DIR
#define WOBBLE_FROST_INSTALL_DIR ""
#endif
#ifndef WOBBLE_FROST_SOURCE_DIR
#define WOBBLE_FROST_SOURCE_DIR ""
#endif

/* OpenCV 4.6's interpolateCubic (A = -0.75), in float */
static void cubic_coeffs(float x, float *c) {
    const float A = -0.75f;
    c[0] = ((A * (x + 1) - 5 * A) * (x + 1) + 8 * A) * (x + 1) - 4 * A;
    c[1] = ((A + 2) * x - (A + 3)) * x * x + 1;
    c[2] = ((A + 2) * (1 - x) - (A + 3)) * (1 - x) * (1 - x) + 1;
    c[3] = 1.f - c[0] - c[1] - c[2];
}

/* the source index and the four 11-bit fixed-point weights of each output
 * coordinate: f = (float)((d + 0.5) * scale - 0.5), s = floor(f), weights
 * round-half-even(cubic(f - s) * 2048) */
static void cubic_taps(int n_in, int n_out, int *start, short *wt) {
    const double scale = 1. / ((double)n_out / n_in);
    for (int d = 0; d < n_out; d++) {
        float f = (float)((d + 0.5) * scale - 0.5);
        const int s = (int)floorf(f);
        f -= (float)s;
        float c[4];
        cubic_coeffs(f, c);
        start[d] = s - 1;
        for (int k = 0; k < 4; k++) wt[4 * d + k] = (short)lrintf(c[k] * 2048);
    }
}

static inline uint8_t sat_u8(long v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }

/* The (x0, y0, w, h) window of cv2.resize(src, (ow, oh),
 * interpolation=INTER_CUBIC) of packed 8-bit RGB, as OpenCV 4.6 computes
 * the whole image: rows resampled in integers with the fixed-point weights
 * (edges replicated), then columns: the first 8 floor((3 ow - 8) / 8) + 8
 * values of each output row in float, round(S0 b0 + (S1 b1 + (S2 b2 +
 * S3 b3))) with b = weight / 2048^2 (its SSE kernel), the rest in
 * integers, (sum + 2^21) >> 22. dst is w x h. */
static int cv_resize_cubic_window(const uint8_t *src, int sw, int sh, int ow, int oh, int x0, int y0, int w, int h,
                                  uint8_t *dst) {
    int *xs = malloc(sizeof(int) * (size_t)ow), *ys = malloc(sizeof(int) * (size_t)oh);
    short *xw = malloc(sizeof(short) * 4 * (size_t)ow), *yw = malloc(sizeof(short) * 4 * (size_t)oh);
    int *rows = NULL;
    int rc = WOBBLE_ENOMEM;
    if (!xs || !ys || !xw || !yw) goto done;
    cubic_taps(sw, ow, xs, xw);
    cubic_taps(sh, oh, ys, yw);
    /* the source rows the window needs */
    const int r0 = perturb_clampi(ys[y0], 0, sh - 1), r1 = perturb_clampi(ys[y0 + h - 1] + 3, 0, sh - 1);
    const int nr = r1 - r0 + 1, wl = w * 3;
    rows = malloc(sizeof(int) * (size_t)wl * nr);
    if (!rows) goto done;
    for (int r = 0; r < nr; r++)
        for (int x = 0; x < w; x++)
            for (int ch = 0; ch < 3; ch++) {
                int acc = 0;
                for (int k = 0; k < 4; k++)
                    acc += src[((size_t)(r0 + r) * sw + perturb_clampi(xs[x0 + x] + k, 0, sw - 1)) * 3 + ch] * xw[4 * (x0 + x) + k];
                rows[(size_t)r * wl + x * 3 + ch] = acc;
            }
    const int width = ow * 3, nvec = width >= 8 ? ((width - 8) / 8 + 1) * 8 : 0;
    const float scale = 1.f / (2048 * 2048);
    for (int y = 0; y < h; y++) {
        const int oy = y0 + y;
        const int *S[4];
        for (int k = 0; k < 4; k++) S[k] = rows + (size_t)(perturb_clampi(ys[oy] + k, 0, sh - 1) - r0) * wl;
        const short *b = yw + 4 * oy;
        const float bf[4] = {b[0] * scale, b[1] * scale, b[2] * scale, b[3] * scale};
        uint8_t *d = dst + (size_t)y * wl;
        for (int x = 0; x < wl; x++) {
            if (x0 * 3 + x < nvec) {
                float f = (float)S[3][x] * bf[3];
                f = (float)S[2][x] * bf[2] + f;
                f = (float)S[1][x] * bf[1] + f;
                f = (float)S[0][x] * bf[0] + f;
                long v = lrintf(f);
                v = v < -32768 ? -32768 : v > 32767 ? 32767 : v; /* the int32 -> int16 pack */
                d[x] = sat_u8(v);
            } else {
                const long v = (long)S[0][x] * b[0] + (long)S[1][x] * b[1] + (long)S[2][x] * b[2] + (long)S[3][x] * b[3];
                d[x] = sat_u8((v + (1 << 21)) >> 22);
            }
        }
    }
    rc = WOBBLE_OK;
done:
    free(xs), free(ys), free(xw), free(yw), free(rows);
    return rc;
}

/* the decoded frost photos, read once per folder and kept for the process */
static pthread_mutex_t frost_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char path[4096];
    wobble_image *img;
} frost_cache[6];
static wobble_image *frost_retired[64]; /* replaced photos, kept reachable */
static int frost_retired_n;

/* the photo at `path` (a borrowed pointer, valid for the process), or NULL
 * with the error on ctx */
static const wobble_image *frost_photo(wobble_ctx *ctx, int idx, const char *path) {
    const wobble_image *r = NULL;
    pthread_mutex_lock(&frost_lock);
    if (frost_cache[idx].img && !strcmp(frost_cache[idx].path, path)) {
        r = frost_cache[idx].img;
    } else {
        wobble_image *img = NULL;
        if (wobble_image_read(ctx, path, &img) == WOBBLE_OK) {
            /* a replaced photo (another folder) stays allocated, as
             * earlier callers may still hold it */
            if (frost_cache[idx].img && frost_retired_n < 64) frost_retired[frost_retired_n++] = frost_cache[idx].img;
            frost_cache[idx].img = img;
            snprintf(frost_cache[idx].path, sizeof frost_cache[idx].path, "%s", path);
            r = img;
        }
    }
    pthread_mutex_unlock(&frost_lock);
    return r;
}

const char *wobble_frost_dir(void) {
    static _Thread_local char buf[4096];
    const char *env = getenv("WOBBLE_FROST_DIR");
    if (env && *env) {
        snprintf(buf, sizeof buf, "%s", env);
        return buf;
    }
    /* beside a relocated install: <bin>/../share/wobble/frost */
    char exe[4096];
    const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(buf, sizeof buf, "%s/../share/wobble/frost", exe);
            if (core_is_dir(buf)) return buf;
        }
    }
    if (core_is_dir(WOBBLE_FROST_INSTALL_DIR)) return snprintf(buf, sizeof buf, "%s", WOBBLE_FROST_INSTALL_DIR), buf;
    if (core_is_dir(WOBBLE_FROST_SOURCE_DIR)) return snprintf(buf, sizeof buf, "%s", WOBBLE_FROST_SOURCE_DIR), buf;
    return NULL;
}

/* idx = randint(5); the photo cv2.imread reads (alpha dropped), scaled by
 * 1.1 x the factor that makes it cover the image (cv2.resize, cubic), a
 * crop at (randint(0, rh - h), randint(0, rw - w));
 * clip(c0 x + c1 frost, 0, 255), truncated */
/* out = uint8(clip(a x + b f, 0, 255)), x the image, f the frost crop (in
 * vectors where the CPU has AVX-512: the same products and sum) */
static void frost_blend_c(const uint8_t *x, const uint8_t *f, double a, double b, uint8_t *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double v = a * x[i] + b * f[i];
        v = v < 0 ? 0 : v > 255 ? 255 : v;
        out[i] = (uint8_t)v;
    }
}
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f,avx512vl"))) static size_t frost_blend_avx512(const uint8_t *x, const uint8_t *f, double a,
                                                                             double b, uint8_t *out, size_t n) {
    const __m512d va = _mm512_set1_pd(a), vb = _mm512_set1_pd(b), zero = _mm512_setzero_pd(), hi = _mm512_set1_pd(255.0);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m512d xv = _mm512_cvtepi32_pd(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(x + i))));
        const __m512d fv = _mm512_cvtepi32_pd(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(f + i))));
        const __m512d v = _mm512_min_pd(_mm512_max_pd(_mm512_add_pd(_mm512_mul_pd(va, xv), _mm512_mul_pd(vb, fv)), zero), hi);
        _mm_storel_epi64((__m128i *)(out + i), _mm256_cvtepi32_epi8(_mm512_cvttpd_epi32(v)));
    }
    return i;
}
#endif
static void frost_blend(const uint8_t *x, const uint8_t *f, double a, double b, uint8_t *out, size_t n) {
    size_t i = 0;
#if defined(__x86_64__) && defined(__GNUC__)
    if (perturb_avx512()) i = frost_blend_avx512(x, f, a, b, out, n);
#endif
    frost_blend_c(x + i, f + i, a, b, out + i, n - i);
}

int perturb_ic_frost(wobble_ctx *ctx, const wobble_image *in, double level, const wobble_perturb_params *p,
                     wobble_image *out) {
    static const double C[5][2] = {{1, 0.4}, {0.8, 0.6}, {0.7, 0.7}, {0.65, 0.7}, {0.6, 0.75}};
    static const char *files[6] = {"frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg"};
    uint32_t seed;
    int rc = perturb_ic_seed(ctx, "imagenet_c.frost", p, level, &seed);
    if (rc != WOBBLE_OK) return rc;
    const char *dir = wobble_frost_dir();
    if (!dir)
        return core_seterr(ctx, WOBBLE_EIO,
                           "imagenet_c.frost: the frost photos are not installed (looked in $WOBBLE_FROST_DIR, "
                           "<bin>/../share/wobble/frost, %s, %s); set WOBBLE_FROST_DIR",
                           *WOBBLE_FROST_INSTALL_DIR ? WOBBLE_FROST_INSTALL_DIR : "(no install dir)",
                           *WOBBLE_FROST_SOURCE_DIR ? WOBBLE_FROST_SOURCE_DIR : "(no source dir)");
    const int H = in->height, W = in->width, sev = (int)level - 1;
    perturb_mt mt;
    perturb_mt_seed(&mt, seed);
    const int idx = (int)perturb_mt_randint(&mt, 0, 5);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, files[idx]);
    const wobble_image *fr = frost_photo(ctx, idx, path);
    if (!fr) return wobble_last_status(ctx); /* the message names the file */
    const int fh = fr->height, fw = fr->width;
    double sf = 1;
    if (fh >= H && fw >= W)
        sf = 1;
    else if (fh < H && fw >= W)
        sf = (double)H / fh;
    else if (fh >= H && fw < W)
        sf = (double)W / fw;
    else
        sf = fmax((double)H / fh, (double)W / fw);
    sf *= 1.1;
    const int rw = (int)ceil(fw * sf), rh = (int)ceil(fh * sf);
    if (rh <= H || rw <= W)
        return core_seterr(ctx, WOBBLE_EINTERNAL, "imagenet_c.frost: the scaled photo does not cover the image");
    /* the crop's place is drawn from the scaled size alone, so only that
     * window of the scaled photo is computed */
    const int y0 = (int)perturb_mt_randint(&mt, 0, rh - H);
    const int x0 = (int)perturb_mt_randint(&mt, 0, rw - W);
    uint8_t *crop = malloc((size_t)W * H * 3u);
    if (!crop) return core_seterr(ctx, WOBBLE_ENOMEM, "imagenet_c.frost: out of memory");
    rc = cv_resize_cubic_window(fr->data, fw, fh, rw, rh, x0, y0, W, H, crop);
    if (rc != WOBBLE_OK) {
        free(crop);
        return core_seterr(ctx, rc, "imagenet_c.frost: out of memory");
    }
    frost_blend(in->data, crop, C[sev][0], C[sev][1], out->data, (size_t)W * H * 3u);
    free(crop);
    return WOBBLE_OK;
}
