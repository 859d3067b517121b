/*
 * Forward pass of a pre-norm ViT image tower, shared by CLIP, DINOv2 and ViT.
 *
 * Layout: activations are [batch * tokens, width] row-major floats in an
 * arena owned by the model and grown only when a larger batch or input is
 * seen, so no allocation happens per layer or per image. Linear layers are
 * wobble's own AVX-512 fp32 kernel on weights packed at load (gemm_f32.h),
 * or, without AVX-512, OpenBLAS sgemm calls (x W^T with PyTorch's [out, in]
 * weights, used in place from the mmapped checkpoint); at precision bf16 the
 * bf16 kernel (gemm_bf16.h). Attention runs one (image, head) pair per
 * OpenMP thread with single-threaded sgemm inside.
 *
 * Each step is a separate function with explicit inputs and outputs
 * (linear_fwd, layernorm_fwd, act_fwd, attention_fwd, ...), so the backward
 * pass needed for fine-tuning can be written beside each one.
 */
#include "model.h"
#include "fastmath.h"

#include "../core/blas.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* ------------------------------------------------------------------ kernels */

/* y[rows, out] = x[rows, in] W^T (+ b when with_bias). With the bias, it is
 * written first and the GEMM accumulates onto it (beta = 1), saving
 * OpenBLAS's zeroing pass; callers that pass the output through another
 * element-wise step (activation, residual) add the bias there instead.
 * Layers packed in bf16 (L->bp) run the bf16 kernel instead, with the bias
 * added in its epilogue, using the arena's bf16 scratch; layers packed for
 * the AVX-512 fp32 kernel (L->fp) run that one, bias in its epilogue too. */
static void linear_fwd(const float *x, int rows, const linear_t *L, float *y, int with_bias, arena_t *a,
                       int threads) {
    if (L->bp) {
        model_bf16_gemm(x, rows, L->in, L->bp, with_bias ? L->b : NULL, 0, y, L->out, a->bf16s, threads);
        return;
    }
    if (L->fp) {
        model_f32_gemm(x, rows, L->in, L->fp, with_bias ? L->b : NULL, 0, y, L->out, threads);
        return;
    }
    float beta = 0.0f;
    if (with_bias && L->b) {
        const float *b = L->b;
        const int o = L->out;
#pragma omp parallel for num_threads(threads) schedule(static) if ((long)rows * o > 65536)
        for (int r = 0; r < rows; r++) memcpy(y + (size_t)r * o, b, sizeof(float) * o);
        beta = 1.0f;
    }
    core_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, L->out, L->in, 1.0f, x, L->in, L->w, L->in, beta, y,
                L->out);
}

/* Sum of n floats over eight fixed partial sums (same bits on every ISA). */
WB_CLONES static float sum8(const float *x, int n, float shift) {
    float s8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) s8[l] += x[j + l] - shift;
    float s = ((s8[0] + s8[1]) + (s8[2] + s8[3])) + ((s8[4] + s8[5]) + (s8[6] + s8[7]));
    for (; j < n; j++) s += x[j] - shift;
    return s;
}

WB_CLONES static float sumsq8(const float *x, int n, float mu) {
    float s8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) {
            const float t = x[j + l] - mu;
            s8[l] += t * t;
        }
    float s = ((s8[0] + s8[1]) + (s8[2] + s8[3])) + ((s8[4] + s8[5]) + (s8[6] + s8[7]));
    for (; j < n; j++) s += (x[j] - mu) * (x[j] - mu);
    return s;
}

WB_CLONES static void norm_row(const float *x, float *y, const float *g, const float *b, int d, float mu, float rstd) {
    for (int j = 0; j < d; j++) y[j] = (x[j] - mu) * rstd * g[j] + b[j];
}

/* qkv[rows, 3D] = x W_qkv^T + b, from one packed matrix or from three
 * separate ones written side by side (ldc = 3D), without copying weights. */
static void qkv_fwd(const float *x, int rows, const block_t *bk, float *y, arena_t *a, int threads) {
    if (bk->qkv.w || bk->qkv.bp || bk->qkv.fp) { /* the packs hold separate q, k, v as one matrix */
        linear_fwd(x, rows, &bk->qkv, y, 1, a, threads);
        return;
    }
    const int D = bk->qkv.in, o = 3 * D;
#pragma omp parallel for num_threads(threads) schedule(static) if ((long)rows * o > 65536)
    for (int r = 0; r < rows; r++) memcpy(y + (size_t)r * o, bk->qkv.b, sizeof(float) * o);
    const float *w[3] = {bk->wq, bk->wk, bk->wv};
    for (int j = 0; j < 3; j++)
        core_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, D, D, 1.0f, x, D, w[j], D, 1.0f, y + (size_t)j * D, o);
}

/* Per-row mean and 1 / sqrt(var + eps), computed exactly as layernorm_fwd
 * does (the backward pass recomputes them instead of storing them). */
void model_ln_stats(const float *x, int rows, int d, float eps, float *mu, float *rstd, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if ((long)rows * d > 65536)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * d;
        const float m = sum8(xr, d, 0.0f) / (float)d;
        const float var = sumsq8(xr, d, m) / (float)d;
        mu[r] = m;
        rstd[r] = 1.0f / sqrtf(var + eps);
    }
}

/* y = (x - mean) / sqrt(var + eps) * g + b per row, two-pass statistics.
 * With yb instead of y, the rows go out rounded to bf16 (rows of
 * (d + 1) & ~1, a bf16 GEMM's operand), each piece rounded while in L1. */
static void layernorm_to(const float *x, int rows, int d, const norm_t *n, float eps, float *y, uint16_t *yb,
                         int threads) {
    enum { PIECE = 1024 };
    const int kp = (d + 1) & ~1;
#pragma omp parallel for num_threads(threads) schedule(static) if ((long)rows * d > 65536)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * d;
        const float mu = sum8(xr, d, 0.0f) / (float)d;
        const float var = sumsq8(xr, d, mu) / (float)d;
        const float rstd = 1.0f / sqrtf(var + eps);
        if (!yb) {
            norm_row(xr, y + (size_t)r * d, n->g, n->b, d, mu, rstd);
            continue;
        }
        float t[PIECE];
        for (int j = 0; j < d; j += PIECE) {
            const int len = d - j < PIECE ? d - j : PIECE;
            norm_row(xr + j, t, n->g + j, n->b + j, len, mu, rstd);
            model_bf16_round(t, len, j + len == d ? kp - j : len, yb + (size_t)r * kp + j);
        }
    }
}

static void layernorm_fwd(const float *x, int rows, int d, const norm_t *n, float eps, float *y, int threads) {
    layernorm_to(x, rows, d, n, eps, y, NULL, threads);
}

/*
 * Element-wise kernels. Each is compiled twice (AVX2 and baseline) and picked
 * at load time; both give identical results because every element sees the
 * same IEEE single-precision operations and reductions run over eight
 * explicit partial sums in a fixed order, whatever the vector width.
 */

/* x = act(x + bias) on one row */
WB_CLONES static void gelu_row(float *x, const float *bias, int n) {
    for (int i = 0; i < n; i++) {
        const float v = x[i] + bias[i];
        x[i] = 0.5f * v * (1.0f + wb_erf(v * 0.70710678118654752f));
    }
}

WB_CLONES static void quick_gelu_row(float *x, const float *bias, int n) {
    for (int i = 0; i < n; i++) {
        const float v = x[i] + bias[i];
        x[i] = v / (1.0f + wb_exp(-1.702f * v));
    }
}

