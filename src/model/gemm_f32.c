/*
 * fp32 GEMM on AVX-512F (see gemm_f32.h).
 *
 * Packed W: panels of NR = 64 output columns (N padded with zero columns);
 * in panel q, row kk holds the 64 columns' W values:
 *     p[q][kk][j] = W[64 q + j][kk]
 * so four 64-byte loads give one K step of the panel. A is read in place:
 * A[i][kk] is broadcast to the 16 lanes.
 *
 * Micro-kernel: MR = 6 rows x 64 columns, 24 zmm accumulators, over a slice
 * of KC steps of K (64 KB of the panel, which stays in L1/L2 while the
 * task's 16 tiles pass over it; later slices add onto C). KC by measurement
 * (bench_gemm, ViT-Ti/B/L shapes, 2 threads): 64 steps 20-40% slower than
 * 128 on ViT-L, 256-512 3-8% faster than 128 and alike within noise. Tasks are (panel, block
 * of MB rows), spread over OpenMP threads: the same structure as the bf16
 * kernel (gemm_bf16.c), whose operands it shares.
 */
#include "gemm_f32.h"
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
#ifndef KC
#define KC 256 /* K steps per block: the panel's 64 KB slice stays close (L1/L2) across a task's tiles */
#endif

int model_f32_kernel_supported(void) {
    const char *no = getenv("WOBBLE_SGEMM");
    if (no && *no) return 0;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

static size_t panels(int n) { return ((size_t)n + NR - 1) / NR; }

int model_f32_pack(model_f32_packed *out, const float *const *rows, int n, int k) {
    memset(out, 0, sizeof *out);
    const size_t elems = panels(n) * NR * (size_t)k;
    float *p = core_alloc_big(elems * sizeof(float));
    if (!p) return -1;
    if (n % NR) memset(p + (panels(n) - 1) * NR * (size_t)k, 0, sizeof(float) * NR * (size_t)k);
    for (int j = 0; j < n; j++) {
        float *col = p + (size_t)(j / NR) * NR * k + j % NR;
        const float *w = rows[j];
        for (int kk = 0; kk < k; kk++) col[(size_t)kk * NR] = w[kk];
    }
    out->p = p;
    out->n = n;
    out->k = k;
    return 0;
}

int model_f32_pack_dense(model_f32_packed *out, const float *w, int n, int k) {
    const float **rows = model_rows_of(w, n, k);
    const int rc = rows ? model_f32_pack(out, rows, n, k) : -1;
    free(rows);
    return rc;
}

void model_f32_free(model_f32_packed *b) {
    if (!b) return;
    free(b->p);
    memset(b, 0, sizeof *b);
}

size_t model_f32_packed_bytes(const model_f32_packed *b) {
    return b->p ? panels(b->n) * NR * (size_t)b->k * sizeof(float) : 0;
}

size_t model_f32_pack_elems(int n, int k) { return panels(n) * NR * (size_t)k; }

__attribute__((target("avx512f"))) void model_f32_pack_into(model_f32_packed *view, float *dst, const float *src,
                                                            int n, int k, size_t ld, int transposed) {
    const size_t np = panels(n);
    /* the last panel's padding columns read as zero */
    if (n % NR) {
        float *last = dst + (np - 1) * NR * (size_t)k;
        const int used = n % NR;
        for (int kk = 0; kk < k; kk++) memset(last + (size_t)kk * NR + used, 0, sizeof(float) * (NR - used));
    }
    if (!transposed) {
        /* column j is source row j: blocks of 16 columns x 16 K steps
         * transposed in registers */
        for (int j0 = 0; j0 < n; j0 += 16) {
            const int cols = n - j0 < 16 ? n - j0 : 16;
            const __mmask16 cm = cols == 16 ? (__mmask16)0xffff : (__mmask16)((1u << cols) - 1);
            float *panel = dst + (size_t)(j0 / NR) * NR * k + j0 % NR;
            for (int k0 = 0; k0 < k; k0 += 16) {
                const int kv = k - k0 < 16 ? k - k0 : 16;
                const __mmask16 km = kv == 16 ? (__mmask16)0xffff : (__mmask16)((1u << kv) - 1);
                __m512i r[16];
                for (int i = 0; i < 16; i++)
                    r[i] = i < cols ? _mm512_maskz_loadu_epi32(km, src + (size_t)(j0 + i) * ld + k0)
                                    : _mm512_setzero_si512();
                gemm_transpose16(r);
                for (int c = 0; c < kv; c++) _mm512_mask_storeu_epi32(panel + (size_t)(k0 + c) * NR, cm, r[c]);
            }
        }
    } else { /* source rows run along j: 64 columns of a row are one panel row */
        for (size_t q = 0; q < np; q++) {
            const int cols = n - (int)q * NR < NR ? n - (int)q * NR : NR;
            float *panel = dst + q * NR * (size_t)k;
            for (int kk = 0; kk < k; kk++)
                memcpy(panel + (size_t)kk * NR, src + (size_t)kk * ld + q * NR, sizeof(float) * (size_t)cols);
        }
    }
    view->p = dst;
    view->n = n;
    view->k = k;
}

#define F32_TARGET __attribute__((target("avx512f")))

/* Micro-tile of mr (<= MR) rows by nv (<= 4) vectors of 16 columns over
 * `steps` K steps; ncols (<= 16 nv) columns written. A narrow last panel
 * (attention's 197 or 257 keys leave 5 or 1 columns in it) computes only
 * the vectors it needs; every column's sum is the same either way. */
F32_TARGET static inline __attribute__((always_inline)) void tile(const int mr, const int nv, int steps, const float *a,
                                                                  size_t lda, const float *b, float *c, size_t ldc,
                                                                  const float *bias, int accumulate, int ncols,
                                                                  model_bf16_post_fn post, const float *pbias) {
    /* bias: added on the first K slice only; accumulate: C += (later slices, or beta = 1) */
    __m512 acc[MR][4];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();
    for (int kk = 0; kk < steps; kk++) {
        const float *bp = b + (size_t)kk * NR;
        __m512 bv[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
            if (j < nv) bv[j] = _mm512_load_ps(bp + 16 * j);
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            if (i >= mr) break;
            const __m512 av = _mm512_set1_ps(a[i * lda + (size_t)kk]);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++)
                if (j < nv) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
        }
    }
    gemm_tile_store(acc, mr, c, ldc, bias, accumulate, ncols);
    if (post)
        for (int i = 0; i < mr; i++) post(c + i * ldc, pbias, ncols);
}

