/*
 * Times each ImageNet-C corruption at one severity on the given images (in
 * memory, read once) and prints one JSON object per line:
 * {"op": ..., "ms_per_image": ...}, the best of R passes over the images.
 * bench/corrupt runs this beside imagecorruptions and prints ratios.
 *
 * --threads 1 runs the images one after another on one thread; N > 1 (0:
 * all cores) runs them in parallel on N threads, each with a one-thread
 * context of its own, as `wobble perturb` does with a folder.
 *
 * usage: bench_corrupt [--threads N] [--repeat R] [--severity S] [--only NAME] IMAGE...
 */
#include "wobble.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef _OPENMP
#include <omp.h>
#endif

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int threads = 0, repeat = 3, severity = 3, first = 1;
    const char *only = NULL;
    while (first + 1 < argc && argv[first][0] == '-') {
        if (!strcmp(argv[first], "--threads"))
            threads = atoi(argv[first + 1]);
        else if (!strcmp(argv[first], "--repeat"))
            repeat = atoi(argv[first + 1]);
        else if (!strcmp(argv[first], "--severity"))
            severity = atoi(argv[first + 1]);
        else if (!strcmp(argv[first], "--only"))
            only = argv[first + 1];
        else
            break;
        first += 2;
    }
    const int n = argc - first;
    if (n <= 0 || repeat < 1) {
        fprintf(stderr, "usage: bench_corrupt [--threads N] [--repeat R] [--severity S] [--only NAME] IMAGE...\n");
        return 2;
    }
    wobble_ctx_params cp = wobble_ctx_default_params();
    cp.threads = threads;
    wobble_ctx *ctx = NULL;
    if (wobble_ctx_create(&cp, &ctx) != WOBBLE_OK) return 1;
    const int nt = wobble_ctx_threads(ctx);
    wobble_image **imgs = calloc((size_t)n, sizeof *imgs);
    wobble_ctx **tcs = calloc((size_t)nt, sizeof *tcs);
    if (!imgs || !tcs) return 1;
    for (int i = 0; i < n; i++)
        if (wobble_image_read(ctx, argv[first + i], &imgs[i]) != WOBBLE_OK) {
            fprintf(stderr, "bench_corrupt: %s\n", wobble_last_error(ctx));
            return 1;
        }
    cp.threads = 1; /* one context per worker, images in parallel */
    for (int t = 0; t < nt; t++)
        if (wobble_ctx_create(&cp, &tcs[t]) != WOBBLE_OK) return 1;
    for (int o = 0; o < wobble_op_count(); o++) {
        const wobble_op_info *op = wobble_op_at(o);
        if (!op->suite || (only && strcmp(op->name + strlen("imagenet_c."), only))) continue;
        double best = 1e30;
        for (int r = 0; r < repeat; r++) {
            int failed = 0;
            const double t0 = now_s();
#pragma omp parallel for num_threads(nt) schedule(dynamic) reduction(|| : failed)
            for (int i = 0; i < n; i++) {
#ifdef _OPENMP
                wobble_ctx *tc = tcs[omp_get_thread_num()];
#else
                wobble_ctx *tc = tcs[0];
#endif
                wobble_perturb_params pp = wobble_perturb_default_params();
                pp.seed = (uint64_t)i;
                pp.exact_seed = 1;
                wobble_image *out = NULL;
                if (wobble_perturb(tc, op->name, imgs[i], severity, &pp, &out) != WOBBLE_OK) {
#pragma omp critical
                    fprintf(stderr, "bench_corrupt: %s\n", wobble_last_error(tc));
                    failed = 1;
                }
                wobble_image_free(out);
            }
            if (failed) return 1;
            const double t = now_s() - t0;
            best = t < best ? t : best;
        }
        printf("{\"op\": \"%s\", \"ms_per_image\": %.4f}\n", op->name + strlen("imagenet_c."), 1e3 * best / n);
    }
    for (int t = 0; t < nt; t++) wobble_ctx_free(tcs[t]);
    free(tcs);
    for (int i = 0; i < n; i++) wobble_image_free(imgs[i]);
    free(imgs);
    wobble_ctx_free(ctx);
    return 0;
}
