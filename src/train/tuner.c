/*
 * A model being fine-tuned: the trainable parameters (mutable copies the
 * model now reads), their gradients, the loss of docs/finetuning.md and
 * AdamW.
 *
 * Loss on a batch of clean images x, perturbed images P(x) and frozen
 * targets t = f(x) (the original model's embeddings):
 *   cos: L_rob = -mean cos(f'(x), f'(P(x))),  L_util = -mean cos(t, f'(x))
 *   l2:  L_rob =  mean ||f'(P(x)) - t||^2,    L_util =  mean ||f'(x) - t||^2
 *   L = L_rob + lambda L_util
 * x and P(x) go through one recorded forward pass of 2n images.
 */
#include "train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct wobble_tuner {
    wobble_model *m;
    tparam *p;
    int np;
    size_t cap;
    float *grad, *m1, *m2; /* flat over the trainable parameters */
    size_t n_train;
    int64_t step;
    grads_t g;
    gblock_t *gb;
    fwd_tape tape;
    bwd_ws ws;
    float *emb, *demb, *pix;
    size_t cap_emb, cap_pix;
};

static int add(wobble_tuner *t, const char *what, int block, const float **slot, size_t n, int kind) {
    if (!*slot) return 0;
    if (core_grow(&t->p, &t->cap, (size_t)t->np + 1, sizeof *t->p)) return -1;
    tparam *p = &t->p[t->np++];
    memset(p, 0, sizeof *p);
    if (block >= 0)
        snprintf(p->what, sizeof p->what, "blocks.%d.%s", block, what);
    else
        snprintf(p->what, sizeof p->what, "%s", what);
    p->slot = slot;
    p->n = n;
    p->kind = kind;
    p->block = block;
    return 0;
}

static int in_scope(const wobble_model *m, const tparam *p, const wobble_tune_params *tp) {
    switch (tp->scope) {
    case WOBBLE_SCOPE_ALL: return 1;
    case WOBBLE_SCOPE_LAST:
        if (p->block >= 0) return p->block >= m->depth - tp->last_blocks;
        return !strncmp(p->what, "final_norm", 10) || !strcmp(p->what, "head.w");
    case WOBBLE_SCOPE_NORMS: return p->kind == PK_NORM || p->kind == PK_BIAS;
    }
    return 0;
}

wobble_tune_params wobble_tune_default_params(void) {
    wobble_tune_params p;
    memset(&p, 0, sizeof p);
    p.scope = WOBBLE_SCOPE_ALL;
    p.last_blocks = 0;
    p.checkpoint = 0;
    p.objective = WOBBLE_OBJECTIVE_COS;
    p.lambda = 1.0;
    p.beta1 = 0.9;
    p.beta2 = 0.999;
    p.eps = 1e-8;
    p.weight_decay = 0.0;
    return p;
}

int wobble_tune_check_params(wobble_ctx *ctx, const wobble_model *m, const wobble_tune_params *p) {
    if (m && m->precision != WOBBLE_PRECISION_FP32)
        return core_seterr(ctx, WOBBLE_EINVAL, "%s: fine-tuning runs in fp32; load the model with precision fp32",
                           m->path);
    if (p->scope != WOBBLE_SCOPE_ALL && p->scope != WOBBLE_SCOPE_LAST && p->scope != WOBBLE_SCOPE_NORMS)
        return core_seterr(ctx, WOBBLE_EDOMAIN, "scope: unknown value %d", (int)p->scope);
    if (p->scope == WOBBLE_SCOPE_LAST && (p->last_blocks < 1 || (m && p->last_blocks > m->depth)))
        return core_seterr(ctx, WOBBLE_EDOMAIN, "scope last:%d: the model has %d blocks (use 1 to %d)", p->last_blocks,
                             m ? m->depth : 0, m ? m->depth : 0);
    if (p->objective != WOBBLE_OBJECTIVE_COS && p->objective != WOBBLE_OBJECTIVE_L2)
        return core_seterr(ctx, WOBBLE_EDOMAIN, "objective: unknown value %d", (int)p->objective);
    if (!(p->lambda >= 0) || !isfinite(p->lambda))
        return core_seterr(ctx, WOBBLE_EDOMAIN, "lambda %g: must be a finite number >= 0", p->lambda);
    if (!(p->beta1 >= 0 && p->beta1 < 1) || !(p->beta2 >= 0 && p->beta2 < 1))
        return core_seterr(ctx, WOBBLE_EDOMAIN, "AdamW betas (%g, %g): each must be in [0, 1)", p->beta1, p->beta2);
    if (!(p->eps > 0) || !isfinite(p->eps))
        return core_seterr(ctx, WOBBLE_EDOMAIN, "AdamW eps %g: must be > 0", p->eps);
    if (!(p->weight_decay >= 0) || !isfinite(p->weight_decay))
        return core_seterr(ctx, WOBBLE_EDOMAIN, "weight decay %g: must be a finite number >= 0", p->weight_decay);
    return WOBBLE_OK;
}

