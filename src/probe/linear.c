/*
 * Linear probe: multinomial logistic regression on standardised features.
 *
 *   minimise  (1/n) sum_i -log softmax(W x_i + b)_{y_i}  +  (lambda/2) ||W||_F^2
 *
 * (the bias is not penalised), the same optimum as scikit-learn's
 * LogisticRegression(C = 1 / (lambda n)) with the lbfgs solver. Features are
 * standardised with the training mean and (population) standard deviation,
 * as StandardScaler. The problem is strongly convex; it is solved in double
 * precision by L-BFGS (memory 10, backtracking Armijo line search) to a
 * gradient max-norm below tol.
 *
 * lambda: one value, or the value of a grid with the best accuracy on a
 * held-out split of the training set (ties: lower held-out log-loss), fitted
 * from the strongest to the weakest with warm starts; then refitted on the
 * whole training set. The split is stratified and seeded (probe.h).
 */
#include "probe.h"

#include "../core/blas.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>


typedef struct {
    const double *XT; /* [d, n] standardised, transposed: the GEMMs run with n as the long dimension */
    const int *y;
    int n, d, C;
    double lambda;
    double *Z;    /* [C, n] scratch */
    double *loss; /* [n] scratch */
    int threads;
} lr_problem;

/* f and gradient at theta = [W (C x d), b (C)]. Per-sample terms are
 * independent and summed in a fixed order, so the result does not depend on
 * the thread count. */
static double lr_fg(const lr_problem *P, const double *th, double *g) {
    const int n = P->n, d = P->d, C = P->C;
    const double *W = th, *b = th + (size_t)C * d;
    double *Z = P->Z;
    for (int c = 0; c < C; c++)
        for (int i = 0; i < n; i++) Z[(size_t)c * n + i] = b[c];
    core_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, C, n, d, 1.0, W, d, P->XT, n, 1.0, Z, n);
    double *L = P->loss;
#pragma omp parallel for num_threads(P->threads) schedule(static) if (n >= 2048)
    for (int i = 0; i < n; i++) {
        double mx = Z[i];
        for (int c = 1; c < C; c++) mx = Z[(size_t)c * n + i] > mx ? Z[(size_t)c * n + i] : mx;
        double s = 0;
        const double zy = Z[(size_t)P->y[i] * n + i];
        for (int c = 0; c < C; c++) s += Z[(size_t)c * n + i] = exp(Z[(size_t)c * n + i] - mx);
        L[i] = mx + log(s) - zy;
        /* Z becomes (p - onehot) / n */
        const double inv = 1.0 / (s * n);
        for (int c = 0; c < C; c++) Z[(size_t)c * n + i] *= inv;
        Z[(size_t)P->y[i] * n + i] -= 1.0 / n;
    }
    double loss = 0;
    for (int i = 0; i < n; i++) loss += L[i];
    loss /= n;
    double reg = 0;
    for (size_t k = 0; k < (size_t)C * d; k++) reg += W[k] * W[k];
    if (g) {
        double *gW = g, *gb = g + (size_t)C * d;
        memcpy(gW, W, sizeof(double) * (size_t)C * d);
        core_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, C, d, n, 1.0, Z, n, P->XT, n, P->lambda, gW, d);
        for (int c = 0; c < C; c++) {
            double t = 0;
            for (int i = 0; i < n; i++) t += Z[(size_t)c * n + i];
            gb[c] = t;
        }
    }
    return loss + 0.5 * P->lambda * reg;
}

