/* The linear depth probe (docs/depth.md): DINOv2's linear depth head on a
 * frozen tower's patch tokens, its losses, their gradients, AdamW, and the
 * depth metrics.
 *
 * Features: per patch token, the token after the final norm concatenated
 * with the CLS token (C = 2 x width). Head: bilinear upsampling x4 of the
 * token grid (align_corners False), a 1x1 linear layer to `bins` logits,
 * w = relu(logit) + 0.1 normalised to sum 1, depth = sum_k w_k c_k with the
 * bin centres c = linspace(d_min, d_max, bins), bilinearly resized to the
 * ground truth's size. The linear layer commutes with the upsampling
 * (both are linear, the upsampling acts per channel), so the logits are
 * computed on the token grid and upsampled: the same function, 16x fewer
 * multiply-adds. */
#include "depth.h"

#include "../core/blas.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LOG_EPS 1e-3 /* DINOv2's losses: log(x + 0.001) */

wobble_depth_params wobble_depth_default_params(void) {
    wobble_depth_params p;
    memset(&p, 0, sizeof p);
    p.d_min = 1e-3;
    p.d_max = 10.0;
    p.bins = 256;
    p.depth_scale = 1000.0;
    p.steps = 1000;
    p.batch = 8;
    p.lr = 1e-2;
    p.weight_decay = 1e-4;
    p.grad_loss_weight = 0.5;
    p.seed = 0;
    p.layers = 1;
    return p;
}

int depth_check_params(wobble_ctx *ctx, const wobble_depth_params *p) {
    if (!(p->d_min > 0) || !(p->d_max > p->d_min) || !isfinite(p->d_max))
        return core_seterr(ctx, WOBBLE_EDOMAIN, "depth: d_min %g and d_max %g: need 0 < d_min < d_max", p->d_min,
                           p->d_max);
    if (p->layers != 1 && p->layers != 4)
        return core_seterr(ctx, WOBBLE_EDOMAIN, "depth: layers %d (1: the last block, 4: four blocks)", p->layers);
    if (p->bins < 2 || p->bins > 4096) return core_seterr(ctx, WOBBLE_EDOMAIN, "depth: bins %d not in 2..4096", p->bins);
    if (!(p->depth_scale > 0) || !isfinite(p->depth_scale))
        return core_seterr(ctx, WOBBLE_EDOMAIN, "depth: depth scale %g is not positive", p->depth_scale);
    if (p->steps < 0 || p->batch < 1 || !(p->lr > 0) || !(p->weight_decay >= 0) || !(p->grad_loss_weight >= 0))
        return core_seterr(ctx, WOBBLE_EDOMAIN, "depth: steps %d, batch %d, lr %g, weight decay %g or gradient-loss "
                                                "weight %g out of range",
                           p->steps, p->batch, p->lr, p->weight_decay, p->grad_loss_weight);
    return WOBBLE_OK;
}

/* ------------------------------------------------------------ resampling
 * PyTorch's bilinear interpolation with align_corners False: source
 * coordinate (o + 0.5) * in / out - 0.5, clamped at 0. */
typedef struct {
    int i0, i1;
    float l1;
} tap;

static tap *axis_taps(int in, int out) {
    tap *t = malloc(sizeof *t * (size_t)out);
    if (!t) return NULL;
    const float scale = (float)in / (float)out;
    for (int o = 0; o < out; o++) {
        float src = ((float)o + 0.5f) * scale - 0.5f;
        if (src < 0) src = 0;
        const int i0 = (int)src;
        t[o].i0 = i0;
        t[o].i1 = i0 + (i0 < in - 1);
        t[o].l1 = src - (float)i0;
    }
    return t;
}

/* out [oh*ow][c] = bilinear(in [ih*iw][c]); back: din += transpose(dout). */
static void resize_fwd(const float *in, int ih, int iw, int c, float *out, int oh, int ow, const tap *ty, const tap *tx) {
    for (int y = 0; y < oh; y++) {
        const float ly = ty[y].l1, hy = 1 - ly;
        const float *r0 = in + (size_t)ty[y].i0 * iw * c, *r1 = in + (size_t)ty[y].i1 * iw * c;
        for (int x = 0; x < ow; x++) {
            const float lx = tx[x].l1, hx = 1 - lx;
            const float *a = r0 + (size_t)tx[x].i0 * c, *b = r0 + (size_t)tx[x].i1 * c;
            const float *d = r1 + (size_t)tx[x].i0 * c, *e = r1 + (size_t)tx[x].i1 * c;
            float *o = out + ((size_t)y * ow + x) * c;
            for (int k = 0; k < c; k++) o[k] = hy * (hx * a[k] + lx * b[k]) + ly * (hx * d[k] + lx * e[k]);
        }
    }
    (void)ih;
}

