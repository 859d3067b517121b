/*
 * The bf16 GEMM kernel (src/model/gemm_bf16.c) against a double-precision
 * product of the same bf16-rounded operands, on shapes that hit every edge:
 * rows not a multiple of the 6-row micro-tile or of the 96-row task, columns
 * not a multiple of 16 or 64, odd K, a leading dimension wider than the
 * matrix, with and without bias and accumulation, one and several threads.
 *
 * The rounding here is written independently of the kernel's (bit
 * arithmetic, round to nearest even); the only difference allowed is fp32
 * summation: |C - ref| <= 2^-20 * sum_k |a_k w_k| + 1e-30 per element.
 * Also: per-call packing from strided bf16 sources (attention's keys and
 * values, model_bf16_pack16_into) equals packing the materialised matrix,
 * byte for byte; attention's fused softmax (model_bf16_softmax_rows) is
 * within one bf16 step of a double-precision softmax, exactly its rounding
 * for at least 99.9% of the probabilities, causal or not, and
 * model_bf16_gemm_rounded on its output equals model_bf16_gemm on the same
 * probabilities in fp32; narrow last panels (1 to 48 columns) and A read in
 * place at a wider stride; model_bf16_gemm_post_bf16 (rows rounded in the
 * epilogue) gives the bits of model_bf16_gemm_post then rounding, and
 * model_bf16_gemm_rounded with bias and accumulation those of
 * model_bf16_gemm; the bf16 path's GELU is within 1e-6 (1 + |v|) of erf.
 * Skips (77) on a CPU without AVX512_BF16.
 */
#include "testutil.h"
#include "../src/model/gemm_bf16.h"
#include "../src/model/fastmath.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static float bf16_round(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    const uint32_t lsb = (u >> 16) & 1u;
    u = (u + 0x7fffu + lsb) & 0xffff0000u;
    float r;
    memcpy(&r, &u, 4);
    return r;
}

static unsigned seed = 12345;
static float frand(void) {
    seed = seed * 1103515245u + 12345u;
    return (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static void one_case(int m, int n, int k, int lda, int ldc, int with_bias, int accumulate, int threads) {
    float *A = malloc(sizeof(float) * (size_t)m * lda), *W = malloc(sizeof(float) * (size_t)n * k);
    float *b = malloc(sizeof(float) * (size_t)n), *C = malloc(sizeof(float) * (size_t)m * ldc);
    float *C0 = malloc(sizeof(float) * (size_t)m * ldc);
    uint16_t *s = aligned_alloc(64, (model_bf16_scratch_elems(m, k) * 2 + 63) & ~(size_t)63);
    for (size_t i = 0; i < (size_t)m * lda; i++) A[i] = frand() * 3.0f;
    for (size_t i = 0; i < (size_t)n * k; i++) W[i] = frand() * 0.2f;
    for (int i = 0; i < n; i++) b[i] = frand();
    for (size_t i = 0; i < (size_t)m * ldc; i++) C0[i] = C[i] = frand();
    model_bf16_packed P;
    CHECK(model_bf16_pack_dense(&P, W, n, k) == 0, "pack %dx%d", n, k);
    model_bf16_gemm(A, m, lda, &P, with_bias ? b : NULL, accumulate, C, ldc, s, threads);
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
                const double p = (double)bf16_round(A[(size_t)i * lda + t]) * bf16_round(W[(size_t)j * k + t]);
                ref += p;
                mag += fabs(p);
            }
            if (with_bias) ref += b[j], mag += fabs(b[j]);
            if (accumulate) ref += C0[c], mag += fabs(C0[c]);
            const double err = fabs(C[c] - ref), tol = mag * 0x1p-20 + 1e-30;
            if (err > worst) worst = err;
            if (!(err <= tol)) {
                CHECK(0, "m%d n%d k%d bias%d acc%d th%d: C[%d][%d] = %.9g, reference %.9g (tolerance %.3g)", m, n, k,
                      with_bias, accumulate, threads, i, j, C[c], ref, tol);
                bad++;
            }
        }
    }
    CHECK(bad == 0, "m%d n%d k%d: worst error %.3g", m, n, k, worst);
    model_bf16_free(&P);
    free(A), free(W), free(b), free(C), free(C0), free(s);
}

