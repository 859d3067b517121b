/*
 * The AVX-512 fp32 GEMM kernel (src/model/gemm_f32.c) against a
 * double-precision product, on shapes that hit every edge: rows not a
 * multiple of the 6-row micro-tile or of the 96-row task, columns not a
 * multiple of 16 or 64, K not a multiple of the 256-step slice, a leading
 * dimension wider than the matrix, with and without bias and accumulation,
 * one and several threads.
 *
 * Error bound per element: fp32 recursive summation of K products (fused
 * multiply-adds) plus the bias and C terms: |C - ref| <= (K + 3) 2^-24
 * sum |terms| + 1e-30. Also: the result is the same bits for 1, 2 and 3
 * threads (one chain per element, whatever the split), columns past N are
 * never written, the post callback sees every finished element once, and
 * NaN / infinity pass through. Skips (77) on a CPU without AVX-512F.
 */
#include "testutil.h"
#include "../src/model/gemm_f32.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static unsigned seed = 4321;
static float frand(void) {
    seed = seed * 1103515245u + 12345u;
    return (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* post: squares each element plus the bias, as a fused activation would */
static void post_sq(float *row, const float *bias, int n) {
    for (int j = 0; j < n; j++) row[j] = row[j] * row[j] + bias[j];
}

static void one_case(int m, int n, int k, int lda, int ldc, int with_bias, int accumulate, int threads) {
    float *A = malloc(sizeof(float) * (size_t)m * lda), *W = malloc(sizeof(float) * (size_t)n * k);
    float *b = malloc(sizeof(float) * (size_t)n), *C = malloc(sizeof(float) * (size_t)m * ldc);
    float *C0 = malloc(sizeof(float) * (size_t)m * ldc), *C1 = malloc(sizeof(float) * (size_t)m * ldc);
    float *pb = malloc(sizeof(float) * (size_t)n);
    for (size_t i = 0; i < (size_t)m * lda; i++) A[i] = frand() * 3.0f;
    for (size_t i = 0; i < (size_t)n * k; i++) W[i] = frand() * 0.2f;
    for (int i = 0; i < n; i++) b[i] = frand(), pb[i] = frand();
    for (size_t i = 0; i < (size_t)m * ldc; i++) C0[i] = C[i] = C1[i] = frand();
    model_f32_packed P;
    CHECK(model_f32_pack_dense(&P, W, n, k) == 0, "pack %dx%d", n, k);
    CHECK(model_f32_packed_bytes(&P) == ((size_t)n + 63) / 64 * 64 * k * sizeof(float), "n%d k%d: packed bytes %zu",
          n, k, model_f32_packed_bytes(&P));
    model_f32_gemm(A, m, lda, &P, with_bias ? b : NULL, accumulate, C, ldc, threads);
    double worst = 0;
    int bad = 0;
    for (int i = 0; i < m && bad < 5; i++) {
        for (int j = 0; j < ldc; j++) {
            const size_t c = (size_t)i * ldc + j;
            if (j >= n) { /* columns past N are not touched */
                if (C[c] != C0[c]) {
                    CHECK(0, "m%d n%d k%d: C[%d][%d] beyond N was written", m, n, k, i, j);
                    bad++;
                }
                continue;
            }
            double ref = 0, mag = 0;
            for (int t = 0; t < k; t++) {
                const double p = (double)A[(size_t)i * lda + t] * W[(size_t)j * k + t];
                ref += p;
                mag += fabs(p);
            }
            if (with_bias) ref += b[j], mag += fabs(b[j]);
            if (accumulate) ref += C0[c], mag += fabs(C0[c]);
            const double err = fabs(C[c] - ref), tol = (k + 3) * 0x1p-24 * mag + 1e-30;
            if (err > worst) worst = err;
            if (!(err <= tol)) {
                CHECK(0, "m%d n%d k%d bias%d acc%d th%d: C[%d][%d] = %.9g, reference %.9g (tolerance %.3g)", m, n, k,
                      with_bias, accumulate, threads, i, j, C[c], ref, tol);
                bad++;
            }
        }
    }
    CHECK(bad == 0, "m%d n%d k%d: worst error %.3g", m, n, k, worst);
    /* the same bits on another thread count; post applied to the finished values */
    model_f32_gemm_post(A, m, lda, &P, with_bias ? b : NULL, accumulate, C1, ldc, threads == 1 ? 3 : 1, post_sq, pb);
    int diff = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < ldc; j++) {
            const size_t c = (size_t)i * ldc + j;
            const float want = j < n ? C[c] * C[c] + pb[j] : C0[c];
            if (memcmp(&C1[c], &want, sizeof want) != 0) diff++;
        }
    CHECK(diff == 0, "m%d n%d k%d th%d: %d elements differ with another thread count and the post step", m, n, k,
          threads, diff);
    model_f32_free(&P);
    CHECK(P.p == NULL, "free clears the pack");
    free(A), free(W), free(b), free(C), free(C0), free(C1), free(pb);
}

/* model_f32_pack_into (attention's keys and values, packed per call from a
 * strided source, row-major and transposed) gives the bytes of packing the
 * materialised matrix, padding included, whatever dst held before. */
static void pack_into_case(int n, int k) {
    const size_t ld = (size_t)k + 7, ldt = (size_t)n + 3;
    float *src = malloc(sizeof(float) * (size_t)n * ld), *srct = malloc(sizeof(float) * (size_t)k * ldt);
    float *W = malloc(sizeof(float) * (size_t)n * k);
    for (int j = 0; j < n; j++)
        for (int t = 0; t < k; t++) {
            const float v = frand();
            W[(size_t)j * k + t] = src[(size_t)j * ld + t] = srct[(size_t)t * ldt + j] = v;
        }
    model_f32_packed P;
    CHECK(model_f32_pack_dense(&P, W, n, k) == 0, "pack %dx%d", n, k);
    const size_t e = model_f32_pack_elems(n, k);
    CHECK(e * sizeof(float) == model_f32_packed_bytes(&P), "n%d k%d: elements", n, k);
    float *d = aligned_alloc(64, (e * sizeof(float) + 63) & ~(size_t)63);
    for (int pass = 0; pass < 2; pass++) {
        memset(d, 0xff, e * sizeof(float));
        model_f32_packed v;
        if (pass == 0)
            model_f32_pack_into(&v, d, src, n, k, ld, 0);
        else
            model_f32_pack_into(&v, d, srct, n, k, ldt, 1);
        CHECK(v.p == d && v.n == n && v.k == k, "n%d k%d: view", n, k);
        CHECK(memcmp(d, P.p, e * sizeof(float)) == 0, "n%d k%d: %s source packs differently from the dense matrix", n,
              k, pass ? "transposed" : "row-strided");
    }
    model_f32_free(&P);
    free(src), free(srct), free(W), free(d);
}

int main(void) {
    if (!model_f32_kernel_supported()) {
        printf("skipped: this CPU has no AVX-512F (or WOBBLE_SGEMM is set)\n");
        return 77;
    }
    static const int shapes[][3] = {
        {1, 1, 1},     {1, 16, 2},      {5, 17, 3},      {6, 64, 64},     {7, 65, 33},
        {13, 100, 192}, {96, 128, 2},   {97, 63, 31},    {197, 576, 192}, {200, 192, 768},
        {50, 130, 129}, {103, 257, 300}, {12, 64, 256},  {12, 64, 513},
    };
    static const int packs[][2] = {{1, 1}, {64, 197}, {197, 64}, {64, 64}, {65, 33}, {130, 7}, {3, 2}, {70, 300}};
    for (size_t i = 0; i < sizeof packs / sizeof packs[0]; i++) pack_into_case(packs[i][0], packs[i][1]);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int m = shapes[i][0], n = shapes[i][1], k = shapes[i][2];
        for (int v = 0; v < 4; v++) one_case(m, n, k, k + (v & 1) * 5, n + (v & 2) * 3, v & 1, (v >> 1) & 1, 1 + (v & 1));
    }
    /* separate row pointers (q, k, v packed as one) give the dense matrix's pack */
    {
        const int d = 70;
        float *W = malloc(sizeof(float) * 3 * d * d);
        for (int i = 0; i < 3 * d * d; i++) W[i] = frand();
        const float *rows[3 * 70];
        for (int j = 0; j < 3 * d; j++) rows[j] = W + (size_t)((j % 3) * d + j / 3) * d; /* any order of rows */
        float *Wr = malloc(sizeof(float) * 3 * d * d);
        for (int j = 0; j < 3 * d; j++) memcpy(Wr + (size_t)j * d, rows[j], sizeof(float) * d);
        model_f32_packed P1, P2;
        CHECK(model_f32_pack(&P1, rows, 3 * d, d) == 0 && model_f32_pack_dense(&P2, Wr, 3 * d, d) == 0, "pack");
        CHECK(memcmp(P1.p, P2.p, model_f32_packed_bytes(&P1)) == 0, "row pointers pack as the dense matrix");
        model_f32_free(&P1), model_f32_free(&P2);
        free(W), free(Wr);
    }
    /* NaN and infinity pass through like sgemm's */
    {
        float A[2 * 4] = {NAN, 1, 1, 1, INFINITY, 0, 0, 0}, W[4] = {1, 1, 1, 1}, C[2];
        model_f32_packed P;
        CHECK(model_f32_pack_dense(&P, W, 1, 4) == 0, "pack");
        model_f32_gemm(A, 2, 4, &P, NULL, 0, C, 1, 1);
        CHECK(isnan(C[0]) && isinf(C[1]) && C[1] > 0, "NaN / inf rows: %g %g", C[0], C[1]);
        model_f32_free(&P);
    }
    return t_finish();
}
