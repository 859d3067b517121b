/*
 * The training half of the CUDA backend (see cuda_backend.h): a recorded
 * forward pass that keeps every activation the backward pass needs on the
 * device (the tape), and the backward pass itself, mirroring the CPU's
 * (src/train/backward.c) layer by layer:
 *   x_mid = x_in + ls1 * (proj(attn(ln1(x_in))) + b_proj)
 *   x_out = x_mid + ls2 * (fc2(act(fc1(ln2(x_mid)))) + b_fc2)
 * Linear layers: cuBLAS (dW += dY^T X, dX = dY W), in fp32 (TF32 only when
 * the model was created with tf32). Attention: the probabilities are kept
 * (S = Q K^T per (image, head) as strided batched GEMMs, softmax in fp32),
 * so the recorded pass does not use the fused kernel. Bias, norm and
 * LayerScale gradients are column sums (cuBLAS gemv against ones), so the
 * order of additions is fixed for a given GPU and library.
 *
 * Part of forward.cu's translation unit (included at its end), so that it
 * shares the forward pass's kernels without relocatable device code.
 */

namespace {

/* One block's activations on the device (pointers into the tape). */
struct drec {
    float *x_in = nullptr, *h1 = nullptr, *qkv = nullptr, *probs = nullptr, *o = nullptr, *y1 = nullptr,
          *x_mid = nullptr, *h2 = nullptr, *u = nullptr, *a = nullptr, *y2 = nullptr;
};

/* A device gradient buffer and the host one it is added to. */
struct dgrad {
    float *dev;
    float *host;
    size_t n;
};

} // namespace

struct dtrain {
    int n = 0, H = 0, W = 0, gh = 0, gw = 0, T = 0, rows = 0, ckpt = 0;
    float *tape = nullptr;
    size_t cap_tape = 0;
    float *patches = nullptr, *x0 = nullptr;
    std::vector<drec> blk;
    drec scratch;
    float *work = nullptr; /* backward buffers */
    size_t cap_work = 0;
    float *grads = nullptr; /* device gradients, one allocation */
    size_t cap_grads = 0;
    float *staging = nullptr; /* pinned host copy of the gradients */
    size_t cap_staging = 0;
    float *ones = nullptr;
    size_t cap_ones = 0;
    float *dpix = nullptr;
    size_t cap_dpix = 0;
};

namespace {

/* ------------------------------------------------------------- kernels */

__device__ float block_max(float v, float *red) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    __syncthreads();
    if (lane == 0) red[wid] = v;
    __syncthreads();
    float m = red[0];
    for (int w = 1; w < nw; w++) m = fmaxf(m, red[w]);
    return m;
}

/* one row of n scores per block, in place: softmax(scale * row) */
__global__ void k_softmax_rows(float *s, int n, float scale) {
    __shared__ float red[32];
    float *r = s + (size_t)blockIdx.x * n;
    float m = -INFINITY;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        const float v = r[j] * scale;
        r[j] = v;
        m = fmaxf(m, v);
    }
    m = block_max(m, red);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        const float e = expf(r[j] - m);
        r[j] = e;
        sum += e;
    }
    const float inv = 1.0f / block_sum(sum, red);
    for (int j = threadIdx.x; j < n; j += blockDim.x) r[j] *= inv;
}

/* dS = scale * P * (dP - sum_j P dP), one row per block, dS in place of dP */
__global__ void k_softmax_bwd(const float *P, float *dS, int n, float scale) {
    __shared__ float red[32];
    const float *p = P + (size_t)blockIdx.x * n;
    float *d = dS + (size_t)blockIdx.x * n;
    float dot = 0.0f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) dot += p[j] * d[j];
    dot = block_sum(dot, red);
    for (int j = threadIdx.x; j < n; j += blockDim.x) d[j] = scale * p[j] * (d[j] - dot);
}

/* a = act(u + b), u kept: 0 GELU (erf), 1 QuickGELU */
__global__ void k_act_to(const float *u, const float *b, float *a, size_t total, int h, int kind) {
    FOR_EACH(i, total) {
        const float v = u[i] + (b ? b[i % h] : 0.0f);
        a[i] = kind == 0 ? 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)) : v / (1.0f + expf(-1.702f * v));
    }
}

/* du = da * act'(u + b) */
__global__ void k_act_bwd(const float *u, const float *b, const float *da, float *du, size_t total, int h, int kind) {
    FOR_EACH(i, total) {
        const float v = u[i] + (b ? b[i % h] : 0.0f);
        float d;
        if (kind == 0) {
            const float cdf = 0.5f * (1.0f + erff(v * 0.70710678118654752f));
            const float pdf = 0.39894228040143268f * expf(-0.5f * v * v);
            d = cdf + v * pdf;
        } else {
            const float s = 1.0f / (1.0f + expf(-1.702f * v));
            d = s + 1.702f * v * s * (1.0f - s);
        }
        du[i] = da[i] * d;
    }
}

/* SwiGLU: o = silu(x1) x2 with x = u + b ([rows, 2h]); du [rows, 2h] */
__global__ void k_swiglu_bwd(const float *u, const float *b, const float *da, float *du, size_t total, int h) {
    FOR_EACH(i, total) {
        const size_t r = i / h;
        const int j = (int)(i % h);
        const float x1 = u[r * 2 * h + j] + (b ? b[j] : 0.0f), x2 = u[r * 2 * h + h + j] + (b ? b[h + j] : 0.0f);
        const float s = 1.0f / (1.0f + expf(-x1));
        du[r * 2 * h + j] = da[i] * x2 * (s + x1 * s * (1.0f - s));
        du[r * 2 * h + h + j] = da[i] * x1 * s;
    }
}

