/*
 * CUDA forward pass of the image tower (see cuda_backend.h): weights on the
 * device, cuBLAS GEMMs, wobble's own kernels for everything else. The
 * training half (recorded pass, backward, weight refresh) is train.cuh,
 * part of this translation unit.
 */
#include "cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

namespace {

struct dlinear {
    float *w = nullptr;          /* fp32 [out, in] (fp32 GEMMs) */
    __nv_bfloat16 *wb = nullptr; /* bf16 [out, in] (bf16 GEMMs) */
    float *b = nullptr;          /* [out] or nullptr */
    int out = 0, in = 0;
};

struct dblock {
    float *ln1_g = nullptr, *ln1_b = nullptr, *ln2_g = nullptr, *ln2_b = nullptr;
    dlinear qkv, proj, fc1, fc2;
    float *ls1 = nullptr, *ls2 = nullptr;
};

} // namespace

struct cuda_model {
    int dev = 0;
    cudaStream_t st = nullptr;
    cublasHandle_t blas = nullptr;
    cudaEvent_t ev0 = nullptr, ev1 = nullptr;
    int D = 0, depth = 0, heads = 0, hidden = 0, P = 0, R = 0, act = 0, bf16 = 0, tf32 = 0;
    float eps = 0;
    dlinear patch;
    float *cls = nullptr, *pos0 = nullptr, *reg = nullptr, *pre_g = nullptr, *pre_b = nullptr, *fin_g = nullptr,
          *fin_b = nullptr;
    std::vector<dblock> blocks;
    dlinear head; /* projection (fp32 always: a small GEMM), w null if none */
    std::vector<void *> weights; /* every weight allocation */
    size_t weight_bytes = 0;
    /* activations, grown on demand */
    size_t cap_rows = 0, cap_patch = 0, cap_pix = 0, cap_ppos = 0, cap_bf = 0;
    float *x = nullptr, *h = nullptr, *qkv = nullptr, *att = nullptr, *mlp = nullptr, *mlp2 = nullptr,
          *patches = nullptr, *pix = nullptr, *ppos = nullptr;
    __nv_bfloat16 *abf = nullptr;
    float *pinned = nullptr; /* host staging for the pixel upload */
    size_t cap_pinned = 0;
    size_t act_bytes = 0; /* all activation buffers */
    size_t row_bytes = 0; /* of which the per-row ones (x, h, qkv, att, mlp, mlp2) */
    struct dtrain *tr = nullptr; /* training state (train.cuh), made by the first recorded pass */
};

namespace {

int cu_fail(cudaError_t e, const char *what, char *msg, size_t len) {
    if (e == cudaSuccess) return CUDA_B_OK;
    snprintf(msg, len, "CUDA: %s: %s", what, cudaGetErrorString(e));
    if (e == cudaErrorMemoryAllocation) return CUDA_B_NOMEM;
    if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver || e == cudaErrorInvalidDevice)
        return CUDA_B_NODEVICE;
    return CUDA_B_ERROR;
}

const char *blas_name(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "not initialised";
    case CUBLAS_STATUS_ALLOC_FAILED: return "out of device memory";
    case CUBLAS_STATUS_INVALID_VALUE: return "invalid value";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "not supported by this GPU";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "execution failed";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "not supported";
    default: return "error";
    }
}

int blas_fail(cublasStatus_t s, const char *what, char *msg, size_t len) {
    if (s == CUBLAS_STATUS_SUCCESS) return CUDA_B_OK;
    snprintf(msg, len, "cuBLAS: %s: %s", what, blas_name(s));
    return s == CUBLAS_STATUS_ALLOC_FAILED ? CUDA_B_NOMEM : CUDA_B_ERROR;
}

#define CU(call, what)                                                                                                \
    do {                                                                                                              \
        const int rc_ = cu_fail((call), (what), msg, len);                                                            \
        if (rc_) return rc_;                                                                                          \
    } while (0)
#define CB(call, what)                                                                                                \
    do {                                                                                                              \
        const int rc_ = blas_fail((call), (what), msg, len);                                                          \
        if (rc_) return rc_;                                                                                          \
    } while (0)