static void resize_back(float *din, int iw, int c, const float *dout, int oh, int ow, const tap *ty, const tap *tx) {
    for (int y = 0; y < oh; y++) {
        const float ly = ty[y].l1, hy = 1 - ly;
        float *r0 = din + (size_t)ty[y].i0 * iw * c, *r1 = din + (size_t)ty[y].i1 * iw * c;
        for (int x = 0; x < ow; x++) {
            const float lx = tx[x].l1, hx = 1 - lx;
            const float *g = dout + ((size_t)y * ow + x) * c;
            float *a = r0 + (size_t)tx[x].i0 * c, *b = r0 + (size_t)tx[x].i1 * c;
            float *d = r1 + (size_t)tx[x].i0 * c, *e = r1 + (size_t)tx[x].i1 * c;
            for (int k = 0; k < c; k++) {
                a[k] += hy * hx * g[k];
                b[k] += hy * lx * g[k];
                d[k] += ly * hx * g[k];
                e[k] += ly * lx * g[k];
            }
        }
    }
}

/* ------------------------------------------------------------ the head */
struct wobble_depth_head {
    int C, K;
    double d_min, d_max;
    float *w;   /* [C * K + K]: the 1x1 layer [C][K], then its bias [K] */
    float *bin; /* [K] bin centres */
};

int wobble_depth_head_create(wobble_ctx *ctx, int channels, const wobble_depth_params *p, wobble_depth_head **out) {
    *out = NULL;
    int rc = depth_check_params(ctx, p);
    if (rc) return rc;
    if (channels < 1) return core_seterr(ctx, WOBBLE_EINVAL, "depth head: %d feature channels", channels);
    wobble_depth_head *h = calloc(1, sizeof *h);
    const int K = p->bins;
    if (h) h->w = malloc(sizeof(float) * ((size_t)channels * K + K)), h->bin = malloc(sizeof(float) * K);
    if (!h || !h->w || !h->bin) {
        wobble_depth_head_free(h);
        return core_seterr(ctx, WOBBLE_ENOMEM, "depth head: out of memory");
    }
    h->C = channels, h->K = K, h->d_min = p->d_min, h->d_max = p->d_max;
    for (int k = 0; k < K; k++) h->bin[k] = (float)(p->d_min + (p->d_max - p->d_min) * k / (K - 1));
    /* nn.Conv2d's default initialisation: U(-1/sqrt(C), 1/sqrt(C)) for
     * weights and bias; seeded SplitMix64 */
    const double a = 1.0 / sqrt((double)channels);
    uint64_t s = p->seed ^ 0x6465707468ull;
    for (size_t i = 0; i < (size_t)channels * K + K; i++) {
        s = core_splitmix64(s);
        h->w[i] = (float)(((double)(s >> 11) * 0x1.0p-53 * 2 - 1) * a);
    }
    *out = h;
    return WOBBLE_OK;
}

void wobble_depth_head_free(wobble_depth_head *h) {
    if (!h) return;
    free(h->w);
    free(h->bin);
    free(h);
}

float *wobble_depth_head_weights(wobble_depth_head *h) { return h ? h->w : NULL; }
int wobble_depth_head_channels(const wobble_depth_head *h) { return h ? h->C : 0; }

/* The head on one image up to the 4x grid: logits [4gh*4gw][K] (kept for
 * the backward pass) and depth there. Buffers grow and are reused. */
typedef struct {
    int gh, gw, uh, uw;
    float *lg, *lu, *du; /* grid logits, upsampled logits, upsampled depth */
    size_t c_lg, c_lu, c_du;
    tap *ty, *tx;
} head_pass;

static void pass_free(head_pass *q) {
    free(q->lg), free(q->lu), free(q->du), free(q->ty), free(q->tx);
    memset(q, 0, sizeof *q);
}

