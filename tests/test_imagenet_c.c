/*
 * The ImageNet-C corruptions against imagecorruptions 1.1.2 itself
 * (tests/ref/imagenet_c_goldens.tsv, made by tests/ref/gen_imagenet_c.py on
 * Kodak crops of four sizes): every corruption, severity and crop must give
 * the reference's exact pixels (CRC-32 and sum) under the seed contract
 * (exact_seed = 1). Then the properties the contract does not cover:
 * derived seeds differ per image and level and ignore the thread count, the
 * size and severity checks, and the seed range. Skipped (77) without Kodak.
 */
#include "testutil.h"

#include <math.h>
#include <sys/stat.h>

static wobble_image *crop(wobble_ctx *ctx, const char *spec) {
    char file[64];
    int x, y, w, h;
    if (sscanf(spec, "%63[^:]:%d,%d,%dx%d", file, &x, &y, &w, &h) != 5) return NULL;
    char path[700];
    snprintf(path, sizeof path, "%s/data/kodak/%s", t_shared_dir(), file);
    wobble_image *full = NULL, *out = NULL;
    if (wobble_image_read(ctx, path, &full) != WOBBLE_OK) return NULL;
    const int fw = wobble_image_width(full);
    if (x + w <= fw && y + h <= wobble_image_height(full) && wobble_image_create(ctx, w, h, &out) == WOBBLE_OK)
        for (int r = 0; r < h; r++)
            memcpy(wobble_image_data_mut(out) + (size_t)r * w * 3,
                   wobble_image_data(full) + ((size_t)(y + r) * fw + x) * 3, (size_t)w * 3);
    wobble_image_free(full);
    return out;
}

static unsigned long long sum(const wobble_image *img) {
    unsigned long long s = 0;
    const size_t n = (size_t)wobble_image_width(img) * wobble_image_height(img) * 3u;
    for (size_t i = 0; i < n; i++) s += wobble_image_data(img)[i];
    return s;
}

