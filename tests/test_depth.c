/* The depth probe against PyTorch / NumPy goldens (tests/ref/gen_depth.py):
 * the head's prediction, the loss and its gradient, the metrics, the 16-bit
 * PNG reader; then training lowers the loss, reproducibly, and bad
 * parameters and files are refused. */
#include "testutil.h"
#include "../src/model/model.h"

#include <jansson.h>
#include <math.h>

static float *floats(json_t *a, size_t *n) {
    *n = json_array_size(a);
    float *v = malloc(sizeof(float) * (*n ? *n : 1));
    for (size_t i = 0; i < *n; i++) v[i] = (float)json_number_value(json_array_get(a, i));
    return v;
}

static double max_rel(const float *a, const float *b, size_t n) {
    double m = 0, s = 0;
    for (size_t i = 0; i < n; i++) s = fmax(s, fabs(b[i]));
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return s > 0 ? m / s : m;
}

int main(void) {
    char p[1024];
    snprintf(p, sizeof p, "%s/depth/case.json", t_ref_dir());
    json_error_t e;
    json_t *c = json_load_file(p, 0, &e);
    CHECK(c != NULL, "load %s: %s", p, e.text);
    if (!c) return t_finish();
    wobble_ctx *ctx = NULL;
    wobble_ctx_create(NULL, &ctx);
    wobble_depth_params dp = wobble_depth_default_params();
    dp.bins = (int)json_integer_value(json_object_get(c, "bins"));
    dp.d_min = json_number_value(json_object_get(c, "d_min"));
    dp.d_max = json_number_value(json_object_get(c, "d_max"));
    const int C = (int)json_integer_value(json_object_get(c, "channels")), K = dp.bins;
    wobble_depth_head *h = NULL;
    CHECK(wobble_depth_head_create(ctx, C, &dp, &h) == WOBBLE_OK, "create: %s", wobble_last_error(ctx));
    size_t n;
    float *Wt = floats(json_object_get(c, "W"), &n), *bt = floats(json_object_get(c, "b"), &n);
    memcpy(wobble_depth_head_weights(h), Wt, sizeof(float) * C * K);
    memcpy(wobble_depth_head_weights(h) + (size_t)C * K, bt, sizeof(float) * K);

    json_t *imgs = json_object_get(c, "images");
    wobble_depth_sample s[2];
    float *feat[2], *gt[2];
    for (int i = 0; i < 2; i++) {
        json_t *im = json_array_get(imgs, i);
        const int gh = (int)json_integer_value(json_object_get(im, "gh")), gw = (int)json_integer_value(json_object_get(im, "gw"));
        const int H = (int)json_integer_value(json_object_get(im, "H")), W = (int)json_integer_value(json_object_get(im, "W"));
        feat[i] = floats(json_object_get(im, "feat"), &n);
        gt[i] = floats(json_object_get(im, "gt"), &n);
        size_t np;
        float *want = floats(json_object_get(im, "pred_clamped"), &np);
        float *got = malloc(sizeof(float) * H * W);
        CHECK(wobble_depth_head_predict(ctx, h, feat[i], gh, gw, W, H, got) == WOBBLE_OK, "predict");
        double mr = max_rel(got, want, np);
        CHECK(mr <= 1e-5, "image %d: prediction max-abs / max %.3g (<= 1e-5)", i, mr);
        printf("image %d (%dx%d tokens -> %dx%d): prediction max-abs/max %.2e\n", i, gh, gw, W, H, mr);
        /* metrics of the clamped golden prediction, against NumPy */
        wobble_depth_metrics m;
        CHECK(wobble_depth_metrics_compute(ctx, want, gt[i], W, H, &dp, &m) == WOBBLE_OK, "metrics");
        json_t *wm = json_object_get(im, "metrics");
#define MET(f) CHECK(fabs(m.f - json_number_value(json_object_get(wm, #f))) <= 1e-5 * fmax(1, fabs(m.f)), \
                      "image %d %s %.9g vs NumPy %.9g", i, #f, m.f, json_number_value(json_object_get(wm, #f)))
        MET(abs_rel);
        MET(rmse);
        MET(log10);
        MET(silog);
        MET(d1);
        MET(d2);
        MET(d3);
#undef MET
        CHECK(m.valid == json_integer_value(json_object_get(wm, "valid")), "valid pixels %ld", m.valid);
        s[i] = (wobble_depth_sample){feat[i], gh, gw, gt[i], W, H};
        free(want), free(got);
    }
    /* loss and gradient against autograd */
    double loss = 0;
    float *g = malloc(sizeof(float) * ((size_t)C * K + K));
    CHECK(wobble_depth_head_loss(ctx, h, s, 2, 0.5, &loss, g) == WOBBLE_OK, "loss: %s", wobble_last_error(ctx));
    const double want_loss = json_number_value(json_object_get(c, "loss"));
    CHECK(fabs(loss - want_loss) <= 1e-5 * want_loss, "loss %.9g vs PyTorch %.9g", loss, want_loss);
    float *gW = floats(json_object_get(c, "grad_W"), &n), *gb = floats(json_object_get(c, "grad_b"), &n);
    const double rW = max_rel(g, gW, (size_t)C * K), rb = max_rel(g + (size_t)C * K, gb, K);
    CHECK(rW <= 1e-4 && rb <= 1e-4, "gradient: weights %.3g, bias %.3g relative (<= 1e-4)", rW, rb);
    printf("loss %.9g (PyTorch %.9g); gradient max-abs/max: weights %.2e, bias %.2e\n", loss, want_loss, rW, rb);

    /* training from the seeded initialisation lowers the loss, and is reproducible */
    dp.steps = 60, dp.batch = 2, dp.lr = 1e-2;
    double before = 0, after = 0, again = 0;
    wobble_depth_head *t1 = NULL, *t2 = NULL;
    wobble_depth_head_create(ctx, C, &dp, &t1);
    wobble_depth_head_create(ctx, C, &dp, &t2);
    wobble_depth_head_loss(ctx, t1, s, 2, 0.5, &before, NULL);
    CHECK(wobble_depth_head_train(ctx, t1, s, 2, &dp, NULL, 0) == WOBBLE_OK, "train: %s", wobble_last_error(ctx));
    wobble_depth_head_train(ctx, t2, s, 2, &dp, NULL, 0);
    wobble_depth_head_loss(ctx, t1, s, 2, 0.5, &after, NULL);
    wobble_depth_head_loss(ctx, t2, s, 2, 0.5, &again, NULL);
    CHECK(after < 0.97 * before, "training: loss %.4g -> %.4g (random ground truth: only its scale is learnable)", before, after);
    CHECK(!memcmp(wobble_depth_head_weights(t1), wobble_depth_head_weights(t2), sizeof(float) * ((size_t)C * K + K)),
          "training is reproducible (loss %.9g and %.9g)", after, again);
    printf("training 60 steps: loss %.4f -> %.4f\n", before, after);
    wobble_depth_head_free(t1), wobble_depth_head_free(t2);

    /* bad parameters */
    wobble_depth_params bad = wobble_depth_default_params();
    bad.d_min = 5, bad.d_max = 1;
    wobble_depth_head *x = NULL;
    CHECK(wobble_depth_head_create(ctx, C, &bad, &x) == WOBBLE_EDOMAIN && strstr(wobble_last_error(ctx), "d_min"),
          "d_min >= d_max refused: %s", wobble_last_error(ctx));
    float zero[4] = {0, 0, 0, 0}, one[4] = {1, 1, 1, 1};
    wobble_depth_metrics m;
    CHECK(wobble_depth_metrics_compute(ctx, one, zero, 2, 2, &dp, &m) == WOBBLE_EINVAL &&
              strstr(wobble_last_error(ctx), "no valid"),
          "no valid pixel refused: %s", wobble_last_error(ctx));

    /* the 16-bit PNG reader against Pillow's file */
    snprintf(p, sizeof p, "%s/depth/depth16.json", t_ref_dir());
    json_t *dj = json_load_file(p, 0, &e);
    snprintf(p, sizeof p, "%s/depth/depth16.png", t_ref_dir());
    int w = 0, hh = 0;
    float *d = NULL;
    CHECK(wobble_depth_read_png(ctx, p, 1000.0, &w, &hh, &d) == WOBBLE_OK, "read %s: %s", p, wobble_last_error(ctx));
    int same = d && w == 7 && hh == 5;
    for (int i = 0; same && i < 35; i++)
        same = d[i] == (float)(json_integer_value(json_array_get(json_object_get(dj, "values"), i)) / 1000.0);
    CHECK(same, "16-bit PNG values (w %d h %d)", w, hh);
    wobble_free(d);
    snprintf(p, sizeof p, "%s/data/photo_96x80.png", t_ref_dir());
    CHECK(wobble_depth_read_png(ctx, p, 1000.0, &w, &hh, &d) == WOBBLE_ECORRUPT &&
              strstr(wobble_last_error(ctx), "not a 16-bit grayscale PNG") && strstr(wobble_last_error(ctx), p),
          "an 8-bit RGB PNG refused: %s", wobble_last_error(ctx));
    json_decref(dj);

    /* the read-out of intermediate blocks: the last block's tokens equal the
     * usual forward pass's, whether read alone or with three others */
    {
        char mp[1024];
        snprintf(mp, sizeof mp, "%s/models/vit-tiny-patch16-224-tin", t_env("WOBBLE_SHARED", "../shared"));
        wobble_model *vm = NULL;
        if (wobble_model_load(ctx, mp, NULL, &vm) == WOBBLE_OK) {
            enum { HW = 224, NP = 196, D = 192, E = 192 };
            float *px = malloc(sizeof(float) * 3 * HW * HW), *pt = malloc(sizeof(float) * NP * D),
                  *p1 = malloc(sizeof(float) * NP * D), *p4 = malloc(sizeof(float) * 4 * NP * D);
            float e0[E], e1[E], e4[E], c1[D], c4[4 * D];
            for (int i = 0; i < 3 * HW * HW; i++) px[i] = (float)sin(i * 0.37);
            const int last[1] = {11}, four[4] = {2, 5, 8, 11};
            CHECK(wobble_model_forward(ctx, vm, px, 1, HW, HW, NULL, e0, pt) == WOBBLE_OK, "forward");
            CHECK(model_forward_tokens(ctx, vm, px, HW, HW, last, 1, e1, c1, p1) == WOBBLE_OK, "tokens, last block");
            CHECK(model_forward_tokens(ctx, vm, px, HW, HW, four, 4, e4, c4, p4) == WOBBLE_OK, "tokens, four blocks");
            CHECK(!memcmp(pt, p1, sizeof(float) * NP * D) && !memcmp(e0, e1, sizeof e0) && !memcmp(e0, c1, sizeof e0),
                  "the last block's tokens and CLS equal the forward pass's");
            CHECK(!memcmp(p1, p4 + 3 * NP * D, sizeof(float) * NP * D) && !memcmp(c1, c4 + 3 * D, sizeof c1),
                  "read with three others, the last block's tokens are the same");
            CHECK(memcmp(p4, p4 + 3 * NP * D, sizeof(float) * NP * D) != 0, "block 2's tokens differ from block 11's");
            const int bad_layer[1] = {12};
            CHECK(model_forward_tokens(ctx, vm, px, HW, HW, bad_layer, 1, e1, c1, p1) == WOBBLE_EINVAL &&
                      strstr(wobble_last_error(ctx), "block 12"),
                  "a block beyond the model refused: %s", wobble_last_error(ctx));
            free(px), free(pt), free(p1), free(p4);
            wobble_model_free(vm);
        } else {
            printf("intermediate blocks: %s not found, skipped\n", mp);
        }
    }

    for (int i = 0; i < 2; i++) free(feat[i]), free(gt[i]);
    free(Wt), free(bt), free(g), free(gW), free(gb);
    wobble_depth_head_free(h);
    json_decref(c);
    wobble_ctx_free(ctx);
    return t_finish();
}
