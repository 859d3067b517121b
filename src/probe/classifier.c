/*
 * One handle for the three downstream classifiers: linear probe (linear.c),
 * kNN and CLIP zero-shot. Each maps embeddings to n x C scores.
 */
#include "probe.h"

#include "../core/blas.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>


enum { K_LINEAR, K_KNN, K_ZEROSHOT };

struct wobble_classifier {
    int kind, C, d;
    probe_linear lin;
    double *grid; /* copy of the L2 grid */
    /* kNN */
    float *X; /* [n, d] L2-normalised */
    int *y, n, k;
    double T;
    /* zero-shot */
    float *W; /* [C, d] normalised class embeddings */
    double scale;
    int n_templates;
};

int probe_check_knn(wobble_ctx *ctx, const wobble_knn_params *p) {
    if (p->k < 1) return core_seterr(ctx, WOBBLE_EDOMAIN, "knn: k = %d must be at least 1", p->k);
    if (!(p->temperature > 0) || !isfinite(p->temperature))
        return core_seterr(ctx, WOBBLE_EDOMAIN, "knn: temperature %g must be positive", p->temperature);
    return WOBBLE_OK;
}

wobble_knn_params wobble_knn_default_params(void) {
    wobble_knn_params p;
    memset(&p, 0, sizeof p);
    p.k = 20;
    p.temperature = 0.07;
    return p;
}

static int check_train(wobble_ctx *ctx, const float *X, const int *y, int n, int d, int C) {
    if (!X || !y || n < 1 || d < 1 || C < 2)
        return core_seterr(ctx, WOBBLE_EINVAL, "classifier: need at least 1 example, 1 dimension and 2 classes (got %d, %d, %d)", n, d, C);
    int *count = calloc((size_t)C, sizeof(int));
    if (!count) return core_seterr(ctx, WOBBLE_ENOMEM, "classifier: out of memory");
    int rc = WOBBLE_OK;
    for (int i = 0; i < n && !rc; i++) {
        if (y[i] < 0 || y[i] >= C)
            rc = core_seterr(ctx, WOBBLE_EINVAL, "classifier: training label %d of example %d is outside 0..%d", y[i], i, C - 1);
        else
            count[y[i]]++;
    }
    for (size_t i = 0; i < (size_t)n * d && !rc; i++)
        if (!isfinite(X[i]))
            rc = core_seterr(ctx, WOBBLE_EINVAL, "classifier: training embedding %zu holds a NaN or infinite value", i / d);
    int missing = 0, first = -1;
    for (int c = 0; c < C && !rc; c++)
        if (!count[c]) {
            missing++;
            if (first < 0) first = c;
        }
    if (!rc && missing)
        rc = core_seterr(ctx, WOBBLE_EINVAL, "classifier: %d of %d classes have no training example (first: class %d)",
                           missing, C, first);
    free(count);
    return rc;
}

int wobble_classifier_linear(wobble_ctx *ctx, const float *X, const int *y, int n, int d, int C,
                             const wobble_probe_params *params, wobble_classifier **out) {
    if (!out) return core_seterr(ctx, WOBBLE_EINVAL, "classifier: NULL argument");
    *out = NULL;
    int rc = check_train(ctx, X, y, n, d, C);
    if (rc) return rc;
    wobble_probe_params p = params ? *params : wobble_probe_default_params();
    wobble_classifier *c = calloc(1, sizeof *c);
    if (!c) return core_seterr(ctx, WOBBLE_ENOMEM, "classifier: out of memory");
    c->kind = K_LINEAR;
    c->C = C;
    c->d = d;
    c->grid = malloc(sizeof(double) * (p.n_l2 > 0 ? p.n_l2 : 1));
    if (!c->grid) {
        free(c);
        return core_seterr(ctx, WOBBLE_ENOMEM, "classifier: out of memory");
    }
    if (p.n_l2 > 0 && p.l2_grid) memcpy(c->grid, p.l2_grid, sizeof(double) * p.n_l2);
    rc = probe_linear_fit(ctx, X, y, n, d, C, &p, &c->lin);
    if (rc) {
        wobble_classifier_free(c);
        return rc;
    }
    *out = c;
    return WOBBLE_OK;
}

