/*
 * Allocation-failure injection, in the spirit of SQLite's: each scenario
 * runs again and again with the N-th allocation failing, N = 1, 2, ... until
 * a run completes without reaching N. Every run must end with success or
 * WOBBLE_ENOMEM (never another status, a crash or a sanitizer report), leak
 * nothing (LeakSanitizer in the ASan build), and leave no result file and no
 * temporary file behind when it fails.
 *
 * The library's own malloc/calloc/realloc/strdup/strndup calls are
 * intercepted at link time (-Wl,--wrap, tests/CMakeLists.txt). Allocations
 * inside libpng, libjpeg, OpenBLAS and jansson are not failed: jansson 2.14
 * ignores some failures in its lexer and then returns a JSON object with a
 * truncated key (this test found it: a safetensors header lost a tensor
 * name), and leaks the object when a key cannot be copied, so failing its
 * allocations tests jansson, not wobble (docs/reliability.md).
 *
 * Scenarios: PNG and JPEG decode, model load, one forward pass, eval on two
 * images (one op, two levels), the linear probe (two L2 strengths), eval
 * on an embedding folder (its parsing included), and merging two shards.
 */
#include "testutil.h"

#include <execinfo.h>
#include <jansson.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t a, size_t b);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);

static atomic_long counter;   /* allocations so far in this run */
static atomic_long fail_at;   /* 0: never fail */
static atomic_int failed_one; /* this run hit fail_at */

static int should_fail(void) {
    const long k = atomic_fetch_add(&counter, 1) + 1, f = atomic_load(&fail_at);
    if (f && k == f) {
        atomic_store(&failed_one, 1);
        if (getenv("WOBBLE_ALLOC_TRACE")) { /* where the failing allocation is made */
            void *bt[32];
            backtrace_symbols_fd(bt, backtrace(bt, 32), 2);
        }
        return 1;
    }
    return 0;
}
void *__wrap_malloc(size_t n) { return should_fail() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t a, size_t b) { return should_fail() ? NULL : __real_calloc(a, b); }
void *__wrap_realloc(void *p, size_t n) { return should_fail() ? NULL : __real_realloc(p, n); }
char *__wrap_strdup(const char *s) { return should_fail() ? NULL : __real_strdup(s); }
char *__wrap_strndup(const char *s, size_t n) { return should_fail() ? NULL : __real_strndup(s, n); }

static char tmp[512];
static wobble_model *model; /* for the forward and eval scenarios */
static uint8_t *png, *jpg;
static size_t png_n, jpg_n;

typedef int (*scenario_fn)(wobble_ctx *ctx, int run);

static int sc_decode_png(wobble_ctx *ctx, int run) {
    (void)run;
    wobble_image *im = NULL;
    int rc = wobble_image_decode(ctx, png, png_n, "a.png", &im);
    wobble_image_free(im);
    return rc;
}
static int sc_decode_jpeg(wobble_ctx *ctx, int run) {
    (void)run;
    wobble_image *im = NULL;
    int rc = wobble_image_decode(ctx, jpg, jpg_n, "a.jpg", &im);
    wobble_image_free(im);
    return rc;
}
static int sc_load(wobble_ctx *ctx, int run) {
    (void)run;
    char p[1024];
    snprintf(p, sizeof p, "%s/models/clip-f32-openai", t_ref_dir());
    wobble_model *m = NULL;
    int rc = wobble_model_load(ctx, p, NULL, &m);
    wobble_model_free(m);
    return rc;
}
static int sc_forward(wobble_ctx *ctx, int run) {
    (void)run;
    wobble_model_info mi;
    wobble_model_get_info(model, &mi);
    const int H = mi.crop_h, W = mi.crop_w, E = wobble_model_embed_dim(model);
    float *px = __real_calloc((size_t)6 * H * W, sizeof(float)), *e = __real_malloc(sizeof(float) * 2 * E);
    for (int i = 0; i < 6 * H * W; i++) px[i] = (float)((i * 7919) % 255) / 128.0f - 1.0f;
    int rc = wobble_model_forward(ctx, model, px, 2, H, W, NULL, e, NULL);
    free(px), free(e);
    return rc;
}
static const char *const RESULTS[] = {"per_image.jsonl", "summary.json", "summary.csv"};
/* eval of `data` (with `m`, or NULL for an embedding folder) into a fresh folder */
static int eval_scenario(wobble_ctx *ctx, int run, wobble_model *m, const char *sub, const char *tag) {
    char data[700], out[700];
    snprintf(data, sizeof data, "%s/%s", tmp, sub);
    snprintf(out, sizeof out, "%s/%s%d", tmp, tag, run); /* a fresh folder: no cache to lean on */
    wobble_dataset *ds = NULL;
    int rc = wobble_dataset_open(ctx, data, NULL, &ds);
    if (rc == WOBBLE_OK) {
        static const double lv[2] = {0.5, 1.5};
        wobble_eval_op op = {"brightness", lv, 2};
        wobble_eval_params p = wobble_eval_default_params();
        p.ops = &op;
        p.n_ops = 1;
        rc = wobble_eval_run(ctx, m, ds, &p, out, NULL);
    }
    wobble_dataset_free(ds);
    for (int k = 0; k < 3; k++) {
        char q[800];
        snprintf(q, sizeof q, "%s/%s", out, RESULTS[k]);
        const int exists = access(q, F_OK) == 0;
        if (rc != WOBBLE_OK && exists) {
            CHECK(0, "run %d failed (%s) but left %s", run, wobble_last_error(ctx), q);
            return -999;
        }
        if (rc == WOBBLE_OK && !exists) {
            CHECK(0, "run %d succeeded without %s", run, q);
            return -999;
        }
    }
    if (!t_no_temp(out)) {
        CHECK(0, "run %d left a temporary file in %s", run, out);
        return -999;
    }
    return rc;
}
static int sc_eval(wobble_ctx *ctx, int run) { return eval_scenario(ctx, run, model, "data", "out"); }
static int sc_embeddings(wobble_ctx *ctx, int run) { return eval_scenario(ctx, run, NULL, "emb", "eout"); }

