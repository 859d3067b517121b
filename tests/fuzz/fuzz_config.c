/* config.json and preprocessor_config.json: the first byte picks the file
 * (even: config.json, odd: preprocessor_config.json), the rest is its text.
 * It is written into a model folder beside the real weights and the other,
 * real, config of the tiny CLIP in tests/ref/models; the model is loaded and,
 * when it loads, runs one forward pass on a gray image. */
#include "fuzz.h"

#include <unistd.h>

#ifndef WOBBLE_FUZZ_MODEL
#error "WOBBLE_FUZZ_MODEL: a tests/ref/models folder"
#endif

static char dir[512];

static void copy_file(const char *src, const char *dst) {
    FILE *f = fopen(src, "rb");
    if (!f) abort();
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    fuzz_write(dst, buf, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    wobble_ctx *ctx = fuzz_ctx();
    char p[600], q[600];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "%s/model", fuzz_dir());
        snprintf(p, sizeof p, "mkdir -p '%s'", dir);
        if (system(p) != 0) abort();
        snprintf(p, sizeof p, "%s/model.safetensors", dir);
        if (symlink(WOBBLE_FUZZ_MODEL "/model.safetensors", p) != 0) abort();
    }
    if (size < 1) return 0;
    static const char *files[2] = {"config.json", "preprocessor_config.json"};
    const int which = data[0] & 1;
    snprintf(p, sizeof p, "%s/%s", dir, files[which]);
    fuzz_write(p, data + 1, size - 1);
    snprintf(p, sizeof p, "%s/%s", dir, files[!which]);
    snprintf(q, sizeof q, "%s/%s", WOBBLE_FUZZ_MODEL, files[!which]);
    copy_file(q, p);
    wobble_model *m = NULL;
    if (wobble_model_load(ctx, dir, NULL, &m) == WOBBLE_OK) {
        wobble_model_info mi;
        wobble_model_get_info(m, &mi);
        const int H = mi.crop_h > 0 ? mi.crop_h : 32, W = mi.crop_w > 0 ? mi.crop_w : 32;
        if (H <= 512 && W <= 512) {
            float *px = calloc((size_t)3 * H * W, sizeof(float));
            float *e = malloc(sizeof(float) * (size_t)wobble_model_embed_dim(m));
            if (px && e) wobble_model_forward(ctx, m, px, 1, H, W, NULL, e, NULL);
            free(px), free(e);
        }
        wobble_model_free(m);
    }
    return 0;
}