F32_TARGET static void tile_any(int mr, int kn, const float *a, size_t lda, const float *b, float *c, size_t ldc,
                                const float *bias, int accumulate, int ncols, model_bf16_post_fn post,
                                const float *pbias) {
    GEMM_TILE_DISPATCH
}

typedef struct {
    const float *A;
    int m, lda;
    const model_f32_packed *W;
    const float *bias;
    int accumulate;
    float *C;
    int ldc;
    model_bf16_post_fn post;
    const float *pbias;
} f32_args;

/* Tasks [t0, t1): (panel, block of MB rows) in panel-major order, so that
 * consecutive tasks of a thread share the panel. */
static void f32_tasks(const f32_args *g, int t0, int t1) {
    const model_f32_packed *W = g->W;
    const int k = W->k, n = W->n, m = g->m, mb = (m + MB - 1) / MB;
    for (int t = t0; t < t1; t++) {
        const int q = t / mb, r0 = (t % mb) * MB;
        const int r1 = r0 + MB < m ? r0 + MB : m;
        const int ncols = n - q * NR < NR ? n - q * NR : NR;
        const float *b = W->p + (size_t)q * NR * k;
        for (int k0 = 0; k0 < k; k0 += KC) {
            const int steps = k - k0 < KC ? k - k0 : KC;
            for (int i = r0; i < r1; i += MR) {
                const int mr = r1 - i < MR ? r1 - i : MR;
                tile_any(mr, steps, g->A + (size_t)i * g->lda + k0, (size_t)g->lda, b + (size_t)k0 * NR,
                         g->C + (size_t)i * g->ldc + (size_t)q * NR, (size_t)g->ldc,
                         k0 == 0 && g->bias ? g->bias + q * NR : NULL, k0 > 0 || g->accumulate, ncols,
                         k0 + steps == k ? g->post : NULL, g->pbias ? g->pbias + q * NR : NULL);
            }
        }
    }
}

void model_f32_gemm_post(const float *A, int m, int lda, const model_f32_packed *W, const float *bias, int accumulate,
                         float *C, int ldc, int threads, model_bf16_post_fn post, const float *post_bias) {
    const int k = W->k, n = W->n;
    if (m <= 0 || n <= 0) return;
    if (threads < 1) threads = 1;
    const int np = (int)panels(n), mb = (m + MB - 1) / MB;
    const int tasks = np * mb;
    if (k == 0) { /* an empty sum: C = bias (+ C), then post */
        for (int i = 0; i < m; i++) {
            float *ci = C + (size_t)i * ldc;
            for (int j = 0; j < n; j++) ci[j] = (accumulate ? ci[j] : 0.0f) + (bias ? bias[j] : 0.0f);
            if (post) post(ci, post_bias, n);
        }
        return;
    }
    const f32_args g = {A, m, lda, W, bias, accumulate, C, ldc, post, post_bias};
    if (threads == 1 || (long)m * k <= 16384) { /* no parallel region (attention calls one per head inside its own) */
        f32_tasks(&g, 0, tasks);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        int lo, hi; /* a contiguous share of the tasks per thread */
        gemm_share(tasks, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        f32_tasks(&g, lo, hi);
    }
}

void model_f32_gemm(const float *A, int m, int lda, const model_f32_packed *W, const float *bias, int accumulate,
                    float *C, int ldc, int threads) {
    model_f32_gemm_post(A, m, lda, W, bias, accumulate, C, ldc, threads, NULL, NULL);
}
