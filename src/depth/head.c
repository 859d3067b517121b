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

#include <cblas.h>
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
    p.steps = 300;
    p.batch = 8;
    p.lr = 1e-3;
    p.weight_decay = 1e-4;
    p.grad_loss_weight = 0.5;
    p.seed = 0;
    return p;
}

int depth_check_params(wobble_ctx *ctx, const wobble_depth_params *p) {
    if (!(p->d_min > 0) || !(p->d_max > p->d_min) || !isfinite(p->d_max))
        return core_seterr(ctx, WOBBLE_EDOMAIN, "depth: d_min %g and d_max %g: need 0 < d_min < d_max", p->d_min,
                           p->d_max);
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
 * the backward pass when wanted) and depth there. */
typedef struct {
    int gh, gw, uh, uw;
    float *lg, *lu, *du; /* grid logits, upsampled logits, upsampled depth */
    tap *ty, *tx;
} head_pass;

static void pass_free(head_pass *q) {
    free(q->lg), free(q->lu), free(q->du), free(q->ty), free(q->tx);
    memset(q, 0, sizeof *q);
}

static int head_up(const wobble_depth_head *h, const float *feat, int gh, int gw, head_pass *q) {
    const int K = h->K, G = gh * gw;
    memset(q, 0, sizeof *q);
    q->gh = gh, q->gw = gw, q->uh = 4 * gh, q->uw = 4 * gw;
    const size_t U = (size_t)q->uh * q->uw;
    q->lg = malloc(sizeof(float) * (size_t)G * K);
    q->lu = malloc(sizeof(float) * U * K);
    q->du = malloc(sizeof(float) * U);
    q->ty = axis_taps(gh, q->uh);
    q->tx = axis_taps(gw, q->uw);
    if (!q->lg || !q->lu || !q->du || !q->ty || !q->tx) {
        pass_free(q);
        return WOBBLE_ENOMEM;
    }
    for (int t = 0; t < G; t++) memcpy(q->lg + (size_t)t * K, h->w + (size_t)h->C * K, sizeof(float) * K);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, G, K, h->C, 1.0f, feat, h->C, h->w, K, 1.0f, q->lg, K);
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
    head_pass q;
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

/* The backward pass of one image from d loss / d pred (GT size) into grad. */
static int head_back(const wobble_depth_head *h, const head_pass *Q, const wobble_depth_sample *s, const float *dpred,
                     float *grad) {
    const int K = h->K, C = h->C;
    const size_t U = (size_t)Q->uh * Q->uw;
    float *ddu = calloc(U, sizeof(float)), *dlu = malloc(sizeof(float) * U * K),
          *dlg = calloc((size_t)Q->gh * Q->gw * K, sizeof(float));
    tap *ty = axis_taps(Q->uh, s->h), *tx = axis_taps(Q->uw, s->w);
    int rc = ddu && dlu && dlg && ty && tx ? WOBBLE_OK : WOBBLE_ENOMEM;
    if (!rc) {
        resize_back(ddu, Q->uw, 1, dpred, s->h, s->w, ty, tx);
        for (size_t p = 0; p < U; p++) {
            const float *l = Q->lu + p * K;
            float S = 0;
            for (int k = 0; k < K; k++) S += (l[k] > 0 ? l[k] : 0) + 0.1f;
            const float D = Q->du[p], f = ddu[p] / S;
            float *o = dlu + p * K;
            for (int k = 0; k < K; k++) o[k] = l[k] > 0 ? f * (h->bin[k] - D) : 0;
        }
        resize_back(dlg, Q->gw, K, dlu, Q->uh, Q->uw, Q->ty, Q->tx);
        const int G = Q->gh * Q->gw;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, K, G, 1.0f, s->feat, C, dlg, K, 1.0f, grad, K);
        float *gb = grad + (size_t)C * K;
        for (int t = 0; t < G; t++)
            for (int k = 0; k < K; k++) gb[k] += dlg[(size_t)t * K + k];
    }
    free(ddu), free(dlu), free(dlg), free(ty), free(tx);
    return rc;
}

