/*
 * bf16 GEMM, fp32 accumulation, on AVX512_BF16 (see gemm_bf16.h).
 *
 * Packed W: panels of NR = 64 output columns (N padded with zero rows). In
 * panel q, the K pairs follow one another and each pair holds the 64
 * columns' two bf16 values side by side:
 *     p[q][kk / 2][j][kk % 2] = bf16(W[64 q + j][kk])
 * so one 64-byte load gives 16 columns' pairs, the operand VDPBF16PS wants.
 * A is rounded to bf16 row-major [m, kp]; a pair A[i][kk], A[i][kk + 1] is
 * one 32-bit word, broadcast to the 16 lanes.
 *
 * Micro-kernel: MR = 6 rows x 64 columns, 24 zmm accumulators, over a slice
 * of KCP pairs of K (32 KB of the panel, which stays in L1 while the task's
 * 16 tiles pass over it; later slices add onto C). Tasks are (panel, block of
 * MB rows), spread over OpenMP threads.
 */
#include "gemm_bf16.h"
#include "fastmath.h"
#include "gemm_tile.h"

#include "../core/internal.h"

#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define NR 64
#define MR 6
_Static_assert(MR == GEMM_TILE_MR && NR == 64, "the shared epilogue (gemm_tile.h) is for 6 x 64 tiles");
#define MB 96 /* rows per task: 16 micro-tiles */
#ifndef KCP
#define KCP 128 /* K pairs per block: the panel's 32 KB slice stays in L1 across a task's tiles */
#endif

int model_bf16_supported(void) {
    /* WOBBLE_NO_BF16 set (non-empty): behave as on a CPU without AVX512_BF16
     * (tests the refusal path on machines that have it) */
    const char *no = getenv("WOBBLE_NO_BF16");
    if (no && *no) return 0;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512bf16");
}

/* float -> bf16, round to nearest even (NaN kept quiet). */
static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static size_t panels(int n) { return ((size_t)n + NR - 1) / NR; }

int model_bf16_pack(model_bf16_packed *out, const float *const *rows, int n, int k) {
    memset(out, 0, sizeof *out);
    const int kp = (k + 1) & ~1;
    const size_t elems = panels(n) * NR * (size_t)kp;
    uint16_t *p = core_alloc_big(elems * 2);
    if (!p) return -1;
    /* zero only what no weight fills: the last panel's padding rows, and the pad column of an odd K below */
    if (n % NR) memset(p + (panels(n) - 1) * NR * (size_t)kp, 0, (size_t)NR * kp * 2);
    for (int j = 0; j < n; j++) {
        uint16_t *panel = p + (size_t)(j / NR) * NR * kp;
        const int c = j % NR;
        for (int kk = 0; kk < k; kk++) panel[(size_t)(kk / 2) * 2 * NR + 2 * c + (kk & 1)] = to_bf16(rows[j][kk]);
        if (kp > k) panel[(size_t)(k / 2) * 2 * NR + 2 * c + 1] = 0;
    }
    out->p = p;
    out->n = n;
    out->k = k;
    out->kp = kp;
    return 0;
}

const float **model_rows_of(const float *w, int n, int k) {
    const float **rows = malloc(sizeof(*rows) * (size_t)(n > 0 ? n : 1));
    if (rows)
        for (int j = 0; j < n; j++) rows[j] = w + (size_t)j * k;
    return rows;
}

int model_bf16_pack_dense(model_bf16_packed *out, const float *w, int n, int k) {
    const float **rows = model_rows_of(w, n, k);
    const int rc = rows ? model_bf16_pack(out, rows, n, k) : -1;
    free(rows);
    return rc;
}

void model_bf16_free(model_bf16_packed *b) {
    if (!b) return;
    free(b->p);
    memset(b, 0, sizeof *b);
}

size_t model_bf16_packed_bytes(const model_bf16_packed *b) { return b->p ? panels(b->n) * NR * (size_t)b->kp * 2 : 0; }

size_t model_bf16_scratch_elems(int m, int k) { return (size_t)m * (size_t)((k + 1) & ~1) + 32; }

#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