/* An embedding folder: 3 rows, brightness 0.5 and 1.5 and jpeg 50, labels. */
static int write_embedding_folder(wobble_ctx *ctx) {
    enum { N = 3, K = 3, D = 8 };
    float c[N * D], q[N * K * D];
    for (int i = 0; i < N * D; i++) c[i] = (float)((i * 7919) % 13) - 6.0f + 0.5f;
    for (int i = 0; i < N * K * D; i++) q[i] = c[(i / (K * D)) * D + i % D] + 0.1f * (float)((i * 31) % 7);
    char p[800];
    snprintf(p, sizeof p, "%s/emb", tmp);
    int rc = wobble_mkdirs(ctx, p);
    const int64_t cs[2] = {N, D}, ps[3] = {N, K, D};
    snprintf(p, sizeof p, "%s/emb/clean.npy", tmp);
    if (!rc) rc = wobble_npy_write_f32(ctx, p, c, 2, cs);
    snprintf(p, sizeof p, "%s/emb/perturbed.npy", tmp);
    if (!rc) rc = wobble_npy_write_f32(ctx, p, q, 3, ps);
    static const char *cols = "[{\"op\": \"brightness\", \"level\": 0.5}, {\"op\": \"jpeg\", \"level\": 50},"
                              " {\"op\": \"brightness\", \"level\": 1.5}]\n";
    static const char *index = "{\"id\": \"a\", \"label\": 0}\n{\"id\": \"b\", \"label\": 1, \"split\": \"test\"}\n"
                               "{\"id\": \"c\"}\n";
    snprintf(p, sizeof p, "%s/emb/columns.json", tmp);
    if (!rc) rc = wobble_write_file_atomic(ctx, p, cols, strlen(cols));
    snprintf(p, sizeof p, "%s/emb/index.jsonl", tmp);
    if (!rc) rc = wobble_write_file_atomic(ctx, p, index, strlen(index));
    return rc;
}
/* The eval scenario's run (all allocations succeeding) into tmp/name, or
 * its shard `index` of `count`: the inputs of the merge and report scenarios. */
static int setup_eval(wobble_ctx *ctx, const char *name, int index, int count) {
    char data[700], out[700];
    snprintf(data, sizeof data, "%s/data", tmp);
    snprintf(out, sizeof out, "%s/%s", tmp, name);
    wobble_dataset *ds = NULL;
    static const double lv[2] = {0.5, 1.5};
    wobble_eval_op op = {"brightness", lv, 2};
    wobble_eval_params ep = wobble_eval_default_params();
    ep.ops = &op;
    ep.n_ops = 1;
    ep.shard_index = index;
    ep.shard_count = count;
    int rc = wobble_dataset_open(ctx, data, NULL, &ds);
    if (rc == WOBBLE_OK) rc = wobble_eval_run(ctx, model, ds, &ep, out, NULL);
    wobble_dataset_free(ds);
    return rc;
}

