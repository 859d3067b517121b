/*
 * Encoder throughput of wobble on one model: images/s for a batch size,
 * achieved GFLOP/s (forward FLOPs counted from the architecture), the
 * OpenBLAS sgemm GFLOP/s of a large square product on the same machine (and
 * that of wobble's own fp32 kernel, which the fp32 forward pass uses on
 * AVX-512 CPUs; bf16: its bf16 kernel), and peak memory. Prints one JSON object. bench/embed runs it beside PyTorch.
 *
 * usage: bench_embed --model M [--batch B] [--threads T] [--seconds S] [--size HxW] [--precision fp32|bf16]
 */
#include "wobble.h"
#include "../src/model/gemm_f32.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double sgemm_gflops(int n, int threads) {
    extern void openblas_set_num_threads(int);
    openblas_set_num_threads(threads);
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n);
    for (int i = 0; i < n * n; i++) a[i] = b[i] = (float)(i % 7) * 0.1f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1, a, n, b, n, 0, c, n);
    double best = 0;
    for (int r = 0; r < 5; r++) {
        double t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        double g = 2.0 * n * n * (double)n / (now_s() - t0) / 1e9;
        if (g > best) best = g;
    }
    free(a);
    free(b);
    free(c);
    return best;
}

/* wobble's own kernel on the same product (0 where it does not run): fp32,
 * or bf16 with the per-call rounding of A. */
static double kernel_gflops(int n, int threads, int bf16) {
    if (bf16 ? !model_bf16_supported() : !model_f32_kernel_supported()) return 0;
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n);
    uint16_t *s = aligned_alloc(64, (model_bf16_scratch_elems(n, n) * 2 + 63) & ~(size_t)63);
    for (int i = 0; i < n * n; i++) a[i] = b[i] = (float)(i % 7) * 0.1f;
    model_f32_packed F = {0};
    model_bf16_packed P = {0};
    if (bf16 ? model_bf16_pack_dense(&P, b, n, n) : model_f32_pack_dense(&F, b, n, n)) return 0;
    double best = 0;
    for (int r = 0; r < 6; r++) {
        double t0 = now_s();
        if (bf16)
            model_bf16_gemm(a, n, n, &P, NULL, 0, c, n, s, threads);
        else
            model_f32_gemm(a, n, n, &F, NULL, 0, c, n, threads);
        double g = 2.0 * n * n * (double)n / (now_s() - t0) / 1e9;
        if (r && g > best) best = g; /* the first run warms up */
    }
    model_f32_free(&F);
    model_bf16_free(&P);
    free(a), free(b), free(c), free(s);
    return best;
}

