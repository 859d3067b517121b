/*
 * Backward pass of the image tower (CLIP, DINOv2, ViT), fp32, built on the
 * tape the forward pass records (src/model/forward.c, model_forward_record).
 *
 * The loss reads only the embeddings, so the gradient enters at the CLS row
 * of the final norm (and the projection), then runs down the residual
 * stream block by block:
 *   x_mid = x_in + ls1 * (proj(attn(ln1(x_in))) + b_proj)
 *   x_out = x_mid + ls2 * (fc2(act(fc1(ln2(x_mid)))) + b_fc2)
 * Linear layers are sgemm calls in the same OpenBLAS as the forward pass
 * (dW += dY^T X, dX = dY W); attention is one (image, head) pair per OpenMP
 * thread; reductions over rows (bias, norm and LayerScale gradients) run per
 * column in row order, so a given thread count always gives the same bits.
 * With a checkpointed tape each block is recomputed from its stored input
 * just before its backward step.
 */
#include "train.h"

#include "../model/fastmath.h"

#include "../core/blas.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>


/* db[j] += sum_r dy[r * ld + j] */
static void colsum_acc(const float *dy, int rows, int cols, int ld, float *db, int th) {
    if (!db) return;
#pragma omp parallel for num_threads(th) schedule(static) if ((long)rows * cols > 65536)
    for (int j0 = 0; j0 < cols; j0 += 64) {
        const int j1 = j0 + 64 < cols ? j0 + 64 : cols;
        float acc[64];
        for (int j = j0; j < j1; j++) acc[j - j0] = 0.0f;
        for (int r = 0; r < rows; r++) {
            const float *row = dy + (size_t)r * ld;
            for (int j = j0; j < j1; j++) acc[j - j0] += row[j];
        }
        for (int j = j0; j < j1; j++) db[j] += acc[j - j0];
    }
}

/* y = x W^T + b: dW += dy^T x, db += colsum(dy), dx = dy W (+ beta dx). */
static void linear_bwd(const float *dy, int rows, int out, int ldy, const float *x, int in, int ldx, const float *W,
                       float *dW, float *db, float *dx, int lddx, float beta) {
    if (dW) core_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, rows, 1.0f, dy, ldy, x, ldx, 1.0f, dW, in);
    if (dx) core_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, in, out, 1.0f, dy, ldy, W, in, beta, dx, lddx);
    (void)db;
}

/* LayerNorm y = (x - mu) * rstd * g + b. dx += dL/dx for dy; dg, db += . */
static void layernorm_bwd(const float *x, int rows, int d, float eps, const float *g, const float *dy, float *dx,
                          float *dg, float *db, float *mu, float *rs, int th) {
    model_ln_stats(x, rows, d, eps, mu, rs, th);
#pragma omp parallel for num_threads(th) schedule(static) if ((long)rows * d > 32768)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * d, *dr = dy + (size_t)r * d;
        float *o = dx + (size_t)r * d;
        const float m = mu[r], s = rs[r];
        double s1 = 0, s2 = 0;
        for (int j = 0; j < d; j++) {
            const double gd = (double)dr[j] * g[j];
            s1 += gd;
            s2 += gd * ((xr[j] - m) * s);
        }
        const float a1 = (float)(s1 / d), a2 = (float)(s2 / d);
        for (int j = 0; j < d; j++) {
            const float xh = (xr[j] - m) * s;
            o[j] += s * (dr[j] * g[j] - a1 - xh * a2);
        }
    }
    if (!dg && !db) return;
#pragma omp parallel for num_threads(th) schedule(static) if ((long)rows * d > 32768)
    for (int j0 = 0; j0 < d; j0 += 64) {
        const int j1 = j0 + 64 < d ? j0 + 64 : d;
        float ag[64], ab[64];
        for (int j = j0; j < j1; j++) ag[j - j0] = ab[j - j0] = 0.0f;
        for (int r = 0; r < rows; r++) {
            const float *xr = x + (size_t)r * d, *dr = dy + (size_t)r * d;
            for (int j = j0; j < j1; j++) {
                ag[j - j0] += dr[j] * ((xr[j] - mu[r]) * rs[r]);
                ab[j - j0] += dr[j];
            }
        }
        for (int j = j0; j < j1; j++) {
            if (dg) dg[j] += ag[j - j0];
            if (db) db[j] += ab[j - j0];
        }
    }
}

/* du = act'(u + b) * da; u, du: [rows, H] or [rows, 2H] (SwiGLU: x1 | x2).
 * The derivatives use the forward pass's erf and exp (src/model/fastmath.h);
 * one branch-free loop per activation, so that GCC vectorises them. b may be
 * NULL (no bias): then zb, H (2H for SwiGLU) zeros, stands in for it. */