int wobble_depth_head_loss(wobble_ctx *ctx, const wobble_depth_head *h, const wobble_depth_sample *s, int n,
                           double grad_weight, double *loss, float *grad) {
    if (!h || !s || n < 1 || !loss) return core_seterr(ctx, WOBBLE_EINVAL, "depth loss: bad arguments");
    const size_t NP = (size_t)h->C * h->K + h->K;
    head_pass *q = calloc((size_t)n, sizeof *q);
    float **pred = calloc((size_t)n, sizeof *pred), **g = calloc((size_t)n, sizeof *g);
    double *st = calloc((size_t)n * 4, sizeof(double)); /* per image: sum g, sum g^2, count, gradient loss */
    const int th = wobble_ctx_threads(ctx) < n ? wobble_ctx_threads(ctx) : n;
    /* per-image gradients, summed in image order: the same bits whatever the thread count */
    float *tg = grad ? calloc((size_t)n * NP, sizeof(float)) : NULL;
    int rc = q && pred && g && st && (!grad || tg) ? WOBBLE_OK : WOBBLE_ENOMEM;
    /* forward; g = log(pred + eps) - log(gt + eps) at the valid pixels */
#pragma omp parallel for num_threads(th) schedule(dynamic, 1) if (!rc)
    for (int i = 0; i < n; i++) {
        const size_t P = (size_t)s[i].h * s[i].w;
        int r = head_up(h, s[i].feat, s[i].gh, s[i].gw, &q[i]);
        if (!r && (!(pred[i] = malloc(sizeof(float) * P)) || !(g[i] = malloc(sizeof(float) * P)))) r = WOBBLE_ENOMEM;
        if (!r) r = head_full(h, &q[i], s[i].h, s[i].w, pred[i]);
        if (r) {
#pragma omp atomic write
            rc = r;
            continue;
        }
        double a = 0, b = 0;
        long c = 0;
        for (size_t p = 0; p < P; p++) {
            if (!valid_gt(s[i].gt[p], h->d_max)) {
                g[i][p] = NAN;
                continue;
            }
            const float v = logf(pred[i][p] + (float)LOG_EPS) - logf(s[i].gt[p] + (float)LOG_EPS);
            g[i][p] = v;
            a += v, b += (double)v * v, c++;
        }
        st[4 * i] = a, st[4 * i + 1] = b, st[4 * i + 2] = (double)c;
    }
    double sum = 0, sum2 = 0, N = 0;
    for (int i = 0; !rc && i < n; i++) sum += st[4 * i], sum2 += st[4 * i + 1], N += st[4 * i + 2];
    if (rc == WOBBLE_ENOMEM) rc = core_seterr(ctx, WOBBLE_ENOMEM, "depth loss: out of memory");
    else if (!rc && N < 2) rc = core_seterr(ctx, WOBBLE_EINVAL, "depth loss: fewer than 2 valid ground-truth pixels");
    if (!rc) {
        /* SigLoss: sqrt(var(g) + 0.15 mean(g)^2) over all the images' valid
         * pixels together, var unbiased as torch.var */
        const double M = sum / N, V = fmax((sum2 - N * M * M) / (N - 1), 0), L = sqrt(V + 0.15 * M * M);
#pragma omp parallel for num_threads(th) schedule(dynamic, 1)
        for (int i = 0; i < n; i++) {
            const size_t P = (size_t)s[i].h * s[i].w;
            float *dp = grad ? calloc(P, sizeof(float)) : NULL;
            if (grad && !dp) {
#pragma omp atomic write
                rc = WOBBLE_ENOMEM;
                continue;
            }
            st[4 * i + 3] = grad_loss(g[i], pred[i], s[i].h, s[i].w, dp, grad_weight / n);
            if (!grad) continue;
            for (size_t p = 0; L > 0 && p < P; p++)
                if (!isnan(g[i][p])) {
                    const double dg = (2 * (g[i][p] - M) / (N - 1) + 0.3 * M / N) / (2 * L);
                    dp[p] += (float)(dg / ((double)pred[i][p] + LOG_EPS));
                }
            if (head_back(h, &q[i], &s[i], dp, tg + (size_t)i * NP)) {
#pragma omp atomic write
                rc = WOBBLE_ENOMEM;
            }
            free(dp);
        }
        double gl = 0;
        for (int i = 0; i < n; i++) gl += st[4 * i + 3];
        *loss = L + grad_weight * gl / n;
        if (rc) rc = core_seterr(ctx, WOBBLE_ENOMEM, "depth loss: out of memory");
        else if (grad) {
            memset(grad, 0, sizeof(float) * NP);
            for (int i = 0; i < n; i++)
                for (size_t k = 0; k < NP; k++) grad[k] += tg[(size_t)i * NP + k];
        }
    }
    for (int i = 0; q && i < n; i++) pass_free(&q[i]);
    for (int i = 0; pred && i < n; i++) free(pred[i]);
    for (int i = 0; g && i < n; i++) free(g[i]);
    free(q), free(pred), free(g), free(st), free(tg);
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
        rc = wobble_depth_head_loss(ctx, h, batch, B, p->grad_loss_weight, &loss, g);
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
