/*
 * Embedding-space robustness of one image under one operation with K levels
 * (docs/metrics.md gives the definitions and proofs). With e = f / ||f||:
 *   per level  c_k = (1 - cos(f(x), f(P(x,k)))) / 2,   u_k = ||e(x) - e(P(x,k))|| / 2
 *   R_cos = max_k c_k,  R_euc = max_k u_k,  R_div = radius of the minimum
 *   enclosing ball of {e(x)} and {e(P(x,k))}
 * and the mean-over-levels variants. Computed in double.
 */
#include "../core/internal.h"
#include "metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int unit(wobble_ctx *ctx, const float *v, int d, double *out, const char *what, int k) {
    double s = 0;
    for (int j = 0; j < d; j++) s += (double)v[j] * v[j];
    if (!(s > 0) || !isfinite(s))
        return wobble_seterr(ctx, WOBBLE_EINVAL, "robustness: %s embedding%s%.0d has %s norm", what, k >= 0 ? " " : "",
                             k >= 0 ? k : 0, isfinite(s) ? "zero" : "a non-finite");
    const double inv = 1.0 / sqrt(s);
    for (int j = 0; j < d; j++) out[j] = v[j] * inv;
    return WOBBLE_OK;
}

int wobble_robustness_compute(wobble_ctx *ctx, const float *clean, const float *perturbed, int K, int d,
                              double *level_cos, double *level_euc, wobble_robustness *out) {
    if (!clean || (!perturbed && K) || K < 0 || d < 1 || !out)
        return wobble_seterr(ctx, WOBBLE_EINVAL, "robustness: bad arguments");
    double *E = malloc(sizeof(double) * (size_t)(K + 1) * d);
    if (!E) return wobble_seterr(ctx, WOBBLE_ENOMEM, "robustness: out of memory");
    int rc = unit(ctx, clean, d, E, "clean", -1);
    for (int k = 0; k < K && rc == WOBBLE_OK; k++) rc = unit(ctx, perturbed + (size_t)k * d, d, E + (size_t)(k + 1) * d, "perturbed", k);
    if (rc) {
        free(E);
        return rc;
    }
    memset(out, 0, sizeof *out);
    for (int k = 0; k < K; k++) {
        const double *a = E, *b = E + (size_t)(k + 1) * d;
        double dist2 = 0;
        for (int j = 0; j < d; j++) {
            const double t = a[j] - b[j];
            dist2 += t * t;
        }
        /* for unit vectors (1 - cos) / 2 = ||e - e'||^2 / 4: computed from the
         * distance it is exactly 0 for identical embeddings and free of the
         * cancellation in 1 - cos for nearly identical ones */
        double c = dist2 / 4;
        if (c > 1) c = 1;
        const double u = sqrt(c);
        if (level_cos) level_cos[k] = c;
        if (level_euc) level_euc[k] = u;
        out->cos_max = c > out->cos_max ? c : out->cos_max;
        out->euc_max = u > out->euc_max ? u : out->euc_max;
        out->cos_mean += c / K;
        out->euc_mean += u / K;
    }
    rc = K ? wobble_meb_f64(ctx, E, K + 1, d, &out->div_radius, NULL, NULL) : WOBBLE_OK;
    if (out->div_radius > 1) out->div_radius = 1; /* rounding above the proven bound */
    free(E);
    return rc;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Percentile with linear interpolation between order statistics (NumPy's default). */
static double pct(const double *s, int n, double p) {
    if (n == 1) return s[0];
    double pos = p / 100.0 * (n - 1);
    int lo = (int)floor(pos);
    if (lo >= n - 1) return s[n - 1];
    double f = pos - lo;
    return s[lo] + f * (s[lo + 1] - s[lo]);
}

int wobble_stats_compute(const double *v, int n, wobble_stats *out) {
    if (!v || n < 1 || !out) return WOBBLE_EINVAL;
    double *s = malloc(sizeof(double) * n);
    if (!s) return WOBBLE_ENOMEM;
    memcpy(s, v, sizeof(double) * n);
    qsort(s, n, sizeof(double), cmp_d);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += s[i];
    out->n = n;
    out->mean = sum / n;
    out->median = pct(s, n, 50);
    out->p90 = pct(s, n, 90);
    out->p99 = pct(s, n, 99);
    out->min = s[0];
    out->max = s[n - 1];
    free(s);
    return WOBBLE_OK;
}