/* wobble_eval_merge of the two shards of that eval into a fresh folder */
static int sc_merge(wobble_ctx *ctx, int run) {
    char a[700], b[700], out[700];
    snprintf(a, sizeof a, "%s/shard0", tmp);
    snprintf(b, sizeof b, "%s/shard1", tmp);
    snprintf(out, sizeof out, "%s/merged%d", tmp, run);
    const char *dirs[2] = {a, b};
    const int rc = wobble_eval_merge(ctx, dirs, 2, out, NULL);
    for (int k = 0; k < 3; k++) {
        char q[800];
        snprintf(q, sizeof q, "%s/%s", out, RESULTS[k]);
        if ((rc != WOBBLE_OK) == (access(q, F_OK) == 0)) {
            CHECK(0, "merge run %d: %s, and %s %s", run, rc ? wobble_last_error(ctx) : "ok", q,
                  rc ? "was left" : "is missing");
            return -999;
        }
    }
    if (!t_no_temp(out)) {
        CHECK(0, "merge run %d left a temporary file in %s", run, out);
        return -999;
    }
    return rc;
}
static int sc_probe(wobble_ctx *ctx, int run) {
    (void)run;
    enum { N = 40, D = 6, C = 3 };
    float X[N * D];
    int y[N];
    for (int i = 0; i < N; i++) {
        y[i] = i % C;
        for (int j = 0; j < D; j++) X[i * D + j] = (float)(((i * 31 + j * 17) % 23) / 23.0 + (j == y[i]));
    }
    static const double grid[2] = {1e-2, 1e-4};
    wobble_probe_params pp = wobble_probe_default_params();
    pp.l2_grid = grid;
    pp.n_l2 = 2;
    wobble_classifier *c = NULL;
    int rc = wobble_classifier_linear(ctx, X, y, N, D, C, &pp, &c);
    if (rc == WOBBLE_OK) {
        float s[C];
        rc = wobble_classifier_scores(ctx, c, X, 1, s);
    }
    wobble_classifier_free(c);
    return rc;
}

/* the 19 ImageNet-C corruptions at severity 3 on a 96 x 80 photo, on a
 * fresh context (its scratch buffers are allocations of the run too) */
static wobble_image *photo;
static int sc_imagenet_c(wobble_ctx *ctx, int run) {
    (void)ctx, (void)run;
    wobble_ctx_params cp = wobble_ctx_default_params();
    cp.threads = 1;
    wobble_ctx *c = NULL;
    int rc = wobble_ctx_create(&cp, &c);
    for (int o = 0; rc == WOBBLE_OK && o < wobble_op_count(); o++) {
        const wobble_op_info *oi = wobble_op_at(o);
        if (!oi->suite) continue;
        wobble_perturb_params pp = wobble_perturb_default_params();
        pp.seed = 3;
        pp.exact_seed = 1;
        wobble_image *out = NULL;
        rc = wobble_perturb(c, oi->name, photo, 3, &pp, &out);
        if (rc != WOBBLE_OK && rc != WOBBLE_ENOMEM)
            fprintf(stderr, "%s: %s\n", oi->name, wobble_last_error(c));
        wobble_image_free(out);
    }
    wobble_ctx_free(c);
    return rc;
}

/* the depth head: create, loss and gradient over two images, 3 training
 * steps, a prediction (small random features and ground truth) */
static int sc_depth(wobble_ctx *ctx, int run) {
    (void)run;
    enum { C = 6, G1 = 12, G2 = 10, H = 13, W = 17 };
    static float f1[G1 * C], f2[G2 * C], gt[H * W], out[H * W];
    for (int i = 0; i < G1 * C; i++) f1[i] = (float)((i * 37 % 23) / 11.0 - 1);
    for (int i = 0; i < G2 * C; i++) f2[i] = (float)((i * 41 % 19) / 9.0 - 1);
    for (int i = 0; i < H * W; i++) gt[i] = i % 7 ? (float)(0.5 + (i * 13 % 29) / 7.0) : 0;
    wobble_depth_params dp = wobble_depth_default_params();
    dp.bins = 16, dp.steps = 3, dp.batch = 2;
    wobble_depth_sample smp[2] = {{f1, 3, 4, gt, W, H}, {f2, 2, 5, gt, W, H}};
    wobble_depth_head *h = NULL;
    double loss = 0;
    float grad[C * 16 + 16];
    int rc = wobble_depth_head_create(ctx, C, &dp, &h);
    if (!rc) rc = wobble_depth_head_loss(ctx, h, smp, 2, 0.5, &loss, grad);
    if (!rc) rc = wobble_depth_head_train(ctx, h, smp, 2, &dp, NULL, 0);
    if (!rc) rc = wobble_depth_head_predict(ctx, h, f1, 3, 4, W, H, out);
    wobble_depth_head_free(h);
    return rc;
}