/* z = dx * ls; t = dx * (y + b) (LayerScale's gradient, summed later) */
__global__ void k_scale_bwd(const float *dx, const float *ls, const float *y, const float *b, float *z, float *t,
                            size_t total, int D) {
    FOR_EACH(i, total) {
        const int j = (int)(i % D);
        z[i] = dx[i] * ls[j];
        if (t) t[i] = dx[i] * (y[i] + (b ? b[j] : 0.0f));
    }
}

/* LayerNorm backward, one row per block: dx += rstd (dy g - mean(dy g) -
 * xh mean(dy g xh)); t = dy * xh (the gain's gradient, summed later) */
__global__ void k_ln_bwd(const float *x, const float *g, const float *dy, float *dx, float *t, int D, float eps) {
    __shared__ float red[32];
    const size_t off = (size_t)blockIdx.x * D;
    const float *xr = x + off, *dr = dy + off;
    float mu, rstd;
    row_stats(xr, D, eps, red, &mu, &rstd);
    float s1 = 0.0f, s2 = 0.0f;
    for (int j = threadIdx.x; j < D; j += blockDim.x) {
        const float gd = dr[j] * g[j], xh = (xr[j] - mu) * rstd;
        s1 += gd;
        s2 += gd * xh;
    }
    const float a1 = block_sum(s1, red) / (float)D;
    const float a2 = block_sum(s2, red) / (float)D;
    for (int j = threadIdx.x; j < D; j += blockDim.x) {
        const float xh = (xr[j] - mu) * rstd;
        dx[off + j] += rstd * (dr[j] * g[j] - a1 - xh * a2);
        if (t) t[off + j] = dr[j] * xh;
    }
}

/* im2col's transpose (patches do not overlap: a plain scatter) */
__global__ void k_col2im(const float *dpatch, float *dpix, int n, int H, int W, int P, int gh, int gw) {
    const size_t total = (size_t)n * gh * gw * 3 * P * P;
    FOR_EACH(i, total) dpix[im2col_pixel(i, H, W, P, gh, gw)] = dpatch[i];
}

__global__ void k_fill(float *x, float v, size_t n) {
    FOR_EACH(i, n) x[i] = v;
}

/* ----------------------------------------------------------- the tape */

cublasComputeType_t f32_compute(const cuda_model *g) {
    return g->tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
}

/* One block record carved from base (or, with base null, only measured):
 * the block input alone (checkpointing) or every activation; returns its
 * floats. */
size_t rec_carve(const cuda_model *g, int n, int T, float *base, bool full, drec *r) {
    const size_t rows = (size_t)n * T, D = (size_t)g->D, H = (size_t)g->hidden, H1 = g->act == 2 ? 2 * H : H;
    const bool ls = !g->blocks.empty() && g->blocks[0].ls1;
    size_t off = 0;
    auto take = [&](float **dst, size_t count) {
        if (base && dst) *dst = base + off;
        off += count;
    };
    if (r) *r = drec();
    take(r ? &r->x_in : nullptr, rows * D);
    if (!full) return off;
    take(r ? &r->h1 : nullptr, rows * D);
    take(r ? &r->qkv : nullptr, rows * 3 * D);
    take(r ? &r->probs : nullptr, (size_t)n * g->heads * T * T);
    take(r ? &r->o : nullptr, rows * D);
    if (ls) take(r ? &r->y1 : nullptr, rows * D);
    take(r ? &r->x_mid : nullptr, rows * D);
    take(r ? &r->h2 : nullptr, rows * D);
    take(r ? &r->u : nullptr, rows * H1);
    take(r ? &r->a : nullptr, rows * H);
    if (ls) take(r ? &r->y2 : nullptr, rows * D);
    return off;
}

int dev_grow(float **p, size_t *cap, size_t need, size_t *bytes, const char *what, char *msg, size_t len) {
    if (need <= *cap) return CUDA_B_OK;
    if (*p) cudaFree(*p);
    *p = nullptr;
    *bytes -= *cap * sizeof(float);
    *cap = 0;
    CU(cudaMalloc((void **)p, need * sizeof(float)), what);
    *cap = need;
    *bytes += need * sizeof(float);
    return CUDA_B_OK;
}

int tape_reserve(cuda_model *g, int n, int T, int np, int ckpt, char *msg, size_t len) {
    dtrain *t = g->tr;
    const size_t K = (size_t)3 * g->P * g->P, rows = (size_t)n * T;
    const size_t per = rec_carve(g, n, T, nullptr, !ckpt, nullptr);
    const size_t need = (size_t)n * np * K + rows * g->D + (size_t)g->depth * per +
                        (ckpt ? rec_carve(g, n, T, nullptr, true, nullptr) : 0);
    TRY(dev_grow(&t->tape, &t->cap_tape, need, &g->act_bytes, "allocating the training tape", msg, len));
    float *p = t->tape;
    t->patches = p, p += (size_t)n * np * K;
    t->x0 = p, p += rows * g->D;
    t->blk.assign((size_t)g->depth, drec());
    for (int l = 0; l < g->depth; l++) p += rec_carve(g, n, T, p, !ckpt, &t->blk[l]);
    if (ckpt) rec_carve(g, n, T, p, true, &t->scratch);
    return CUDA_B_OK;
}