static int head_up(const wobble_depth_head *h, const float *feat, int gh, int gw, head_pass *q) {
    const int K = h->K, G = gh * gw;
    q->gh = gh, q->gw = gw, q->uh = 4 * gh, q->uw = 4 * gw;
    const size_t U = (size_t)q->uh * q->uw;
    free(q->ty), free(q->tx);
    q->ty = axis_taps(gh, q->uh);
    q->tx = axis_taps(gw, q->uw);
    if (core_grow(&q->lg, &q->c_lg, (size_t)G * K, sizeof(float)) || core_grow(&q->lu, &q->c_lu, U * K, sizeof(float)) ||
        core_grow(&q->du, &q->c_du, U, sizeof(float)) || !q->ty || !q->tx)
        return WOBBLE_ENOMEM;
    for (int t = 0; t < G; t++) memcpy(q->lg + (size_t)t * K, h->w + (size_t)h->C * K, sizeof(float) * K);
    core_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, G, K, h->C, 1.0f, feat, h->C, h->w, K, 1.0f, q->lg, K);
    resize_fwd(q->lg, gh, gw, K, q->lu, q->uh, q->uw, q->ty, q->tx);
    for (size_t p = 0; p < U; p++) {
        const float *l = q->lu + p * K;
        float S = 0, D = 0;
        for (int k = 0; k < K; k++) {
            const float r = (l[k] > 0 ? l[k] : 0) + 0.1f;
            S += r;
            D += r * h->bin[k];
        }
        q->du[p] = D / S;
    }
    return WOBBLE_OK;
}

/* depth at the ground truth's size (unclamped: the losses' input) */
static int head_full(const wobble_depth_head *h, head_pass *q, int H, int W, float *out) {
    tap *ty = axis_taps(q->uh, H), *tx = axis_taps(q->uw, W);
    if (!ty || !tx) {
        free(ty), free(tx);
        return WOBBLE_ENOMEM;
    }
    resize_fwd(q->du, q->uh, q->uw, 1, out, H, W, ty, tx);
    free(ty), free(tx);
    (void)h;
    return WOBBLE_OK;
}

int wobble_depth_head_predict(wobble_ctx *ctx, const wobble_depth_head *h, const float *feat, int gh, int gw, int W,
                              int H, float *depth) {
    if (!h || !feat || !depth || gh < 1 || gw < 1 || W < 1 || H < 1)
        return core_seterr(ctx, WOBBLE_EINVAL, "depth head: bad arguments");
    if (core_blas_load(ctx) != WOBBLE_OK) return wobble_last_status(ctx);
    head_pass q;
    memset(&q, 0, sizeof q);
    int rc = head_up(h, feat, gh, gw, &q);
    if (!rc) rc = head_full(h, &q, H, W, depth);
    pass_free(&q);
    if (rc) return core_seterr(ctx, WOBBLE_ENOMEM, "depth head: out of memory");
    const float lo = (float)h->d_min, hi = (float)h->d_max;
    for (size_t i = 0; i < (size_t)H * W; i++) depth[i] = depth[i] < lo ? lo : depth[i] > hi ? hi : depth[i];
    return WOBBLE_OK;
}

/* ------------------------------------------------------------ losses */
static int valid_gt(float t, double d_max) { return t > 0 && t <= d_max; }

/* DINOv2's GradientLoss on one image (H x W), from g = log(pred + eps) -
 * log(gt + eps) at the valid pixels (NaN elsewhere); its gradient for pred
 * (times `scale`) is added to dpred: for strides 1, 2, 4, 6, over the
 * subsampled grid, |g(y) - g(y+2)| and |g(x) - g(x+2)| where both ends are
 * valid, summed and divided by the valid count. */
static double grad_loss(const float *g, const float *pred, int H, int W, float *dpred, double scale) {
    static const int strides[4] = {1, 2, 4, 6};
    double total = 0;
    for (int si = 0; si < 4; si++) {
        const int s = strides[si], h = (H + s - 1) / s, w = (W + s - 1) / s;
        long N = 0;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) N += !isnan(g[(size_t)y * s * W + (size_t)x * s]);
        if (!N) continue;
        double sum = 0;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                const size_t a = (size_t)y * s * W + (size_t)x * s;
                if (isnan(g[a])) continue;
                const size_t nb[2] = {y + 2 < h ? a + (size_t)2 * s * W : (size_t)-1, x + 2 < w ? a + (size_t)2 * s : (size_t)-1};
                for (int k = 0; k < 2; k++) {
                    const size_t b = nb[k];
                    if (b == (size_t)-1 || isnan(g[b])) continue;
                    const double d = (double)g[a] - g[b];
                    sum += fabs(d);
                    if (dpred && d != 0) {
                        const double q = scale * (d > 0 ? 1.0 : -1.0) / (double)N;
                        dpred[a] += (float)(q / ((double)pred[a] + LOG_EPS));
                        dpred[b] -= (float)(q / ((double)pred[b] + LOG_EPS));
                    }
                }
            }
        total += sum / (double)N;
    }
    return total;
}