#define TRY(call)                                                                                                     \
    do {                                                                                                              \
        const int rc_ = (call);                                                                                       \
        if (rc_) return rc_;                                                                                          \
    } while (0)

/* grid-stride launch size for `total` elements */
unsigned blocks_for(size_t total, unsigned threads = 256) {
    size_t b = (total + threads - 1) / threads;
    if (b > 65535) b = 65535;
    return b ? (unsigned)b : 1u;
}

#define FOR_EACH(i, total)                                                                                            \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (total); i += (size_t)gridDim.x * blockDim.x)

/* ------------------------------------------------------------- kernels */

__global__ void k_to_bf16(const float *x, __nv_bfloat16 *y, size_t n) {
    FOR_EACH(i, n) y[i] = __float2bfloat16_rn(x[i]);
}

/* the pixel of patch element i: patches[b * np + py * gw + px][(c * P + ky) * P + kx]
 * is pix[b][c][py P + ky][px P + kx] */
__device__ size_t im2col_pixel(size_t i, int H, int W, int P, int gh, int gw) {
    const size_t K = (size_t)3 * P * P;
    const int k = (int)(i % K);
    const size_t pr = i / K;
    const int px = (int)(pr % gw), py = (int)(pr / gw % gh), b = (int)(pr / gw / gh);
    const int c = k / (P * P), r = k % (P * P), ky = r / P, kx = r % P;
    return (((size_t)b * 3 + c) * H + (size_t)py * P + ky) * W + (size_t)px * P + kx;
}

__global__ void k_im2col(const float *pix, float *patches, int n, int H, int W, int P, int gh, int gw) {
    const size_t total = (size_t)n * gh * gw * 3 * P * P;
    FOR_EACH(i, total) patches[i] = pix[im2col_pixel(i, H, W, P, gh, gw)];
}

/* tokens of image b: [cls + pos0, registers, (patch + bias) + position] */
__global__ void k_tokens(float *x, const float *tmp, const float *cls, const float *pos0, const float *reg,
                         const float *pb, const float *ppos, int n, int T, int R, int np, int D) {
    const size_t total = (size_t)n * T * D;
    FOR_EACH(i, total) {
        const int j = (int)(i % D), t = (int)(i / D % T), b = (int)(i / D / T);
        float v;
        if (t == 0) {
            v = cls[j] + pos0[j];
        } else if (t <= R) {
            v = reg[(size_t)(t - 1) * D + j];
        } else {
            const int p = t - 1 - R;
            const float s = tmp[((size_t)b * np + p) * D + j];
            v = pb ? (s + pb[j]) + ppos[(size_t)p * D + j] : s + ppos[(size_t)p * D + j];
        }
        x[i] = v;
    }
}

__device__ float block_sum(float v, float *red) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    __syncthreads();
    if (lane == 0) red[wid] = v;
    __syncthreads();
    float s = 0.0f;
    for (int w = 0; w < nw; w++) s += red[w];
    return s;
}

/* a row's mean and 1 / sqrt(var + eps), two passes as the CPU's (mean,
 * then variance), by the whole block */
__device__ void row_stats(const float *xr, int D, float eps, float *red, float *mu, float *rstd) {
    float s = 0.0f;
    for (int j = threadIdx.x; j < D; j += blockDim.x) s += xr[j];
    const float m = block_sum(s, red) / (float)D;
    float v = 0.0f;
    for (int j = threadIdx.x; j < D; j += blockDim.x) {
        const float t = xr[j] - m;
        v += t * t;
    }
    *mu = m;
    *rstd = 1.0f / sqrtf(block_sum(v, red) / (float)D + eps);
}

/* one row per block; y may be x */
__global__ void k_layernorm(const float *x, float *y, const float *g, const float *b, int D, float eps) {
    __shared__ float red[32];
    const float *xr = x + (size_t)blockIdx.x * D;
    float *yr = y + (size_t)blockIdx.x * D;
    float mu, rstd;
    row_stats(xr, D, eps, red, &mu, &rstd);
    for (int j = threadIdx.x; j < D; j += blockDim.x) yr[j] = (xr[j] - mu) * rstd * g[j] + b[j];
}

__global__ void k_add_bias(float *y, const float *b, size_t total, int out) {
    FOR_EACH(i, total) y[i] += b[i % out];
}