/* S = softmax(scale Q K^T) per (image, head) into probs; O = P V into out */
int attention_rec(cuda_model *g, const float *qkv, float *probs, float *out, int n, int T, char *msg, size_t len) {
    const int D = g->D, heads = g->heads, dh = D / heads;
    const float scale = 1.0f / sqrtf((float)dh), one = 1.0f, zero = 0.0f;
    const long long TT = (long long)T * T;
    for (int b = 0; b < n; b++) {
        const float *Q = qkv + (size_t)b * T * 3 * D, *K = Q + D;
        float *S = probs + (size_t)b * heads * TT;
        /* column-major S^T = K^T Q: row i of S (query i) is contiguous */
        CB(cublasGemmStridedBatchedEx(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, T, T, dh, &one, K, CUDA_R_32F, 3 * D, dh, Q,
                                      CUDA_R_32F, 3 * D, dh, &zero, S, CUDA_R_32F, T, TT, heads, f32_compute(g),
                                      CUBLAS_GEMM_DEFAULT),
           "attention scores");
    }
    k_softmax_rows<<<(unsigned)((size_t)n * heads * T), 128, 0, g->st>>>(probs, T, scale);
    for (int b = 0; b < n; b++) {
        const float *V = qkv + (size_t)b * T * 3 * D + 2 * D;
        const float *Pm = probs + (size_t)b * heads * TT;
        CB(cublasGemmStridedBatchedEx(g->blas, CUBLAS_OP_N, CUBLAS_OP_N, dh, T, T, &one, V, CUDA_R_32F, 3 * D, dh, Pm,
                                      CUDA_R_32F, T, TT, &zero, out + (size_t)b * T * D, CUDA_R_32F, D, dh, heads,
                                      f32_compute(g), CUBLAS_GEMM_DEFAULT),
           "attention output");
    }
    return CUDA_B_OK;
}

/* one block on x ([rows, D]) in place, every activation written to r */
int block_fwd_rec(cuda_model *g, int l, float *x, int n, int T, const drec &r, char *msg, size_t len) {
    const dblock &bk = g->blocks[l];
    const int D = g->D, Hd = g->hidden, rows = n * T;
    const size_t RD = (size_t)rows * D, RH = (size_t)rows * Hd;
    if (r.x_in != x) CU(cudaMemcpyAsync(r.x_in, x, RD * sizeof(float), cudaMemcpyDeviceToDevice, g->st), "tape");
    layernorm(g, x, r.h1, bk.ln1_g, bk.ln1_b, rows);
    TRY(gemm(g, r.h1, rows, bk.qkv, r.qkv, msg, len));
    if (bk.qkv.b) k_add_bias<<<blocks_for(RD * 3), 256, 0, g->st>>>(r.qkv, bk.qkv.b, RD * 3, 3 * D);
    TRY(attention_rec(g, r.qkv, r.probs, r.o, n, T, msg, len));
    float *y1 = bk.ls1 ? r.y1 : g->h;
    TRY(gemm(g, r.o, rows, bk.proj, y1, msg, len));
    k_residual<<<blocks_for(RD), 256, 0, g->st>>>(x, y1, bk.proj.b, bk.ls1, RD, D);
    CU(cudaMemcpyAsync(r.x_mid, x, RD * sizeof(float), cudaMemcpyDeviceToDevice, g->st), "tape");
    layernorm(g, x, r.h2, bk.ln2_g, bk.ln2_b, rows);
    TRY(gemm(g, r.h2, rows, bk.fc1, r.u, msg, len));
    if (g->act == 2)
        k_swiglu<<<blocks_for(RH), 256, 0, g->st>>>(r.u, bk.fc1.b, r.a, RH, Hd);
    else
        k_act_to<<<blocks_for(RH), 256, 0, g->st>>>(r.u, bk.fc1.b, r.a, RH, Hd, g->act);
    float *y2 = bk.ls2 ? r.y2 : g->h;
    TRY(gemm(g, r.a, rows, bk.fc2, y2, msg, len));
    k_residual<<<blocks_for(RD), 256, 0, g->st>>>(x, y2, bk.fc2.b, bk.ls2, RD, D);
    return CUDA_B_OK;
}

