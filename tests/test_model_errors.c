/*
 * Bad checkpoints and inputs: each variant is made from a valid checkpoint
 * (tests/ref/models/clip-f32-openai) by editing its header or bytes, and
 * must fail with a one-line message naming the file and the problem.
 */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <unistd.h>

static char tmpdir[512];
static uint8_t *orig;
static size_t orig_n, hlen;

static json_t *header(void) {
    return json_loadb((const char *)orig + 8, hlen, 0, NULL);
}

/* Write header h + (data, or the original data) as a model folder. */
static void write_model(const char *name, json_t *h, const uint8_t *data, size_t dn, const char *cfg) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", p);
    if (system(cmd) != 0) return;
    char *hs = h ? json_dumps(h, JSON_COMPACT) : NULL;
    size_t hl = hs ? strlen(hs) : 0;
    snprintf(p, sizeof p, "%s/%s/model.safetensors", tmpdir, name);
    FILE *f = fopen(p, "wb");
    uint64_t L = hl;
    uint8_t lb[8];
    for (int i = 0; i < 8; i++) lb[i] = (uint8_t)(L >> (8 * i));
    fwrite(lb, 1, 8, f);
    if (hs) fwrite(hs, 1, hl, f);
    if (!data) {
        data = orig + 8 + hlen;
        dn = orig_n - 8 - hlen;
    }
    fwrite(data, 1, dn, f);
    fclose(f);
    free(hs);
    if (cfg) {
        snprintf(p, sizeof p, "%s/%s/config.json", tmpdir, name);
        f = fopen(p, "w");
        fputs(cfg, f);
        fclose(f);
    }
}

static void expect(wobble_ctx *ctx, const char *name, int status, const char *needle) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    wobble_model *m = (wobble_model *)1;
    int rc = wobble_model_load(ctx, p, NULL, &m);
    const char *msg = wobble_last_error(ctx);
    CHECK(rc == status, "%s: status %d, expected %d (%s)", name, rc, status, msg);
    CHECK(m == NULL, "%s: no model on failure", name);
    CHECK(strstr(msg, needle) != NULL, "%s: message '%s' lacks '%s'", name, msg, needle);
    CHECK(strstr(msg, name) != NULL, "%s: message names the file: %s", name, msg);
    CHECK(strchr(msg, '\n') == NULL, "one line");
    printf("  %-16s -> %s\n", name, msg);
    if (rc == WOBBLE_OK) wobble_model_free(m);
}

static void set_offsets(json_t *t, long long a, long long b) {
    json_t *o = json_array();
    json_array_append_new(o, json_integer(a));
    json_array_append_new(o, json_integer(b));
    json_object_set_new(t, "data_offsets", o);
}