/* x += ls * (y + b), b and ls optional */
__global__ void k_residual(float *x, const float *y, const float *b, const float *ls, size_t total, int D) {
    FOR_EACH(i, total) {
        const int j = (int)(i % D);
        const float v = y[i] + (b ? b[j] : 0.0f);
        x[i] += (ls ? ls[j] : 1.0f) * v;
    }
}

/* x = act(x + b) in place: 0 GELU (erf), 1 QuickGELU */
__global__ void k_act(float *x, const float *b, size_t total, int h, int kind) {
    FOR_EACH(i, total) {
        const float v = x[i] + (b ? b[i % h] : 0.0f);
        x[i] = kind == 0 ? 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)) : v / (1.0f + expf(-1.702f * v));
    }
}

/* o[r][j] = silu(u[r][j] + b[j]) * (u[r][h + j] + b[h + j]) */
__global__ void k_swiglu(const float *u, const float *b, float *o, size_t total, int h) {
    FOR_EACH(i, total) {
        const size_t r = i / h;
        const int j = (int)(i % h);
        const float a = u[r * 2 * h + j] + (b ? b[j] : 0.0f), c = u[r * 2 * h + h + j] + (b ? b[h + j] : 0.0f);
        o[i] = a / (1.0f + expf(-a)) * c;
    }
}

/*
 * Fused attention, flash-style: a block holds QB queries of one (image,
 * head), one per thread; key and value tiles of KT tokens go through shared
 * memory; the softmax is online (running maximum and sum, fp32), so no T x T
 * matrix exists. DH: the head width rounded up (32, 64 or 128).
 */
constexpr int QB = 64, KT = 32;

template <int DH>
__global__ void k_attention(const float *qkv, float *out, int T, int D, int heads, int dh, float scale) {
    __shared__ float Ks[KT * DH], Vs[KT * DH];
    const int bh = blockIdx.y, b = bh / heads, hh = bh % heads;
    const int t = blockIdx.x * QB + threadIdx.x;
    const bool active = t < T;
    const size_t row = (size_t)3 * D;
    const float *base = qkv + (size_t)b * T * row + (size_t)hh * dh;
    float q[DH], acc[DH];
#pragma unroll
    for (int d = 0; d < DH; d++) {
        q[d] = active && d < dh ? base[(size_t)t * row + d] : 0.0f;
        acc[d] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int k0 = 0; k0 < T; k0 += KT) {
        const int kn = T - k0 < KT ? T - k0 : KT;
        __syncthreads();
        for (int i = threadIdx.x; i < KT * DH; i += blockDim.x) {
            const int kk = i / DH, d = i % DH;
            float kv = 0.0f, vv = 0.0f;
            if (kk < kn && d < dh) {
                const float *r = base + (size_t)(k0 + kk) * row;
                kv = r[D + d];
                vv = r[2 * D + d];
            }
            Ks[i] = kv;
            Vs[i] = vv;
        }
        __syncthreads();
        if (!active) continue;
        float s[KT];
        float mt = m;
#pragma unroll
        for (int kk = 0; kk < KT; kk++) {
            float dot = 0.0f;
#pragma unroll
            for (int d = 0; d < DH; d++) dot = fmaf(q[d], Ks[kk * DH + d], dot);
            s[kk] = kk < kn ? dot * scale : -INFINITY;
            mt = fmaxf(mt, s[kk]);
        }
        const float corr = expf(m - mt); /* 0 on the first tile (m = -inf) */
        l *= corr;
#pragma unroll
        for (int d = 0; d < DH; d++) acc[d] *= corr;
#pragma unroll
        for (int kk = 0; kk < KT; kk++) {
            const float p = kk < kn ? expf(s[kk] - mt) : 0.0f;
            l += p;
#pragma unroll
            for (int d = 0; d < DH; d++) acc[d] = fmaf(p, Vs[kk * DH + d], acc[d]);
        }
        m = mt;
    }
    if (!active) return;
    const float inv = 1.0f / l;
    float *o = out + ((size_t)b * T + t) * D + (size_t)hh * dh;
#pragma unroll
    for (int d = 0; d < DH; d++)
        if (d < dh) o[d] = acc[d] * inv;
}