int forward_record(cuda_model *g, const float *pixels, int n, int H, int W, const float *ppos, int ckpt, float *xcls,
                   double *gpu_ms, char *msg, size_t len) {
    CU(cudaSetDevice(g->dev), "selecting the device");
    if (g->bf16) {
        snprintf(msg, len, "CUDA: fine-tuning runs in fp32 (the model was put on the GPU in bf16)");
        return CUDA_B_ERROR;
    }
    if (!g->tr) {
        g->tr = new (std::nothrow) dtrain();
        if (!g->tr) {
            snprintf(msg, len, "out of memory");
            return CUDA_B_NOMEM;
        }
    }
    dtrain *t = g->tr;
    const int P = g->P, gh = H / P, gw = W / P, np = gh * gw, T = 1 + g->R + np, rows = n * T, D = g->D;
    const size_t npix = (size_t)n * 3 * H * W, K = (size_t)3 * P * P;
    TRY(reserve(g, (size_t)rows, (size_t)n * np, npix, (size_t)np * D, msg, len));
    TRY(tape_reserve(g, n, T, np, ckpt, msg, len));
    t->n = n, t->H = H, t->W = W, t->gh = gh, t->gw = gw, t->T = T, t->rows = rows, t->ckpt = ckpt;
    TRY(upload_inputs(g, pixels, npix, ppos, (size_t)np * D, msg, len));
    k_im2col<<<blocks_for((size_t)n * np * K), 256, 0, g->st>>>(g->pix, t->patches, n, H, W, P, gh, gw);
    TRY(gemm(g, t->patches, n * np, g->patch, g->h, msg, len));
    k_tokens<<<blocks_for((size_t)rows * D), 256, 0, g->st>>>(g->x, g->h, g->cls, g->pos0, g->reg, g->patch.b, g->ppos,
                                                               n, T, g->R, np, D);
    const size_t RD = (size_t)rows * D;
    CU(cudaMemcpyAsync(t->x0, g->x, RD * sizeof(float), cudaMemcpyDeviceToDevice, g->st), "tape");
    if (g->pre_g) layernorm(g, g->x, g->x, g->pre_g, g->pre_b, rows);
    for (int l = 0; l < g->depth; l++) {
        drec r = t->blk[l];
        if (ckpt) { /* the block's input kept, the rest into the scratch record */
            r = t->scratch;
            r.x_in = t->blk[l].x_in;
        }
        TRY(block_fwd_rec(g, l, g->x, n, T, r, msg, len));
    }
    CU(cudaGetLastError(), "launching a kernel");
    CU(cudaEventRecord(g->ev1, g->st), "recording an event");
    /* the stack output's CLS rows: the final norm and read-out run on the host */
    CU(cudaMemcpy2DAsync(xcls, (size_t)D * sizeof(float), g->x, (size_t)T * D * sizeof(float), (size_t)D * sizeof(float),
                         (size_t)n, cudaMemcpyDeviceToHost, g->st),
       "downloading the CLS rows");
    return finish_timed(g, gpu_ms, "running the recorded forward pass", msg, len);
}

/* ----------------------------------------------------------- backward */

struct bwork {
    float *dx, *dz, *dh, *dO, *dqkv, *du, *da, *dS, *tmp;
};

/* dst (device, [cols]) += column sums of M ([rows, cols], row stride ld) */
int colsum(cuda_model *g, const float *M, int rows, int cols, int ld, float *dst, char *msg, size_t len) {
    if (!dst) return CUDA_B_OK;
    const float one = 1.0f;
    CB(cublasSgemv(g->blas, CUBLAS_OP_N, cols, rows, &one, M, ld, g->tr->ones, 1, &one, dst, 1), "column sums");
    return CUDA_B_OK;
}

/* y = x W^T: dW += dy^T x (dW may be null); dx = dy W + beta dx (dx may be null) */
int linear_bwd(cuda_model *g, const float *dy, int rows, int ldy, const float *x, int ldx, const dlinear &L, float *dW,
               float *dx, int lddx, float beta, char *msg, size_t len) {
    const float one = 1.0f;
    if (dW)
        CB(cublasGemmEx(g->blas, CUBLAS_OP_N, CUBLAS_OP_T, L.in, L.out, rows, &one, x, CUDA_R_32F, ldx, dy, CUDA_R_32F,
                        ldy, &one, dW, CUDA_R_32F, L.in, f32_compute(g), CUBLAS_GEMM_DEFAULT),
           "weight gradient");
    if (dx)
        CB(cublasGemmEx(g->blas, CUBLAS_OP_N, CUBLAS_OP_N, L.in, rows, L.out, &one, L.w, CUDA_R_32F, L.in, dy,
                        CUDA_R_32F, ldy, &beta, dx, CUDA_R_32F, lddx, f32_compute(g), CUBLAS_GEMM_DEFAULT),
           "input gradient");
    return CUDA_B_OK;
}

/* z = dx * ls (or z = dx when ls is null: returns dx); dls += sum dx * (y + b) */
const float *scale_bwd(cuda_model *g, const float *dx, const float *ls, const float *y, const float *b, float *z,
                       float *tmp, float *dls, int rows, char *msg, size_t len, int *rc) {
    *rc = CUDA_B_OK;
    if (!ls) return dx;
    const size_t total = (size_t)rows * g->D;
    k_scale_bwd<<<blocks_for(total), 256, 0, g->st>>>(dx, ls, y, b, z, dls ? tmp : nullptr, total, g->D);
    if (dls) *rc = colsum(g, tmp, rows, g->D, g->D, dls, msg, len);
    return z;
}

/* LayerNorm: dx += d/dx for dy; dg, db += */
int layernorm_bwd(cuda_model *g, const float *x, const float *gm, const float *dy, float *dx, float *tmp, float *dg,
                  float *db, int rows, char *msg, size_t len) {
    k_ln_bwd<<<rows, 256, 0, g->st>>>(x, gm, dy, dx, dg ? tmp : nullptr, g->D, g->eps);
    TRY(colsum(g, tmp, rows, g->D, g->D, dg, msg, len));
    return colsum(g, dy, rows, g->D, g->D, db, msg, len);
}