/* o = silu(a + ba) * (b + bb) */
WB_CLONES static void swiglu_row(const float *a, const float *b, const float *ba, const float *bb, float *o, int h) {
    for (int j = 0; j < h; j++) {
        const float u = a[j] + ba[j];
        o[j] = u / (1.0f + wb_exp(-u)) * (b[j] + bb[j]);
    }
}

/* In-place softmax of one row of n scores. */
WB_CLONES static void softmax_row(float *r, int n) {
    float m8[8];
    for (int l = 0; l < 8; l++) m8[l] = r[0];
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) m8[l] = r[j + l] > m8[l] ? r[j + l] : m8[l];
    float mx = m8[0];
    for (int l = 1; l < 8; l++) mx = m8[l] > mx ? m8[l] : mx;
    for (; j < n; j++) mx = r[j] > mx ? r[j] : mx;
    for (int k = 0; k < n; k++) r[k] = wb_exp(r[k] - mx);
    float s8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (j = 0; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) s8[l] += r[j + l];
    float sum = ((s8[0] + s8[1]) + (s8[2] + s8[3])) + ((s8[4] + s8[5]) + (s8[6] + s8[7]));
    for (; j < n; j++) sum += r[j];
    const float inv = 1.0f / sum;
    for (int k = 0; k < n; k++) r[k] *= inv;
}

/* Activation of fc1's output plus its bias (length h, or 2h for SwiGLU):
 * in place on [rows, h] for GELU / QuickGELU; SwiGLU reads [rows, 2h]
 * (x1 | x2) and writes out [rows, h] = silu(x1) * x2. */
static void act_fwd(act_t act, float *x, const float *bias, int rows, int h, float *out, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if ((long)rows * h > 65536)
    for (int r = 0; r < rows; r++) {
        if (act == ACT_SWIGLU) {
            const float *a = x + (size_t)r * 2 * h;
            swiglu_row(a, a + h, bias, bias + h, out + (size_t)r * h, h);
        } else if (act == ACT_GELU) {
            gelu_row(x + (size_t)r * h, bias, h);
        } else {
            quick_gelu_row(x + (size_t)r * h, bias, h);
        }
    }
}

/* Per-thread bf16 attention scratch (elements), each piece a multiple of 32
 * (64 bytes, so every piece stays aligned): the keys packed for S = Q K^T,
 * the values packed for O = P V, and the rounded Q or P. */
static size_t attn_bf16_piece(size_t e) { return (e + 31) & ~(size_t)31; }
static size_t attn_bf16_elems(int T, int dh) {
    return attn_bf16_piece(model_bf16_pack_elems(T, dh)) + attn_bf16_piece(model_bf16_pack_elems(dh, T)) +
           attn_bf16_piece(model_bf16_scratch_elems(T, T > dh ? T : dh));
}

/* Per-thread fp32-kernel attention scratch (floats; pieces of 16 floats,
 * 64 bytes): the keys packed for S = Q K^T and the values for O = P V. */
static size_t attn_f32_piece(size_t e) { return (e + 15) & ~(size_t)15; }
static size_t attn_f32_elems(int T, int dh) {
    return attn_f32_piece(model_f32_pack_elems(T, dh)) + attn_f32_piece(model_f32_pack_elems(dh, T));
}

/* Multi-head self-attention from packed qkv [n*T, 3D] into out [n*T, D]. */
/* With keep, the softmax probabilities of job (image b, head h) stay in
 * scores + (b * heads + h) * T * T for the backward pass; otherwise scores is
 * one T x T scratch per thread. With bf (precision bf16, attn_bf16_elems per
 * thread), qkv16 replaces qkv: the rows already rounded to bf16 by the qkv
 * GEMM's epilogue (row stride (3D + 1) & ~1), and both products take bf16
 * operands with fp32 accumulation, as the linear layers do: S = Q K^T (the
 * queries read in place, the keys' words moved into the kernel's panels),
 * then scaled in fp32, and O = bf16(P) V; the softmax stays fp32 (scaling,
 * softmax and the rounding of P run row by row while the row is in L1,
 * model_bf16_softmax_rows; within a bf16 step of the exact softmax, not the
 * fp32 path's bits). With fk (the fp32 kernel's
 * scratch, attn_f32_elems per thread), both products run on wobble's fp32
 * kernel: S = Q K^T then scaled, O = P V; otherwise OpenBLAS sgemm. With
 * bf and out16, O goes out rounded to bf16 (rows of D) instead of to out. */
static void attention_fwd(const float *qkv, const uint16_t *qkv16, int n, int T, int D, int heads, int causal,
                          float *out, uint16_t *out16, float *scores, int keep, uint16_t *bf, float *fk, int threads) {
    const int dh = D / heads;
    const float scale = 1.0f / sqrtf((float)dh);
    const int jobs = n * heads;
    const size_t bfe = bf ? attn_bf16_elems(T, dh) : 0, fke = fk ? attn_f32_elems(T, dh) : 0;
    const size_t ld16 = (size_t)(3 * D + 1) & ~(size_t)1;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (jobs > 1)
    for (int job = 0; job < jobs; job++) {
        const int b = job / heads, hh = job % heads;
        float *S = scores + (size_t)(keep ? job : omp_get_thread_num()) * T * T;
        float *o = out + (size_t)b * T * D + (size_t)hh * dh;
        if (bf) {
            uint16_t *kb = bf + (size_t)omp_get_thread_num() * bfe;
            uint16_t *vb = kb + attn_bf16_piece(model_bf16_pack_elems(T, dh));
            uint16_t *ab = vb + attn_bf16_piece(model_bf16_pack_elems(dh, T));
            const uint16_t *q16 = qkv16 + (size_t)b * T * ld16 + (size_t)hh * dh;
            model_bf16_packed kv, vv; /* keys: W[t][j] = K[t][j]; values: W[j][t] = V[t][j] */
            model_bf16_pack16_into(&kv, kb, q16 + D, T, dh, ld16, 0);
            if (dh % 2 == 0) {
                model_bf16_gemm_rounded(q16, T, (int)ld16, &kv, NULL, 0, S, T, 1);
            } else { /* the queries copied into rows with the zero pad column the kernel reads */
                const int kp = dh + 1;
                for (int t = 0; t < T; t++) {
                    memcpy(ab + (size_t)t * kp, q16 + (size_t)t * ld16, sizeof(uint16_t) * (size_t)dh);
                    ab[(size_t)t * kp + dh] = 0;
                }
                model_bf16_gemm_rounded(ab, T, 0, &kv, NULL, 0, S, T, 1);
            }
            /* scale, softmax and rounding row by row in L1, straight into O = P V's operand */
            model_bf16_softmax_rows(S, T, causal, scale, ab);
            model_bf16_pack16_into(&vv, vb, q16 + 2 * D, dh, T, ld16, 1);
            if (out16) /* O rounded, as the projection's operand (rows of D, D even) */
                model_bf16_gemm_post_bf16(NULL, T, 0, &vv, NULL, out16 + (size_t)b * T * D + (size_t)hh * dh, D, ab, 1,
                                          NULL, NULL);
            else
                model_bf16_gemm_rounded(ab, T, 0, &vv, NULL, 0, o, D, 1);
            continue;
        }
        const float *q = qkv + (size_t)b * T * 3 * D + (size_t)hh * dh;
        const float *k = q + D, *v = q + 2 * D;
        if (fk) {
            model_f32_packed kv;
            model_f32_pack_into(&kv, fk + (size_t)omp_get_thread_num() * fke, k, T, dh, (size_t)3 * D, 0);
            model_f32_gemm(q, T, 3 * D, &kv, NULL, 0, S, T, 1);
        } else {
            core_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, dh, scale, q, 3 * D, k, 3 * D, 0.0f, S, T);
        }
        if (fk) /* wobble's kernels have no alpha: the scores are scaled after, in fp32 */
            for (size_t i = 0; i < (size_t)T * T; i++) S[i] *= scale;
        if (causal) {
            /* token i attends to tokens 0..i: the masked scores weigh exactly 0 */
            for (int i = 0; i < T; i++) {
                softmax_row(S + (size_t)i * T, i + 1);
                memset(S + (size_t)i * T + i + 1, 0, sizeof(float) * (size_t)(T - i - 1));
            }
        } else {
            for (int i = 0; i < T; i++) softmax_row(S + (size_t)i * T, T);
        }
        if (fk) {
            model_f32_packed vv; /* W[j][t] = V[t][j] */
            model_f32_pack_into(&vv, fk + (size_t)omp_get_thread_num() * fke + attn_f32_piece(model_f32_pack_elems(T, dh)),
                                v, dh, T, (size_t)3 * D, 1);
            model_f32_gemm(S, T, T, &vv, NULL, 0, o, D, 1);
        } else {
            core_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, dh, T, 1.0f, S, T, v, 3 * D, 0.0f, o, D);
        }
    }
}