/* -------------------------------------------------------------- weights */

int upload(cuda_model *g, const float *src, size_t n, float **dst, char *msg, size_t len) {
    *dst = nullptr;
    if (!src) return CUDA_B_OK;
    void *p = nullptr;
    CU(cudaMalloc(&p, n * sizeof(float)), "allocating the weights");
    g->weights.push_back(p);
    g->weight_bytes += n * sizeof(float);
    *dst = (float *)p;
    CU(cudaMemcpy(p, src, n * sizeof(float), cudaMemcpyHostToDevice), "uploading the weights");
    return CUDA_B_OK;
}

/* W [out, in] from one matrix, or from `parts` matrices of out / parts rows
 * each (separate q, k, v); fp32 kept for fp32 GEMMs, bf16 for bf16 GEMMs. */
int upload_linear(cuda_model *g, const float *w, const float *const *parts, int nparts, const float *b, int out,
                  int in, dlinear *L, char *msg, size_t len) {
    L->out = out;
    L->in = in;
    const size_t n = (size_t)out * in;
    float *w32 = nullptr;
    CU(cudaMalloc(&w32, n * sizeof(float)), "allocating the weights");
    g->weights.push_back(w32); /* freed with the model, whatever fails below */
    const size_t slot = g->weights.size() - 1;
    g->weight_bytes += n * sizeof(float);
    if (w) {
        CU(cudaMemcpy(w32, w, n * sizeof(float), cudaMemcpyHostToDevice), "uploading the weights");
    } else {
        const size_t part = n / nparts;
        for (int i = 0; i < nparts; i++)
            CU(cudaMemcpy(w32 + i * part, parts[i], part * sizeof(float), cudaMemcpyHostToDevice),
               "uploading the weights");
    }
    if (g->bf16) { /* keep the bf16 copy only */
        void *p = nullptr;
        CU(cudaMalloc(&p, n * sizeof(__nv_bfloat16)), "allocating the bf16 weights");
        g->weights.push_back(p);
        g->weight_bytes += n * sizeof(__nv_bfloat16);
        L->wb = (__nv_bfloat16 *)p;
        k_to_bf16<<<blocks_for(n), 256, 0, g->st>>>(w32, L->wb, n);
        CU(cudaStreamSynchronize(g->st), "converting the weights to bf16");
        cudaFree(w32);
        g->weights[slot] = nullptr;
        g->weight_bytes -= n * sizeof(float);
    } else {
        L->w = w32;
    }
    return upload(g, b, (size_t)out, &L->b, msg, len);
}

