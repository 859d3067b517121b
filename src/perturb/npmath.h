/* NumPy's float64 exp (AVX-512F build) and pairwise sum (npmath.c). */
#ifndef WOBBLE_NPMATH_H
#define WOBBLE_NPMATH_H
#include <stddef.h>
#include <stdint.h>

double perturb_np_exp(double x);
/* np.sum of a contiguous float64 array */
double perturb_np_sum(const double *a, size_t n);
#endif