WB_CLONES static void gelu_bwd_row(const float *u, const float *b, const float *da, float *du, int H) {
    for (int j = 0; j < H; j++) {
        const float v = u[j] + b[j];
        const float cdf = 0.5f * (1.0f + wb_erf(v * 0.70710678118654752f));
        const float pdf = 0.39894228040143268f * wb_exp(-0.5f * v * v);
        du[j] = da[j] * (cdf + v * pdf);
    }
}

WB_CLONES static void quick_gelu_bwd_row(const float *u, const float *b, const float *da, float *du, int H) {
    for (int j = 0; j < H; j++) {
        const float v = u[j] + b[j];
        const float s = 1.0f / (1.0f + wb_exp(-1.702f * v));
        du[j] = da[j] * (s + 1.702f * v * s * (1.0f - s));
    }
}

WB_CLONES static void swiglu_bwd_row(const float *u1, const float *u2, const float *b1, const float *b2,
                                     const float *da, float *d1, float *d2, int H) {
    for (int j = 0; j < H; j++) {
        const float x1 = u1[j] + b1[j], x2 = u2[j] + b2[j];
        const float s = 1.0f / (1.0f + wb_exp(-x1));
        d1[j] = da[j] * x2 * (s + x1 * s * (1.0f - s));
        d2[j] = da[j] * x1 * s;
    }
}

static void act_bwd(act_t act, const float *u, const float *b, const float *zb, const float *da, float *du, int rows,
                    int H, int th) {
    const float *bb = b ? b : zb;
#pragma omp parallel for num_threads(th) schedule(static) if ((long)rows * H > 65536)
    for (int r = 0; r < rows; r++) {
        const float *dr = da + (size_t)r * H;
        if (act == ACT_SWIGLU) {
            const float *u1 = u + (size_t)r * 2 * H;
            float *d1 = du + (size_t)r * 2 * H;
            swiglu_bwd_row(u1, u1 + H, bb, bb + H, dr, d1, d1 + H, H);
        } else if (act == ACT_GELU) {
            gelu_bwd_row(u + (size_t)r * H, bb, dr, du + (size_t)r * H, H);
        } else {
            quick_gelu_bwd_row(u + (size_t)r * H, bb, dr, du + (size_t)r * H, H);
        }
    }
}

/* Attention backward: from dO [rows, D] to dqkv [rows, 3D]. */
static void attention_bwd(const float *qkv, const float *probs, const float *dO, int n, int T, int D, int heads,
                          float *dqkv, float *scratch, int th) {
    const int dh = D / heads;
    const float scale = 1.0f / sqrtf((float)dh);
    const int jobs = n * heads;
#pragma omp parallel for num_threads(th) schedule(dynamic, 1) if (jobs > 1)
    for (int job = 0; job < jobs; job++) {
        const int b = job / heads, hh = job % heads;
        float *dS = scratch + (size_t)omp_get_thread_num() * T * T;
        const size_t base = (size_t)b * T * 3 * D + (size_t)hh * dh;
        const float *q = qkv + base, *k = q + D, *v = q + 2 * D;
        const float *P = probs + (size_t)job * T * T;
        const float *dOh = dO + (size_t)b * T * D + (size_t)hh * dh;
        float *dq = dqkv + base, *dk = dq + D, *dv = dq + 2 * D;
        core_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, dh, T, 1.0f, P, T, dOh, D, 0.0f, dv, 3 * D);
        core_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, dh, 1.0f, dOh, D, v, 3 * D, 0.0f, dS, T);
        for (int i = 0; i < T; i++) {
            float *row = dS + (size_t)i * T;
            const float *pr = P + (size_t)i * T;
            double dot = 0;
            for (int j = 0; j < T; j++) dot += (double)pr[j] * row[j];
            const float d = (float)dot;
            for (int j = 0; j < T; j++) row[j] = pr[j] * (row[j] - d);
        }
        core_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, dh, T, scale, dS, T, k, 3 * D, 0.0f, dq, 3 * D);
        core_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, dh, T, scale, dS, T, q, 3 * D, 0.0f, dk, 3 * D);
    }
}

/* z = dx * ls (or dx); dls += sum_r dx * (y + b) */
static void scale_bwd(const float *dx, const float *ls, const float *y, const float *b, float *z, float *dls, int rows,
                      int D, int th) {
#pragma omp parallel for num_threads(th) schedule(static) if ((long)rows * D > 65536)
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < D; j++) z[(size_t)r * D + j] = ls ? dx[(size_t)r * D + j] * ls[j] : dx[(size_t)r * D + j];
    if (!dls) return;
