/*
 * Downstream cost of perturbations (docs/downstream.md).
 *
 * 1. wobble_eval_run on the test set (robustness outputs, cache), collecting
 *    every embedding; for linear / kNN, wobble_eval_run without operations on
 *    the training set into OUT/train (clean embeddings, cached).
 * 2. The classifier: linear probe or kNN on the training embeddings, or the
 *    CLIP zero-shot classifier from class names and prompt templates.
 * 3. Scores for the clean test embeddings and for each (op, level): top-1,
 *    top-5, per-class recall, prediction changes, per-image correctness.
 * 4. Fits of accuracy against robustness: over (op, level) points with the
 *    per-level metrics, over ops with R_cos / R_euc / R_div, over per-image
 *    robustness bins; leave-one-op-out prediction errors.
 */
#include "eval_internal.h"
#include "../probe/probe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

wobble_downstream_params wobble_downstream_default_params(void) {
    wobble_downstream_params p;
    memset(&p, 0, sizeof p);
    p.task = WOBBLE_TASK_LINEAR;
    p.probe = wobble_probe_default_params();
    p.knn = wobble_knn_default_params();
    p.bins = 10;
    return p;
}

/* ------------------------------------------------------------ collection */
/* Training pass: the clean embeddings [N][E]. Test pass: each image's S
 * embeddings are classified and its robustness computed as soon as the last
 * one arrives, so memory holds per-image results, not every embedding. */
typedef struct {
    const wobble_eval_params *orig;
    wobble_ctx *ctx;
    int E, S, C;
    const int *slot0;
    /* training pass */
    float *emb;   /* [N][E] */
    uint8_t *got; /* [N] */
    /* test pass */
    const wobble_classifier *clf;
    const int *label; /* per dataset index: label in the classifier's space, or -1 */
    float *img;       /* [S][E] embeddings of the image in progress */
    float *scores;    /* [S][C] */
    int *pred;        /* [N][S] */
    uint8_t *ok1, *ok5;
    double *lc, *le;        /* [N][S-1] per-level values */
    wobble_robustness *rob; /* [N][O] */
    double t_classify;
    int rc;
} collector;

static void col_progress(void *u, long done, long total, const char *item) {
    collector *c = u;
    if (c->orig->progress) c->orig->progress(c->orig->user, done, total, item);
}

static void col_warn(void *u, const char *msg) {
    collector *c = u;
    if (c->orig->warn) c->orig->warn(c->orig->user, msg);
}

static double now_s(void);
static int argmax_row(const float *s, int C);
static int rank_of(const float *s, int C, int y);

static void col_embedding(void *u, int i, int o, int k, const float *e, int dim) {
    collector *c = u;
    if (dim != c->E || c->rc) return;
    if (!c->clf) { /* training pass */
        memcpy(c->emb + (size_t)i * c->E, e, sizeof(float) * (size_t)dim);
        c->got[i] = 1;
        return;
    }
    const int s = o < 0 ? 0 : c->slot0[o] + k;
    memcpy(c->img + (size_t)s * c->E, e, sizeof(float) * (size_t)dim);
    const wobble_eval_op *ops = c->orig->ops;
    const int O = c->orig->n_ops;
    if (o != O - 1 || k != ops[O - 1].n_levels - 1) return;
    /* the image is complete */
    const double t0 = now_s();
    const int S = c->S, C = c->C;
    c->rc = wobble_classifier_scores(c->ctx, c->clf, c->img, S, c->scores);
    for (int q = 0; !c->rc && q < S; q++) {
        const float *r = c->scores + (size_t)q * C;
        const int rk = c->label[i] >= 0 ? rank_of(r, C, c->label[i]) : C;
        c->pred[(size_t)i * S + q] = argmax_row(r, C);
        c->ok1[(size_t)i * S + q] = rk == 0;
        c->ok5[(size_t)i * S + q] = rk < 5;
    }
    c->t_classify += now_s() - t0;
    for (int p = 0; !c->rc && p < O; p++)
        c->rc = wobble_robustness_compute(c->ctx, c->img, c->img + (size_t)c->slot0[p] * c->E, ops[p].n_levels, c->E,
                                          c->lc + (size_t)i * (S - 1) + c->slot0[p] - 1,
                                          c->le + (size_t)i * (S - 1) + c->slot0[p] - 1, &c->rob[(size_t)i * O + p]);
    if (!c->rc) {
        memcpy(c->emb + (size_t)i * c->E, c->img, sizeof(float) * (size_t)c->E); /* clean, for test_embeddings.npy */
        c->got[i] = 1;
    }
}

