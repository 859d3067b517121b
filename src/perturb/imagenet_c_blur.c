/*
 * ImageNet-C corruptions built on filters: gaussian_blur, glass_blur and
 * motion_blur (imagenet_c.h).
 *
 * The Gaussian filter is scipy.ndimage.gaussian_filter (SciPy 1.10) as
 * skimage.filters.gaussian calls it: float64, one 1-D correlation per axis
 * (rows first, then columns), the weights exp(-0.5 / sigma^2 * k^2) for
 * |k| <= int(truncate * sigma + 0.5) divided by their sum (NumPy's exp and
 * sum, npmath.h), each output the centre tap plus, from the outermost pair
 * inwards, (left + right) * weight; borders extended by the edge value
 * ("nearest") or by reflection about the edge ("reflect").
 */
#include "imagenet_c.h"
#include "npmath.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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

enum { EXT_NEAREST, EXT_REFLECT };

static inline int extend(int i, int n, int mode) {
    if (i >= 0 && i < n) return i;
    if (mode == EXT_NEAREST) return i < 0 ? 0 : n - 1;
    /* reflect (half-sample symmetric), period 2n */
    const int p = 2 * n;
    i %= p;
    if (i < 0) i += p;
    return i < n ? i : p - 1 - i;
}

/* correlate1d along one axis of a (h, w, c) float64 array, in place.
 * axis 0: lines run down the columns; axis 1: along the rows. */
static int correlate_axis(double *a, int h, int w, int c, int axis, const double *wt, int r, int mode, int threads) {
    const int len = axis == 0 ? h : w, nlines = axis == 0 ? w * c : h * c;
    const size_t step = axis == 0 ? (size_t)w * c : (size_t)c;
    int failed = 0;
#pragma omp parallel num_threads(threads) if ((size_t)h * w * c > 65536)
    {
        double *line = malloc(sizeof(double) * ((size_t)len + 2 * (size_t)r));
        if (!line) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int li = 0; li < nlines; li++) {
            if (!line) continue;
            double *base;
            if (axis == 0)
                base = a + li; /* column li / c, channel li % c */
            else
                base = a + (size_t)(li / c) * w * c + li % c;
            for (int i = -r; i < len + r; i++) line[i + r] = base[(size_t)extend(i, len, mode) * step];
            const double *x = line + r;
            for (int i = 0; i < len; i++) {
                double acc = x[i] * wt[0];
                for (int k = r; k >= 1; k--) acc += (x[i - k] + x[i + k]) * wt[k];
                base[(size_t)i * step] = acc;
            }
        }
        free(line);
    }
    return failed ? WOBBLE_ENOMEM : WOBBLE_OK;
}

/* gaussian_filter over axes 0 and 1 (sigma_y, sigma_x; 0 skips an axis) */
static int gaussian2d(double *a, int h, int w, int c, double sy, double sx, double truncate, int mode, int threads) {
    const double s[2] = {sy, sx};
    for (int axis = 0; axis < 2; axis++) {
        if (!(s[axis] > 1e-15)) continue;
        int r;
        double *wt = gauss_weights(s[axis], truncate, &r);
        if (!wt) return WOBBLE_ENOMEM;
        const int rc = correlate_axis(a, h, w, c, axis, wt, r, mode, threads);
        free(wt);
        if (rc != WOBBLE_OK) return rc;
    }
    return WOBBLE_OK;
}

static inline uint8_t u8_unit(double v) {
    v = v < 0.0 ? 0.0 : v > 1.0 ? 1.0 : v;
    return (uint8_t)(v * 255.0);
}

static double *to_unit(const wobble_image *in) {
    const size_t n = (size_t)in->width * in->height * 3u;
    double *a = malloc(sizeof(double) * n);
    if (a)
        for (size_t i = 0; i < n; i++) a[i] = in->data[i] / 255.;
    return a;
}