int main(void) {
    if (t_shared_missing("data/kodak")) return 77;
    char path[600];
    wobble_ctx *ctx = NULL;
    wobble_ctx_create(NULL, &ctx);
    snprintf(path, sizeof path, "%s/imagenet_c_goldens.tsv", t_ref_dir());
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "cannot open %s", path);
    if (!f) return t_finish();
    char line[512], cur[128] = "";
    wobble_image *in = NULL;
    int rows = 0, exact = 0;
    int per_op[64] = {0};
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        char spec[128], name[64], op[96];
        int sev;
        unsigned long long seed, want_sum;
        unsigned long want_crc;
        if (sscanf(line, "%127s %63s %d %llu %lx %llu", spec, name, &sev, &seed, &want_crc, &want_sum) != 6) continue;
        if (strcmp(spec, cur)) {
            wobble_image_free(in);
            in = crop(ctx, spec);
            CHECK(in != NULL, "cannot crop %s", spec);
            if (!in) break;
            snprintf(cur, sizeof cur, "%s", spec);
        }
        snprintf(op, sizeof op, "imagenet_c.%s", name);
        wobble_perturb_params pp = wobble_perturb_default_params();
        pp.seed = seed;
        pp.exact_seed = 1;
        wobble_image *out = NULL;
        int rc = wobble_perturb(ctx, op, in, sev, &pp, &out);
        CHECK(rc == WOBBLE_OK, "%s %s %d: %s", spec, op, sev, wobble_last_error(ctx));
        rows++;
        if (rc != WOBBLE_OK) continue;
        const unsigned long crc = t_crc(out);
        const unsigned long long s = sum(out);
        CHECK(crc == want_crc && s == want_sum, "%s %s severity %d seed %llu: crc %08lx sum %llu, reference %08lx %llu",
              spec, op, sev, seed, crc, s, want_crc, want_sum);
        if (crc == want_crc) exact++;
        const wobble_op_info *oi = wobble_op_find(op);
        for (int i = 0; i < wobble_op_count() && i < 64; i++)
            if (wobble_op_at(i) == oi) per_op[i]++;
        wobble_image_free(out);
    }
    fclose(f);
    printf("%d of %d reference outputs reproduced bit for bit\n", exact, rows);
    CHECK(rows >= 200, "only %d golden rows", rows);
    /* every registered corruption has goldens */
    for (int i = 0; i < wobble_op_count() && i < 64; i++)
        if (wobble_op_at(i)->suite) CHECK(per_op[i] >= 20, "%s: %d goldens", wobble_op_at(i)->name, per_op[i]);

    /* derived seeds (exact_seed 0, as eval runs): each image and severity
     * draws its own stream; the same call repeats exactly at any thread count */
    if (in) {
        wobble_perturb_params pp = wobble_perturb_default_params();
        pp.seed = 7;
        pp.image_id = 1;
        wobble_image *a = NULL, *b = NULL, *c = NULL, *d = NULL;
        wobble_perturb(ctx, "imagenet_c.gaussian_noise", in, 3, &pp, &a);
        pp.image_id = 2;
        wobble_perturb(ctx, "imagenet_c.gaussian_noise", in, 3, &pp, &b);
        wobble_ctx_params cp = wobble_ctx_default_params();
        cp.threads = 1;
        wobble_ctx *one = NULL;
        wobble_ctx_create(&cp, &one);
        pp.image_id = 1;
        wobble_perturb(one, "imagenet_c.gaussian_noise", in, 3, &pp, &c);
        wobble_perturb(one, "imagenet_c.fog", in, 3, &pp, &d);
        CHECK(a && b && c && d, "derived-seed runs failed");
        if (a && b && c) {
            CHECK(!t_same(a, b), "two image ids drew the same noise");
            CHECK(t_same(a, c), "the thread count changed the noise");
        }
        wobble_image_free(a), wobble_image_free(b), wobble_image_free(c), wobble_image_free(d);
        wobble_ctx_free(one);

        /* the seed contract's range: np.random.seed takes 32 bits */
        pp = wobble_perturb_default_params();
        pp.exact_seed = 1;
        pp.seed = 1ull << 32;
        int rc = wobble_perturb(ctx, "imagenet_c.shot_noise", in, 1, &pp, &a);
        CHECK(rc == WOBBLE_EDOMAIN && a == NULL && strstr(wobble_last_error(ctx), "4294967295"), "seed 2^32: %d %s",
              rc, wobble_last_error(ctx));
        pp.seed = 0xffffffffull;
        rc = wobble_perturb(ctx, "imagenet_c.shot_noise", in, 1, &pp, &a);
        CHECK(rc == WOBBLE_OK, "seed 2^32-1: %s", wobble_last_error(ctx));
        wobble_image_free(a);
        /* severities: integers 1-5 only */
        const double bad[] = {0, 6, 2.5, -1, NAN};
        for (int i = 0; i < 5; i++) {
            wobble_image *o = NULL;
            rc = wobble_perturb(ctx, "imagenet_c.contrast", in, bad[i], &pp, &o);
            CHECK(rc == WOBBLE_EDOMAIN && o == NULL && strstr(wobble_last_error(ctx), "severity"),
                  "severity %g: %d %s", bad[i], rc, wobble_last_error(ctx));
        }
    }
    /* odd shapes: every corruption and severity on the smallest, very wide,
     * very tall and flat (constant) images runs, stays in bounds (the
     * sanitizer build checks) and repeats exactly */
    {
        static const int shapes[][2] = {{32, 32}, {33, 200}, {300, 32}, {45, 37}};
        for (int sh = 0; sh < 4; sh++)
            for (int flat = 0; flat < 2; flat++) {
                const int w = shapes[sh][0], h = shapes[sh][1];
                wobble_image *src = NULL;
                wobble_image_create(ctx, w, h, &src);
                uint8_t *d = wobble_image_data_mut(src);
                for (int i = 0; i < w * h * 3; i++) d[i] = flat ? 128 : (uint8_t)((i * 2654435761u) >> 24);
                for (int o = 0; o < wobble_op_count(); o++) {
                    const wobble_op_info *oi = wobble_op_at(o);
                    if (!oi->suite) continue;
                    for (int sev = 1; sev <= 5; sev++) {
                        wobble_perturb_params pp = wobble_perturb_default_params();
                        pp.seed = (uint64_t)(sev + 7 * sh);
                        pp.exact_seed = 1;
                        wobble_image *a = NULL, *b = NULL;
                        const int ra = wobble_perturb(ctx, oi->name, src, sev, &pp, &a);
                        const int rb = wobble_perturb(ctx, oi->name, src, sev, &pp, &b);
                        CHECK(ra == WOBBLE_OK && rb == WOBBLE_OK && t_same(a, b), "%s %d on %dx%d%s: %s", oi->name, sev,
                              w, h, flat ? " flat" : "", wobble_last_error(ctx));
                        wobble_image_free(a), wobble_image_free(b);
                    }
                }
                wobble_image_free(src);
            }
    }

    /* the AVX-512 paths (taken on CPUs that have it) against the scalar ones
     * (WOBBLE_PERTURB_SCALAR=1), every corruption and severity, on colours
     * the goldens' photos have few of: quadrants (x, y, mix), (x, x, y),
     * (x, y, x), (y, x, x) with x, y stepping by 2 (ties of two channels,
     * grays, both extremes) */
    {
        wobble_image *src = NULL;
        wobble_image_create(ctx, 256, 256, &src);
        uint8_t *d = wobble_image_data_mut(src);
        for (int y = 0; y < 256; y++)
            for (int x = 0; x < 256; x++) {
                const int q = (y >= 128) * 2 + (x >= 128), u = (x & 127) * 2 + (y & 1), v = (y & 127) * 2 + (x & 1);
                const int px[4][3] = {{u, v, (u * 7 + v * 13) & 255}, {u, u, v}, {u, v, u}, {v, u, u}};
                memcpy(d + ((size_t)y * 256 + x) * 3, (const uint8_t[3]){(uint8_t)px[q][0], (uint8_t)px[q][1], (uint8_t)px[q][2]}, 3);
            }
        const char *was = getenv("WOBBLE_PERTURB_SCALAR");
        char *saved = was ? strdup(was) : NULL;
        int differ = 0, runs = 0;
        for (int o = 0; o < wobble_op_count(); o++) {
            const wobble_op_info *oi = wobble_op_at(o);
            if (!oi->suite) continue;
            for (int sev = 1; sev <= 5; sev++) {
                wobble_perturb_params pp = wobble_perturb_default_params();
                pp.seed = (uint64_t)(100 + sev);
                pp.exact_seed = 1;
                wobble_image *a = NULL, *b = NULL;
                unsetenv("WOBBLE_PERTURB_SCALAR");
                const int ra = wobble_perturb(ctx, oi->name, src, sev, &pp, &a);
                setenv("WOBBLE_PERTURB_SCALAR", "1", 1);
                const int rb = wobble_perturb(ctx, oi->name, src, sev, &pp, &b);
                CHECK(ra == WOBBLE_OK && rb == WOBBLE_OK, "%s %d: %s", oi->name, sev, wobble_last_error(ctx));
                if (a && b && !t_same(a, b)) {
                    differ++;
                    fprintf(stderr, "  %s %d: the vector path differs from the scalar one\n", oi->name, sev);
                }
                runs++;
                wobble_image_free(a), wobble_image_free(b);
            }
        }
        if (saved)
            setenv("WOBBLE_PERTURB_SCALAR", saved, 1);
        else
            unsetenv("WOBBLE_PERTURB_SCALAR");
        free(saved);
        CHECK(differ == 0 && runs == 95, "vector against scalar paths: %d of %d runs differ", differ, runs);
        wobble_image_free(src);
    }

    /* at least 32 x 32, as imagecorruptions requires */
    wobble_image *small = NULL, *o = NULL;
    wobble_image_create(ctx, 32, 31, &small);
    int rc = wobble_perturb(ctx, "imagenet_c.pixelate", small, 1, NULL, &o);
    CHECK(rc == WOBBLE_EDOMAIN && o == NULL && strstr(wobble_last_error(ctx), "32x31"), "32x31: %d %s", rc,
          wobble_last_error(ctx));
    wobble_image_free(small);
    wobble_image_free(in);
    wobble_ctx_free(ctx);
    return t_finish();
}
