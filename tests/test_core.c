/* Context, status codes, image handles, atomic writes; the resize window. */
#include "testutil.h"
#include "../src/image/resample.h"

#include <sys/stat.h>
#include <unistd.h>


/* Every *_default_params() returns a struct whose every byte is either a
 * documented default or zero (padding included), so a field added later
 * starts as 0, not as whatever the caller's memory held. The destination is
 * poisoned first. Padding is only observable in structs returned in memory
 * (larger than 16 bytes on x86-64: the probe, eval, downstream, tune and
 * finetune parameters); the small ones are compared field by field. */
#define CHECK_DEFAULTS(T, fn, ...)                                                        \
    do {                                                                                  \
        T got_, want_;                                                                    \
        memset(&got_, 0xA5, sizeof got_);                                                 \
        got_ = fn();                                                                      \
        memset(&want_, 0, sizeof want_);                                                  \
        __VA_ARGS__;                                                                      \
        CHECK(!memcmp(&got_, &want_, sizeof got_), #fn "() sets the defaults and zeroes every other byte"); \
    } while (0)

static void check_defaults(void) {
    const wobble_ctx_params c = wobble_ctx_default_params();
    const wobble_dataset_params d = wobble_dataset_default_params();
    const wobble_embed_params e = wobble_embed_default_params();
    const wobble_model_params m = wobble_model_default_params();
    const wobble_perturb_params pp = wobble_perturb_default_params();
    const wobble_knn_params k = wobble_knn_default_params();
    CHECK(c.threads == 0 && c.max_pixels == 89478485u && !d.labels_path && !d.limit && !e.normalize &&
              m.max_batch == 16 && !pp.seed && !pp.image_id && k.k == 20 && k.temperature == 0.07,
          "small default structs");
    wobble_probe_params pr = wobble_probe_default_params();
    CHECK(pr.n_l2 == 11 && pr.l2_grid && pr.l2_grid[0] == 1e-1 && pr.l2_grid[10] == 1e-6, "probe l2 grid");
    CHECK_DEFAULTS(wobble_probe_params, wobble_probe_default_params, want_.l2_grid = pr.l2_grid, want_.n_l2 = 11,
                   want_.holdout = 0.2, want_.max_iter = 1000, want_.tol = 1e-8);
    CHECK_DEFAULTS(wobble_eval_params, wobble_eval_default_params, want_.batch = 64);
    const wobble_probe_params dpr = wobble_probe_default_params();
    const wobble_knn_params dk = wobble_knn_default_params();
    CHECK_DEFAULTS(wobble_downstream_params, wobble_downstream_default_params, want_.probe = dpr, want_.knn = dk,
                   want_.bins = 10);
}

/* image_resize_rgb_window gives the window of the full resize, byte for
 * byte: every filter, down and up, one axis or both, windows at the
 * corners, in the middle and the whole image; and refuses a window outside
 * the output. */
static void resize_window(void) {
    static const int sizes[][4] = {{500, 375, 341, 256}, {375, 500, 256, 341}, {64, 48, 64, 31}, {64, 48, 17, 48},
                                   {30, 20, 97, 61},     {9, 7, 5, 13},       {1, 1, 3, 2}};
    unsigned seed = 7;
    for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
        const int w = sizes[z][0], h = sizes[z][1], ow = sizes[z][2], oh = sizes[z][3];
        uint8_t *src = malloc((size_t)w * h * 3), *full = malloc((size_t)ow * oh * 3),
                *win = malloc((size_t)ow * oh * 3);
        for (size_t i = 0; i < (size_t)w * h * 3; i++) {
            seed = seed * 1103515245u + 12345u;
            src[i] = (uint8_t)(seed >> 16);
        }
        for (int f = WOBBLE_FILTER_BOX; f <= WOBBLE_FILTER_LANCZOS; f++) {
            CHECK(image_resize_rgb(src, w, h, full, ow, oh, (wobble_filter)f, 2) == WOBBLE_OK, "resize");
            const int wins[][4] = {{0, 0, ow, oh}, {0, 0, 1, 1}, {ow - 1, oh - 1, 1, 1},
                                   {ow / 3, oh / 4, ow - ow / 3 - ow / 5, oh - oh / 4 - oh / 7 > 0 ? oh - oh / 4 - oh / 7 : 1},
                                   {0, oh / 2, ow, oh - oh / 2}, {ow / 2, 0, ow - ow / 2, oh}};
            for (size_t k = 0; k < sizeof wins / sizeof wins[0]; k++) {
                const int x0 = wins[k][0], y0 = wins[k][1], cw = wins[k][2], ch = wins[k][3];
                memset(win, 0xAB, (size_t)ow * oh * 3);
                CHECK(image_resize_rgb_window(src, w, h, win, ow, oh, x0, y0, cw, ch, (wobble_filter)f, 1 + (int)(k & 1)) ==
                          WOBBLE_OK,
                      "window");
                int bad = 0;
                for (int y = 0; y < ch; y++)
                    bad += memcmp(win + (size_t)y * cw * 3, full + ((size_t)(y0 + y) * ow + x0) * 3, (size_t)cw * 3) != 0;
                CHECK(bad == 0, "%dx%d -> %dx%d filter %d window %d,%d %dx%d: %d rows differ from the full resize", w, h,
                      ow, oh, f, x0, y0, cw, ch, bad);
            }
        }
        CHECK(image_resize_rgb_window(src, w, h, win, ow, oh, 1, 0, ow, oh, WOBBLE_FILTER_BILINEAR, 1) == WOBBLE_EINVAL &&
                  image_resize_rgb_window(src, w, h, win, ow, oh, 0, -1, 1, 1, WOBBLE_FILTER_BILINEAR, 1) == WOBBLE_EINVAL &&
                  image_resize_rgb_window(src, w, h, win, ow, oh, 0, 0, 0, 1, WOBBLE_FILTER_BILINEAR, 1) == WOBBLE_EINVAL,
              "a window outside the output is refused");
        free(src), free(full), free(win);
    }
}

