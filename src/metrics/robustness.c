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

/* k < 0: the clean embedding, else perturbed embedding k */
static int unit(wobble_ctx *ctx, const float *v, int d, double *out, int k) {
    double s = 0;
    for (int j = 0; j < d; j++) s += (double)v[j] * v[j];
    if (!(s > 0) || !isfinite(s)) {
        const char *why = isfinite(s) ? "zero" : "a non-finite";
        if (k < 0) return core_seterr(ctx, WOBBLE_EINVAL, "robustness: clean embedding has %s norm", why);
        return core_seterr(ctx, WOBBLE_EINVAL, "robustness: perturbed embedding %d has %s norm", k, why);
    }
    const double inv = 1.0 / sqrt(s);
    for (int j = 0; j < d; j++) out[j] = v[j] * inv;
    return WOBBLE_OK;
}

int wobble_robustness_compute(wobble_ctx *ctx, const float *clean, const float *perturbed, int K, int d,
                              double *level_cos, double *level_euc, wobble_robustness *out) {
    if (!clean || (!perturbed && K) || K < 0 || d < 1 || !out)
        return core_seterr(ctx, WOBBLE_EINVAL, "robustness: bad arguments");
    double *E = malloc(sizeof(double) * (size_t)(K + 1) * d);
    if (!E) return core_seterr(ctx, WOBBLE_ENOMEM, "robustness: out of memory");
    int rc = unit(ctx, clean, d, E, -1);
    for (int k = 0; k < K && rc == WOBBLE_OK; k++) rc = unit(ctx, perturbed + (size_t)k * d, d, E + (size_t)(k + 1) * d, k);
    if (rc) {
        free(E);
        return rc;
    }
    /* everything is computed into locals; the outputs are written only on success */
    wobble_robustness r;
    memset(&r, 0, sizeof r);
    double *lv = K ? malloc(sizeof(double) * 2 * (size_t)K) : NULL;
    if (K && !lv) {
        free(E);
        return core_seterr(ctx, WOBBLE_ENOMEM, "robustness: out of memory");
    }
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
        lv[k] = c;
        lv[K + k] = u;
        r.cos_max = c > r.cos_max ? c : r.cos_max;
        r.euc_max = u > r.euc_max ? u : r.euc_max;
        r.cos_mean += c / K;
        r.euc_mean += u / K;
    }
    rc = K ? wobble_meb_f64(ctx, E, K + 1, d, &r.div_radius, NULL, NULL) : WOBBLE_OK;
    if (r.div_radius > 1) r.div_radius = 1; /* rounding above the proven bound */
    if (rc == WOBBLE_OK) {
        *out = r;
        if (level_cos && K) memcpy(level_cos, lv, sizeof(double) * (size_t)K);
        if (level_euc && K) memcpy(level_euc, lv + K, sizeof(double) * (size_t)K);
    }
    free(lv);
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
    out->p10 = pct(s, n, 10);
    out->p90 = pct(s, n, 90);
    out->p99 = pct(s, n, 99);
    out->min = s[0];
    out->max = s[n - 1];
    free(s);
    return WOBBLE_OK;
}