static double dot(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static double norm_inf(const double *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fabs(a[i]) > m ? fabs(a[i]) : m;
    return m;
}

/* L-BFGS from theta in place. Returns iterations, or -1 on out of memory. */
static int lbfgs(const lr_problem *P, double *th, int max_iter, double tol, double *f_out, double *gnorm_out) {
    enum { M = 10 };
    const size_t N = (size_t)P->C * P->d + P->C;
    double *g = malloc(sizeof(double) * N), *dir = malloc(sizeof(double) * N), *xn = malloc(sizeof(double) * N),
           *gn = malloc(sizeof(double) * N), *S = malloc(sizeof(double) * N * M), *Y = malloc(sizeof(double) * N * M);
    double rho[M], al[M];
    int it = 0;
    if (!g || !dir || !xn || !gn || !S || !Y) {
        free(g), free(dir), free(xn), free(gn), free(S), free(Y);
        return -1;
    }
    double f = lr_fg(P, th, g);
    int stored = 0, head = 0;
    while (it < max_iter && norm_inf(g, N) > tol) {
        /* two-loop recursion: dir = -H g */
        for (size_t k = 0; k < N; k++) dir[k] = -g[k];
        for (int j = 0; j < stored; j++) {
            const int s = (head - 1 - j + M) % M;
            al[s] = rho[s] * dot(S + (size_t)s * N, dir, N);
            for (size_t k = 0; k < N; k++) dir[k] -= al[s] * Y[(size_t)s * N + k];
        }
        double gamma;
        if (stored) {
            const int s = (head - 1 + M) % M;
            gamma = dot(S + (size_t)s * N, Y + (size_t)s * N, N) / dot(Y + (size_t)s * N, Y + (size_t)s * N, N);
        } else {
            gamma = 1.0 / sqrt(dot(g, g, N)); /* first step of unit length */
        }
        for (size_t k = 0; k < N; k++) dir[k] *= gamma;
        for (int j = stored - 1; j >= 0; j--) {
            const int s = (head - 1 - j + M) % M;
            const double be = rho[s] * dot(Y + (size_t)s * N, dir, N);
            for (size_t k = 0; k < N; k++) dir[k] += (al[s] - be) * S[(size_t)s * N + k];
        }
        double gd = dot(g, dir, N);
        if (gd >= 0) { /* not a descent direction (numerical): restart with steepest descent */
            stored = 0;
            for (size_t k = 0; k < N; k++) dir[k] = -g[k] / sqrt(dot(g, g, N));
            gd = dot(g, dir, N);
        }
        /* backtracking Armijo */
        double a = 1.0, fn = 0;
        int ok = 0;
        for (int ls = 0; ls < 60; ls++) {
            for (size_t k = 0; k < N; k++) xn[k] = th[k] + a * dir[k];
            fn = lr_fg(P, xn, gn);
            if (fn <= f + 1e-4 * a * gd) {
                ok = 1;
                break;
            }
            a *= 0.5;
        }
        it++;
        if (!ok) break; /* no decrease possible at double precision: converged as far as it goes */
        const double fprev = f;
        /* curvature pair */
        double *sN = S + (size_t)head * N, *yN = Y + (size_t)head * N;
        for (size_t k = 0; k < N; k++) {
            sN[k] = xn[k] - th[k];
            yN[k] = gn[k] - g[k];
        }
        const double sy = dot(sN, yN, N);
        if (sy > 1e-300) {
            rho[head] = 1.0 / sy;
            head = (head + 1) % M;
            if (stored < M) stored++;
        }
        memcpy(th, xn, sizeof(double) * N);
        memcpy(g, gn, sizeof(double) * N);
        f = fn;
        if (fprev - f <= 1e-15 * fmax(fabs(f), 1.0) && norm_inf(g, N) <= 100 * tol) break;
    }
    *f_out = f;
    *gnorm_out = norm_inf(g, N);
    free(g), free(dir), free(xn), free(gn), free(S), free(Y);
    return it;
}

typedef struct {
    uint64_t key;
    int idx;
} keyed;

static int cmp_keyed(const void *a, const void *b) {
    const keyed *x = a, *y = b;
    return x->key < y->key ? -1 : x->key > y->key ? 1 : x->idx - y->idx;
}

int probe_split(const int *y, int n, int C, double frac, uint64_t seed, uint8_t *held) {
    memset(held, 0, (size_t)n);
    keyed *k = malloc(sizeof(keyed) * (size_t)(n ? n : 1));
    if (!k) return -1;
    for (int c = 0; c < C; c++) {
        int m = 0;
        for (int i = 0; i < n; i++)
            if (y[i] == c) k[m++] = (keyed){core_splitmix64(seed ^ core_splitmix64((uint64_t)i)), i};
        if (m < 2) continue;
        qsort(k, (size_t)m, sizeof(keyed), cmp_keyed);
        int h = (int)floor(frac * m + 0.5);
        if (h < 1) h = 1;
        if (h > m - 1) h = m - 1;
        for (int j = 0; j < h; j++) held[k[j].idx] = 1;
    }
    free(k);
    return 0;
}

wobble_probe_params wobble_probe_default_params(void) {
    static const double grid[] = {1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6};
    wobble_probe_params p;
    memset(&p, 0, sizeof p);
    p.l2_grid = grid;
    p.n_l2 = (int)(sizeof grid / sizeof grid[0]);
    p.holdout = 0.2;
    p.max_iter = 1000;
    p.tol = 1e-8;
    p.seed = 0;
    return p;
}

static int cmp_desc(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* accuracy and mean log-loss of theta on the n rows of X: 0, or -1 out of memory */
static int lr_eval(const double *X, const int *y, int n, int d, int C, const double *th, double *acc, double *ll) {
    double *z = malloc(sizeof(double) * C);
    if (!z) return -1;
    int correct = 0;
    double loss = 0;
    for (int i = 0; i < n; i++) {
        for (int c = 0; c < C; c++) z[c] = th[(size_t)C * d + c] + dot(th + (size_t)c * d, X + (size_t)i * d, (size_t)d);
        int am = 0;
        double mx = z[0];
        for (int c = 1; c < C; c++)
            if (z[c] > mx) mx = z[c], am = c;
        double s = 0;
        for (int c = 0; c < C; c++) s += exp(z[c] - mx);
        loss += mx + log(s) - z[y[i]];
        correct += am == y[i];
    }
    free(z);
    *acc = n ? (double)correct / n : 0;
    *ll = n ? loss / n : 0;
    return 0;
}

int probe_check_linear(wobble_ctx *ctx, const wobble_probe_params *p) {
    if (p->n_l2 < 1 || !p->l2_grid) return core_seterr(ctx, WOBBLE_EINVAL, "probe: empty L2 grid");
    for (int k = 0; k < p->n_l2; k++)
        if (!(p->l2_grid[k] > 0) || !isfinite(p->l2_grid[k]))
            return core_seterr(ctx, WOBBLE_EDOMAIN, "probe: L2 strength %g is not a positive number", p->l2_grid[k]);
    if (p->n_l2 > 1 && !(p->holdout > 0 && p->holdout < 1))
        return core_seterr(ctx, WOBBLE_EDOMAIN, "probe: held-out fraction %g is not in (0, 1)", p->holdout);
    if (p->max_iter < 1 || !(p->tol > 0))
        return core_seterr(ctx, WOBBLE_EDOMAIN, "probe: max_iter and tol must be positive");
    return WOBBLE_OK;
}

int probe_linear_fit(wobble_ctx *ctx, const float *Xf, const int *y, int n, int d, int C, const wobble_probe_params *pp,
                     probe_linear *out) {
    const wobble_probe_params p = pp ? *pp : wobble_probe_default_params();
    int rc = probe_check_linear(ctx, &p);
    if (rc || (rc = core_blas_load(ctx))) return rc;
    core_blas_threads(wobble_ctx_threads(ctx));
    memset(out, 0, sizeof *out);
    out->d = d;
    out->C = C;
    const size_t N = (size_t)C * d + C;
    double *X = malloc(sizeof(double) * (size_t)n * d), *mu = calloc((size_t)d, sizeof(double)),
           *sd = calloc((size_t)d, sizeof(double)), *th = calloc(N, sizeof(double)),
           *Z = malloc(sizeof(double) * (size_t)n * C), *grid = malloc(sizeof(double) * p.n_l2),
           *hacc = calloc((size_t)p.n_l2, sizeof(double));
    double *XaT = malloc(sizeof(double) * (size_t)n * d), *Xb = malloc(sizeof(double) * (size_t)n * d),
           *loss = malloc(sizeof(double) * (size_t)n);
    int *ya = malloc(sizeof(int) * n), *yb = malloc(sizeof(int) * n);
    uint8_t *held = malloc((size_t)n);
    if (!X || !mu || !sd || !th || !Z || !grid || !hacc || !XaT || !Xb || !loss || !ya || !yb || !held) {
        rc = core_seterr(ctx, WOBBLE_ENOMEM, "probe: out of memory for %d x %d features", n, d);
        goto done;
    }
    /* standardise */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) mu[j] += Xf[(size_t)i * d + j];
    for (int j = 0; j < d; j++) mu[j] /= n;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) {
            const double t = Xf[(size_t)i * d + j] - mu[j];
            sd[j] += t * t;
        }
    for (int j = 0; j < d; j++) {
        sd[j] = sqrt(sd[j] / n);
        if (!(sd[j] > 0)) sd[j] = 1.0;
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) X[(size_t)i * d + j] = (Xf[(size_t)i * d + j] - mu[j]) / sd[j];
    memcpy(grid, p.l2_grid, sizeof(double) * p.n_l2);
    qsort(grid, (size_t)p.n_l2, sizeof(double), cmp_desc);
    double best = grid[0];
    if (p.n_l2 > 1) {
        if (probe_split(y, n, C, p.holdout, p.seed, held)) {
            rc = core_seterr(ctx, WOBBLE_ENOMEM, "probe: out of memory");
            goto done;
        }
        int na = 0, nb = 0;
        for (int i = 0; i < n; i++) na += !held[i];
        for (int i = 0, a = 0; i < n; i++) {
            if (held[i]) {
                memcpy(Xb + (size_t)nb * d, X + (size_t)i * d, sizeof(double) * d);
                yb[nb++] = y[i];
            } else {
                for (int j = 0; j < d; j++) XaT[(size_t)j * na + a] = X[(size_t)i * d + j];
                ya[a++] = y[i];
            }
        }
        if (nb == 0) {
            rc = core_seterr(ctx, WOBBLE_EINVAL,
                               "probe: no class has 2 training examples, so no held-out split for choosing the L2 strength");
            goto done;
        }
        double bacc = -1, bll = 0;
        for (int k = 0; k < p.n_l2; k++) {
            lr_problem P = {XaT, ya, na, d, C, grid[k], Z, loss, wobble_ctx_threads(ctx)};
            double f, gn;
            if (lbfgs(&P, th, p.max_iter, p.tol, &f, &gn) < 0) {
                rc = core_seterr(ctx, WOBBLE_ENOMEM, "probe: out of memory");
                goto done;
            }
            double acc, ll;
            if (lr_eval(Xb, yb, nb, d, C, th, &acc, &ll)) {
                rc = core_seterr(ctx, WOBBLE_ENOMEM, "probe: out of memory");
                goto done;
            }
            /* report in the caller's grid order */
            for (int q = 0; q < p.n_l2; q++)
                if (p.l2_grid[q] == grid[k]) hacc[q] = acc;
            if (acc > bacc || (acc == bacc && ll < bll)) {
                bacc = acc;
                bll = ll;
                best = grid[k];
            }
        }
        out->holdout_n = nb;
    }
    /* final fit on everything, from zero (so the result does not depend on the grid path) */
    memset(th, 0, sizeof(double) * N);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) XaT[(size_t)j * n + i] = X[(size_t)i * d + j];
    lr_problem P = {XaT, y, n, d, C, best, Z, loss, wobble_ctx_threads(ctx)};
    double f = 0, gn = 0;
    out->iterations = lbfgs(&P, th, p.max_iter, p.tol, &f, &gn);
    if (out->iterations < 0) {
        rc = core_seterr(ctx, WOBBLE_ENOMEM, "probe: out of memory");
        goto done;
    }
    out->lambda = best;
    out->loss = f;
    out->grad_norm = gn;
    out->converged = gn <= p.tol;
    out->mu = mu, out->sd = sd, out->theta = th, out->holdout_acc = hacc;
    out->n_l2 = p.n_l2;
    mu = sd = th = hacc = NULL;
