/*
 * NumPy's float64 exp and np.sum, reproduced exactly (npmath.h).
 *
 * np.exp: Debian's NumPy 1.24 runs float64 exp through Intel's SVML
 * (__svml_exp8, bundled with NumPy) on CPUs with AVX-512 (SKX level), which
 * is where the goldens are made; it is not libm's exp and differs from it in
 * the last bit for about a quarter of arguments. A Gaussian kernel is np.exp
 * values over their np.sum, and a last-bit difference in a weight can move a
 * truncated uint8 output by one, so the same steps are computed here, in
 * portable C, on every CPU:
 *   N = floor(16 x log2(e)) / 16   (the product exact: a fused multiply-add)
 *   r = (x - N ln2_hi) - N ln2_lo  (two fused steps), r in [0, ln2/16)
 *   p = r + c1 r^2 + r^3 ((c3 r + c2) + r^2 (c5 r + c4))
 *   exp(x) = 2^floor(N) (T + T p),  T = 2^(frac(N)) from a 16-entry table
 * with SVML's minimax coefficients c1..c5 and split ln2, for |x| < 707.7
 * (SVML's fast path; larger arguments, never met by the kernels, use libm).
 * gen_npexp_table.py computes the table.
 */
#include "npmath.h"

#include <math.h>
#include <string.h>

static const uint64_t pow2_16th[16] = {
    0x3ff0000000000000ull, 0x3ff0b5586cf9890full, 0x3ff172b83c7d517bull, 0x3ff2387a6e756238ull,
    0x3ff306fe0a31b715ull, 0x3ff3dea64c123422ull, 0x3ff4bfdad5362a27ull, 0x3ff5ab07dd485429ull,
    0x3ff6a09e667f3bcdull, 0x3ff7a11473eb0187ull, 0x3ff8ace5422aa0dbull, 0x3ff9c49182a3f090ull,
    0x3ffae89f995ad3adull, 0x3ffc199bdd85529cull, 0x3ffd5818dcfba487ull, 0x3ffea4afa2a490daull,
};

static double d_of(uint64_t u) {
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

double perturb_np_exp(double x) {
    if (!(fabs(x) < 0x1.61da04cbafe44p+9)) return exp(x);
    const double log2e = 0x1.71547652b82fep+0, ln2_hi = 0x1.62e42fefa39efp-1, ln2_lo = 0x1.abc9e3b39803fp-56;
    const double c1 = 0x1.0000000002622p-1, c2 = 0x1.5555554b508a2p-3, c3 = 0x1.555564bb4f5fp-5,
                 c4 = 0x1.1106603d97cp-7, c5 = 0x1.72eb5ef0d213dp-10;
    /* floor of 16 x log2(e), the product taken exactly: p + e */
    const double p = x * log2e, e = fma(x, log2e, -p);
    double f = floor(16 * p);
    if (f == 16 * p && e < 0) f -= 1;
    const double n = f / 16;
    double r = fma(-n, ln2_hi, x);
    r = fma(-ln2_lo, n, r);
    const double r2 = r * r, r3 = r2 * r;
    const double a = fma(c5, r, c4), b = fma(c3, r, c2);
    const double s = fma(r2, c1, r);
    const double q = fma(r3, fma(r2, a, b), s);
    const double t = d_of(pow2_16th[(int64_t)f & 15]);
    return ldexp(fma(t, q, t), (int)floor(n));
}

/* NumPy's pairwise_sum: below 8 terms a plain loop; up to 128 eight running
 * sums combined as ((0+1)+(2+3))+((4+5)+(6+7)), then the rest; above, the
 * two halves (split at a multiple of 8) recursively. */
static double pairwise(const double *a, size_t n) {
    if (n < 8) {
        double s = 0.0;
        for (size_t i = 0; i < n; i++) s += a[i];
        return s;
    }
    if (n <= 128) {
        double r[8];
        for (int k = 0; k < 8; k++) r[k] = a[k];
        size_t i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int k = 0; k < 8; k++) r[k] += a[i + k];
        double s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) s += a[i];
        return s;
    }
    size_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise(a, n2) + pairwise(a + n2, n - n2);
}

/* the reduction starts from add's identity, 0 */
double perturb_np_sum(const double *a, size_t n) { return 0.0 + pairwise(a, n); }
