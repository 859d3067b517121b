/* Backward pass against central finite differences on tiny random towers
 * (every parameter tensor and the input, both objectives), and checkpointed
 * (recomputed) gradients against stored-activation ones, bit for bit. */
#include "testutil.h"

#include <jansson.h>
#include <math.h>

static uint64_t rng = 0x1234567ull;
static double urand(void) { /* [-1, 1) */
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return ((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0 - 1.0;
}

typedef struct {
    wobble_ctx *ctx;
    wobble_tuner *t;
    float *x, *xp, *tg;
    int n, H, W;
    wobble_tune_params tp;
} prob;

static double loss_at(prob *p) {
    wobble_loss L;
    wobble_tuner_zero_grad(p->t);
    int rc = wobble_tuner_loss_grad(p->ctx, p->t, p->x, p->xp, p->tg, p->n, p->H, p->W, &p->tp, &L, NULL, NULL);
    CHECK(rc == WOBBLE_OK, "loss: %s", wobble_last_error(p->ctx));
    return L.total;
}

/* directional derivative of the loss along v (scaled to the values) vs g . v */
static void fd_check(prob *p, const char *what, float *data, const float *grad, size_t n, double *worst) {
    double scale = 0;
    for (size_t i = 0; i < n; i++) scale += (double)data[i] * data[i];
    scale = sqrt(scale / n) + 0.05;
    float *v = malloc(sizeof(float) * n), *orig = malloc(sizeof(float) * n);
    memcpy(orig, data, sizeof(float) * n);
    double an = 0;
    for (size_t i = 0; i < n; i++) {
        v[i] = (float)(urand() * scale);
        an += (double)grad[i] * v[i];
    }
    const double h = 1e-2;
    for (size_t i = 0; i < n; i++) data[i] = orig[i] + (float)(h * v[i]);
    const double lp = loss_at(p);
    for (size_t i = 0; i < n; i++) data[i] = orig[i] - (float)(h * v[i]);
    const double lm = loss_at(p);
    memcpy(data, orig, sizeof(float) * n);
    const double fd = (lp - lm) / (2 * h);
    /* fp32 rounding of the loss (about 1e-6 relative, 2e-5 kept as margin) over 2h */
    const double noise = 2e-5 * (1.0 + fabs(lp)) / (2 * h);
    const double err = fabs(fd - an) / (fabs(an) + noise);
    if (err > *worst) *worst = err;
    CHECK(err <= 2e-2, "%s: finite difference %.6e, backward %.6e (relative %.2e)", what, fd, an, err);
    free(v);
    free(orig);
}

static void run_case(const char *dir, const char *label, int H, int W, wobble_objective obj) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", t_ref_dir(), dir);
    prob p;
    memset(&p, 0, sizeof p);
    wobble_ctx_create(NULL, &p.ctx);
    wobble_model *m = NULL;
    int rc = wobble_model_load(p.ctx, path, NULL, &m);
    CHECK(rc == WOBBLE_OK, "load %s: %s", path, wobble_last_error(p.ctx));
    if (rc) return;
    p.tp = wobble_tune_default_params();
    p.tp.objective = obj;
    p.tp.lambda = 0.7;
    rc = wobble_tuner_create(p.ctx, m, &p.tp, &p.t);
    CHECK(rc == WOBBLE_OK, "tuner: %s", wobble_last_error(p.ctx));
    p.n = 2, p.H = H, p.W = W;
    const int E = wobble_model_embed_dim(m);
    const size_t per = (size_t)3 * H * W;
    p.x = malloc(sizeof(float) * per * p.n);
    p.xp = malloc(sizeof(float) * per * p.n);
    p.tg = malloc(sizeof(float) * (size_t)E * p.n);
    for (size_t i = 0; i < per * p.n; i++) {
        p.x[i] = (float)urand();
        p.xp[i] = p.x[i] + (float)(0.3 * urand());
    }
    for (int i = 0; i < E * p.n; i++) p.tg[i] = (float)urand();
    /* gradients at the base point */
    wobble_tuner_zero_grad(p.t);
    wobble_loss L;
    float *dx = malloc(sizeof(float) * per * p.n), *dxp = malloc(sizeof(float) * per * p.n);
    rc = wobble_tuner_loss_grad(p.ctx, p.t, p.x, p.xp, p.tg, p.n, H, W, &p.tp, &L, dx, dxp);
    CHECK(rc == WOBBLE_OK, "loss_grad: %s", wobble_last_error(p.ctx));
    CHECK(isfinite(L.total) && isfinite(L.rob) && isfinite(L.util), "loss not finite");
    const int np = wobble_tuner_count(p.t);
    size_t total = wobble_tuner_num_trainable(p.t);
    float *g0 = malloc(sizeof(float) * total);
    size_t off = 0;
    for (int i = 0; i < np; i++) {
        wobble_param_view v;
        wobble_tuner_param(p.t, i, &v);
        memcpy(g0 + off, v.grad, sizeof(float) * v.n);
        off += v.n;
    }
    double worst = 0;
    off = 0;
    for (int i = 0; i < np; i++) {
        wobble_param_view v;
        wobble_tuner_param(p.t, i, &v);
        char what[200];
        snprintf(what, sizeof what, "%s %s", label, v.name);
        fd_check(&p, what, v.data, g0 + off, v.n, &worst);
        off += v.n;
    }
    /* the inputs */
    snprintf(path, sizeof path, "%s input x", label);
    fd_check(&p, path, p.x, dx, per * p.n, &worst);
    snprintf(path, sizeof path, "%s input P(x)", label);
    fd_check(&p, path, p.xp, dxp, per * p.n, &worst);
    printf("%-28s %-3s L=%.5f (rob %.5f, util %.5f): %d tensors + 2 inputs, worst relative error %.2e\n", label,
           obj == WOBBLE_OBJECTIVE_COS ? "cos" : "l2", L.total, L.rob, L.util, np, worst);
    wobble_tuner_free(p.t);
    /* checkpointing recomputes the same activations: same gradients, bit for bit */
    wobble_tune_params tc = p.tp;
    tc.checkpoint = 1;
    rc = wobble_tuner_create(p.ctx, m, &tc, &p.t);
    CHECK(rc == WOBBLE_OK, "tuner: %s", wobble_last_error(p.ctx));
    wobble_tuner_zero_grad(p.t);
    wobble_loss L2;
    rc = wobble_tuner_loss_grad(p.ctx, p.t, p.x, p.xp, p.tg, p.n, H, W, &tc, &L2, NULL, NULL);
    CHECK(rc == WOBBLE_OK && L2.total == L.total, "checkpointed loss %.9g vs %.9g", L2.total, L.total);
    off = 0;
    int same = 1;
    for (int i = 0; i < wobble_tuner_count(p.t); i++) {
        wobble_param_view v;
        wobble_tuner_param(p.t, i, &v);
        same &= !memcmp(g0 + off, v.grad, sizeof(float) * v.n);
        off += v.n;
    }
    CHECK(same, "%s: checkpointed gradients differ from stored-activation gradients", label);
    wobble_tuner_free(p.t);
    free(g0);
    free(dx);
    free(dxp);
    free(p.x);
    free(p.xp);
    free(p.tg);
    wobble_model_free(m);
    wobble_ctx_free(p.ctx);
}

/* Parity with PyTorch autograd on the upstream fixtures (tests/ref/gen_grads.py):
 * per-tensor relative error ||g - g_ref|| / ||g_ref|| <= 1e-4. */
static int parity_case(const char *name, double *worst_all) {
    char mdir[2048], path[2300];
    snprintf(mdir, sizeof mdir, "%s/fixtures/arch/%s", t_shared_dir(), name);
    if (access(mdir, F_OK) != 0) return 0;
    wobble_ctx *ctx = NULL;
    wobble_ctx_create(NULL, &ctx);
    wobble_model *m = NULL;
    int rc = wobble_model_load(ctx, mdir, NULL, &m);
    CHECK(rc == WOBBLE_OK, "load %s: %s", mdir, wobble_last_error(ctx));
    wobble_array px, tg;
    snprintf(path, sizeof path, "%s/pixel_values.npy", mdir);
    CHECK(wobble_npy_read(ctx, path, &px) == WOBBLE_OK, "%s", wobble_last_error(ctx));
    snprintf(path, sizeof path, "%s/grads/%s/targets.npy", t_ref_dir(), name);
    CHECK(wobble_npy_read(ctx, path, &tg) == WOBBLE_OK, "%s", wobble_last_error(ctx));
    const int n = (int)px.shape[0], H = (int)px.shape[2], W = (int)px.shape[3];
    const float *x = px.data;
    float *xp = malloc(sizeof(float) * (size_t)px.numel);
    for (int i = 0; i < n * 3 * H; i++)
        for (int c = 0; c < W; c++) xp[(size_t)i * W + c] = 0.9f * x[(size_t)i * W + (W - 1 - c)];
    wobble_tune_params tp = wobble_tune_default_params();
    tp.lambda = 0.7;
    wobble_tuner *t = NULL;
    rc = wobble_tuner_create(ctx, m, &tp, &t);
    CHECK(rc == WOBBLE_OK, "tuner: %s", wobble_last_error(ctx));
    wobble_loss L;
    rc = wobble_tuner_loss_grad(ctx, t, x, xp, tg.data, n, H, W, &tp, &L, NULL, NULL);
    CHECK(rc == WOBBLE_OK, "loss_grad: %s", wobble_last_error(ctx));
    /* the reference gradients */
    snprintf(path, sizeof path, "%s/grads/%s/loss.json", t_ref_dir(), name);
    json_t *lj = json_load_file(path, 0, NULL);
    const double Lref = json_number_value(json_object_get(lj, "loss"));
    CHECK(fabs(L.total - Lref) <= 1e-5, "%s: loss %.8f, PyTorch %.8f", name, L.total, Lref);
    json_decref(lj);
    snprintf(path, sizeof path, "%s/grads/%s/grads.safetensors", t_ref_dir(), name);
    size_t len = 0;
    char *file = t_slurp(path, &len);
    CHECK(file != NULL, "cannot read %s", path);
    uint64_t hl = 0;
    memcpy(&hl, file, 8);
    json_t *hdr = json_loadb(file + 8, hl, 0, NULL);
    const char *key;
    json_t *val;
    int count = 0;
    double worst = 0, total = 0;
    json_object_foreach(hdr, key, val) {
        if (!strcmp(key, "__metadata__")) continue;
        json_t *off = json_object_get(val, "data_offsets");
        const size_t a = (size_t)json_integer_value(json_array_get(off, 0)),
                     b = (size_t)json_integer_value(json_array_get(off, 1));
        const float *ref = (const float *)(file + 8 + hl + a);
        for (size_t i = 0; i < (b - a) / 4; i++) total += (double)ref[i] * ref[i];
    }
    total = sqrt(total);
    json_object_foreach(hdr, key, val) {
        if (!strcmp(key, "__metadata__")) continue;
        json_t *off = json_object_get(val, "data_offsets");
        const size_t a = (size_t)json_integer_value(json_array_get(off, 0)),
                     b = (size_t)json_integer_value(json_array_get(off, 1));
        const size_t k = (b - a) / 4;
        const float *ref = (const float *)(file + 8 + hl + a);
        float *g = malloc(sizeof(float) * k);
        rc = wobble_tuner_tensor_grad(ctx, t, key, g, k);
        CHECK(rc == WOBBLE_OK, "%s: %s", name, wobble_last_error(ctx));
        double num = 0, den = 0;
        for (size_t i = 0; rc == WOBBLE_OK && i < k; i++) {
            num += ((double)g[i] - ref[i]) * ((double)g[i] - ref[i]);
            den += (double)ref[i] * ref[i];
        }
        /* The key bias's true gradient is exactly zero (softmax ignores a
         * constant added to every score of a row); both sides then hold
         * rounding noise, so such a tensor is held to an absolute limit,
         * 1e-7 of the whole gradient's norm. */
        double gn = 0;
        for (size_t i = 0; rc == WOBBLE_OK && i < k; i++) gn += (double)g[i] * g[i];
        const int zero = sqrt(den) < 1e-7 * total;
        const double rel = sqrt(num) / (sqrt(den) + 1e-30);
        if (!zero && rel > worst) worst = rel;
        if (zero)
            CHECK(sqrt(gn) < 1e-7 * total, "%s %s: gradient norm %.3e where PyTorch's is %.3e (total %.3e)", name, key,
                  sqrt(gn), sqrt(den), total);
        else
            CHECK(rel <= 1e-4, "%s %s: relative gradient error %.3e (|g_ref| %.3e)", name, key, rel, sqrt(den));
        free(g);
        count++;
    }
    printf("%-36s vs PyTorch autograd: loss %.7f (ref %.7f), %d tensors, worst relative error %.2e\n", name, L.total,
           Lref, count, worst);
    if (worst > *worst_all) *worst_all = worst;
    json_decref(hdr);
    free(file);
    free(xp);
    wobble_array_release(&px);
    wobble_array_release(&tg);
    wobble_tuner_free(t);
    wobble_model_free(m);
    wobble_ctx_free(ctx);
    return 1;
}

int main(void) {
    static const struct {
        const char *dir, *label;
        int H, W;
    } cases[] = {
        {"models/clip-f32-openai", "clip openai (packed qkv)", 64, 64},
        {"models/clip-bf16-hf", "clip hf (split qkv)", 64, 64},
        {"models/dinov2-swiglu-reg-fb", "dinov2 swiglu+reg 8x8", 112, 112},
        {"models/dinov2-nonsquare-fb", "dinov2 gelu 11x15", 154, 210},
        {"grads/vit-random-hf", "vit hf", 32, 32},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_case(cases[i].dir, cases[i].label, cases[i].H, cases[i].W, WOBBLE_OBJECTIVE_COS);
        run_case(cases[i].dir, cases[i].label, cases[i].H, cases[i].W, WOBBLE_OBJECTIVE_L2);
    }
    static const char *fixtures[] = {"clip-openai-naming", "clip-hf-naming", "dinov2-facebookresearch-naming",
                                     "dinov2-hf-naming", "dinov2-reg-facebookresearch-naming"};
    int found = 0;
    double worst = 0;
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) found += parity_case(fixtures[i], &worst);
    if (!found) printf("SKIP autograd parity: %s/fixtures/arch not found\n", t_shared_dir());
    return t_finish();
}
