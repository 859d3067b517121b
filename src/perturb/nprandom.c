/* NumPy's legacy RandomState and default_rng streams (nprandom.h). */
#include "nprandom.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>

/* ------------------------------------------------------------ MT19937 */
#define MT_N 624
#define MT_M 397

void perturb_mt_seed(perturb_mt *s, uint32_t seed) {
    s->key[0] = seed;
    for (int i = 1; i < MT_N; i++) {
        const uint32_t prev = s->key[i - 1];
        s->key[i] = 1812433253u * (prev ^ (prev >> 30)) + (uint32_t)i;
    }
    s->pos = MT_N;
    s->has_gauss = 0;
    s->gauss = 0.0;
}

/* the twist in three runs without conditionals (each reads words at least
 * 227 places away, so the loops vectorise), then the tempering of all 624 */
/* AVX-512 where the CPU has it (the same words from each version; GCC:
 * clang refuses clones of a function the header's inline code calls) */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
__attribute__((target_clones("arch=x86-64-v4", "default")))
#endif
void perturb_mt_twist(perturb_mt *s) {
    uint32_t *k = s->key;
    int i = 0;
    for (; i < MT_N - MT_M; i++) {
        const uint32_t y = (k[i] & 0x80000000u) | (k[i + 1] & 0x7fffffffu);
        k[i] = k[i + MT_M] ^ (y >> 1) ^ ((0u - (y & 1u)) & 0x9908b0dfu);
    }
    for (; i < MT_N - 1; i++) {
        const uint32_t y = (k[i] & 0x80000000u) | (k[i + 1] & 0x7fffffffu);
        k[i] = k[i + MT_M - MT_N] ^ (y >> 1) ^ ((0u - (y & 1u)) & 0x9908b0dfu);
    }
    const uint32_t y = (k[MT_N - 1] & 0x80000000u) | (k[0] & 0x7fffffffu);
    k[MT_N - 1] = k[MT_M - 1] ^ (y >> 1) ^ ((0u - (y & 1u)) & 0x9908b0dfu);
    for (i = 0; i < MT_N; i++) {
        uint32_t t = k[i];
        t ^= t >> 11;
        t ^= (t << 7) & 0x9d2c5680u;
        t ^= (t << 15) & 0xefc60000u;
        s->out[i] = t ^ (t >> 18);
    }
    for (i = 0; i < MT_N / 2; i++)
        s->dbl[i] = ((s->out[2 * i] >> 5) * 67108864.0 + (s->out[2 * i + 1] >> 6)) / 9007199254740992.0;
    s->pos = 0;
}

double perturb_mt_gauss(perturb_mt *s) {
    if (s->has_gauss) {
        s->has_gauss = 0;
        const double g = s->gauss;
        s->gauss = 0.0;
        return g;
    }
    double x1, x2, r2;
    do {
        x1 = 2.0 * perturb_mt_double(s) - 1.0;
        x2 = 2.0 * perturb_mt_double(s) - 1.0;
        r2 = x1 * x1 + x2 * x2;
    } while (r2 >= 1.0 || r2 == 0.0);
    const double f = sqrt(-2.0 * log(r2) / r2);
    s->gauss = f * x1;
    s->has_gauss = 1;
    return f * x2;
}

/* The polar method over the candidate pairs left in the current block
 * (each pair is two doubles, four words), when the block's position is a
 * multiple of four words so that no pair straddles two blocks: the
 * accepted pairs (0 < r2 < 1) are gathered, as many as the n values still
 * wanted need; then log, sqrt and the products, with the operations of
 * perturb_mt_gauss (IEEE division and square root give the same bits in
 * vectors; log stays libm's, called once per pair). If the block runs out
 * before the values do, its trailing rejected pairs are consumed too (the
 * loop one call at a time would read them before the next acceptance);
 * otherwise the position stops after the last pair used. */