#pragma omp parallel for num_threads(th) schedule(static) if ((long)rows * D > 32768)
    for (int j0 = 0; j0 < D; j0 += 64) {
        const int j1 = j0 + 64 < D ? j0 + 64 : D;
        float acc[64];
        for (int j = j0; j < j1; j++) acc[j - j0] = 0.0f;
        for (int r = 0; r < rows; r++)
            for (int j = j0; j < j1; j++) acc[j - j0] += dx[(size_t)r * D + j] * (y[(size_t)r * D + j] + (b ? b[j] : 0.0f));
        for (int j = j0; j < j1; j++) dls[j] += acc[j - j0];
    }
}

typedef struct {
    float *dx, *dz, *dh, *dqkv, *dO, *du, *da, *dS, *mu, *rs, *zb; /* zb: h1 zeros (a missing fc1 bias) */
} bwd_bufs;

static int ws_reserve(bwd_ws *ws, const wobble_model *m, int n, int T, int th, bwd_bufs *b) {
    const size_t D = (size_t)m->dim, H = (size_t)m->hidden, rows = (size_t)n * T;
    const size_t h1 = m->act == ACT_SWIGLU ? 2 * H : H;
    const size_t need = rows * D * 4 + rows * 3 * D + rows * h1 + rows * H + (size_t)th * T * T + 2 * rows + h1;
    if (need > ws->cap) {
        free(ws->buf);
        ws->buf = malloc(sizeof(float) * need);
        ws->cap = ws->buf ? need : 0;
        if (!ws->buf) return -1;
    }
    float *p = ws->buf;
    b->dx = p, p += rows * D;
    b->dz = p, p += rows * D;
    b->dh = p, p += rows * D;
    b->dO = p, p += rows * D;
    b->dqkv = p, p += rows * 3 * D;
    b->du = p, p += rows * h1;
    b->da = p, p += rows * H;
    b->dS = p, p += (size_t)th * T * T;
    b->mu = p, p += rows;
    b->rs = p, p += rows;
    b->zb = p;
    memset(b->zb, 0, sizeof(float) * h1);
    return 0;
}

void train_bwd_ws_free(bwd_ws *ws) {
    if (!ws) return;
    free(ws->buf);
    free(ws->dpatch);
    memset(ws, 0, sizeof *ws);
}

/* Block l backward: b->dx holds dL/dx_out and becomes dL/dx_in. */
static void block_bwd(const wobble_model *m, const block_t *bk, const block_rec *r, const gblock_t *g, int n, int T,
                      bwd_bufs *b, int th) {
    const int D = m->dim, H = m->hidden, rows = n * T, H1 = m->act == ACT_SWIGLU ? 2 * H : H;
    /* MLP branch */
    scale_bwd(b->dx, bk->ls2, r->y2, bk->fc2.b, b->dz, g ? g->ls2 : NULL, rows, D, th);
    colsum_acc(b->dz, rows, D, D, g ? g->fc2_b : NULL, th);
    linear_bwd(b->dz, rows, D, D, r->a, H, H, bk->fc2.w, g ? g->fc2_w : NULL, NULL, b->da, H, 0.0f);
    act_bwd(m->act, r->u, bk->fc1.b, b->zb, b->da, b->du, rows, H, th);
    colsum_acc(b->du, rows, H1, H1, g ? g->fc1_b : NULL, th);
    linear_bwd(b->du, rows, H1, H1, r->h2, D, D, bk->fc1.w, g ? g->fc1_w : NULL, NULL, b->dh, D, 0.0f);
    layernorm_bwd(r->x_mid, rows, D, m->eps, bk->ln2.g, b->dh, b->dx, g ? g->ln2_g : NULL, g ? g->ln2_b : NULL, b->mu,
                  b->rs, th);
    /* attention branch */
    scale_bwd(b->dx, bk->ls1, r->y1, bk->proj.b, b->dz, g ? g->ls1 : NULL, rows, D, th);
    colsum_acc(b->dz, rows, D, D, g ? g->proj_b : NULL, th);
    linear_bwd(b->dz, rows, D, D, r->o, D, D, bk->proj.w, g ? g->proj_w : NULL, NULL, b->dO, D, 0.0f);
    attention_bwd(r->qkv, r->probs, b->dO, n, T, D, m->heads, b->dqkv, b->dS, th);
    colsum_acc(b->dqkv, rows, 3 * D, 3 * D, g ? g->qkv_b : NULL, th);
    if (bk->qkv.w) {
        linear_bwd(b->dqkv, rows, 3 * D, 3 * D, r->h1, D, D, bk->qkv.w, g ? g->qkv_w : NULL, NULL, b->dh, D, 0.0f);
    } else {
        const float *w[3] = {bk->wq, bk->wk, bk->wv};
        for (int j = 0; j < 3; j++)
            linear_bwd(b->dqkv + (size_t)j * D, rows, D, 3 * D, r->h1, D, D, w[j],
                       g && g->qkv_w ? g->qkv_w + (size_t)j * D * D : NULL, NULL, b->dh, D, j ? 1.0f : 0.0f);
    }
    layernorm_bwd(r->x_in, rows, D, m->eps, bk->ln1.g, b->dh, b->dx, g ? g->ln1_g : NULL, g ? g->ln1_b : NULL, b->mu,
                  b->rs, th);
}