/* One row of fp32 to bf16 (kp >= k, the pad column zeroed). */
BF16_TARGET static void round_row(const float *x, int k, int kp, uint16_t *y) {
    int j = 0;
    for (; j + 32 <= k; j += 32) {
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + j + 16), _mm512_loadu_ps(x + j));
        _mm512_storeu_si512((void *)(y + j), (__m512i)v);
    }
    for (; j < k; j++) y[j] = to_bf16(x[j]);
    if (kp > k) y[k] = 0;
}

void model_bf16_round(const float *x, int k, int kp, uint16_t *y) { round_row(x, k, kp, y); }

size_t model_bf16_pack_elems(int n, int k) { return panels(n) * NR * (size_t)((k + 1) & ~1); }

/* Per-call packing (see gemm_bf16.h) from bf16 values: 32-bit words
 * moved, no rounding. */
BF16_TARGET void model_bf16_pack16_into(model_bf16_packed *view, uint16_t *dst, const uint16_t *src, int n, int k,
                                        size_t ld, int transposed) {
    const int kp = (k + 1) & ~1, pairs = kp / 2;
    const size_t elems = model_bf16_pack_elems(n, k);
    uint32_t *d32 = (uint32_t *)(void *)dst;
    if (n % NR) memset(dst + (elems - (size_t)NR * kp), 0, (size_t)NR * kp * 2);
    if (!transposed) {
        /* column j's pairs are the words of its source row: blocks of 16
         * columns x 16 pairs transposed in registers (an odd K's last word
         * loads with a zero high half) */
        for (int j0 = 0; j0 < n; j0 += 16) {
            const int cols = n - j0 < 16 ? n - j0 : 16;
            const __mmask16 cm = cols == 16 ? (__mmask16)0xffff : (__mmask16)((1u << cols) - 1);
            uint32_t *panel = d32 + (size_t)(j0 / NR) * NR * pairs + j0 % NR;
            for (int p0 = 0; p0 < pairs; p0 += 16) {
                const int vals = k - 2 * p0 < 32 ? k - 2 * p0 : 32, np = pairs - p0 < 16 ? pairs - p0 : 16;
                const __mmask32 vm = vals == 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << vals) - 1);
                __m512i r[16];
                for (int i = 0; i < 16; i++)
                    r[i] = i < cols ? _mm512_maskz_loadu_epi16(vm, src + (size_t)(j0 + i) * ld + 2 * p0)
                                    : _mm512_setzero_si512();
                gemm_transpose16(r);
                for (int c = 0; c < np; c++) _mm512_mask_storeu_epi32(panel + (size_t)(p0 + c) * NR, cm, r[c]);
            }
        }
    } else {
        /* two source rows make one pair row: 16 columns' words at a time */
        for (int p = 0; p < pairs; p++) {
            const uint16_t *r0 = src + (size_t)(2 * p) * ld;
            const uint16_t *r1 = 2 * p + 1 < k ? r0 + ld : NULL;
            for (int j0 = 0; j0 < n; j0 += 16) {
                const int left = n - j0 < 16 ? n - j0 : 16;
                const __mmask16 mk = left == 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
                const __m512i lo = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mk, r0 + j0));
                const __m512i hi = r1 ? _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mk, r1 + j0)) : _mm512_setzero_si512();
                _mm512_mask_storeu_epi32(d32 + (size_t)(j0 / NR) * NR * pairs + (size_t)p * NR + j0 % NR, mk,
                                         _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
            }
        }
    }
    view->p = dst;
    view->n = n;
    view->k = k;
    view->kp = kp;
}

/* Micro-tile of mr (<= MR) rows by nv (<= 4) vectors of 16 columns; ncols
 * (<= 16 nv) columns written. A narrow last panel (attention's 197 or 257
 * keys leave 5 or 1 columns in it) computes only the vectors it needs. */
