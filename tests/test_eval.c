/*
 * wobble eval end to end, on the tiny CLIP model of tests/ref/models:
 *  - metrics equal an independent Python pipeline (tests/ref/gen_eval.py:
 *    Pillow/torchvision perturbations, PyTorch forward, NumPy metrics,
 *    brute-force MEB) within 1e-4;
 *  - an unreadable image is reported, skipped and counted;
 *  - resumable: after deleting results and cache files, or damaging a cache
 *    file, a re-run writes byte-identical results and embeds only what is
 *    missing; a folder holding another configuration is refused;
 *  - datasets: CIFAR-10 records and (gzipped) IDX pairs decode to the
 *    expected pixels and labels; an empty dataset is an error.
 */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <unistd.h>

static char tmp[512];

static int same_file(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    char *x = t_slurp(a, &na), *y = t_slurp(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

static int sh(const char *fmt, const char *a, const char *b) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, fmt, a, b);
    return system(cmd);
}

static int warnings;
static void count_warn(void *u, const char *msg) {
    (void)u;
    warnings++;
    CHECK(strstr(msg, "broken.png") != NULL, "warning names the file: %s", msg);
}

static int run(wobble_ctx *ctx, wobble_model *m, const char *data, wobble_eval_op *ops, int n_ops, const char *out,
               wobble_eval_summary *s) {
    wobble_dataset *ds = NULL;
    int rc = wobble_dataset_open(ctx, data, NULL, &ds);
    if (rc) return rc;
    wobble_eval_params p = wobble_eval_default_params();
    p.ops = ops;
    p.n_ops = n_ops;
    p.seed = 3;
    p.batch = 4;
    p.data_path = "data";
    p.warn = count_warn;
    rc = wobble_eval_run(ctx, m, ds, &p, out, s);
    wobble_dataset_free(ds);
    return rc;
}