/* clip(gaussian(x, sigma=c, channel_axis=-1), 0, 1) * 255 */
int perturb_ic_gaussian_blur(wobble_ctx *ctx, const wobble_image *in, double level, const wobble_perturb_params *p,
                             wobble_image *out) {
    static const double C[5] = {1, 2, 3, 4, 6};
    (void)p;
    int rc = perturb_ic_check(ctx, "imagenet_c.gaussian_blur", in);
    if (rc != WOBBLE_OK) return rc;
    double *a = to_unit(in);
    if (!a) return core_seterr(ctx, WOBBLE_ENOMEM, "imagenet_c.gaussian_blur: out of memory");
    const double c = C[(int)level - 1];
    rc = gaussian2d(a, in->height, in->width, 3, c, c, 4.0, EXT_NEAREST, wobble_ctx_threads(ctx));
    if (rc == WOBBLE_OK) {
        const size_t n = (size_t)in->width * in->height * 3u;
        for (size_t i = 0; i < n; i++) out->data[i] = u8_unit(a[i]);
    }
    free(a);
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
    int rc = perturb_ic_check(ctx, "imagenet_c.glass_blur", in);
    if (rc != WOBBLE_OK) return rc;
    uint32_t seed;
    rc = perturb_ic_seed(ctx, "imagenet_c.glass_blur", p, level, &seed);
    if (rc != WOBBLE_OK) return rc;
    const int H = in->height, W = in->width, th = wobble_ctx_threads(ctx);
    const size_t n = (size_t)W * H * 3u;
    const int sev = (int)level - 1, d = C[sev].delta;
    double *a = to_unit(in);
    if (!a) return core_seterr(ctx, WOBBLE_ENOMEM, "imagenet_c.glass_blur: out of memory");
    rc = gaussian2d(a, H, W, 3, C[sev].sigma, C[sev].sigma, 4.0, EXT_NEAREST, th);
    if (rc == WOBBLE_OK) {
        uint8_t *x = out->data;
        for (size_t i = 0; i < n; i++) x[i] = (uint8_t)(a[i] * 255);
        perturb_mt mt;
        perturb_mt_seed(&mt, seed);
        for (int it = 0; it < C[sev].iterations; it++)
            for (int h = H - d; h > d; h--)
                for (int w = W - d; w > d; w--) {
                    const int dx = (int)perturb_mt_randint(&mt, -d, d);
                    const int dy = (int)perturb_mt_randint(&mt, -d, d);
                    memcpy(x + ((size_t)h * W + w) * 3, x + ((size_t)(h + dy) * W + (w + dx)) * 3, 3);
                }
        for (size_t i = 0; i < n; i++) a[i] = x[i] / 255.;
        rc = gaussian2d(a, H, W, 3, C[sev].sigma, C[sev].sigma, 4.0, EXT_NEAREST, th);
        if (rc == WOBBLE_OK)
            for (size_t i = 0; i < n; i++) x[i] = u8_unit(a[i]);
    }
    free(a);
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

/* The taps of _motion_blur: tap i shifts the image by (dx, dy) =
 * (-ceil(i cos / 1 - 0.5), -ceil(i sin - 0.5)) in units of the kernel width
 * (point = width (sin, cos) of the angle, over its length), stopping at the
 * first shift as large as the image. Returns the number of taps. */
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
static inline int shifted(int i, int d, int n) {
    int s = i - d;
    return s < 0 ? 0 : s >= n ? n - 1 : s;
}

/* blurred = sum_i kernel[i] * shift(x, dx_i, dy_i) in float64 over uint8
 * x (the first term added to float32 zeros, which NumPy promotes);
 * clip(blurred, 0, 255), truncated */
int perturb_ic_motion_blur(wobble_ctx *ctx, const wobble_image *in, double level, const wobble_perturb_params *p,
                           wobble_image *out) {
    static const int C[5][2] = {{10, 3}, {15, 5}, {15, 8}, {15, 12}, {20, 15}};
    int rc = perturb_ic_check(ctx, "imagenet_c.motion_blur", in);
    if (rc != WOBBLE_OK) return rc;
    uint32_t seed;
    rc = perturb_ic_seed(ctx, "imagenet_c.motion_blur", p, level, &seed);
    if (rc != WOBBLE_OK) return rc;
    const int sev = (int)level - 1, radius = C[sev][0], width = 2 * radius + 1;
    const int H = in->height, W = in->width;
    perturb_mt mt;
    perturb_mt_seed(&mt, seed);
    const double angle = perturb_mt_uniform(&mt, -45, 45);
    double k[41];
    int dxs[41], dys[41];
    motion_kernel(radius, C[sev][1], k);
    const int taps = motion_taps(radius, angle, H, W, dxs, dys);
    (void)width;
    const int par = (size_t)W * H * 3 > WOBBLE_PAR_MIN_BYTES;
#pragma omp parallel for num_threads(wobble_ctx_threads(ctx)) schedule(static) if (par)
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int ch = 0; ch < 3; ch++) {
                double acc = 0.0;
                for (int t = 0; t < taps; t++) {
                    const int sy = shifted(y, dys[t], H), sx = shifted(x, dxs[t], W);
                    acc = acc + k[t] * in->data[((size_t)sy * W + sx) * 3 + ch];
                }
                acc = acc < 0 ? 0 : acc > 255 ? 255 : acc;
                out->data[((size_t)y * W + x) * 3 + ch] = (uint8_t)acc;
            }
    return WOBBLE_OK;
}
