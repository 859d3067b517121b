/*
 * Robustness metrics and the minimum enclosing ball.
 *  - MEB radius against brute force over all support sets (small instances)
 *    and SciPy (random embedding-like instances), tests/ref/gen_meb.py:
 *    relative error <= 1e-9, plus the optimality certificate (every point
 *    inside the returned ball).
 *  - The five properties of docs/metrics.md, property-based over random and
 *    constructed embedding sets: bounded, monotone in the level set, zero iff
 *    nothing moved, 1 at maximal divergence (and the counter-example for
 *    R_cos / R_euc), rotation invariance; and R_euc = sqrt(R_cos).
 */
#include "testutil.h"

#include <math.h>

static uint64_t rng_state = 88172645463325252ull;
static double urand(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (rng_state >> 11) * (1.0 / 9007199254740992.0);
}
static double nrand(void) {
    double u = urand() + 1e-300, v = urand();
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

static void test_meb_goldens(wobble_ctx *ctx) {
    char p[1024];
    snprintf(p, sizeof p, "%s/meb/cases.tsv", t_ref_dir());
    FILE *f = fopen(p, "r");
    CHECK(f != NULL, "open %s", p);
    if (!f) return;
    char line[512];
    int cases = 0;
    double worst = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        char name[128], method[64];
        int n, d;
        double ref;
        if (sscanf(line, "%127s %d %d %lf %63s", name, &n, &d, &ref, method) != 5) continue;
        snprintf(p, sizeof p, "%s/meb/%s.npy", t_ref_dir(), name);
        wobble_array a;
        if (wobble_npy_read(ctx, p, &a) != WOBBLE_OK) {
            CHECK(0, "%s", wobble_last_error(ctx));
            continue;
        }
        CHECK(a.dtype == 'd' && a.shape[0] == n && a.shape[1] == d, "%s shape", name);
        double r = -1, *c = malloc(sizeof(double) * d);
        wobble_meb_info info;
        CHECK(wobble_meb_f64(ctx, a.data, n, d, &r, c, &info) == WOBBLE_OK, "%s", wobble_last_error(ctx));
        double rel = fabs(r - ref) / (ref > 0 ? ref : 1);
        CHECK(rel <= 1e-9, "%s (%s): radius %.17g vs %.17g, relative error %.3g", name, method, r, ref, rel);
        if (rel > worst) worst = rel;
        const double *P = a.data;
        for (int i = 0; i < n; i++) {
            double s = 0;
            for (int k = 0; k < d; k++) s += (P[(size_t)i * d + k] - c[k]) * (P[(size_t)i * d + k] - c[k]);
            CHECK(sqrt(s) <= r * (1 + 1e-12) + 1e-300, "%s: point %d outside the ball", name, i);
        }
        free(c);
        wobble_array_release(&a);
        cases++;
    }
    fclose(f);
    CHECK(cases >= 30, "%d MEB cases", cases);
    printf("MEB: %d reference cases, worst relative radius error %.2e\n", cases, worst);
}

/* random unit vectors clustered around a base direction */
static void cluster(float *E, int n, int d, double spread) {
    double *base = malloc(sizeof(double) * d);
    for (int k = 0; k < d; k++) base[k] = nrand();
    for (int i = 0; i < n; i++)
        for (int k = 0; k < d; k++) E[(size_t)i * d + k] = (float)(base[k] + spread * nrand());
    free(base);
}

static void metrics(wobble_ctx *ctx, const float *E, int K, int d, wobble_robustness *r, double *lc, double *le) {
    int rc = wobble_robustness_compute(ctx, E, E + d, K, d, lc, le, r);
    CHECK(rc == WOBBLE_OK, "%s", wobble_last_error(ctx));
}

