/*
 * Encoder parity with the upstream PyTorch code, on the fixtures in
 * $WOBBLE_SHARED: every folder of fixtures/arch (random-weight CLIP and
 * DINOv2 towers in each tensor naming) and the real ViT-Ti/16 in
 * models/vit-tiny-patch16-224-tin/reference. For kodim23 and kodim04:
 *  - preprocessing equals pixel_values.npy (max-abs <= 1e-6);
 *  - the embedding of those pixel values equals embedding.npy (cosine >=
 *    0.99999, max-abs <= 1e-4), and so does the embedding of our own
 *    preprocessing;
 *  - a batch of 2 equals 2 batches of 1;
 *  - on the ViT-Ti/16, a call of 48 images (max_batch 48) runs in chunks
 *    (its arena stays within the 32 MB chunk budget, not 48 images' worth)
 *    and each image's embedding equals its batch of 1: bit for bit on
 *    wobble's fp32 kernel, within 1e-4 through OpenBLAS sgemm (which blocks by M).
 */
#include "testutil.h"

#include <math.h>
#include <sys/stat.h>

static const char *IMAGES[2] = {"kodim23.png", "kodim04.png"};

static void compare(const char *what, const float *a, const float *b, size_t n, double min_cos, double max_abs) {
    double mx = t_compare(what, a, b, n, min_cos, max_abs);
    printf("  %-60s max-abs %.2e\n", what, mx);
}

static void run_case(wobble_ctx *ctx, const char *model_dir, const char *ref_dir) {
    char p[1024];
    wobble_model *m = NULL;
    int rc = wobble_model_load(ctx, model_dir, NULL, &m);
    CHECK(rc == WOBBLE_OK, "load %s: %s", model_dir, wobble_last_error(ctx));
    if (rc) return;
    wobble_model_info info;
    wobble_model_get_info(m, &info);
    printf("%s: %s/%s width %d depth %d heads %d patch %d act %s regs %d embed %d\n", model_dir, info.arch, info.naming,
           info.width, info.depth, info.heads, info.patch, info.activation, info.registers, info.embed_dim);
    wobble_array pv, em;
    snprintf(p, sizeof p, "%s/pixel_values.npy", ref_dir);
    rc = wobble_npy_read(ctx, p, &pv);
    CHECK(rc == WOBBLE_OK, "%s", wobble_last_error(ctx));
    snprintf(p, sizeof p, "%s/embedding.npy", ref_dir);
    int rc2 = wobble_npy_read(ctx, p, &em);
    CHECK(rc2 == WOBBLE_OK, "%s", wobble_last_error(ctx));
    if (rc || rc2) {
        wobble_model_free(m);
        return;
    }
    CHECK(pv.dtype == 'f' && pv.ndim == 4 && pv.shape[0] == 2 && pv.shape[1] == 3, "pixel_values shape");
    CHECK(em.dtype == 'f' && em.ndim == 2 && em.shape[0] == 2 && em.shape[1] == info.embed_dim, "embedding shape %lld",
          (long long)em.shape[1]);
    const int H = (int)pv.shape[2], W = (int)pv.shape[3], E = info.embed_dim;
    const float *ref_px = pv.data, *ref_emb = em.data;
    float *ours_px = malloc(sizeof(float) * 2 * 3 * H * W);
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/data/kodak/%s", t_shared_dir(), IMAGES[i]);
        wobble_image *img = NULL;
        CHECK(wobble_image_read(ctx, p, &img) == WOBBLE_OK, "%s", wobble_last_error(ctx));
        int h = 0, w = 0;
        rc = wobble_model_preprocess(ctx, m, img, ours_px + (size_t)i * 3 * H * W, &h, &w);
        CHECK(rc == WOBBLE_OK && h == H && w == W, "preprocess %s: %dx%d vs %dx%d %s", IMAGES[i], w, h, W, H,
              wobble_last_error(ctx));
        double mx = 0;
        for (size_t k = 0; k < (size_t)3 * H * W; k++) {
            double d = fabs((double)ours_px[(size_t)i * 3 * H * W + k] - ref_px[(size_t)i * 3 * H * W + k]);
            if (d > mx) mx = d;
        }
        CHECK(mx <= 1e-6, "%s %s: preprocessing max-abs %.3g", model_dir, IMAGES[i], mx);
        printf("  preprocessing %-46s max-abs %.2e\n", IMAGES[i], mx);
        wobble_image_free(img);
    }
    float *e_ref = malloc(sizeof(float) * 2 * E), *e_ours = malloc(sizeof(float) * 2 * E),
          *e_one = malloc(sizeof(float) * 2 * E);
    rc = wobble_model_forward(ctx, m, ref_px, 2, H, W, NULL, e_ref, NULL);
    CHECK(rc == WOBBLE_OK, "forward: %s", wobble_last_error(ctx));
    rc = wobble_model_forward(ctx, m, ours_px, 2, H, W, NULL, e_ours, NULL);
    CHECK(rc == WOBBLE_OK, "forward: %s", wobble_last_error(ctx));
    for (int i = 0; i < 2; i++) {
        rc = wobble_model_forward(ctx, m, ref_px + (size_t)i * 3 * H * W, 1, H, W, NULL, e_one + (size_t)i * E, NULL);
        CHECK(rc == WOBBLE_OK, "forward: %s", wobble_last_error(ctx));
    }
    for (int i = 0; i < 2; i++) {
        char what[256];
        snprintf(what, sizeof what, "%s on reference pixels", IMAGES[i]);
        compare(what, e_ref + (size_t)i * E, ref_emb + (size_t)i * E, E, 0.99999, 1e-4);
        snprintf(what, sizeof what, "%s on wobble pixels", IMAGES[i]);
        compare(what, e_ours + (size_t)i * E, ref_emb + (size_t)i * E, E, 0.99999, 1e-4);
        snprintf(what, sizeof what, "%s batch 2 vs batch 1", IMAGES[i]);
        compare(what, e_ref + (size_t)i * E, e_one + (size_t)i * E, E, 0.9999999, 1e-4);
    }
    free(e_ref);
    free(e_ours);
    free(e_one);
    free(ours_px);
    wobble_array_release(&pv);
    wobble_array_release(&em);
    wobble_model_free(m);
}

