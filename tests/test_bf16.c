/*
 * How far --precision bf16 moves what wobble measures, on the real ViT-Ti/16
 * of ../shared/models and the 24 Kodak photos (the demo's job):
 *   - embeddings: min over the photos of cos(bf16, fp32) >= 0.999;
 *   - robustness: wobble eval with all nine operations at their default
 *     grids, seed 1 (as `make demo`): per operation, the dataset means of
 *     R_div in bf16 and fp32 differ by at most 0.005.
 * Prints the measured figures (docs/models.md quotes them). Skips (77) when
 * the shared model or data is absent or the CPU has no AVX512_BF16. Under
 * AddressSanitizer the eval part runs on the first 4 photos only (the full
 * demo takes over ten minutes there); the Release build runs all 24.
 */
#include "testutil.h"

#include <jansson.h>
#include <math.h>

#if defined(__SANITIZE_ADDRESS__)
#define EVAL_LIMIT 4
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EVAL_LIMIT 4
#endif
#endif
#ifndef EVAL_LIMIT
#define EVAL_LIMIT 0 /* all */
#endif

static const char *ops_of(json_t *s, size_t i, double *rdiv, double *rcos) {
    json_t *o = json_array_get(json_object_get(s, "ops"), i);
    json_t *m = json_object_get(o, "metrics");
    *rdiv = json_real_value(json_object_get(json_object_get(m, "R_div"), "mean"));
    *rcos = json_real_value(json_object_get(json_object_get(m, "R_cos"), "mean"));
    return json_string_value(json_object_get(o, "op"));
}

