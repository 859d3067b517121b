/*
 * Separable antialiased resampling with Pillow's semantics (Image.resize on
 * 8-bit images): filter weights computed in double per output pixel over the
 * support scaled by the reduction factor, normalised to sum 1, converted to
 * 22-bit fixed point; horizontal pass first (only over the rows the vertical
 * pass needs), intermediate clipped to 8 bits, then the vertical pass.
 */
#include "../core/internal.h"
#include "resample.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PREC_BITS 22 /* 32 - 8 - 2: room for negative lobes and overshoot */

static double f_box(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }

static double f_bilinear(double x) {
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double f_hamming(double x) {
    x = fabs(x);
    if (x == 0.0) return 1.0;
    if (x >= 1.0) return 0.0;
    x *= M_PI;
    return sin(x) / x * (0.54f + 0.46f * cos(x));
}

static double f_bicubic(double x) {
    const double a = -0.5; /* Keys' cubic convolution, as Pillow */
    x = fabs(x);
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double sinc(double x) {
    if (x == 0.0) return 1.0;
    x *= M_PI;
    return sin(x) / x;
}

static double f_lanczos(double x) { return (x >= -3.0 && x < 3.0) ? sinc(x) * sinc(x / 3) : 0.0; }

static int filter_of(wobble_filter f, double (**fn)(double), double *support) {
    switch (f) {
    case WOBBLE_FILTER_BOX: *fn = f_box; *support = 0.5; return 1;
    case WOBBLE_FILTER_BILINEAR: *fn = f_bilinear; *support = 1.0; return 1;
    case WOBBLE_FILTER_HAMMING: *fn = f_hamming; *support = 1.0; return 1;
    case WOBBLE_FILTER_BICUBIC: *fn = f_bicubic; *support = 2.0; return 1;
    case WOBBLE_FILTER_LANCZOS: *fn = f_lanczos; *support = 3.0; return 1;
    }
    return 0;
}

void image_coeffs_free(wobble_coeffs *c) {
    if (!c) return;
    free(c->start);
    free(c->count);
    free(c->k);
    memset(c, 0, sizeof *c);
}

int image_coeffs_make(int in_size, int out_size, wobble_filter filter, wobble_coeffs *c) {
    memset(c, 0, sizeof *c);
    double (*fn)(double);
    double base_support;
    if (!filter_of(filter, &fn, &base_support)) return WOBBLE_EINVAL;
    double scale = (double)in_size / out_size;
    double fscale = scale < 1.0 ? 1.0 : scale;
    double support = base_support * fscale;
    int ksize = (int)ceil(support) * 2 + 1;
    if (ksize <= 0 || out_size > INT_MAX / ksize) return WOBBLE_ENOMEM;
    c->ksize = ksize;
    c->n = out_size;
    c->start = malloc(sizeof(int) * (size_t)out_size);
    c->count = malloc(sizeof(int) * (size_t)out_size);
    c->k = calloc((size_t)out_size * (size_t)ksize, sizeof(int32_t));
    double *w = malloc(sizeof(double) * (size_t)ksize);
    if (!c->start || !c->count || !c->k || !w) {
        free(w);
        image_coeffs_free(c);
        return WOBBLE_ENOMEM;
    }
    const double inv = 1.0 / fscale;
    for (int o = 0; o < out_size; o++) {
        double center = (o + 0.5) * scale;
        int lo = (int)(center - support + 0.5); /* truncation, as Pillow */
        if (lo < 0) lo = 0;
        int hi = (int)(center + support + 0.5);
        if (hi > in_size) hi = in_size;
        int n = hi - lo;
        double sum = 0.0;
        for (int i = 0; i < n; i++) {
            w[i] = fn((i + lo - center + 0.5) * inv);
            sum += w[i];
        }
        int32_t *k = c->k + (size_t)o * ksize;
        for (int i = 0; i < n; i++) {
            double v = sum != 0.0 ? w[i] / sum : w[i];
            k[i] = v < 0 ? (int32_t)(-0.5 + v * (1 << PREC_BITS)) : (int32_t)(0.5 + v * (1 << PREC_BITS));
        }
        c->start[o] = lo;
        c->count[o] = n < 0 ? 0 : n;
    }
    free(w);
    return WOBBLE_OK;
}

static inline uint8_t clip_fixed(int32_t v) {
    v >>= PREC_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Horizontal pass: rows [y0, y0 + out_h) of src (width src_w) to dst. */
static void pass_h(const uint8_t *src, int src_w, int y0, uint8_t *dst, int out_w, int out_h,
                   const wobble_coeffs *c, int threads) {
    const int par = (long)out_w * out_h > 32768;
#pragma omp parallel for num_threads(threads) schedule(static) if (par)
    for (int y = 0; y < out_h; y++) {
        const uint8_t *row = src + (size_t)(y + y0) * src_w * 3u;
        uint8_t *o = dst + (size_t)y * out_w * 3u;
        for (int x = 0; x < out_w; x++) {
            const int32_t *k = c->k + (size_t)x * c->ksize;
            const uint8_t *p = row + (size_t)c->start[x] * 3u;
            int32_t s0 = 1 << (PREC_BITS - 1), s1 = s0, s2 = s0;
            for (int i = 0; i < c->count[x]; i++) {
                s0 += p[3 * i] * k[i];
                s1 += p[3 * i + 1] * k[i];
                s2 += p[3 * i + 2] * k[i];
            }
            o[3 * x] = clip_fixed(s0);
            o[3 * x + 1] = clip_fixed(s1);
            o[3 * x + 2] = clip_fixed(s2);
        }
    }
}

/* Vertical pass: src rows are offset by `shift` relative to c->start. */
static int pass_v(const uint8_t *src, int w, int shift, uint8_t *dst, int out_h, const wobble_coeffs *c,
                  int threads) {
    const size_t rowlen = (size_t)w * 3u;
    const int par = (long)w * out_h > 32768;
    int fail = 0;
#pragma omp parallel num_threads(threads) if (par)
    {
        int32_t *acc = malloc(sizeof(int32_t) * rowlen);
        if (!acc) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for schedule(static)
        for (int y = 0; y < out_h; y++) {
            if (!acc) continue;
            const int32_t *k = c->k + (size_t)y * c->ksize;
            for (size_t i = 0; i < rowlen; i++) acc[i] = 1 << (PREC_BITS - 1);
            for (int j = 0; j < c->count[y]; j++) {
                const uint8_t *r = src + (size_t)(c->start[y] - shift + j) * rowlen;
                const int32_t kj = k[j];
                for (size_t i = 0; i < rowlen; i++) acc[i] += r[i] * kj;
            }
            uint8_t *o = dst + (size_t)y * rowlen;
            for (size_t i = 0; i < rowlen; i++) o[i] = clip_fixed(acc[i]);
        }
        free(acc);
    }
    return fail ? WOBBLE_ENOMEM : WOBBLE_OK;
}

/* The window [x0, x0 + cw) x [y0, y0 + chh) of the ow x oh resize: its
 * coefficients are the full resize's, so its pixels are the full resize's
 * bits. */
int image_resize_rgb_window(const uint8_t *src, int w, int h, uint8_t *dst, int ow, int oh, int x0, int y0, int cw,
                            int chh, wobble_filter filter, int threads) {
    const int need_h = ow != w, need_v = oh != h;
    if (x0 < 0 || y0 < 0 || cw < 1 || chh < 1 || x0 + cw > ow || y0 + chh > oh) return WOBBLE_EINVAL;
    if (!need_h && !need_v) {
        for (int y = 0; y < chh; y++)
            memcpy(dst + (size_t)y * cw * 3u, src + ((size_t)(y0 + y) * w + x0) * 3u, (size_t)cw * 3u);
        return WOBBLE_OK;
    }
    wobble_coeffs cv = {0}, ch = {0};
    int rc = need_v ? image_coeffs_make(h, oh, filter, &cv) : WOBBLE_OK;
    if (rc == WOBBLE_OK && need_h) rc = image_coeffs_make(w, ow, filter, &ch);
    if (rc != WOBBLE_OK) {
        image_coeffs_free(&cv);
        return rc;
    }
    /* the window's coefficients: views into the full tables */
    const wobble_coeffs wv = need_v ? (wobble_coeffs){chh, cv.ksize, cv.start + y0, cv.count + y0,
                                                      cv.k + (size_t)y0 * cv.ksize}
                                    : (wobble_coeffs){0};
    const wobble_coeffs wh = need_h ? (wobble_coeffs){cw, ch.ksize, ch.start + x0, ch.count + x0,
                                                      ch.k + (size_t)x0 * ch.ksize}
                                    : (wobble_coeffs){0};
    /* the source rows the vertical pass reads (all of the window's rows without one) */
    const int first = need_v ? wv.start[0] : y0, last = need_v ? wv.start[chh - 1] + wv.count[chh - 1] : y0 + chh;
    uint8_t *tmp = NULL;
    if (need_h && !need_v) {
        pass_h(src, w, first, dst, cw, chh, &wh, threads);
    } else {
        /* the rows the vertical pass reads, cw wide: resized horizontally, or the window's columns */
        const uint8_t *vsrc;
        if (need_h || x0 > 0 || cw < w) {
            tmp = malloc((size_t)cw * (last - first) * 3u);
            rc = tmp ? WOBBLE_OK : WOBBLE_ENOMEM;
            if (tmp && need_h)
                pass_h(src, w, first, tmp, cw, last - first, &wh, threads);
            else if (tmp)
                for (int y = first; y < last; y++)
                    memcpy(tmp + (size_t)(y - first) * cw * 3u, src + ((size_t)y * w + x0) * 3u, (size_t)cw * 3u);
            vsrc = tmp;
        } else {
            vsrc = src + (size_t)first * w * 3u;
        }
        if (rc == WOBBLE_OK) rc = pass_v(vsrc, cw, first, dst, chh, &wv, threads);
    }
    free(tmp);
    image_coeffs_free(&cv);
    image_coeffs_free(&ch);
    return rc;
}

int image_resize_rgb(const uint8_t *src, int w, int h, uint8_t *dst, int ow, int oh, wobble_filter filter,
                     int threads) {
    return image_resize_rgb_window(src, w, h, dst, ow, oh, 0, 0, ow, oh, filter, threads);
}

int wobble_image_resize(wobble_ctx *ctx, const wobble_image *img, int width, int height,
                        wobble_filter filter, wobble_image **out) {
    if (!img || !out) return core_seterr(ctx, WOBBLE_EINVAL, "resize: NULL argument");
    *out = NULL;
    if (width <= 0 || height <= 0)
        return core_seterr(ctx, WOBBLE_EINVAL, "resize: invalid target size %dx%d", width, height);
    if ((unsigned)filter > WOBBLE_FILTER_LANCZOS)
        return core_seterr(ctx, WOBBLE_EINVAL, "resize: unknown filter %d", (int)filter);
    wobble_image *o = NULL;
    int rc = image_alloc(ctx, width, height, &o);
    if (rc != WOBBLE_OK) return rc;
    rc = image_resize_rgb(img->data, img->width, img->height, o->data, width, height, filter,
                           wobble_ctx_threads(ctx));
    if (rc != WOBBLE_OK) {
        wobble_image_free(o);
        return core_seterr(ctx, rc, "resize: %s", wobble_strerror(rc));
    }
    *out = o;
    return WOBBLE_OK;
}

/* Pillow 9.4 Image.resize((ow, oh), NEAREST): an affine scale whose source
 * coordinate starts at half a step and is advanced by adding the step
 * (Geometry.c), truncated to an index. */
int image_resize_nearest_rgb(const uint8_t *src, int w, int h, uint8_t *dst, int ow, int oh) {
    int *xin = malloc(sizeof(int) * (size_t)ow);
    if (!xin) return WOBBLE_ENOMEM;
    const double ax = (double)w / ow, ay = (double)h / oh;
    double xo = ax * 0.5;
    for (int x = 0; x < ow; x++, xo += ax) {
        const int xi = (int)xo;
        xin[x] = xi < w ? xi : w - 1;
    }
    double yo = ay * 0.5;
    for (int y = 0; y < oh; y++, yo += ay) {
        int yi = (int)yo;
        if (yi >= h) yi = h - 1;
        const uint8_t *s = src + (size_t)yi * w * 3;
        uint8_t *d = dst + (size_t)y * ow * 3;
        for (int x = 0; x < ow; x++) memcpy(d + 3 * x, s + 3 * xin[x], 3);
    }
    free(xin);
    return WOBBLE_OK;
}