int attention_bwd(cuda_model *g, const float *qkv, const float *probs, const float *dO, float *dqkv, float *dS, int n,
                  int T, char *msg, size_t len) {
    const int D = g->D, heads = g->heads, dh = D / heads;
    const float scale = 1.0f / sqrtf((float)dh), one = 1.0f, zero = 0.0f;
    const long long TT = (long long)T * T;
    const cublasComputeType_t ct = f32_compute(g);
    for (int b = 0; b < n; b++) {
        const size_t base = (size_t)b * T * 3 * D;
        const float *V = qkv + base + 2 * D, *Pm = probs + (size_t)b * heads * TT;
        const float *dOb = dO + (size_t)b * T * D;
        float *dV = dqkv + base + 2 * D, *dSb = dS + (size_t)b * heads * TT;
        /* dP = dO V^T (row i contiguous) */
        CB(cublasGemmStridedBatchedEx(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, T, T, dh, &one, V, CUDA_R_32F, 3 * D, dh, dOb,
                                      CUDA_R_32F, D, dh, &zero, dSb, CUDA_R_32F, T, TT, heads, ct, CUBLAS_GEMM_DEFAULT),
           "attention backward (dP)");
        /* dV = P^T dO */
        CB(cublasGemmStridedBatchedEx(g->blas, CUBLAS_OP_N, CUBLAS_OP_T, dh, T, T, &one, dOb, CUDA_R_32F, D, dh, Pm,
                                      CUDA_R_32F, T, TT, &zero, dV, CUDA_R_32F, 3 * D, dh, heads, ct,
                                      CUBLAS_GEMM_DEFAULT),
           "attention backward (dV)");
    }
    k_softmax_bwd<<<(unsigned)((size_t)n * heads * T), 128, 0, g->st>>>(probs, dS, T, scale);
    for (int b = 0; b < n; b++) {
        const size_t base = (size_t)b * T * 3 * D;
        const float *Q = qkv + base, *K = Q + D, *dSb = dS + (size_t)b * heads * TT;
        float *dQ = dqkv + base, *dK = dQ + D;
        /* dQ = dS K, dK = dS^T Q (dS holds the scale already) */
        CB(cublasGemmStridedBatchedEx(g->blas, CUBLAS_OP_N, CUBLAS_OP_N, dh, T, T, &one, K, CUDA_R_32F, 3 * D, dh, dSb,
                                      CUDA_R_32F, T, TT, &zero, dQ, CUDA_R_32F, 3 * D, dh, heads, ct,
                                      CUBLAS_GEMM_DEFAULT),
           "attention backward (dQ)");
        CB(cublasGemmStridedBatchedEx(g->blas, CUBLAS_OP_N, CUBLAS_OP_T, dh, T, T, &one, Q, CUDA_R_32F, 3 * D, dh, dSb,
                                      CUDA_R_32F, T, TT, &zero, dK, CUDA_R_32F, 3 * D, dh, heads, ct,
                                      CUBLAS_GEMM_DEFAULT),
           "attention backward (dK)");
    }
    return CUDA_B_OK;
}

/* gradient slots of a block, in cuda_backend.h's order */
enum { G_LN1_G, G_LN1_B, G_QKV_W, G_QKV_B, G_PROJ_W, G_PROJ_B, G_LN2_G, G_LN2_B, G_FC1_W, G_FC1_B, G_FC2_W, G_FC2_B,
       G_LS1, G_LS2 };

/* Block l backward: w.dx holds dL/dx_out and becomes dL/dx_in. */
int block_bwd(cuda_model *g, int l, const drec &r, float *const *gd, int n, int T, bwork &w, char *msg, size_t len) {
    const dblock &bk = g->blocks[l];
    const int D = g->D, Hd = g->hidden, rows = n * T, H1 = g->act == 2 ? 2 * Hd : Hd;
    const size_t RH = (size_t)rows * Hd;
    int rc = 0;
    auto G = [&](int i) -> float * { return gd ? gd[i] : nullptr; };
    /* MLP branch */
    const float *dz = scale_bwd(g, w.dx, bk.ls2, r.y2, bk.fc2.b, w.dz, w.tmp, G(G_LS2), rows, msg, len, &rc);
    TRY(rc);
    TRY(colsum(g, dz, rows, D, D, G(G_FC2_B), msg, len));
    TRY(linear_bwd(g, dz, rows, D, r.a, Hd, bk.fc2, G(G_FC2_W), w.da, Hd, 0.0f, msg, len));
    if (g->act == 2)
        k_swiglu_bwd<<<blocks_for(RH), 256, 0, g->st>>>(r.u, bk.fc1.b, w.da, w.du, RH, Hd);
    else
        k_act_bwd<<<blocks_for(RH), 256, 0, g->st>>>(r.u, bk.fc1.b, w.da, w.du, RH, Hd, g->act);
    TRY(colsum(g, w.du, rows, H1, H1, G(G_FC1_B), msg, len));
    TRY(linear_bwd(g, w.du, rows, H1, r.h2, D, bk.fc1, G(G_FC1_W), w.dh, D, 0.0f, msg, len));
    TRY(layernorm_bwd(g, r.x_mid, bk.ln2_g, w.dh, w.dx, w.tmp, G(G_LN2_G), G(G_LN2_B), rows, msg, len));
    /* attention branch */
    dz = scale_bwd(g, w.dx, bk.ls1, r.y1, bk.proj.b, w.dz, w.tmp, G(G_LS1), rows, msg, len, &rc);
    TRY(rc);
    TRY(colsum(g, dz, rows, D, D, G(G_PROJ_B), msg, len));
    TRY(linear_bwd(g, dz, rows, D, r.o, D, bk.proj, G(G_PROJ_W), w.dO, D, 0.0f, msg, len));
    TRY(attention_bwd(g, r.qkv, r.probs, w.dO, w.dqkv, w.dS, n, T, msg, len));
    TRY(colsum(g, w.dqkv, rows, 3 * D, 3 * D, G(G_QKV_B), msg, len));
    TRY(linear_bwd(g, w.dqkv, rows, 3 * D, r.h1, D, bk.qkv, G(G_QKV_W), w.dh, D, 0.0f, msg, len));
    return layernorm_bwd(g, r.x_in, bk.ln1_g, w.dh, w.dx, w.tmp, G(G_LN1_G), G(G_LN1_B), rows, msg, len);
}

