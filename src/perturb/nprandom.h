/*
 * NumPy's random streams, reproduced draw for draw so that the ImageNet-C
 * corruptions write the same pixels as imagecorruptions after
 * np.random.seed(N) (NumPy 1.24, checked by tests/ref/gen_imagenet_c.py):
 *
 *  - perturb_mt: the legacy RandomState. MT19937 seeded from a 32-bit
 *    integer (Matsumoto and Nishimura's init_genrand), doubles from two
 *    32-bit words (a >> 5, b >> 6) / 2^53, the polar (Marsaglia) Gaussian
 *    that keeps its second value for the next call, Poisson by
 *    multiplication below 10 and by Hormann's PTRS from 10, and bounded
 *    integers by masked rejection of 32-bit words.
 *  - perturb_pcg: np.random.default_rng(N), i.e. PCG64 (XSL-RR 128/64)
 *    seeded through SeedSequence, with doubles (x >> 11) / 2^53.
 *
 * The arithmetic follows the published algorithms in IEEE double with libm's
 * sqrt/log/exp, which is what NumPy's C code runs.
 */
#ifndef WOBBLE_NPRANDOM_H
#define WOBBLE_NPRANDOM_H
#include <stddef.h>
#include <stdint.h>

typedef struct perturb_mt {
    uint32_t key[624];
    uint32_t out[624]; /* the tempered outputs of the current key */
    double dbl[312];   /* random_sample() of the pairs (out[2i], out[2i + 1]) */
    int pos;
    int has_gauss;
    double gauss;
} perturb_mt;

void perturb_mt_seed(perturb_mt *s, uint32_t seed);
/* regenerate the 624 words and their tempered outputs (called when they
 * are used up) */
void perturb_mt_twist(perturb_mt *s);

static inline uint32_t perturb_mt_u32(perturb_mt *s) {
    if (s->pos >= 624) perturb_mt_twist(s);
    return s->out[s->pos++];
}

/* random_sample(): [0, 1) with 53 bits, from the next two words; read
 * from dbl when they are a pair of this block (the usual case) */
static inline double perturb_mt_double(perturb_mt *s) {
    if (!(s->pos & 1) && s->pos < 624) {
        const double d = s->dbl[s->pos >> 1];
        s->pos += 2;
        return d;
    }
    const uint32_t a = perturb_mt_u32(s) >> 5, b = perturb_mt_u32(s) >> 6;
    return (a * 67108864.0 + b) / 9007199254740992.0;
}
/* standard_normal() / normal(loc, scale) */
double perturb_mt_gauss(perturb_mt *s);
/* n draws of standard_normal() into out: the same values, and the same
 * state after, as n calls of perturb_mt_gauss (a block's candidate pairs
 * screened together, then their logs, then the rest) */
void perturb_mt_gauss_fill(perturb_mt *s, double *out, size_t n);
static inline double perturb_mt_normal(perturb_mt *s, double loc, double scale) {
    return loc + scale * perturb_mt_gauss(s);
}
/* uniform(low, high) = low + (high - low) * random_sample() */
static inline double perturb_mt_uniform(perturb_mt *s, double low, double high) {
    const double range = high - low;
    return low + range * perturb_mt_double(s);
}
/* n draws of uniform(low, high) into out: the same values and state after
 * as n calls of perturb_mt_uniform */
void perturb_mt_uniform_fill(perturb_mt *s, double low, double high, double *out, size_t n);
/* poisson(lam), lam >= 0 */
int64_t perturb_mt_poisson(perturb_mt *s, double lam);
/* the same with the per-lam constants computed once (for many draws of a
 * few lam values) */
typedef struct {
    double lam, enlam, slam, loglam, a, b, invalpha, vr;
    double loginvalpha; /* log(invalpha), as PTRS's test computes it */
} perturb_poisson;
void perturb_poisson_prepare(perturb_poisson *p, double lam);
int64_t perturb_mt_poisson_p(perturb_mt *s, const perturb_poisson *p);
/* out[i] = poisson(table[idx[i]].lam) for i < n, idx[i] < ntable: the same
 * draws, and the same state after, as n calls of perturb_mt_poisson_p */
void perturb_mt_poisson_fill(perturb_mt *s, const perturb_poisson *table, size_t ntable, const uint8_t *idx,
                             int64_t *out, size_t n);
/* randint(low, high): low <= k < high (high > low): NumPy's masked
 * rejection of 32-bit words (rng < 2^32 here: the corruptions draw small
 * ranges; the mask is the smallest all-ones value covering rng) */
static inline int64_t perturb_mt_randint(perturb_mt *s, int64_t low, int64_t high) {
    const uint64_t rng = (uint64_t)(high - 1) - (uint64_t)low;
    if (rng == 0) return low;
    uint32_t mask = (uint32_t)rng;
    mask |= mask >> 1, mask |= mask >> 2, mask |= mask >> 4, mask |= mask >> 8, mask |= mask >> 16;
    uint32_t v;
    if (rng == 0xffffffffu)
        v = perturb_mt_u32(s);
    else
        while ((v = perturb_mt_u32(s) & mask) > rng) {
        }
    return low + (int64_t)v;
}

/* whether the perturbation kernels take their AVX-512 paths (the same
 * values as the scalar ones): the CPU has AVX-512 F and VL, and the
 * environment does not set WOBBLE_PERTURB_SCALAR (the tests' way to run
 * the scalar paths on such a CPU) */
int perturb_avx512(void);

/* n draws of randint(low, high) with -128 <= low < high <= 128 into out:
 * the same values and state after as n calls of perturb_mt_randint */
void perturb_mt_randint_fill(perturb_mt *s, int64_t low, int64_t high, int8_t *out, size_t n);

typedef struct perturb_pcg {
    unsigned __int128 state, inc;
} perturb_pcg;

/* np.random.default_rng(seed) */
void perturb_pcg_seed(perturb_pcg *s, uint64_t seed);
uint64_t perturb_pcg_u64(perturb_pcg *s);
/* Generator.random() */
double perturb_pcg_double(perturb_pcg *s);
/* n draws of Generator.random() as the 53-bit integers they are made of
 * (random() = out[i] / 2^53 exactly): the same draws as n calls */
void perturb_pcg_fill53(perturb_pcg *s, uint64_t *out, size_t n);
#endif