/* Work buffers of one image of a batch, kept across training steps (fresh
 * multi-megabyte buffers on every step cost more in page faults than the
 * arithmetic). */
typedef struct {
    head_pass q;
    float *pred, *g, *dp, *ddu, *dlu, *dlg, *grad;
    size_t c_pred, c_g, c_dp, c_ddu, c_dlu, c_dlg, c_grad;
    double sum, sum2, count, gl;
} slot_ws;

typedef struct {
    slot_ws *s;
    size_t cap;
} loss_ws;

static void ws_free(loss_ws *w) {
    for (size_t i = 0; i < w->cap; i++) {
        slot_ws *x = &w->s[i];
        pass_free(&x->q);
        free(x->pred), free(x->g), free(x->dp), free(x->ddu), free(x->dlu), free(x->dlg), free(x->grad);
    }
    free(w->s);
    memset(w, 0, sizeof *w);
}

/* The backward pass of one image from d loss / d pred (GT size) into x->grad. */
static int head_back(const wobble_depth_head *h, slot_ws *x, const wobble_depth_sample *s) {
    const int K = h->K, C = h->C;
    const head_pass *Q = &x->q;
    const size_t U = (size_t)Q->uh * Q->uw, G = (size_t)Q->gh * Q->gw;
    tap *ty = axis_taps(Q->uh, s->h), *tx = axis_taps(Q->uw, s->w);
    int rc = ty && tx && !core_grow(&x->ddu, &x->c_ddu, U, sizeof(float)) &&
                     !core_grow(&x->dlu, &x->c_dlu, U * K, sizeof(float)) &&
                     !core_grow(&x->dlg, &x->c_dlg, G * K, sizeof(float))
                 ? WOBBLE_OK
                 : WOBBLE_ENOMEM;
    if (!rc) {
        memset(x->ddu, 0, sizeof(float) * U);
        memset(x->dlg, 0, sizeof(float) * G * K);
        resize_back(x->ddu, Q->uw, 1, x->dp, s->h, s->w, ty, tx);
        for (size_t p = 0; p < U; p++) {
            const float *l = Q->lu + p * K;
            float S = 0;
            for (int k = 0; k < K; k++) S += (l[k] > 0 ? l[k] : 0) + 0.1f;
            const float D = Q->du[p], f = x->ddu[p] / S;
            float *o = x->dlu + p * K;
            for (int k = 0; k < K; k++) o[k] = l[k] > 0 ? f * (h->bin[k] - D) : 0;
        }
        resize_back(x->dlg, Q->gw, K, x->dlu, Q->uh, Q->uw, Q->ty, Q->tx);
        core_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, K, (int)G, 1.0f, s->feat, C, x->dlg, K, 0.0f, x->grad, K);
        float *gb = x->grad + (size_t)C * K;
        memset(gb, 0, sizeof(float) * K);
        for (size_t t = 0; t < G; t++)
            for (int k = 0; k < K; k++) gb[k] += x->dlg[t * K + k];
    }
    free(ty), free(tx);
    return rc;
}