static void test_pipeline(wobble_ctx *ctx) {
    char p[1024], data[1100], out[1100], out2[1100];
    snprintf(p, sizeof p, "%s/eval_expected.json", t_ref_dir());
    json_t *exp = json_load_file(p, 0, NULL);
    CHECK(exp != NULL, "read %s", p);
    if (!exp) return;
    /* data folder: the three images and a broken file */
    snprintf(data, sizeof data, "%s/data", tmp);
    snprintf(p, sizeof p, "%s/data", t_ref_dir());
    CHECK(sh("mkdir -p %s%s", data, "") == 0, "mkdir");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cp %s/syn_64x48.png %s/syn_33x17.png %s/ && head -c 60 %s/syn_64x48.png > %s/broken.png",
             p, p, data, p, data);
    CHECK(system(cmd) == 0, "copy images");
    snprintf(cmd, sizeof cmd, "cp %s/photo_96x80.png %s/", p, data);
    CHECK(system(cmd) == 0, "copy photo");
    /* operations from the reference */
    json_t *jops = json_object_get(exp, "ops");
    int n_ops = (int)json_array_size(jops);
    wobble_eval_op ops[16];
    double levels[16][8];
    for (int o = 0; o < n_ops; o++) {
        json_t *jo = json_array_get(jops, o);
        ops[o].name = json_string_value(json_object_get(jo, "op"));
        json_t *jl = json_object_get(jo, "levels");
        ops[o].n_levels = (int)json_array_size(jl);
        for (int k = 0; k < ops[o].n_levels; k++) levels[o][k] = json_number_value(json_array_get(jl, k));
        ops[o].levels = levels[o];
    }
    snprintf(p, sizeof p, "%s/models/clip-f32-openai", t_ref_dir());
    wobble_model *m = NULL;
    CHECK(wobble_model_load(ctx, p, NULL, &m) == WOBBLE_OK, "%s", wobble_last_error(ctx));
    if (!m) return;
    snprintf(out, sizeof out, "%s/out", tmp);
    wobble_eval_summary s;
    warnings = 0;
    int rc = run(ctx, m, data, ops, n_ops, out, &s);
    CHECK(rc == WOBBLE_OK, "eval: %s", wobble_last_error(ctx));
    CHECK(s.images == 4 && s.evaluated == 3 && s.failed == 1 && warnings == 1, "counts %d %d %d warn %d", s.images,
          s.evaluated, s.failed, warnings);
    /* identity levels reuse the clean embedding: 1 + 2+2+2+1+1 per image */
    CHECK(s.embedded == 3 * 9, "embedded %d", s.embedded);
    /* compare per_image.jsonl with the Python pipeline */
    snprintf(p, sizeof p, "%s/per_image.jsonl", out);
    FILE *f = fopen(p, "r");
    CHECK(f != NULL, "open %s", p);
    char line[8192];
    int lines = 0;
    double worst = 0;
    while (f && fgets(line, sizeof line, f)) {
        lines++;
        json_t *r = json_loads(line, 0, NULL);
        CHECK(r != NULL, "jsonl line %d parses", lines);
        if (!r) continue;
        const char *img = strrchr(json_string_value(json_object_get(r, "image")), '/') + 1;
        const char *op = json_string_value(json_object_get(r, "op"));
        size_t i;
        json_t *ei, *ref = NULL;
        json_array_foreach(json_object_get(exp, "images"), i, ei) if (!strcmp(json_string_value(json_object_get(ei, "image")), img))
            ref = json_object_get(json_object_get(ei, "ops"), op);
        CHECK(ref != NULL, "reference for %s %s", img, op);
        if (ref) {
            static const char *keys[] = {"R_cos", "R_euc", "R_div", "cos_mean", "euc_mean"};
            for (int k = 0; k < 5; k++) {
                double a = json_number_value(json_object_get(r, keys[k])), b = json_number_value(json_object_get(ref, keys[k]));
                CHECK(fabs(a - b) <= 1e-4, "%s %s %s: wobble %.9g, Python %.9g", img, op, keys[k], a, b);
                worst = fabs(a - b) > worst ? fabs(a - b) : worst;
            }
            for (size_t k = 0; k < json_array_size(json_object_get(ref, "cos")); k++) {
                double a = json_number_value(json_array_get(json_object_get(r, "cos"), k));
                double b = json_number_value(json_array_get(json_object_get(ref, "cos"), k));
                CHECK(fabs(a - b) <= 1e-4, "%s %s cos[%zu]: %.9g vs %.9g", img, op, k, a, b);
            }
        }
        json_decref(r);
    }
    if (f) fclose(f);
    CHECK(lines == 3 * n_ops, "%d per-image records", lines);
    printf("eval vs Python pipeline: %d records, worst metric difference %.2e\n", lines, worst);
    /* summary mentions the failure */
    snprintf(p, sizeof p, "%s/summary.json", out);
    json_t *sum = json_load_file(p, 0, NULL);
    CHECK(sum && json_integer_value(json_object_get(json_object_get(sum, "dataset"), "failed_count")) == 1,
          "summary counts the failure");
    json_decref(sum);

    /* resumability: copy the results, damage the cache, re-run, compare */
    snprintf(out2, sizeof out2, "%s/first", tmp);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp %s/*.json* %s/", out2, out, out2);
    CHECK(system(cmd) == 0, "save");
    snprintf(cmd, sizeof cmd,
             "cp %s/summary.csv %s/ && rm %s/per_image.jsonl %s/summary.json && cd %s/cache && ls | head -1 | xargs rm && "
             "f=$(ls | head -1) && head -c 100 $f > x && mv x $f",
             out, out2, out, out, out);
    CHECK(system(cmd) == 0, "damage");
    warnings = 0;
    rc = run(ctx, m, data, ops, n_ops, out, &s);
    CHECK(rc == WOBBLE_OK, "re-run: %s", wobble_last_error(ctx));
    CHECK(s.embedded == 2 * 9 && s.from_cache == 1, "re-run embedded %d, from cache %d", s.embedded, s.from_cache);
    static const char *files[] = {"per_image.jsonl", "summary.json", "summary.csv", "config.json"};
    for (int k = 0; k < 4; k++) {
        char a[1200], b[1200];
        snprintf(a, sizeof a, "%s/%s", out, files[k]);
        snprintf(b, sizeof b, "%s/%s", out2, files[k]);
        CHECK(same_file(a, b), "resumed %s equals the first run's", files[k]);
    }
    rc = run(ctx, m, data, ops, n_ops, out, &s);
    CHECK(rc == WOBBLE_OK && s.embedded == 0 && s.from_cache == 3, "third run fully cached: %d", s.embedded);
    /* other configuration: refused */
    double lv = 30;
    wobble_eval_op other = {"jpeg", &lv, 1};
    rc = run(ctx, m, data, &other, 1, out, &s);
    CHECK(rc == WOBBLE_EINVAL && strstr(wobble_last_error(ctx), "other operations or levels"), "refused: %s",
          wobble_last_error(ctx));
    wobble_model *m2 = NULL;
    snprintf(p, sizeof p, "%s/models/clip-f16-openai", t_ref_dir());
    wobble_model_load(ctx, p, NULL, &m2);
    rc = run(ctx, m2, data, ops, n_ops, out, &s);
    CHECK(rc == WOBBLE_EINVAL && strstr(wobble_last_error(ctx), "another model"), "other model refused: %s",
          wobble_last_error(ctx));
    wobble_model_free(m2);
    /* bad requests */
    double badlv = 0;
    wobble_eval_op bad = {"jpeg", &badlv, 1};
    snprintf(p, sizeof p, "%s/out_bad", tmp);
    CHECK(run(ctx, m, data, &bad, 1, p, &s) == WOBBLE_EDOMAIN, "level outside the domain");
    wobble_eval_op unk = {"sepia", &lv, 1};
    CHECK(run(ctx, m, data, &unk, 1, p, &s) == WOBBLE_ENOTFOUND, "unknown op");
    snprintf(cmd, sizeof cmd, "%s/empty", tmp);
    CHECK(sh("mkdir -p %s%s", cmd, "") == 0, "mkdir");
    wobble_dataset *ds = NULL;
    CHECK(wobble_dataset_open(ctx, cmd, NULL, &ds) == WOBBLE_EINVAL && strstr(wobble_last_error(ctx), "empty"),
          "empty dataset: %s", wobble_last_error(ctx));
    /* a result that cannot be written: no result file appears (all three are
     * committed together), and no temporary file is left */
    {
        char blocked[1200], q[1300];
        snprintf(blocked, sizeof blocked, "%s/out-blocked", tmp);
        snprintf(q, sizeof q, "%s/summary.csv", blocked);
        CHECK(sh("mkdir -p %s%s", q, "") == 0, "mkdir");
        rc = run(ctx, m, data, ops, n_ops, blocked, &s);
        CHECK(rc == WOBBLE_EIO && strstr(wobble_last_error(ctx), "summary.csv: is a folder"), "blocked output: %s",
              wobble_last_error(ctx));
        snprintf(q, sizeof q, "%s/per_image.jsonl", blocked);
        CHECK(access(q, F_OK) != 0, "no per_image.jsonl when summary.csv cannot be written");
        snprintf(q, sizeof q, "%s/summary.json", blocked);
        CHECK(access(q, F_OK) != 0, "no summary.json when summary.csv cannot be written");
        CHECK(t_no_temp(blocked), "no temporary file left");
    }
    wobble_model_free(m);
    json_decref(exp);
}