int create(const cuda_model_desc *d, int device, cuda_model *g, char *msg, size_t len) {
    g->dev = device;
    CU(cudaSetDevice(device), "selecting the device");
    CU(cudaStreamCreateWithFlags(&g->st, cudaStreamNonBlocking), "creating a stream");
    CU(cudaEventCreate(&g->ev0), "creating an event");
    CU(cudaEventCreate(&g->ev1), "creating an event");
    CB(cublasCreate(&g->blas), "creating the handle");
    CB(cublasSetStream(g->blas, g->st), "setting the stream");
    /* exact fp32 unless TF32 is asked for (the compute type says so per call too) */
    CB(cublasSetMathMode(g->blas, d->tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH), "setting the math mode");
    g->D = d->dim, g->depth = d->depth, g->heads = d->heads, g->hidden = d->hidden, g->P = d->patch, g->R = d->n_reg;
    g->act = d->act, g->eps = d->eps, g->bf16 = d->bf16, g->tf32 = d->tf32;
    const int D = d->dim, H = d->hidden, H1 = d->act == 2 ? 2 * H : H, K = 3 * d->patch * d->patch;
    if (D / d->heads > 128 || D % d->heads) {
        snprintf(msg, len, "CUDA: heads of width %d are not supported (at most 128)", D / d->heads);
        return CUDA_B_ERROR;
    }
    TRY(upload_linear(g, d->patch_w, nullptr, 0, d->patch_b, D, K, &g->patch, msg, len));
    TRY(upload(g, d->cls, D, &g->cls, msg, len));
    TRY(upload(g, d->pos0, D, &g->pos0, msg, len));
    TRY(upload(g, d->reg, (size_t)d->n_reg * D, &g->reg, msg, len));
    TRY(upload(g, d->pre_g, D, &g->pre_g, msg, len));
    TRY(upload(g, d->pre_b, D, &g->pre_b, msg, len));
    TRY(upload(g, d->fin_g, D, &g->fin_g, msg, len));
    TRY(upload(g, d->fin_b, D, &g->fin_b, msg, len));
    if (d->head_w) {
        g->head.out = d->embed_dim, g->head.in = D;
        TRY(upload(g, d->head_w, (size_t)d->embed_dim * D, &g->head.w, msg, len));
    }
    g->blocks.resize((size_t)d->depth);
    for (int l = 0; l < d->depth; l++) {
        const cuda_block_desc *s = &d->blocks[l];
        dblock *t = &g->blocks[l];
        TRY(upload(g, s->ln1_g, D, &t->ln1_g, msg, len));
        TRY(upload(g, s->ln1_b, D, &t->ln1_b, msg, len));
        TRY(upload(g, s->ln2_g, D, &t->ln2_g, msg, len));
        TRY(upload(g, s->ln2_b, D, &t->ln2_b, msg, len));
        TRY(upload_linear(g, s->qkv.w, s->q_rows, 3, s->qkv.b, 3 * D, D, &t->qkv, msg, len));
        TRY(upload_linear(g, s->proj.w, nullptr, 0, s->proj.b, D, D, &t->proj, msg, len));
        TRY(upload_linear(g, s->fc1.w, nullptr, 0, s->fc1.b, H1, D, &t->fc1, msg, len));
        TRY(upload_linear(g, s->fc2.w, nullptr, 0, s->fc2.b, D, H, &t->fc2, msg, len));
        TRY(upload(g, s->ls1, D, &t->ls1, msg, len));
        TRY(upload(g, s->ls2, D, &t->ls2, msg, len));
    }
    return CUDA_B_OK;
}

/* ---------------------------------------------------------- activations */

int grow(float **p, size_t *cap, size_t need, size_t *bytes, char *msg, size_t len) {
    if (need <= *cap) return CUDA_B_OK;
    if (*p) cudaFree(*p);
    *p = nullptr;
    *bytes -= *cap * sizeof(float);
    *cap = 0;
    CU(cudaMalloc((void **)p, need * sizeof(float)), "allocating activations");
    *cap = need;
    *bytes += need * sizeof(float);
    return CUDA_B_OK;
}

int reserve(cuda_model *g, size_t rows, size_t prow, size_t pix, size_t ppos, char *msg, size_t len) {
    const size_t D = (size_t)g->D, H = (size_t)g->hidden, H1 = g->act == 2 ? 2 * H : H;
    const size_t K = (size_t)3 * g->P * g->P;
    if (rows > g->cap_rows) {
        float **bufs[6] = {&g->x, &g->h, &g->qkv, &g->att, &g->mlp, &g->mlp2};
        const size_t need[6] = {rows * D, rows * D, rows * 3 * D, rows * D, rows * H1, g->act == 2 ? rows * H : 1};
        for (int i = 0; i < 6; i++) {
            if (*bufs[i]) cudaFree(*bufs[i]);
            *bufs[i] = nullptr;
        }
        g->act_bytes -= g->row_bytes;
        g->row_bytes = 0;
        g->cap_rows = 0;
        for (int i = 0; i < 6; i++) {
            CU(cudaMalloc((void **)bufs[i], need[i] * sizeof(float)), "allocating activations");
            g->row_bytes += need[i] * sizeof(float);
            g->act_bytes += need[i] * sizeof(float);
        }
        g->cap_rows = rows;
    }
    TRY(grow(&g->patches, &g->cap_patch, prow * K, &g->act_bytes, msg, len));
    TRY(grow(&g->pix, &g->cap_pix, pix, &g->act_bytes, msg, len));
    TRY(grow(&g->ppos, &g->cap_ppos, ppos, &g->act_bytes, msg, len));
    if (g->bf16) {
        const size_t need = rows * (H1 > D ? H1 : D) > prow * K ? rows * (H1 > D ? H1 : D) : prow * K;
        if (need > g->cap_bf) {
            if (g->abf) cudaFree(g->abf);
            g->abf = nullptr;
            g->act_bytes -= g->cap_bf * sizeof(__nv_bfloat16);
            g->cap_bf = 0;
            CU(cudaMalloc((void **)&g->abf, need * sizeof(__nv_bfloat16)), "allocating activations");
            g->cap_bf = need;
            g->act_bytes += need * sizeof(__nv_bfloat16);
        }
    }
    if (pix > g->cap_pinned) {
        if (g->pinned) cudaFreeHost(g->pinned);
        g->pinned = nullptr;
        g->cap_pinned = 0;
        CU(cudaMallocHost((void **)&g->pinned, pix * sizeof(float)), "allocating pinned host memory");
        g->cap_pinned = pix;
    }
    return CUDA_B_OK;
}