/* The image tower's parameters, in a fixed order. */
static int collect(wobble_tuner *t) {
    wobble_model *m = t->m;
    const size_t D = (size_t)m->dim, H = (size_t)m->hidden, H1 = m->act == ACT_SWIGLU ? 2 * H : H;
    const size_t K = (size_t)3 * m->patch * m->patch;
    int e = 0;
    e |= add(t, "patch_embed.w", -1, &m->patch_w, D * K, PK_MATRIX);
    e |= add(t, "patch_embed.b", -1, &m->patch_b, D, PK_BIAS);
    e |= add(t, "cls", -1, &m->cls, D, PK_TOKEN);
    e |= add(t, "pos", -1, &m->pos, (1 + (size_t)m->grid * m->grid) * D, PK_TOKEN);
    e |= add(t, "registers", -1, &m->reg, (size_t)m->n_reg * D, PK_TOKEN);
    e |= add(t, "pre_norm.g", -1, &m->pre_norm.g, D, PK_NORM);
    e |= add(t, "pre_norm.b", -1, &m->pre_norm.b, D, PK_NORM);
    for (int l = 0; l < m->depth; l++) {
        block_t *b = &m->blocks[l];
        e |= add(t, "ln1.g", l, &b->ln1.g, D, PK_NORM);
        e |= add(t, "ln1.b", l, &b->ln1.b, D, PK_NORM);
        if (b->qkv.w) {
            e |= add(t, "qkv.w", l, &b->qkv.w, 3 * D * D, PK_MATRIX);
        } else {
            e |= add(t, "q.w", l, &b->wq, D * D, PK_MATRIX);
            e |= add(t, "k.w", l, &b->wk, D * D, PK_MATRIX);
            e |= add(t, "v.w", l, &b->wv, D * D, PK_MATRIX);
        }
        e |= add(t, "qkv.b", l, &b->qkv.b, 3 * D, PK_BIAS);
        e |= add(t, "proj.w", l, &b->proj.w, D * D, PK_MATRIX);
        e |= add(t, "proj.b", l, &b->proj.b, D, PK_BIAS);
        e |= add(t, "ls1", l, &b->ls1, D, PK_SCALE);
        e |= add(t, "ln2.g", l, &b->ln2.g, D, PK_NORM);
        e |= add(t, "ln2.b", l, &b->ln2.b, D, PK_NORM);
        e |= add(t, "fc1.w", l, &b->fc1.w, H1 * D, PK_MATRIX);
        e |= add(t, "fc1.b", l, &b->fc1.b, H1, PK_BIAS);
        e |= add(t, "fc2.w", l, &b->fc2.w, D * H, PK_MATRIX);
        e |= add(t, "fc2.b", l, &b->fc2.b, D, PK_BIAS);
        e |= add(t, "ls2", l, &b->ls2, D, PK_SCALE);
    }
    e |= add(t, "final_norm.g", -1, &m->final_norm.g, D, PK_NORM);
    e |= add(t, "final_norm.b", -1, &m->final_norm.b, D, PK_NORM);
    e |= add(t, "head.w", -1, &m->head.w, (size_t)m->head.out * D, PK_MATRIX);
    return e;
}

/* Point the gradient structure at the trainable parameters' gradients. */
static float *grad_of(wobble_tuner *t, const float **slot) {
    for (int i = 0; i < t->np; i++)
        if (t->p[i].slot == slot) return t->p[i].trainable ? t->p[i].grad : NULL;
    return NULL;
}