static uint16_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16);
}

/* model_bf16_pack16_into (attention's keys and values, packed per call from
 * a strided bf16 source: row-major with a wide row stride, and transposed)
 * gives the same bytes as packing the materialised fp32 matrix, padding
 * included, whatever the destination held before. */
static void pack_into_case(int n, int k) {
    const size_t ld = (size_t)k + 7, ldt = (size_t)n + 3;
    float *src = malloc(sizeof(float) * (size_t)n * ld), *srct = malloc(sizeof(float) * (size_t)k * ldt);
    float *W = malloc(sizeof(float) * (size_t)n * k);
    for (int j = 0; j < n; j++)
        for (int t = 0; t < k; t++) {
            const float v = frand();
            W[(size_t)j * k + t] = src[(size_t)j * ld + t] = srct[(size_t)t * ldt + j] = v;
        }
    model_bf16_packed P;
    CHECK(model_bf16_pack_dense(&P, W, n, k) == 0, "pack %dx%d", n, k);
    const size_t e = model_bf16_pack_elems(n, k);
    CHECK(e * 2 == model_bf16_packed_bytes(&P), "n%d k%d: %zu elements, packed bytes %zu", n, k, e,
          model_bf16_packed_bytes(&P));
    uint16_t *d = aligned_alloc(64, (e * 2 + 63) & ~(size_t)63);
    /* the sources rounded to bf16 */
    uint16_t *src16 = malloc(2 * (size_t)n * ld), *srct16 = malloc(2 * (size_t)k * ldt);
    for (size_t i = 0; i < (size_t)n * ld; i++) src16[i] = bits_of(bf16_round(src[i]));
    for (size_t i = 0; i < (size_t)k * ldt; i++) srct16[i] = bits_of(bf16_round(srct[i]));
    for (int pass = 0; pass < 2; pass++) {
        memset(d, 0xff, e * 2);
        model_bf16_packed v;
        if (pass == 0)
            model_bf16_pack16_into(&v, d, src16, n, k, ld, 0);
        else
            model_bf16_pack16_into(&v, d, srct16, n, k, ldt, 1);
        CHECK(v.p == d && v.n == n && v.k == k && v.kp == P.kp, "n%d k%d: view", n, k);
        CHECK(memcmp(d, P.p, e * 2) == 0, "n%d k%d: %s source packs differently from the dense matrix", n, k,
              pass ? "transposed" : "row-strided");
    }
    free(src16), free(srct16);
    model_bf16_free(&P);
    free(src), free(srct), free(W), free(d);
}

/* Softmax in double precision: P[i][j] = exp(scale (s_j - max)) / sum,
 * masked entries 0. */
static void softmax_ref(const float *S, double *R, int T, int causal, float scale) {
    for (int i = 0; i < T; i++) {
        const float *r = S + (size_t)i * T;
        double *o = R + (size_t)i * T;
        const int n = causal ? i + 1 : T;
        double mx = r[0], sum = 0;
        for (int j = 1; j < n; j++) mx = r[j] > mx ? r[j] : mx;
        for (int j = 0; j < n; j++) sum += o[j] = exp((double)scale * ((double)r[j] - mx));
        for (int j = 0; j < T; j++) o[j] = j < n ? o[j] / sum : 0;
    }
}