static void test_properties(wobble_ctx *ctx) {
    const int D = 24;
    float *E = malloc(sizeof(float) * 64 * D), *R = malloc(sizeof(float) * 64 * D);
    double lc[64], le[64];
    for (int trial = 0; trial < 300; trial++) {
        const int K = 1 + (int)(urand() * 40);
        const int d = 2 + (int)(urand() * (D - 2));
        const double spread = trial % 3 == 0 ? 5.0 : pow(10, -3 * urand());
        cluster(E, K + 1, d, spread);
        wobble_robustness r, r1;
        metrics(ctx, E, K, d, &r, lc, le);
        /* 1. bounded */
        CHECK(r.cos_max >= 0 && r.cos_max <= 1 && r.euc_max >= 0 && r.euc_max <= 1 && r.div_radius >= 0 &&
                  r.div_radius <= 1,
              "bounded: %g %g %g", r.cos_max, r.euc_max, r.div_radius);
        /* definition: R_cos against (1 - cos) / 2 computed here from the raw vectors */
        {
            double mx = 0;
            for (int k = 1; k <= K; k++) {
                double dot = 0, na = 0, nb = 0;
                for (int j = 0; j < d; j++) {
                    dot += (double)E[j] * E[(size_t)k * d + j];
                    na += (double)E[j] * E[j];
                    nb += (double)E[(size_t)k * d + j] * E[(size_t)k * d + j];
                }
                double c = (1 - dot / sqrt(na * nb)) / 2;
                CHECK(fabs(lc[k - 1] - c) <= 1e-12, "level %d: %.15g vs (1-cos)/2 %.15g", k - 1, lc[k - 1], c);
                mx = c > mx ? c : mx;
            }
            CHECK(fabs(r.cos_max - mx) <= 1e-12, "R_cos %.15g vs %.15g", r.cos_max, mx);
        }
        /* identity R_euc = sqrt(R_cos), per level too */
        CHECK(fabs(r.euc_max - sqrt(r.cos_max)) <= 1e-7, "R_euc %.12g vs sqrt(R_cos) %.12g", r.euc_max, sqrt(r.cos_max));
        for (int k = 0; k < K; k++) CHECK(fabs(le[k] - sqrt(lc[k])) <= 1e-7, "level %d identity", k);
        /* the ball of a pair has radius u_k, so R_div >= R_euc */
        CHECK(r.div_radius >= r.euc_max * (1 - 1e-9), "R_div %.12g >= R_euc %.12g", r.div_radius, r.euc_max);
        /* 2. monotone: a subset of the levels gives no larger values */
        const int K1 = 1 + (int)(urand() * K);
        metrics(ctx, E, K1, d, &r1, NULL, NULL);
        CHECK(r1.cos_max <= r.cos_max && r1.euc_max <= r.euc_max && r1.div_radius <= r.div_radius * (1 + 1e-9) + 1e-15,
              "monotone K1=%d K=%d: %g<=%g %g<=%g %g<=%g", K1, K, r1.cos_max, r.cos_max, r1.euc_max, r.euc_max,
              r1.div_radius, r.div_radius);
        /* 5. rotation invariance: random orthogonal Q by Gram-Schmidt */
        double *Q = malloc(sizeof(double) * d * d);
        for (int i = 0; i < d; i++) {
            for (int k = 0; k < d; k++) Q[i * d + k] = nrand();
            for (int j = 0; j < i; j++) {
                double s = 0;
                for (int k = 0; k < d; k++) s += Q[i * d + k] * Q[j * d + k];
                for (int k = 0; k < d; k++) Q[i * d + k] -= s * Q[j * d + k];
            }
            double s = 0;
            for (int k = 0; k < d; k++) s += Q[i * d + k] * Q[i * d + k];
            for (int k = 0; k < d; k++) Q[i * d + k] /= sqrt(s);
        }
        for (int i = 0; i <= K; i++)
            for (int k = 0; k < d; k++) {
                double s = 0;
                for (int j = 0; j < d; j++) s += Q[k * d + j] * E[(size_t)i * d + j];
                R[(size_t)i * d + k] = (float)s;
            }
        free(Q);
        wobble_robustness rr;
        metrics(ctx, R, K, d, &rr, NULL, NULL);
        /* float32 storage of rotated vectors: compare to float precision */
        CHECK(fabs(rr.cos_max - r.cos_max) <= 2e-6 && fabs(rr.euc_max - r.euc_max) <= 2e-6 * (1 + 1 / (r.euc_max + 1e-3)) &&
                  fabs(rr.div_radius - r.div_radius) <= 2e-6 * (1 + 1 / (r.div_radius + 1e-3)),
              "rotation: %g/%g %g/%g %g/%g", rr.cos_max, r.cos_max, rr.euc_max, r.euc_max, rr.div_radius, r.div_radius);
        /* 3. optimal robustness: R = 0 iff every embedding equals the clean one */
        for (int i = 1; i <= K; i++)
            for (int k = 0; k < d; k++) E[(size_t)i * d + k] = E[k] * (float)(1 + i); /* same direction, other norm */
        wobble_robustness z;
        metrics(ctx, E, K, d, &z, NULL, NULL);
        CHECK(z.cos_max <= 1e-15 && z.euc_max <= 1e-7 && z.div_radius <= 1e-7, "zero: %g %g %g", z.cos_max, z.euc_max,
              z.div_radius);
        const int moved = 1 + (int)(urand() * K);
        E[(size_t)moved * d] += 1e-3f * (fabsf(E[(size_t)moved * d]) + 1);
        metrics(ctx, E, K, d, &z, NULL, NULL);
        CHECK(z.cos_max > 0 && z.euc_max > 0 && z.div_radius > 0, "one moved embedding gives R > 0: %g %g %g",
              z.cos_max, z.euc_max, z.div_radius);
    }
    /* exact zero for bit-identical embeddings */
    {
        float v[3 * 8];
        for (int i = 0; i < 24; i++) v[i] = (float)((i % 8) + 1);
        wobble_robustness z;
        metrics(ctx, v, 2, 8, &z, NULL, NULL);
        CHECK(z.cos_max == 0 && z.euc_max == 0 && z.div_radius == 0, "identical: exactly 0");
    }
    /* 4. worst case: an antipodal pair gives R = 1 for all three */
    {
        float v[2 * 5] = {0.3f, -1, 2, 0.5f, 1, -0.3f, 1, -2, -0.5f, -1};
        wobble_robustness w;
        metrics(ctx, v, 1, 5, &w, NULL, NULL);
        CHECK(fabs(w.cos_max - 1) < 1e-12 && fabs(w.euc_max - 1) < 1e-7 && fabs(w.div_radius - 1) < 1e-7,
              "antipodal: %g %g %g", w.cos_max, w.euc_max, w.div_radius);
    }
    /* R_div = 1 exactly when the origin is in the hull: clean at 0 degrees,
     * perturbed at 120 and 240 degrees. R_div = 1, but R_cos = 0.75 and
     * R_euc = 0.866: the counter-example to property 4 for R_cos and R_euc. */
    {
        float v[3 * 2] = {1, 0, -0.5f, 0.8660254037844386f, -0.5f, -0.8660254037844386f};
        wobble_robustness w;
        metrics(ctx, v, 2, 2, &w, NULL, NULL);
        CHECK(fabs(w.div_radius - 1) < 1e-7, "triangle: R_div %.9g == 1", w.div_radius);
        CHECK(fabs(w.cos_max - 0.75) < 1e-7 && fabs(w.euc_max - sqrt(0.75)) < 1e-7,
              "triangle: R_cos %.9g = 0.75 and R_euc %.9g = 0.866 stay below 1", w.cos_max, w.euc_max);
        /* move one point so the origin leaves the hull: R_div drops below 1 */
        v[2] = 0.2f, v[3] = 0.98f, v[4] = 0.2f, v[5] = -0.98f;
        metrics(ctx, v, 2, 2, &w, NULL, NULL);
        CHECK(w.div_radius < 1 - 1e-3, "origin outside the hull: R_div %.9g < 1", w.div_radius);
    }
    /* bad input */
    {
        float v[2 * 3] = {1, 2, 3, 0, 0, 0};
        wobble_robustness w;
        CHECK(wobble_robustness_compute(ctx, v, v + 3, 1, 3, NULL, NULL, &w) == WOBBLE_EINVAL, "zero embedding");
        CHECK(!strcmp(wobble_last_error(ctx), "robustness: perturbed embedding 0 has zero norm"), "message names index 0: %s",
              wobble_last_error(ctx));
        v[4] = NAN;
        CHECK(wobble_robustness_compute(ctx, v, v + 3, 1, 3, NULL, NULL, &w) == WOBBLE_EINVAL, "NaN embedding");
        CHECK(!strcmp(wobble_last_error(ctx), "robustness: perturbed embedding 0 has a non-finite norm"), "%s",
              wobble_last_error(ctx));
        float z[3] = {0, 0, 0};
        CHECK(wobble_robustness_compute(ctx, z, v, 1, 3, NULL, NULL, &w) == WOBBLE_EINVAL &&
                  !strcmp(wobble_last_error(ctx), "robustness: clean embedding has zero norm"),
              "%s", wobble_last_error(ctx));
        /* nothing is written on failure */
        float q[3 * 3] = {1, 2, 3, 1, 2, 2.5f, 0, 0, 0};
        double lc[2] = {-7, -7}, le[2] = {-7, -7};
        memset(&w, 0x5A, sizeof w);
        wobble_robustness w0 = w;
        CHECK(wobble_robustness_compute(ctx, q, q + 3, 2, 3, lc, le, &w) == WOBBLE_EINVAL &&
                  strstr(wobble_last_error(ctx), "perturbed embedding 1 has zero norm"),
              "zero second embedding: %s", wobble_last_error(ctx));
        CHECK(lc[0] == -7 && le[0] == -7 && !memcmp(&w, &w0, sizeof w), "a failed call writes no output");
    }
    free(E);
    free(R);
}