static void normalize_rows(float *X, int n, int d) {
    for (int i = 0; i < n; i++) core_l2_normalize(X + (size_t)i * d, d);
}

int wobble_classifier_knn(wobble_ctx *ctx, const float *X, const int *y, int n, int d, int C,
                          const wobble_knn_params *params, wobble_classifier **out) {
    if (!out) return core_seterr(ctx, WOBBLE_EINVAL, "classifier: NULL argument");
    *out = NULL;
    int rc = check_train(ctx, X, y, n, d, C);
    if (rc) return rc;
    wobble_knn_params p = params ? *params : wobble_knn_default_params();
    if ((rc = probe_check_knn(ctx, &p))) return rc;
    wobble_classifier *c = calloc(1, sizeof *c);
    if (!c) return core_seterr(ctx, WOBBLE_ENOMEM, "classifier: out of memory");
    c->kind = K_KNN;
    c->C = C;
    c->d = d;
    c->n = n;
    c->k = p.k < n ? p.k : n;
    c->T = p.temperature;
    c->X = malloc(sizeof(float) * (size_t)n * d);
    c->y = malloc(sizeof(int) * (size_t)n);
    if (!c->X || !c->y) {
        wobble_classifier_free(c);
        return core_seterr(ctx, WOBBLE_ENOMEM, "knn: out of memory for %d x %d embeddings", n, d);
    }
    memcpy(c->X, X, sizeof(float) * (size_t)n * d);
    memcpy(c->y, y, sizeof(int) * (size_t)n);
    normalize_rows(c->X, n, d);
    *out = c;
    return WOBBLE_OK;
}

int wobble_classifier_zeroshot(wobble_ctx *ctx, wobble_model *m, const wobble_tokenizer *tok,
                               const char *const *names, int C, const char *const *templates, int nt,
                               wobble_classifier **out) {
    if (!out || !m || !names || !templates) return core_seterr(ctx, WOBBLE_EINVAL, "zeroshot: NULL argument");
    *out = NULL;
    if (!wobble_model_has_text(m)) {
        wobble_model_info mi;
        wobble_model_get_info(m, &mi);
        return core_seterr(ctx, WOBBLE_EINVAL,
                             "%s: zero-shot needs a whole CLIP checkpoint with its text tower; this is a %s image "
                             "encoder (%s)",
                             mi.path, mi.arch, mi.preset);
    }
    if (!tok) return core_seterr(ctx, WOBBLE_EINVAL, "zeroshot: no tokenizer given");
    if (C < 2 || nt < 1) return core_seterr(ctx, WOBBLE_EINVAL, "zeroshot: need 2 classes and 1 template (got %d, %d)", C, nt);
    for (int t = 0; t < nt; t++)
        if (!templates[t] || !strstr(templates[t], "{}"))
            return core_seterr(ctx, WOBBLE_EINVAL, "zeroshot: template %d ('%s') has no {} for the class name", t,
                                 templates[t] ? templates[t] : "(null)");
    const int E = wobble_model_embed_dim(m), L = wobble_model_context_length(m);
    wobble_classifier *c = calloc(1, sizeof *c);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)nt * L);
    float *te = malloc(sizeof(float) * (size_t)nt * E);
    if (!c || !ids || !te || !(c->W = calloc((size_t)C * E, sizeof(float)))) {
        free(ids), free(te), wobble_classifier_free(c);
        return core_seterr(ctx, WOBBLE_ENOMEM, "zeroshot: out of memory");
    }
    c->kind = K_ZEROSHOT;
    c->C = C;
    c->d = E;
    c->n_templates = nt;
    c->scale = wobble_model_logit_scale(m) > 0 ? wobble_model_logit_scale(m) : 100.0;
    int rc = WOBBLE_OK;
    wobble_embed_params ep = wobble_embed_default_params();
    ep.normalize = 1;
    for (int k = 0; k < C && !rc; k++) {
        if (!names[k] || !*names[k]) {
            rc = core_seterr(ctx, WOBBLE_EINVAL, "zeroshot: class %d has no name", k);
            break;
        }
        char name[512];
        snprintf(name, sizeof name, "%s", names[k]);
        for (char *q = name; *q; q++)
            if (*q == '_') *q = ' ';
        for (int t = 0; t < nt && !rc; t++) {
            /* every {} becomes the name */
            char text[2048];
            size_t o = 0;
            for (const char *s = templates[t]; *s && o < sizeof text - 1;) {
                if (s[0] == '{' && s[1] == '}') {
                    o += (size_t)snprintf(text + o, sizeof text - o, "%s", name);
                    s += 2;
                } else {
                    text[o++] = *s++;
                }
            }
            text[o < sizeof text ? o : sizeof text - 1] = 0;
            rc = wobble_tokenize(ctx, tok, text, L, ids + (size_t)t * L, NULL);
        }
        if (!rc) rc = wobble_model_encode_text(ctx, m, ids, nt, L, &ep, te);
        if (rc) break;
        float *w = c->W + (size_t)k * E;
        for (int t = 0; t < nt; t++)
            for (int j = 0; j < E; j++) w[j] += te[(size_t)t * E + j];
        for (int j = 0; j < E; j++) w[j] /= nt;
        normalize_rows(w, 1, E);
    }
    free(ids);
    free(te);
    if (rc) {
        wobble_classifier_free(c);
        return rc;
    }
    *out = c;
    return WOBBLE_OK;
}

