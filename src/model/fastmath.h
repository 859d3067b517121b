/*
 * Branch-free float exp and erf that GCC vectorises (glibc's expf/erff are
 * scalar calls). Accuracy, measured in float32 over the whole range:
 *  - wb_exp: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, degree-7
 *    Taylor polynomial for e^r (truncation < 6e-9), 2^n through the exponent
 *    bits: about 1 ulp; inputs are clamped to [-87, 88] (below -87 gives 0).
 *  - wb_erf: erf(x) = x P(x^2) / Q(x^2) on |x| <= 4 (erf rounds to +-1 in
 *    float beyond), P of degree 6 and Q of degree 5 in x^2, fitted for wobble
 *    by least squares on [0, 4] (tests/ref/fit_erf.py): max |error| 4e-7.
 * Both are far inside the 1e-4 embedding tolerance and keep results
 * independent of the libm version.
 */
#ifndef WOBBLE_FASTMATH_H
#define WOBBLE_FASTMATH_H
#include <stdint.h>
#include <string.h>

/* Element-wise loops built for AVX2 as well as the baseline, chosen at run time */
#define WB_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

/* The constants, shared with the AVX-512 versions in gemm_bf16.c (bf16
 * path), highest coefficient first. */
#define WB_EXP_LOG2E 1.44269504088896341f
#define WB_EXP_LN2_HI 0.693145751953125f /* ln2 high part (n * it is exact) */
#define WB_EXP_LN2_LO 1.42860682030941723e-06f
#define WB_EXP_POLY                                                                                                  \
    { 1.0f / 5040.0f, 1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f, 1.0f / 6.0f, 0.5f, 1.0f, 1.0f }
#define WB_ERF_P                                                                                                     \
    { -1.3744868764879522e-08f, 4.798394594201282e-06f, 0.00038344464549476575f, 0.0038405920562658382f,          \
      0.05434326953054244f, 0.18466862650537696f, 1.12837917125273f }
#define WB_ERF_Q                                                                                                     \
    { 6.419120461179083e-05f, 0.0013109302949334198f, 0.015457060683460954f, 0.11382360539550206f,                 \
      0.4969917744871092f, 1.0f }

static inline float wb_exp(float x) {
    const float lo = -87.0f, hi = 88.0f;
    const float xc = x >= lo ? (x <= hi ? x : hi) : lo; /* NaN -> lo: the int conversion below stays defined */
    const float shifter = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    const float t = xc * WB_EXP_LOG2E + shifter;
    const float n = t - shifter;
    float r = xc - n * WB_EXP_LN2_HI;
    r = r - n * WB_EXP_LN2_LO;
    static const float c[] = WB_EXP_POLY;
    float p = c[0];
    for (int i = 1; i < 8; i++) p = p * r + c[i];
    const int32_t e = ((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &e, sizeof s);
    return x < lo ? 0.0f : (x == x ? p * s : x); /* NaN stays NaN (and n above is then never used) */
}

static inline float wb_erf(float x) {
    const float xc = x < -4.0f ? -4.0f : (x > 4.0f ? 4.0f : x);
    const float z = xc * xc;
    static const float P[] = WB_ERF_P, Q[] = WB_ERF_Q;
    float p = P[0], q = Q[0];
    for (int i = 1; i < 7; i++) p = p * z + P[i];
    for (int i = 1; i < 6; i++) q = q * z + Q[i];
    const float y = xc * p / q;
    return y > 1.0f ? 1.0f : (y < -1.0f ? -1.0f : y);
}
#endif
