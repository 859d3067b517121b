/* Registry, domains, identities, thread invariance and gaussian_noise
 * statistics. */
#include "testutil.h"

#include <math.h>

static wobble_image *random_image(wobble_ctx *ctx, int w, int h, unsigned seed) {
    wobble_image *img = NULL;
    wobble_image_create(ctx, w, h, &img);
    srand(seed);
    uint8_t *d = wobble_image_data_mut(img);
    /* smooth content plus texture, so every op changes something */
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                d[((size_t)y * w + x) * 3 + c] = (uint8_t)((x * (c + 1) + y * 2 + (rand() % 40)) % 256);
    return img;
}

static wobble_image *flat_image(wobble_ctx *ctx, int w, int h, uint8_t v) {
    wobble_image *img = NULL;
    wobble_image_create(ctx, w, h, &img);
    memset(wobble_image_data_mut(img), v, (size_t)w * h * 3);
    return img;
}

static void test_registry(void) {
    const char *names[] = {"jpeg", "brightness", "contrast", "saturation", "sharpness",
                           "hue", "gaussian_blur", "gaussian_noise", "rescale"};
    int editing = 0;
    for (int i = 0; i < wobble_op_count(); i++) editing += wobble_op_at(i)->suite == 0;
    CHECK(editing == 9, "nine editing operations, got %d", editing);
    for (int i = 0; i < 9; i++) {
        const wobble_op_info *op = wobble_op_find(names[i]);
        CHECK(op != NULL, "%s registered", names[i]);
        if (!op) continue;
        CHECK(op->grid_len >= 5, "%s: default grid has %d levels", op->name, op->grid_len);
        CHECK(op->description && *op->description && op->reference && *op->reference, "%s documented", op->name);
        for (int j = 0; j < op->grid_len; j++)
            CHECK(wobble_op_check_level(NULL, op, op->grid[j]) == WOBBLE_OK, "%s grid level %g in domain", op->name,
                  op->grid[j]);
        if (op->has_identity)
            CHECK(wobble_op_check_level(NULL, op, op->identity) == WOBBLE_OK, "%s identity in domain", op->name);
    }
    CHECK(wobble_op_find("nope") == NULL && wobble_op_find(NULL) == NULL, "unknown op");
    CHECK(wobble_op_at(-1) == NULL && wobble_op_at(wobble_op_count()) == NULL, "index bounds");
    CHECK(!wobble_op_find("jpeg")->has_identity, "jpeg has no identity level");
    /* the ImageNet-C corruptions: imagecorruptions' names, the first 15
     * standard and the last 4 validation; severity 1-5, no identity */
    static const char *ic[19] = {"gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
                                 "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
                                 "elastic_transform", "pixelate", "jpeg_compression", "speckle_noise",
                                 "gaussian_blur", "spatter", "saturate"};
    int nic = 0, nstd = 0;
    for (int i = 0; i < wobble_op_count(); i++) nic += wobble_op_at(i)->suite != 0, nstd += wobble_op_at(i)->suite == 1;
    CHECK(nic == 19 && nstd == 15, "19 ImageNet-C corruptions, 15 standard: %d, %d", nic, nstd);
    for (int i = 0; i < wobble_op_count(); i++) {
        const wobble_op_info *op = wobble_op_at(i);
        if (!op->suite) continue;
        int k = -1;
        for (int j = 0; j < 19; j++)
            if (!strncmp(op->name, "imagenet_c.", 11) && !strcmp(op->name + 11, ic[j])) k = j;
        CHECK(k >= 0, "%s: an imagecorruptions name", op->name);
        CHECK(op->suite == (k < 15 ? 1 : 2), "%s: suite %d", op->name, op->suite);
        CHECK(op->min == 1 && op->max == 5 && op->integer && !op->has_identity && op->grid_len == 5,
              "%s: severity 1-5", op->name);
        CHECK(op->constants && strchr(op->constants, ':'), "%s: constants listed", op->name);
    }
}

static void expect_domain_error(wobble_ctx *ctx, const wobble_image *img, const char *op, double level,
                                const char *needle) {
    wobble_image *out = (wobble_image *)1;
    int rc = wobble_perturb(ctx, op, img, level, NULL, &out);
    CHECK(rc == WOBBLE_EDOMAIN, "%s %g: status %d", op, level, rc);
    CHECK(out == NULL, "%s %g: no output", op, level);
    const char *m = wobble_last_error(ctx);
    CHECK(strstr(m, op) != NULL && strstr(m, "outside the domain") != NULL, "%s: message '%s'", op, m);
    CHECK(strstr(m, needle) != NULL, "%s: message '%s' should contain '%s'", op, m, needle);
}

