/*
 * OpenBLAS, loaded the first time something asks for it (src/core/blas.c),
 * so that the commands that never multiply matrices (perturb, ops, report,
 * ...) do not pay for mapping and initialising it at every start.
 *
 * The entry points that reach a BLAS call first call core_blas_load, which
 * returns WOBBLE_OK or sets the context's error (naming the library and
 * why it could not be loaded). core_sgemm, core_dgemm and core_dsyrk take
 * CBLAS's arguments; row-major only. Called without a successful load
 * (never, when the entry points check), they compute the same product with
 * plain loops rather than call through a missing pointer.
 */
#ifndef WOBBLE_CORE_BLAS_H
#define WOBBLE_CORE_BLAS_H

#include "internal.h"

#include <cblas.h> /* the enums; the functions are reached through blas.c */

int core_blas_load(wobble_ctx *ctx);
/* openblas_set_num_threads (a no-op until loaded) */
void core_blas_threads(int n);
void core_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m, int n, int k,
                float alpha, const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
void core_dgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m, int n, int k,
                double alpha, const double *a, int lda, const double *b, int ldb, double beta, double *c, int ldc);
void core_dsyrk(enum CBLAS_ORDER order, enum CBLAS_UPLO uplo, enum CBLAS_TRANSPOSE t, int n, int k, double alpha,
                const double *a, int lda, double beta, double *c, int ldc);

#endif