BF16_TARGET static inline __attribute__((always_inline)) void tile(const int mr, const int nv, int pairs,
                                                                   const uint16_t *a, size_t lda, const uint16_t *b,
                                                                   float *c, size_t ldc, const float *bias,
                                                                   int accumulate, int ncols, model_bf16_post_fn post,
                                                                   const float *pbias) {
    /* bias: added on the first K slice only; accumulate: C += (later slices, or beta = 1) */
    __m512 acc[MR][4];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();
    for (int p = 0; p < pairs; p++) {
        const uint16_t *bp = b + (size_t)p * 2 * NR;
        __m512bh bv[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
            if (j < nv) bv[j] = (__m512bh)_mm512_load_si512((const void *)(bp + 32 * j));
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            if (i >= mr) break;
            int32_t w;
            memcpy(&w, a + i * lda + 2 * (size_t)p, 4);
            const __m512bh av = (__m512bh)_mm512_set1_epi32(w);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++)
                if (j < nv) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], av, bv[j]);
        }
    }
    gemm_tile_store(acc, mr, c, ldc, bias, accumulate, ncols);
    if (post)
        for (int i = 0; i < mr; i++) post(c + i * ldc, pbias, ncols);
}

BF16_TARGET static void tile_any(int mr, int kn, const uint16_t *a, size_t lda, const uint16_t *b, float *c,
                                 size_t ldc, const float *bias, int accumulate, int ncols, model_bf16_post_fn post,
                                 const float *pbias) {
    GEMM_TILE_DISPATCH
}

/* A == NULL: s already holds the rounded rows (model_bf16_gemm_rounded),
 * at stride lda (0: W->kp). With ob, the output goes to ob (bf16, row
 * stride ldo) instead of C: each task's partial sums stay in a per-thread
 * 96 x 64 block, and the finished block (bias, then post) is rounded into
 * ob; ob's pad column (an odd n) is zeroed. */
typedef struct {
    const float *A;
    int m, lda;
    const model_bf16_packed *W;
    const float *bias;
    int accumulate;
    float *C;
    int ldc;
    uint16_t *s;
    model_bf16_post_fn post;
    const float *pbias;
    uint16_t *ob;
    int ldo;
} gemm_args;

/* Thread tid's part of the product (all of it for nth 1, which needs no
 * parallel region: attention calls one per head inside its own). */
BF16_TARGET static void gemm_part(const gemm_args *g, int tid, int nth) {
    const model_bf16_packed *W = g->W;
    const int k = W->k, kp = W->kp, n = W->n, m = g->m;
    const size_t sld = g->A || g->lda <= 0 ? (size_t)kp : (size_t)g->lda;
    const int np = (int)panels(n), mb = (m + MB - 1) / MB;
    float blk[MB * NR] __attribute__((aligned(64))); /* ob's partial sums (24 KB) */
    int lo, hi;
    if (g->A) {
        gemm_share(m, tid, nth, &lo, &hi);
        for (int i = lo; i < hi; i++) round_row(g->A + (size_t)i * g->lda, k, kp, g->s + (size_t)i * kp);
        if (nth > 1) {
#pragma omp barrier
        }
    }
    /* panel-major order: consecutive tasks of a thread share the panel */
    gemm_share(np * mb, tid, nth, &lo, &hi);
    for (int t = lo; t < hi; t++) {
        const int q = t / mb, r0 = (t % mb) * MB;
        const int r1 = r0 + MB < m ? r0 + MB : m;
        const int ncols = n - q * NR < NR ? n - q * NR : NR;
        const uint16_t *b = W->p + (size_t)q * NR * kp;
        for (int p0 = 0; p0 < kp / 2; p0 += KCP) {
            const int pairs = kp / 2 - p0 < KCP ? kp / 2 - p0 : KCP, last = p0 + pairs == kp / 2;
            for (int i = r0; i < r1; i += MR) {
                const int mr = r1 - i < MR ? r1 - i : MR;
                float *c = g->ob ? blk + (size_t)(i - r0) * NR : g->C + (size_t)i * g->ldc + (size_t)q * NR;
                tile_any(mr, pairs, g->s + (size_t)i * sld + 2 * (size_t)p0, sld, b + (size_t)p0 * 2 * NR, c,
                         g->ob ? (size_t)NR : (size_t)g->ldc, p0 == 0 && g->bias ? g->bias + q * NR : NULL,
                         p0 > 0 || g->accumulate, ncols, last ? g->post : NULL, g->pbias ? g->pbias + q * NR : NULL);
                if (g->ob && last)
                    for (int ii = 0; ii < mr; ii++)
                        round_row(c + (size_t)ii * NR, ncols, q * NR + ncols == n ? ncols + (n & 1) : ncols,
                                  g->ob + (size_t)(i + ii) * g->ldo + (size_t)q * NR);
            }
        }
    }
}