/* ------------------------------------------------------------ json helpers */
static json_t *jnum(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static json_t *fit_json(const wobble_fit *f) {
    if (f->n < 2) return json_null();
    return json_pack("{s:i, s:o, s:o, s:o, s:o, s:o}", "n", f->n, "slope", jnum(f->slope), "intercept",
                     jnum(f->intercept), "r2", jnum(f->r2), "pearson", jnum(f->pearson), "spearman",
                     jnum(f->spearman));
}

typedef struct {
    char *b;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *s, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if ((size_t)k >= sizeof line) k = sizeof line - 1;
    if (s->n + (size_t)k + 1 > s->cap) {
        size_t nc = (s->n + (size_t)k + 1) * 2;
        char *nb = realloc(s->b, nc);
        if (!nb) {
            s->oom = 1;
            return;
        }
        s->b = nb;
        s->cap = nc;
    }
    memcpy(s->b + s->n, line, (size_t)k + 1);
    s->n += (size_t)k;
}

static void sb_json_line(sbuf *s, json_t *j) {
    char *t = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(17));
    if (!t) {
        s->oom = 1;
        return;
    }
    size_t l = strlen(t);
    if (s->n + l + 2 > s->cap) {
        size_t nc = (s->n + l + 2) * 2;
        char *nb = realloc(s->b, nc);
        if (!nb) {
            s->oom = 1;
            free(t);
            return;
        }
        s->b = nb;
        s->cap = nc;
    }
    memcpy(s->b + s->n, t, l);
    s->n += l;
    s->b[s->n++] = '\n';
    s->b[s->n] = 0;
    free(t);
}

static void csv_num(sbuf *s, const char *section, const char *op, const char *level, const char *metric, double v) {
    if (isfinite(v))
        sb_printf(s, "%s,%s,%s,%s,%.10g\n", section, op, level, metric, v);
    else
        sb_printf(s, "%s,%s,%s,%s,\n", section, op, level, metric);
}

/* ------------------------------------------------------------ fits */
/* Leave-one-group-out: fit on the points outside group g, predict inside.
 * Returns the mean absolute error per group in err[g] (NaN when the rest
 * has fewer than 2 distinct x). */
static void loo(const double *x, const double *y, const int *grp, int n, int G, double *err) {
    double *xa = malloc(sizeof(double) * (size_t)n), *ya = malloc(sizeof(double) * (size_t)n);
    for (int g = 0; g < G; g++) {
        int m = 0;
        for (int i = 0; i < n; i++)
            if (grp[i] != g) xa[m] = x[i], ya[m++] = y[i];
        wobble_fit f;
        err[g] = NAN;
        if (!xa || m < 2 || wobble_fit_linear(xa, ya, m, &f) != WOBBLE_OK || !isfinite(f.slope)) continue;
        double e = 0;
        int k = 0;
        for (int i = 0; i < n; i++)
            if (grp[i] == g) e += fabs(f.intercept + f.slope * x[i] - y[i]), k++;
        if (k) err[g] = e / k;
    }
    free(xa);
    free(ya);
}

/* Fits of y against each of nm metrics (x: nm rows of P points, point i in
 * group g[i] = its op) and the leave-one-op-out errors, as JSON and CSV. */
static json_t *fit_group(const char *what, const char *const *names, int nm, const double *x, const double *y,
                         const int *g, int P, const wobble_eval_params *ep, sbuf *csv, const char *sec_fit,
                         const char *sec_loo) {
    static const char *FN[5] = {"slope", "intercept", "r2", "pearson", "spearman"};
    const int O = ep->n_ops;
    double *err = malloc(sizeof(double) * (size_t)O);
    json_t *fits = json_object(), *lj = json_object();
    char key[64];
    for (int q = 0; err && q < nm; q++) {
        const double *xq = x + (size_t)q * P;
        wobble_fit f = {0};
        if (P >= 2) wobble_fit_linear(xq, y, P, &f);
        json_object_set_new(fits, names[q], fit_json(&f));
        const double fv[5] = {f.slope, f.intercept, f.r2, f.pearson, f.spearman};
        for (int t = 0; t < 5 && f.n >= 2; t++) {
            snprintf(key, sizeof key, "%s.%s", names[q], FN[t]);
            csv_num(csv, sec_fit, "", "", key, fv[t]);
        }
        loo(xq, y, g, P, O, err);
        json_t *per = json_object();
        double mae = 0;
        int cnt = 0;
        snprintf(key, sizeof key, "%s.abs_error", names[q]);
        for (int o = 0; o < O; o++) {
            json_object_set_new(per, ep->ops[o].name, jnum(err[o]));
            csv_num(csv, sec_loo, ep->ops[o].name, "", key, err[o]);
            if (isfinite(err[o])) mae += err[o], cnt++;
        }
        json_object_set_new(lj, names[q],
                            json_pack("{s:o, s:o}", "mean_abs_error", jnum(cnt ? mae / cnt : NAN), "per_op", per));
        snprintf(key, sizeof key, "%s.mean_abs_error", names[q]);
        csv_num(csv, sec_loo, "all", "", key, cnt ? mae / cnt : NAN);
    }
    free(err);
    return json_pack("{s:s, s:o, s:o}", "points", what, "fits", fits, "leave_one_op_out", lj);
}

typedef struct {
    double x, y;
} pt;

static int cmp_pt(const void *a, const void *b) {
    const pt *p = a, *q = b;
    return p->x < q->x ? -1 : p->x > q->x ? 1 : 0;
}