static void wire_grads(wobble_tuner *t) {
    wobble_model *m = t->m;
    grads_t *g = &t->g;
    g->patch_w = grad_of(t, &m->patch_w);
    g->patch_b = grad_of(t, &m->patch_b);
    g->cls = grad_of(t, &m->cls);
    g->pos = grad_of(t, &m->pos);
    g->reg = grad_of(t, &m->reg);
    g->pre_g = grad_of(t, &m->pre_norm.g);
    g->pre_b = grad_of(t, &m->pre_norm.b);
    g->fin_g = grad_of(t, &m->final_norm.g);
    g->fin_b = grad_of(t, &m->final_norm.b);
    g->head_w = grad_of(t, &m->head.w);
    g->blk = t->gb;
    g->lowest = m->depth;
    for (int l = 0; l < m->depth; l++) {
        block_t *b = &m->blocks[l];
        gblock_t *q = &t->gb[l];
        q->ln1_g = grad_of(t, &b->ln1.g);
        q->ln1_b = grad_of(t, &b->ln1.b);
        q->qkv_w = b->qkv.w ? grad_of(t, &b->qkv.w) : grad_of(t, &b->wq); /* wq, wk, wv are adjacent */
        q->qkv_b = grad_of(t, &b->qkv.b);
        q->proj_w = grad_of(t, &b->proj.w);
        q->proj_b = grad_of(t, &b->proj.b);
        q->ls1 = grad_of(t, &b->ls1);
        q->ln2_g = grad_of(t, &b->ln2.g);
        q->ln2_b = grad_of(t, &b->ln2.b);
        q->fc1_w = grad_of(t, &b->fc1.w);
        q->fc1_b = grad_of(t, &b->fc1.b);
        q->fc2_w = grad_of(t, &b->fc2.w);
        q->fc2_b = grad_of(t, &b->fc2.b);
        q->ls2 = grad_of(t, &b->ls2);
    }
    for (int i = 0; i < t->np; i++)
        if (t->p[i].trainable && t->p[i].block >= 0 && t->p[i].block < g->lowest) g->lowest = t->p[i].block;
    g->embed = g->patch_w || g->patch_b || g->cls || g->pos || g->reg || g->pre_g || g->pre_b;
    if (g->embed) g->lowest = 0;
}

int wobble_tuner_create(wobble_ctx *ctx, wobble_model *m, const wobble_tune_params *params, wobble_tuner **out) {
    if (!m || !out) return core_seterr(ctx, WOBBLE_EINVAL, "tuner: NULL argument");
    *out = NULL;
    wobble_tune_params tp = params ? *params : wobble_tune_default_params();
    int rc = wobble_tune_check_params(ctx, m, &tp);
    if (rc) return rc;
    wobble_tuner *t = calloc(1, sizeof *t);
    if (!t) return core_seterr(ctx, WOBBLE_ENOMEM, "tuner: out of memory");
    t->m = m;
    t->tape.checkpoint = tp.checkpoint;
    t->gb = calloc((size_t)m->depth, sizeof(gblock_t));
    if (!t->gb || collect(t) != 0) {
        wobble_tuner_free(t);
        return core_seterr(ctx, WOBBLE_ENOMEM, "tuner: out of memory");
    }
    size_t total = 0;
    for (int i = 0; i < t->np; i++) {
        t->p[i].trainable = in_scope(m, &t->p[i], &tp);
        if (t->p[i].trainable) total += t->p[i].n;
    }
    if (total == 0) {
        wobble_tuner_free(t);
        return core_seterr(ctx, WOBBLE_EDOMAIN, "%s: the scope selects no parameters", m->path);
    }
    t->n_train = total;
    t->grad = calloc(total, sizeof(float));
    t->m1 = calloc(total, sizeof(float));
    t->m2 = calloc(total, sizeof(float));
    if (!t->grad || !t->m1 || !t->m2) {
        wobble_tuner_free(t);
        return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory for %zu trainable parameters", m->path, total);
    }
    size_t off = 0;
    for (int i = 0; i < t->np; i++) {
        tparam *p = &t->p[i];
        if (!p->trainable) continue;
        p->grad = t->grad + off;
        off += p->n;
        /* a mutable copy the model reads from now on (the mapped or converted
         * original stays owned by the model) */
        p->data = malloc(sizeof(float) * p->n);
        if (!p->data || model_own(m, p->data) != 0) {
            free(p->data);
            p->data = NULL;
            wobble_tuner_free(t);
            return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", m->path);
        }
        memcpy(p->data, *p->slot, sizeof(float) * p->n);
        *p->slot = p->data;
    }
    wire_grads(t);
    model_params_changed(m);
    *out = t;
    return WOBBLE_OK;
}

void wobble_tuner_free(wobble_tuner *t) {
    if (!t) return;
    free(t->p);
    free(t->grad);
    free(t->m1);
    free(t->m2);
    free(t->gb);
    model_tape_free(&t->tape);
    train_bwd_ws_free(&t->ws);
    free(t->emb);
    free(t->demb);
    free(t->pix);
    free(t);
}

size_t wobble_tuner_num_trainable(const wobble_tuner *t) { return t ? t->n_train : 0; }

void wobble_tuner_zero_grad(wobble_tuner *t) {
    if (t) memset(t->grad, 0, sizeof(float) * t->n_train);
}

static int grow(float **p, size_t *cap, size_t n) { return core_grow(p, cap, n, sizeof **p); }