#define GAUSS_CAND (MT_N / 4)
typedef struct {
    double x1[GAUSS_CAND + 8], x2[GAUSS_CAND + 8], r2[GAUSS_CAND + 8], f[GAUSS_CAND + 8];
    int end[GAUSS_CAND + 16];
} gauss_block;

/* the accepted candidates among d[0 .. 2 cand) into g; returns their count */
static int gauss_screen(const double *d, int cand, gauss_block *g) {
    int na = 0;
    for (int j = 0; j < cand; j++) {
        const double x1 = 2.0 * d[2 * j] - 1.0, x2 = 2.0 * d[2 * j + 1] - 1.0;
        const double r2 = x1 * x1 + x2 * x2;
        g->x1[na] = x1, g->x2[na] = x2, g->r2[na] = r2, g->end[na] = j + 1;
        na += r2 < 1.0 && r2 != 0.0;
    }
    return na;
}

/* f = sqrt(-2 log(r2) / r2) from f = log(r2) */
static void gauss_scale(gauss_block *g, int n) {
    for (int a = 0; a < n; a++) g->f[a] = sqrt(-2.0 * g->f[a] / g->r2[a]);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define GAUSS_AVX512 __attribute__((target("avx512f,avx512vl")))
GAUSS_AVX512 static int gauss_screen_avx512(const double *d, int cand, gauss_block *g) {
    const __m512d one = _mm512_set1_pd(1.0), two = _mm512_set1_pd(2.0), zero = _mm512_setzero_pd();
    const __m512i even = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14), odd = _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15);
    __m256i idx = _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 8);
    int na = 0, j = 0;
    for (; j + 8 <= cand; j += 8) {
        const __m512d lo = _mm512_loadu_pd(d + 2 * j), hi = _mm512_loadu_pd(d + 2 * j + 8);
        const __m512d x1 = _mm512_sub_pd(_mm512_mul_pd(two, _mm512_permutex2var_pd(lo, even, hi)), one);
        const __m512d x2 = _mm512_sub_pd(_mm512_mul_pd(two, _mm512_permutex2var_pd(lo, odd, hi)), one);
        const __m512d r2 = _mm512_add_pd(_mm512_mul_pd(x1, x1), _mm512_mul_pd(x2, x2));
        const __mmask8 ok = _mm512_cmp_pd_mask(r2, one, _CMP_LT_OQ) & _mm512_cmp_pd_mask(r2, zero, _CMP_NEQ_UQ);
        /* compressed in registers, stored whole (the arrays have room) */
        _mm512_storeu_pd(g->x1 + na, _mm512_maskz_compress_pd(ok, x1));
        _mm512_storeu_pd(g->x2 + na, _mm512_maskz_compress_pd(ok, x2));
        _mm512_storeu_pd(g->r2 + na, _mm512_maskz_compress_pd(ok, r2));
        _mm256_storeu_si256((__m256i *)(g->end + na), _mm256_maskz_compress_epi32(ok, idx));
        idx = _mm256_add_epi32(idx, _mm256_set1_epi32(8));
        na += __builtin_popcount(ok);
    }
    for (; j < cand; j++) {
        const double x1 = 2.0 * d[2 * j] - 1.0, x2 = 2.0 * d[2 * j + 1] - 1.0;
        const double r2 = x1 * x1 + x2 * x2;
        g->x1[na] = x1, g->x2[na] = x2, g->r2[na] = r2, g->end[na] = j + 1;
        na += r2 < 1.0 && r2 != 0.0;
    }
    return na;
}
GAUSS_AVX512 static void gauss_scale_avx512(gauss_block *g, int n) {
    const __m512d m2 = _mm512_set1_pd(-2.0);
    int a = 0;
    for (; a + 8 <= n; a += 8)
        _mm512_storeu_pd(g->f + a, _mm512_sqrt_pd(_mm512_div_pd(_mm512_mul_pd(m2, _mm512_loadu_pd(g->f + a)),
                                                                 _mm512_loadu_pd(g->r2 + a))));
    for (; a < n; a++) g->f[a] = sqrt(-2.0 * g->f[a] / g->r2[a]);
}
int perturb_avx512(void) {
    const char *no = getenv("WOBBLE_PERTURB_SCALAR");
    if (no && *no) return 0;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
}
#else
int perturb_avx512(void) { return 0; }
#define gauss_screen_avx512 gauss_screen
#define gauss_scale_avx512 gauss_scale
#endif