static void test_stats(void) {
    double v[100];
    for (int i = 0; i < 100; i++) v[99 - i] = i + 1;
    wobble_stats s;
    CHECK(wobble_stats_compute(v, 100, &s) == WOBBLE_OK, "stats");
    /* NumPy: mean 50.5, median 50.5, percentile(90) 90.1, percentile(99) 99.01 */
    CHECK(fabs(s.mean - 50.5) < 1e-12 && fabs(s.median - 50.5) < 1e-12 && fabs(s.p90 - 90.1) < 1e-9 &&
              fabs(s.p99 - 99.01) < 1e-9 && fabs(s.p10 - 10.9) < 1e-9 && s.min == 1 && s.max == 100,
          "stats %g %g %g %g", s.mean, s.median, s.p90, s.p99);
    double one = 3;
    CHECK(wobble_stats_compute(&one, 1, &s) == WOBBLE_OK && s.p99 == 3 && s.median == 3, "single value");
    CHECK(wobble_stats_compute(v, 0, &s) != WOBBLE_OK, "empty");
}

int main(void) {
    wobble_ctx *ctx = NULL;
    wobble_ctx_create(NULL, &ctx);
    test_meb_goldens(ctx);
    test_properties(ctx);
    test_stats();
    wobble_ctx_free(ctx);
    return t_finish();
}
