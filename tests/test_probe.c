/*
 * Downstream classifiers against scikit-learn and NumPy (tests/ref/gen_probe.py):
 *  - linear probe at a fixed lambda: test probabilities equal
 *    LogisticRegression's (max-abs <= 1e-4);
 *  - lambda chosen on the held-out split: the same split, the same held-out
 *    accuracies, the same lambda, the same test accuracy;
 *  - kNN (k = 20, T = 0.07): vote weights equal NumPy's (relative 1e-4);
 *  - results do not depend on the thread count; bad inputs fail cleanly.
 */
#include "testutil.h"

#include <jansson.h>
#include <math.h>

int probe_split(const int *y, int n, int C, double frac, uint64_t seed, uint8_t *held);

static wobble_array load(wobble_ctx *ctx, const char *name) {
    char p[1024];
    wobble_array a;
    memset(&a, 0, sizeof a);
    snprintf(p, sizeof p, "%s/probe/%s", t_ref_dir(), name);
    int rc = wobble_npy_read(ctx, p, &a);
    CHECK(rc == WOBBLE_OK, "%s", wobble_last_error(ctx));
    return a;
}

static int argmax(const float *s, int C) {
    int a = 0;
    for (int c = 1; c < C; c++)
        if (s[c] > s[a]) a = c;
    return a;
}