void perturb_mt_gauss_fill(perturb_mt *s, double *out, size_t n) {
    gauss_block g;
    const int vec = perturb_avx512();
    size_t i = 0;
    while (i < n) {
        if (s->has_gauss || (s->pos & 3)) {
            out[i++] = perturb_mt_gauss(s);
            continue;
        }
        if (s->pos >= MT_N) perturb_mt_twist(s);
        const double *d = s->dbl + (s->pos >> 1);
        const int cand = (MT_N - s->pos) / 4;
        const int na = vec ? gauss_screen_avx512(d, cand, &g) : gauss_screen(d, cand, &g);
        const size_t want = (n - i + 1) / 2;
        const int take = (size_t)na < want ? na : (int)want;
        for (int a = 0; a < take; a++) g.f[a] = log(g.r2[a]);
        if (vec)
            gauss_scale_avx512(&g, take);
        else
            gauss_scale(&g, take);
        for (int a = 0; a < take; a++) {
            out[i++] = g.f[a] * g.x2[a];
            if (i < n)
                out[i++] = g.f[a] * g.x1[a];
            else
                s->gauss = g.f[a] * g.x1[a], s->has_gauss = 1;
        }
        s->pos = take < na || (size_t)take == want ? s->pos + 4 * (take ? g.end[take - 1] : 0) : MT_N;
    }
}

void perturb_mt_randint_fill(perturb_mt *s, int64_t low, int64_t high, int8_t *out, size_t n) {
    const uint64_t rng = (uint64_t)(high - 1) - (uint64_t)low;
    uint32_t mask = (uint32_t)rng;
    mask |= mask >> 1, mask |= mask >> 2, mask |= mask >> 4, mask |= mask >> 8, mask |= mask >> 16;
    size_t k = 0;
    if (rng == 0) {
        for (; k < n; k++) out[k] = (int8_t)low;
        return;
    }
    while (k < n) {
        if (s->pos >= MT_N) perturb_mt_twist(s);
        int pos = s->pos;
        if (mask == rng) { /* every word passes: one draw per word */
            const size_t m = (size_t)(MT_N - pos) < n - k ? (size_t)(MT_N - pos) : n - k;
            const uint32_t *w = s->out + pos;
            for (size_t q = 0; q < m; q++) out[k + q] = (int8_t)(low + (int64_t)(w[q] & mask));
            k += m, pos += (int)m;
        } else { /* the block's words in order, each kept when it passes */
            while (pos < MT_N && k < n) {
                const uint32_t v = s->out[pos++] & mask;
                out[k] = (int8_t)(low + (int64_t)v);
                k += v <= rng;
            }
        }
        s->pos = pos;
    }
}

void perturb_mt_uniform_fill(perturb_mt *s, double low, double high, double *out, size_t n) {
    const double range = high - low;
    size_t i = 0;
    while (i < n) {
        if ((s->pos & 1) || s->pos >= MT_N) {
            out[i++] = perturb_mt_uniform(s, low, high);
            continue;
        }
        /* the rest of the block's doubles, read in order */
        const double *d = s->dbl + (s->pos >> 1);
        size_t m = (size_t)(MT_N - s->pos) / 2;
        if (m > n - i) m = n - i;
        for (size_t k = 0; k < m; k++) out[i + k] = low + range * d[k];
        s->pos += 2 * (int)m;
        i += m;
    }
}

/* log(Gamma(x)) by Stirling's series with the coefficients NumPy uses,
 * shifting x up to 7 first. */
