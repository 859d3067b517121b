/*
 * Exact minimum enclosing ball of n points in R^d.
 *
 * Dual: the centre is c = sum_i l_i p_i with l on the simplex maximising
 * f(l) = sum_i l_i G_ii - l' G l, whose maximum is r^2 (G the Gram matrix).
 * 1. Points are centred on their mean first, so that G holds small numbers
 *    and tiny radii (nearly identical embeddings) keep full relative precision.
 * 2. Frank-Wolfe with away steps and exact line search (f is quadratic) runs
 *    until the duality gap is below 1e-9 of the largest squared norm, which
 *    identifies the support.
 * 3. Active-set polish: on the support S (l_i > 0) the optimal centre is
 *    equidistant from S, i.e. [2 G_SS 1; 1' 0][l; s] = [diag G_SS; 1]; a
 *    negative weight leaves S, the farthest outside point joins it, until
 *    l >= 0 and every point lies inside. These are the KKT conditions, so the
 *    result is the exact optimum up to rounding. Should the polish not reach
 *    them (a degenerate support), Frank-Wolfe resumes to a 1e-15 gap and the
 *    polish is tried again; the Frank-Wolfe point is kept if it still fails.
 * The radius returned is the largest distance from the centre, so the ball
 * always encloses every point.
 */
#include "../core/internal.h"
#include "metrics.h"

#include "../core/blas.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Solve A x = b (m x m, row-major, overwritten) by Gaussian elimination with
 * partial pivoting. Returns 0 if singular. */
static int solve(double *A, double *b, int m) {
    for (int k = 0; k < m; k++) {
        int p = k;
        for (int i = k + 1; i < m; i++)
            if (fabs(A[(size_t)i * m + k]) > fabs(A[(size_t)p * m + k])) p = i;
        if (fabs(A[(size_t)p * m + k]) < 1e-300) return 0;
        if (p != k) {
            for (int j = 0; j < m; j++) {
                double t = A[(size_t)k * m + j];
                A[(size_t)k * m + j] = A[(size_t)p * m + j];
                A[(size_t)p * m + j] = t;
            }
            double t = b[k];
            b[k] = b[p];
            b[p] = t;
        }
        for (int i = k + 1; i < m; i++) {
            double f = A[(size_t)i * m + k] / A[(size_t)k * m + k];
            if (f == 0) continue;
            for (int j = k; j < m; j++) A[(size_t)i * m + j] -= f * A[(size_t)k * m + j];
            b[i] -= f * b[k];
        }
    }
    for (int k = m - 1; k >= 0; k--) {
        double s = b[k];
        for (int j = k + 1; j < m; j++) s -= A[(size_t)k * m + j] * b[j];
        b[k] = s / A[(size_t)k * m + k];
    }
    return 1;
}

/* Gl = G l, lGl = l' G l; dist2_i = G_ii - 2 (G l)_i + l' G l */
static void refresh(const double *G, const double *l, int n, double *Gl, double *lGl) {
    double q = 0;
    for (int i = 0; i < n; i++) {
        double s = 0;
        const double *row = G + (size_t)i * n;
        for (int j = 0; j < n; j++) s += row[j] * l[j];
        Gl[i] = s;
        q += l[i] * s;
    }
    *lGl = q;
}