int main(void) {
    wobble_ctx *ctx = NULL;
    wobble_ctx_create(NULL, &ctx);
    char src[1024];
    snprintf(src, sizeof src, "%s/models/clip-f32-openai/model.safetensors", t_ref_dir());
    FILE *f = fopen(src, "rb");
    CHECK(f != NULL, "open %s", src);
    if (!f) return t_finish();
    fseek(f, 0, SEEK_END);
    orig_n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    orig = malloc(orig_n);
    CHECK(fread(orig, 1, orig_n, f) == orig_n, "read");
    fclose(f);
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | orig[i];
    CHECK(t_mkdtemp(tmpdir, sizeof tmpdir, "wobble_model_err") != NULL, "mkdtemp");

    json_t *h = header();
    json_object_del(h, "visual.ln_post.weight");
    write_model("missing_tensor", h, NULL, 0, NULL);
    json_decref(h);
    expect(ctx, "missing_tensor", WOBBLE_ECORRUPT, "missing tensor 'visual.ln_post.weight'");

    h = header(); /* same bytes, wrong shape: [32] -> [4, 8] */
    json_t *t = json_object_get(h, "visual.ln_pre.weight");
    json_object_set_new(t, "shape", json_pack("[i,i]", 4, 8));
    write_model("wrong_shape", h, NULL, 0, NULL);
    json_decref(h);
    expect(ctx, "wrong_shape", WOBBLE_ECORRUPT, "'visual.ln_pre.weight' has shape [4, 8], expected [32]");

    h = header(); /* shape and byte count disagree */
    t = json_object_get(h, "visual.proj");
    json_object_set_new(t, "shape", json_pack("[i,i]", 32, 25));
    write_model("lying_shape", h, NULL, 0, NULL);
    json_decref(h);
    expect(ctx, "lying_shape", WOBBLE_ECORRUPT, "shape x F32 needs");

    h = header(); /* every name unknown */
    json_t *h2 = json_object();
    const char *k;
    json_t *v;
    int i = 0;
    json_object_foreach(h, k, v) {
        char nk[64];
        snprintf(nk, sizeof nk, "layer%d.param", i++);
        json_object_set(h2, strcmp(k, "__metadata__") ? nk : k, v);
    }
    write_model("unknown_arch", h2, NULL, 0, NULL);
    json_decref(h);
    json_decref(h2);
    expect(ctx, "unknown_arch", WOBBLE_EFORMAT, "unknown architecture");

    h = header(); /* offsets past the data */
    t = json_object_get(h, "visual.proj");
    set_offsets(t, (long long)orig_n, (long long)orig_n + 32 * 24 * 4);
    write_model("bad_offsets", h, NULL, 0, NULL);
    json_decref(h);
    expect(ctx, "bad_offsets", WOBBLE_ECORRUPT, "outside the");

    h = header(); /* two tensors on the same bytes */
    json_t *a = json_object_get(h, "visual.ln_pre.weight"), *b = json_object_get(h, "visual.ln_pre.bias");
    json_object_set(b, "data_offsets", json_object_get(a, "data_offsets"));
    write_model("overlap", h, NULL, 0, NULL);
    json_decref(h);
    expect(ctx, "overlap", WOBBLE_ECORRUPT, "overlap");

    h = header(); /* integer dtype where floats are needed */
    t = json_object_get(h, "visual.ln_pre.weight");
    json_object_set_new(t, "dtype", json_string("I32"));
    write_model("int_dtype", h, NULL, 0, NULL);
    json_decref(h);
    expect(ctx, "int_dtype", WOBBLE_EFORMAT, "has dtype I32");

    /* truncated data, truncated header, lying header length, not JSON */
    h = header();
    write_model("truncated_data", h, orig + 8 + hlen, (orig_n - 8 - hlen) / 2, NULL);
    json_decref(h);
    expect(ctx, "truncated_data", WOBBLE_ECORRUPT, "outside the");
    {
        char p[1024];
        snprintf(p, sizeof p, "mkdir -p %s/truncated_header && head -c 100 %s > %s/truncated_header/model.safetensors",
                 tmpdir, src, tmpdir);
        CHECK(system(p) == 0, "truncate");
        expect(ctx, "truncated_header", WOBBLE_ECORRUPT, "runs past the end");
        snprintf(p, sizeof p, "mkdir -p %s/tiny && head -c 5 %s > %s/tiny/model.safetensors", tmpdir, src, tmpdir);
        CHECK(system(p) == 0, "truncate");
        expect(ctx, "tiny", WOBBLE_ECORRUPT, "no header");
        snprintf(p, sizeof p, "mkdir -p %s/huge_header && printf '\\377\\377\\377\\377\\377\\377\\377\\177{}' > %s/huge_header/model.safetensors",
                 tmpdir, tmpdir);
        CHECK(system(p) == 0, "printf");
        expect(ctx, "huge_header", WOBBLE_ECORRUPT, "over the");
        snprintf(p, sizeof p, "mkdir -p %s/not_json && printf '\\004\\000\\000\\000\\000\\000\\000\\000abcd' > %s/not_json/model.safetensors",
                 tmpdir, tmpdir);
        CHECK(system(p) == 0, "printf");
        expect(ctx, "not_json", WOBBLE_ECORRUPT, "not valid JSON");
    }

    /* NaN and Inf in the weights */
    {
        size_t dn = orig_n - 8 - hlen;
        uint8_t *d = malloc(dn);
        memcpy(d, orig + 8 + hlen, dn);
        json_t *hh = header();
        json_t *o = json_object_get(json_object_get(hh, "visual.ln_post.bias"), "data_offsets");
        long long off = json_integer_value(json_array_get(o, 0));
        float nanv = NAN, infv = INFINITY;
        memcpy(d + off + 8, &nanv, 4);
        write_model("nan_weight", hh, d, dn, NULL);
        expect(ctx, "nan_weight", WOBBLE_ECORRUPT, "'visual.ln_post.bias' holds NaN at element 2");
        memcpy(d + off + 8, &infv, 4);
        write_model("inf_weight", hh, d, dn, NULL);
        expect(ctx, "inf_weight", WOBBLE_ECORRUPT, "holds Inf");
        json_decref(hh);
        free(d);
    }

    /* heads that do not divide the width, from config.json */
    h = header();
    write_model("bad_heads", h, NULL, 0, "{\"vision\": {\"heads\": 5}}");
    expect(ctx, "bad_heads", WOBBLE_ECORRUPT, "not divisible into 5 heads");
    write_model("bad_config", h, NULL, 0, "{\"vision\": ");
    json_decref(h);
    expect(ctx, "bad_config", WOBBLE_ECORRUPT, "invalid JSON");

    /* sharded index pointing at a missing shard / a tensor not in its shard */
    {
        char p[1200];
        snprintf(p, sizeof p, "mkdir -p %s/shard_missing && cp %s %s/shard_missing/a.safetensors", tmpdir, src, tmpdir);
        CHECK(system(p) == 0, "cp");
        snprintf(p, sizeof p, "%s/shard_missing/model.safetensors.index.json", tmpdir);
        f = fopen(p, "w");
        fputs("{\"weight_map\": {\"visual.proj\": \"a.safetensors\", \"visual.ln_post.bias\": \"b.safetensors\"}}", f);
        fclose(f);
        expect(ctx, "shard_missing", WOBBLE_EIO, "b.safetensors: cannot open");
        snprintf(p, sizeof p, "mkdir -p %s/shard_lies && cp %s %s/shard_lies/a.safetensors", tmpdir, src, tmpdir);
        CHECK(system(p) == 0, "cp");
        snprintf(p, sizeof p, "%s/shard_lies/model.safetensors.index.json", tmpdir);
        f = fopen(p, "w");
        fputs("{\"weight_map\": {\"visual.proj\": \"a.safetensors\", \"visual.extra\": \"a.safetensors\"}}", f);
        fclose(f);
        expect(ctx, "shard_lies", WOBBLE_ECORRUPT, "'visual.extra' is listed in the index but missing");
    }

    /* missing folder; empty folder */
    expect(ctx, "no_such_model", WOBBLE_EIO, "cannot open");
    {
        char p[1200];
        snprintf(p, sizeof p, "mkdir -p %s/empty_dir", tmpdir);
        CHECK(system(p) == 0, "mkdir");
        expect(ctx, "empty_dir", WOBBLE_EIO, "no model.safetensors");
    }

    /* inputs: smaller than a patch, NaN pixels, wrong grid for CLIP */
    {
        wobble_model *m = NULL;
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/models/clip-f32-openai", t_ref_dir());
        CHECK(wobble_model_load(ctx, dir, NULL, &m) == WOBBLE_OK, "%s", wobble_last_error(ctx));
        float px[3 * 64 * 64] = {0}, e[24];
        CHECK(wobble_model_forward(ctx, m, px, 1, 8, 8, NULL, e, NULL) == WOBBLE_EINVAL, "8x8 < patch");
        CHECK(strstr(wobble_last_error(ctx), "smaller than one 16x16 patch"), "%s", wobble_last_error(ctx));
        CHECK(wobble_model_forward(ctx, m, px, 1, 32, 32, NULL, e, NULL) == WOBBLE_EINVAL, "CLIP grid");
        CHECK(strstr(wobble_last_error(ctx), "use a 64x64 input"), "%s", wobble_last_error(ctx));
        px[100] = NAN;
        CHECK(wobble_model_forward(ctx, m, px, 1, 64, 64, NULL, e, NULL) == WOBBLE_EINVAL, "NaN pixels");
        CHECK(strstr(wobble_last_error(ctx), "NaN"), "%s", wobble_last_error(ctx));
        wobble_model_free(m);
    }

    /* precision: an impossible value; bf16 where the CPU lacks it (forced by
     * WOBBLE_NO_BF16); a bf16 model refused by the fine-tuner's recorder */
    {
        wobble_model *m = NULL;
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/models/clip-f32-openai", t_ref_dir());
        wobble_model_params mp = wobble_model_default_params();
        mp.precision = (wobble_precision)7;
        CHECK(wobble_model_load(ctx, dir, &mp, &m) == WOBBLE_EINVAL && !m, "precision 7");
        CHECK(strstr(wobble_last_error(ctx), "neither fp32 (0) nor bf16 (1)"), "%s", wobble_last_error(ctx));
        CHECK(wobble_precision_parse("bf16") == WOBBLE_PRECISION_BF16 && wobble_precision_parse("fp16") == -1 &&
                  !strcmp(wobble_precision_name(WOBBLE_PRECISION_FP32), "fp32"),
              "precision names");
        const int had = wobble_bf16_supported();
        setenv("WOBBLE_NO_BF16", "1", 1);
        mp.precision = WOBBLE_PRECISION_BF16;
        CHECK(!wobble_bf16_supported(), "WOBBLE_NO_BF16 hides AVX512_BF16");
        CHECK(wobble_model_load(ctx, dir, &mp, &m) == WOBBLE_EINVAL && !m, "bf16 without AVX512_BF16");
        CHECK(strstr(wobble_last_error(ctx), "needs a CPU with AVX512_BF16"), "%s", wobble_last_error(ctx));
        unsetenv("WOBBLE_NO_BF16");
        CHECK(wobble_bf16_supported() == had, "support restored");
        if (had) {
            CHECK(wobble_model_load(ctx, dir, &mp, &m) == WOBBLE_OK, "%s", wobble_last_error(ctx));
            wobble_finetune_params fp = wobble_finetune_default_params();
            CHECK(wobble_finetune_check_params(ctx, m, &fp) == WOBBLE_EINVAL &&
                      strstr(wobble_last_error(ctx), "fine-tuning runs in fp32"),
                  "a bf16 model is refused for fine-tuning: %s", wobble_last_error(ctx));
            wobble_model_free(m);
        }
    }

    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    CHECK(system(cmd) == 0, "cleanup");
    free(orig);
    wobble_ctx_free(ctx);
    return t_finish();
}