static int head_loss(wobble_ctx *ctx, const wobble_depth_head *h, const wobble_depth_sample *s, int n,
                     double grad_weight, double *loss, float *grad, loss_ws *ws) {
    const size_t NP = (size_t)h->C * h->K + h->K;
    if (core_blas_load(ctx) != WOBBLE_OK) return wobble_last_status(ctx);
    if ((size_t)n > ws->cap) {
        slot_ws *v = realloc(ws->s, sizeof *v * (size_t)n);
        if (!v) return core_seterr(ctx, WOBBLE_ENOMEM, "depth loss: out of memory");
        memset(v + ws->cap, 0, sizeof *v * ((size_t)n - ws->cap));
        ws->s = v, ws->cap = (size_t)n;
    }
    const int th = wobble_ctx_threads(ctx) < n ? wobble_ctx_threads(ctx) : n;
    int rc = WOBBLE_OK;
    /* forward; g = log(pred + eps) - log(gt + eps) at the valid pixels, NaN elsewhere */
#pragma omp parallel for num_threads(th) schedule(dynamic, 1)
    for (int i = 0; i < n; i++) {
        slot_ws *x = &ws->s[i];
        const size_t P = (size_t)s[i].h * s[i].w;
        int r = head_up(h, s[i].feat, s[i].gh, s[i].gw, &x->q);
        if (!r && (core_grow(&x->pred, &x->c_pred, P, sizeof(float)) || core_grow(&x->g, &x->c_g, P, sizeof(float)) ||
                   (grad && (core_grow(&x->dp, &x->c_dp, P, sizeof(float)) ||
                             core_grow(&x->grad, &x->c_grad, NP, sizeof(float))))))
            r = WOBBLE_ENOMEM;
        if (!r) r = head_full(h, &x->q, s[i].h, s[i].w, x->pred);
        if (r) {
#pragma omp atomic write
            rc = r;
            continue;
        }
        double a = 0, b = 0;
        long c = 0;
        for (size_t p = 0; p < P; p++) {
            if (!valid_gt(s[i].gt[p], h->d_max)) {
                x->g[p] = NAN;
                continue;
            }
            const float v = logf(x->pred[p] + (float)LOG_EPS) - logf(s[i].gt[p] + (float)LOG_EPS);
            x->g[p] = v;
            a += v, b += (double)v * v, c++;
        }
        x->sum = a, x->sum2 = b, x->count = (double)c;
    }
    if (rc) return core_seterr(ctx, WOBBLE_ENOMEM, "depth loss: out of memory");
    double sum = 0, sum2 = 0, N = 0;
    for (int i = 0; i < n; i++) sum += ws->s[i].sum, sum2 += ws->s[i].sum2, N += ws->s[i].count;
    if (N < 2) return core_seterr(ctx, WOBBLE_EINVAL, "depth loss: fewer than 2 valid ground-truth pixels");
    /* SigLoss: sqrt(var(g) + 0.15 mean(g)^2) over all the images' valid
     * pixels together, var unbiased as torch.var */
    const double M = sum / N, V = fmax((sum2 - N * M * M) / (N - 1), 0), L = sqrt(V + 0.15 * M * M);
#pragma omp parallel for num_threads(th) schedule(dynamic, 1)
    for (int i = 0; i < n; i++) {
        slot_ws *x = &ws->s[i];
        const size_t P = (size_t)s[i].h * s[i].w;
        if (grad) memset(x->dp, 0, sizeof(float) * P);
        x->gl = grad_loss(x->g, x->pred, s[i].h, s[i].w, grad ? x->dp : NULL, grad_weight / n);
        if (!grad) continue;
        for (size_t p = 0; L > 0 && p < P; p++)
            if (!isnan(x->g[p])) {
                const double dg = (2 * (x->g[p] - M) / (N - 1) + 0.3 * M / N) / (2 * L);
                x->dp[p] += (float)(dg / ((double)x->pred[p] + LOG_EPS));
            }
        if (head_back(h, x, &s[i])) {
#pragma omp atomic write
            rc = WOBBLE_ENOMEM;
        }
    }
    if (rc) return core_seterr(ctx, WOBBLE_ENOMEM, "depth loss: out of memory");
    double gl = 0;
    for (int i = 0; i < n; i++) gl += ws->s[i].gl;
    *loss = L + grad_weight * gl / n;
    if (grad) { /* per-image gradients summed in image order: the same bits whatever the thread count */
        memset(grad, 0, sizeof(float) * NP);
        for (int i = 0; i < n; i++)
            for (size_t k = 0; k < NP; k++) grad[k] += ws->s[i].grad[k];
    }
    return WOBBLE_OK;
}

int wobble_depth_head_loss(wobble_ctx *ctx, const wobble_depth_head *h, const wobble_depth_sample *s, int n,
                           double grad_weight, double *loss, float *grad) {
    if (!h || !s || n < 1 || !loss) return core_seterr(ctx, WOBBLE_EINVAL, "depth loss: bad arguments");
    loss_ws ws = {0};
    const int rc = head_loss(ctx, h, s, n, grad_weight, loss, grad, &ws);
    ws_free(&ws);
    return rc;
}