/* ------------------------------------------------------------- forward */

/* Y[rows, out] = X[rows, in] W^T: column-major cuBLAS sees Y^T = W X^T */
int gemm(cuda_model *g, const float *X, int rows, const dlinear &L, float *Y, char *msg, size_t len) {
    const float one = 1.0f, zero = 0.0f;
    if (g->bf16) {
        const size_t n = (size_t)rows * L.in;
        k_to_bf16<<<blocks_for(n), 256, 0, g->st>>>(X, g->abf, n);
        CB(cublasGemmEx(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, L.out, rows, L.in, &one, L.wb, CUDA_R_16BF, L.in, g->abf,
                        CUDA_R_16BF, L.in, &zero, Y, CUDA_R_32F, L.out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
           "bf16 GEMM");
    } else {
        CB(cublasGemmEx(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, L.out, rows, L.in, &one, L.w, CUDA_R_32F, L.in, X,
                        CUDA_R_32F, L.in, &zero, Y, CUDA_R_32F, L.out,
                        g->tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
           "fp32 GEMM");
    }
    return CUDA_B_OK;
}

void layernorm(cuda_model *g, const float *x, float *y, const float *gm, const float *bt, int rows) {
    k_layernorm<<<rows, 256, 0, g->st>>>(x, y, gm, bt, g->D, g->eps);
}

void attention(cuda_model *g, const float *qkv, float *out, int n, int T) {
    const int dh = g->D / g->heads;
    const float scale = 1.0f / sqrtf((float)dh);
    const dim3 grid((unsigned)((T + QB - 1) / QB), (unsigned)(n * g->heads));
    if (dh <= 32)
        k_attention<32><<<grid, QB, 0, g->st>>>(qkv, out, T, g->D, g->heads, dh, scale);
    else if (dh <= 64)
        k_attention<64><<<grid, QB, 0, g->st>>>(qkv, out, T, g->D, g->heads, dh, scale);
    else
        k_attention<128><<<grid, QB, 0, g->st>>>(qkv, out, T, g->D, g->heads, dh, scale);
}

/* pixels (through the pinned staging buffer) and the position rows up,
 * then the start event */
int upload_inputs(cuda_model *g, const float *pixels, size_t npix, const float *ppos, size_t nppos, char *msg,
                  size_t len) {
    memcpy(g->pinned, pixels, npix * sizeof(float));
    CU(cudaMemcpyAsync(g->pix, g->pinned, npix * sizeof(float), cudaMemcpyHostToDevice, g->st), "uploading pixels");
    CU(cudaMemcpyAsync(g->ppos, ppos, nppos * sizeof(float), cudaMemcpyHostToDevice, g->st),
       "uploading position embeddings");
    CU(cudaEventRecord(g->ev0, g->st), "recording an event");
    return CUDA_B_OK;
}

/* wait for the stream; add the time between the two events to *gpu_ms */
int finish_timed(cuda_model *g, double *gpu_ms, const char *what, char *msg, size_t len) {
    CU(cudaStreamSynchronize(g->st), what);
    if (gpu_ms) {
        float ms = 0;
        CU(cudaEventElapsedTime(&ms, g->ev0, g->ev1), "timing the GPU's work");
        *gpu_ms += ms;
    }
    return CUDA_B_OK;
}

int forward(cuda_model *g, const float *pixels, int n, int H, int W, const float *ppos, float *cls_out,
            float *patch_out, double *gpu_ms, char *msg, size_t len) {
    CU(cudaSetDevice(g->dev), "selecting the device");
    const int P = g->P, gh = H / P, gw = W / P, np = gh * gw, T = 1 + g->R + np, rows = n * T, D = g->D;
    const int Hd = g->hidden;
    const size_t npix = (size_t)n * 3 * H * W;
    TRY(reserve(g, (size_t)rows, (size_t)n * np, npix, (size_t)np * D, msg, len));
    /* upload through pinned memory (an asynchronous copy on the stream) */
    TRY(upload_inputs(g, pixels, npix, ppos, (size_t)np * D, msg, len));
    const size_t K = (size_t)3 * P * P;
    k_im2col<<<blocks_for((size_t)n * np * K), 256, 0, g->st>>>(g->pix, g->patches, n, H, W, P, gh, gw);
    TRY(gemm(g, g->patches, n * np, g->patch, g->h, msg, len));
    k_tokens<<<blocks_for((size_t)rows * D), 256, 0, g->st>>>(g->x, g->h, g->cls, g->pos0, g->reg, g->patch.b, g->ppos,
                                                               n, T, g->R, np, D);
    if (g->pre_g) layernorm(g, g->x, g->x, g->pre_g, g->pre_b, rows);
    const size_t RD = (size_t)rows * D;
    for (int l = 0; l < g->depth; l++) {
        const dblock &bk = g->blocks[l];
        layernorm(g, g->x, g->h, bk.ln1_g, bk.ln1_b, rows);
        TRY(gemm(g, g->h, rows, bk.qkv, g->qkv, msg, len));
        if (bk.qkv.b) k_add_bias<<<blocks_for(RD * 3), 256, 0, g->st>>>(g->qkv, bk.qkv.b, RD * 3, 3 * D);
        attention(g, g->qkv, g->att, n, T);
        TRY(gemm(g, g->att, rows, bk.proj, g->h, msg, len));
        k_residual<<<blocks_for(RD), 256, 0, g->st>>>(g->x, g->h, bk.proj.b, bk.ls1, RD, D);
        layernorm(g, g->x, g->h, bk.ln2_g, bk.ln2_b, rows);
        TRY(gemm(g, g->h, rows, bk.fc1, g->mlp, msg, len));
        const float *a = g->mlp;
        const size_t RH = (size_t)rows * Hd;
        if (g->act == 2) {
            k_swiglu<<<blocks_for(RH), 256, 0, g->st>>>(g->mlp, bk.fc1.b, g->mlp2, RH, Hd);
            a = g->mlp2;
        } else {
            k_act<<<blocks_for(RH), 256, 0, g->st>>>(g->mlp, bk.fc1.b, RH, Hd, g->act);
        }
        TRY(gemm(g, a, rows, bk.fc2, g->h, msg, len));
        k_residual<<<blocks_for(RD), 256, 0, g->st>>>(g->x, g->h, bk.fc2.b, bk.ls2, RD, D);
    }
    layernorm(g, g->x, g->h, g->fin_g, g->fin_b, rows);
    /* the embeddings: the CLS rows, projected when the model has a head */
    const float *emb = g->h;
    size_t emb_dim = (size_t)D, emb_stride = (size_t)T * D;
    if (g->head.w) {
        float *cls = g->att, *proj = g->qkv; /* [n, D] and [n, E]: both free by now */
        const float one = 1.0f, zero = 0.0f;
        CU(cudaMemcpy2DAsync(cls, (size_t)D * sizeof(float), g->h, (size_t)T * D * sizeof(float),
                             (size_t)D * sizeof(float), (size_t)n, cudaMemcpyDeviceToDevice, g->st),
           "gathering the CLS rows");
        CB(cublasGemmEx(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, g->head.out, n, D, &one, g->head.w, CUDA_R_32F, D, cls,
                        CUDA_R_32F, D, &zero, proj, CUDA_R_32F, g->head.out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
           "projection");
        emb = proj, emb_dim = emb_stride = (size_t)g->head.out;
    }
    CU(cudaGetLastError(), "launching a kernel");
    CU(cudaEventRecord(g->ev1, g->st), "recording an event");
    CU(cudaMemcpy2DAsync(cls_out, emb_dim * sizeof(float), emb, emb_stride * sizeof(float), emb_dim * sizeof(float),
                         (size_t)n, cudaMemcpyDeviceToHost, g->st),
       "downloading the embeddings");
    if (patch_out)
        CU(cudaMemcpy2DAsync(patch_out, (size_t)np * D * sizeof(float), g->h + (size_t)(1 + g->R) * D,
                             (size_t)T * D * sizeof(float), (size_t)np * D * sizeof(float), (size_t)n,
                             cudaMemcpyDeviceToHost, g->st),
           "downloading the patch tokens");
    return finish_timed(g, gpu_ms, "running the forward pass", msg, len);
}

} // namespace

#include "train.cuh"

extern "C" {

int cuda_device_count(int *count, char *msg, size_t len) {
    *count = 0;
    const cudaError_t e = cudaGetDeviceCount(count);
    if (e == cudaErrorNoDevice) {
        cudaGetLastError();
        *count = 0;
        return CUDA_B_OK;
    }
    if (e != cudaSuccess) {
        *count = 0;
        cudaGetLastError();
        snprintf(msg, len, "CUDA: %s", cudaGetErrorString(e));
        return CUDA_B_NODEVICE;
    }
    return CUDA_B_OK;
}

int cuda_device_describe(int device, char *out, size_t len) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, device) != cudaSuccess) {
        cudaGetLastError();
        snprintf(out, len, "CUDA device %d (no properties)", device);
        return CUDA_B_ERROR;
    }
    snprintf(out, len, "%s, %.1f GiB, compute capability %d.%d", p.name, p.totalGlobalMem / 1073741824.0, p.major,
             p.minor);
    return CUDA_B_OK;
}