static float from_bf16(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* The fused softmax against the double-precision one: every probability is
 * the bf16 rounding of the exact value or its neighbour towards it (the
 * fp32 arithmetic before the rounding is allowed an error far below bf16's
 * step, so a neighbour shows up only where the exact value lies next to a
 * rounding boundary: at most 0.1% of them, 3 of 174,000 when written), and
 * zeros past the row and the causal mask. Then O = P V from the rounded P
 * equals model_bf16_gemm on the same values in fp32. */
static void softmax_case(int T, int causal, int dh) {
    const int kp = (T + 1) & ~1;
    float *S = malloc(sizeof(float) * (size_t)T * T), *S0 = malloc(sizeof(float) * (size_t)T * T);
    double *R = malloc(sizeof(double) * (size_t)T * T);
    float *V = malloc(sizeof(float) * (size_t)T * dh), *O1 = malloc(sizeof(float) * (size_t)T * dh),
          *O2 = malloc(sizeof(float) * (size_t)T * dh), *PF = malloc(sizeof(float) * (size_t)T * T);
    uint16_t *P = aligned_alloc(64, (model_bf16_scratch_elems(T, T) * 2 + 63) & ~(size_t)63);
    uint16_t *s = aligned_alloc(64, (model_bf16_scratch_elems(T, T) * 2 + 63) & ~(size_t)63);
    uint16_t *vb = aligned_alloc(64, (model_bf16_pack_elems(dh, T) * 2 + 63) & ~(size_t)63);
    for (size_t i = 0; i < (size_t)T * T; i++) S[i] = S0[i] = 12.0f * frand();
    for (size_t i = 0; i < (size_t)T * dh; i++) V[i] = frand();
    const float scale = 0.125f * (1.0f + 0.01f * (float)T);
    memset(P, 0xff, (size_t)T * kp * 2); /* every element must be written */
    model_bf16_softmax_rows(S, T, causal, scale, P);
    softmax_ref(S0, R, T, causal, scale);
    int bad = 0;
    long near = 0, count = 0;
    for (int i = 0; i < T; i++)
        for (int j = 0; j < kp; j++) {
            const uint16_t got = P[(size_t)i * kp + j];
            if (j >= T || (causal && j > i)) {
                if (got != 0 && bad++ < 5) CHECK(0, "T%d causal%d: P[%d][%d] = %04x past the row", T, causal, i, j, got);
                continue;
            }
            const double want = R[(size_t)i * T + j];
            const uint16_t w = bits_of(bf16_round((float)want));
            count++;
            if (got == w) continue;
            /* the neighbour on the exact value's side of w */
            const uint16_t nb = (double)from_bf16(w) > want ? (uint16_t)(w - 1) : (uint16_t)(w + 1);
            if (got == nb && w != 0) {
                near++;
                continue;
            }
            if (bad++ < 5)
                CHECK(0, "T%d causal%d: P[%d][%d] = %04x (%.9g), exact %.9g rounds to %04x", T, causal, i, j, got,
                      from_bf16(got), want, w);
        }
    CHECK(bad == 0, "T%d causal%d: %d probabilities off by more than one bf16 step", T, causal, bad);
    CHECK(near * 1000 <= count, "T%d causal%d: %ld of %ld probabilities one step off (at most 0.1%%)", T, causal, near,
          count);
    for (int i = 0; i < T; i++)
        for (int j = 0; j < T; j++) PF[(size_t)i * T + j] = from_bf16(P[(size_t)i * kp + j]);
    uint16_t *V16 = malloc(2 * (size_t)T * dh);
    for (size_t i = 0; i < (size_t)T * dh; i++) V16[i] = bits_of(bf16_round(V[i]));
    model_bf16_packed vv;
    model_bf16_pack16_into(&vv, vb, V16, dh, T, (size_t)dh, 1);
    model_bf16_gemm_rounded(P, T, 0, &vv, NULL, 0, O1, dh, 2);
    model_bf16_gemm(PF, T, T, &vv, NULL, 0, O2, dh, s, 2);
    CHECK(memcmp(O1, O2, sizeof(float) * (size_t)T * dh) == 0, "T%d causal%d: gemm_rounded differs from gemm", T,
          causal);
    free(S), free(S0), free(R), free(V), free(V16), free(O1), free(O2), free(PF), free(P), free(s), free(vb);
}

static void add_one(float *row, const float *bias, int n) {
    for (int j = 0; j < n; j++) row[j] = row[j] * 0.5f + bias[j];
}

/* model_bf16_gemm_post_bf16 (from fp32 A, and from A already rounded) gives
 * the bits of model_bf16_gemm_post followed by rounding, pad column zeroed;
 * model_bf16_gemm_rounded with bias and accumulation those of
 * model_bf16_gemm on the same operand. */
static void post_bf16_case(int m, int n, int k) {
    const int kp = (k + 1) & ~1, np = (n + 1) & ~1, ldo = np + 4;
    float *A = malloc(sizeof(float) * (size_t)m * k), *W = malloc(sizeof(float) * (size_t)n * k);
    float *b = malloc(sizeof(float) * (size_t)n), *C = malloc(sizeof(float) * (size_t)m * n);
    float *W2 = malloc(sizeof(float) * (size_t)5 * n), *C1 = malloc(sizeof(float) * (size_t)m * 5),
          *C2 = malloc(sizeof(float) * (size_t)m * 5);
    const size_t sz = (model_bf16_scratch_elems(m, k > n ? k : n) * 2 + 63) & ~(size_t)63;
    uint16_t *s = aligned_alloc(64, sz), *s2 = aligned_alloc(64, sz);
    uint16_t *o1 = malloc(2 * (size_t)m * ldo), *o2 = malloc(2 * (size_t)m * ldo), *o3 = malloc(2 * (size_t)m * ldo);
    for (size_t i = 0; i < (size_t)m * k; i++) A[i] = frand();
    for (size_t i = 0; i < (size_t)n * k; i++) W[i] = frand();
    for (int j = 0; j < n; j++) b[j] = frand();
    for (size_t i = 0; i < (size_t)5 * n; i++) W2[i] = frand();
    model_bf16_packed P, P2;
    CHECK(model_bf16_pack_dense(&P, W, n, k) == 0 && model_bf16_pack_dense(&P2, W2, 5, n) == 0, "pack");
    memset(o1, 0xee, 2 * (size_t)m * ldo), memset(o2, 0xee, 2 * (size_t)m * ldo), memset(o3, 0xee, 2 * (size_t)m * ldo);
    model_bf16_gemm_post(A, m, k, &P, b, 0, C, n, s, 2, add_one, b);
    for (int i = 0; i < m; i++) model_bf16_round(C + (size_t)i * n, n, np, o1 + (size_t)i * ldo);
    model_bf16_gemm_post_bf16(A, m, k, &P, b, o2, ldo, s, 2, add_one, b);
    for (int i = 0; i < m; i++) model_bf16_round(A + (size_t)i * k, k, kp, s2 + (size_t)i * kp);
    model_bf16_gemm_post_bf16(NULL, m, 0, &P, b, o3, ldo, s2, 1, add_one, b);
    int bad = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < ldo; j++) {
            const size_t e = (size_t)i * ldo + j;
            bad += o2[e] != o1[e] || o3[e] != o1[e];
        }
    CHECK(bad == 0, "m%d n%d k%d: post_bf16 differs from post + rounding in %d elements", m, n, k, bad);
    /* the rounded output as the next GEMM's operand (rows of np), with bias
     * and accumulation: the bits of model_bf16_gemm on its fp32 values */
    uint16_t *cpt = aligned_alloc(64, sz);
    float *Af = malloc(sizeof(float) * (size_t)m * n);
    for (int i = 0; i < m; i++) {
        memcpy(cpt + (size_t)i * np, o1 + (size_t)i * ldo, 2 * (size_t)np);
        for (int j = 0; j < n; j++) {
            const uint32_t u = (uint32_t)o1[(size_t)i * ldo + j] << 16;
            memcpy(&Af[(size_t)i * n + j], &u, 4);
        }
    }
    for (int i = 0; i < m; i++)
        for (int j = 0; j < 5; j++) C1[i * 5 + j] = C2[i * 5 + j] = 0.25f * (float)(i - j);
    model_bf16_gemm_rounded(cpt, m, 0, &P2, b, 1, C1, 5, 2);
    model_bf16_gemm(Af, m, n, &P2, b, 1, C2, 5, s, 2);
    CHECK(memcmp(C1, C2, sizeof(float) * (size_t)m * 5) == 0, "m%d n%d: gemm_rounded differs from gemm", m, n);
    /* the same rows read in place, at the output's wider stride */
    for (int i = 0; i < m; i++)
        for (int j = 0; j < 5; j++) C2[i * 5 + j] = 0.25f * (float)(i - j);
    model_bf16_gemm_rounded(o1, m, ldo, &P2, b, 1, C2, 5, 2);
    CHECK(memcmp(C1, C2, sizeof(float) * (size_t)m * 5) == 0, "m%d n%d: rows read at stride %d differ", m, n, ldo);
    free(cpt), free(Af);
    model_bf16_free(&P), model_bf16_free(&P2);
    free(A), free(W), free(b), free(C), free(W2), free(C1), free(C2), free(s), free(s2), free(o1), free(o2), free(o3);
}