/* The head and the final norm on the host, n CLS rows: demb -> dL/dxcls
 * (dn, dcls, mu, rs: [n, D], [n, D], [n], [n]). */
static void head_bwd(wobble_model *m, const fwd_tape *t, const float *demb, const grads_t *g, float *dn, float *dcls,
                     float *mu, float *rs, int th) {
    const int n = t->n, D = m->dim, E = m->embed_dim;
    if (m->head.w) {
        if (g->head_w)
            core_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, E, D, n, 1.0f, demb, E, t->ncls, D, 1.0f, g->head_w, D);
        core_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, D, E, 1.0f, demb, E, m->head.w, D, 0.0f, dn, D);
    } else {
        memcpy(dn, demb, sizeof(float) * (size_t)n * D);
    }
    memset(dcls, 0, sizeof(float) * (size_t)n * D);
    layernorm_bwd(t->xcls, n, D, m->eps, m->final_norm.g, dn, dcls, g->fin_g, g->fin_b, mu, rs, th);
}

/* The blocks and the embedding on the GPU (src/model/device.c): the tape
 * is there; the gradients come back into g's host buffers. */
static int device_backward(wobble_ctx *ctx, wobble_model *m, fwd_tape *t, const float *demb, const grads_t *g,
                           float *dpixels) {
    const int th = wobble_ctx_threads(ctx);
    const int n = t->n, D = m->dim, np = t->gh * t->gw, L = m->depth;
    float *buf = malloc(sizeof(float) * ((size_t)2 * n * D + 2 * (size_t)n + (size_t)np * D));
    float **blk = calloc((size_t)(L ? L : 1) * MODEL_BLOCK_GRADS, sizeof *blk);
    if (!buf || !blk) {
        free(buf);
        free(blk);
        return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory for the backward pass", m->path);
    }
    float *dn = buf, *dcls = dn + (size_t)n * D, *mu = dcls + (size_t)n * D, *rs = mu + n, *dppos = rs + n;
    core_blas_threads(th);
    head_bwd(m, t, demb, g, dn, dcls, mu, rs, th);
    if (g->blk)
        for (int l = 0; l < L; l++) {
            const gblock_t *b = &g->blk[l];
            float *const p[MODEL_BLOCK_GRADS] = {b->ln1_g, b->ln1_b, b->qkv_w, b->qkv_b, b->proj_w, b->proj_b, b->ln2_g,
                                                 b->ln2_b, b->fc1_w, b->fc1_b, b->fc2_w, b->fc2_b, b->ls1,  b->ls2};
            memcpy(blk + (size_t)l * MODEL_BLOCK_GRADS, p, sizeof p);
        }
    const int below = g->lowest == 0 && (g->embed || dpixels);
    const model_device_grads dg = {g->blk ? blk : NULL, g->patch_w, g->patch_b, g->cls, g->pos, g->reg, g->pre_g,
                                   g->pre_b, below && g->pos ? dppos : NULL, g->lowest, g->embed};
    int rc = model_device_backward(ctx, m, dcls, &dg, dpixels);
    if (rc == WOBBLE_OK && below && g->pos) rc = model_pos_backward(ctx, m, t->gh, t->gw, dppos, g->pos + D);
    free(buf);
    free(blk);
    return rc;
}