done:
    free(X), free(mu), free(sd), free(th), free(Z), free(grid), free(hacc), free(XaT), free(Xb), free(loss), free(ya),
        free(yb);
    free(held);
    return rc;
}

int probe_linear_scores(const probe_linear *L, const float *Xf, int n, float *scores) {
    const int d = L->d, C = L->C;
    double *x = malloc(sizeof(double) * d), *z = malloc(sizeof(double) * C);
    if (!x || !z) {
        free(x), free(z);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < d; j++) x[j] = (Xf[(size_t)i * d + j] - L->mu[j]) / L->sd[j];
        double mx = -INFINITY;
        for (int c = 0; c < C; c++) {
            z[c] = L->theta[(size_t)C * d + c] + dot(L->theta + (size_t)c * d, x, (size_t)d);
            mx = z[c] > mx ? z[c] : mx;
        }
        double s = 0;
        for (int c = 0; c < C; c++) s += exp(z[c] - mx);
        for (int c = 0; c < C; c++) scores[(size_t)i * C + c] = (float)(exp(z[c] - mx) / s);
    }
    free(x);
    free(z);
    return 0;
}

void probe_linear_free(probe_linear *L) {
    free(L->mu);
    free(L->sd);
    free(L->theta);
    free(L->holdout_acc);
    memset(L, 0, sizeof *L);
}