void wobble_classifier_free(wobble_classifier *c) {
    if (!c) return;
    probe_linear_free(&c->lin);
    free(c->grid);
    free(c->X);
    free(c->y);
    free(c->W);
    free(c);
}

/* kNN scores for queries q [nq, d] (normalised here) */
static int knn_scores(wobble_ctx *ctx, const wobble_classifier *c, const float *Q, int nq, float *scores) {
    /* queries in blocks of up to 256; scratch sized to the block actually used (the downstream
     * pipeline scores one image's few embeddings at a time) */
    const int B = nq < 256 ? (nq > 0 ? nq : 1) : 256, n = c->n, d = c->d, k = c->k, C = c->C;
    float *q = malloc(sizeof(float) * (size_t)B * d), *S = malloc(sizeof(float) * (size_t)B * n);
    if (!q || !S) {
        free(q), free(S);
        return core_seterr(ctx, WOBBLE_ENOMEM, "knn: out of memory");
    }
    const int th = wobble_ctx_threads(ctx);
    core_blas_threads(th);
    for (int s0 = 0; s0 < nq; s0 += B) {
        const int b = nq - s0 < B ? nq - s0 : B;
        memcpy(q, Q + (size_t)s0 * d, sizeof(float) * (size_t)b * d);
        normalize_rows(q, b, d);
        /* similarities in fixed column tiles, each one single-threaded sgemm:
         * OpenBLAS's own threading splits the matrix by thread count, and its
         * edge kernels round differently, so the bits would depend on it */
        const int tile = 512, ntiles = (n + tile - 1) / tile;
        core_blas_threads(1);
#pragma omp parallel for num_threads(th) schedule(static) if (ntiles > 1)
        for (int tj = 0; tj < ntiles; tj++) {
            const int j0 = tj * tile, w = n - j0 < tile ? n - j0 : tile;
            core_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b, w, d, 1.0f, q, d, c->X + (size_t)j0 * d, d, 0.0f,
                        S + j0, n);
        }
        core_blas_threads(th);
        int fail = 0;
#pragma omp parallel for num_threads(th) schedule(static) reduction(| : fail)
        for (int i = 0; i < b; i++) {
            /* top k by similarity (ties: lower index), insertion into a sorted list */
            int *idx = malloc(sizeof(int) * k);
            float *val = malloc(sizeof(float) * k);
            if (!idx || !val) {
                free(idx), free(val);
                fail = 1;
                continue;
            }
            int m = 0;
            const float *row = S + (size_t)i * n;
            for (int j = 0; j < n; j++) {
                const float v = row[j];
                if (m == k && !(v > val[k - 1])) continue;
                int p = m < k ? m++ : k - 1;
                while (p > 0 && v > val[p - 1]) {
                    val[p] = val[p - 1];
                    idx[p] = idx[p - 1];
                    p--;
                }
                val[p] = v;
                idx[p] = j;
            }
            float *o = scores + (size_t)(s0 + i) * C;
            for (int cc = 0; cc < C; cc++) o[cc] = 0;
            for (int j = 0; j < m; j++) o[c->y[idx[j]]] += (float)exp(val[j] / c->T);
            free(idx);
            free(val);
        }
        if (fail) {
            free(q), free(S);
            return core_seterr(ctx, WOBBLE_ENOMEM, "knn: out of memory");
        }
    }
    free(q);
    free(S);
    return WOBBLE_OK;
}

