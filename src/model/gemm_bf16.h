/*
 * bf16 GEMM with fp32 accumulation for the forward pass (--precision bf16).
 *
 *   C[M, N] = bf16(A)[M, K] . bf16(W)[N, K]^T (+ bias[N]) (+ C when accumulate)
 *
 * W is PyTorch's Linear layout [out, in]. It is rounded to bf16 once, at
 * model load, and packed for the kernel; A (the fp32 activations) is rounded
 * per call into a scratch buffer. Rounding is round-to-nearest-even, as
 * torch's .to(torch.bfloat16). Products of bf16 pairs are summed in fp32 by
 * AVX512_BF16's VDPBF16PS, so results differ from fp32 only by the rounding
 * of the inputs. Needs a CPU with AVX512F + AVX512BW + AVX512_BF16
 * (model_bf16_supported); there is no emulated path.
 */
#ifndef WOBBLE_GEMM_BF16_H
#define WOBBLE_GEMM_BF16_H
#include <stddef.h>
#include <stdint.h>

/* 1 when this CPU runs the kernel. */
int model_bf16_supported(void);

/* W packed for the kernel: N rows of K floats given as `rows` (row j at
 * rows[j], so separate q, k, v matrices pack as one). Aligned storage, free
 * with model_bf16_free; NULL when out of memory. */
typedef struct {
    uint16_t *p;
    int n, k;   /* logical size */
    int kp;     /* K rounded up to even */
} model_bf16_packed;

int model_bf16_pack(model_bf16_packed *out, const float *const *rows, int n, int k);
/* The row pointers of a contiguous [n, k] matrix, for the packers that take
 * rows (malloc'ed: free it; NULL when out of memory). */
const float **model_rows_of(const float *w, int n, int k);
/* Contiguous [n, k] W. */
int model_bf16_pack_dense(model_bf16_packed *out, const float *w, int n, int k);
void model_bf16_free(model_bf16_packed *b);
/* Packing into caller storage (a view: free nothing), for operands made
 * per call from values already rounded to bf16, such as attention's keys
 * and values: W[j][kk] = src[j * ld + kk] or, transposed, src[kk * ld + j],
 * for j < n, kk < k (src and ld in bf16 elements). dst holds
 * model_bf16_pack_elems(n, k) elements, 64-byte aligned; the view's p is
 * dst. The same bytes as model_bf16_pack of their fp32 values; needs the
 * CPU model_bf16_supported accepts. */
size_t model_bf16_pack_elems(int n, int k);
void model_bf16_pack16_into(model_bf16_packed *view, uint16_t *dst, const uint16_t *src, int n, int k, size_t ld,
                            int transposed);
/* Bytes of packed storage. */
size_t model_bf16_packed_bytes(const model_bf16_packed *b);

/* Scratch bf16 elements model_bf16_gemm needs for an A of m x k. */
size_t model_bf16_scratch_elems(int m, int k);

/* C = A W^T (+ bias) (+ C if accumulate); lda, ldc in floats. scratch holds
 * model_bf16_scratch_elems(m, W->k) elements, 64-byte aligned. */
void model_bf16_gemm(const float *A, int m, int lda, const model_bf16_packed *W, const float *bias, int accumulate, float *C,
               int ldc, uint16_t *scratch, int threads);

/* As model_bf16_gemm, then post(row, post_bias + first column, columns) on
 * each finished row piece of C while it is still in L1 (an activation
 * fused into the GEMM: the same arithmetic as a separate pass). */
typedef void (*model_bf16_post_fn)(float *row, const float *bias, int n);
void model_bf16_gemm_post(const float *A, int m, int lda, const model_bf16_packed *W, const float *bias,
                          int accumulate, float *C, int ldc, uint16_t *scratch, int threads, model_bf16_post_fn post,
                          const float *post_bias);
/* y[0, k) = bf16(x[0, k)), round to nearest even, and y[k] = 0 when kp > k:
 * one row of a GEMM operand as the kernel rounds it. */
void model_bf16_round(const float *x, int k, int kp, uint16_t *y);
/* C = A W^T (+ bias) (+ C if accumulate) with A already rounded: m rows of
 * W->kp bf16 (the pad column zero), as model_bf16_softmax_rows and
 * model_bf16_gemm_post_bf16 write them, at a stride of lda elements (0:
 * W->kp; a wider stride reads rows in place, such as attention's queries
 * in the rounded qkv rows, for an even W->k). */
void model_bf16_gemm_rounded(const uint16_t *A, int m, int lda, const model_bf16_packed *W, const float *bias,
                             int accumulate, float *C, int ldc, int threads);
/* As model_bf16_gemm_post, but the finished rows (bias, then post) are
 * rounded to bf16 into out (row stride ldo >= (W->n + 1) & ~1 elements, the
 * pad column of an odd W->n zeroed) instead of being stored in fp32: the
 * next GEMM's operand, for model_bf16_gemm_rounded. The partial sums stay in
 * a per-thread block in L1. A NULL: scratch already holds A rounded, rows
 * of W->kp (model_bf16_round). */
void model_bf16_gemm_post_bf16(const float *A, int m, int lda, const model_bf16_packed *W, const float *bias,
                               uint16_t *out, int ldo, uint16_t *scratch, int threads, model_bf16_post_fn post,
                               const float *post_bias);
/* GELU (erf form) of x + bias in place, n floats: the bf16 path's fc1
 * epilogue; within 1e-6 of forward.c's exact gelu_row. */
void model_bf16_gelu_row(float *x, const float *bias, int n);
/* Attention's softmax for the bf16 path, rows in L1, straight into O = P
 * V's operand: S (T x T, unscaled Q K^T) is scaled by `scale` in place,
 * then P[i] = bf16(softmax(S[i])) in rows of (T + 1) & ~1 with zeros past
 * the row (and past token i when causal). The same bits as scaling,
 * softmax_row (forward.c) and model_bf16_gemm's rounding one after another. */
void model_bf16_softmax_rows(float *S, int T, int causal, float scale, uint16_t *P);
#endif