static void chunk_case(wobble_ctx *ctx, const char *model_dir, const char *ref_dir) {
    wobble_model_params mp = wobble_model_default_params();
    mp.max_batch = 48;
    wobble_model *m = NULL;
    int rc = wobble_model_load(ctx, model_dir, &mp, &m);
    CHECK(rc == WOBBLE_OK, "load %s: %s", model_dir, wobble_last_error(ctx));
    if (rc) return;
    char p[1200];
    snprintf(p, sizeof p, "%s/pixel_values.npy", ref_dir);
    wobble_array pv;
    rc = wobble_npy_read(ctx, p, &pv);
    CHECK(rc == WOBBLE_OK, "%s", wobble_last_error(ctx));
    if (rc) {
        wobble_model_free(m);
        return;
    }
    const int H = (int)pv.shape[2], W = (int)pv.shape[3], n = 48;
    const size_t per = (size_t)3 * H * W;
    const int E = wobble_model_embed_dim(m);
    float *px = malloc(sizeof(float) * per * n), *all = malloc(sizeof(float) * (size_t)E * n),
          *one = malloc(sizeof(float) * (size_t)E * 2);
    for (int i = 0; i < n; i++) memcpy(px + per * i, pv.data + per * (i % 2), sizeof(float) * per);
    rc = wobble_model_forward(ctx, m, px, n, H, W, NULL, all, NULL);
    CHECK(rc == WOBBLE_OK, "forward 48: %s", wobble_last_error(ctx));
    wobble_model_info info;
    wobble_model_get_info(m, &info);
    CHECK(info.arena_bytes > 0 && info.arena_bytes <= ((uint64_t)40 << 20),
          "48 images: arena %llu bytes, expected the chunk budget (32 MB; 48 images at once need ~72 MB)",
          (unsigned long long)info.arena_bytes);
    for (int i = 0; i < 2; i++) {
        rc = wobble_model_forward(ctx, m, px + per * i, 1, H, W, NULL, one + (size_t)E * i, NULL);
        CHECK(rc == WOBBLE_OK, "forward 1: %s", wobble_last_error(ctx));
    }
    /* wobble's own kernels compute each row alike whatever the rows around
     * it; OpenBLAS sgemm (WOBBLE_SGEMM=1, or no AVX-512) blocks by M */
    const int exact = info.f32_bytes > 0;
    int bad = 0;
    double mx = 0;
    for (int i = 0; i < n; i++) {
        const float *a = all + (size_t)E * i, *b = one + (size_t)E * (i % 2);
        bad += memcmp(a, b, sizeof(float) * E) != 0;
        for (int j = 0; j < E; j++) mx = fmax(mx, fabs((double)a[j] - b[j]));
    }
    CHECK(exact ? bad == 0 : mx <= 1e-4, "48 images in chunks: %d embeddings differ from their batch of 1 (max-abs %.3g)",
          bad, mx);
    printf("  48 images in one call (%s): arena %.1f MB, %d of 48 embeddings differ from batch 1, max-abs %.2g\n",
           exact ? "fp32 kernel" : "sgemm", info.arena_bytes / 1048576.0, bad, mx);
    free(px), free(all), free(one);
    wobble_array_release(&pv);
    wobble_model_free(m);
}

int main(void) {
    if (t_shared_missing("fixtures/arch")) return 77;
    char p[1024];
    wobble_ctx *ctx = NULL;
    wobble_ctx_create(NULL, &ctx);
    const char *arch[] = {"clip-openai-naming", "clip-hf-naming", "dinov2-facebookresearch-naming", "dinov2-hf-naming",
                          "dinov2-reg-facebookresearch-naming"};
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/fixtures/arch/%s", t_shared_dir(), arch[i]);
        run_case(ctx, p, p);
    }
    char mdir[1024], rdir[1100];
    snprintf(mdir, sizeof mdir, "%s/models/vit-tiny-patch16-224-tin", t_shared_dir());
    snprintf(rdir, sizeof rdir, "%s/reference", mdir);
    run_case(ctx, mdir, rdir);
    chunk_case(ctx, mdir, rdir);
    wobble_ctx_free(ctx);
    return t_finish();
}