int wobble_classifier_scores(wobble_ctx *ctx, const wobble_classifier *c, const float *X, int n, float *scores) {
    if (!c || (!X && n) || !scores || n < 0) return core_seterr(ctx, WOBBLE_EINVAL, "classifier: NULL argument");
    if (core_blas_load(ctx) != WOBBLE_OK) return wobble_last_status(ctx);
    for (size_t i = 0; i < (size_t)n * c->d; i++)
        if (!isfinite(X[i]))
            return core_seterr(ctx, WOBBLE_EINVAL, "classifier: embedding %zu holds a NaN or infinite value", i / c->d);
    if (c->kind == K_LINEAR) {
        return probe_linear_scores(&c->lin, X, n, scores) ? core_seterr(ctx, WOBBLE_ENOMEM, "classifier: out of memory")
                                                          : WOBBLE_OK;
    }
    if (c->kind == K_KNN) return knn_scores(ctx, c, X, n, scores);
    /* zero-shot */
    float *q = malloc(sizeof(float) * (size_t)(n ? n : 1) * c->d);
    if (!q) return core_seterr(ctx, WOBBLE_ENOMEM, "zeroshot: out of memory");
    memcpy(q, X, sizeof(float) * (size_t)n * c->d);
    normalize_rows(q, n, c->d);
    core_blas_threads(wobble_ctx_threads(ctx));
    if (n)
        core_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, c->C, c->d, (float)c->scale, q, c->d, c->W, c->d, 0.0f,
                    scores, c->C);
    free(q);
    return WOBBLE_OK;
}

int wobble_classifier_get_info(const wobble_classifier *c, wobble_classifier_info *info) {
    if (!c || !info) return WOBBLE_EINVAL;
    memset(info, 0, sizeof *info);
    static const char *kinds[] = {"linear", "knn", "zeroshot"};
    info->kind = kinds[c->kind];
    info->n_classes = c->C;
    info->dim = c->d;
    if (c->kind == K_LINEAR) {
        info->l2 = c->lin.lambda;
        info->iterations = c->lin.iterations;
        info->converged = c->lin.converged;
        info->loss = c->lin.loss;
        info->grad_norm = c->lin.grad_norm;
        info->l2_grid = c->grid;
        info->holdout_accuracy = c->lin.holdout_acc;
        info->n_l2 = c->lin.n_l2;
        info->holdout_n = c->lin.holdout_n;
    } else if (c->kind == K_KNN) {
        info->k = c->k;
        info->n_train = c->n;
        info->temperature = c->T;
    } else {
        info->n_templates = c->n_templates;
        info->logit_scale = c->scale;
    }
    return WOBBLE_OK;
}
