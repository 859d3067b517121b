/*
 * Downstream cost of perturbations (docs/downstream.md). Stages over one run
 * state (ds_run), each a function, with one cleanup path:
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
 * Every result file (eval's and the downstream ones) is staged and they
 * appear together at the end, or none does.
 *
 *   ds_labels      the label space and the test -> classifier class map
 *   ds_classifier  training embeddings (eval without operations) + classifier
 *   ds_test        the test set's robustness run, each image classified as
 *                  it completes
 *   ds_compact     the evaluated images in [slot][image] layouts
 *   ds_accuracy    clean and per (op, level) accuracy, per op
 *   ds_fits        accuracy against robustness
 *   ds_per_image   downstream_per_image.jsonl
 *   ds_root        downstream.json, then everything is committed
 */
#include "eval_internal.h"
#include "../data/data.h"
#include "../probe/probe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    const double t0 = core_now_s();
    const int S = c->S, C = c->C;
    c->rc = wobble_classifier_scores(c->ctx, c->clf, c->img, S, c->scores);
    for (int q = 0; !c->rc && q < S; q++) {
        const float *r = c->scores + (size_t)q * C;
        const int rk = c->label[i] >= 0 ? rank_of(r, C, c->label[i]) : C;
        c->pred[(size_t)i * S + q] = argmax_row(r, C);
        c->ok1[(size_t)i * S + q] = rk == 0;
        c->ok5[(size_t)i * S + q] = rk < 5;
    }
    c->t_classify += core_now_s() - t0;
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

static void jl_add(core_buf *s, json_t *j) {
    char *t = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    if (!t || core_buf_add(s, t, strlen(t)) || core_buf_add(s, "\n", 1)) s->failed = 1;
    free(t);
}

static void csv_num(core_buf *s, const char *section, const char *op, const char *level, const char *metric, double v) {
    if (isfinite(v))
        core_buf_printf(s, "%s,%s,%s,%s,%.10g\n", section, op, level, metric, v);
    else
        core_buf_printf(s, "%s,%s,%s,%s,\n", section, op, level, metric);
}

/* ------------------------------------------------------------ fits */
/* Leave-one-group-out: fit on the points outside group g, predict inside.
 * Returns the mean absolute error per group in err[g] (NaN when the rest
 * has fewer than 2 distinct x). */