int main(void) {
    resize_window();
    check_defaults();
    /* free(NULL) is a no-op everywhere */
    wobble_ctx_free(NULL);
    wobble_image_free(NULL);
    wobble_free(NULL);

    CHECK(strcmp(wobble_strerror(WOBBLE_OK), "success") == 0, "strerror(OK)");
    for (int s = WOBBLE_EINTERNAL; s < 0; s++)
        CHECK(strcmp(wobble_strerror(s), "unknown status") != 0, "status %d has a description", s);
    CHECK(strcmp(wobble_strerror(-1000), "unknown status") == 0, "unknown status code");
    CHECK(strcmp(wobble_version(), WOBBLE_VERSION_STRING) == 0, "version");

    wobble_ctx_params p = wobble_ctx_default_params();
    CHECK(p.threads == 0 && p.max_pixels == 89478485u, "defaults");
    CHECK(wobble_ctx_create(NULL, NULL) == WOBBLE_EINVAL, "NULL out");
    p.threads = -1;
    wobble_ctx *bad = (wobble_ctx *)1;
    CHECK(wobble_ctx_create(&p, &bad) == WOBBLE_EINVAL && bad == NULL, "negative threads rejected");

    wobble_ctx *ctx = NULL;
    CHECK(wobble_ctx_create(NULL, &ctx) == WOBBLE_OK && ctx, "create");
    CHECK(wobble_ctx_threads(ctx) >= 1, "threads >= 1");
    CHECK(strcmp(wobble_last_error(ctx), "") == 0 && wobble_last_status(ctx) == WOBBLE_OK, "no error yet");

    wobble_image *img = NULL;
    CHECK(wobble_image_create(ctx, 0, 5, &img) == WOBBLE_EINVAL && img == NULL, "zero width rejected");
    CHECK(wobble_last_status(ctx) == WOBBLE_EINVAL, "last status recorded");
    CHECK(strstr(wobble_last_error(ctx), "invalid size") != NULL, "message: %s", wobble_last_error(ctx));
    CHECK(wobble_image_create(ctx, 4, 3, &img) == WOBBLE_OK, "create image");
    CHECK(wobble_image_width(img) == 4 && wobble_image_height(img) == 3, "size");
    int zero = 1;
    for (int i = 0; i < 36; i++) zero &= wobble_image_data(img)[i] == 0;
    CHECK(zero, "zeroed");
    wobble_image_data_mut(img)[5] = 7;
    wobble_image *cl = NULL;
    CHECK(wobble_image_clone(ctx, img, &cl) == WOBBLE_OK && t_same(img, cl), "clone equal");
    CHECK(wobble_image_data(cl) != wobble_image_data(img), "clone is a copy");
    CHECK(wobble_image_hash(img) == wobble_image_hash(cl), "hash equal for equal images");
    wobble_image_data_mut(cl)[0] = 1;
    CHECK(wobble_image_hash(img) != wobble_image_hash(cl), "hash differs");
    wobble_image *t1 = NULL, *t2 = NULL;
    uint8_t px[6] = {1, 2, 3, 4, 5, 6};
    wobble_image_from_rgb(ctx, 2, 1, px, &t1);
    wobble_image_from_rgb(ctx, 1, 2, px, &t2);
    CHECK(wobble_image_hash(t1) != wobble_image_hash(t2), "hash depends on the shape");
    wobble_image_free(t1);
    wobble_image_free(t2);

    /* atomic write: no temp file left, content replaced */
    char dir[512];
    CHECK(t_mkdtemp(dir, sizeof dir, "wobble_test_core") != NULL, "mkdtemp");
    char path[256];
    snprintf(path, sizeof path, "%s/out.bin", dir);
    CHECK(wobble_write_file_atomic(ctx, path, "abc", 3) == WOBBLE_OK, "write");
    CHECK(wobble_write_file_atomic(ctx, path, "xy", 2) == WOBBLE_OK, "overwrite");
    struct stat st;
    CHECK(stat(path, &st) == 0 && st.st_size == 2, "new content");
    char bad_path[300];
    snprintf(bad_path, sizeof bad_path, "%s/missing/out.bin", dir);
    CHECK(wobble_write_file_atomic(ctx, bad_path, "abc", 3) == WOBBLE_EIO, "missing folder is EIO");
    CHECK(strstr(wobble_last_error(ctx), bad_path) != NULL, "message names the file: %s", wobble_last_error(ctx));
    /* the PNG writer goes through the same path */
    snprintf(path, sizeof path, "%s/img.png", dir);
    CHECK(wobble_image_write(ctx, img, path) == WOBBLE_OK, "write png");
    wobble_image *back = NULL;
    CHECK(wobble_image_read(ctx, path, &back) == WOBBLE_OK && t_same(back, img), "png round trip is lossless");
    wobble_image_free(back);
    snprintf(path, sizeof path, "%s/img.bmp", dir);
    CHECK(wobble_image_write(ctx, img, path) == WOBBLE_EFORMAT, "unsupported extension");
    /* writes without the per-file flush, then one flush of the folder */
    wobble_ctx_params np = wobble_ctx_default_params();
    CHECK(np.sync_writes == 1, "files are flushed one by one by default");
    CHECK(np.png_level == 6, "PNG level 6 by default");
    wobble_ctx *refused = NULL;
    np.png_level = 13;
    CHECK(wobble_ctx_create(&np, &refused) == WOBBLE_EINVAL && refused == NULL, "PNG level 13 refused");
    np.png_level = -1;
    CHECK(wobble_ctx_create(&np, &refused) == WOBBLE_EINVAL && refused == NULL, "PNG level -1 refused");
    np.png_level = 1;
    np.sync_writes = 0;
    wobble_ctx *nc = NULL;
    CHECK(wobble_ctx_create(&np, &nc) == WOBBLE_OK, "context without per-file flush");
    snprintf(path, sizeof path, "%s/nosync.png", dir);
    CHECK(wobble_image_write(nc, img, path) == WOBBLE_OK, "write without fsync");
    CHECK(wobble_image_read(nc, path, &back) == WOBBLE_OK && t_same(back, img), "the same file without fsync");
    wobble_image_free(back);
    CHECK(wobble_sync_path(nc, dir) == WOBBLE_OK, "flush the folder: %s", wobble_last_error(nc));
    CHECK(wobble_sync_path(nc, path) == WOBBLE_OK, "flush through a file: %s", wobble_last_error(nc));
    CHECK(wobble_sync_path(nc, bad_path) == WOBBLE_EIO, "flush of a missing path is EIO");
    CHECK(strstr(wobble_last_error(nc), bad_path) != NULL, "message names the path: %s", wobble_last_error(nc));
    wobble_ctx_free(nc);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");

    wobble_image_free(img);
    wobble_image_free(cl);
    wobble_ctx_free(ctx);
    return t_finish();
}