/* Device gradient buffers for the host ones asked for (zeroed), in one
 * allocation; map[i] pairs them. */
int grads_reserve(cuda_model *g, const cuda_grads *gr, int np, std::vector<dgrad> &map, char *msg, size_t len) {
    dtrain *t = g->tr;
    const size_t D = (size_t)g->D, H = (size_t)g->hidden, H1 = g->act == 2 ? 2 * H : H;
    const size_t K = (size_t)3 * g->P * g->P, R = (size_t)g->R;
    map.clear();
    auto add = [&](float *host, size_t n) {
        if (host) map.push_back({nullptr, host, n});
    };
    if (gr->blk)
        for (int l = gr->lowest; l < g->depth; l++) {
            float *const *b = gr->blk + (size_t)l * CUDA_BLOCK_GRADS;
            const size_t sizes[CUDA_BLOCK_GRADS] = {D, D, 3 * D * D, 3 * D, D * D, D, D, D, H1 * D, H1, D * H, D, D, D};
            for (int i = 0; i < CUDA_BLOCK_GRADS; i++) add(b[i], sizes[i]);
        }
    if (gr->lowest == 0) {
        add(gr->patch_w, D * K);
        add(gr->patch_b, D);
        add(gr->cls ? gr->cls : gr->pos0, D); /* the CLS rows' sum: cls's and pos0's gradient */
        add(gr->reg, R * D);
        add(gr->pre_g, D);
        add(gr->pre_b, D);
        add(gr->ppos, (size_t)np * D);
    }
    size_t total = 0;
    for (const dgrad &d : map) total += (d.n + 63) & ~(size_t)63;
    TRY(dev_grow(&t->grads, &t->cap_grads, total ? total : 1, &g->act_bytes, "allocating gradients", msg, len));
    if (total > t->cap_staging) {
        if (t->staging) cudaFreeHost(t->staging);
        t->staging = nullptr;
        t->cap_staging = 0;
        CU(cudaMallocHost((void **)&t->staging, total * sizeof(float)), "allocating pinned host memory");
        t->cap_staging = total;
    }
    float *p = t->grads;
    for (dgrad &d : map) {
        d.dev = p;
        p += (d.n + 63) & ~(size_t)63;
    }
    CU(cudaMemsetAsync(t->grads, 0, (total ? total : 1) * sizeof(float), g->st), "zeroing gradients");
    return CUDA_B_OK;
}

float *dev_of(const std::vector<dgrad> &map, const float *host) {
    if (!host) return nullptr;
    for (const dgrad &d : map)
        if (d.host == host) return d.dev;
    return nullptr;
}