BF16_TARGET static void gemm_impl(const float *A, int m, int lda, const model_bf16_packed *W, const float *bias,
                                  int accumulate, float *C, int ldc, uint16_t *s, int threads, model_bf16_post_fn post,
                                  const float *pbias, uint16_t *ob, int ldo) {
    const gemm_args g = {A, m, lda, W, bias, accumulate, C, ldc, s, post, pbias, ob, ldo};
    if (threads <= 1 || (long)m * W->k <= 16384) {
        gemm_part(&g, 0, 1);
        return;
    }
#pragma omp parallel num_threads(threads)
    gemm_part(&g, omp_get_thread_num(), omp_get_num_threads());
}

void model_bf16_gemm_post(const float *A, int m, int lda, const model_bf16_packed *W, const float *bias,
                          int accumulate, float *C, int ldc, uint16_t *scratch, int threads, model_bf16_post_fn post,
                          const float *post_bias) {
    if (m <= 0 || W->n <= 0) return;
    gemm_impl(A, m, lda, W, bias, accumulate, C, ldc, scratch, threads < 1 ? 1 : threads, post, post_bias, NULL, 0);
}

void model_bf16_gemm_post_bf16(const float *A, int m, int lda, const model_bf16_packed *W, const float *bias,
                               uint16_t *out, int ldo, uint16_t *scratch, int threads, model_bf16_post_fn post,
                               const float *post_bias) {
    if (m <= 0 || W->n <= 0) return;
    gemm_impl(A, m, lda, W, bias, 0, NULL, 0, scratch, threads < 1 ? 1 : threads, post, post_bias, out, ldo);
}

void model_bf16_gemm(const float *A, int m, int lda, const model_bf16_packed *W, const float *bias, int accumulate,
                     float *C, int ldc, uint16_t *scratch, int threads) {
    model_bf16_gemm_post(A, m, lda, W, bias, accumulate, C, ldc, scratch, threads, NULL, NULL);
}

void model_bf16_gemm_rounded(const uint16_t *A, int m, int lda, const model_bf16_packed *W, const float *bias,
                             int accumulate, float *C, int ldc, int threads) {
    if (m <= 0 || W->n <= 0) return;
    gemm_impl(NULL, m, lda, W, bias, accumulate, C, ldc, (uint16_t *)A, threads < 1 ? 1 : threads, NULL, NULL, NULL, 0);
}

/* GELU for the bf16 path's fc1 epilogue (model_bf16_post_fn): x = gelu(x +
 * bias) with fastmath.h's erf (x P(x^2) / Q(x^2), |x| <= 4), evaluated with
 * FMAs and 1/Q as VRCP14PS plus one Newton step (relative error about
 * 2^-23, against 4e-7 absolute for the rational fit itself) instead of a
 * division: 30% fewer cycles. Its output is rounded to bf16 next, 2^-9
 * relative, so the fp32 path's exact operation order (gelu_row, kept for
 * the same bits on every ISA) buys nothing here. */
static __mmask16 first16(int left) {
    return left >= 16 ? (__mmask16)0xffff : left > 0 ? (__mmask16)((1u << left) - 1) : 0;
}

BF16_TARGET void model_bf16_gelu_row(float *x, const float *bias, int n) {
    static const float P[] = WB_ERF_P, Q[] = WB_ERF_Q;
    const __m512 four = _mm512_set1_ps(4.0f), one = _mm512_set1_ps(1.0f), half = _mm512_set1_ps(0.5f);
    for (int j = 0; j < n; j += 16) {
        const __mmask16 mk = first16(n - j);
        const __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, x + j), _mm512_maskz_loadu_ps(mk, bias + j));
        const __m512 t = _mm512_mul_ps(v, _mm512_set1_ps(0.70710678118654752f));
        const __m512 xc = _mm512_max_ps(_mm512_min_ps(t, four), _mm512_sub_ps(_mm512_setzero_ps(), four));
        const __m512 z = _mm512_mul_ps(xc, xc);
        __m512 p = _mm512_set1_ps(P[0]), q = _mm512_set1_ps(Q[0]);
        for (int i = 1; i < 7; i++) p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(P[i]));
        for (int i = 1; i < 6; i++) q = _mm512_fmadd_ps(q, z, _mm512_set1_ps(Q[i]));
        __m512 r = _mm512_rcp14_ps(q);
        r = _mm512_mul_ps(r, _mm512_fnmadd_ps(q, r, _mm512_set1_ps(2.0f)));
        __m512 e = _mm512_mul_ps(_mm512_mul_ps(xc, p), r);
        e = _mm512_max_ps(_mm512_min_ps(e, one), _mm512_sub_ps(_mm512_setzero_ps(), one));
        _mm512_mask_storeu_ps(x + j, mk, _mm512_mul_ps(_mm512_mul_ps(half, v), _mm512_add_ps(one, e)));
    }
}