/* OUT/<which>_embeddings.npy [n, E] float32 and OUT/<which>_labels.npy [n] int32 */
static int save_set(wobble_ctx *ctx, const char *out_dir, const char *which, const float *X, const int *y, int n, int E) {
    const int64_t sx[2] = {n, E}, sy[1] = {n};
    char name[64];
    snprintf(name, sizeof name, "%s_embeddings.npy", which);
    char *p = eval_path_join(out_dir, name);
    int rc = wobble_npy_write_f32(ctx, p, X, 2, sx);
    free(p);
    snprintf(name, sizeof name, "%s_labels.npy", which);
    p = eval_path_join(out_dir, name);
    if (!rc) rc = wobble_npy_write_i32(ctx, p, y, 1, sy);
    free(p);
    return rc;
}

/* top-1 recall per class (null for a class without test images) */
static json_t *recall_json(const uint8_t *ok, const int *lab, int n, int C, const int *count) {
    json_t *rr = json_array();
    int *hit = calloc((size_t)C, sizeof(int));
    for (int j = 0; hit && j < n; j++)
        if (lab[j] >= 0) hit[lab[j]] += ok[j];
    for (int k = 0; k < C; k++)
        json_array_append_new(rr, count[k] && hit ? json_real((double)hit[k] / count[k]) : json_null());
    free(hit);
    return rr;
}

/* ------------------------------------------------------------ main */
static int argmax_row(const float *s, int C) {
    int a = 0;
    for (int c = 1; c < C; c++)
        if (s[c] > s[a]) a = c;
    return a;
}

/* rank of class y in scores (0 = top); ties count against y only when the
 * competitor has a lower index, matching the argmax rule */
static int rank_of(const float *s, int C, int y) {
    int r = 0;
    for (int c = 0; c < C; c++)
        if (s[c] > s[y] || (s[c] == s[y] && c < y)) r++;
    return r;
}