static void test_domains(wobble_ctx *ctx, const wobble_image *img) {
    expect_domain_error(ctx, img, "jpeg", 0, "[1, 100]");
    expect_domain_error(ctx, img, "jpeg", 101, "101");
    expect_domain_error(ctx, img, "jpeg", 50.5, "integer");
    expect_domain_error(ctx, img, "brightness", -0.1, "[0, inf)");
    expect_domain_error(ctx, img, "contrast", INFINITY, "inf");
    expect_domain_error(ctx, img, "saturation", NAN, "nan");
    expect_domain_error(ctx, img, "sharpness", -1, "-1");
    expect_domain_error(ctx, img, "hue", 0.51, "[-0.5, 0.5]");
    expect_domain_error(ctx, img, "hue", -0.6, "-0.6");
    expect_domain_error(ctx, img, "gaussian_blur", -0.5, "sigma");
    expect_domain_error(ctx, img, "gaussian_noise", 1.5, "[0, 1]");
    expect_domain_error(ctx, img, "rescale", 0, "(0, 1]");
    expect_domain_error(ctx, img, "rescale", 1.01, "(0, 1]");
    wobble_image *out = NULL;
    CHECK(wobble_perturb(ctx, "sepia", img, 1, NULL, &out) == WOBBLE_ENOTFOUND, "unknown op");
    CHECK(strstr(wobble_last_error(ctx), "'sepia'") && strstr(wobble_last_error(ctx), "gaussian_blur"),
          "message lists known ops: %s", wobble_last_error(ctx));
    CHECK(wobble_perturb(ctx, "jpeg", NULL, 50, NULL, &out) == WOBBLE_EINVAL, "NULL image");
}

static void test_identity(wobble_ctx *ctx, const wobble_image *img) {
    for (int i = 0; i < wobble_op_count(); i++) {
        const wobble_op_info *op = wobble_op_at(i);
        if (!op->has_identity) continue;
        wobble_image *out = NULL;
        CHECK(wobble_perturb(ctx, op->name, img, op->identity, NULL, &out) == WOBBLE_OK, "%s identity", op->name);
        CHECK(out && t_same(out, img), "%s at %g returns an exact copy", op->name, op->identity);
        CHECK(out && wobble_image_data(out) != wobble_image_data(img), "%s: a new image", op->name);
        wobble_image_free(out);
        /* the strongest grid level must change something on a textured image */
        CHECK(wobble_perturb(ctx, op->name, img, op->grid[op->grid_len - 1], NULL, &out) == WOBBLE_OK, "run");
        CHECK(out && !t_same(out, img), "%s at its strongest level changes the image", op->name);
        wobble_image_free(out);
    }
}

/* Every op gives identical pixels whatever the thread count. */
static void test_threads(const wobble_image *src) {
    wobble_ctx_params p = wobble_ctx_default_params();
    wobble_ctx *c1 = NULL, *c3 = NULL;
    p.threads = 1;
    wobble_ctx_create(&p, &c1);
    p.threads = 3;
    wobble_ctx_create(&p, &c3);
    wobble_perturb_params pp = wobble_perturb_default_params();
    pp.seed = 5;
    pp.image_id = 11;
    for (int i = 0; i < wobble_op_count(); i++) {
        const wobble_op_info *op = wobble_op_at(i);
        for (int j = 0; j < op->grid_len; j++) {
            wobble_image *a = NULL, *b = NULL;
            wobble_perturb(c1, op->name, src, op->grid[j], &pp, &a);
            wobble_perturb(c3, op->name, src, op->grid[j], &pp, &b);
            CHECK(a && b && t_same(a, b), "%s %g: 1 thread == 3 threads", op->name, op->grid[j]);
            wobble_image_free(a);
            wobble_image_free(b);
        }
    }
    wobble_ctx_free(c1);
    wobble_ctx_free(c3);
}