static double loggam(double x) {
    static const double a[10] = {8.333333333333333e-02, -2.777777777777778e-03, 7.936507936507937e-04,
                                 -5.952380952380952e-04, 8.417508417508418e-04, -1.917526917526918e-03,
                                 6.410256410256410e-03, -2.955065359477124e-02, 1.796443723688307e-01,
                                 -1.39243221690590e+00};
    if (x == 1.0 || x == 2.0) return 0.0;
    const int64_t n = x < 7.0 ? (int64_t)(7 - x) : 0;
    double x0 = x + (double)n;
    const double x2 = (1.0 / x0) * (1.0 / x0);
    double gl0 = a[9];
    for (int k = 8; k >= 0; k--) {
        gl0 *= x2;
        gl0 += a[k];
    }
    double gl = gl0 / x0 + 0.5 * 1.8378770664093453e+00 + (x0 - 0.5) * log(x0) - x0;
    if (x < 7.0)
        for (int64_t k = 1; k <= n; k++) {
            gl -= log(x0 - 1.0);
            x0 -= 1.0;
        }
    return gl;
}

/* loggam(k + 1) for small counts, computed once by loggam itself (the
 * same values as calling it) */
#define LOGGAM_TAB 256
static double loggam_tab[LOGGAM_TAB];
static pthread_once_t loggam_once = PTHREAD_ONCE_INIT;
static void loggam_init(void) {
    for (int k = 0; k < LOGGAM_TAB; k++) loggam_tab[k] = loggam((double)k + 1);
}
static inline double loggam_k1(int64_t k) { return k < LOGGAM_TAB ? loggam_tab[k] : loggam((double)k + 1); }

void perturb_poisson_prepare(perturb_poisson *p, double lam) {
    p->lam = lam;
    p->enlam = p->slam = p->loglam = p->a = p->b = p->invalpha = p->vr = p->loginvalpha = 0;
    if (lam >= 10) {
        p->slam = sqrt(lam), p->loglam = log(lam);
        p->b = 0.931 + 2.53 * p->slam;
        p->a = -0.059 + 0.02483 * p->b;
        p->invalpha = 1.1239 + 1.1328 / (p->b - 3.4);
        p->vr = 0.9277 - 3.6224 / (p->b - 2);
        p->loginvalpha = log(p->invalpha);
        pthread_once(&loggam_once, loggam_init); /* PTRS reads loggam_tab */
    } else if (lam != 0) {
        p->enlam = exp(-lam);
    }
}

/* Hormann (1993), "The transformed rejection method for generating Poisson
 * random variables", algorithm PTRS; log(invalpha) and loggam(k + 1) from
 * tables of the same values */
static int64_t poisson_ptrs(perturb_mt *s, const perturb_poisson *P) {
    const double lam = P->lam, loglam = P->loglam, a = P->a, b = P->b, vr = P->vr;
    for (;;) {
        const double U = perturb_mt_double(s) - 0.5;
        const double V = perturb_mt_double(s);
        const double us = 0.5 - fabs(U);
        const int64_t k = (int64_t)floor((2 * a / us + b) * U + lam + 0.43);
        if (us >= 0.07 && V <= vr) return k;
        if (k < 0 || (us < 0.013 && V > us)) continue;
        if (log(V) + P->loginvalpha - log(a / (us * us) + b) <= -lam + (double)k * loglam - loggam_k1(k))
            return k;
    }
}

int64_t perturb_mt_poisson(perturb_mt *s, double lam) {
    perturb_poisson p;
    perturb_poisson_prepare(&p, lam);
    return perturb_mt_poisson_p(s, &p);
}

/* the multiplication loop from a count x and product prod: four at a time
 * from the block's doubles where they are there: the products only fall
 * (each factor is below 1 and rounding is monotone), so the count above
 * exp(-lam) among the first three is where the loop one at a time would
 * have stopped, and it consumes the same draws */