int main(void) {
    char model[1024], kodak[1024];
    snprintf(model, sizeof model, "%s/models/vit-tiny-patch16-224-tin", t_shared_dir());
    snprintf(kodak, sizeof kodak, "%s/data/kodak", t_shared_dir());
    if (access(model, F_OK) != 0 || access(kodak, F_OK) != 0) {
        printf("skipped: %s or %s is absent\n", model, kodak);
        return 77;
    }
    if (!wobble_bf16_supported()) {
        printf("skipped: this CPU has no AVX512_BF16\n");
        return 77;
    }
    wobble_ctx *ctx = NULL;
    CHECK(wobble_ctx_create(NULL, &ctx) == WOBBLE_OK, "context");
    wobble_model *m[2] = {NULL, NULL};
    for (int p = 0; p < 2; p++) {
        wobble_model_params mp = wobble_model_default_params();
        mp.precision = p ? WOBBLE_PRECISION_BF16 : WOBBLE_PRECISION_FP32;
        CHECK(wobble_model_load(ctx, model, &mp, &m[p]) == WOBBLE_OK, "%s", wobble_last_error(ctx));
        if (!m[p]) return t_finish();
    }
    wobble_model_info info;
    wobble_model_get_info(m[1], &info);
    CHECK(!strcmp(info.precision, "bf16") && info.bf16_bytes > 0, "info: precision %s, %llu bf16 bytes",
          info.precision, (unsigned long long)info.bf16_bytes);

    /* embeddings */
    wobble_dataset *ds = NULL;
    CHECK(wobble_dataset_open(ctx, kodak, NULL, &ds) == WOBBLE_OK, "%s", wobble_last_error(ctx));
    if (!ds) return t_finish();
    const int n = wobble_dataset_size(ds), E = wobble_model_embed_dim(m[0]);
    CHECK(n == 24, "%d Kodak photos", n);
    wobble_image **im = calloc((size_t)n, sizeof *im);
    for (int i = 0; i < n; i++) CHECK(wobble_dataset_load(ctx, ds, i, &im[i]) == WOBBLE_OK, "%s", wobble_last_error(ctx));
    float *e[2];
    for (int p = 0; p < 2; p++) {
        e[p] = malloc(sizeof(float) * (size_t)n * E);
        CHECK(wobble_model_embed(ctx, m[p], (const wobble_image *const *)im, n, NULL, e[p]) == WOBBLE_OK, "%s",
              wobble_last_error(ctx));
    }
    double min_cos = 1, max_abs = 0;
    for (int i = 0; i < n; i++) {
        double d = 0, a = 0, b = 0;
        for (int j = 0; j < E; j++) {
            const double x = e[0][(size_t)i * E + j], y = e[1][(size_t)i * E + j];
            d += x * y, a += x * x, b += y * y;
            if (fabs(x - y) > max_abs) max_abs = fabs(x - y);
        }
        const double c = d / sqrt(a * b);
        if (c < min_cos) min_cos = c;
    }
    printf("Kodak embeddings, bf16 vs fp32: min cos %.6f, max-abs %.3g\n", min_cos, max_abs);
    CHECK(min_cos >= 0.999, "min cos(bf16, fp32) %.6f < 0.999", min_cos);
    CHECK(max_abs > 0, "bf16 gave the fp32 embeddings bit for bit: it did not run");

    /* robustness: the demo's eval in both precisions */
    wobble_dataset *eds = ds;
    if (EVAL_LIMIT) {
        wobble_dataset_params dp = wobble_dataset_default_params();
        dp.limit = EVAL_LIMIT;
        CHECK(wobble_dataset_open(ctx, kodak, &dp, &eds) == WOBBLE_OK, "%s", wobble_last_error(ctx));
        printf("eval on the first %d photos (sanitizer build)\n", EVAL_LIMIT);
    }
    char tmp[512], out[2][700];
    CHECK(t_mkdtemp(tmp, sizeof tmp, "wobble_bf16") != NULL, "temp dir");
    json_t *s[2] = {NULL, NULL};
    wobble_eval_op ops[16];
    int n_ops = 0;
    for (int o = 0; o < wobble_op_count() && n_ops < 16; o++) {
        const wobble_op_info *oi = wobble_op_at(o);
        if (oi->suite) continue; /* the demo's nine editing ops */
        ops[n_ops++] = (wobble_eval_op){oi->name, oi->grid, oi->grid_len};
    }
    for (int p = 0; p < 2; p++) {
        snprintf(out[p], sizeof out[p], "%s/%s", tmp, p ? "bf16" : "fp32");
        wobble_eval_params ep = wobble_eval_default_params();
        ep.seed = 1;
        ep.ops = ops;
        ep.n_ops = n_ops;
        wobble_eval_summary sum;
        CHECK(wobble_eval_run(ctx, m[p], eds, &ep, out[p], &sum) == WOBBLE_OK, "%s", wobble_last_error(ctx));
        char sp[800];
        snprintf(sp, sizeof sp, "%s/summary.json", out[p]);
        json_error_t je;
        s[p] = json_load_file(sp, 0, &je);
        CHECK(s[p] != NULL, "%s: %s", sp, je.text);
        printf("eval %s: %.1f s forward, %.1f s in all\n", p ? "bf16" : "fp32", sum.t_forward, sum.t_total);
    }
    if (s[0] && s[1]) {
        const size_t nops = json_array_size(json_object_get(s[0], "ops"));
        CHECK(nops == 9 && json_array_size(json_object_get(s[1], "ops")) == nops, "nine operations");
        double worst = 0;
        printf("%-16s %10s %10s %9s %10s\n", "op", "R_div fp32", "R_div bf16", "diff", "R_cos diff");
        for (size_t i = 0; i < nops; i++) {
            double r0, r1, c0, c1;
            const char *name = ops_of(s[0], i, &r0, &c0);
            const char *name1 = ops_of(s[1], i, &r1, &c1);
            CHECK(name && name1 && !strcmp(name, name1), "same op order");
            printf("%-16s %10.5f %10.5f %+9.5f %+10.6f\n", name, r0, r1, r1 - r0, c1 - c0);
            CHECK(fabs(r1 - r0) <= 0.005, "%s: R_div mean fp32 %.5f, bf16 %.5f", name, r0, r1);
            if (fabs(r1 - r0) > worst) worst = fabs(r1 - r0);
        }
        printf("largest |R_div mean difference|: %.5f (asked <= 0.005)\n", worst);
    }
    json_decref(s[0]);
    json_decref(s[1]);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0, "cleanup");
    for (int i = 0; i < n; i++) wobble_image_free(im[i]);
    free(im);
    free(e[0]);
    free(e[1]);
    if (eds != ds) wobble_dataset_free(eds);
    wobble_dataset_free(ds);
    wobble_model_free(m[0]);
    wobble_model_free(m[1]);
    wobble_ctx_free(ctx);
    return t_finish();
}