int main(void) {
    wobble_ctx *ctx = NULL;
    wobble_ctx_create(NULL, &ctx);
    wobble_array xtr = load(ctx, "train_x.npy"), ytr = load(ctx, "train_y.npy"), xte = load(ctx, "test_x.npy"),
                 yte = load(ctx, "test_y.npy"), pfix = load(ctx, "linear_fixed_proba.npy"),
                 pexact = load(ctx, "linear_fixed_proba_exact.npy"),
                 pgrid = load(ctx, "linear_grid_proba.npy"), knn = load(ctx, "knn_scores.npy");
    if (!xtr.data || !ytr.data || !xte.data || !yte.data || !pfix.data || !pexact.data || !pgrid.data || !knn.data) return t_finish();
    const int n = (int)xtr.shape[0], d = (int)xtr.shape[1], nt = (int)xte.shape[0], C = (int)pfix.shape[1];
    const float *X = xtr.data, *Xt = xte.data;
    const int *y = ytr.data, *yt = yte.data;
    float *s = malloc(sizeof(float) * nt * C);

    /* fixed lambda */
    double lam = 1e-2;
    wobble_probe_params pp = wobble_probe_default_params();
    pp.l2_grid = &lam;
    pp.n_l2 = 1;
    wobble_classifier *clf = NULL;
    int rc = wobble_classifier_linear(ctx, X, y, n, d, C, &pp, &clf);
    CHECK(rc == WOBBLE_OK, "linear: %s", wobble_last_error(ctx));
    wobble_classifier_info info;
    wobble_classifier_get_info(clf, &info);
    CHECK(info.converged && info.l2 == lam, "converged %d grad %.2e in %d iterations", info.converged, info.grad_norm,
          info.iterations);
    CHECK(wobble_classifier_scores(ctx, clf, Xt, nt, s) == WOBBLE_OK, "scores");
    double mx = 0;
    for (int i = 0; i < nt * C; i++) mx = fmax(mx, fabs(s[i] - ((const float *)pfix.data)[i]));
    double mxe = 0;
    for (int i = 0; i < nt * C; i++) mxe = fmax(mxe, fabs(s[i] - ((const float *)pexact.data)[i]));
    CHECK(mx <= 1e-4, "fixed-lambda probabilities differ from scikit-learn by %.2e", mx);
    CHECK(mxe <= 1e-5, "fixed-lambda probabilities differ from the exact optimum by %.2e", mxe);
    printf("linear, lambda 1e-2: %d iterations, probabilities max-abs %.2e vs scikit-learn, %.2e vs the exact optimum\n",
           info.iterations, mx, mxe);
    wobble_classifier_free(clf);

    /* chosen lambda, default parameters */
    char p[1024];
    snprintf(p, sizeof p, "%s/probe/linear_grid.json", t_ref_dir());
    json_t *g = json_load_file(p, 0, NULL);
    CHECK(g != NULL, "%s", p);
    uint8_t *held = malloc((size_t)n);
    probe_split(y, n, C, 0.2, 0, held);
    int same_split = 1, nh = 0;
    json_t *ho = json_object_get(g, "held_out");
    for (int i = 0; i < n; i++) nh += held[i];
    for (size_t k = 0; k < json_array_size(ho); k++) same_split &= held[json_integer_value(json_array_get(ho, k))];
    CHECK(same_split && nh == (int)json_array_size(ho), "held-out split equals the documented one (%d items)", nh);
    pp = wobble_probe_default_params();
    rc = wobble_classifier_linear(ctx, X, y, n, d, C, &pp, &clf);
    CHECK(rc == WOBBLE_OK, "linear: %s", wobble_last_error(ctx));
    wobble_classifier_get_info(clf, &info);
    const double want = json_real_value(json_object_get(g, "lambda"));
    CHECK(info.l2 == want, "chosen lambda %g, scikit-learn path %g", info.l2, want);
    CHECK(info.n_l2 == (int)json_array_size(json_object_get(g, "holdout_accuracy")) && info.holdout_n == nh, "grid size");
    for (int k = 0; k < info.n_l2; k++) {
        const double a = json_real_value(json_array_get(json_object_get(g, "holdout_accuracy"), (size_t)k));
        CHECK(fabs(info.holdout_accuracy[k] - a) < 1e-12, "held-out accuracy at lambda %g: %.4f vs %.4f",
              info.l2_grid[k], info.holdout_accuracy[k], a);
    }
    wobble_classifier_scores(ctx, clf, Xt, nt, s);
    int correct = 0;
    mx = 0;
    for (int i = 0; i < nt; i++) correct += argmax(s + i * C, C) == yt[i];
    for (int i = 0; i < nt * C; i++) mx = fmax(mx, fabs(s[i] - ((const float *)pgrid.data)[i]));
    const double acc = (double)correct / nt, ref_acc = json_real_value(json_object_get(g, "test_accuracy"));
    CHECK(fabs(acc - ref_acc) < 1e-12, "test accuracy %.4f vs scikit-learn %.4f", acc, ref_acc);
    CHECK(mx <= 1e-3, "probabilities differ by %.2e", mx);
    printf("linear, chosen lambda %g: test accuracy %.4f (scikit-learn %.4f), probabilities max-abs %.2e\n", info.l2,
           acc, ref_acc, mx);
    /* same bits with one thread */
    float *s1 = malloc(sizeof(float) * nt * C);
    wobble_ctx_params cp1 = wobble_ctx_default_params();
    cp1.threads = 1;
    wobble_ctx *c1 = NULL;
    wobble_ctx_create(&cp1, &c1);
    wobble_classifier *clf1 = NULL;
    CHECK(wobble_classifier_linear(c1, X, y, n, d, C, &pp, &clf1) == WOBBLE_OK, "linear, 1 thread");
    wobble_classifier_scores(c1, clf1, Xt, nt, s1);
    CHECK(!memcmp(s, s1, sizeof(float) * nt * C), "linear probe identical with 1 thread");
    wobble_classifier_free(clf1);
    wobble_classifier_free(clf);
    json_decref(g);

    /* kNN */
    rc = wobble_classifier_knn(ctx, X, y, n, d, C, NULL, &clf);
    CHECK(rc == WOBBLE_OK, "knn: %s", wobble_last_error(ctx));
    wobble_classifier_scores(ctx, clf, Xt, nt, s);
    double rel = 0;
    int agree = 0;
    for (int i = 0; i < nt; i++) {
        const float *r = (const float *)knn.data + i * C;
        double tot = 0;
        for (int c = 0; c < C; c++) tot += r[c];
        for (int c = 0; c < C; c++) rel = fmax(rel, fabs(s[i * C + c] - r[c]) / tot);
        agree += argmax(s + i * C, C) == argmax(r, C);
    }
    CHECK(rel <= 1e-4 && agree == nt, "knn votes relative error %.2e, %d/%d predictions agree", rel, agree, nt);
    printf("knn k=20 T=0.07: votes relative error %.2e, %d/%d predictions agree with NumPy\n", rel, agree, nt);
    wobble_classifier_knn(c1, X, y, n, d, C, NULL, &clf1);
    wobble_classifier_scores(c1, clf1, Xt, nt, s1);
    CHECK(!memcmp(s, s1, sizeof(float) * nt * C), "knn identical with 1 thread");
    wobble_classifier_free(clf1);
    wobble_classifier_free(clf);
    wobble_ctx_free(c1);

    /* bad input */
    int *yb = malloc(sizeof(int) * n);
    memcpy(yb, y, sizeof(int) * n);
    for (int i = 0; i < n; i++)
        if (yb[i] == 3) yb[i] = 2;
    CHECK(wobble_classifier_linear(ctx, X, yb, n, d, C, NULL, &clf) == WOBBLE_EINVAL &&
              strstr(wobble_last_error(ctx), "no training example"),
          "missing class: %s", wobble_last_error(ctx));
    yb[7] = C;
    CHECK(wobble_classifier_knn(ctx, X, yb, n, d, C, NULL, &clf) == WOBBLE_EINVAL &&
              strstr(wobble_last_error(ctx), "outside"),
          "label out of range: %s", wobble_last_error(ctx));
    float *xb = malloc(sizeof(float) * n * d);
    memcpy(xb, X, sizeof(float) * n * d);
    xb[3 * d + 1] = NAN;
    CHECK(wobble_classifier_linear(ctx, xb, y, n, d, C, NULL, &clf) == WOBBLE_EINVAL &&
              strstr(wobble_last_error(ctx), "NaN"),
          "NaN features: %s", wobble_last_error(ctx));
    wobble_knn_params kp = wobble_knn_default_params();
    kp.k = 0;
    CHECK(wobble_classifier_knn(ctx, X, y, n, d, C, &kp, &clf) == WOBBLE_EDOMAIN, "k = 0 refused");
    double badl = -1;
    pp.l2_grid = &badl;
    pp.n_l2 = 1;
    CHECK(wobble_classifier_linear(ctx, X, y, n, d, C, &pp, &clf) == WOBBLE_EDOMAIN, "negative lambda refused");
    CHECK(clf == NULL, "no classifier on failure");
    int nt80 = 0;
    const char *const *tpl = wobble_imagenet_templates(&nt80);
    CHECK(nt80 == 80 && !strcmp(tpl[0], "a bad photo of a {}.") && !strcmp(tpl[79], "a tattoo of the {}."),
          "80 ImageNet templates");
    free(yb), free(xb), free(held), free(s), free(s1);
    wobble_array_release(&xtr), wobble_array_release(&ytr), wobble_array_release(&xte), wobble_array_release(&yte);
    wobble_array_release(&pfix), wobble_array_release(&pexact), wobble_array_release(&pgrid), wobble_array_release(&knn);
    wobble_ctx_free(ctx);
    return t_finish();
}