static int64_t pois_mult_from(perturb_mt *s, double enlam, int64_t x, double prod) {
    for (;;) {
        if (!(s->pos & 1) && s->pos <= MT_N - 8) {
            const double *u = s->dbl + (s->pos >> 1);
            const double p1 = prod * u[0], p2 = p1 * u[1], p3 = p2 * u[2], p4 = p3 * u[3];
            if (p4 > enlam) {
                x += 4, prod = p4, s->pos += 8;
                continue;
            }
            const int c = (p1 > enlam) + (p2 > enlam) + (p3 > enlam);
            s->pos += 2 * (c + 1);
            return x + c;
        }
        prod *= perturb_mt_double(s);
        if (prod > enlam)
            x++;
        else
            return x;
    }
}

int64_t perturb_mt_poisson_p(perturb_mt *s, const perturb_poisson *P) {
    if (P->lam >= 10) return poisson_ptrs(s, P);
    if (P->lam == 0) return 0;
    /* multiply uniforms until the product falls to exp(-lam) */
    return pois_mult_from(s, P->enlam, 0, 1.0);
}

/* Poisson by multiplication for many draws: as perturb_mt_poisson_p with
 * the position in a register and W products at a time without branches
 * (the count of those above exp(-lam); a chain longer than W goes on one
 * product at a time from the W-th). The cost is the chain of dependent
 * products from a start known only when the previous draw is counted; W
 * trades products computed past the end of short chains against
 * mispredicted branches on long ones, so it follows the largest rate:
 * 10 from 8, 8 from 6, 6 from 4, else 4 (measured on Kodak crops at
 * shot_noise's severities 3-5; 1 and 2 go mostly to PTRS). */
static inline __attribute__((always_inline)) void pois_fill_w(perturb_mt *s, const perturb_poisson *table,
                                                              const uint8_t *idx, int64_t *out, size_t n, const int W) {
    int pos = s->pos;
    const double *dbl = s->dbl;
    for (size_t i = 0; i < n; i++) {
        const perturb_poisson *P = &table[idx[i]];
        if (__builtin_expect(P->lam >= 10 || P->lam == 0 || (pos & 1) || pos > MT_N - 2 * W, 0)) {
            s->pos = pos;
            out[i] = perturb_mt_poisson_p(s, P);
            pos = s->pos;
            continue;
        }
        const double *u = dbl + (pos >> 1), e = P->enlam;
        double p[10];
        p[0] = u[0];
        for (int m = 1; m < W; m++) p[m] = p[m - 1] * u[m];
        if (__builtin_expect(p[W - 1] > e, 0)) {
            s->pos = pos + 2 * W;
            out[i] = pois_mult_from(s, e, W, p[W - 1]);
            pos = s->pos;
            continue;
        }
        int c = 0;
        for (int m = 0; m < W - 1; m++) c += p[m] > e;
        out[i] = c;
        pos += 2 * (c + 1);
    }
    s->pos = pos;
}

void perturb_mt_poisson_fill(perturb_mt *s, const perturb_poisson *table, size_t ntable, const uint8_t *idx,
                             int64_t *out, size_t n) {
    double top = 0;
    for (size_t v = 0; v < ntable; v++)
        if (table[v].lam < 10 && table[v].lam > top) top = table[v].lam;
    if (top >= 8)
        pois_fill_w(s, table, idx, out, n, 10);
    else if (top >= 6)
        pois_fill_w(s, table, idx, out, n, 8);
    else if (top >= 4)
        pois_fill_w(s, table, idx, out, n, 6);
    else
        pois_fill_w(s, table, idx, out, n, 4);
}

/* ------------------------------------------------------------ PCG64 */
#define PCG_MULT (((unsigned __int128)0x2360ed051fc65da4ull << 64) | 0x4385df649fccf645ull)

static void pcg_step(perturb_pcg *s) { s->state = s->state * PCG_MULT + s->inc; }