/* e^x on 16 lanes for x <= 0 (or NaN, kept): wb_exp's reduction
 * (fastmath.h), x = n ln2 + r with |r| <= ln2 / 2, then e^r by a degree-5
 * polynomial with FMAs (least squares for the relative error on 2,000
 * Chebyshev nodes, NumPy; largest relative error 7.7e-8 on [-ln2/2, ln2/2])
 * and the power of two by VSCALEFPS (which also takes a result below
 * 2^-149 to 0). */
BF16_TARGET static inline __m512 exp16(__m512 x) {
    x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x); /* NaN: MAXPS returns its second operand */
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(WB_EXP_LOG2E)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(WB_EXP_LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(WB_EXP_LN2_LO), r);
    static const float c[] = {0.00829172f, 0.04191507f, 0.16667663f, 0.49998899f, 0.99999967f, 1.00000007f};
    __m512 p = _mm512_set1_ps(c[0]);
    for (int i = 1; i < 6; i++) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c[i]));
    return _mm512_scalef_ps(p, n);
}

/* Row by row in L1: the maximum of the raw scores, then e = exp(scale s -
 * scale max) stored back and summed in 16 lanes, then bf16(e / sum). The
 * probabilities are rounded to bf16 next (2^-9 relative), so this pass is
 * free of the fp32 path's order of operations (softmax_row in forward.c):
 * its only requirement is to stay well inside that rounding. */
BF16_TARGET void model_bf16_softmax_rows(float *S, int T, int causal, float scale, uint16_t *P) {
    const int kp = (T + 1) & ~1;
    const __m512 sv = _mm512_set1_ps(scale);
    for (int i = 0; i < T; i++) {
        float *r = S + (size_t)i * T;
        uint16_t *pr = P + (size_t)i * kp;
        const int n = causal ? i + 1 : T;
        __m512 mv = _mm512_set1_ps(-__builtin_inff());
        int j = 0;
        for (; j + 16 <= n; j += 16) mv = _mm512_max_ps(mv, _mm512_loadu_ps(r + j));
        if (j < n) mv = _mm512_mask_max_ps(mv, first16(n - j), mv, _mm512_maskz_loadu_ps(first16(n - j), r + j));
        /* a NaN score makes the maximum NaN (MAXPS keeps a NaN second operand), and so the whole row */
        const __m512 ms = _mm512_mul_ps(_mm512_set1_ps(_mm512_reduce_max_ps(mv)), sv);
        __m512 sum = _mm512_setzero_ps();
        for (j = 0; j < n; j += 16) {
            const __mmask16 mk = first16(n - j);
            const __m512 e = exp16(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(mk, r + j), sv, ms));
            _mm512_mask_storeu_ps(r + j, mk, e);
            sum = _mm512_mask_add_ps(sum, mk, sum, e);
        }
        const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
        for (j = 0; j < kp; j += 32) {
            const __mmask16 m0 = first16(n - j), m1 = first16(n - j - 16);
            const __m512 e0 = _mm512_mul_ps(_mm512_maskz_loadu_ps(m0, r + j), inv);
            const __m512 e1 = _mm512_mul_ps(_mm512_maskz_loadu_ps(m1, r + j + 16), inv);
            const __m512i w = (__m512i)_mm512_cvtne2ps_pbh(e1, e0); /* zeros past the row */
            if (kp - j >= 32)
                _mm512_storeu_si512((void *)(pr + j), w);
            else
                _mm512_mask_storeu_epi16(pr + j, (__mmask32)((1u << (kp - j)) - 1), w);
        }
    }
}