int main(int argc, char **argv) {
    const char *model = NULL;
    int batch = 1, threads = 0, H = 0, W = 0, prec = WOBBLE_PRECISION_FP32, cuda = -1, tf32 = 0;
    double seconds = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) model = argv[i + 1];
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--size")) sscanf(argv[i + 1], "%dx%d", &H, &W);
        else if (!strcmp(argv[i], "--precision")) prec = wobble_precision_parse(argv[i + 1]);
        else if (!strcmp(argv[i], "--device")) cuda = !strcmp(argv[i + 1], "cpu") ? -1
                                                    : !strncmp(argv[i + 1], "cuda:", 5) ? atoi(argv[i + 1] + 5) : 0;
        else if (!strcmp(argv[i], "--tf32")) tf32 = atoi(argv[i + 1]);
    }
    if (!model || prec < 0) {
        fprintf(stderr, "usage: bench_embed --model M [--batch B] [--threads T] [--seconds S] [--size HxW] "
                        "[--precision fp32|bf16] [--device cpu|cuda[:N]] [--tf32 0|1]\n");
        return 2;
    }
    double base_kb = 0; /* RSS before anything is loaded: code and libraries */
    {
        FILE *st0 = fopen("/proc/self/status", "r");
        char l0[256];
        while (st0 && fgets(l0, sizeof l0, st0))
            if (!strncmp(l0, "VmRSS:", 6)) base_kb = atof(l0 + 6);
        if (st0) fclose(st0);
    }
    wobble_ctx_params cp = wobble_ctx_default_params();
    cp.threads = threads;
    wobble_ctx *ctx;
    wobble_ctx_create(&cp, &ctx);
    wobble_model_params mp = wobble_model_default_params();
    mp.max_batch = batch;
    mp.precision = (wobble_precision)prec;
    if (cuda >= 0) {
        mp.device = WOBBLE_DEVICE_CUDA;
        mp.device_index = cuda;
        mp.tf32 = tf32;
    }
    wobble_model *m;
    if (wobble_model_load(ctx, model, &mp, &m) != WOBBLE_OK) {
        fprintf(stderr, "bench_embed: %s\n", wobble_last_error(ctx));
        return 1;
    }
    wobble_model_info in;
    wobble_model_get_info(m, &in);
    if (!H) H = in.crop_h ? in.crop_h : in.resize_h;
    if (!W) W = in.crop_w ? in.crop_w : in.resize_w;
    const size_t per = (size_t)3 * H * W;
    float *px = malloc(sizeof(float) * per * batch), *emb = malloc(sizeof(float) * batch * in.embed_dim);
    srand(1);
    for (size_t i = 0; i < per * batch; i++) px[i] = (float)((double)rand() / RAND_MAX * 4 - 2);
    /* FLOPs per image */
    const double P = in.patch, np = (double)(H / in.patch) * (W / in.patch), T = 1 + in.registers + np;
    const double D = in.width, Hd = in.mlp_hidden;
    const double mlp = !strcmp(in.activation, "swiglu") ? 2 * T * D * 2 * Hd + 2 * T * Hd * D : 4 * T * D * Hd;
    const double flops = 2 * np * 3 * P * P * D + in.depth * (2 * T * D * 3 * D + 2 * T * D * D + mlp + 4 * T * T * D) +
                         (in.has_projection ? 2 * D * in.embed_dim : 0);
    wobble_model_forward(ctx, m, px, batch, H, W, NULL, emb, NULL); /* warm-up */
    wobble_model_get_info(m, &in);
    const double gpu0 = in.device_seconds;
    int iters = 0;
    double t0 = now_s(), el = 0;
    while (el < seconds || iters < 3) {
        if (wobble_model_forward(ctx, m, px, batch, H, W, NULL, emb, NULL) != WOBBLE_OK) {
            fprintf(stderr, "bench_embed: %s\n", wobble_last_error(ctx));
            return 1;
        }
        iters++;
        el = now_s() - t0;
    }
    const double ips = iters * batch / el;
    wobble_model_get_info(m, &in);
    const double gpu_busy = (in.device_seconds - gpu0) / el; /* share of the time the GPU computed */
    /* peak RSS from /proc: getrusage's ru_maxrss survives exec and would
     * report the parent's (e.g. a Python process with PyTorch loaded) */
    double hwm_kb = 0;
    FILE *st = fopen("/proc/self/status", "r");
    char line[256];
    while (st && fgets(line, sizeof line, st))
        if (!strncmp(line, "VmHWM:", 6)) hwm_kb = atof(line + 6);
    if (st) fclose(st);
    const int on_gpu = strcmp(in.device, "cpu") != 0;
    const double sg = on_gpu ? 0 : sgemm_gflops(2048, wobble_ctx_threads(ctx));
    const double kg = on_gpu ? 0 : kernel_gflops(2048, wobble_ctx_threads(ctx), prec == WOBBLE_PRECISION_BF16);
    printf("{\"images_per_s\": %.3f, \"gflops\": %.2f, \"sgemm_gflops\": %.2f, \"kernel_gflops\": %.2f, "
           "\"gflop_per_image\": %.4f, "
           "\"peak_rss_mb\": %.1f, \"base_rss_mb\": %.1f, \"input_mb\": %.1f, \"weights_mb\": %.1f, "
           "\"arena_mb\": %.1f, \"threads\": %d, \"batch\": %d, \"device\": \"%s\", \"gpu_busy\": %.3f, "
           "\"device_mb\": %.1f}\n",
           ips, ips * flops / 1e9, sg, kg, flops / 1e9, hwm_kb / 1024.0, base_kb / 1024.0, per * batch * 4.0 / 1048576.0, in.weight_bytes / 1048576.0,
           in.arena_bytes / 1048576.0, wobble_ctx_threads(ctx), batch, in.device, gpu_busy,
           in.device_bytes / 1048576.0);
    wobble_model_free(m);
    wobble_ctx_free(ctx);
    free(px);
    free(emb);
    return 0;
}