/* XSL-RR: the high and low halves xored, rotated right by the top 6 bits */
static inline uint64_t pcg_output(unsigned __int128 state) {
    const uint64_t hi = (uint64_t)(state >> 64), lo = (uint64_t)state;
    const unsigned rot = (unsigned)(hi >> 58);
    const uint64_t x = hi ^ lo;
    return (x >> rot) | (x << ((64 - rot) & 63));
}

uint64_t perturb_pcg_u64(perturb_pcg *s) {
    pcg_step(s);
    return pcg_output(s->state);
}

double perturb_pcg_double(perturb_pcg *s) { return (double)(perturb_pcg_u64(s) >> 11) * (1.0 / 9007199254740992.0); }

/* four interleaved chains, each stepping four states at once (state * M^4
 * + inc (M^3 + M^2 + M + 1)): the same states as one step at a time, with
 * four independent 128-bit products in flight instead of one */
void perturb_pcg_fill53(perturb_pcg *s, uint64_t *out, size_t n) {
    size_t i = 0;
    if (n >= 8) {
        unsigned __int128 A[5], C[5]; /* k steps: state -> A[k] state + C[k] */
        A[0] = 1, C[0] = 0;
        for (int k = 1; k <= 4; k++) A[k] = A[k - 1] * PCG_MULT, C[k] = C[k - 1] * PCG_MULT + s->inc;
        unsigned __int128 st[4];
        for (int k = 0; k < 4; k++) st[k] = A[k + 1] * s->state + C[k + 1];
        for (;;) {
            for (int k = 0; k < 4; k++) out[i + k] = pcg_output(st[k]) >> 11;
            i += 4;
            if (i + 4 > n) break;
            for (int k = 0; k < 4; k++) st[k] = A[4] * st[k] + C[4];
        }
        s->state = st[3];
    }
    for (; i < n; i++) out[i] = perturb_pcg_u64(s) >> 11;
}

/* SeedSequence(seed).generate_state(4, uint64): the entropy (seed as 32-bit
 * words, least significant first) is hashed into a pool of four words, which
 * is hashed again into the output words. */
void perturb_pcg_seed(perturb_pcg *s, uint64_t seed) {
    uint32_t ent[2];
    int n = 0;
    ent[n++] = (uint32_t)seed;
    if (seed >> 32) ent[n++] = (uint32_t)(seed >> 32);
    uint32_t hc = 0x43b0d7e5u;
#define HASHMIX(v) ((v) ^= hc, hc *= 0x931e8875u, (v) *= hc, (v) ^= (v) >> 16)
    uint32_t pool[4];
    for (int i = 0; i < 4; i++) {
        uint32_t v = i < n ? ent[i] : 0u;
        HASHMIX(v);
        pool[i] = v;
    }
    for (int src = 0; src < 4; src++)
        for (int dst = 0; dst < 4; dst++)
            if (src != dst) {
                uint32_t v = pool[src];
                HASHMIX(v);
                uint32_t r = 0xca01f9ddu * pool[dst] - 0x4973f715u * v;
                pool[dst] = r ^ (r >> 16);
            }
#undef HASHMIX
    uint32_t words[8];
    uint32_t hb = 0x8b51f9ddu;
    for (int i = 0; i < 8; i++) {
        uint32_t v = pool[i % 4];
        v ^= hb;
        hb *= 0x58f38dedu;
        v *= hb;
        v ^= v >> 16;
        words[i] = v;
    }
    uint64_t w64[4];
    for (int i = 0; i < 4; i++) w64[i] = (uint64_t)words[2 * i] | (uint64_t)words[2 * i + 1] << 32;
    const unsigned __int128 initstate = ((unsigned __int128)w64[0] << 64) | w64[1];
    const unsigned __int128 initseq = ((unsigned __int128)w64[2] << 64) | w64[3];
    s->state = 0;
    s->inc = (initseq << 1) | 1u;
    pcg_step(s);
    s->state += initstate;
    pcg_step(s);
}
