/*
 * Minimum enclosing ball timing: for each .npy file of points given, the
 * median time of wobble_meb_f64 over repeated calls, the radius and solver
 * statistics, one JSON object per line. bench/meb runs it beside SciPy.
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

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    wobble_ctx *ctx;
    wobble_ctx_create(NULL, &ctx);
    for (int f = 1; f < argc; f++) {
        wobble_array a;
        if (wobble_npy_read(ctx, argv[f], &a) != WOBBLE_OK || a.dtype != 'd' || a.ndim != 2) {
            fprintf(stderr, "bench_meb: %s: %s\n", argv[f], wobble_last_error(ctx));
            return 1;
        }
        const int n = (int)a.shape[0], d = (int)a.shape[1];
        double r = 0, t[101];
        wobble_meb_info info;
        int reps = n * d > 200000 ? 5 : 101;
        for (int k = 0; k < reps; k++) {
            double t0 = now_s();
            wobble_meb_f64(ctx, a.data, n, d, &r, NULL, &info);
            t[k] = now_s() - t0;
        }
        qsort(t, reps, sizeof(double), cmp);
        printf("{\"file\": \"%s\", \"n\": %d, \"d\": %d, \"radius\": %.17g, \"median_ms\": %.4f, \"iterations\": %d, "
               "\"polish\": %d, \"support\": %d}\n",
               argv[f], n, d, r, t[reps / 2] * 1e3, info.iterations, info.polish_steps, info.support);
        wobble_array_release(&a);
    }
    wobble_ctx_free(ctx);
    return 0;
}
