/*
 * The scipy.ndimage operations imagecorruptions calls, reproduced exactly
 * (SciPy 1.10), on C-contiguous (h, w, c) float64 arrays:
 *
 *  - gaussian_filter as skimage.filters.gaussian calls it: one 1-D
 *    correlation per axis (rows, then columns), the weights
 *    exp(-0.5 / sigma^2 * k^2), |k| <= int(truncate * sigma + 0.5), over
 *    their sum (NumPy's exp and sum, npmath.h); each output is the centre
 *    tap plus, from the outermost pair inwards, (left + right) * weight.
 *  - zoom(a, (zy, zx, 1), order=1) (mode "constant") and
 *    map_coordinates(a, coords, order=1, mode="reflect"): linear splines
 *    with weights (1 - t, 1 - (1 - t)), summed over the 2 x 2 x 2 footprint
 *    with the last axis fastest, each term (value * wy) * wx.
 * Borders: "nearest" repeats the edge, "reflect" mirrors about it
 * (d c b a | a b c d | d c b a).
 */
#ifndef WOBBLE_NDIMAGE_H
#define WOBBLE_NDIMAGE_H
#include <stddef.h>

enum { ND_NEAREST, ND_REFLECT };

/* in place; sigma_y or sigma_x <= 1e-15 skips that axis. Returns a wobble
 * status (WOBBLE_ENOMEM). */
int perturb_nd_gaussian(double *a, int h, int w, int c, double sigma_y, double sigma_x, double truncate, int mode,
                        int threads);
/* the same for a float32 array (held in doubles): each pass's output is
 * rounded to float, as SciPy stores it */
int perturb_nd_gaussian_f32(double *a, int h, int w, int c, double sigma_y, double sigma_x, double truncate,
                            int mode, int threads);

/* One axis of an order-1 spline at coordinate cc: the two taps and their
 * weights (1 - t, 1 - (1 - t)), or zero = 1 when the coordinate falls
 * outside (mode "constant", reflect = 0; the edge taps mirrored) or,
 * reflect = 1, the coordinate and the taps reflected. */
typedef struct {
    int i0, i1, zero;
    double w0, w1;
} perturb_nd_tap;
perturb_nd_tap perturb_nd_tap_linear(double cc, int len, int reflect);

/* SciPy's order-1 value at taps (ty, tx) between rows r0 and r1 whose
 * values for one channel lie c apart: the footprint in SciPy's order (last
 * axis fastest), each term (value * wy) * wx. An integer channel coordinate
 * leaves its second, zero-weight taps out: they add +-0 and change nothing. */
static inline double perturb_nd_lerp(const double *r0, const double *r1, int c, const perturb_nd_tap *ty,
                                     const perturb_nd_tap *tx) {
    double t = 0.0;
    t += r0[(size_t)tx->i0 * c] * ty->w0 * tx->w0;
    t += r0[(size_t)tx->i1 * c] * ty->w0 * tx->w1;
    t += r1[(size_t)tx->i0 * c] * ty->w1 * tx->w0;
    t += r1[(size_t)tx->i1 * c] * ty->w1 * tx->w1;
    return t;
}

/* scipy's output size for zoom: round(n * z), halves to even */
int perturb_nd_zoom_size(int n, double z);

/* out (oh, ow, c) = zoom(in (h, w, c), order=1, mode="constant", cval=0),
 * oh = perturb_nd_zoom_size(h, zy) and so on; in's rows are `stride`
 * values apart (w c when packed); each output rounded to float when
 * `to_float`. */
void perturb_nd_zoom_linear(const double *in, int h, int w, int c, size_t stride, double *out, int oh, int ow,
                            int to_float);

/* out[i] = map_coordinates(in (h, w, c), [ys[i], xs[i], ch], order=1,
 * mode="reflect") for the n points i = ((y, x), ch) in row-major order over
 * (h, w, c), with (ys, xs) one pair per (y, x); rounded to float when
 * `to_float`. */
void perturb_nd_map_linear(const double *in, int h, int w, int c, const double *ys, const double *xs, double *out,
                           int to_float, int threads);
#endif