/* The bf16 path's GELU against erf in double: within 1e-6 (1 + |v|), the
 * rational erf's own 4e-7 plus the reciprocal's 2^-23; every tail length. */
static void gelu_case(void) {
    enum { N = 1000 };
    float x[N], b[N];
    double worst = 0;
    for (int n = 1; n <= 40; n += 13) {
        for (int i = 0; i < N; i++) {
            x[i] = -10.0f + 20.0f * (float)i / N;
            b[i] = 0.001f * (float)(i % 7);
        }
        float y[N];
        memcpy(y, x, sizeof y);
        for (int s0 = 0; s0 < N; s0 += n) model_bf16_gelu_row(y + s0, b + s0, s0 + n <= N ? n : N - s0);
        for (int i = 0; i < N; i++) {
            const double v = (double)(x[i] + b[i]), ref = 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
            const double e = fabs(y[i] - ref) / (1.0 + fabs(v));
            if (e > worst) worst = e;
        }
    }
    CHECK(worst <= 1e-6, "bf16 GELU: worst error %.3g (relative to 1 + |v|)", worst);
}

int main(void) {
    if (!model_bf16_supported()) {
        printf("skipped: this CPU has no AVX512_BF16\n");
        return 77;
    }
    static const int packs[][2] = {{1, 1}, {16, 197}, {197, 16}, {64, 64}, {65, 33}, {130, 7}, {3, 2}, {70, 4099}};
    for (size_t i = 0; i < sizeof packs / sizeof packs[0]; i++) pack_into_case(packs[i][0], packs[i][1]);
    static const int shapes[][3] = {
        {1, 1, 1},    {1, 16, 2},   {5, 17, 3},   {6, 64, 64},   {7, 65, 33},   {13, 100, 192},
        {96, 128, 2}, {97, 63, 31}, {197, 576, 192}, {200, 192, 768}, {50, 130, 77},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int m = shapes[i][0], n = shapes[i][1], k = shapes[i][2];
        for (int v = 0; v < 4; v++) one_case(m, n, k, k + (v & 1) * 5, n + (v & 2) * 3, v & 1, (v >> 1) & 1, 1 + (v & 1));
    }
    static const int pb[][3] = {{1, 1, 1}, {7, 65, 33}, {97, 130, 64}, {200, 192, 300}, {13, 3, 5}};
    for (size_t i = 0; i < sizeof pb / sizeof pb[0]; i++) post_bf16_case(pb[i][0], pb[i][1], pb[i][2]);
    gelu_case();
    static const int soft[] = {1, 2, 7, 8, 15, 16, 17, 31, 33, 50, 197, 257};
    for (size_t i = 0; i < sizeof soft / sizeof soft[0]; i++)
        for (int causal = 0; causal < 2; causal++) softmax_case(soft[i], causal, 64);
    {
        /* a NaN score stays NaN in its row; a score 800 below the maximum weighs 0 */
        float S[4] = {NAN, 1, 0, -800};
        uint16_t P[4];
        model_bf16_softmax_rows(S, 2, 0, 1.0f, P);
        CHECK((P[0] & 0x7f80) == 0x7f80 && (P[0] & 0x7f) != 0, "NaN row: %04x", P[0]);
        CHECK(P[2] == bits_of(1.0f) && P[3] == 0, "row with a score far below: %04x %04x", P[2], P[3]);
    }
    /* NaN and infinity pass through like the fp32 path's */
    {
        float A[2 * 4] = {NAN, 1, 1, 1, INFINITY, 0, 0, 0}, W[4] = {1, 1, 1, 1}, C[2];
        uint16_t *s = aligned_alloc(64, 256);
        model_bf16_packed P;
        CHECK(model_bf16_pack_dense(&P, W, 1, 4) == 0, "pack");
        model_bf16_gemm(A, 2, 4, &P, NULL, 0, C, 1, s, 1);
        CHECK(isnan(C[0]) && isinf(C[1]) && C[1] > 0, "NaN / inf rows: %g %g", C[0], C[1]);
        model_bf16_free(&P);
        free(s);
    }
    return t_finish();
}
