/*
 * Downstream classifier timing on saved embeddings (the train_/test_
 * embeddings.npy and labels.npy that wobble eval --task writes): the linear
 * probe with the default lambda choice (and at one given lambda), and kNN
 * queries per second. One JSON object on stdout. bench/probe runs it beside
 * scikit-learn, NumPy and PyTorch.
 *
 * usage: bench_probe TRAIN_X TRAIN_Y TEST_X TEST_Y [LAMBDA]
 */
#include "wobble.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double top1(const float *s, const int *y, int n, int C) {
    int ok = 0;
    for (int i = 0; i < n; i++) {
        int a = 0;
        for (int c = 1; c < C; c++)
            if (s[(size_t)i * C + c] > s[(size_t)i * C + a]) a = c;
        ok += a == y[i];
    }
    return (double)ok / n;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: bench_probe TRAIN_X TRAIN_Y TEST_X TEST_Y [LAMBDA]\n");
        return 2;
    }
    wobble_ctx *ctx;
    wobble_ctx_create(NULL, &ctx);
    wobble_array a[4];
    for (int i = 0; i < 4; i++)
        if (wobble_npy_read(ctx, argv[1 + i], &a[i]) != WOBBLE_OK) {
            fprintf(stderr, "bench_probe: %s\n", wobble_last_error(ctx));
            return 1;
        }
    const int n = (int)a[0].shape[0], d = (int)a[0].shape[1], nt = (int)a[2].shape[0];
    const int *y = a[1].data, *yt = a[3].data;
    int C = 0;
    for (int i = 0; i < n; i++) C = y[i] + 1 > C ? y[i] + 1 : C;
    float *s = malloc(sizeof(float) * (size_t)nt * C);
    wobble_classifier *clf = NULL;
    wobble_classifier_info info;
    /* default: lambda chosen on the held-out split, refitted */
    double t0 = now_s();
    if (wobble_classifier_linear(ctx, a[0].data, y, n, d, C, NULL, &clf) != WOBBLE_OK) {
        fprintf(stderr, "bench_probe: %s\n", wobble_last_error(ctx));
        return 1;
    }
    const double t_grid = now_s() - t0;
    wobble_classifier_get_info(clf, &info);
    wobble_classifier_scores(ctx, clf, a[2].data, nt, s);
    const double acc_grid = top1(s, yt, nt, C), lam = info.l2;
    const int it_grid = info.iterations;
    wobble_classifier_free(clf);
    /* one lambda */
    double one = argc > 5 ? atof(argv[5]) : lam;
    wobble_probe_params pp = wobble_probe_default_params();
    pp.l2_grid = &one;
    pp.n_l2 = 1;
    t0 = now_s();
    wobble_classifier_linear(ctx, a[0].data, y, n, d, C, &pp, &clf);
    const double t_one = now_s() - t0;
    wobble_classifier_get_info(clf, &info);
    wobble_classifier_scores(ctx, clf, a[2].data, nt, s);
    const double acc_one = top1(s, yt, nt, C);
    wobble_classifier_free(clf);
    /* kNN: best of 3 passes over the test queries */
    wobble_classifier_knn(ctx, a[0].data, y, n, d, C, NULL, &clf);
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        t0 = now_s();
        wobble_classifier_scores(ctx, clf, a[2].data, nt, s);
        const double t = now_s() - t0;
        best = t < best ? t : best;
    }
    const double acc_knn = top1(s, yt, nt, C);
    wobble_classifier_free(clf);
    printf("{\"n\": %d, \"d\": %d, \"classes\": %d, \"test\": %d, \"threads\": %d, "
           "\"linear_grid\": {\"seconds\": %.4f, \"l2\": %.6g, \"top1\": %.6f, \"final_iterations\": %d}, "
           "\"linear_one\": {\"seconds\": %.4f, \"l2\": %.6g, \"top1\": %.6f, \"iterations\": %d}, "
           "\"knn\": {\"queries_per_s\": %.1f, \"top1\": %.6f}}\n",
           n, d, C, nt, wobble_ctx_threads(ctx), t_grid, lam, acc_grid, it_grid, t_one, one, acc_one, info.iterations,
           nt / best, acc_knn);
    for (int i = 0; i < 4; i++) wobble_array_release(&a[i]);
    free(s);
    wobble_ctx_free(ctx);
    return 0;
}