int cuda_model_create(const cuda_model_desc *d, int device, cuda_model **out, char *msg, size_t len) {
    *out = nullptr;
    int count = 0;
    int rc = cuda_device_count(&count, msg, len);
    if (rc) return rc;
    if (device < 0 || device >= count) {
        snprintf(msg, len, "CUDA: device %d requested, %d present", device, count);
        return CUDA_B_NODEVICE;
    }
    cuda_model *g = new (std::nothrow) cuda_model();
    if (!g) {
        snprintf(msg, len, "out of memory");
        return CUDA_B_NOMEM;
    }
    try {
        rc = create(d, device, g, msg, len);
    } catch (const std::bad_alloc &) {
        snprintf(msg, len, "out of memory");
        rc = CUDA_B_NOMEM;
    }
    if (rc) {
        cuda_model_free(g);
        return rc;
    }
    *out = g;
    return CUDA_B_OK;
}

int cuda_model_forward(cuda_model *g, const float *pixels, int n, int H, int W, const float *ppos, float *cls_out,
                       float *patch_out, double *gpu_ms, char *msg, size_t len) {
    if (!g || !pixels || !ppos || !cls_out || n < 1) {
        snprintf(msg, len, "CUDA forward: bad argument");
        return CUDA_B_ERROR;
    }
    return forward(g, pixels, n, H, W, ppos, cls_out, patch_out, gpu_ms, msg, len);
}

size_t cuda_model_bytes(const cuda_model *g) { return g ? g->weight_bytes + g->act_bytes : 0; }

void cuda_model_free(cuda_model *g) {
    if (!g) return;
    cudaSetDevice(g->dev);
    if (g->st) cudaStreamSynchronize(g->st);
    train_release(g);
    for (void *p : g->weights)
        if (p) cudaFree(p);
    float *bufs[] = {g->x, g->h, g->qkv, g->att, g->mlp, g->mlp2, g->patches, g->pix, g->ppos};
    for (float *p : bufs)
        if (p) cudaFree(p);
    if (g->abf) cudaFree(g->abf);
    if (g->pinned) cudaFreeHost(g->pinned);
    if (g->blas) cublasDestroy(g->blas);
    if (g->ev0) cudaEventDestroy(g->ev0);
    if (g->ev1) cudaEventDestroy(g->ev1);
    if (g->st) cudaStreamDestroy(g->st);
    delete g;
}

} // extern "C"