int wobble_meb_f64(wobble_ctx *ctx, const double *pts, int n, int d, double *radius, double *center,
                   wobble_meb_info *info) {
    if (!pts || !radius || n < 1 || d < 1) return core_seterr(ctx, WOBBLE_EINVAL, "meb: bad arguments");
    for (size_t i = 0; i < (size_t)n * d; i++)
        if (!isfinite(pts[i])) return core_seterr(ctx, WOBBLE_EINVAL, "meb: point %zu holds NaN or Inf", i / d);
    if (core_blas_load(ctx) != WOBBLE_OK) return wobble_last_status(ctx);
    double *mean = calloc((size_t)d, sizeof(double));
    double *Q = malloc(sizeof(double) * (size_t)n * d);
    double *G = malloc(sizeof(double) * (size_t)n * n);
    double *l = calloc((size_t)n, sizeof(double)), *Gl = malloc(sizeof(double) * n);
    int *S = malloc(sizeof(int) * (size_t)(n + 1));
    double *A = malloc(sizeof(double) * (size_t)(n + 1) * (n + 1)), *b = malloc(sizeof(double) * (n + 1));
    if (!mean || !Q || !G || !l || !Gl || !S || !A || !b) {
        free(mean), free(Q), free(G), free(l), free(Gl), free(S), free(A), free(b);
        return core_seterr(ctx, WOBBLE_ENOMEM, "meb: out of memory for %d points", n);
    }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < d; k++) mean[k] += pts[(size_t)i * d + k];
    for (int k = 0; k < d; k++) mean[k] /= n;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < d; k++) Q[(size_t)i * d + k] = pts[(size_t)i * d + k] - mean[k];
    core_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, n, d, 1.0, Q, d, 0.0, G, n);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) G[(size_t)j * n + i] = G[(size_t)i * n + j];
    double scale = 0;
    for (int i = 0; i < n; i++) scale = G[(size_t)i * n + i] > scale ? G[(size_t)i * n + i] : scale;
    int iters = 0, polish = 0;
    if (scale == 0) {
        /* all points coincide */
        l[0] = 1;
    } else {
        /* start at the point farthest from the mean */
        int far = 0;
        for (int i = 1; i < n; i++)
            if (G[(size_t)i * n + i] > G[(size_t)far * n + far]) far = i;
        l[far] = 1;
        double *lfw = malloc(sizeof(double) * n);
        if (!lfw) {
            free(mean), free(Q), free(G), free(l), free(Gl), free(S), free(A), free(b);
            return core_seterr(ctx, WOBBLE_ENOMEM, "meb: out of memory");
        }
        const double tols[2] = {1e-9, 1e-15};
        int certified = 0;
        for (int pass = 0; pass < 2 && !certified; pass++) {
            double lGl;
            refresh(G, l, n, Gl, &lGl);
            for (int it2 = 0; it2 < 20000; it2++, iters++) {
                int it = 0, jt = -1;
                double gmax = -INFINITY, gmin = INFINITY, lg = 0;
                for (int i = 0; i < n; i++) {
                    const double g = G[(size_t)i * n + i] - 2 * Gl[i];
                    lg += l[i] * g;
                    if (g > gmax) gmax = g, it = i;
                    if (l[i] > 0 && g < gmin) gmin = g, jt = i;
                }
                const double gap_fw = gmax - lg, gap_aw = jt >= 0 ? lg - gmin : 0;
                if (gap_fw <= tols[pass] * scale) break;
                int away = gap_aw > gap_fw && jt >= 0 && l[jt] < 1;
                const int v = away ? jt : it;
                /* direction d = +-(e_v - l); f(l + t d) = f + t g.d - t^2 d'Gd */
                const double dGd = G[(size_t)v * n + v] - 2 * Gl[v] + lGl;
                const double gd = away ? gap_aw : gap_fw;
                double tmax = away ? l[v] / (1 - l[v]) : 1.0;
                double t = dGd > 0 ? gd / (2 * dGd) : tmax;
                if (t > tmax) t = tmax;
                if (t <= 0) break;
                /* l <- l + t d, Gl updated in O(n) */
                const double a = away ? 1 + t : 1 - t, bcoef = away ? -t : t;
                for (int i = 0; i < n; i++) {
                    l[i] *= a;
                    Gl[i] = a * Gl[i] + bcoef * G[(size_t)i * n + v];
                }
                l[v] += bcoef;
                if (l[v] < 1e-300) l[v] = 0;
                lGl = 0;
                for (int i = 0; i < n; i++) lGl += l[i] * Gl[i];
            }
            memcpy(lfw, l, sizeof(double) * n);
            /* active-set polish */
            int m = 0;
            for (int i = 0; i < n; i++)
                if (l[i] > 1e-12) S[m++] = i;
            for (int step = 0; step < 4 * n + 10 && m > 0; step++, polish++) {
                const int k = m + 1;
                for (int a2 = 0; a2 < m; a2++) {
                    for (int c2 = 0; c2 < m; c2++) A[(size_t)a2 * k + c2] = 2 * G[(size_t)S[a2] * n + S[c2]];
                    A[(size_t)a2 * k + m] = 1;
                    b[a2] = G[(size_t)S[a2] * n + S[a2]];
                }
                for (int c2 = 0; c2 < m; c2++) A[(size_t)m * k + c2] = 1;
                A[(size_t)m * k + m] = 0;
                b[m] = 1;
                if (!solve(A, b, k)) break; /* affinely dependent support */
                int neg = -1;
                for (int a2 = 0; a2 < m; a2++)
                    if (b[a2] < 0 && (neg < 0 || b[a2] < b[neg])) neg = a2;
                if (neg >= 0) { /* drop the most negative weight and retry */
                    S[neg] = S[--m];
                    continue;
                }
                memset(l, 0, sizeof(double) * n);
                for (int a2 = 0; a2 < m; a2++) l[S[a2]] = b[a2];
                refresh(G, l, n, Gl, &lGl);
                double r2 = 0;
                for (int a2 = 0; a2 < m; a2++) {
                    double d2 = G[(size_t)S[a2] * n + S[a2]] - 2 * Gl[S[a2]] + lGl;
                    r2 = d2 > r2 ? d2 : r2;
                }
                int out = -1;
                double worst = r2 * (1 + 1e-13) + 1e-300;
                for (int i = 0; i < n; i++) {
                    double d2 = G[(size_t)i * n + i] - 2 * Gl[i] + lGl;
                    if (d2 > worst) worst = d2, out = i;
                }
                if (out < 0) {
                    certified = 1;
                    break;
                }
                S[m++] = out;
            }
            if (!certified) memcpy(l, lfw, sizeof(double) * n); /* resume from the Frank-Wolfe point */
        }
        free(lfw);
    }
    /* final centre and radius (largest distance, so the ball encloses all) */
    double lGl;
    refresh(G, l, n, Gl, &lGl);
    double r2 = 0;
    int support = 0;
    for (int i = 0; i < n; i++) {
        double d2 = G[(size_t)i * n + i] - 2 * Gl[i] + lGl;
        r2 = d2 > r2 ? d2 : r2;
        support += l[i] > 0;
    }
    *radius = sqrt(r2);
    if (center)
        for (int k = 0; k < d; k++) {
            double s = mean[k];
            for (int i = 0; i < n; i++) s += l[i] * Q[(size_t)i * d + k];
            center[k] = s;
        }
    if (info) {
        info->iterations = iters;
        info->polish_steps = polish;
        info->support = support;
    }
    free(mean), free(Q), free(G), free(l), free(Gl), free(S), free(A), free(b);
    return WOBBLE_OK;
}