static void test_noise(wobble_ctx *ctx) {
    const int W = 512, H = 512;
    const size_t N = (size_t)W * H * 3;
    wobble_perturb_params pp = wobble_perturb_default_params();
    pp.seed = 42;
    pp.image_id = 7;

    /* mid-gray: no clipping, so out - in = round(255 * k * z) */
    const double k = 0.05;
    wobble_image *gray = flat_image(ctx, W, H, 128), *out = NULL;
    CHECK(wobble_perturb(ctx, "gaussian_noise", gray, k, &pp, &out) == WOBBLE_OK, "noise");
    double s = 0, s2 = 0, rg = 0, within1 = 0;
    const uint8_t *d = wobble_image_data(out);
    const double sig = 255 * k;
    for (size_t i = 0; i < N; i++) {
        double e = (double)d[i] - 128;
        s += e;
        s2 += e * e;
        if (fabs(e) <= sig) within1++;
        if (i % 3 == 0) rg += e * ((double)d[i + 1] - 128);
    }
    double mean = s / N, var = s2 / N - mean * mean, sd = sqrt(var);
    /* rounding adds variance 1/12 */
    double expect_sd = sqrt(sig * sig + 1.0 / 12);
    CHECK(fabs(mean) < 5 * expect_sd / sqrt((double)N), "mean %g ~ 0", mean);
    CHECK(fabs(sd / expect_sd - 1) < 0.01, "sd %g ~ %g", sd, expect_sd);
    double corr = rg / (N / 3) / var;
    CHECK(fabs(corr) < 0.01, "R and G noise uncorrelated: %g", corr);
    /* P(|round(sig z)| <= sig) for sig = 12.75: |z| <= 12.5/12.75 ... 13.5/12.75 region */
    double frac = within1 / N;
    CHECK(frac > 0.66 && frac < 0.72, "fraction within one sigma %g", frac);
    wobble_image_free(out);
    out = NULL;

    /* clipping at both ends: black stays >= 0 and half the samples clip */
    wobble_image *black = flat_image(ctx, W, H, 0), *white = flat_image(ctx, W, H, 255);
    const double k2 = 0.1;
    CHECK(wobble_perturb(ctx, "gaussian_noise", black, k2, &pp, &out) == WOBBLE_OK, "noise black");
    size_t zeros = 0;
    for (size_t i = 0; i < N; i++) zeros += wobble_image_data(out)[i] == 0;
    /* P(255 * k2 * z < 0.5) = Phi(0.5 / 25.5) = 0.50782 */
    CHECK(fabs((double)zeros / N - 0.50782) < 0.005, "black: %g clipped to 0", (double)zeros / N);
    wobble_image_free(out);
    CHECK(wobble_perturb(ctx, "gaussian_noise", white, k2, &pp, &out) == WOBBLE_OK, "noise white");
    size_t full = 0;
    for (size_t i = 0; i < N; i++) full += wobble_image_data(out)[i] == 255;
    CHECK(fabs((double)full / N - 0.50782) < 0.005, "white: %g clipped to 255", (double)full / N);
    wobble_image_free(out);
    /* k = 1 on gray: most samples saturate, none escapes [0,255] (by type), both ends hit */
    CHECK(wobble_perturb(ctx, "gaussian_noise", gray, 1.0, &pp, &out) == WOBBLE_OK, "noise k=1");
    size_t lo = 0, hi = 0;
    for (size_t i = 0; i < N; i++) {
        lo += wobble_image_data(out)[i] == 0;
        hi += wobble_image_data(out)[i] == 255;
    }
    /* P(z < -0.502) = 0.3078 */
    CHECK(fabs((double)lo / N - 0.3078) < 0.01 && fabs((double)hi / N - 0.3078) < 0.01, "k=1 clips %g / %g",
          (double)lo / N, (double)hi / N);
    wobble_image_free(out);

    /* reproducible from (seed, image id, level); any change gives new noise */
    wobble_image *a = NULL, *b = NULL;
    wobble_perturb(ctx, "gaussian_noise", gray, 0.02, &pp, &a);
    wobble_perturb(ctx, "gaussian_noise", gray, 0.02, &pp, &b);
    CHECK(t_same(a, b), "same (seed, id, level) -> same noise");
    wobble_image_free(b);
    wobble_perturb_params q = pp;
    q.seed = 43;
    wobble_perturb(ctx, "gaussian_noise", gray, 0.02, &q, &b);
    CHECK(!t_same(a, b), "seed changes the noise");
    wobble_image_free(b);
    q = pp;
    q.image_id = 8;
    wobble_perturb(ctx, "gaussian_noise", gray, 0.02, &q, &b);
    CHECK(!t_same(a, b), "image id changes the noise");
    wobble_image_free(b);
    wobble_perturb(ctx, "gaussian_noise", gray, 0.0200001, &pp, &b);
    CHECK(!t_same(a, b), "level changes the noise");
    wobble_image_free(b);
    wobble_image_free(a);
    wobble_image_free(gray);
    wobble_image_free(black);
    wobble_image_free(white);
}

int main(void) {
    wobble_ctx *ctx = NULL;
    wobble_ctx_create(NULL, &ctx);
    wobble_image *img = random_image(ctx, 97, 61, 3);
    test_registry();
    test_domains(ctx, img);
    test_identity(ctx, img);
    wobble_image *big = random_image(ctx, 301, 203, 4);
    test_threads(big);
    test_noise(ctx);
    wobble_image_free(big);
    wobble_image_free(img);
    wobble_ctx_free(ctx);
    return t_finish();
}