static double dot(const float *a, const float *b, int d) {
    double s = 0;
    for (int j = 0; j < d; j++) s += (double)a[j] * b[j];
    return s;
}

/* d cos(a, b) / d a, times s, added to ga */
static void cos_grad(const float *a, const float *b, int d, double s, float *ga) {
    const double na = sqrt(dot(a, a, d)), nb = sqrt(dot(b, b, d));
    const double c = dot(a, b, d) / (na * nb);
    for (int j = 0; j < d; j++) ga[j] += (float)(s * (b[j] / (na * nb) - c * a[j] / (na * na)));
}

int wobble_tuner_loss_grad(wobble_ctx *ctx, wobble_tuner *t, const float *x, const float *xp, const float *targets,
                           int n, int H, int W, const wobble_tune_params *params, wobble_loss *out, float *dx,
                           float *dxp) {
    if (!t || !x || !xp || !targets || n < 1 || !out)
        return core_seterr(ctx, WOBBLE_EINVAL, "tuner: NULL argument or empty batch");
    wobble_tune_params tp = params ? *params : wobble_tune_default_params();
    wobble_model *m = t->m;
    const int E = m->embed_dim;
    const size_t per = (size_t)3 * H * W;
    if (grow(&t->pix, &t->cap_pix, 2 * per * n) || grow(&t->emb, &t->cap_emb, (size_t)2 * n * E))
        return core_seterr(ctx, WOBBLE_ENOMEM, "tuner: out of memory");
    float *demb = malloc(sizeof(float) * (size_t)2 * n * E);
    if (!demb) return core_seterr(ctx, WOBBLE_ENOMEM, "tuner: out of memory");
    model_params_changed(m); /* the caller may have changed the values */
    memcpy(t->pix, x, sizeof(float) * per * n);
    memcpy(t->pix + per * n, xp, sizeof(float) * per * n);
    int rc = model_forward_record(ctx, m, t->pix, 2 * n, H, W, &t->tape, t->emb);
    if (rc) {
        free(demb);
        return rc;
    }
    const float *ec = t->emb, *ep = t->emb + (size_t)n * E;
    memset(demb, 0, sizeof(float) * (size_t)2 * n * E);
    double rob = 0, util = 0;
    const double lam = tp.lambda;
    for (int i = 0; i < n; i++) {
        const float *a = ec + (size_t)i * E, *b = ep + (size_t)i * E, *tg = targets + (size_t)i * E;
        float *ga = demb + (size_t)i * E, *gb = demb + (size_t)(n + i) * E;
        if (tp.objective == WOBBLE_OBJECTIVE_COS) {
            const double na = sqrt(dot(a, a, E)), nb = sqrt(dot(b, b, E)), nt = sqrt(dot(tg, tg, E));
            if (!(na > 0) || !(nb > 0) || !(nt > 0)) {
                free(demb);
                return core_seterr(ctx, WOBBLE_EDOMAIN, "tuner: a zero embedding has no cosine (image %d)", i);
            }
            rob -= dot(a, b, E) / (na * nb);
            util -= dot(tg, a, E) / (nt * na);
            cos_grad(a, b, E, -1.0 / n, ga);
            cos_grad(b, a, E, -1.0 / n, gb);
            cos_grad(a, tg, E, -lam / n, ga);
        } else {
            for (int j = 0; j < E; j++) {
                const double dp = (double)b[j] - tg[j], dc = (double)a[j] - tg[j];
                rob += dp * dp;
                util += dc * dc;
                gb[j] += (float)(2.0 * dp / n);
                ga[j] += (float)(2.0 * lam * dc / n);
            }
        }
    }
    out->rob = rob / n;
    out->util = util / n;
    out->total = out->rob + lam * out->util;
    float *dpix = NULL;
    if (dx || dxp) {
        dpix = malloc(sizeof(float) * 2 * per * n);
        if (!dpix) {
            free(demb);
            return core_seterr(ctx, WOBBLE_ENOMEM, "tuner: out of memory");
        }
    }
    grads_t g = t->g;
    if (dpix) g.lowest = 0;
    rc = train_backward(ctx, m, &t->tape, demb, &g, &t->ws, dpix);
    if (rc == WOBBLE_OK && dpix) {
        if (dx) memcpy(dx, dpix, sizeof(float) * per * n);
        if (dxp) memcpy(dxp, dpix + per * n, sizeof(float) * per * n);
    }
    free(dpix);
    free(demb);
    return rc;
}

double wobble_tuner_grad_norm(const wobble_tuner *t) {
    double s = 0;
    for (size_t i = 0; i < t->n_train; i++) s += (double)t->grad[i] * t->grad[i];
    return sqrt(s);
}