/* x += ls * (y + b) (ls, b optional), row-wise */
WB_CLONES static void residual_row(float *x, const float *y, const float *b, const float *ls, int d) {
    for (int j = 0; j < d; j++) x[j] += ls[j] * (y[j] + b[j]);
}

static void residual_fwd(float *x, const float *y, const float *b, const float *ls, const float *ones,
                         const float *zeros, int rows, int d, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if ((long)rows * d > 65536)
    for (int r = 0; r < rows; r++)
        residual_row(x + (size_t)r * d, y + (size_t)r * d, b ? b : zeros, ls ? ls : ones, d);
}

/* x += ls * (in W^T + b) (ls optional) on wobble's kernels: from in16 (bf16
 * rows already rounded, L packed in bf16), or from fp32 in when L is packed
 * for a kernel and there is no LayerScale. Without LayerScale the GEMM adds
 * onto x in its epilogue (the bias with the first K slice) instead of
 * writing y for residual_fwd's pass. Returns 0 (nothing done) otherwise. */
static int residual_linear(const float *in, const uint16_t *in16, int rows, const linear_t *L, const float *ls,
                           float *x, arena_t *a, int threads) {
    const int D = L->out;
    if (in16 && ls) {
        model_bf16_gemm_rounded(in16, rows, 0, L->bp, NULL, 0, a->h, D, threads);
        residual_fwd(x, a->h, L->b, ls, a->ones, a->zeros, rows, D, threads);
    } else if (in16) {
        model_bf16_gemm_rounded(in16, rows, 0, L->bp, L->b, 1, x, D, threads);
    } else if (ls) {
        return 0;
    } else if (L->bp) {
        model_bf16_gemm(in, rows, L->in, L->bp, L->b, 1, x, D, a->bf16s, threads);
    } else if (L->fp) {
        model_f32_gemm(in, rows, L->in, L->fp, L->b, 1, x, D, threads);
    } else {
        return 0;
    }
    return 1;
}

/* ------------------------------------------------- position embeddings */

static double cubic_conv(double x, double A) {
    x = fabs(x);
    if (x <= 1.0) return ((A + 2) * x - (A + 3)) * x * x + 1;
    if (x < 2.0) return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
    return 0.0;
}

/* Weights for one axis, in -> out, as torch.nn.functional.interpolate
 * (mode="bicubic", align_corners=False): without antialias, Keys' cubic with
 * A = -0.75 at src = (i + 0.5) * r - 0.5 with clamped taps, r = 1/scale_factor
 * when one is given; with antialias, the support is widened by the reduction
 * factor and A = -0.5 (as Pillow). Returns a dense [out, in] matrix. */
static double *axis_weights(int in, int out, double scale_factor, int antialias) {
    double *W = calloc((size_t)in * out, sizeof(double));
    if (!W) return NULL;
    if (!antialias) {
        const double r = scale_factor > 0 ? 1.0 / scale_factor : (double)in / out;
        for (int i = 0; i < out; i++) {
            const double src = (i + 0.5) * r - 0.5;
            const double f = floor(src);
            const double t = src - f;
            for (int k = -1; k <= 2; k++) {
                int idx = (int)f + k;
                idx = idx < 0 ? 0 : idx >= in ? in - 1 : idx;
                W[(size_t)i * in + idx] += cubic_conv(t - k, -0.75);
            }
        }
    } else {
        const double scale = (double)in / out;
        const double support = 2.0 * (scale >= 1.0 ? scale : 1.0);
        const double inv = scale >= 1.0 ? 1.0 / scale : 1.0;
        for (int i = 0; i < out; i++) {
            const double center = scale * (i + 0.5);
            int lo = (int)(center - support + 0.5);
            if (lo < 0) lo = 0;
            int hi = (int)(center + support + 0.5);
            if (hi > in) hi = in;
            double sum = 0;
            for (int j = lo; j < hi; j++) sum += W[(size_t)i * in + j] = cubic_conv((j - center + 0.5) * inv, -0.5);
            if (sum != 0)
                for (int j = lo; j < hi; j++) W[(size_t)i * in + j] /= sum;
        }
    }
    return W;
}

/* Patch position embeddings for a gh x gw grid: the stored grid when it
 * matches, otherwise DINOv2's interpolation (facebookresearch semantics). */
static int patch_pos(wobble_ctx *ctx, wobble_model *m, int gh, int gw, const float **out) {
    const int M = m->grid, D = m->dim;
    if (gh == M && gw == M) {
        *out = m->pos + D;
        return WOBBLE_OK;
    }
    if (m->arch != ARCH_DINOV2)
        return core_seterr(ctx, WOBBLE_EINVAL,
                             "%s: input gives a %dx%d patch grid but this %s model's position embeddings are %dx%d "
                             "(use a %dx%d input)",
                             m->path, gh, gw, m->arch == ARCH_CLIP ? "CLIP" : "ViT", M, M, M * m->patch, M * m->patch);
    arena_t *a = &m->arena;
    if (a->pos && a->pos_h == gh && a->pos_w == gw) {
        *out = a->pos;
        return WOBBLE_OK;
    }
    double *Wy, *Wx;
    if (m->interp_offset != 0.0f) {
        /* scale_factor = ((gh + offset) / M, (gw + offset) / M); output size floor(M * s) */
        const double sy = (gh + (double)m->interp_offset) / M, sx = (gw + (double)m->interp_offset) / M;
        if ((int)floor(M * sy) != gh || (int)floor(M * sx) != gw)
            return core_seterr(ctx, WOBBLE_EINTERNAL, "position interpolation size mismatch");
        Wy = axis_weights(M, gh, sy, 0);
        Wx = axis_weights(M, gw, sx, 0);
    } else {
        Wy = axis_weights(M, gh, 0, m->interp_antialias);
        Wx = axis_weights(M, gw, 0, m->interp_antialias);
    }
    float *p = malloc(sizeof(float) * (size_t)gh * gw * D);
    double *tmp = malloc(sizeof(double) * (size_t)M * gw * D);
    if (!Wy || !Wx || !p || !tmp) {
        free(Wy);
        free(Wx);
        free(p);
        free(tmp);
        return core_seterr(ctx, WOBBLE_ENOMEM, "position interpolation: out of memory");
    }
    const float *src = m->pos + D; /* [M*M, D], row-major grid (y, x) */
    /* along x: tmp[y, j, :] = sum_x Wx[j, x] src[y, x, :] */
    for (int y = 0; y < M; y++)
        for (int j = 0; j < gw; j++) {
            double *t = tmp + ((size_t)y * gw + j) * D;
            for (int c = 0; c < D; c++) t[c] = 0;
            for (int x = 0; x < M; x++) {
                const double w = Wx[(size_t)j * M + x];
                if (w == 0) continue;
                const float *s = src + ((size_t)y * M + x) * D;
                for (int c = 0; c < D; c++) t[c] += w * s[c];
            }
        }
    /* along y */
    for (int i = 0; i < gh; i++)
        for (int j = 0; j < gw; j++) {
            float *o = p + ((size_t)i * gw + j) * D;
            for (int c = 0; c < D; c++) {
                double acc = 0;
                for (int y = 0; y < M; y++) acc += Wy[(size_t)i * M + y] * tmp[((size_t)y * gw + j) * D + c];
                o[c] = (float)acc;
            }
        }
    free(Wy);
    free(Wx);
    free(tmp);
    free(a->pos);
    a->pos = p;
    a->pos_h = gh;
    a->pos_w = gw;
    *out = p;
    return WOBBLE_OK;
}