static void loo(const double *x, const double *y, const int *grp, int n, int G, double *err) {
    double *xa = malloc(sizeof(double) * (size_t)n), *ya = malloc(sizeof(double) * (size_t)n);
    for (int g = 0; g < G; g++) err[g] = NAN;
    for (int g = 0; xa && ya && g < G; g++) {
        int m = 0;
        for (int i = 0; i < n; i++)
            if (grp[i] != g) xa[m] = x[i], ya[m++] = y[i];
        wobble_fit f;
        if (m < 2 || wobble_fit_linear(xa, ya, m, &f) != WOBBLE_OK || !isfinite(f.slope)) continue;
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
                         const int *g, int P, const wobble_eval_params *ep, core_buf *csv, const char *sec_fit,
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

/* OUT/<which>_embeddings.npy [n, E] float32 and OUT/<which>_labels.npy [n] int32, staged in set */
static int stage_set(wobble_ctx *ctx, core_outset *set, const char *out_dir, const char *which, const float *X,
                     const int *y, int n, int E) {
    const int64_t sx[2] = {n, E}, sy[1] = {n};
    int rc = WOBBLE_OK;
    for (int t = 0; t < 2 && rc == WOBBLE_OK; t++) {
        char name[64];
        snprintf(name, sizeof name, "%s_%s.npy", which, t ? "labels" : "embeddings");
        core_buf b = {0};
        rc = t ? core_npy_encode(ctx, "<i4", y, 1, sy, &b) : core_npy_encode(ctx, "<f4", X, 2, sx, &b);
        if (rc == WOBBLE_OK) rc = eval_outset_buf(ctx, set, out_dir, name, &b);
        core_buf_free(&b);
    }
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

/* ------------------------------------------------------------ run state */
typedef struct {
    wobble_ctx *ctx;
    wobble_model *m;
    const wobble_dataset *test;
    const wobble_eval_params *ep;
    wobble_downstream_params dp;
    const char *out_dir, *task_name, *test_path, *train_path;
    int N, Ct, C, O, E, S;
    const char **cname; /* [C] classifier class names */
    int *tmap;          /* [Ct] test class -> classifier class */
    int *test_count;    /* [Ct] */
    int *slot0;         /* [O] first embedding slot of each op (slot 0: clean) */
    int *labi;          /* [N] per dataset index: label in the classifier's space, or -1 */
    wobble_classifier *clf;
    collector ct;
    /* the evaluated images, compacted: [slot][image] and [image][...] */
    int n;
    int *idx, *lab, *pred;
    uint8_t *ok1, *ok5;
    wobble_robustness *rob;
    double *lc, *le;
    /* aggregates */
    double *acc1, *acc5, *mc, *me, *op_acc, *op_r[3];
    int *ccount;
    json_t *clean_j, *ops_j, *pred_j, *ic_j;
    core_buf csv, jl;
    core_outset out;
    wobble_downstream_summary sum;
} ds_run;

static void ds_free(ds_run *R) {
    wobble_classifier_free(R->clf);
    free(R->tmap), free(R->test_count), free(R->cname), free(R->slot0), free(R->labi);
    collector *c = &R->ct;
    free(c->img), free(c->scores), free(c->emb), free(c->got), free(c->pred), free(c->ok1), free(c->ok5), free(c->lc),
        free(c->le), free(c->rob);
    free(R->idx), free(R->lab), free(R->pred), free(R->ok1), free(R->ok5), free(R->rob), free(R->lc), free(R->le);
    free(R->acc1), free(R->acc5), free(R->mc), free(R->me), free(R->op_acc), free(R->ccount);
    for (int q = 0; q < 3; q++) free(R->op_r[q]);
    json_decref(R->clean_j), json_decref(R->ops_j), json_decref(R->pred_j), json_decref(R->ic_j);
    core_buf_free(&R->csv), core_buf_free(&R->jl);
    core_outset_abort(&R->out);
}

static int ds_oom(ds_run *R) { return core_seterr(R->ctx, WOBBLE_ENOMEM, "downstream: out of memory"); }

/* Everything that can be checked before anything is embedded. */
static int ds_check(ds_run *R) {
    wobble_ctx *ctx = R->ctx;
    const wobble_downstream_params *dp = &R->dp;
    if (dp->task < WOBBLE_TASK_LINEAR || dp->task > WOBBLE_TASK_ZEROSHOT)
        return core_seterr(ctx, WOBBLE_EINVAL, "downstream: unknown task %d", (int)dp->task);
    R->task_name = dp->task == WOBBLE_TASK_LINEAR ? "linear" : dp->task == WOBBLE_TASK_KNN ? "knn" : "zeroshot";
    if (R->ep->n_ops < 1) return core_seterr(ctx, WOBBLE_EINVAL, "downstream: no operations");
    int rc = wobble_eval_check_ops(ctx, R->ep->ops, R->ep->n_ops);
    if (rc) return rc;
    if (dp->bins < 2) return core_seterr(ctx, WOBBLE_EDOMAIN, "downstream: %d robustness bins; need at least 2", dp->bins);
    /* classifier parameters are checked before the training set is embedded (zero-shot builds its
     * classifier, with its own checks, before anything is embedded) */
    if (dp->task == WOBBLE_TASK_LINEAR && (rc = probe_check_linear(ctx, &dp->probe))) return rc;
    if (dp->task == WOBBLE_TASK_KNN && (rc = probe_check_knn(ctx, &dp->knn))) return rc;
    R->N = wobble_dataset_size(R->test);
    R->Ct = wobble_dataset_num_classes(R->test);
    if (R->Ct < 1)
        return core_seterr(ctx, WOBBLE_EINVAL,
                             "%s: the test set has no labels (a downstream task needs an ImageFolder tree, CIFAR-10 "
                             "or IDX data)",
                             R->test_path);
    R->O = R->ep->n_ops;
    /* without a model: embedding folders (docs/embeddings.md), test and training set */
    if (!R->m && (dp->task == WOBBLE_TASK_ZEROSHOT || !data_embeddings(R->test) || (dp->train && !data_embeddings(dp->train))))
        return core_seterr(ctx, WOBBLE_EINVAL, "downstream: %s",
                           dp->task == WOBBLE_TASK_ZEROSHOT ? "zero-shot needs a CLIP model (its text tower)"
                                                            : "without a model, the test and training sets must be "
                                                              "embedding folders");
    R->E = R->m ? wobble_model_embed_dim(R->m) : wobble_dataset_embed_dim(R->test);
    if (!R->m && dp->train && wobble_dataset_embed_dim(dp->train) != R->E)
        return core_seterr(ctx, WOBBLE_EINVAL, "%s: embeddings of width %d, the test set's are %d", R->train_path,
                           wobble_dataset_embed_dim(dp->train), R->E);
    return WOBBLE_OK;
}

/* Training classes without examples: an error naming up to five. */
static int ds_missing_classes(ds_run *R, const wobble_dataset *tr) {
    int *cnt = calloc((size_t)R->C, sizeof(int));
    if (!cnt) return ds_oom(R);
    for (int i = 0; i < wobble_dataset_size(tr); i++) {
        const int l = wobble_dataset_label(tr, i);
        if (l >= 0 && l < R->C) cnt[l]++;
    }
    char list[512] = "";
    int missing = 0;
    for (int k = 0; k < R->C; k++)
        if (!cnt[k] && missing++ < 5) {
            char t[96];
            snprintf(t, sizeof t, "%s'%s'", missing > 1 ? ", " : "", R->cname[k] ? R->cname[k] : "?");
            strncat(list, t, sizeof list - strlen(list) - 1);
        }
    free(cnt);
    if (missing)
        return core_seterr(R->ctx, WOBBLE_EINVAL, "%s: %d of %d classes are missing from the training set (%s%s)",
                             R->train_path, missing, R->C, list, missing > 5 ? ", ..." : "");
    return WOBBLE_OK;
}

static int ds_labels(ds_run *R) {
    wobble_ctx *ctx = R->ctx;
    const wobble_downstream_params *dp = &R->dp;
    R->tmap = calloc((size_t)R->Ct, sizeof(int));
    R->test_count = calloc((size_t)R->Ct, sizeof(int));
    if (!R->tmap || !R->test_count) return ds_oom(R);
    for (int i = 0; i < R->N; i++) {
        const int l = wobble_dataset_label(R->test, i);
        if (l >= 0 && l < R->Ct) R->test_count[l]++;
    }
    if (dp->task == WOBBLE_TASK_ZEROSHOT) {
        if (dp->class_names && dp->n_class_names != R->Ct)
            return core_seterr(ctx, WOBBLE_EINVAL, "downstream: %d class names given for the %d classes of %s",
                                 dp->n_class_names, R->Ct, R->test_path);
        R->C = R->Ct;
        if (!(R->cname = malloc(sizeof(char *) * (size_t)R->C))) return ds_oom(R);
        for (int k = 0; k < R->C; k++) {
            R->cname[k] = dp->class_names ? dp->class_names[k] : wobble_dataset_class_name(R->test, k);
            R->tmap[k] = k;
        }
        return WOBBLE_OK;
    }
    const wobble_dataset *tr = dp->train;
    if (!tr) return core_seterr(ctx, WOBBLE_EINVAL, "downstream: --task %s needs a training set (--train)", R->task_name);
    if (wobble_dataset_num_classes(tr) < 1)
        return core_seterr(ctx, WOBBLE_EINVAL, "%s: the training set has no labels", R->train_path);
    R->C = wobble_dataset_num_classes(tr);
    if (!(R->cname = malloc(sizeof(char *) * (size_t)R->C))) return ds_oom(R);
    for (int k = 0; k < R->C; k++) R->cname[k] = wobble_dataset_class_name(tr, k);
    int rc = ds_missing_classes(R, tr);
    /* test classes -> training classes by name */
    for (int k = 0; !rc && k < R->Ct; k++) {
        const char *nm = wobble_dataset_class_name(R->test, k);
        R->tmap[k] = -1;
        for (int j = 0; nm && j < R->C; j++)
            if (R->cname[j] && !strcmp(R->cname[j], nm)) R->tmap[k] = j;
        if (R->tmap[k] < 0 && R->test_count[k] > 0)
            rc = core_seterr(ctx, WOBBLE_EINVAL, "%s: test label '%s' (%d images) does not occur in the training set %s",
                               R->test_path, nm ? nm : "?", R->test_count[k], R->train_path);
    }
    return rc;
}

/* The training set's clean embeddings (an eval run without operations into
 * OUT/train), then the classifier. */
static int ds_classifier(ds_run *R) {
    wobble_ctx *ctx = R->ctx;
    const wobble_downstream_params *dp = &R->dp;
    const int E = R->E;
    double ta = core_now_s();
    int rc = WOBBLE_OK;
    if (dp->task == WOBBLE_TASK_ZEROSHOT) {
        int nt = dp->n_templates;
        const char *const *tpl = dp->templates;
        if (!tpl) tpl = wobble_imagenet_templates(&nt);
        rc = wobble_classifier_zeroshot(ctx, R->m, dp->tokenizer, R->cname, R->C, tpl, nt, &R->clf);
        R->sum.t_train_classifier = core_now_s() - ta;
        return rc;
    }
    const int NT = wobble_dataset_size(dp->train);
    collector cr;
    memset(&cr, 0, sizeof cr);
    cr.orig = R->ep;
    cr.ctx = ctx;
    cr.E = E;
    cr.emb = malloc(sizeof(float) * (size_t)NT * E + 1);
    cr.got = calloc((size_t)NT + 1, 1);
    int *y = malloc(sizeof(int) * (size_t)NT + 1);
    char *tdir = core_path_join(R->out_dir, "train");
    if (!cr.emb || !cr.got || !y || !tdir)
        rc = core_seterr(ctx, WOBBLE_ENOMEM, "downstream: out of memory for %d embeddings", NT);
    wobble_eval_params tp = *R->ep;
    tp.ops = NULL;
    tp.n_ops = 0;
    tp.data_path = dp->train_path;
    tp.progress = col_progress;
    tp.warn = col_warn;
    tp.embedding = col_embedding;
    tp.user = &cr;
    if (!rc) rc = eval_run_staged(ctx, R->m, dp->train, &tp, tdir, &R->sum.train, &R->out);
    if (!rc) rc = cr.rc;
    ta = core_now_s();
    int n = 0;
    for (int i = 0; !rc && i < NT; i++)
        if (cr.got[i]) {
            memmove(cr.emb + (size_t)n * E, cr.emb + (size_t)i * E, sizeof(float) * E);
            y[n++] = wobble_dataset_label(dp->train, i);
        }
    if (!rc)
        rc = dp->task == WOBBLE_TASK_LINEAR ? wobble_classifier_linear(ctx, cr.emb, y, n, E, R->C, &dp->probe, &R->clf)
                                            : wobble_classifier_knn(ctx, cr.emb, y, n, E, R->C, &dp->knn, &R->clf);
    R->sum.train_images = n;
    /* the clean training embeddings and labels the classifier saw, for comparisons */
    if (!rc) rc = stage_set(ctx, &R->out, R->out_dir, "train", cr.emb, y, n, E);
    free(cr.emb), free(cr.got), free(y), free(tdir);
    R->sum.t_train_classifier = core_now_s() - ta;
    return rc;
}

/* The test set's robustness run; each image is classified as it completes. */
static int ds_test(ds_run *R) {
    const int N = R->N, S = R->S, E = R->E, C = R->C, O = R->O;
    collector *ct = &R->ct;
    ct->orig = R->ep;
    ct->ctx = R->ctx;
    ct->E = E;
    ct->S = S;
    ct->C = C;
    ct->slot0 = R->slot0;
    ct->clf = R->clf;
    R->labi = malloc(sizeof(int) * (size_t)N + 1);
    for (int i = 0; R->labi && i < N; i++) {
        const int l = wobble_dataset_label(R->test, i);
        R->labi[i] = l >= 0 && l < R->Ct ? R->tmap[l] : -1;
    }
    ct->label = R->labi;
    ct->img = malloc(sizeof(float) * (size_t)S * E);
    ct->scores = malloc(sizeof(float) * (size_t)S * C + 1);
    ct->emb = malloc(sizeof(float) * (size_t)N * E + 1);
    ct->got = calloc((size_t)N + 1, 1);
    ct->pred = malloc(sizeof(int) * (size_t)N * S + 1);
    ct->ok1 = malloc((size_t)N * S + 1);
    ct->ok5 = malloc((size_t)N * S + 1);
    ct->lc = malloc(sizeof(double) * (size_t)N * (S - 1) + 1);
    ct->le = malloc(sizeof(double) * (size_t)N * (S - 1) + 1);
    ct->rob = malloc(sizeof(wobble_robustness) * (size_t)N * O + 1);
    if (!R->labi || !ct->img || !ct->scores || !ct->emb || !ct->got || !ct->pred || !ct->ok1 || !ct->ok5 || !ct->lc ||
        !ct->le || !ct->rob)
        return core_seterr(R->ctx, WOBBLE_ENOMEM, "downstream: out of memory for %d test images", N);
    wobble_eval_params vp = *R->ep;
    vp.progress = col_progress;
    vp.warn = col_warn;
    vp.embedding = col_embedding;
    vp.user = ct;
    int rc = eval_run_staged(R->ctx, R->m, R->test, &vp, R->out_dir, &R->sum.test, &R->out);
    R->sum.t_classify = ct->t_classify;
    return rc ? rc : ct->rc;
}

static int ds_compact(ds_run *R) {
    const int N = R->N, S = R->S, E = R->E, O = R->O;
    collector *ct = &R->ct;
    int n = 0;
    for (int i = 0; i < N; i++) n += ct->got[i];
    R->n = n;
    R->idx = malloc(sizeof(int) * (size_t)n + 1);
    R->lab = malloc(sizeof(int) * (size_t)n + 1);
    R->pred = malloc(sizeof(int) * (size_t)S * n + 1);
    R->ok1 = malloc((size_t)S * n + 1);
    R->ok5 = malloc((size_t)S * n + 1);
    R->rob = malloc(sizeof(wobble_robustness) * (size_t)n * O + 1);
    R->lc = malloc(sizeof(double) * (size_t)n * (S - 1) + 1);
    R->le = malloc(sizeof(double) * (size_t)n * (S - 1) + 1);
    if (!R->idx || !R->lab || !R->pred || !R->ok1 || !R->ok5 || !R->rob || !R->lc || !R->le) return ds_oom(R);
    for (int i = 0, j = 0; i < N; i++) {
        if (!ct->got[i]) continue;
        R->idx[j] = i;
        R->lab[j] = R->labi[i];
        for (int q = 0; q < S; q++) {
            R->pred[(size_t)q * n + j] = ct->pred[(size_t)i * S + q];
            R->ok1[(size_t)q * n + j] = ct->ok1[(size_t)i * S + q];
            R->ok5[(size_t)q * n + j] = ct->ok5[(size_t)i * S + q];
        }
        memcpy(R->lc + (size_t)j * (S - 1), ct->lc + (size_t)i * (S - 1), sizeof(double) * (size_t)(S - 1));
        memcpy(R->le + (size_t)j * (S - 1), ct->le + (size_t)i * (S - 1), sizeof(double) * (size_t)(S - 1));
        memcpy(R->rob + (size_t)j * O, ct->rob + (size_t)i * O, sizeof(wobble_robustness) * (size_t)O);
        memmove(ct->emb + (size_t)j * E, ct->emb + (size_t)i * E, sizeof(float) * E);
        j++;
    }
    if (n == 0) return core_seterr(R->ctx, WOBBLE_EINVAL, "%s: no test image could be evaluated", R->test_path);
    return stage_set(R->ctx, &R->out, R->out_dir, "test", ct->emb, R->lab, n, E);
}

/* Clean and per (op, level) accuracy, and the per-op means. */
static int ds_accuracy(ds_run *R) {
    const wobble_eval_params *ep = R->ep;
    const int S = R->S, n = R->n, C = R->C, O = R->O;
    const int has5 = C > 5;
    R->acc1 = calloc((size_t)S, sizeof(double)), R->acc5 = calloc((size_t)S, sizeof(double));
    R->mc = calloc((size_t)S, sizeof(double)), R->me = calloc((size_t)S, sizeof(double));
    R->ccount = calloc((size_t)C, sizeof(int));
    R->op_acc = calloc((size_t)O, sizeof(double));
    for (int q = 0; q < 3; q++) R->op_r[q] = calloc((size_t)O, sizeof(double));
    if (!R->acc1 || !R->acc5 || !R->mc || !R->me || !R->ccount || !R->op_acc || !R->op_r[0] || !R->op_r[1] || !R->op_r[2])
        return ds_oom(R);
    double *acc1 = R->acc1, *acc5 = R->acc5, *mc = R->mc, *me = R->me;
    const uint8_t *ok1 = R->ok1, *ok5 = R->ok5;
    for (int j = 0; j < n; j++)
        if (R->lab[j] >= 0) R->ccount[R->lab[j]]++;
    for (int s = 0; s < S; s++) {
        for (int j = 0; j < n; j++) {
            acc1[s] += ok1[(size_t)s * n + j];
            acc5[s] += ok5[(size_t)s * n + j];
            if (s > 0) {
                mc[s] += R->lc[(size_t)j * (S - 1) + s - 1];
                me[s] += R->le[(size_t)j * (S - 1) + s - 1];
            }
        }
        acc1[s] /= n, acc5[s] /= n, mc[s] /= n, me[s] /= n;
        if (!has5) acc5[s] = NAN;
    }
    R->sum.clean_top1 = acc1[0];
    R->sum.clean_top5 = acc5[0];
    R->sum.n_classes = C;
    R->sum.test_images = n;
    core_buf *csv = &R->csv;
    csv_num(csv, "accuracy", "clean", "", "top1", acc1[0]);
    csv_num(csv, "accuracy", "clean", "", "top5", acc5[0]);
    R->clean_j = json_pack("{s:o, s:o, s:o*}", "top1", jnum(acc1[0]), "top5", jnum(acc5[0]), "per_class_recall",
                           recall_json(ok1, R->lab, n, C, R->ccount));
    R->ops_j = json_array();
    for (int o = 0; o < O; o++) {
        const wobble_op_info *oi = wobble_op_find(ep->ops[o].name);
        const int K = ep->ops[o].n_levels;
        json_t *pl = json_array();
        for (int k = 0; k < K; k++) {
            const int s = R->slot0[o] + k;
            int changed = 0, broke = 0, fixed = 0;
            for (int j = 0; j < n; j++) {
                changed += R->pred[(size_t)s * n + j] != R->pred[j];
                broke += ok1[j] && !ok1[(size_t)s * n + j];
                fixed += !ok1[j] && ok1[(size_t)s * n + j];
            }
            char lv[40];
            snprintf(lv, sizeof lv, "%.17g", ep->ops[o].levels[k]);
            json_array_append_new(
                pl, json_pack("{s:f, s:o, s:o, s:o, s:o, s:i, s:i, s:i, s:o, s:o, s:o*}", "level", ep->ops[o].levels[k],
                              "top1", jnum(acc1[s]), "top5", jnum(acc5[s]), "top1_drop", jnum(acc1[0] - acc1[s]),
                              "top5_drop", jnum(acc5[0] - acc5[s]), "predictions_changed", changed, "correct_to_wrong",
                              broke, "wrong_to_correct", fixed, "cos_mean", jnum(mc[s]), "euc_mean", jnum(me[s]),
                              "per_class_recall", recall_json(ok1 + (size_t)s * n, R->lab, n, C, R->ccount)));
            csv_num(csv, "accuracy", oi->name, lv, "top1", acc1[s]);
            csv_num(csv, "accuracy", oi->name, lv, "top5", acc5[s]);
            csv_num(csv, "accuracy", oi->name, lv, "top1_drop", acc1[0] - acc1[s]);
            csv_num(csv, "accuracy", oi->name, lv, "top5_drop", acc5[0] - acc5[s]);
            csv_num(csv, "accuracy", oi->name, lv, "cos_mean", mc[s]);
            csv_num(csv, "accuracy", oi->name, lv, "euc_mean", me[s]);
            R->op_acc[o] += acc1[s] / K;
        }
        double worst = 1;
        for (int k = 0; k < K; k++) worst = fmin(worst, acc1[R->slot0[o] + k]);
        for (int j = 0; j < n; j++) {
            const wobble_robustness *r = &R->rob[(size_t)j * O + o];
            R->op_r[0][o] += r->cos_max / n;
            R->op_r[1][o] += r->euc_max / n;
            R->op_r[2][o] += r->div_radius / n;
        }
        json_array_append_new(R->ops_j, json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o*}", "op", oi->name,
                                                  "mean_top1", jnum(R->op_acc[o]), "worst_top1", jnum(worst),
                                                  "mean_top1_drop", jnum(acc1[0] - R->op_acc[o]), "R_cos_mean",
                                                  jnum(R->op_r[0][o]), "R_euc_mean", jnum(R->op_r[1][o]),
                                                  "R_div_mean", jnum(R->op_r[2][o]), "per_level", pl));
        csv_num(csv, "accuracy", oi->name, "all", "mean_top1", R->op_acc[o]);
        csv_num(csv, "accuracy", oi->name, "all", "R_cos_mean", R->op_r[0][o]);
        csv_num(csv, "accuracy", oi->name, "all", "R_euc_mean", R->op_r[1][o]);
        csv_num(csv, "accuracy", oi->name, "all", "R_div_mean", R->op_r[2][o]);
    }
    return R->clean_j && R->ops_j ? WOBBLE_OK : ds_oom(R);
}

/* AlexNet's top-1 error on ImageNet-C, the mean over severities 1-5 of
 * each standard corruption (Hendrycks and Dietterich, 2019), the
 * denominators of the Corruption Error */
static const struct {
    const char *name;
    double err;
} ALEXNET[15] = {{"gaussian_noise", .886428}, {"shot_noise", .894468},   {"impulse_noise", .922640},
                 {"defocus_blur", .819880},   {"glass_blur", .826268},   {"motion_blur", .785948},
                 {"zoom_blur", .798360},      {"snow", .866816},         {"frost", .826572},
                 {"fog", .819324},            {"brightness", .564592},   {"contrast", .853204},
                 {"elastic_transform", .646056}, {"pixelate", .717840},  {"jpeg_compression", .606500}};

/* When the operations include ImageNet-C corruptions: top-1 error per
 * (corruption, severity), CE_c = sum_s E_{s,c} / sum_s E^AlexNet_{s,c} for
 * the standard ones run at all five severities, mCE their mean when all 15
 * are there, and the mean top-1 over the standard (corruption, severity)
 * pairs (75 when complete, as RobustBench reports it). */
static int ds_imagenet_c(ds_run *R) {
    const wobble_eval_params *ep = R->ep;
    json_t *list = json_array();
    double ce_sum = 0, acc_sum = 0;
    int n_ce = 0, n_pairs = 0, n_ic = 0;
    for (int o = 0; o < R->O; o++) {
        const wobble_op_info *oi = wobble_op_find(ep->ops[o].name);
        if (!oi || !oi->suite) continue;
        n_ic++;
        const char *base = oi->name + strlen("imagenet_c.");
        double err[5];
        int have = 0;
        json_t *ej = json_array();
        for (int sev = 1; sev <= 5; sev++) {
            int slot = -1;
            for (int k = 0; k < ep->ops[o].n_levels; k++)
                if (ep->ops[o].levels[k] == sev) slot = R->slot0[o] + k;
            err[sev - 1] = slot >= 0 ? 1.0 - R->acc1[slot] : NAN;
            have += slot >= 0;
            json_array_append_new(ej, jnum(err[sev - 1]));
            if (slot >= 0 && oi->suite == 1) acc_sum += R->acc1[slot], n_pairs++;
        }
        double ce = NAN, alex = NAN;
        for (int a = 0; a < 15; a++)
            if (!strcmp(ALEXNET[a].name, base)) alex = ALEXNET[a].err;
        if (have == 5 && isfinite(alex)) { /* a standard corruption at every severity */
            ce = (err[0] + err[1] + err[2] + err[3] + err[4]) / (5 * alex);
            ce_sum += ce, n_ce++;
            csv_num(&R->csv, "imagenet_c", oi->name, "all", "CE", ce);
        }
        json_array_append_new(list, json_pack("{s:s, s:s, s:o, s:o}", "corruption", base, "suite",
                                              oi->suite == 1 ? "standard" : "validation", "top1_error", ej, "CE",
                                              jnum(ce)));
    }
    if (!n_ic) {
        json_decref(list);
        return WOBBLE_OK;
    }
    const double mce = n_ce == 15 ? ce_sum / 15 : NAN;
    if (n_ce == 15) csv_num(&R->csv, "imagenet_c", "all", "all", "mCE", mce);
    if (n_pairs) csv_num(&R->csv, "imagenet_c", "all", "all", "mean_top1", acc_sum / n_pairs);
    R->ic_j = json_pack(
        "{s:o, s:o, s:i, s:o, s:i, s:o, s:s}", "corruptions", list, "mCE", jnum(mce), "CE_count", n_ce,
        "mean_top1", n_pairs ? jnum(acc_sum / n_pairs) : json_null(), "mean_top1_pairs", n_pairs, "clean_top1_error",
        jnum(1.0 - R->acc1[0]),
        "note", "CE and mCE are defined against AlexNet's errors on ImageNet's 1000 classes; on another dataset or "
                "label set they compare this model's errors with numbers measured elsewhere and only their ranking "
                "across models and corruptions is meaningful (docs/imagenet-c.md)");
    return R->ic_j ? WOBBLE_OK : ds_oom(R);
}

static const char *MN[3] = {"R_cos", "R_euc", "R_div"};

/* (image, op) pairs in equal-count bins of each metric, and the fit of the
 * fraction of levels classified correctly against the bin means. */
static json_t *image_bins(ds_run *R) {
    const wobble_eval_params *ep = R->ep;
    const int n = R->n, O = R->O, P = n * O;
    const int B = R->dp.bins < P ? R->dp.bins : P;
    pt *v = malloc(sizeof(pt) * (size_t)P);
    double *bx = malloc(sizeof(double) * (size_t)B + 1), *by = malloc(sizeof(double) * (size_t)B + 1);
    json_t *fits = json_object(), *bins_j = json_object(), *res = NULL;
    for (int q = 0; v && bx && by && q < 3; q++) {
        for (int j = 0; j < n; j++)
            for (int o = 0; o < O; o++) {
                const wobble_robustness *r = &R->rob[(size_t)j * O + o];
                double c = 0;
                for (int k = 0; k < ep->ops[o].n_levels; k++) c += R->ok1[(size_t)(R->slot0[o] + k) * n + j];
                v[(size_t)j * O + o] =
                    (pt){q == 0 ? r->cos_max : q == 1 ? r->euc_max : r->div_radius, c / ep->ops[o].n_levels};
            }
        qsort(v, (size_t)P, sizeof(pt), cmp_pt);
        json_t *ba = json_array();
        for (int b = 0; b < B; b++) {
            const int lo = (int)((long)P * b / B), hi = (int)((long)P * (b + 1) / B);
            double sx = 0, sy = 0;
            for (int t = lo; t < hi; t++) sx += v[t].x, sy += v[t].y;
            bx[b] = sx / (hi - lo);
            by[b] = sy / (hi - lo);
            json_array_append_new(ba, json_pack("{s:i, s:f, s:f, s:f, s:f}", "n", hi - lo, "x_min", v[lo].x, "x_max",
                                                v[hi - 1].x, "x_mean", bx[b], "top1", by[b]));
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
            csv_num(&R->csv, "fit_image_bins", "", "", key, fv[t]);
        }
    }
    if (v && bx && by)
        res = json_pack("{s:s, s:o*, s:o*}", "points",
                        "(image, op) pairs in equal-count bins of the metric: x = mean metric, "
                        "y = fraction of the op's levels classified correctly",
                        "fits", fits, "bins", bins_j);
    else
        json_decref(fits), json_decref(bins_j);
    free(v), free(bx), free(by);
    return res;
}

/* Fits of accuracy against robustness, and leave-one-op-out errors. */
static int ds_fits(ds_run *R) {
    const wobble_eval_params *ep = R->ep;
    const int S = R->S, O = R->O;
    R->pred_j = json_object();
    /* (op, level) points: each metric on the single level's set {x, P(x, k)}: R_cos = (1 - cos)/2,
     * R_euc = ||e - e_k||/2, and R_div = the radius of two points = R_euc */
    const int P = S - 1;
    double *x = malloc(sizeof(double) * 3 * P), *y = malloc(sizeof(double) * P);
    int *g = calloc((size_t)P + 1, sizeof(int));
    double *xo = malloc(sizeof(double) * 3 * O);
    int *go = malloc(sizeof(int) * O);
    int rc = R->pred_j && x && y && g && xo && go ? WOBBLE_OK : ds_oom(R);
    if (rc == WOBBLE_OK) {
        for (int o = 0; o < O; o++)
            for (int k = 0; k < ep->ops[o].n_levels; k++) {
                const int s = R->slot0[o] + k;
                x[s - 1] = R->mc[s];
                x[P + s - 1] = R->me[s];
                x[2 * P + s - 1] = R->me[s];
                y[s - 1] = R->acc1[s];
                g[s - 1] = o;
            }
        json_object_set_new(R->pred_j, "op_level",
                            fit_group("one per (op, level): x = mean over images of the metric on the single "
                                      "level's set {x, P(x, k)} (R_cos = (1 - cos)/2, R_euc = ||e - e_k||/2; "
                                      "R_div of two points equals R_euc), y = top-1 accuracy",
                                      MN, 3, x, y, g, P, ep, &R->csv, "fit_op_level", "loo_op_level"));
        /* op points with R_cos / R_euc / R_div */
        for (int o = 0; o < O; o++) {
            go[o] = o;
            for (int q = 0; q < 3; q++) xo[q * O + o] = R->op_r[q][o];
        }
        json_object_set_new(R->pred_j, "op",
                            fit_group("one per op: x = mean over images of the metric over the op's levels, "
                                      "y = top-1 accuracy averaged over its levels",
                                      MN, 3, xo, R->op_acc, go, O, ep, &R->csv, "fit_op", "loo_op"));
        json_t *bins = image_bins(R);
        if (!bins || json_object_size(R->pred_j) != 2 || json_object_set_new(R->pred_j, "image_bins", bins))
            rc = ds_oom(R);
    }
    free(x), free(y), free(g), free(xo), free(go);
    return rc;
}

static int ds_per_image(ds_run *R) {
    const wobble_eval_params *ep = R->ep;
    const int S = R->S, n = R->n, O = R->O;
    for (int j = 0; j < n && !R->jl.failed; j++) {
        const int i = R->idx[j];
        for (int o = 0; o < O; o++) {
            const int K = ep->ops[o].n_levels;
            json_t *lv = json_array(), *pr = json_array(), *c1 = json_array(), *c5 = json_array(), *cs = json_array(),
                   *es = json_array();
            for (int k = 0; k < K; k++) {
                const int s = R->slot0[o] + k;
                json_array_append_new(lv, json_real(ep->ops[o].levels[k]));
                json_array_append_new(pr, json_integer(R->pred[(size_t)s * n + j]));
                json_array_append_new(c1, json_boolean(R->ok1[(size_t)s * n + j]));
                json_array_append_new(c5, json_boolean(R->ok5[(size_t)s * n + j]));
                json_array_append_new(cs, json_real(R->lc[(size_t)j * (S - 1) + s - 1]));
                json_array_append_new(es, json_real(R->le[(size_t)j * (S - 1) + s - 1]));
            }
            const wobble_robustness *r = &R->rob[(size_t)j * O + o];
            const int l = R->lab[j];
            json_t *rec = json_pack("{s:s, s:i, s:s?, s:s, s:o*, s:i, s:b, s:o*, s:o*, s:o*, s:o*, s:o*, s:f, s:f, s:f}",
                                    "image", wobble_dataset_item(R->test, i), "label", l, "label_name",
                                    l >= 0 ? R->cname[l] : NULL, "op", ep->ops[o].name, "levels", lv, "clean_pred",
                                    R->pred[j], "clean_correct", R->ok1[j], "pred", pr, "correct", c1, "top5_correct",
                                    c5, "cos", cs, "euc", es, "R_cos", r->cos_max, "R_euc", r->euc_max, "R_div",
                                    r->div_radius);
            jl_add(&R->jl, rec);
            json_decref(rec);
        }
    }
    return R->jl.failed ? ds_oom(R) : eval_outset_buf(R->ctx, &R->out, R->out_dir, "downstream_per_image.jsonl", &R->jl);
}

static json_t *classifier_json(ds_run *R) {
    const wobble_downstream_params *dp = &R->dp;
    wobble_classifier_info ci;
    wobble_classifier_get_info(R->clf, &ci);
    json_t *cj = json_pack("{s:s}", "kind", ci.kind);
    if (!cj) return NULL;
    if (dp->task == WOBBLE_TASK_LINEAR) {
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
        json_object_set_new(cj, "objective", json_string("(1/n) sum cross-entropy + (l2/2) ||W||^2 on standardised "
                                                         "features (scikit-learn C = 1 / (l2 n))"));
    } else if (dp->task == WOBBLE_TASK_KNN) {
        json_object_set_new(cj, "k", json_integer(ci.k));
        json_object_set_new(cj, "temperature", json_real(ci.temperature));
    } else {
        json_object_set_new(cj, "templates", json_integer(ci.n_templates));
        json_object_set_new(cj, "logit_scale", json_real(ci.logit_scale));
    }
    if (dp->task != WOBBLE_TASK_ZEROSHOT) json_object_set_new(cj, "train_images", json_integer(R->sum.train_images));
    return cj;
}

/* downstream.csv and downstream.json (the last two staged files). */
static int ds_root(ds_run *R) {
    const wobble_downstream_params *dp = &R->dp;
    const wobble_eval_params *ep = R->ep;
    core_buf full = {0};
    core_buf_printf(&full, "section,op,level,metric,value\n");
    core_buf_add(&full, R->csv.p ? R->csv.p : "", R->csv.len);
    if (R->csv.failed) full.failed = 1;
    int rc = eval_outset_buf(R->ctx, &R->out, R->out_dir, "downstream.csv", &full);
    core_buf_free(&full);
    if (rc) return rc;
    json_t *names = json_array();
    for (int k = 0; names && k < R->C; k++) json_array_append_new(names, json_string(R->cname[k] ? R->cname[k] : ""));
    wobble_model_info mi;
    memset(&mi, 0, sizeof mi);
    if (R->m) wobble_model_get_info(R->m, &mi);
    else mi.path = mi.preset = mi.arch = "external";
    json_t *train = dp->task == WOBBLE_TASK_ZEROSHOT
                        ? json_null()
                        : json_pack("{s:s?, s:s, s:i, s:i}", "path", dp->train_path, "kind",
                                    wobble_dataset_kind(dp->train), "images", wobble_dataset_size(dp->train),
                                    "evaluated", R->sum.train_images);
    json_t *root = json_pack(
        "{s:s, s:s, s:{s:s, s:s, s:s}, s:{s:s?, s:s, s:i, s:i, s:i}, s:o*, s:o*, s:o*, s:O, s:O, s:O, s:s}", "wobble",
        wobble_version(), "task", R->task_name, "model", "path", ep->model_path ? ep->model_path : mi.path, "preset",
        mi.preset, "arch", mi.arch, "test", "path", ep->data_path, "kind", wobble_dataset_kind(R->test), "images", R->N,
        "evaluated", R->n, "failed", R->N - R->n, "train", train, "classes", names, "classifier", classifier_json(R),
        "clean", R->clean_j, "ops", R->ops_j, "prediction", R->pred_j, "per_image", "downstream_per_image.jsonl");
    if (root && R->ic_j) json_object_set(root, "imagenet_c", R->ic_j);
    rc = eval_outset_json(R->ctx, &R->out, R->out_dir, "downstream.json", root);
    json_decref(root);
    return rc;
}

int wobble_downstream_run(wobble_ctx *ctx, wobble_model *m, const wobble_dataset *test, const wobble_eval_params *ep,
                          const wobble_downstream_params *dpp, const char *out_dir, wobble_downstream_summary *summary) {
    if (!test || !ep || !out_dir) return core_seterr(ctx, WOBBLE_EINVAL, "downstream: NULL argument");
    ds_run R;
    memset(&R, 0, sizeof R);
    R.ctx = ctx, R.m = m, R.test = test, R.ep = ep, R.out_dir = out_dir;
    R.dp = dpp ? *dpp : wobble_downstream_default_params();
    R.test_path = ep->data_path ? ep->data_path : "the test set";
    R.train_path = R.dp.train_path ? R.dp.train_path : "the training set";
    int rc = ds_check(&R);
    if (!rc) rc = ds_labels(&R);
    if (!rc) {
        if (!(R.slot0 = malloc(sizeof(int) * (size_t)R.O))) rc = ds_oom(&R);
        R.S = 1;
        for (int o = 0; !rc && o < R.O; o++) R.slot0[o] = R.S, R.S += ep->ops[o].n_levels;
    }
    if (!rc) rc = ds_classifier(&R);
    if (!rc) rc = ds_test(&R);
    if (!rc) rc = ds_compact(&R);
    if (!rc) rc = ds_accuracy(&R);
    if (!rc) rc = ds_imagenet_c(&R);
    if (!rc) rc = ds_fits(&R);
    if (!rc) rc = ds_per_image(&R);
    if (!rc) rc = ds_root(&R);
    if (!rc) rc = core_outset_commit(ctx, &R.out);
    if (summary) *summary = R.sum;
    ds_free(&R);
    return rc;
}