int backward(cuda_model *g, const float *dxcls, const cuda_grads *gr, float *dpixels, double *gpu_ms, char *msg,
             size_t len) {
    CU(cudaSetDevice(g->dev), "selecting the device");
    dtrain *t = g->tr;
    if (!t || !t->n) {
        snprintf(msg, len, "CUDA backward: no recorded forward pass");
        return CUDA_B_ERROR;
    }
    const int n = t->n, T = t->T, rows = t->rows, D = g->D, P = g->P, np = t->gh * t->gw, R = g->R;
    const int Hd = g->hidden, H1 = g->act == 2 ? 2 * Hd : Hd, K = 3 * P * P;
    const int lowest = gr->lowest < 0 ? 0 : gr->lowest;
    const size_t RD = (size_t)rows * D, TT = (size_t)T * T;
    /* work buffers */
    const size_t need = RD * 5 + RD * 3 + (size_t)rows * H1 + (size_t)rows * Hd + (size_t)n * g->heads * TT;
    TRY(dev_grow(&t->work, &t->cap_work, need, &g->act_bytes, "allocating backward buffers", msg, len));
    const size_t nones = (size_t)rows; /* the most rows a column sum adds up */
    if (nones > t->cap_ones) {
        TRY(dev_grow(&t->ones, &t->cap_ones, nones, &g->act_bytes, "allocating backward buffers", msg, len));
        k_fill<<<blocks_for(nones), 256, 0, g->st>>>(t->ones, 1.0f, nones);
    }
    bwork w;
    float *p = t->work;
    w.dx = p, p += RD;
    w.dz = p, p += RD;
    w.dh = p, p += RD;
    w.dO = p, p += RD;
    w.tmp = p, p += RD;
    w.dqkv = p, p += 3 * RD;
    w.du = p, p += (size_t)rows * H1;
    w.da = p, p += (size_t)rows * Hd;
    w.dS = p;
    std::vector<dgrad> map;
    TRY(grads_reserve(g, gr, np, map, msg, len));
    CU(cudaEventRecord(g->ev0, g->st), "recording an event");
    /* the gradient enters at the CLS rows of the stack output */
    CU(cudaMemsetAsync(w.dx, 0, RD * sizeof(float), g->st), "zeroing");
    CU(cudaMemcpy2DAsync(w.dx, (size_t)T * D * sizeof(float), dxcls, (size_t)D * sizeof(float),
                         (size_t)D * sizeof(float), (size_t)n, cudaMemcpyHostToDevice, g->st),
       "uploading the CLS gradients");
    std::vector<float *> blkdev((size_t)g->depth * CUDA_BLOCK_GRADS, nullptr);
    if (gr->blk)
        for (int l = lowest; l < g->depth; l++)
            for (int i = 0; i < CUDA_BLOCK_GRADS; i++)
                blkdev[(size_t)l * CUDA_BLOCK_GRADS + i] = dev_of(map, gr->blk[(size_t)l * CUDA_BLOCK_GRADS + i]);
    for (int l = g->depth - 1; l >= lowest; l--) {
        const drec *r = &t->blk[l];
        drec rr;
        if (t->ckpt) { /* recompute the block from its kept input */
            rr = t->scratch;
            rr.x_in = t->blk[l].x_in;
            CU(cudaMemcpyAsync(g->x, t->blk[l].x_in, RD * sizeof(float), cudaMemcpyDeviceToDevice, g->st), "tape");
            drec fw = rr;
            fw.x_in = g->x;
            TRY(block_fwd_rec(g, l, g->x, n, T, fw, msg, len));
            r = &rr;
        }
        TRY(block_bwd(g, l, *r, gr->blk ? blkdev.data() + (size_t)l * CUDA_BLOCK_GRADS : nullptr, n, T, w, msg, len));
    }
    const bool below = lowest == 0 && (gr->embed || dpixels);
    if (below) {
        /* ln_pre (CLIP) */
        const float *dx0 = w.dx;
        if (g->pre_g) {
            CU(cudaMemsetAsync(w.dz, 0, RD * sizeof(float), g->st), "zeroing");
            TRY(layernorm_bwd(g, t->x0, g->pre_g, w.dx, w.dz, w.tmp, dev_of(map, gr->pre_g), dev_of(map, gr->pre_b),
                              rows, msg, len));
            dx0 = w.dz;
        }
        /* tokens: row 0 = cls + pos0, rows 1..R registers, then patch rows */
        TRY(colsum(g, dx0, n, D, T * D, dev_of(map, gr->cls ? gr->cls : gr->pos0), msg, len));
        if (float *dr = dev_of(map, gr->reg))
            for (int k = 0; k < R; k++) TRY(colsum(g, dx0 + (size_t)(1 + k) * D, n, D, T * D, dr + (size_t)k * D, msg, len));
        float *dpe = w.dh; /* [n * np, D] */
        CU(cudaMemcpy2DAsync(dpe, (size_t)np * D * sizeof(float), dx0 + (size_t)(1 + R) * D,
                             (size_t)T * D * sizeof(float), (size_t)np * D * sizeof(float), (size_t)n,
                             cudaMemcpyDeviceToDevice, g->st),
           "gathering patch rows");
        TRY(colsum(g, dpe, n * np, D, D, dev_of(map, gr->patch_b), msg, len));
        TRY(colsum(g, dpe, n, np * D, np * D, dev_of(map, gr->ppos), msg, len));
        if (float *dw = dev_of(map, gr->patch_w)) TRY(linear_bwd(g, dpe, n * np, D, t->patches, K, g->patch, dw, nullptr, 0, 0.0f, msg, len));
        if (dpixels) {
            const size_t npix = (size_t)n * 3 * t->H * t->W;
            TRY(dev_grow(&t->dpix, &t->cap_dpix, npix, &g->act_bytes, "allocating input gradients", msg, len));
            float *dpatch = g->patches; /* [n * np, K], free after the forward pass */
            TRY(linear_bwd(g, dpe, n * np, D, nullptr, 0, g->patch, nullptr, dpatch, K, 0.0f, msg, len));
            CU(cudaMemsetAsync(t->dpix, 0, npix * sizeof(float), g->st), "zeroing");
            k_col2im<<<blocks_for((size_t)n * np * K), 256, 0, g->st>>>(dpatch, t->dpix, n, t->H, t->W, P, t->gh, t->gw);
        }
    }
    CU(cudaGetLastError(), "launching a kernel");
    CU(cudaEventRecord(g->ev1, g->st), "recording an event");
    /* gradients to the host: one download, then added (ppos overwritten) */
    size_t total = 0;
    for (const dgrad &d : map) total += (d.n + 63) & ~(size_t)63;
    if (total) CU(cudaMemcpyAsync(t->staging, t->grads, total * sizeof(float), cudaMemcpyDeviceToHost, g->st), "downloading gradients");
    if (below && dpixels)
        CU(cudaMemcpyAsync(dpixels, t->dpix, (size_t)n * 3 * t->H * t->W * sizeof(float), cudaMemcpyDeviceToHost, g->st),
           "downloading input gradients");
    TRY(finish_timed(g, gpu_ms, "running the backward pass", msg, len));
    const float *s = t->staging;
    for (const dgrad &d : map) {
        if (d.host == gr->ppos) {
            memcpy(d.host, s, d.n * sizeof(float));
        } else {
            for (size_t i = 0; i < d.n; i++) d.host[i] += s[i];
            if (d.host == gr->cls && gr->cls && gr->pos0)
                for (size_t i = 0; i < d.n; i++) gr->pos0[i] += s[i];
        }
        s += (d.n + 63) & ~(size_t)63;
    }
    return CUDA_B_OK;
}

/* ------------------------------------------------------- weight refresh */