/* ------------------------------------------------------------------ arena */

/* a scratch buffer of n floats (the old contents are not kept) */
static int grow(float **p, size_t n) {
    free(*p);
    *p = core_alloc_big(sizeof(float) * (n ? n : 1));
    return *p ? 0 : -1;
}

/* Buffers for rows = batch * tokens of a stack of width D and MLP width H;
 * patch_k > 0 also reserves the image tower's im2col buffer. */
static int arena_reserve(arena_t *a, int dim, int hidden, int heads, act_t act, size_t rows, size_t npatch_rows,
                         int patch_k, int T, int bf16, int f32k, int threads) {
    const size_t D = (size_t)dim, H = (size_t)hidden;
    if (rows > a->cap_rows) {
        size_t h1 = act == ACT_SWIGLU ? 2 * H : H;
        if (grow(&a->x, rows * D) || grow(&a->h, rows * D) || grow(&a->qkv, rows * 3 * D) ||
            grow(&a->attn, rows * D) || grow(&a->mlp, rows * h1) ||
            (act == ACT_SWIGLU && grow(&a->mlp2, rows * H))) {
            a->cap_rows = 0; /* some buffers are gone: the next call allocates them all again */
            return -1;
        }
        a->cap_rows = rows;
    }
    if (!a->ones) {
        size_t w = 2 * (D > H ? D : H);
        a->ones = malloc(sizeof(float) * w);
        a->zeros = calloc(w, sizeof(float));
        if (!a->ones || !a->zeros) {
            free(a->ones), free(a->zeros); /* both or neither, so a later call retries */
            a->ones = a->zeros = NULL;
            return -1;
        }
        for (size_t i = 0; i < w; i++) a->ones[i] = 1.0f;
    }
    size_t sc = (size_t)threads * T * T;
    if (sc > a->cap_scores) {
        if (grow(&a->scores, sc)) {
            a->cap_scores = 0;
            return -1;
        }
        a->cap_scores = sc;
    }
    size_t pr = npatch_rows * (size_t)patch_k;
    if (pr > a->cap_patches) {
        if (grow(&a->patches, pr)) {
            a->cap_patches = 0;
            return -1;
        }
        a->cap_patches = pr;
    }
    if (bf16) {
        /* the widest GEMM input: fc2's (hidden), the qkv / proj / fc1 ones (dim), the patch embedding's */
        int kmax = dim > hidden ? dim : hidden;
        if (patch_k > kmax) kmax = patch_k;
        const size_t need = model_bf16_scratch_elems((int)(rows > npatch_rows ? rows : npatch_rows), kmax);
        if (need > a->cap_bf16s) {
            uint16_t *s = core_alloc_big(need * sizeof(uint16_t));
            if (!s) return -1;
            free(a->bf16s);
            a->bf16s = s;
            a->cap_bf16s = need;
        }
        const size_t na = (size_t)threads * attn_bf16_elems(T, dim / heads);
        if (na > a->cap_bf16a) {
            uint16_t *s = core_alloc_big(na * sizeof(uint16_t));
            if (!s) return -1;
            free(a->bf16a);
            a->bf16a = s;
            a->cap_bf16a = na;
        }
    }
    if (f32k) {
        const size_t na = (size_t)threads * attn_f32_elems(T, dim / heads);
        if (na > a->cap_f32a) {
            float *s = core_alloc_big(na * sizeof(float));
            if (!s) return -1;
            free(a->f32a);
            a->f32a = s;
            a->cap_f32a = na;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ forward */

wobble_embed_params wobble_embed_default_params(void) {
    wobble_embed_params p;
    memset(&p, 0, sizeof p);
    p.normalize = 0;
    return p;
}

int wobble_model_num_patches(const wobble_model *m, int h, int w) {
    if (!m || h < m->patch || w < m->patch) return 0;
    return (h / m->patch) * (w / m->patch);
}

/* One pre-norm block on x ([n * T, D]) in place. With r, every activation
 * the backward pass needs is written to r (the tape) instead of the arena's
 * scratch; the arithmetic is the same either way. */
static void block_fwd(const xfstack_t *xs, const block_t *bk, arena_t *a, float *x, int n, int T, int causal,
                      block_rec *r, int th) {
    const int D = xs->dim, rows = n * T, Hd = xs->hidden;
    const size_t RD = (size_t)rows * D;
    if (r && r->x_in != x) memcpy(r->x_in, x, sizeof(float) * RD);
    float *h1 = r ? r->h1 : a->h, *qkv = r ? r->qkv : a->qkv, *o = r ? r->o : a->attn;
    /* bf16 attention: the qkv GEMM's rows go out rounded (into qkv's storage, half of it) */
    uint16_t *qkv16 = !r && bk->qkv.bp && bk->proj.bp ? (uint16_t *)(void *)qkv : NULL;
    if (!r && bk->qkv.bp) {
        /* bf16: the normalised rows go out rounded, as the qkv GEMM's operand */
        layernorm_to(x, rows, D, &bk->ln1, xs->eps, NULL, a->bf16s, th);
        if (qkv16)
            model_bf16_gemm_post_bf16(NULL, rows, 0, bk->qkv.bp, bk->qkv.b, qkv16, (3 * D + 1) & ~1, a->bf16s, th,
                                      NULL, NULL);
        else
            model_bf16_gemm_rounded(a->bf16s, rows, 0, bk->qkv.bp, bk->qkv.b, 0, qkv, 3 * D, th);
    } else {
        layernorm_fwd(x, rows, D, &bk->ln1, xs->eps, h1, th);
        qkv_fwd(h1, rows, bk, qkv, a, th);
    }
    /* bf16 (D even): O goes out rounded, as the projection's operand */
    uint16_t *o16 = qkv16 && D % 2 == 0 ? a->bf16s : NULL;
    attention_fwd(qkv, qkv16, n, T, D, xs->heads, causal, o, o16, r ? r->probs : a->scores, r != NULL,
                  qkv16 ? a->bf16a : NULL, bk->proj.fp && !r ? a->f32a : NULL, th);
    if (r || !residual_linear(o, o16, rows, &bk->proj, bk->ls1, x, a, th)) {
        float *y1 = r && bk->ls1 ? r->y1 : a->h;
        linear_fwd(o, rows, &bk->proj, y1, 0, a, th);
        residual_fwd(x, y1, bk->proj.b, bk->ls1, a->ones, a->zeros, rows, D, th);
    }
    if (r) memcpy(r->x_mid, x, sizeof(float) * RD);
    float *h2 = r ? r->h2 : a->h;
    float *u = r ? r->u : a->mlp;
    const float *b1 = bk->fc1.b ? bk->fc1.b : a->zeros;
    if (!r && bk->fc1.bp && bk->fc2.bp && xs->act != ACT_SWIGLU) {
        /* bf16: LayerNorm's rows, then fc1's activated rows, go out rounded as
         * the next GEMM's operand (fc1's in u's storage, twice the size
         * needed); without LayerScale fc2 adds onto x in its epilogue */
        uint16_t *u16 = (uint16_t *)(void *)u;
        layernorm_to(x, rows, D, &bk->ln2, xs->eps, NULL, a->bf16s, th);
        model_bf16_gemm_post_bf16(NULL, rows, 0, bk->fc1.bp, NULL, u16, bk->fc2.bp->kp, a->bf16s, th,
                                  xs->act == ACT_GELU ? model_bf16_gelu_row : quick_gelu_row, b1);
        residual_linear(NULL, u16, rows, &bk->fc2, bk->ls2, x, a, th);
        return;
    }
    layernorm_fwd(x, rows, D, &bk->ln2, xs->eps, h2, th);
    float *act;
    if (bk->fc1.fp && !r && xs->act != ACT_SWIGLU) {
        /* packed for the fp32 kernel (bf16 went above): bias and activation
         * applied to each finished tile of the GEMM while it is in L1 (the
         * same operations as act_fwd's pass) */
        model_f32_gemm_post(h2, rows, D, bk->fc1.fp, NULL, 0, u, Hd, th, xs->act == ACT_GELU ? gelu_row : quick_gelu_row,
                            b1);
        act = u;
    } else {
        linear_fwd(h2, rows, &bk->fc1, u, 0, a, th);
        if (xs->act == ACT_SWIGLU) {
            act = r ? r->a : a->mlp2;
            act_fwd(xs->act, u, b1, rows, Hd, act, th);
        } else {
            act = u;
            if (r) {
                act = r->a;
                memcpy(act, u, sizeof(float) * (size_t)rows * Hd);
            }
            act_fwd(xs->act, act, b1, rows, Hd, NULL, th);
        }
    }
    if (r || !residual_linear(act, NULL, rows, &bk->fc2, bk->ls2, x, a, th)) {
        float *y2 = r && bk->ls2 ? r->y2 : a->h;
        linear_fwd(act, rows, &bk->fc2, y2, 0, a, th);
        residual_fwd(x, y2, bk->fc2.b, bk->ls2, a->ones, a->zeros, rows, D, th);
    }
}

/* The transformer blocks on a->x ([n * T, D]) in place. */
static void stack_fwd(const xfstack_t *xs, arena_t *a, int n, int T, int causal, int th) {
    for (int l = 0; l < xs->depth; l++) block_fwd(xs, &xs->blocks[l], a, a->x, n, T, causal, NULL, th);
}

void model_block_forward(wobble_model *m, int l, float *x, int n, int T, block_rec *r, int th) {
    const xfstack_t xs = {m->dim, m->depth, m->heads, m->hidden, m->act, m->eps, m->blocks};
    block_fwd(&xs, &m->blocks[l], &m->arena, x, n, T, 0, r, th);
}


/* The host part of a device tape: the CLS rows before and after the final norm. */
static int device_tape_reserve(fwd_tape *t, int n, int D) {
    const size_t need = 2 * (size_t)n * D;
    if (need > t->cap) {
        free(t->buf);
        t->buf = malloc(sizeof(float) * need);
        t->cap = t->buf ? need : 0;
        if (!t->buf) return -1;
    }
    t->bytes = sizeof(float) * need;
    t->xcls = t->buf;
    t->ncls = t->buf + (size_t)n * D;
    return 0;
}

/* Tape buffers for n images of T tokens (grown, never shrunk). */
static int tape_reserve(wobble_model *m, fwd_tape *t, int n, int T, int np, int checkpoint) {
    const size_t D = (size_t)m->dim, H = (size_t)m->hidden, rows = (size_t)n * T, K = (size_t)3 * m->patch * m->patch;
    const size_t h1 = m->act == ACT_SWIGLU ? 2 * H : H;
    const int ls = m->layerscale;
    /* one record: x_in h1 o x_mid h2 (5 D), qkv (3 D), y1 y2 (2 D, LayerScale), u, a, probs */
    const size_t per_full = rows * D * (8 + (ls ? 2 : 0)) + rows * (h1 + H) + (size_t)n * m->heads * T * T;
    const size_t blocks = checkpoint ? (size_t)m->depth * rows * D + per_full : (size_t)m->depth * per_full;
    const size_t need = (size_t)n * np * K + rows * D + blocks + 2 * (size_t)n * D;
    if (t->depth_cap < m->depth) {
        block_rec *nb = realloc(t->blk, sizeof(block_rec) * (size_t)m->depth);
        if (!nb) return -1;
        t->blk = nb;
        t->depth_cap = m->depth;
    }
    if (need > t->cap) {
        free(t->buf);
        t->buf = malloc(sizeof(float) * need);
        if (!t->buf) {
            t->cap = 0;
            return -1;
        }
        t->cap = need;
    }
    t->bytes = sizeof(float) * need;
    float *p = t->buf;
#define TAKE(dst, cnt) do { (dst) = p; p += (cnt); } while (0)
    TAKE(t->patches, (size_t)n * np * K);
    TAKE(t->x0, rows * D);
    TAKE(t->xcls, (size_t)n * D);
    TAKE(t->ncls, (size_t)n * D);
    const int nrec = checkpoint ? 1 : m->depth;
    for (int l = 0; l < m->depth; l++) {
        memset(&t->blk[l], 0, sizeof(block_rec));
        if (checkpoint) TAKE(t->blk[l].x_in, rows * D);
    }
    for (int i = 0; i < nrec; i++) {
        block_rec *r = checkpoint ? &t->scratch : &t->blk[i];
        memset(r, 0, sizeof *r);
        TAKE(r->x_in, rows * D);
        TAKE(r->h1, rows * D);
        TAKE(r->qkv, rows * 3 * D);
        TAKE(r->probs, (size_t)n * m->heads * T * T);
        TAKE(r->o, rows * D);
        TAKE(r->x_mid, rows * D);
        TAKE(r->h2, rows * D);
        TAKE(r->u, rows * h1);
        TAKE(r->a, rows * H);
        if (ls) {
            TAKE(r->y1, rows * D);
            TAKE(r->y2, rows * D);
        }
    }
#undef TAKE
    if ((size_t)(p - t->buf) > t->cap) return -1; /* a sizing bug: never write past the buffer */
    t->checkpoint = checkpoint;
    return 0;
}

void model_tape_free(fwd_tape *t) {
    if (!t) return;
    free(t->buf);
    free(t->blk);
    memset(t, 0, sizeof *t);
}

/* One chunk of n <= max_batch images (any n with a tape, which records). */
/* Intermediate outputs: after each block layers[j], the final norm of its
 * output, CLS to cls[j][n][D] and patch tokens to patch[j][n][np][D]. */
typedef struct {
    const int *layers;
    int nl;
    float *cls, *patch;
} layer_taps;

/* Each image's embedding from its final-norm CLS row (rows + b * stride):
 * the projection, summed in double, and the optional L2 normalisation. */
static void read_out(const wobble_model *m, const float *rows, size_t stride, int n, const wobble_embed_params *p,
                     float *emb) {
    const int D = m->dim;
    for (int b = 0; b < n; b++) {
        const float *cls = rows + (size_t)b * stride;
        float *e = emb + (size_t)b * m->embed_dim;
        if (m->head.w) {
            for (int o = 0; o < m->head.out; o++) {
                double s = 0;
                const float *wr = m->head.w + (size_t)o * D;
                for (int j = 0; j < D; j++) s += (double)wr[j] * cls[j];
                e[o] = (float)s;
            }
        } else {
            memcpy(e, cls, sizeof(float) * D);
        }
        if (p && p->normalize) core_l2_normalize(e, m->embed_dim);
    }
}

static int forward_chunk(wobble_ctx *ctx, wobble_model *m, const float *pixels, int n, int H, int W,
                         const wobble_embed_params *p, float *emb, float *patch_out, fwd_tape *tape,
                         const layer_taps *lt) {
    const int P = m->patch, D = m->dim, gh = H / P, gw = W / P, np = gh * gw;
    const int R = m->n_reg, T = 1 + R + np, rows = n * T;
    const int th = wobble_ctx_threads(ctx);
    const float *ppos = NULL;
    int rc = patch_pos(ctx, m, gh, gw, &ppos);
    if (rc) return rc;
    if (m->device && !tape && !lt) {
        /* on the GPU, projection included: the embeddings come back, to be normalised here */
        rc = model_device_forward(ctx, m, pixels, n, H, W, ppos, emb, patch_out);
        if (rc == WOBBLE_OK && p && p->normalize)
            for (int b = 0; b < n; b++) core_l2_normalize(emb + (size_t)b * m->embed_dim, m->embed_dim);
        return rc;
    }
    if (m->device && tape) {
        /* fine-tuning on the GPU: the tape stays there; the CLS rows of the
         * stack output come back for the final norm and read-out here */
        if (device_tape_reserve(tape, n, D) != 0)
            return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", m->path);
        tape->n = n, tape->H = H, tape->W = W, tape->gh = gh, tape->gw = gw, tape->T = T, tape->rows = rows;
        rc = model_device_forward_record(ctx, m, pixels, n, H, W, ppos, tape->checkpoint, tape->xcls);
        if (rc) return rc;
        layernorm_fwd(tape->xcls, n, D, &m->final_norm, m->eps, tape->ncls, 1);
        read_out(m, tape->ncls, D, n, p, emb);
        return WOBBLE_OK;
    }
    if (arena_reserve(&m->arena, m->dim, m->hidden, m->heads, m->act, (size_t)rows, tape ? 0 : (size_t)n * np, 3 * P * P, T,
                      m->precision == WOBBLE_PRECISION_BF16, m->f32 != NULL, th) != 0)
        return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory for activations (%d images x %d tokens)", m->path,
                             n, T);
    if (tape) {
        if (tape_reserve(m, tape, n, T, np, tape->checkpoint) != 0)
            return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory for the training tape (%d images x %d tokens)",
                                 m->path, n, T);
        tape->n = n, tape->H = H, tape->W = W, tape->gh = gh, tape->gw = gw, tape->T = T, tape->rows = rows;
    }
    arena_t *a = &m->arena;
    float *patches = tape ? tape->patches : a->patches;
    /* patch embedding: im2col to [n*np, 3*P*P] in (c, ky, kx) order, then one GEMM */
    const int K = 3 * P * P;
#pragma omp parallel for num_threads(th) schedule(static) collapse(2)
    for (int b = 0; b < n; b++)
        for (int py = 0; py < gh; py++)
            for (int px = 0; px < gw; px++) {
                float *dst = patches + ((size_t)b * np + (size_t)py * gw + px) * K;
                for (int c = 0; c < 3; c++)
                    for (int ky = 0; ky < P; ky++) {
                        const float *s = pixels + (((size_t)b * 3 + c) * H + (size_t)py * P + ky) * W + (size_t)px * P;
                        memcpy(dst + ((size_t)c * P + ky) * P, s, sizeof(float) * P);
                    }
            }
    linear_t pe = {m->patch_w, NULL, D, K, m->patch_bp, m->patch_fp};
    /* write patch embeddings straight after the cls (+ register) slots of each image */
    float *tmp = a->h; /* [n*np, D] fits: rows >= n*np */
    linear_fwd(patches, n * np, &pe, tmp, 0, a, th);
#pragma omp parallel for num_threads(th) schedule(static)
    for (int b = 0; b < n; b++) {
        float *xb = a->x + (size_t)b * T * D;
        for (int j = 0; j < D; j++) xb[j] = m->cls[j] + m->pos[j];
        for (int r = 0; r < R; r++) memcpy(xb + (size_t)(1 + r) * D, m->reg + (size_t)r * D, sizeof(float) * D);
        for (int i = 0; i < np; i++) {
            float *o = xb + (size_t)(1 + R + i) * D;
            const float *s = tmp + ((size_t)b * np + i) * D;
            const float *pp = ppos + (size_t)i * D;
            if (m->patch_b)
                for (int j = 0; j < D; j++) o[j] = (s[j] + m->patch_b[j]) + pp[j];
            else
                for (int j = 0; j < D; j++) o[j] = s[j] + pp[j];
        }
    }
    if (tape) memcpy(tape->x0, a->x, sizeof(float) * (size_t)rows * D);
    if (m->pre_norm.g) {
        layernorm_fwd(a->x, rows, D, &m->pre_norm, m->eps, a->h, th);
        memcpy(a->x, a->h, sizeof(float) * (size_t)rows * D);
    }
    const xfstack_t xs = {m->dim, m->depth, m->heads, m->hidden, m->act, m->eps, m->blocks};
    if (!tape && !lt) {
        stack_fwd(&xs, a, n, T, 0, th);
    } else if (!tape) {
        for (int l = 0; l < m->depth; l++) {
            block_fwd(&xs, &m->blocks[l], a, a->x, n, T, 0, NULL, th);
            for (int j = 0; j < lt->nl; j++) {
                if (lt->layers[j] != l) continue;
                layernorm_fwd(a->x, rows, D, &m->final_norm, m->eps, a->h, th);
                for (int b = 0; b < n; b++) {
                    memcpy(lt->cls + ((size_t)j * n + b) * D, a->h + (size_t)b * T * D, sizeof(float) * D);
                    memcpy(lt->patch + ((size_t)j * n + b) * np * D, a->h + ((size_t)b * T + 1 + R) * D,
                           sizeof(float) * (size_t)np * D);
                }
            }
        }
    } else {
        for (int l = 0; l < m->depth; l++) {
            if (tape->checkpoint) memcpy(tape->blk[l].x_in, a->x, sizeof(float) * (size_t)rows * D);
            block_fwd(&xs, &m->blocks[l], a, a->x, n, T, 0, tape->checkpoint ? NULL : &tape->blk[l], th);
        }
        for (int b = 0; b < n; b++)
            memcpy(tape->xcls + (size_t)b * D, a->x + (size_t)b * T * D, sizeof(float) * D);
    }
    /* final norm on every token (cheap), then read out */
    layernorm_fwd(a->x, rows, D, &m->final_norm, m->eps, a->h, th);
    for (int b = 0; b < n; b++) {
        const float *cls = a->h + (size_t)b * T * D;
        if (tape) memcpy(tape->ncls + (size_t)b * D, cls, sizeof(float) * D);
        if (patch_out)
            memcpy(patch_out + (size_t)b * np * D, a->h + ((size_t)b * T + 1 + R) * D, sizeof(float) * (size_t)np * D);
    }
    read_out(m, a->h, (size_t)T * D, n, p, emb);
    return WOBBLE_OK;
}

static int check_input(wobble_ctx *ctx, const wobble_model *m, const float *pixels, int n, int H, int W) {
    if (H < m->patch || W < m->patch)
        return core_seterr(ctx, WOBBLE_EINVAL, "%s: input %dx%d is smaller than one %dx%d patch", m->path, W, H,
                             m->patch, m->patch);
    const size_t per = (size_t)3 * H * W;
    for (size_t i = 0; i < per * (size_t)n; i++)
        if (!isfinite(pixels[i]))
            return core_seterr(ctx, WOBBLE_EINVAL, "forward: input image %zu holds a NaN or infinite value",
                                 i / per);
    return WOBBLE_OK;
}

int model_forward_record(wobble_ctx *ctx, wobble_model *m, const float *pixels, int n, int H, int W, fwd_tape *tape,
                         float *emb) {
    if (!m || !pixels || !emb || !tape || n < 1) return core_seterr(ctx, WOBBLE_EINVAL, "forward: NULL argument");
    if (m->precision != WOBBLE_PRECISION_FP32)
        return core_seterr(ctx, WOBBLE_EINVAL, "%s: fine-tuning runs in fp32; load the model with precision fp32",
                           m->path);
    int rc = check_input(ctx, m, pixels, n, H, W);
    if (rc || (rc = core_blas_load(ctx))) return rc;
    core_blas_threads(wobble_ctx_threads(ctx));
    return forward_chunk(ctx, m, pixels, n, H, W, NULL, emb, NULL, tape, NULL);
}

void model_params_changed(wobble_model *m) {
    model_drop_f32(m); /* the packed copies hold the old values */
    if (m->device) m->device_stale = 1; /* so does the GPU's: copied again before its next pass */
    free(m->arena.pos);
    m->arena.pos = NULL;
    m->arena.pos_h = m->arena.pos_w = 0;
    m->content_hash = 0;
}

/* dgrid += Wy^T dppos Wx (per channel): the transpose of patch_pos's
 * separable interpolation. */
int model_pos_backward(wobble_ctx *ctx, const wobble_model *m, int gh, int gw, const float *dppos, float *dgrid) {
    const int M = m->grid, D = m->dim;
    if (gh == M && gw == M) {
        for (size_t i = 0; i < (size_t)M * M * D; i++) dgrid[i] += dppos[i];
        return WOBBLE_OK;
    }
    double *Wy, *Wx;
    if (m->interp_offset != 0.0f) {
        Wy = axis_weights(M, gh, (gh + (double)m->interp_offset) / M, 0);
        Wx = axis_weights(M, gw, (gw + (double)m->interp_offset) / M, 0);
    } else {
        Wy = axis_weights(M, gh, 0, m->interp_antialias);
        Wx = axis_weights(M, gw, 0, m->interp_antialias);
    }
    double *tmp = calloc((size_t)M * gw * D, sizeof(double));
    if (!Wy || !Wx || !tmp) {
        free(Wy);
        free(Wx);
        free(tmp);
        return core_seterr(ctx, WOBBLE_ENOMEM, "position interpolation: out of memory");
    }
    /* back along y: tmp[y, j, :] = sum_i Wy[i, y] dppos[i, j, :] */
    for (int i = 0; i < gh; i++)
        for (int y = 0; y < M; y++) {
            const double w = Wy[(size_t)i * M + y];
            if (w == 0) continue;
            for (int j = 0; j < gw; j++) {
                double *t = tmp + ((size_t)y * gw + j) * D;
                const float *g = dppos + ((size_t)i * gw + j) * D;
                for (int c = 0; c < D; c++) t[c] += w * g[c];
            }
        }
    /* back along x: dgrid[y, x, :] += sum_j Wx[j, x] tmp[y, j, :] */
    for (int y = 0; y < M; y++)
        for (int j = 0; j < gw; j++)
            for (int x = 0; x < M; x++) {
                const double w = Wx[(size_t)j * M + x];
                if (w == 0) continue;
                float *o = dgrid + ((size_t)y * M + x) * D;
                const double *t = tmp + ((size_t)y * gw + j) * D;
                for (int c = 0; c < D; c++) o[c] += (float)(w * t[c]);
            }
    free(Wy);
    free(Wx);
    free(tmp);
    return WOBBLE_OK;
}

/* Activation bytes a CPU forward chunk aims to stay within: a batch of
 * max_batch images runs in equal chunks of fewer images when its buffers
 * would be larger (ViT-B/16 in bf16: 7.3 MB an image, batch 16 as four
 * chunks of 4). On wobble's kernels each image's embedding is the same bits
 * whatever the chunk (OpenBLAS sgemm blocks by rows: within 2e-5); less
 * memory is touched (fresh pages cost ~1.5 ms per MB on a VM whose memory
 * the host backs lazily) and more of it stays in cache. 32 MB measured
 * best among 16, 32 and 64 MB (docs/models.md). */
#define FWD_CHUNK_BYTES ((size_t)32 << 20)

static int cpu_chunk_images(const wobble_model *m, int n, int T) {
    const size_t D = (size_t)m->dim, Hd = (size_t)m->hidden, kmax = Hd > D ? Hd : D;
    /* per token row: x, h, attn, qkv (6 D), fc1's output (2 H for SwiGLU, plus its product), bf16 scratch */
    const size_t row = sizeof(float) * (6 * D + (m->act == ACT_SWIGLU ? 3 * Hd : Hd)) +
                       (m->precision == WOBBLE_PRECISION_BF16 ? sizeof(uint16_t) * kmax : 0);
    size_t fit = FWD_CHUNK_BYTES / (row * (size_t)T);
    if (fit < 1) fit = 1;
    const int cap = m->max_batch < n ? m->max_batch : n;
    if ((size_t)cap <= fit) return cap;
    const int pieces = (int)(((size_t)cap + fit - 1) / fit);
    return (cap + pieces - 1) / pieces; /* equal chunks: 16 over a fit of 9 runs as 8 + 8 */
}

int wobble_model_forward(wobble_ctx *ctx, wobble_model *m, const float *pixels, int n, int H, int W,
                         const wobble_embed_params *p, float *emb, float *patch_tokens) {
    if (!m || !pixels || !emb || n < 0) return core_seterr(ctx, WOBBLE_EINVAL, "forward: NULL argument");
    if (n == 0) return WOBBLE_OK;
    int rc = check_input(ctx, m, pixels, n, H, W);
    if (rc || (rc = core_blas_load(ctx))) return rc;
    const size_t per = (size_t)3 * H * W;
    core_blas_threads(wobble_ctx_threads(ctx));
    const int np = wobble_model_num_patches(m, H, W);
    /* the GPU takes max_batch images a call; the CPU, chunks within FWD_CHUNK_BYTES */
    const int chunk = m->device ? m->max_batch : cpu_chunk_images(m, n, 1 + m->n_reg + np);
    for (int s = 0; s < n; s += chunk) {
        int c = n - s < chunk ? n - s : chunk;
        rc = forward_chunk(ctx, m, pixels + per * s, c, H, W, p, emb + (size_t)s * m->embed_dim,
                           patch_tokens ? patch_tokens + (size_t)s * np * m->dim : NULL, NULL, NULL);
        if (rc) return rc;
    }
    return WOBBLE_OK;
}

int model_forward_tokens(wobble_ctx *ctx, wobble_model *m, const float *pixels, int H, int W, const int *layers,
                         int n_layers, float *emb, float *cls, float *patch) {
    if (!m || !pixels || !emb || !cls || !patch || !layers || n_layers < 1)
        return core_seterr(ctx, WOBBLE_EINVAL, "forward: NULL argument");
    for (int j = 0; j < n_layers; j++)
        if (layers[j] < 0 || layers[j] >= m->depth)
            return core_seterr(ctx, WOBBLE_EINVAL, "%s: block %d asked, the model has %d", m->path, layers[j], m->depth);
    int rc = check_input(ctx, m, pixels, 1, H, W);
    if (rc || (rc = core_blas_load(ctx))) return rc;
    core_blas_threads(wobble_ctx_threads(ctx));
    const layer_taps lt = {layers, n_layers, cls, patch};
    return forward_chunk(ctx, m, pixels, 1, H, W, NULL, emb, NULL, NULL, &lt);
}


int wobble_model_embed(wobble_ctx *ctx, wobble_model *m, const wobble_image *const *imgs, int n,
                       const wobble_embed_params *p, float *emb) {
    if (!m || (!imgs && n) || !emb) return core_seterr(ctx, WOBBLE_EINVAL, "embed: NULL argument");
    float *buf = NULL;
    size_t cap = 0;
    int rc = WOBBLE_OK;
    wobble_image *pending = NULL; /* preprocessed image that starts the next group */
    /* group consecutive images of equal preprocessed size into one forward call */
    for (int i = 0; i < n && rc == WOBBLE_OK;) {
        int j = i, H = 0, W = 0;
        while (j < n && j - i < m->max_batch) {
            wobble_image *u = pending;
            pending = NULL;
            if (!u && (rc = wobble_model_preprocess_u8(ctx, m, imgs[j], &u))) break;
            if (j > i && (u->height != H || u->width != W)) {
                pending = u;
                break;
            }
            H = u->height;
            W = u->width;
            size_t need = (size_t)(j - i + 1) * 3 * H * W;
            if (need > cap) {
                float *nb = realloc(buf, sizeof(float) * need);
                if (!nb) {
                    wobble_image_free(u);
                    rc = core_seterr(ctx, WOBBLE_ENOMEM, "embed: out of memory");
                    break;
                }
                buf = nb;
                cap = need;
            }
            wobble_model_normalize(m, u, buf + (size_t)(j - i) * 3 * H * W);
            wobble_image_free(u);
            j++;
        }
        if (rc) break;
        rc = wobble_model_forward(ctx, m, buf, j - i, H, W, p, emb + (size_t)i * m->embed_dim, NULL);
        i = j;
    }
    wobble_image_free(pending);
    free(buf);
    return rc;
}

/* ------------------------------------------------------------ text tower */

int wobble_model_has_text(const wobble_model *m) { return m && m->text; }
int wobble_model_context_length(const wobble_model *m) { return m && m->text ? m->text->ctx_len : 0; }
double wobble_model_logit_scale(const wobble_model *m) { return m ? m->logit_scale : 0.0; }

/* Sequences are run only up to the longest <|endoftext|> position of the
 * chunk: with the causal mask no earlier token sees a later one, so the
 * padding after it cannot change the pooled features. */
int wobble_model_encode_text(wobble_ctx *ctx, wobble_model *m, const int32_t *ids, int n, int len,
                             const wobble_embed_params *p, float *emb) {
    if (!m || (!ids && n) || !emb || n < 0) return core_seterr(ctx, WOBBLE_EINVAL, "encode_text: NULL argument");
    const text_tower_t *t = m->text;
    if (!t)
        return core_seterr(ctx, WOBBLE_EINVAL, "%s: this model has no text tower (a whole CLIP model is needed)",
                             m->path);
    if (len < 1 || len > t->ctx_len)
        return core_seterr(ctx, WOBBLE_EINVAL, "%s: %d tokens per text; the text tower takes 1 to %d", m->path, len,
                             t->ctx_len);
    for (long i = 0; i < (long)n * len; i++)
        if (ids[i] < 0 || ids[i] >= t->vocab)
            return core_seterr(ctx, WOBBLE_EINVAL, "%s: token id %d of text %ld is outside the vocabulary (%d)",
                                 m->path, ids[i], i / len, t->vocab);
    const int th = wobble_ctx_threads(ctx), D = t->dim;
    if (core_blas_load(ctx) != WOBBLE_OK) return wobble_last_status(ctx);
    core_blas_threads(th);
    for (int s0 = 0; s0 < n; s0 += m->max_batch) {
        const int c = n - s0 < m->max_batch ? n - s0 : m->max_batch;
        int T = 1;
        int *eot = malloc(sizeof(int) * c);
        if (!eot) return core_seterr(ctx, WOBBLE_ENOMEM, "encode_text: out of memory");
        for (int b = 0; b < c; b++) {
            const int32_t *r = ids + (size_t)(s0 + b) * len;
            int am = 0;
            for (int j = 1; j < len; j++)
                if (r[j] > r[am]) am = j; /* first maximum, as torch.argmax */
            eot[b] = am;
            if (am + 1 > T) T = am + 1;
        }
        arena_t *a = &m->text->arena;
        if (arena_reserve(a, D, t->hidden, t->heads, t->act, (size_t)c * T, 0, 0, T, m->precision == WOBBLE_PRECISION_BF16,
                          m->f32 != NULL, th) != 0) {
            free(eot);
            return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory for text activations", m->path);
        }
        for (int b = 0; b < c; b++)
            for (int j = 0; j < T; j++) {
                float *o = a->x + ((size_t)b * T + j) * D;
                const float *te = t->tok_emb + (size_t)ids[(size_t)(s0 + b) * len + j] * D, *pe = t->pos + (size_t)j * D;
                for (int k = 0; k < D; k++) o[k] = te[k] + pe[k];
            }
        const xfstack_t xs = {D, t->depth, t->heads, t->hidden, t->act, t->eps, t->blocks};
        stack_fwd(&xs, a, c, T, 1, th);
        for (int b = 0; b < c; b++) {
            float *hrow = a->h; /* one row of scratch */
            layernorm_fwd(a->x + ((size_t)b * T + eot[b]) * D, 1, D, &t->final_norm, t->eps, hrow, 1);
            float *e = emb + (size_t)(s0 + b) * t->embed_dim;
            for (int o = 0; o < t->embed_dim; o++) {
                double sum = 0;
                const float *wr = t->proj.w + (size_t)o * D;
                for (int j = 0; j < D; j++) sum += (double)wr[j] * hrow[j];
                e[o] = (float)sum;
            }
            if (p && p->normalize) core_l2_normalize(e, t->embed_dim);
        }
        free(eot);
    }
    return WOBBLE_OK;
}