int wobble_downstream_run(wobble_ctx *ctx, wobble_model *m, const wobble_dataset *test, const wobble_eval_params *ep,
                          const wobble_downstream_params *dpp, const char *out_dir, wobble_downstream_summary *summary) {
    if (!m || !test || !ep || !out_dir) return wobble_seterr(ctx, WOBBLE_EINVAL, "downstream: NULL argument");
    const wobble_downstream_params dp = dpp ? *dpp : wobble_downstream_default_params();
    const char *task_name = dp.task == WOBBLE_TASK_LINEAR ? "linear" : dp.task == WOBBLE_TASK_KNN ? "knn" : "zeroshot";
    const char *test_path = ep->data_path ? ep->data_path : "the test set";
    const char *train_path = dp.train_path ? dp.train_path : "the training set";
    if (dp.task < WOBBLE_TASK_LINEAR || dp.task > WOBBLE_TASK_ZEROSHOT)
        return wobble_seterr(ctx, WOBBLE_EINVAL, "downstream: unknown task %d", (int)dp.task);
    if (ep->n_ops < 1) return wobble_seterr(ctx, WOBBLE_EINVAL, "downstream: no operations");
    int rc = wobble_eval_check_ops(ctx, ep->ops, ep->n_ops);
    if (rc) return rc;
    if (dp.bins < 2) return wobble_seterr(ctx, WOBBLE_EDOMAIN, "downstream: %d robustness bins; need at least 2", dp.bins);
    /* classifier parameters are checked before the training set is embedded (zero-shot builds its
     * classifier, with its own checks, before anything is embedded) */
    if (dp.task == WOBBLE_TASK_LINEAR && (rc = probe_check_linear(ctx, &dp.probe))) return rc;
    if (dp.task == WOBBLE_TASK_KNN && (rc = probe_check_knn(ctx, &dp.knn))) return rc;
    const int N = wobble_dataset_size(test), Ct = wobble_dataset_num_classes(test);
    if (Ct < 1)
        return wobble_seterr(ctx, WOBBLE_EINVAL,
                             "%s: the test set has no labels (a downstream task needs an ImageFolder tree, CIFAR-10 "
                             "or IDX data)",
                             test_path);
    /* ---- label space */
    int C = 0;
    const char **cname = NULL;
    int *tmap = calloc((size_t)Ct, sizeof(int)); /* test class -> label */
    int *test_count = calloc((size_t)Ct, sizeof(int));
    if (!tmap || !test_count) {
        free(tmap), free(test_count);
        return wobble_seterr(ctx, WOBBLE_ENOMEM, "downstream: out of memory");
    }
    for (int i = 0; i < N; i++) {
        const int l = wobble_dataset_label(test, i);
        if (l >= 0 && l < Ct) test_count[l]++;
    }
    if (dp.task == WOBBLE_TASK_ZEROSHOT) {
        if (dp.class_names && dp.n_class_names != Ct) {
            rc = wobble_seterr(ctx, WOBBLE_EINVAL, "downstream: %d class names given for the %d classes of %s",
                               dp.n_class_names, Ct, test_path);
        }
        C = Ct;
        cname = malloc(sizeof(char *) * (size_t)C);
        if (!cname && !rc) rc = wobble_seterr(ctx, WOBBLE_ENOMEM, "out of memory");
        for (int k = 0; !rc && k < C; k++) {
            cname[k] = dp.class_names ? dp.class_names[k] : wobble_dataset_class_name(test, k);
            tmap[k] = k;
        }
    } else {
        const wobble_dataset *tr = dp.train;
        if (!tr) {
            rc = wobble_seterr(ctx, WOBBLE_EINVAL, "downstream: --task %s needs a training set (--train)", task_name);
        } else if (wobble_dataset_num_classes(tr) < 1) {
            rc = wobble_seterr(ctx, WOBBLE_EINVAL, "%s: the training set has no labels", train_path);
        } else {
            C = wobble_dataset_num_classes(tr);
            cname = malloc(sizeof(char *) * (size_t)C);
            if (!cname) rc = wobble_seterr(ctx, WOBBLE_ENOMEM, "out of memory");
            for (int k = 0; !rc && k < C; k++) cname[k] = wobble_dataset_class_name(tr, k);
            /* classes without training examples */
            int *cnt = calloc((size_t)C, sizeof(int));
            for (int i = 0; cnt && i < wobble_dataset_size(tr); i++) {
                const int l = wobble_dataset_label(tr, i);
                if (l >= 0 && l < C) cnt[l]++;
            }
            char list[512] = "";
            int missing = 0;
            for (int k = 0; cnt && !rc && k < C; k++)
                if (!cnt[k]) {
                    if (missing++ < 5) {
                        char t[96];
                        snprintf(t, sizeof t, "%s'%s'", missing > 1 ? ", " : "", cname[k] ? cname[k] : "?");
                        strncat(list, t, sizeof list - strlen(list) - 1);
                    }
                }
            if (!rc && missing)
                rc = wobble_seterr(ctx, WOBBLE_EINVAL, "%s: %d of %d classes are missing from the training set (%s%s)",
                                   train_path, missing, C, list, missing > 5 ? ", ..." : "");
            free(cnt);
            /* test classes -> training classes by name */
            for (int k = 0; !rc && k < Ct; k++) {
                const char *nm = wobble_dataset_class_name(test, k);
                tmap[k] = -1;
                for (int j = 0; nm && j < C; j++)
                    if (cname[j] && !strcmp(cname[j], nm)) tmap[k] = j;
                if (tmap[k] < 0 && test_count[k] > 0)
                    rc = wobble_seterr(ctx, WOBBLE_EINVAL,
                                       "%s: test label '%s' (%d images) does not occur in the training set %s",
                                       test_path, nm ? nm : "?", test_count[k], train_path);
            }
        }
    }
    if (rc) {
        free(tmap), free(test_count), free(cname);
        return rc;
    }
    /* ---- training embeddings, then the classifier */
    const int O = ep->n_ops, E = wobble_model_embed_dim(m);
    int *slot0 = malloc(sizeof(int) * (size_t)O);
    int S = 1;
    for (int o = 0; o < O; o++) slot0[o] = S, S += ep->ops[o].n_levels;
    wobble_downstream_summary sum;
    memset(&sum, 0, sizeof sum);
    wobble_classifier *clf = NULL;
    double ta = now_s();
    if (dp.task == WOBBLE_TASK_ZEROSHOT) {
        int nt = dp.n_templates;
        const char *const *tpl = dp.templates;
        if (!tpl) tpl = wobble_imagenet_templates(&nt);
        rc = wobble_classifier_zeroshot(ctx, m, dp.tokenizer, cname, C, tpl, nt, &clf);
    } else {
        const int NT = wobble_dataset_size(dp.train);
        collector cr;
        memset(&cr, 0, sizeof cr);
        cr.orig = ep;
        cr.ctx = ctx;
        cr.E = E;
        cr.emb = malloc(sizeof(float) * (size_t)NT * E + 1);
        cr.got = calloc((size_t)NT + 1, 1);
        int *y = malloc(sizeof(int) * (size_t)NT + 1);
        if (!cr.emb || !cr.got || !y) rc = wobble_seterr(ctx, WOBBLE_ENOMEM, "downstream: out of memory for %d embeddings", NT);
        wobble_eval_params tp = *ep;
        tp.ops = NULL;
        tp.n_ops = 0;
        tp.data_path = dp.train_path;
        tp.progress = col_progress;
        tp.warn = col_warn;
        tp.embedding = col_embedding;
        tp.user = &cr;
        char *tdir = eval_path_join(out_dir, "train");
        if (!rc) rc = wobble_eval_run(ctx, m, dp.train, &tp, tdir, &sum.train);
        free(tdir);
        ta = now_s();
        int n = 0;
        for (int i = 0; !rc && i < NT; i++)
            if (cr.got[i]) {
                memmove(cr.emb + (size_t)n * E, cr.emb + (size_t)i * E, sizeof(float) * E);
                y[n++] = wobble_dataset_label(dp.train, i);
            }
        if (!rc) {
            rc = dp.task == WOBBLE_TASK_LINEAR ? wobble_classifier_linear(ctx, cr.emb, y, n, E, C, &dp.probe, &clf)
                                               : wobble_classifier_knn(ctx, cr.emb, y, n, E, C, &dp.knn, &clf);
        }
        sum.train_images = n;
        /* the clean training embeddings and labels the classifier saw, for comparisons */
        if (!rc) rc = save_set(ctx, out_dir, "train", cr.emb, y, n, E);
        free(cr.emb), free(cr.got), free(y);
    }
    sum.t_train_classifier = now_s() - ta;
    /* ---- the test set: robustness run, each image classified as it completes */
    collector ct;
    memset(&ct, 0, sizeof ct);
    ct.orig = ep;
    ct.ctx = ctx;
    ct.E = E;
    ct.S = S;
    ct.C = C;
    ct.slot0 = slot0;
    ct.clf = clf;
    int *labi = malloc(sizeof(int) * (size_t)N + 1);
    for (int i = 0; labi && i < N; i++) {
        const int l = wobble_dataset_label(test, i);
        labi[i] = l >= 0 && l < Ct ? tmap[l] : -1;
    }
    ct.label = labi;
    ct.img = malloc(sizeof(float) * (size_t)S * E);
    ct.scores = malloc(sizeof(float) * (size_t)S * C + 1);
    ct.emb = malloc(sizeof(float) * (size_t)N * E + 1);
    ct.got = calloc((size_t)N + 1, 1);
    ct.pred = malloc(sizeof(int) * (size_t)N * S + 1);
    ct.ok1 = malloc((size_t)N * S + 1);
    ct.ok5 = malloc((size_t)N * S + 1);
    ct.lc = malloc(sizeof(double) * (size_t)N * (S - 1) + 1);
    ct.le = malloc(sizeof(double) * (size_t)N * (S - 1) + 1);
    ct.rob = malloc(sizeof(wobble_robustness) * (size_t)N * O + 1);
    if (!rc && (!labi || !ct.img || !ct.scores || !ct.emb || !ct.got || !ct.pred || !ct.ok1 || !ct.ok5 || !ct.lc ||
                !ct.le || !ct.rob))
        rc = wobble_seterr(ctx, WOBBLE_ENOMEM, "downstream: out of memory for %d test images", N);
    if (!rc) {
        wobble_eval_params vp = *ep;
        vp.progress = col_progress;
        vp.warn = col_warn;
        vp.embedding = col_embedding;
        vp.user = &ct;
        rc = wobble_eval_run(ctx, m, test, &vp, out_dir, &sum.test);
        if (!rc) rc = ct.rc;
    }
    sum.t_classify = ct.t_classify;
    /* ---- compact to the evaluated images: [slot][image] and [image][...] layouts */
    int n = 0;
    for (int i = 0; i < N; i++) n += ct.got && ct.got[i];
    int *idx = malloc(sizeof(int) * (size_t)n + 1), *lab = malloc(sizeof(int) * (size_t)n + 1);
    int *pred = malloc(sizeof(int) * (size_t)S * n + 1);
    uint8_t *ok1 = malloc((size_t)S * n + 1), *ok5 = malloc((size_t)S * n + 1);
    wobble_robustness *rob = malloc(sizeof(wobble_robustness) * (size_t)n * O + 1);
    double *lc = malloc(sizeof(double) * (size_t)n * (S - 1) + 1), *le = malloc(sizeof(double) * (size_t)n * (S - 1) + 1);
    if (!rc && (!idx || !lab || !pred || !ok1 || !ok5 || !rob || !lc || !le))
        rc = wobble_seterr(ctx, WOBBLE_ENOMEM, "downstream: out of memory");
    for (int i = 0, j = 0; !rc && i < N; i++) {
        if (!ct.got[i]) continue;
        idx[j] = i;
        lab[j] = labi[i];
        for (int q = 0; q < S; q++) {
            pred[(size_t)q * n + j] = ct.pred[(size_t)i * S + q];
            ok1[(size_t)q * n + j] = ct.ok1[(size_t)i * S + q];
            ok5[(size_t)q * n + j] = ct.ok5[(size_t)i * S + q];
        }
        memcpy(lc + (size_t)j * (S - 1), ct.lc + (size_t)i * (S - 1), sizeof(double) * (size_t)(S - 1));
        memcpy(le + (size_t)j * (S - 1), ct.le + (size_t)i * (S - 1), sizeof(double) * (size_t)(S - 1));
        memcpy(rob + (size_t)j * O, ct.rob + (size_t)i * O, sizeof(wobble_robustness) * (size_t)O);
        memmove(ct.emb + (size_t)j * E, ct.emb + (size_t)i * E, sizeof(float) * E);
        j++;
    }
    if (!rc && n == 0) rc = wobble_seterr(ctx, WOBBLE_EINVAL, "%s: no test image could be evaluated", test_path);
    if (!rc) rc = save_set(ctx, out_dir, "test", ct.emb, lab, n, E);
    /* ---- aggregates */
    json_t *root = NULL;
    sbuf csv = {0}, jl = {0};
    if (!rc) {
        const int has5 = C > 5;
        double *acc1 = calloc((size_t)S, sizeof(double)), *acc5 = calloc((size_t)S, sizeof(double));
        double *mc = calloc((size_t)S, sizeof(double)), *me = calloc((size_t)S, sizeof(double));
        int *ccount = calloc((size_t)C, sizeof(int));
        for (int j = 0; j < n; j++)
            if (lab[j] >= 0) ccount[lab[j]]++;
        for (int s = 0; s < S; s++) {
            for (int j = 0; j < n; j++) {
                acc1[s] += ok1[(size_t)s * n + j];
                acc5[s] += ok5[(size_t)s * n + j];
                if (s > 0) {
                    mc[s] += lc[(size_t)j * (S - 1) + s - 1];
                    me[s] += le[(size_t)j * (S - 1) + s - 1];
                }
            }
            acc1[s] /= n, acc5[s] /= n, mc[s] /= n, me[s] /= n;
            if (!has5) acc5[s] = NAN;
        }
        sum.clean_top1 = acc1[0];
        sum.clean_top5 = acc5[0];
        sum.n_classes = C;
        sum.test_images = n;
        csv_num(&csv, "accuracy", "clean", "", "top1", acc1[0]);
        csv_num(&csv, "accuracy", "clean", "", "top5", acc5[0]);
        json_t *clean = json_pack("{s:o, s:o, s:o}", "top1", jnum(acc1[0]), "top5", jnum(acc5[0]), "per_class_recall",
                                  recall_json(ok1, lab, n, C, ccount));
        /* per op */
        json_t *ops = json_array();
        double *op_acc = calloc((size_t)O, sizeof(double));
        double *op_r[3];
        for (int q = 0; q < 3; q++) op_r[q] = calloc((size_t)O, sizeof(double));
        for (int o = 0; o < O; o++) {
            const wobble_op_info *oi = wobble_op_find(ep->ops[o].name);
            const int K = ep->ops[o].n_levels;
            json_t *pl = json_array();
            for (int k = 0; k < K; k++) {
                const int s = slot0[o] + k;
                int changed = 0, broke = 0, fixed = 0;
                for (int j = 0; j < n; j++) {
                    changed += pred[(size_t)s * n + j] != pred[j];
                    broke += ok1[j] && !ok1[(size_t)s * n + j];
                    fixed += !ok1[j] && ok1[(size_t)s * n + j];
                }
                char lv[40];
                snprintf(lv, sizeof lv, "%.17g", ep->ops[o].levels[k]);
                json_array_append_new(
                    pl, json_pack("{s:f, s:o, s:o, s:o, s:o, s:i, s:i, s:i, s:o, s:o, s:o}", "level", ep->ops[o].levels[k],
                                  "top1", jnum(acc1[s]), "top5", jnum(acc5[s]), "top1_drop", jnum(acc1[0] - acc1[s]),
                                  "top5_drop", jnum(acc5[0] - acc5[s]), "predictions_changed", changed,
                                  "correct_to_wrong", broke, "wrong_to_correct", fixed, "cos_mean", jnum(mc[s]),
                                  "euc_mean", jnum(me[s]), "per_class_recall", recall_json(ok1 + (size_t)s * n, lab, n, C, ccount)));
                csv_num(&csv, "accuracy", oi->name, lv, "top1", acc1[s]);
                csv_num(&csv, "accuracy", oi->name, lv, "top5", acc5[s]);
                csv_num(&csv, "accuracy", oi->name, lv, "top1_drop", acc1[0] - acc1[s]);
                csv_num(&csv, "accuracy", oi->name, lv, "top5_drop", acc5[0] - acc5[s]);
                csv_num(&csv, "accuracy", oi->name, lv, "cos_mean", mc[s]);
                csv_num(&csv, "accuracy", oi->name, lv, "euc_mean", me[s]);
                op_acc[o] += acc1[s] / K;
            }
            double worst = 1;
            for (int k = 0; k < K; k++) worst = fmin(worst, acc1[slot0[o] + k]);
            for (int j = 0; j < n; j++) {
                const wobble_robustness *r = &rob[(size_t)j * O + o];
                op_r[0][o] += r->cos_max / n;
                op_r[1][o] += r->euc_max / n;
                op_r[2][o] += r->div_radius / n;
            }
            json_array_append_new(ops, json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "op", oi->name, "mean_top1",
                                                 jnum(op_acc[o]), "worst_top1", jnum(worst), "mean_top1_drop",
                                                 jnum(acc1[0] - op_acc[o]), "R_cos_mean", jnum(op_r[0][o]),
                                                 "R_euc_mean", jnum(op_r[1][o]), "R_div_mean", jnum(op_r[2][o]),
                                                 "per_level", pl));
            csv_num(&csv, "accuracy", oi->name, "all", "mean_top1", op_acc[o]);
            csv_num(&csv, "accuracy", oi->name, "all", "R_cos_mean", op_r[0][o]);
            csv_num(&csv, "accuracy", oi->name, "all", "R_euc_mean", op_r[1][o]);
            csv_num(&csv, "accuracy", oi->name, "all", "R_div_mean", op_r[2][o]);
        }
        /* ---- fits */
        static const char *MN[3] = {"R_cos", "R_euc", "R_div"};
        json_t *pred_j = json_object();
        /* (op, level) points: each metric on the single level's set {x, P(x, k)}: R_cos = (1 - cos)/2,
         * R_euc = ||e - e_k||/2, and R_div = the radius of two points = R_euc */
        {
            const int P = S - 1;
            double *x = malloc(sizeof(double) * 3 * P), *y = malloc(sizeof(double) * P);
            int *g = malloc(sizeof(int) * P);
            for (int o = 0; o < O; o++)
                for (int k = 0; k < ep->ops[o].n_levels; k++) {
                    const int s = slot0[o] + k;
                    x[s - 1] = mc[s];
                    x[P + s - 1] = me[s];
                    x[2 * P + s - 1] = me[s];
                    y[s - 1] = acc1[s];
                    g[s - 1] = o;
                }
            json_object_set_new(pred_j, "op_level",
                                fit_group("one per (op, level): x = mean over images of the metric on the single "
                                          "level's set {x, P(x, k)} (R_cos = (1 - cos)/2, R_euc = ||e - e_k||/2; "
                                          "R_div of two points equals R_euc), y = top-1 accuracy",
                                          MN, 3, x, y, g, P, ep, &csv, "fit_op_level", "loo_op_level"));
            free(x), free(y), free(g);
        }
        /* op points with R_cos / R_euc / R_div */
        {
            double *x = malloc(sizeof(double) * 3 * O);
            int *g = malloc(sizeof(int) * O);
            for (int o = 0; o < O; o++) {
                g[o] = o;
                for (int q = 0; q < 3; q++) x[q * O + o] = op_r[q][o];
            }
            json_object_set_new(pred_j, "op",
                                fit_group("one per op: x = mean over images of the metric over the op's levels, "
                                          "y = top-1 accuracy averaged over its levels",
                                          MN, 3, x, op_acc, g, O, ep, &csv, "fit_op", "loo_op"));
            free(x), free(g);
        }
        /* per-image bins */
        {
            const int P = n * O;
            pt *v = malloc(sizeof(pt) * (size_t)P);
            json_t *fits = json_object(), *bins_j = json_object();
            for (int q = 0; v && q < 3; q++) {
                for (int j = 0; j < n; j++)
                    for (int o = 0; o < O; o++) {
                        const wobble_robustness *r = &rob[(size_t)j * O + o];
                        double c = 0;
                        for (int k = 0; k < ep->ops[o].n_levels; k++) c += ok1[(size_t)(slot0[o] + k) * n + j];
                        v[(size_t)j * O + o] = (pt){q == 0 ? r->cos_max : q == 1 ? r->euc_max : r->div_radius,
                                                    c / ep->ops[o].n_levels};
                    }
                qsort(v, (size_t)P, sizeof(pt), cmp_pt);
                const int B = dp.bins < P ? dp.bins : P;
                double bx[1024], by[1024];
                json_t *ba = json_array();
                for (int b = 0; b < B && b < 1024; b++) {
                    const int lo = (int)((long)P * b / B), hi = (int)((long)P * (b + 1) / B);
                    double sx = 0, sy = 0;
                    for (int t = lo; t < hi; t++) sx += v[t].x, sy += v[t].y;
                    bx[b] = sx / (hi - lo);
                    by[b] = sy / (hi - lo);
                    json_array_append_new(ba, json_pack("{s:i, s:f, s:f, s:f, s:f}", "n", hi - lo, "x_min", v[lo].x,
                                                        "x_max", v[hi - 1].x, "x_mean", bx[b], "top1", by[b]));
                }
                wobble_fit f = {0};
                if (B >= 2) wobble_fit_linear(bx, by, B, &f);
                json_object_set_new(fits, MN[q], fit_json(&f));
                json_object_set_new(bins_j, MN[q], ba);
                static const char *FN[5] = {"slope", "intercept", "r2", "pearson", "spearman"};
                const double fv[5] = {f.slope, f.intercept, f.r2, f.pearson, f.spearman};
                char key[64];
                for (int t = 0; t < 5 && f.n >= 2; t++) {
                    snprintf(key, sizeof key, "%s.%s", MN[q], FN[t]);
                    csv_num(&csv, "fit_image_bins", "", "", key, fv[t]);
                }
            }
            json_object_set_new(pred_j, "image_bins",
                                json_pack("{s:s, s:o, s:o}", "points",
                                          "(image, op) pairs in equal-count bins of the metric: x = mean metric, "
                                          "y = fraction of the op's levels classified correctly",
                                          "fits", fits, "bins", bins_j));
            free(v);
        }
        /* ---- per image */
        for (int j = 0; j < n; j++) {
            const int i = idx[j];
            for (int o = 0; o < O; o++) {
                const int K = ep->ops[o].n_levels;
                json_t *lv = json_array(), *pr = json_array(), *c1 = json_array(), *c5 = json_array(),
                       *cs = json_array(), *es = json_array();
                for (int k = 0; k < K; k++) {
                    const int s = slot0[o] + k;
                    json_array_append_new(lv, json_real(ep->ops[o].levels[k]));
                    json_array_append_new(pr, json_integer(pred[(size_t)s * n + j]));
                    json_array_append_new(c1, json_boolean(ok1[(size_t)s * n + j]));
                    json_array_append_new(c5, json_boolean(ok5[(size_t)s * n + j]));
                    json_array_append_new(cs, json_real(lc[(size_t)j * (S - 1) + s - 1]));
                    json_array_append_new(es, json_real(le[(size_t)j * (S - 1) + s - 1]));
                }
                const wobble_robustness *r = &rob[(size_t)j * O + o];
                json_t *rec = json_pack("{s:s, s:i, s:s?, s:s, s:o, s:i, s:b, s:o, s:o, s:o, s:o, s:o, s:f, s:f, s:f}",
                                        "image", wobble_dataset_item(test, i), "label", lab[j], "label_name",
                                        lab[j] >= 0 ? cname[lab[j]] : NULL, "op", ep->ops[o].name, "levels", lv,
                                        "clean_pred", pred[j], "clean_correct", ok1[j], "pred", pr, "correct", c1,
                                        "top5_correct", c5, "cos", cs, "euc", es, "R_cos", r->cos_max, "R_euc",
                                        r->euc_max, "R_div", r->div_radius);
                sb_json_line(&jl, rec);
                json_decref(rec);
            }
        }
        /* ---- root */
        wobble_classifier_info ci;
        wobble_classifier_get_info(clf, &ci);
        json_t *cj = json_pack("{s:s}", "kind", ci.kind);
        if (dp.task == WOBBLE_TASK_LINEAR) {
            json_t *grid = json_array();
            for (int k = 0; k < ci.n_l2; k++)
                json_array_append_new(grid, json_pack("{s:f, s:o}", "l2", ci.l2_grid[k], "holdout_top1",
                                                      ci.n_l2 > 1 ? jnum(ci.holdout_accuracy[k]) : json_null()));
            json_object_set_new(cj, "l2", json_real(ci.l2));
            json_object_set_new(cj, "l2_grid", grid);
            json_object_set_new(cj, "holdout_images", json_integer(ci.holdout_n));
            json_object_set_new(cj, "iterations", json_integer(ci.iterations));
            json_object_set_new(cj, "converged", json_boolean(ci.converged));
            json_object_set_new(cj, "train_loss", jnum(ci.loss));
            json_object_set_new(cj, "objective",
                                json_string("(1/n) sum cross-entropy + (l2/2) ||W||^2 on standardised features "
                                            "(scikit-learn C = 1 / (l2 n))"));
        } else if (dp.task == WOBBLE_TASK_KNN) {
            json_object_set_new(cj, "k", json_integer(ci.k));
            json_object_set_new(cj, "temperature", json_real(ci.temperature));
        } else {
            json_object_set_new(cj, "templates", json_integer(ci.n_templates));
            json_object_set_new(cj, "logit_scale", json_real(ci.logit_scale));
        }
        if (dp.task != WOBBLE_TASK_ZEROSHOT) json_object_set_new(cj, "train_images", json_integer(sum.train_images));
        json_t *names = json_array();
        for (int k = 0; k < C; k++) json_array_append_new(names, json_string(cname[k] ? cname[k] : ""));
        wobble_model_info mi;
        wobble_model_get_info(m, &mi);
        root = json_pack("{s:s, s:s, s:{s:s, s:s, s:s}, s:{s:s?, s:s, s:i, s:i, s:i}, s:o, s:o, s:o, s:o, s:o, s:o, s:s}",
                         "wobble", wobble_version(), "task", task_name, "model", "path",
                         ep->model_path ? ep->model_path : mi.path, "preset", mi.preset, "arch", mi.arch, "test", "path",
                         ep->data_path, "kind", wobble_dataset_kind(test), "images", N, "evaluated", n, "failed",
                         N - n, "train",
                         dp.task == WOBBLE_TASK_ZEROSHOT
                             ? json_null()
                             : json_pack("{s:s?, s:s, s:i, s:i}", "path", dp.train_path, "kind",
                                         wobble_dataset_kind(dp.train), "images", wobble_dataset_size(dp.train),
                                         "evaluated", sum.train_images),
                         "classes", names, "classifier", cj, "clean", clean, "ops", ops, "prediction", pred_j,
                         "per_image", "downstream_per_image.jsonl");
        free(acc1), free(acc5), free(mc), free(me), free(ccount), free(op_acc);
        for (int q = 0; q < 3; q++) free(op_r[q]);
        if (!root || csv.oom || jl.oom) rc = wobble_seterr(ctx, WOBBLE_ENOMEM, "downstream: out of memory for the outputs");
    }
    /* ---- write */
    if (!rc) {
        char *p = eval_path_join(out_dir, "downstream_per_image.jsonl");
        rc = wobble_write_file_atomic(ctx, p, jl.b ? jl.b : "", jl.n);
        free(p);
    }
    if (!rc) {
        sbuf full = {0};
        sb_printf(&full, "section,op,level,metric,value\n");
        char *p = eval_path_join(out_dir, "downstream.csv");
        size_t hl = full.n;
        char *b = malloc(hl + csv.n + 1);
        if (b) {
            memcpy(b, full.b, hl);
            if (csv.n) memcpy(b + hl, csv.b, csv.n);
            rc = wobble_write_file_atomic(ctx, p, b, hl + csv.n);
        } else {
            rc = wobble_seterr(ctx, WOBBLE_ENOMEM, "out of memory");
        }
        free(b);
        free(full.b);
        free(p);
    }
    if (!rc) {
        char *p = eval_path_join(out_dir, "downstream.json");
        rc = eval_write_json(ctx, p, root);
        free(p);
    }
    json_decref(root);
    free(csv.b), free(jl.b);
    if (summary) *summary = sum;
    wobble_classifier_free(clf);
    free(tmap), free(test_count), free(cname), free(slot0), free(labi);
    free(ct.img), free(ct.scores), free(ct.emb), free(ct.got), free(ct.pred), free(ct.ok1), free(ct.ok5), free(ct.lc),
        free(ct.le), free(ct.rob);
    free(idx), free(lab), free(pred), free(ok1), free(ok5), free(rob), free(lc), free(le);
    return rc;
}