int refresh_buf(cuda_model *g, float *dst, const float *src, size_t n, char *msg, size_t len) {
    if (!dst || !src) return CUDA_B_OK;
    CU(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyHostToDevice, g->st), "uploading the weights");
    return CUDA_B_OK;
}

int refresh_linear(cuda_model *g, const dlinear &L, const float *w, const float *const *parts, int nparts,
                   const float *b, char *msg, size_t len) {
    const size_t n = (size_t)L.out * L.in;
    float *dst = L.w;
    if (g->bf16) { /* through the activation scratch of the patch GEMM, then rounded */
        TRY(dev_grow(&g->patches, &g->cap_patch, n, &g->act_bytes, "allocating the weights", msg, len));
        dst = g->patches;
    }
    if (w) {
        TRY(refresh_buf(g, dst, w, n, msg, len));
    } else {
        const size_t part = n / nparts;
        for (int i = 0; i < nparts; i++) TRY(refresh_buf(g, dst + i * part, parts[i], part, msg, len));
    }
    if (g->bf16) k_to_bf16<<<blocks_for(n), 256, 0, g->st>>>(dst, L.wb, n);
    return refresh_buf(g, L.b, b, (size_t)L.out, msg, len);
}

int refresh(cuda_model *g, const cuda_model_desc *d, char *msg, size_t len) {
    CU(cudaSetDevice(g->dev), "selecting the device");
    const int D = g->D;
    TRY(refresh_linear(g, g->patch, d->patch_w, nullptr, 0, d->patch_b, msg, len));
    TRY(refresh_buf(g, g->cls, d->cls, D, msg, len));
    TRY(refresh_buf(g, g->pos0, d->pos0, D, msg, len));
    TRY(refresh_buf(g, g->reg, d->reg, (size_t)g->R * D, msg, len));
    TRY(refresh_buf(g, g->pre_g, d->pre_g, D, msg, len));
    TRY(refresh_buf(g, g->pre_b, d->pre_b, D, msg, len));
    TRY(refresh_buf(g, g->fin_g, d->fin_g, D, msg, len));
    TRY(refresh_buf(g, g->fin_b, d->fin_b, D, msg, len));
    TRY(refresh_buf(g, g->head.w, d->head_w, (size_t)g->head.out * D, msg, len));
    for (int l = 0; l < g->depth; l++) {
        const cuda_block_desc *s = &d->blocks[l];
        const dblock &t = g->blocks[l];
        TRY(refresh_buf(g, t.ln1_g, s->ln1_g, D, msg, len));
        TRY(refresh_buf(g, t.ln1_b, s->ln1_b, D, msg, len));
        TRY(refresh_buf(g, t.ln2_g, s->ln2_g, D, msg, len));
        TRY(refresh_buf(g, t.ln2_b, s->ln2_b, D, msg, len));
        TRY(refresh_linear(g, t.qkv, s->qkv.w, s->q_rows, 3, s->qkv.b, msg, len));
        TRY(refresh_linear(g, t.proj, s->proj.w, nullptr, 0, s->proj.b, msg, len));
        TRY(refresh_linear(g, t.fc1, s->fc1.w, nullptr, 0, s->fc1.b, msg, len));
        TRY(refresh_linear(g, t.fc2, s->fc2.w, nullptr, 0, s->fc2.b, msg, len));
        TRY(refresh_buf(g, t.ls1, s->ls1, D, msg, len));
        TRY(refresh_buf(g, t.ls2, s->ls2, D, msg, len));
    }
    CU(cudaStreamSynchronize(g->st), "uploading the weights");
    return CUDA_B_OK;
}

void train_release(cuda_model *g) {
    dtrain *t = g->tr;
    if (!t) return;
    float *bufs[] = {t->tape, t->work, t->grads, t->ones, t->dpix};
    for (float *p : bufs)
        if (p) cudaFree(p);
    if (t->staging) cudaFreeHost(t->staging);
    delete t;
    g->tr = nullptr;
}

} // namespace

extern "C" {

int cuda_model_forward_record(cuda_model *g, const float *pixels, int n, int H, int W, const float *ppos,
                              int checkpoint, float *xcls, double *gpu_ms, char *msg, size_t len) {
    if (!g || !pixels || !ppos || !xcls || n < 1) {
        snprintf(msg, len, "CUDA recorded forward: bad argument");
        return CUDA_B_ERROR;
    }
    try {
        return forward_record(g, pixels, n, H, W, ppos, checkpoint, xcls, gpu_ms, msg, len);
    } catch (const std::bad_alloc &) {
        snprintf(msg, len, "out of memory");
        return CUDA_B_NOMEM;
    }
}

int cuda_model_backward(cuda_model *g, const float *dxcls, const cuda_grads *grads, float *dpixels, double *gpu_ms,
                        char *msg, size_t len) {
    if (!g || !dxcls || !grads) {
        snprintf(msg, len, "CUDA backward: bad argument");
        return CUDA_B_ERROR;
    }
    try {
        return backward(g, dxcls, grads, dpixels, gpu_ms, msg, len);
    } catch (const std::bad_alloc &) {
        snprintf(msg, len, "out of memory");
        return CUDA_B_NOMEM;
    }
}

int cuda_model_refresh(cuda_model *g, const cuda_model_desc *d, char *msg, size_t len) {
    if (!g || !d) {
        snprintf(msg, len, "CUDA refresh: bad argument");
        return CUDA_B_ERROR;
    }
    return refresh(g, d, msg, len);
}

} // extern "C"