int train_backward(wobble_ctx *ctx, wobble_model *m, fwd_tape *t, const float *demb, const grads_t *g, bwd_ws *ws,
                   float *dpixels) {
    if (m->device) return device_backward(ctx, m, t, demb, g, dpixels);
    if (core_blas_load(ctx) != WOBBLE_OK) return wobble_last_status(ctx);
    const int th = wobble_ctx_threads(ctx);
    const int n = t->n, T = t->T, D = m->dim, rows = t->rows, R = m->n_reg, np = t->gh * t->gw;
    const int P = m->patch, K = 3 * P * P;
    bwd_bufs b;
    if (ws_reserve(ws, m, n, T, th, &b) != 0)
        return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory for the backward pass (%d images)", m->path, n);
    core_blas_threads(th);
    /* head and final norm, CLS rows only */
    float *dcls = b.dh; /* [n, D] */
    head_bwd(m, t, demb, g, b.dz, dcls, b.mu, b.rs, th);
    memset(b.dx, 0, sizeof(float) * (size_t)rows * D);
    for (int i = 0; i < n; i++) memcpy(b.dx + (size_t)i * T * D, dcls + (size_t)i * D, sizeof(float) * D);
    /* blocks, top down */
    for (int l = m->depth - 1; l >= g->lowest; l--) {
        const block_rec *r = &t->blk[l];
        if (t->checkpoint) {
            memcpy(m->arena.x, t->blk[l].x_in, sizeof(float) * (size_t)rows * D);
            model_block_forward(m, l, m->arena.x, n, T, &t->scratch, th);
            r = &t->scratch;
        }
        block_bwd(m, &m->blocks[l], r, g->blk ? &g->blk[l] : NULL, n, T, &b, th);
    }
    if (g->lowest > 0 || (!g->embed && !dpixels)) return WOBBLE_OK;
    /* ln_pre (CLIP) */
    float *dx0 = b.dx;
    if (m->pre_norm.g) {
        memset(b.dz, 0, sizeof(float) * (size_t)rows * D);
        layernorm_bwd(t->x0, rows, D, m->eps, m->pre_norm.g, b.dx, b.dz, g->pre_g, g->pre_b, b.mu, b.rs, th);
        dx0 = b.dz;
    }
    /* tokens: x0[b, 0] = cls + pos[0]; x0[b, 1 + r] = reg[r]; x0[b, 1 + R + i] = patch_i W^T + b + pos_i */
    for (int i = 0; i < n; i++) {
        const float *row = dx0 + (size_t)i * T * D;
        for (int j = 0; j < D; j++) {
            if (g->cls) g->cls[j] += row[j];
            if (g->pos) g->pos[j] += row[j];
        }
        if (g->reg)
            for (int rr = 0; rr < R; rr++)
                for (int j = 0; j < D; j++) g->reg[(size_t)rr * D + j] += row[(size_t)(1 + rr) * D + j];
    }
    float *dpe = b.dh; /* [n * np, D] gathered patch-row gradients */
    for (int i = 0; i < n; i++)
        memcpy(dpe + (size_t)i * np * D, dx0 + ((size_t)i * T + 1 + R) * D, sizeof(float) * (size_t)np * D);
    colsum_acc(dpe, n * np, D, D, g->patch_b, th);
    if (g->pos) {
        float *dpp = b.dO; /* [np, D]: sum over images */
        memset(dpp, 0, sizeof(float) * (size_t)np * D);
        for (int i = 0; i < n; i++)
            for (size_t k = 0; k < (size_t)np * D; k++) dpp[k] += dpe[(size_t)i * np * D + k];
        int rc = model_pos_backward(ctx, m, t->gh, t->gw, dpp, g->pos + D);
        if (rc) return rc;
    }
    if (g->patch_w)
        core_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, D, K, n * np, 1.0f, dpe, D, t->patches, K, 1.0f, g->patch_w,
                    K);
    if (dpixels) {
        const size_t need = (size_t)n * np * K;
        if (need > ws->cap_dpatch) {
            free(ws->dpatch);
            ws->dpatch = malloc(sizeof(float) * need);
            ws->cap_dpatch = ws->dpatch ? need : 0;
            if (!ws->dpatch) return core_seterr(ctx, WOBBLE_ENOMEM, "backward: out of memory");
        }
        core_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n * np, K, D, 1.0f, dpe, D, m->patch_w, K, 0.0f,
                    ws->dpatch, K);
        const int H = t->H, W = t->W, gw = t->gw;
        memset(dpixels, 0, sizeof(float) * (size_t)n * 3 * H * W);
        for (int i = 0; i < n; i++)
            for (int pi = 0; pi < np; pi++) {
                const int py = pi / gw, px = pi % gw;
                const float *src = ws->dpatch + ((size_t)i * np + pi) * K;
                for (int c = 0; c < 3; c++)
                    for (int ky = 0; ky < P; ky++)
                        memcpy(dpixels + (((size_t)i * 3 + c) * H + (size_t)py * P + ky) * W + (size_t)px * P,
                               src + ((size_t)c * P + ky) * P, sizeof(float) * P);
            }
    }
    return WOBBLE_OK;
}
