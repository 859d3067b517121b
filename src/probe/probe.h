/* Classifiers on embeddings (internal). */
#ifndef WOBBLE_PROBE_H
#define WOBBLE_PROBE_H
#include "../core/internal.h"

typedef struct {
    int d, C;
    double *mu, *sd;   /* standardisation [d] */
    double *theta;     /* W [C, d] then b [C], on standardised features */
    double lambda, loss, grad_norm;
    int iterations, converged;
    double *holdout_acc; /* [n_l2], in the caller's grid order (0 when no split) */
    int n_l2, holdout_n;
} probe_linear;

/* Stratified held-out split: per class, the items ordered by
 * core_splitmix64(seed ^ core_splitmix64(index)) (ties by index) and the first
 * max(1, min(m - 1, round(frac * m))) held out (classes with m < 2: none). */
int probe_split(const int *y, int n, int C, double frac, uint64_t seed, uint8_t *held);
/* Parameter checks, shared by the classifiers and by the downstream pipeline
 * (which runs them before embedding anything). */
int probe_check_linear(wobble_ctx *ctx, const wobble_probe_params *p);
int probe_check_knn(wobble_ctx *ctx, const wobble_knn_params *p);
int probe_linear_fit(wobble_ctx *ctx, const float *X, const int *y, int n, int d, int C, const wobble_probe_params *p,
                     probe_linear *out);
/* 0, or -1 out of memory */
int probe_linear_scores(const probe_linear *L, const float *X, int n, float *scores);
void probe_linear_free(probe_linear *L);
#endif
