/*
 * The NumPy pieces the ImageNet-C corruptions reproduce, against NumPy's own
 * values (tests/ref/imagenet_c_streams.npy, made by
 * tests/ref/gen_imagenet_c.py): np.exp as NumPy 1.24 computes it on AVX-512
 * (the Gaussian and motion-blur kernels' arguments and random ones),
 * np.sum's pairwise order, and for three seeds the first 512 draws of the
 * legacy RandomState (random_sample, normal, uniform, poisson at three
 * rates, randint) and of default_rng().random(). Every value must be equal
 * bit for bit. Needs no shared data.
 */
#include "testutil.h"
#include "../src/perturb/nprandom.h"
#include "../src/perturb/npmath.h"

#define W 512

int main(void) {
    char path[600];
    snprintf(path, sizeof path, "%s/imagenet_c_streams.npy", t_ref_dir());
    wobble_array a;
    int rc = wobble_npy_read(NULL, path, &a);
    CHECK(rc == WOBBLE_OK && a.dtype == 'd' && a.ndim == 2 && a.shape[1] == W && a.shape[0] == 3 + 3 * 8,
          "read %s", path);
    if (rc != WOBBLE_OK) return t_finish();
    const double *R = a.data;
    const double *args = R, *exps = R + W, *sums = R + 2 * W;
    int bad = 0;
    for (int i = 0; i < W; i++) bad += perturb_np_exp(args[i]) != exps[i];
    CHECK(bad == 0, "np.exp: %d of %d differ", bad, W);
    bad = 0;
    for (int n = 1; n <= W; n++) bad += perturb_np_sum(args, (size_t)n) != sums[n - 1];
    CHECK(bad == 0, "np.sum: %d of %d prefixes differ", bad, W);
    static const uint32_t seeds[3] = {0, 1, 4294967295u};
    static const char *what[8] = {"random_sample", "normal", "uniform", "poisson(0.5)", "poisson(12)", "poisson(60)",
                                  "randint(-3, 3)", "default_rng().random"};
    for (int si = 0; si < 3; si++)
        for (int f = 0; f < 8; f++) {
            const double *want = R + (size_t)(3 + 8 * si + f) * W;
            perturb_mt mt;
            perturb_mt_seed(&mt, seeds[si]);
            perturb_pcg pcg;
            perturb_pcg_seed(&pcg, seeds[si]);
            bad = 0;
            for (int i = 0; i < W; i++) {
                double v = 0;
                switch (f) {
                case 0: v = perturb_mt_double(&mt); break;
                case 1: perturb_mt_gauss_fill(&mt, &v, 1), v = 0.0 + 1.0 * v; break; /* the block path once the pending value is used */
                case 2: v = perturb_mt_uniform(&mt, -45, 45); break;
                case 3: v = (double)perturb_mt_poisson(&mt, 0.5); break;
                case 4: v = (double)perturb_mt_poisson(&mt, 12.0); break;
                case 5: v = (double)perturb_mt_poisson(&mt, 60.0); break;
                case 6: v = (double)perturb_mt_randint(&mt, -3, 3); break;
                default: v = perturb_pcg_double(&pcg); break;
                }
                bad += v != want[i];
            }
            CHECK(bad == 0, "seed %u %s: %d of %d draws differ", seeds[si], what[f], bad, W);
        }
    /* perturb_mt_gauss_fill against the same number of perturb_mt_gauss
     * calls: from fresh seeds and from states left mid-block (a pending
     * second value, positions that are not a multiple of four words),
     * counts even and odd, short and spanning many blocks; the values and
     * the draws after must agree */
    static const size_t counts[] = {1, 2, 3, 155, 312, 313, 1000, 150529};
    static const int skews[] = {0, 1, 2, 3, 5, 311};
    double *got = malloc(sizeof(double) * 150529);
    bad = 0;
    int cases = 0;
    for (size_t c = 0; c < sizeof counts / sizeof *counts && got; c++)
        for (size_t k = 0; k < sizeof skews / sizeof *skews; k++) {
            perturb_mt x, y;
            perturb_mt_seed(&x, 1234u + (uint32_t)k), perturb_mt_seed(&y, 1234u + (uint32_t)k);
            /* skew: single words move the position off a multiple of four,
             * an odd number of Gaussians leaves one pending */
            for (int j = 0; j < skews[k]; j++) (void)perturb_mt_u32(&x), (void)perturb_mt_u32(&y);
            if (k & 1) (void)perturb_mt_gauss(&x), (void)perturb_mt_gauss(&y);
            perturb_mt_gauss_fill(&x, got, counts[c]);
            for (size_t i = 0; i < counts[c]; i++) bad += perturb_mt_gauss(&y) != got[i];
            for (int j = 0; j < 8; j++) bad += perturb_mt_gauss(&x) != perturb_mt_gauss(&y);
            bad += perturb_mt_double(&x) != perturb_mt_double(&y);
            cases++;
        }
    CHECK(got && bad == 0, "perturb_mt_gauss_fill: %d values differ from perturb_mt_gauss over %d cases", bad, cases);
    free(got);
    /* perturb_pcg_fill53 against perturb_pcg_double one at a time, counts
     * below, at and above its four-chain grouping, and the draws after */
    bad = 0;
    for (size_t c = 0; c < 40; c++) {
        perturb_pcg x, y;
        perturb_pcg_seed(&x, 77 + c), perturb_pcg_seed(&y, 77 + c);
        uint64_t u[40];
        perturb_pcg_fill53(&x, u, c);
        for (size_t i = 0; i < c; i++) bad += (double)u[i] / 9007199254740992.0 != perturb_pcg_double(&y);
        for (int j = 0; j < 5; j++) bad += perturb_pcg_double(&x) != perturb_pcg_double(&y);
    }
    CHECK(bad == 0, "perturb_pcg_fill53: %d draws differ from perturb_pcg_double", bad);
    /* perturb_mt_randint_fill against perturb_mt_randint: ranges with and
     * without rejection (mask above the range), across block boundaries */
    bad = 0;
    static const int ranges[][2] = {{-1, 1}, {-2, 2}, {-3, 3}, {-4, 4}, {0, 1}, {-100, 27}};
    int8_t *r8 = malloc(2000);
    for (int c = 0; c < 6 && r8; c++) {
        perturb_mt x, y;
        perturb_mt_seed(&x, 5u + (uint32_t)c), perturb_mt_seed(&y, 5u + (uint32_t)c);
        for (int rep = 0; rep < 3; rep++) {
            const size_t cnt = 1 + 997 * (size_t)rep;
            perturb_mt_randint_fill(&x, ranges[c][0], ranges[c][1], r8, cnt);
            for (size_t i = 0; i < cnt; i++) bad += r8[i] != perturb_mt_randint(&y, ranges[c][0], ranges[c][1]);
        }
        bad += perturb_mt_u32(&x) != perturb_mt_u32(&y);
    }
    free(r8);
    CHECK(bad == 0, "perturb_mt_randint_fill: %d draws differ from perturb_mt_randint", bad);
    /* perturb_mt_uniform_fill against perturb_mt_uniform, from aligned and
     * odd positions, across blocks */
    bad = 0;
    {
        double uf[1000];
        for (int c = 0; c < 4; c++) {
            perturb_mt x, y;
            perturb_mt_seed(&x, 31u + (uint32_t)c), perturb_mt_seed(&y, 31u + (uint32_t)c);
            for (int j = 0; j < c; j++) (void)perturb_mt_u32(&x), (void)perturb_mt_u32(&y);
            for (int rep = 0; rep < 3; rep++) {
                const size_t cnt = rep == 0 ? 1 : rep == 1 ? 311 : 1000;
                perturb_mt_uniform_fill(&x, -2.5, 7.0, uf, cnt);
                for (size_t i = 0; i < cnt; i++) bad += uf[i] != perturb_mt_uniform(&y, -2.5, 7.0);
            }
            bad += perturb_mt_u32(&x) != perturb_mt_u32(&y);
        }
    }
    CHECK(bad == 0, "perturb_mt_uniform_fill: %d draws differ from perturb_mt_uniform", bad);
    /* perturb_mt_poisson_fill against perturb_mt_poisson_p one draw at a
     * time: rate tables of each chain width (largest rate 3, 5, 7, 12) and
     * with PTRS and lam = 0 mixed in (60), odd starting positions, across
     * blocks */
    bad = 0;
    int draws = 0;
    {
        static const double tops[] = {3, 5, 7, 12, 60};
        uint8_t idx[3000];
        int64_t pk[3000];
        for (int c = 0; c < 10; c++) {
            perturb_poisson tab[256];
            for (int v = 0; v < 256; v++) perturb_poisson_prepare(&tab[v], v / 255.0 * tops[c % 5]);
            for (int i = 0; i < 3000; i++) idx[i] = (uint8_t)(c < 5 ? (i * 37 + c) & 255 : (i % 5 ? 250 : i % 3 ? 0 : 131));
            perturb_mt x, y;
            perturb_mt_seed(&x, 900u + (uint32_t)c), perturb_mt_seed(&y, 900u + (uint32_t)c);
            if (c & 1) (void)perturb_mt_u32(&x), (void)perturb_mt_u32(&y);
            for (int part = 0; part < 2; part++) {
                const size_t cnt = part ? 1999 : 1001, off = part ? 1001 : 0;
                perturb_mt_poisson_fill(&x, tab, 256, idx + off, pk, cnt);
                for (size_t i = 0; i < cnt; i++) bad += pk[i] != perturb_mt_poisson_p(&y, &tab[idx[off + i]]);
                draws += (int)cnt;
            }
            bad += perturb_mt_double(&x) != perturb_mt_double(&y);
        }
    }
    CHECK(bad == 0, "perturb_mt_poisson_fill: %d of %d draws differ from perturb_mt_poisson_p", bad, draws);
    wobble_array_release(&a);
    return t_finish();
}
