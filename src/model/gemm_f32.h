/*
 * fp32 GEMM on AVX-512 for the forward pass at precision fp32.
 *
 *   C[M, N] = A[M, K] . W[N, K]^T (+ bias[N]) (+ C when accumulate)
 *
 * W is PyTorch's Linear layout [out, in], packed once at model load into
 * panels of 64 output columns; A is read in place. Every element of C is one
 * chain of fused multiply-adds over K in order, sliced into blocks of KC
 * (each block's sum added onto C in turn), so the result does not depend on
 * the thread count. Same arithmetic class as sgemm (fp32 products and sums),
 * a different summation order. Needs AVX512F (model_f32_kernel_supported);
 * elsewhere the forward pass uses OpenBLAS sgemm.
 */
#ifndef WOBBLE_GEMM_F32_H
#define WOBBLE_GEMM_F32_H
#include "gemm_bf16.h"

#include <stddef.h>

/* 1 when this CPU runs the kernel and WOBBLE_SGEMM is not set (set and
 * non-empty: the fp32 forward pass uses OpenBLAS sgemm, as on CPUs without
 * AVX-512). */
int model_f32_kernel_supported(void);

typedef struct {
    float *p;
    int n, k;
} model_f32_packed;

/* W given as `rows` (row j at rows[j], so separate q, k, v matrices pack as
 * one); aligned storage, free with model_f32_free. -1 when out of memory. */
int model_f32_pack(model_f32_packed *out, const float *const *rows, int n, int k);
int model_f32_pack_dense(model_f32_packed *out, const float *w, int n, int k);
void model_f32_free(model_f32_packed *b);
size_t model_f32_packed_bytes(const model_f32_packed *b);

/* Packing into caller storage (a view: free nothing), for operands made per
 * call, such as attention's keys and values: W[j][kk] = src[j * ld + kk] or,
 * transposed, src[kk * ld + j], for j < n, kk < k. dst holds
 * model_f32_pack_elems(n, k) floats, 64-byte aligned. The same bytes as
 * model_f32_pack of the materialised matrix. Needs AVX-512F, as the kernel
 * (model_f32_kernel_supported). */
size_t model_f32_pack_elems(int n, int k);
void model_f32_pack_into(model_f32_packed *view, float *dst, const float *src, int n, int k, size_t ld,
                         int transposed);

/* C = A W^T (+ bias) (+ C if accumulate), lda and ldc in floats; then
 * post(row, post_bias + first column, columns) on each finished row piece
 * of C while it is in L1 (post may be NULL). */
void model_f32_gemm_post(const float *A, int m, int lda, const model_f32_packed *W, const float *bias, int accumulate,
                         float *C, int ldc, int threads, model_bf16_post_fn post, const float *post_bias);
void model_f32_gemm(const float *A, int m, int lda, const model_f32_packed *W, const float *bias, int accumulate,
                    float *C, int ldc, int threads);
#endif