/* ------------------------------------------------------------ training */
int wobble_depth_head_train(wobble_ctx *ctx, wobble_depth_head *h, const wobble_depth_sample *s, int n,
                            const wobble_depth_params *p, double *loss_log, int log_every) {
    int rc = depth_check_params(ctx, p);
    if (rc) return rc;
    if (!h || !s || n < 1) return core_seterr(ctx, WOBBLE_EINVAL, "depth training: no samples");
    const size_t NP = (size_t)h->C * h->K + h->K;
    float *g = malloc(sizeof(float) * NP), *m1 = calloc(NP, sizeof(float)), *m2 = calloc(NP, sizeof(float));
    int *perm = malloc(sizeof(int) * n);
    wobble_depth_sample *batch = malloc(sizeof *batch * (size_t)p->batch);
    if (!g || !m1 || !m2 || !perm || !batch) rc = core_seterr(ctx, WOBBLE_ENOMEM, "depth training: out of memory");
    uint64_t st = p->seed ^ 0x747261696e;
    loss_ws ws = {0};
    int pos = n;
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    for (int step = 0; step < p->steps && !rc; step++) {
        const int B = p->batch < n ? p->batch : n;
        for (int j = 0; j < B; j++) {
            if (pos >= n) { /* a new seeded permutation each epoch */
                for (int i = 0; i < n; i++) perm[i] = i;
                for (int i = n - 1; i > 0; i--) {
                    st = core_splitmix64(st);
                    const int k = (int)(st % (uint64_t)(i + 1)), t = perm[i];
                    perm[i] = perm[k], perm[k] = t;
                }
                pos = 0;
            }
            batch[j] = s[perm[pos++]];
        }
        double loss = 0;
        rc = head_loss(ctx, h, batch, B, p->grad_loss_weight, &loss, g, &ws);
        if (rc) break;
        if (loss_log && log_every > 0 && step % log_every == 0) loss_log[step / log_every] = loss;
        /* AdamW, cosine schedule from lr to 0 */
        const double lr = p->lr * 0.5 * (1 + cos(M_PI * step / p->steps));
        const double c1 = 1 - pow(b1, step + 1), c2 = 1 - pow(b2, step + 1);
        for (size_t i = 0; i < NP; i++) {
            m1[i] = (float)(b1 * m1[i] + (1 - b1) * g[i]);
            m2[i] = (float)(b2 * m2[i] + (1 - b2) * (double)g[i] * g[i]);
            const double upd = (m1[i] / c1) / (sqrt(m2[i] / c2) + eps);
            h->w[i] = (float)(h->w[i] - lr * (upd + p->weight_decay * h->w[i]));
        }
    }
    free(g), free(m1), free(m2), free(perm), free(batch);
    ws_free(&ws);
    return rc;
}

/* ------------------------------------------------------------ metrics */
int wobble_depth_metrics_compute(wobble_ctx *ctx, const float *pred, const float *gt, int W, int H,
                                 const wobble_depth_params *p, wobble_depth_metrics *out) {
    if (!pred || !gt || !out || W < 1 || H < 1) return core_seterr(ctx, WOBBLE_EINVAL, "depth metrics: bad arguments");
    memset(out, 0, sizeof *out);
    /* Eigen et al.'s crop of 480 x 640 NYU frames: rows 45..470, columns 41..600 */
    const int crop = p->eigen_crop && H == 480 && W == 640;
    double ar = 0, se = 0, l10 = 0, e1 = 0, e2 = 0, d1 = 0, d2 = 0, d3 = 0;
    long n = 0;
    for (int y = crop ? 45 : 0; y < (crop ? 471 : H); y++)
        for (int x = crop ? 41 : 0; x < (crop ? 601 : W); x++) {
            const double t = gt[(size_t)y * W + x], q = pred[(size_t)y * W + x];
            if (!(t > p->d_min && t <= p->d_max) || !(q > 0)) continue;
            const double r = fmax(t / q, q / t), e = log(q) - log(t);
            ar += fabs(t - q) / t, se += (t - q) * (t - q), l10 += fabs(log10(t) - log10(q));
            e1 += e, e2 += e * e;
            d1 += r < 1.25, d2 += r < 1.25 * 1.25, d3 += r < 1.25 * 1.25 * 1.25;
            n++;
        }
    if (!n) return core_seterr(ctx, WOBBLE_EINVAL, "depth metrics: no valid ground-truth pixel in (%g, %g] m", p->d_min,
                               p->d_max);
    out->valid = n;
    out->abs_rel = ar / n, out->rmse = sqrt(se / n), out->log10 = l10 / n;
    out->silog = 100 * sqrt(fmax(e2 / n - (e1 / n) * (e1 / n), 0));
    out->d1 = d1 / n, out->d2 = d2 / n, out->d3 = d3 / n;
    return WOBBLE_OK;
}