static void test_datasets(wobble_ctx *ctx) {
    char p[1200];
    /* CIFAR-10: 3 records, labels 7, 0, 9, pixel (x, y, c) = x + 2y + 50c + 10 * record */
    snprintf(p, sizeof p, "%s/tiny_cifar.bin", tmp);
    FILE *f = fopen(p, "wb");
    for (int r = 0; r < 3; r++) {
        fputc(r == 0 ? 7 : r == 1 ? 0 : 9, f);
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++) fputc((x + 2 * y + 50 * c + 10 * r) & 255, f);
    }
    fclose(f);
    snprintf(p + strlen(p) - strlen("tiny_cifar.bin"), 64, "batches.meta.txt");
    f = fopen(p, "w");
    for (int k = 0; k < 10; k++) fprintf(f, "class%d\n", k);
    fclose(f);
    snprintf(p, sizeof p, "%s/tiny_cifar.bin", tmp);
    wobble_dataset *ds = NULL;
    CHECK(wobble_dataset_open(ctx, p, NULL, &ds) == WOBBLE_OK, "cifar: %s", wobble_last_error(ctx));
    if (ds) {
        CHECK(wobble_dataset_size(ds) == 3 && !strcmp(wobble_dataset_kind(ds), "cifar10"), "cifar size/kind");
        CHECK(wobble_dataset_label(ds, 0) == 7 && wobble_dataset_label(ds, 2) == 9, "cifar labels");
        CHECK(!strcmp(wobble_dataset_class_name(ds, 9), "class9"), "class names from batches.meta.txt");
        wobble_image *im = NULL;
        CHECK(wobble_dataset_load(ctx, ds, 1, &im) == WOBBLE_OK, "load");
        const uint8_t *d = wobble_image_data(im);
        CHECK(wobble_image_width(im) == 32 && d[(5 * 32 + 3) * 3 + 2] == (3 + 10 + 100 + 10), "cifar pixel layout");
        wobble_image_free(im);
        wobble_dataset_free(ds);
    }
    /* a file that is not whole records */
    snprintf(p, sizeof p, "%s/bad_cifar.bin", tmp);
    f = fopen(p, "wb");
    for (int i = 0; i < 3073 + 5; i++) fputc(1, f);
    fclose(f);
    CHECK(wobble_dataset_open(ctx, p, NULL, &ds) != WOBBLE_OK, "bad cifar refused: %s", wobble_last_error(ctx));
    /* IDX pair, gzipped images, plain labels: 2 images of 3x2 */
    snprintf(p, sizeof p, "%s/t-images-idx3-ubyte.gz", tmp);
    gzFile g = gzopen(p, "wb");
    const uint8_t hi[16] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3};
    gzwrite(g, hi, 16);
    const uint8_t px[12] = {1, 2, 3, 4, 5, 6, 200, 201, 202, 203, 204, 205};
    gzwrite(g, px, 12);
    gzclose(g);
    snprintf(p, sizeof p, "%s/t-labels-idx1-ubyte.gz", tmp);
    g = gzopen(p, "wb");
    const uint8_t hl[10] = {0, 0, 8, 1, 0, 0, 0, 2, 4, 1};
    gzwrite(g, hl, 10);
    gzclose(g);
    snprintf(p, sizeof p, "%s/t-images-idx3-ubyte.gz", tmp);
    CHECK(wobble_dataset_open(ctx, p, NULL, &ds) == WOBBLE_OK, "idx: %s", wobble_last_error(ctx));
    if (ds) {
        CHECK(wobble_dataset_size(ds) == 2 && wobble_dataset_label(ds, 0) == 4 && wobble_dataset_label(ds, 1) == 1,
              "idx labels");
        wobble_image *im = NULL;
        CHECK(wobble_dataset_load(ctx, ds, 1, &im) == WOBBLE_OK, "idx load");
        const uint8_t *d = wobble_image_data(im);
        CHECK(wobble_image_width(im) == 3 && wobble_image_height(im) == 2 && d[0] == 200 && d[1] == 200 &&
                  d[3 * 5] == 205,
              "idx pixels, gray to RGB");
        wobble_image_free(im);
        wobble_dataset_free(ds);
    }
    /* labels that do not match the images */
    snprintf(p, sizeof p, "%s/t-labels-idx1-ubyte.gz", tmp);
    g = gzopen(p, "wb");
    const uint8_t hl3[11] = {0, 0, 8, 1, 0, 0, 0, 3, 4, 1, 2};
    gzwrite(g, hl3, 11);
    gzclose(g);
    snprintf(p, sizeof p, "%s/t-images-idx3-ubyte.gz", tmp);
    CHECK(wobble_dataset_open(ctx, p, NULL, &ds) == WOBBLE_ECORRUPT && strstr(wobble_last_error(ctx), "3 labels for 2 images"),
          "mismatched labels: %s", wobble_last_error(ctx));
    /* ImageFolder: class = subfolder */
    char cmd[3000];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/if/cat %s/if/dog && cp %s/data/syn_3x5.png %s/if/cat/a.png && cp %s/data/syn_1x1.png %s/if/dog/b.png",
             tmp, tmp, t_ref_dir(), tmp, t_ref_dir(), tmp);
    CHECK(system(cmd) == 0, "imagefolder");
    snprintf(p, sizeof p, "%s/if", tmp);
    CHECK(wobble_dataset_open(ctx, p, NULL, &ds) == WOBBLE_OK, "imagefolder: %s", wobble_last_error(ctx));
    if (ds) {
        CHECK(!strcmp(wobble_dataset_kind(ds), "imagefolder") && wobble_dataset_num_classes(ds) == 2 &&
                  wobble_dataset_label(ds, 1) == 1 && !strcmp(wobble_dataset_class_name(ds, 1), "dog"),
              "imagefolder labels");
        wobble_dataset_free(ds);
    }
}

int main(void) {
    CHECK(t_mkdtemp(tmp, sizeof tmp, "wobble_eval") != NULL, "mkdtemp");
    wobble_ctx *ctx = NULL;
    wobble_ctx_create(NULL, &ctx);
    test_pipeline(ctx);
    test_datasets(ctx);
    wobble_ctx_free(ctx);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    CHECK(system(cmd) == 0, "cleanup");
    return t_finish();
}