/* the report of an eval folder (made once, beforehand), with thumbnails */
static int sc_report(wobble_ctx *ctx, int run) {
    char dir[700], out[700];
    snprintf(dir, sizeof dir, "%s/report-run", tmp);
    snprintf(out, sizeof out, "%s/report%d.html", tmp, run);
    wobble_report_params rp = wobble_report_default_params();
    rp.worst = 2;
    const char *dirs[1] = {dir};
    const int rc = wobble_report_write(ctx, dirs, 1, &rp, out);
    const int exists = access(out, F_OK) == 0;
    if (rc != WOBBLE_OK && exists) {
        CHECK(0, "report run %d failed (%s) but left %s", run, wobble_last_error(ctx), out);
        return -999;
    }
    if (rc == WOBBLE_OK && !exists) {
        CHECK(0, "report run %d succeeded without %s", run, out);
        return -999;
    }
    if (!t_no_temp(tmp)) {
        CHECK(0, "report run %d left a temporary file in %s", run, tmp);
        return -999;
    }
    return rc;
}

static void run_scenario(const char *name, scenario_fn fn, wobble_ctx *ctx) {
    int n = 1, bad = 0;
    long total = 0;
    for (;; n++) {
        atomic_store(&counter, 0);
        atomic_store(&failed_one, 0);
        atomic_store(&fail_at, n);
        const int rc = fn(ctx, n);
        atomic_store(&fail_at, 0);
        total = atomic_load(&counter);
        if (rc == -999) {
            bad = 1;
            break;
        }
        if (rc != WOBBLE_OK && rc != WOBBLE_ENOMEM) {
            CHECK(0, "%s: allocation %d failing gave status %d (%s), not WOBBLE_ENOMEM", name, n, rc,
                  wobble_last_error(ctx));
            bad = 1;
            break;
        }
        if (rc == WOBBLE_OK && atomic_load(&failed_one)) continue; /* the failure was absorbed (an optional cache) */
        if (rc == WOBBLE_OK) break; /* the run no longer reaches allocation n */
        if (n > 200000) {
            CHECK(0, "%s: no end in sight", name);
            bad = 1;
            break;
        }
    }
    CHECK(!bad, "%s", name);
    printf("%-10s %5d runs, each with one allocation failing (%ld allocations in a full run)\n", name, n - 1, total);
}

int main(void) {
    CHECK(t_mkdtemp(tmp, sizeof tmp, "wobble_alloc") != NULL, "mkdtemp");
    wobble_ctx *ctx = NULL;
    wobble_ctx_params cp = wobble_ctx_default_params();
    cp.threads = 1;
    wobble_ctx_create(&cp, &ctx);
    char p[1024], cmd[4096];
    snprintf(p, sizeof p, "%s/data/photo_96x80.png", t_ref_dir());
    size_t n = 0;
    png = (uint8_t *)t_slurp(p, &n);
    png_n = n;
    wobble_image *im = NULL;
    CHECK(png && wobble_image_decode(ctx, png, png_n, p, &im) == WOBBLE_OK, "decode %s", p);
    CHECK(wobble_image_encode_jpeg(ctx, im, 90, &jpg, &jpg_n) == WOBBLE_OK, "encode jpeg");
    photo = im;
    snprintf(cmd, sizeof cmd, "mkdir -p %s/data && cp %s/data/photo_96x80.png %s/data/syn_64x48.png %s/data/", tmp,
             t_ref_dir(), t_ref_dir(), tmp);
    CHECK(system(cmd) == 0, "copy images");
    snprintf(p, sizeof p, "%s/models/clip-f32-openai", t_ref_dir());
    CHECK(wobble_model_load(ctx, p, NULL, &model) == WOBBLE_OK, "load %s", p);
    if (!model || !jpg) return t_finish();
    run_scenario("decode-png", sc_decode_png, ctx);
    run_scenario("decode-jpg", sc_decode_jpeg, ctx);
    run_scenario("load", sc_load, ctx);
    run_scenario("forward", sc_forward, ctx);
    run_scenario("eval", sc_eval, ctx);
    run_scenario("probe", sc_probe, ctx);
    run_scenario("imagenet-c", sc_imagenet_c, ctx);
    run_scenario("depth", sc_depth, ctx);
    CHECK(write_embedding_folder(ctx) == WOBBLE_OK, "embedding folder: %s", wobble_last_error(ctx));
    run_scenario("embeddings", sc_embeddings, ctx);
    for (int sh = 0; sh < 2; sh++) { /* two shards of the eval scenario's run, for the merge scenario */
        char name[32];
        snprintf(name, sizeof name, "shard%d", sh);
        CHECK(setup_eval(ctx, name, sh, 2) == WOBBLE_OK, "shard %d for the merge scenario: %s", sh, wobble_last_error(ctx));
    }
    run_scenario("merge", sc_merge, ctx);
    CHECK(setup_eval(ctx, "report-run", 0, 0) == WOBBLE_OK, "eval for the report scenario: %s", wobble_last_error(ctx));
    run_scenario("report", sc_report, ctx);
    wobble_image_free(photo);
    wobble_model_free(model);
    wobble_free(jpg);
    free(png);
    wobble_ctx_free(ctx);
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    CHECK(system(cmd) == 0, "cleanup");
    return t_finish();
}