void wobble_tuner_scale_grad(wobble_tuner *t, double s) {
    for (size_t i = 0; i < t->n_train; i++) t->grad[i] = (float)(t->grad[i] * s);
}

/* PyTorch's AdamW: p -= lr wd p; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
 * p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps). Decay applies to
 * weight matrices only (not to biases, norms, tokens or LayerScale). */
void wobble_tuner_adamw_step(wobble_tuner *t, double lr, const wobble_tune_params *params) {
    wobble_tune_params tp = params ? *params : wobble_tune_default_params();
    t->step++;
    const double bc1 = 1.0 - pow(tp.beta1, (double)t->step), bc2 = 1.0 - pow(tp.beta2, (double)t->step);
    const float b1 = (float)tp.beta1, b2 = (float)tp.beta2;
    size_t off = 0;
    for (int i = 0; i < t->np; i++) {
        tparam *p = &t->p[i];
        if (!p->trainable) continue;
        const float decay = p->kind == PK_MATRIX ? (float)(1.0 - lr * tp.weight_decay) : 1.0f;
        const float step = (float)(lr / bc1), isq = (float)(1.0 / sqrt(bc2)), eps = (float)tp.eps;
        float *w = p->data, *g = t->grad + off, *m1 = t->m1 + off, *m2 = t->m2 + off;
        for (size_t k = 0; k < p->n; k++) {
            w[k] *= decay;
            m1[k] = b1 * m1[k] + (1.0f - b1) * g[k];
            m2[k] = b2 * m2[k] + (1.0f - b2) * g[k] * g[k];
            w[k] -= step * m1[k] / (sqrtf(m2[k]) * isq + eps);
        }
        off += p->n;
    }
    model_params_changed(t->m);
}

/* ---------------------------------------------------------------- access */

int wobble_tuner_count(const wobble_tuner *t) { return t ? t->np : 0; }

int wobble_tuner_param(const wobble_tuner *t, int i, wobble_param_view *v) {
    if (!t || i < 0 || i >= t->np || !v) return WOBBLE_EINVAL;
    const tparam *p = &t->p[i];
    v->name = p->what;
    v->n = p->n;
    v->trainable = p->trainable;
    v->data = p->trainable ? p->data : (float *)*p->slot;
    v->grad = p->grad;
    return WOBBLE_OK;
}

/* The parameter a checkpoint tensor lives in, and where in it. */
static const tparam *param_of_tensor(const wobble_tuner *t, const char *name, const tensor_ref **ref) {
    const wobble_model *m = t->m;
    for (int i = 0; i < m->n_refs; i++)
        if (!strcmp(m->refs[i].name, name)) {
            *ref = &m->refs[i];
            for (int k = 0; k < t->np; k++)
                if (t->p[k].slot == m->refs[i].slot) return &t->p[k];
            return NULL;
        }
    return NULL;
}

int wobble_tuner_tensor_grad(wobble_ctx *ctx, const wobble_tuner *t, const char *name, float *out, size_t n) {
    const tensor_ref *r = NULL;
    const tparam *p = t ? param_of_tensor(t, name, &r) : NULL;
    if (!p || !p->trainable)
        return core_seterr(ctx, WOBBLE_ENOTFOUND, "tensor '%s' is not a trainable image-tower parameter", name);
    const size_t len = r->transpose ? (size_t)(r->rows * r->cols) : n;
    if (r->offset + len > p->n || len != n)
        return core_seterr(ctx, WOBBLE_EINVAL, "tensor '%s': %zu values requested", name, n);
    const float *g = p->grad + r->offset;
    if (r->transpose) {
        for (int64_t a = 0; a < r->rows; a++)
            for (int64_t c = 0; c < r->cols; c++) out[a * r->cols + c] = g[c * r->rows + a];
    } else {
        memcpy(out, g, sizeof(float) * n);
    }
    return WOBBLE_OK;
}

int wobble_tuner_save_weights(wobble_ctx *ctx, const wobble_tuner *t, const char *path) {
    return model_save_safetensors(ctx, t->m, path);
}

/* Optimiser state for resuming: step, then m1 and m2. */
int64_t wobble_tuner_step(const wobble_tuner *t) { return t->step; }

float *wobble_tuner_grad(wobble_tuner *t) { return t ? t->grad : NULL; }

int wobble_tuner_state(wobble_tuner *t, float **m1, float **m2, int64_t **step) {
    *m1 = t->m1;
    *m2 = t->m2;
    *step = &t->step;
    return WOBBLE_OK;
}
