/*
 * Least-squares line, Pearson and Spearman correlation (docs/downstream.md).
 * Spearman is Pearson on ranks, ties given their average rank (as
 * scipy.stats.spearmanr). A constant x or y leaves the undefined values NaN.
 */
#include "../core/internal.h"

#include <math.h>
#include <stdlib.h>

typedef struct {
    double v;
    int i;
} vi;

static int cmp_vi(const void *a, const void *b) {
    const vi *x = a, *y = b;
    return x->v < y->v ? -1 : x->v > y->v ? 1 : x->i - y->i;
}

static int ranks(const double *x, int n, double *r) {
    vi *t = malloc(sizeof(vi) * (size_t)n);
    if (!t) return -1;
    for (int i = 0; i < n; i++) t[i] = (vi){x[i], i};
    qsort(t, (size_t)n, sizeof(vi), cmp_vi);
    for (int i = 0; i < n;) {
        int j = i;
        while (j + 1 < n && t[j + 1].v == t[i].v) j++;
        const double avg = 0.5 * (i + j) + 1.0;
        for (int k = i; k <= j; k++) r[t[k].i] = avg;
        i = j + 1;
    }
    free(t);
    return 0;
}

/* means and centred sums of squares and products */
static void moments(const double *x, const double *y, int n, double *mx, double *my, double *sxx, double *syy,
                    double *sxy) {
    double a = 0, b = 0;
    for (int i = 0; i < n; i++) a += x[i], b += y[i];
    a /= n, b /= n;
    double xx = 0, yy = 0, xy = 0;
    for (int i = 0; i < n; i++) {
        xx += (x[i] - a) * (x[i] - a);
        yy += (y[i] - b) * (y[i] - b);
        xy += (x[i] - a) * (y[i] - b);
    }
    *mx = a, *my = b, *sxx = xx, *syy = yy, *sxy = xy;
}

static double corr(double sxx, double syy, double sxy) {
    if (!(sxx > 0) || !(syy > 0)) return NAN;
    const double r = sxy / sqrt(sxx * syy);
    return r > 1 ? 1 : r < -1 ? -1 : r;
}

int wobble_fit_linear(const double *x, const double *y, int n, wobble_fit *out) {
    if (!x || !y || !out || n < 2) return WOBBLE_EINVAL;
    for (int i = 0; i < n; i++)
        if (!isfinite(x[i]) || !isfinite(y[i])) return WOBBLE_EINVAL;
    double mx, my, sxx, syy, sxy;
    moments(x, y, n, &mx, &my, &sxx, &syy, &sxy);
    out->n = n;
    out->mean_x = mx;
    out->mean_y = my;
    if (sxx > 0) {
        out->slope = sxy / sxx;
        out->intercept = my - out->slope * mx;
        double sse = 0;
        for (int i = 0; i < n; i++) {
            const double e = y[i] - (out->intercept + out->slope * x[i]);
            sse += e * e;
        }
        out->r2 = syy > 0 ? 1.0 - sse / syy : NAN;
    } else {
        out->slope = NAN;
        out->intercept = NAN;
        out->r2 = NAN;
    }
    out->pearson = corr(sxx, syy, sxy);
    double *rx = malloc(sizeof(double) * (size_t)n), *ry = malloc(sizeof(double) * (size_t)n);
    if (!rx || !ry || ranks(x, n, rx) || ranks(y, n, ry)) {
        free(rx), free(ry);
        return WOBBLE_ENOMEM;
    }
    double rmx, rmy, rxx, ryy, rxy;
    moments(rx, ry, n, &rmx, &rmy, &rxx, &ryy, &rxy);
    out->spearman = corr(rxx, ryy, rxy);
    free(rx), free(ry);
    return WOBBLE_OK;
}
