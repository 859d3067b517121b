/* One fine-tuning training step (forward of clean + perturbed images, loss,
 * backward, clipping, AdamW) timed on random inputs; prints JSON for
 * bench/finetune. usage: bench_finetune --model M [--batch B] [--threads N]
 * [--steps S] [--recompute] [--scope all|last:N|norms] */
#include "wobble.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

int main(int argc, char **argv) {
    const char *model = NULL, *scope = "all";
    int batch = 16, threads = 0, steps = 5, recompute = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--scope") && i + 1 < argc) scope = argv[++i];
        else if (!strcmp(argv[i], "--recompute")) recompute = 1;
        else {
            fprintf(stderr, "usage: bench_finetune --model M [--batch B] [--threads N] [--steps S] [--recompute] [--scope S]\n");
            return 2;
        }
    }
    if (!model || batch < 1 || steps < 1) return 2;
    wobble_ctx_params cp = wobble_ctx_default_params();
    cp.threads = threads;
    wobble_ctx *ctx;
    wobble_ctx_create(&cp, &ctx);
    const double base = rss_mb();
    wobble_model *m = NULL;
    if (wobble_model_load(ctx, model, NULL, &m)) {
        fprintf(stderr, "%s\n", wobble_last_error(ctx));
        return 1;
    }
    wobble_model_info info;
    wobble_model_get_info(m, &info);
    const int H = info.crop_h ? info.crop_h : info.resize_h, W = info.crop_w ? info.crop_w : info.resize_w;
    const int E = info.embed_dim;
    const size_t per = (size_t)3 * H * W;
    float *x = malloc(sizeof(float) * per * batch), *xp = malloc(sizeof(float) * per * batch);
    float *tg = malloc(sizeof(float) * (size_t)E * batch);
    uint64_t s = 88172645463325252ull;
    for (size_t i = 0; i < per * batch; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        x[i] = (float)((s >> 40) * (1.0 / 16777216.0) * 2 - 1);
        xp[i] = x[i] * 0.9f;
    }
    wobble_model_forward(ctx, m, x, batch, H, W, NULL, tg, NULL); /* frozen targets */
    const double loaded = rss_mb();
    wobble_tune_params tp = wobble_tune_default_params();
    tp.checkpoint = recompute;
    if (!strcmp(scope, "norms")) tp.scope = WOBBLE_SCOPE_NORMS;
    else if (!strncmp(scope, "last:", 5)) tp.scope = WOBBLE_SCOPE_LAST, tp.last_blocks = atoi(scope + 5);
    wobble_tuner *t = NULL;
    if (wobble_tuner_create(ctx, m, &tp, &t)) {
        fprintf(stderr, "%s\n", wobble_last_error(ctx));
        return 1;
    }
    double best = 1e30, total = 0;
    wobble_loss L = {0, 0, 0};
    for (int k = 0; k <= steps; k++) { /* step 0 warms up (allocations) */
        const double t0 = now_s();
        wobble_tuner_zero_grad(t);
        if (wobble_tuner_loss_grad(ctx, t, x, xp, tg, batch, H, W, &tp, &L, NULL, NULL)) {
            fprintf(stderr, "%s\n", wobble_last_error(ctx));
            return 1;
        }
        const double gn = wobble_tuner_grad_norm(t);
        if (gn > 1.0) wobble_tuner_scale_grad(t, 1.0 / gn);
        wobble_tuner_adamw_step(t, 1e-5, &tp);
        const double dt = now_s() - t0;
        if (k) {
            total += dt;
            if (dt < best) best = dt;
        }
    }
    printf("{\"model\": \"%s\", \"preset\": \"%s\", \"batch\": %d, \"threads\": %d, \"recompute\": %d, \"scope\": \"%s\", "
           "\"trainable\": %zu, \"s_per_step\": %.4f, \"best_s_per_step\": %.4f, \"images_per_s\": %.3f, "
           "\"loss\": %.6f, \"base_rss_mb\": %.1f, \"loaded_rss_mb\": %.1f, \"peak_rss_mb\": %.1f}\n",
           model, info.preset, batch, wobble_ctx_threads(ctx), recompute, scope, wobble_tuner_num_trainable(t),
           total / steps, best, batch * steps / total, L.total, base, loaded, rss_mb());
    wobble_tuner_free(t);
    wobble_model_free(m);
    free(x), free(xp), free(tg);
    wobble_ctx_free(ctx);
    return 0;
}
