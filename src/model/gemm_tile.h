/*
 * The epilogue both AVX-512 GEMM kernels (gemm_f32.c, gemm_bf16.c) end each
 * 6 x 64 micro-tile with: C = acc (+ bias) (+ C when accumulate), for mr
 * rows and ncols columns. A whole panel (64 columns) takes plain loads and
 * stores straight from the accumulators; the masked path for the last,
 * partial panel goes through a buffer, because GCC keeps all 24
 * accumulators in memory (spilled after every K slice) as soon as any of
 * them is indexed by a variable. Also shared by the two kernels: the
 * per-call packers' 16 x 16 transpose, the threads' task shares and the
 * dispatch to a tile of constant rows and vectors.
 */
#ifndef WOBBLE_GEMM_TILE_H
#define WOBBLE_GEMM_TILE_H
#include <immintrin.h>
#include <stddef.h>

#define GEMM_TILE_MR 6

__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) void
gemm_tile_store(__m512 acc[GEMM_TILE_MR][4], const int mr, float *c, size_t ldc, const float *bias, int accumulate,
                int ncols) {
    if (ncols == 64) {
#pragma GCC unroll 6
        for (int i = 0; i < GEMM_TILE_MR; i++) {
            if (i >= mr) break;
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                float *ci = c + i * ldc + 16 * j;
                __m512 v = bias ? _mm512_add_ps(acc[i][j], _mm512_loadu_ps(bias + 16 * j)) : acc[i][j];
                if (accumulate) v = _mm512_add_ps(_mm512_loadu_ps(ci), v);
                _mm512_storeu_ps(ci, v);
            }
        }
        return;
    }
    /* the partial panel: through a buffer, so that every index into acc is a
     * constant and the accumulators never need a home in memory */
    float t[GEMM_TILE_MR][64] __attribute__((aligned(64)));
#pragma GCC unroll 6
    for (int i = 0; i < GEMM_TILE_MR; i++) {
        if (i >= mr) break;
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) _mm512_store_ps(t[i] + 16 * j, acc[i][j]);
    }
    for (int j = 0; j < 4; j++) {
        const int left = ncols - 16 * j;
        if (left <= 0) break;
        const __mmask16 mk = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
        const __m512 bv = bias ? _mm512_maskz_loadu_ps(mk, bias + 16 * j) : _mm512_setzero_ps();
        for (int i = 0; i < mr; i++) {
            float *ci = c + i * ldc + 16 * j;
            __m512 v = _mm512_load_ps(t[i] + 16 * j);
            if (bias) v = _mm512_add_ps(v, bv);
            if (accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, ci), v);
            _mm512_mask_storeu_ps(ci, mk, v);
        }
    }
}

/* 16 x 16 32-bit words transposed in registers: r[i][j] -> r[j][i] (the
 * per-call packers' row-to-column moves). */
__attribute__((target("avx512f"))) static inline void gemm_transpose16(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    /* u[4 b + c], lane L: column 4 L + c of rows 4 b .. 4 b + 3 */
    for (int b = 0; b < 4; b++) {
        u[4 * b] = _mm512_unpacklo_epi64(t[4 * b], t[4 * b + 2]);
        u[4 * b + 1] = _mm512_unpackhi_epi64(t[4 * b], t[4 * b + 2]);
        u[4 * b + 2] = _mm512_unpacklo_epi64(t[4 * b + 1], t[4 * b + 3]);
        u[4 * b + 3] = _mm512_unpackhi_epi64(t[4 * b + 1], t[4 * b + 3]);
    }
    /* the 128-bit lanes transposed: column 4 L + c takes lane L of u[c], u[4 + c], u[8 + c], u[12 + c] */
    for (int c = 0; c < 4; c++) {
        const __m512i v0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x44), v1 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xEE);
        const __m512i v2 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x44);
        const __m512i v3 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xEE);
        r[c] = _mm512_shuffle_i32x4(v0, v2, 0x88);
        r[4 + c] = _mm512_shuffle_i32x4(v0, v2, 0xDD);
        r[8 + c] = _mm512_shuffle_i32x4(v1, v3, 0x88);
        r[12 + c] = _mm512_shuffle_i32x4(v1, v3, 0xDD);
    }
}

/* Thread tid's contiguous share [lo, hi) of n tasks out of nth. */
static inline void gemm_share(int n, int tid, int nth, int *lo, int *hi) {
    const int q = n / nth, r = n % nth;
    *lo = tid * q + (tid < r ? tid : r);
    *hi = *lo + q + (tid < r);
}

/* The body of a kernel's tile_any: its tile() for mr rows (1 to 6, each a
 * constant so the row loops unroll) and the 16-column vectors that ncols
 * needs (a narrow last panel computes fewer). tile_any's parameters must be
 * named as here: mr, kn (K steps or pairs), a, lda, b, c, ldc, bias,
 * accumulate, ncols, post, pbias. */
#define GEMM_TILE_ROWS(nv)                                                                                            \
    switch (mr) {                                                                                                     \
    case 6: tile(6, nv, kn, a, lda, b, c, ldc, bias, accumulate, ncols, post, pbias); break;                         \
    case 5: tile(5, nv, kn, a, lda, b, c, ldc, bias, accumulate, ncols, post, pbias); break;                         \
    case 4: tile(4, nv, kn, a, lda, b, c, ldc, bias, accumulate, ncols, post, pbias); break;                         \
    case 3: tile(3, nv, kn, a, lda, b, c, ldc, bias, accumulate, ncols, post, pbias); break;                         \
    case 2: tile(2, nv, kn, a, lda, b, c, ldc, bias, accumulate, ncols, post, pbias); break;                         \
    default: tile(1, nv, kn, a, lda, b, c, ldc, bias, accumulate, ncols, post, pbias); break;                        \
    }
#define GEMM_TILE_DISPATCH                                                                                            \
    if (ncols > 48) {                                                                                                 \
        GEMM_TILE_ROWS(4)                                                                                             \
    } else if (ncols > 32) {                                                                                          \
        GEMM_TILE_ROWS(3)                                                                                             \
    } else if (ncols > 16) {                                                                                          \
        GEMM_TILE_ROWS(2)                                                                                             \
    } else {                                                                                                          \
        GEMM_TILE_ROWS(1)                                                                                             \
    }
#endif
