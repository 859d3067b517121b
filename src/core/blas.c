/*
 * OpenBLAS on first use (blas.h): dlopen of $WOBBLE_OPENBLAS_LIB when set,
 * else the library the build found (WOBBLE_OPENBLAS_PATH, Debian's
 * openblas-openmp variant), else libopenblas.so.0 on the loader's path.
 * Mapping and initialising OpenBLAS costs about 4 ms and 140 page faults
 * per process on the development VM, more than a `wobble perturb` of a
 * small image takes.
 */
#include "blas.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef WOBBLE_OPENBLAS_PATH
#define WOBBLE_OPENBLAS_PATH "libopenblas.so.0"
#endif

static struct {
    void (*sgemm)(enum CBLAS_ORDER, enum CBLAS_TRANSPOSE, enum CBLAS_TRANSPOSE, int, int, int, float, const float *,
                  int, const float *, int, float, float *, int);
    void (*dgemm)(enum CBLAS_ORDER, enum CBLAS_TRANSPOSE, enum CBLAS_TRANSPOSE, int, int, int, double,
                  const double *, int, const double *, int, double, double *, int);
    void (*dsyrk)(enum CBLAS_ORDER, enum CBLAS_UPLO, enum CBLAS_TRANSPOSE, int, int, double, const double *, int,
                  double, double *, int);
    void (*threads)(int);
    int loaded;
    char err[600];
} api;
static pthread_once_t api_once = PTHREAD_ONCE_INIT;

static void api_load(void) {
    const char *env = getenv("WOBBLE_OPENBLAS_LIB");
    const char *cand[] = {env && *env ? env : NULL, env && *env ? NULL : WOBBLE_OPENBLAS_PATH,
                          env && *env ? NULL : "libopenblas.so.0"};
    void *h = core_dlopen_first(cand, (int)(sizeof cand / sizeof cand[0]), RTLD_NOW | RTLD_LOCAL,
                                "cannot load OpenBLAS", api.err, sizeof api.err);
    if (!h) return;
    *(void **)&api.sgemm = dlsym(h, "cblas_sgemm");
    *(void **)&api.dgemm = dlsym(h, "cblas_dgemm");
    *(void **)&api.dsyrk = dlsym(h, "cblas_dsyrk");
    *(void **)&api.threads = dlsym(h, "openblas_set_num_threads");
    if (!api.sgemm || !api.dgemm || !api.dsyrk || !api.threads) {
        snprintf(api.err, sizeof api.err, "cannot load OpenBLAS: the library loaded lacks cblas_sgemm, cblas_dgemm, "
                                          "cblas_dsyrk or openblas_set_num_threads");
        api.sgemm = NULL, api.dgemm = NULL, api.dsyrk = NULL, api.threads = NULL;
        dlclose(h);
        return;
    }
    api.loaded = 1;
}

static int api_ready(void) {
    pthread_once(&api_once, api_load);
    return api.loaded;
}

int core_blas_load(wobble_ctx *ctx) {
    return api_ready() ? WOBBLE_OK : core_seterr(ctx, WOBBLE_EIO, "%s", api.err);
}

void core_blas_threads(int n) {
    if (api_ready()) api.threads(n);
}

/* the fallbacks: op(X)[i][j] of a row-major X with leading dimension ld */
#define AT(x, ld, tr, i, j) ((tr) == CblasNoTrans ? (x)[(size_t)(i) * (ld) + (j)] : (x)[(size_t)(j) * (ld) + (i)])

void core_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m, int n, int k,
                float alpha, const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    if (api_ready()) {
        api.sgemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int p = 0; p < k; p++) s += (double)AT(a, lda, ta, i, p) * AT(b, ldb, tb, p, j);
            float *o = c + (size_t)i * ldc + j;
            *o = (float)(alpha * s + (beta == 0.0f ? 0.0 : (double)beta * *o));
        }
}

void core_dgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m, int n, int k,
                double alpha, const double *a, int lda, const double *b, int ldb, double beta, double *c, int ldc) {
    if (api_ready()) {
        api.dgemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int p = 0; p < k; p++) s += AT(a, lda, ta, i, p) * AT(b, ldb, tb, p, j);
            double *o = c + (size_t)i * ldc + j;
            *o = alpha * s + (beta == 0.0 ? 0.0 : beta * *o);
        }
}

void core_dsyrk(enum CBLAS_ORDER order, enum CBLAS_UPLO uplo, enum CBLAS_TRANSPOSE t, int n, int k, double alpha,
                const double *a, int lda, double beta, double *c, int ldc) {
    if (api_ready()) {
        api.dsyrk(order, uplo, t, n, k, alpha, a, lda, beta, c, ldc);
        return;
    }
    /* C = alpha op(A) op(A)^T + beta C on the uplo triangle */
    for (int i = 0; i < n; i++)
        for (int j = uplo == CblasUpper ? i : 0; j < (uplo == CblasUpper ? n : i + 1); j++) {
            double s = 0;
            for (int p = 0; p < k; p++) s += AT(a, lda, t, i, p) * AT(a, lda, t, j, p);
            double *o = c + (size_t)i * ldc + j;
            *o = alpha * s + (beta == 0.0 ? 0.0 : beta * *o);
        }
}
