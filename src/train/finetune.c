/*
 * wobble finetune: robust fine-tuning of an image tower (docs/finetuning.md).
 *
 * Data: any dataset wobble eval reads. With --val N, the first N images of
 * a seeded permutation are held out for validation; the rest train. The
 * frozen targets f(x) of every image are computed once, before any update,
 * and kept in OUT/state/targets.npy. With views K > 1 (augmentation) each
 * image has K fixed views (the image and K - 1 seeded crops), each with its
 * own frozen target; every batch slot draws one.
 *
 * Step s (1-based) draws its batch from an epoch permutation (epoch =
 * position / n_train, seeded by (seed, epoch)) and, for each image, an op and
 * a level from hashes of (seed, s, slot): nothing but the step number is
 * needed to continue, so a resumed run repeats the uninterrupted one exactly.
 * The clean and perturbed images go through one recorded forward pass, the
 * loss's gradient through the backward pass, then global-norm clipping, the
 * warm-up + cosine schedule and AdamW.
 *
 * OUT/state/state.bin (weights of the trainable parameters, AdamW moments,
 * step) is written atomically every save_every steps and at the end;
 * OUT/model.safetensors (all tensors, the checkpoint's names and dtypes) and
 * the model folder's config files at the end. train_log.jsonl and val.jsonl
 * get one line per step / validation; on resume they are cut back to the
 * saved step. OUT/finetune.json locks the configuration: resuming with
 * another model, dataset or setting is refused.
 */
#include "train.h"

#include "../eval/eval_internal.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>


wobble_finetune_params wobble_finetune_default_params(void) {
    wobble_finetune_params p;
    memset(&p, 0, sizeof p);
    p.tune = wobble_tune_default_params();
    p.steps = 150;
    p.batch = 16;
    p.lr = 1e-4;
    p.warmup = -1; /* 10% of the steps */
    p.clip = 1.0;
    p.val = 0;
    p.views = 1;
    p.val_every = 50;
    p.save_every = 50;
    return p;
}

static uint64_t mix(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
    return core_splitmix64(core_splitmix64(core_splitmix64(core_splitmix64(a) ^ b) ^ c) ^ d);
}

/* Fisher-Yates with a SplitMix64 stream */
static void permute(int *v, int n, uint64_t key) {
    for (int i = 0; i < n; i++) v[i] = i;
    for (int i = n - 1; i > 0; i--) {
        key = core_splitmix64(key);
        int j = (int)(key % (uint64_t)(i + 1));
        int t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

static const char *scope_name(wobble_scope s) {
    return s == WOBBLE_SCOPE_ALL ? "all" : s == WOBBLE_SCOPE_LAST ? "last" : "norms";
}

/* Data parallelism: sum n doubles over the processes (the caller's MPI). */
static int dp_sum(const wobble_finetune_params *P, wobble_ctx *ctx, double *v, size_t n) {
    if (P->ranks <= 1) return WOBBLE_OK;
    return P->allreduce(P->comm, v, n) == 0 ? WOBBLE_OK
                                              : core_seterr(ctx, WOBBLE_EIO, "finetune: the reduction over %d processes failed",
                                                            P->ranks);
}

int wobble_finetune_check_params(wobble_ctx *ctx, const wobble_model *m, const wobble_finetune_params *p) {
    if (!p) return core_seterr(ctx, WOBBLE_EINVAL, "finetune: NULL parameters");
    int rc = wobble_tune_check_params(ctx, m, &p->tune);
    if (rc) return rc;
    if (p->steps < 1) return core_seterr(ctx, WOBBLE_EDOMAIN, "steps %d: must be >= 1", p->steps);
    if (p->batch < 1 || p->batch > 4096)
        return core_seterr(ctx, WOBBLE_EDOMAIN, "batch %d: must be in 1..4096", p->batch);
    if (!(p->lr > 0) || !isfinite(p->lr) || p->lr > 1.0)
        return core_seterr(ctx, WOBBLE_EDOMAIN, "learning rate %g: must be in (0, 1]", p->lr);
    if (p->warmup >= p->steps)
        return core_seterr(ctx, WOBBLE_EDOMAIN, "warm-up %d steps: must be fewer than the %d steps", p->warmup,
                             p->steps);
    if (!(p->clip >= 0) || !isfinite(p->clip))
        return core_seterr(ctx, WOBBLE_EDOMAIN, "gradient clip %g: must be >= 0 (0: off)", p->clip);
    if (p->ranks > 1 && (p->rank < 0 || p->rank >= p->ranks || !p->allreduce || p->batch < p->ranks))
        return core_seterr(ctx, WOBBLE_EINVAL, "finetune: rank %d of %d (batch %d) needs a reduction and a batch of at "
                           "least one image per process", p->rank, p->ranks, p->batch);
    if (p->views < 0 || p->views > 256)
        return core_seterr(ctx, WOBBLE_EDOMAIN, "views %d: must be in 1..256 (0: 1)", p->views);
    if (p->val < 0 || p->val_every < 1 || p->save_every < 1)
        return core_seterr(ctx, WOBBLE_EDOMAIN, "val %d, val_every %d, save_every %d: must be >= 0, >= 1, >= 1",
                             p->val, p->val_every, p->save_every);
    if (p->n_ops < 1 || !p->ops) return core_seterr(ctx, WOBBLE_EINVAL, "finetune: at least one operation is needed");
    for (int i = 0; i < p->n_ops; i++) {
        const wobble_finetune_op *o = &p->ops[i];
        const wobble_op_info *info = wobble_op_find(o->name);
        if (!info) return core_seterr(ctx, WOBBLE_ENOTFOUND, "unknown operation '%s' (see 'wobble ops')", o->name);
        if (o->range) {
            if (!(o->lo < o->hi))
                return core_seterr(ctx, WOBBLE_EDOMAIN, "%s: range %g-%g is empty (low must be below high)", o->name,
                                     o->lo, o->hi);
            if ((rc = wobble_op_check_level(ctx, info, o->lo)) || (rc = wobble_op_check_level(ctx, info, o->hi))) return rc;
        } else {
            if (o->n_levels < 1 || !o->levels)
                return core_seterr(ctx, WOBBLE_EINVAL, "%s: no levels", o->name);
            for (int k = 0; k < o->n_levels; k++)
                if ((rc = wobble_op_check_level(ctx, info, o->levels[k]))) return rc;
        }
    }
    return WOBBLE_OK;
}

/* 53 bits of r as a double in [0, 1) */
static double u01(uint64_t r) { return (double)(r >> 11) * (1.0 / 9007199254740992.0); }

/* Level of op o for draw u in [0, 1) */
static double draw_level(const wobble_finetune_op *o, uint64_t r) {
    if (!o->range) return o->levels[r % (uint64_t)o->n_levels];
    const double u = u01(r);
    double v = o->lo + u * (o->hi - o->lo);
    const wobble_op_info *info = wobble_op_find(o->name);
    if (info->integer) {
        v = floor(o->lo + u * (o->hi - o->lo + 1));
        if (v > o->hi) v = o->hi;
    }
    return v;
}

/* Validation levels of an op: its levels, or 5 evenly spaced across a range. */
static int val_levels(const wobble_finetune_op *o, double *out) {
    if (!o->range) {
        for (int k = 0; k < o->n_levels; k++) out[k] = o->levels[k];
        return o->n_levels;
    }
    const wobble_op_info *info = wobble_op_find(o->name);
    for (int k = 0; k < 5; k++) {
        out[k] = o->lo + (o->hi - o->lo) * k / 4.0;
        if (info->integer) out[k] = floor(out[k] + 0.5);
    }
    return 5;
}

/* ------------------------------------------------------------------ the run */

typedef struct {
    wobble_ctx *ctx;
    wobble_model *m;
    const wobble_dataset *ds;
    const wobble_finetune_params *P;
    const char *out;
    int n, n_train, n_val, E, H, W;
    int *perm_all;  /* seeded permutation: [0, n_val) validation, the rest training */
    int K;          /* views per image (1: no augmentation) */
    float *targets; /* [n * K, E] frozen f(view v of image i) at row i * K + v, dataset order */
    wobble_tuner *t;
    char err[1200];
} run_t;

/* View v of an image: v = 0 is the image itself; v >= 1 a crop whose area
 * is 30-100% of the image's and whose aspect ratio is 3/4 to 4/3 (both drawn
 * uniformly, the ratio on a log scale), placed uniformly, and mirrored
 * left-right with probability 1/2; all drawn from `key`. The model's own
 * preprocessing (resize, centre crop) follows, as for any image. */
static double unit(uint64_t *key) {
    *key = core_splitmix64(*key);
    return u01(*key);
}

static int make_view(wobble_ctx *ctx, const wobble_image *img, uint64_t key, wobble_image **out) {
    const int W = wobble_image_width(img), H = wobble_image_height(img);
    const double area = (0.3 + 0.7 * unit(&key)) * W * H, ar = exp(log(0.75) + unit(&key) * 2 * log(4.0 / 3.0));
    int w = (int)lround(sqrt(area * ar)), h = (int)lround(sqrt(area / ar));
    w = w < 1 ? 1 : w > W ? W : w;
    h = h < 1 ? 1 : h > H ? H : h;
    const int x0 = (int)(unit(&key) * (W - w + 1)), y0 = (int)(unit(&key) * (H - h + 1));
    const int flip = unit(&key) < 0.5;
    int rc = wobble_image_create(ctx, w, h, out);
    if (rc) return rc;
    const uint8_t *src = wobble_image_data(img);
    uint8_t *dst = wobble_image_data_mut(*out);
    for (int y = 0; y < h; y++) {
        const uint8_t *row = src + ((size_t)(y0 + y) * W + x0) * 3;
        uint8_t *o = dst + (size_t)y * w * 3;
        if (!flip) {
            memcpy(o, row, (size_t)w * 3);
        } else {
            for (int x = 0; x < w; x++) memcpy(o + (size_t)x * 3, row + (size_t)(w - 1 - x) * 3, 3);
        }
    }
    return WOBBLE_OK;
}

static int load_pixels(run_t *R, int idx, int view, const wobble_finetune_op *op, double level, uint64_t noise_seed,
                       float *x, float *xp) {
    wobble_image *img = NULL, *pimg = NULL;
    int rc = wobble_dataset_load(R->ctx, R->ds, idx, &img);
    int h = 0, w = 0;
    if (rc == WOBBLE_OK && view > 0) {
        wobble_image *v = NULL;
        rc = make_view(R->ctx, img, mix(R->P->seed, 0x71E3, (uint64_t)idx, (uint64_t)view), &v);
        wobble_image_free(img);
        img = v;
    }
    if (rc == WOBBLE_OK && x) {
        rc = wobble_model_preprocess(R->ctx, R->m, img, x, &h, &w);
        if (rc == WOBBLE_OK && (h != R->H || w != R->W))
            rc = core_seterr(R->ctx, WOBBLE_EINVAL, "%s: preprocessed to %dx%d, not %dx%d like the first image",
                               wobble_dataset_item(R->ds, idx), w, h, R->W, R->H);
    }
    if (rc == WOBBLE_OK && op) {
        wobble_perturb_params pp = wobble_perturb_default_params();
        pp.seed = noise_seed;
        pp.image_id = (uint64_t)idx;
        rc = wobble_perturb(R->ctx, op->name, img, level, &pp, &pimg);
        if (rc == WOBBLE_OK) rc = wobble_model_preprocess(R->ctx, R->m, pimg, xp, &h, &w);
    }
    wobble_image_free(img);
    wobble_image_free(pimg);
    return rc;
}

/* f(x) of every view of every image with the model as loaded (before any update) */
static int compute_targets(run_t *R) {
    char path[4200];
    snprintf(path, sizeof path, "%s/state/targets.npy", R->out);
    wobble_array a;
    if (access(path, F_OK) == 0 && wobble_npy_read(R->ctx, path, &a) == WOBBLE_OK) {
        if (a.dtype == 'f' && a.ndim == 2 && a.shape[0] == (int64_t)R->n * R->K && a.shape[1] == R->E) {
            memcpy(R->targets, a.data, sizeof(float) * (size_t)R->n * R->K * R->E);
            wobble_array_release(&a);
            return WOBBLE_OK;
        }
        wobble_array_release(&a);
    }
    const size_t per = (size_t)3 * R->H * R->W;
    const int B = 16;
    float *x = malloc(sizeof(float) * per * B);
    if (!x) return core_seterr(R->ctx, WOBBLE_ENOMEM, "finetune: out of memory");
    int rc = WOBBLE_OK;
    const int nv = R->n * R->K;
    for (int s = 0; s < nv && rc == WOBBLE_OK; s += B) {
        const int c = nv - s < B ? nv - s : B;
        for (int i = 0; i < c && rc == WOBBLE_OK; i++)
            rc = load_pixels(R, (s + i) / R->K, (s + i) % R->K, NULL, 0, 0, x + per * i, NULL);
        if (rc == WOBBLE_OK)
            rc = wobble_model_forward(R->ctx, R->m, x, c, R->H, R->W, NULL, R->targets + (size_t)s * R->E, NULL);
        if (R->P->progress) {
            wobble_finetune_status st = {0};
            st.phase = "targets";
            st.step = s + c;
            st.steps = nv;
            R->P->progress(R->P->user, &st);
        }
    }
    free(x);
    if (rc) return rc;
    /* data parallel: rank 0 keeps the cache (it alone made the state folder;
     * another rank writing there could run before it exists) */
    if (R->P->ranks > 1 && R->P->rank != 0) return WOBBLE_OK;
    const int64_t shape[2] = {nv, R->E};
    return wobble_npy_write_f32(R->ctx, path, R->targets, 2, shape);
}

/* R_div per op and mean cos(f(x), f'(x)) over the validation images */
static int validate(run_t *R, json_t **out_line, int64_t step) {
    const wobble_finetune_params *P = R->P;
    const size_t per = (size_t)3 * R->H * R->W;
    double lv[64];
    int maxk = 1;
    for (int o = 0; o < P->n_ops; o++) {
        int k = val_levels(&P->ops[o], lv);
        if (k > maxk) maxk = k;
    }
    float *x = malloc(sizeof(float) * per * (1 + maxk)), *e = malloc(sizeof(float) * (size_t)R->E * (1 + maxk));
    double *rdiv = calloc((size_t)P->n_ops, sizeof(double));
    if (!x || !e || !rdiv) {
        free(x), free(e), free(rdiv);
        return core_seterr(R->ctx, WOBBLE_ENOMEM, "finetune: out of memory");
    }
    double cos_sum = 0;
    int rc = WOBBLE_OK;
    for (int v = 0; v < R->n_val && rc == WOBBLE_OK; v++) {
        const int idx = R->perm_all[v];
        for (int o = 0; o < P->n_ops && rc == WOBBLE_OK; o++) {
            const int K = val_levels(&P->ops[o], lv);
            rc = load_pixels(R, idx, 0, NULL, 0, 0, x, NULL);
            for (int k = 0; k < K && rc == WOBBLE_OK; k++)
                rc = load_pixels(R, idx, 0, &P->ops[o], lv[k], mix(P->seed, 0xA11DA7E, (uint64_t)o, (uint64_t)k), NULL,
                                 x + per * (1 + k));
            if (rc == WOBBLE_OK) rc = wobble_model_forward(R->ctx, R->m, x, 1 + K, R->H, R->W, NULL, e, NULL);
            wobble_robustness rb;
            if (rc == WOBBLE_OK) rc = wobble_robustness_compute(R->ctx, e, e + R->E, K, R->E, NULL, NULL, &rb);
            if (rc == WOBBLE_OK) rdiv[o] += rb.div_radius;
            if (rc == WOBBLE_OK && o == 0) {
                const float *tg = R->targets + (size_t)idx * R->K * R->E;
                double d = 0, na = 0, nb = 0;
                for (int j = 0; j < R->E; j++) d += (double)tg[j] * e[j], na += (double)tg[j] * tg[j], nb += (double)e[j] * e[j];
                cos_sum += d / sqrt(na * nb);
            }
        }
    }
    if (rc == WOBBLE_OK) {
        json_t *j = json_object(), *r = json_object();
        json_object_set_new(j, "step", json_integer(step));
        json_object_set_new(j, "images", json_integer(R->n_val));
        json_object_set_new(j, "cos_clean", json_real(cos_sum / R->n_val));
        double mean = 0;
        for (int o = 0; o < P->n_ops; o++) {
            json_object_set_new(r, P->ops[o].name, json_real(rdiv[o] / R->n_val));
            mean += rdiv[o] / R->n_val / P->n_ops;
        }
        json_object_set_new(j, "R_div", r);
        json_object_set_new(j, "R_div_mean", json_real(mean));
        *out_line = j;
    }
    free(x), free(e), free(rdiv);
    return rc;
}

static double lr_at(const wobble_finetune_params *P, int64_t step) {
    const int warm = P->warmup >= 0 ? P->warmup : P->steps / 10;
    if (step <= warm) return P->lr * (double)step / (warm + 1);
    const double prog = (double)(step - warm) / (double)(P->steps - warm);
    return P->lr * 0.5 * (1.0 + cos(M_PI * prog));
}

/* ------------------------------------------------------------------ state */

#define STATE_MAGIC "WOBBLEFT"

static int save_state(run_t *R, uint64_t cfg_hash) {
    char path[4200];
    snprintf(path, sizeof path, "%s/state/state.bin", R->out);
    const size_t nt = wobble_tuner_num_trainable(R->t);
    const size_t size = 8 + 8 + 8 + 8 + 3 * nt * sizeof(float);
    uint8_t *b = malloc(size), *p = b;
    if (!b) return core_seterr(R->ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
    float *m1, *m2;
    int64_t *step;
    wobble_tuner_state(R->t, &m1, &m2, &step);
    const uint64_t n64 = nt;
    memcpy(p, STATE_MAGIC, 8), p += 8;
    memcpy(p, &cfg_hash, 8), p += 8;
    memcpy(p, step, 8), p += 8;
    memcpy(p, &n64, 8), p += 8;
    for (int i = 0; i < wobble_tuner_count(R->t); i++) {
        wobble_param_view v;
        wobble_tuner_param(R->t, i, &v);
        if (!v.trainable) continue;
        memcpy(p, v.data, sizeof(float) * v.n), p += sizeof(float) * v.n;
    }
    memcpy(p, m1, sizeof(float) * nt), p += sizeof(float) * nt;
    memcpy(p, m2, sizeof(float) * nt);
    int rc = wobble_write_file_atomic(R->ctx, path, b, size);
    free(b);
    return rc;
}

static int load_state(run_t *R, uint64_t cfg_hash, int64_t *step_out) {
    char path[4200];
    snprintf(path, sizeof path, "%s/state/state.bin", R->out);
    uint8_t *b = NULL;
    size_t size = 0;
    int rc = core_read_file(R->ctx, path, &b, &size);
    if (rc) return rc;
    const size_t nt = wobble_tuner_num_trainable(R->t);
    uint64_t h, n64;
    int64_t st;
    if (size != 32 + 3 * nt * sizeof(float) || memcmp(b, STATE_MAGIC, 8)) {
        free(b);
        return core_seterr(R->ctx, WOBBLE_ECORRUPT, "%s: not a training state of this run (%zu bytes)", path, size);
    }
    memcpy(&h, b + 8, 8);
    memcpy(&st, b + 16, 8);
    memcpy(&n64, b + 24, 8);
    if (h != cfg_hash || n64 != nt || st < 0 || st > R->P->steps) {
        free(b);
        return core_seterr(R->ctx, WOBBLE_ECORRUPT, "%s: the training state belongs to another run", path);
    }
    const uint8_t *p = b + 32;
    for (int i = 0; i < wobble_tuner_count(R->t); i++) {
        wobble_param_view v;
        wobble_tuner_param(R->t, i, &v);
        if (!v.trainable) continue;
        memcpy(v.data, p, sizeof(float) * v.n), p += sizeof(float) * v.n;
    }
    float *m1, *m2;
    int64_t *step;
    wobble_tuner_state(R->t, &m1, &m2, &step);
    memcpy(m1, p, sizeof(float) * nt), p += sizeof(float) * nt;
    memcpy(m2, p, sizeof(float) * nt);
    *step = st;
    *step_out = st;
    free(b);
    return WOBBLE_OK;
}

/* Keep the lines of a JSONL log whose "step" is <= step (atomic rewrite). */
static int cut_log(run_t *R, const char *name, int64_t step) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", R->out, name);
    if (access(path, F_OK) != 0) return WOBBLE_OK;
    uint8_t *b = NULL;
    size_t size = 0;
    int rc = core_read_file(R->ctx, path, &b, &size);
    if (rc) return rc;
    char *o = malloc(size + 1);
    size_t on = 0;
    char *s = (char *)b, *end = s + size;
    while (s < end) {
        char *nl = memchr(s, '\n', (size_t)(end - s));
        if (!nl) break; /* an unfinished last line is dropped */
        json_t *j = json_loadb(s, (size_t)(nl - s), 0, NULL);
        if (j && json_integer_value(json_object_get(j, "step")) <= step) {
            memcpy(o + on, s, (size_t)(nl - s + 1));
            on += (size_t)(nl - s + 1);
        }
        json_decref(j);
        s = nl + 1;
    }
    rc = wobble_write_file_atomic(R->ctx, path, o, on);
    free(o);
    free(b);
    return rc;
}

static int append_line(run_t *R, const char *name, json_t *j) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", R->out, name);
    char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9));
    if (!s) return core_seterr(R->ctx, WOBBLE_ENOMEM, "out of memory");
    FILE *f = fopen(path, "a");
    int rc = WOBBLE_OK;
    if (!f || fprintf(f, "%s\n", s) < 0 || fclose(f) != 0)
        rc = core_seterr(R->ctx, WOBBLE_EIO, "%s: cannot append: %s", path, strerror(errno));
    free(s);
    return rc;
}

/* The model folder's other files (configs, tokenizer), copied unchanged. */
static int copy_side_files(run_t *R) {
    struct stat st;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", R->P->model_path ? R->P->model_path : "");
    if (stat(dir, &st) != 0) return WOBBLE_OK;
    if (!S_ISDIR(st.st_mode)) {
        char *sl = strrchr(dir, '/');
        if (sl) *sl = 0;
        else snprintf(dir, sizeof dir, ".");
    }
    char **names = NULL;
    int count = 0;
    if (core_list_dir(dir, &names, &count) == -1) return core_seterr(R->ctx, WOBBLE_ENOMEM, "%s: out of memory", dir);
    int rc = WOBBLE_OK;
    for (int i = 0; i < count && rc == WOBBLE_OK; i++) {
        const char *nm = names[i];
        const size_t l = strlen(nm);
        if ((l > 12 && !strcmp(nm + l - 12, ".safetensors")) || strstr(nm, ".safetensors.index.json")) continue;
        char src[8300], dst[8300];
        snprintf(src, sizeof src, "%s/%s", dir, nm);
        if (stat(src, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (64 << 20)) continue;
        snprintf(dst, sizeof dst, "%s/%s", R->out, nm);
        uint8_t *b = NULL;
        size_t n = 0;
        rc = core_read_file(R->ctx, src, &b, &n);
        if (rc == WOBBLE_OK) rc = wobble_write_file_atomic(R->ctx, dst, b, n);
        free(b);
    }
    core_free_names(names, count);
    return rc;
}

static json_t *config_json(run_t *R, wobble_model *m) {
    const wobble_finetune_params *P = R->P;
    json_t *c = json_object();
    char hash[32];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)model_content_hash(m));
    json_object_set_new(c, "model", json_pack("{s:s,s:s}", "path", P->model_path ? P->model_path : "", "content_hash", hash));
    json_object_set_new(c, "dataset", json_pack("{s:s,s:i,s:i}", "path", P->data_path ? P->data_path : "", "images", R->n,
                                                "limit", P->data_limit));
    if (P->labels_path) json_object_set_new(json_object_get(c, "dataset"), "labels", json_string(P->labels_path));
    json_t *ops = json_array();
    for (int i = 0; i < P->n_ops; i++) {
        const wobble_finetune_op *o = &P->ops[i];
        json_t *oj = json_pack("{s:s}", "op", o->name);
        if (o->range) {
            json_object_set_new(oj, "range", json_pack("[ff]", o->lo, o->hi));
        } else {
            json_t *lv = json_array();
            for (int k = 0; k < o->n_levels; k++) json_array_append_new(lv, json_real(o->levels[k]));
            json_object_set_new(oj, "levels", lv);
        }
        json_array_append_new(ops, oj);
    }
    json_object_set_new(c, "ops", ops);
    const wobble_tune_params *T = &P->tune;
    json_object_set_new(c, "objective", json_string(T->objective == WOBBLE_OBJECTIVE_COS ? "cos" : "l2"));
    json_object_set_new(c, "lambda", json_real(T->lambda));
    json_object_set_new(c, "scope", json_string(scope_name(T->scope)));
    json_object_set_new(c, "last_blocks", json_integer(T->scope == WOBBLE_SCOPE_LAST ? T->last_blocks : 0));
    json_object_set_new(c, "steps", json_integer(P->steps));
    json_object_set_new(c, "batch", json_integer(P->batch));
    if (R->K > 1) json_object_set_new(c, "views", json_integer(R->K)); /* absent: 1 (runs before views existed) */
    json_object_set_new(c, "lr", json_real(P->lr));
    json_object_set_new(c, "warmup", json_integer(P->warmup >= 0 ? P->warmup : P->steps / 10));
    json_object_set_new(c, "clip", json_real(P->clip));
    json_object_set_new(c, "adamw", json_pack("{s:f,s:f,s:f,s:f}", "beta1", T->beta1, "beta2", T->beta2, "eps", T->eps,
                                              "weight_decay", T->weight_decay));
    json_object_set_new(c, "val", json_integer(P->val));
    json_object_set_new(c, "val_every", json_integer(P->val_every));
    json_object_set_new(c, "save_every", json_integer(P->save_every));
    json_object_set_new(c, "seed", json_integer((json_int_t)P->seed));
    json_object_set_new(c, "threads", json_integer(wobble_ctx_threads(R->ctx)));
    return c;
}

static uint64_t hash_str(const char *s) { return core_fnv1a(CORE_FNV_INIT, s, strlen(s)); }

int wobble_finetune_run(wobble_ctx *ctx, wobble_model *m, const wobble_dataset *ds, const wobble_finetune_params *P,
                        const char *out, wobble_finetune_summary *sum) {
    if (!m || !ds || !P || !out) return core_seterr(ctx, WOBBLE_EINVAL, "finetune: NULL argument");
    int rc = wobble_finetune_check_params(ctx, m, P);
    if (rc) return rc;
    run_t R;
    memset(&R, 0, sizeof R);
    R.ctx = ctx, R.m = m, R.ds = ds, R.P = P, R.out = out;
    R.n = wobble_dataset_size(ds);
    R.E = m->embed_dim;
    R.K = P->views > 1 ? P->views : 1;
    if (R.n < 1) return core_seterr(ctx, WOBBLE_EINVAL, "%s: the dataset holds no images", P->data_path ? P->data_path : "data");
    if (P->val >= R.n)
        return core_seterr(ctx, WOBBLE_EDOMAIN, "--val %d: the dataset has only %d images (some must train)", P->val, R.n);
    R.n_val = P->val;
    R.n_train = R.n - R.n_val;
    /* input size from the first image */
    {
        wobble_image *img = NULL;
        rc = wobble_dataset_load(ctx, ds, 0, &img);
        if (rc == WOBBLE_OK) rc = wobble_model_preprocess(ctx, m, img, NULL, &R.H, &R.W);
        wobble_image_free(img);
        if (rc) return rc;
    }
    /* configuration lock (data parallel: rank 0 keeps it, the others follow) */
    const int dp = P->ranks > 1, writer = !dp || P->rank == 0;
    char path[4200];
    if (writer && (rc = wobble_mkdirs(ctx, out))) return rc;
    snprintf(path, sizeof path, "%s/state", out);
    if (writer && (rc = wobble_mkdirs(ctx, path))) return rc;
    json_t *cfg = config_json(&R, m);
    json_t *cfg_nothreads = json_deep_copy(cfg);
    json_object_del(cfg_nothreads, "threads");
    char *cfg_s = json_dumps(cfg_nothreads, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
    json_decref(cfg_nothreads);
    const uint64_t cfg_hash = hash_str(cfg_s);
    free(cfg_s);
    snprintf(path, sizeof path, "%s/finetune.json", out);
    const int have = writer && access(path, F_OK) == 0;
    if (have && !P->resume) {
        json_decref(cfg);
        return core_seterr(ctx, WOBBLE_EINVAL, "%s: already holds a fine-tuning run (continue it with --resume, or use another folder)", out);
    }
    if (have) {
        json_t *old = json_load_file(path, 0, NULL);
        json_t *oc = old ? json_deep_copy(json_object_get(old, "config")) : NULL;
        if (oc) json_object_del(oc, "threads");
        char *os = oc ? json_dumps(oc, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17)) : NULL;
        const int same = os && hash_str(os) == cfg_hash;
        free(os);
        json_decref(oc);
        json_decref(old);
        if (!same) {
            json_decref(cfg);
            return core_seterr(ctx, WOBBLE_EINVAL,
                                 "%s: holds a run of another model, dataset or setting (%s/finetune.json); use another folder",
                                 out, out);
        }
    } else if (writer) {
        json_t *doc = json_pack("{s:s, s:O}", "wobble", wobble_version(), "config", cfg);
        rc = eval_write_json(ctx, path, doc);
        json_decref(doc);
        if (rc) {
            json_decref(cfg);
            return rc;
        }
    }
    double t0 = core_now_s(), c0 = core_cpu_s();
    R.perm_all = malloc(sizeof(int) * (size_t)R.n);
    R.targets = malloc(sizeof(float) * (size_t)R.n * R.K * R.E);
    int *perm = malloc(sizeof(int) * (size_t)(R.n_train ? R.n_train : 1));
    const size_t per = (size_t)3 * R.H * R.W;
    float *x = malloc(sizeof(float) * per * P->batch), *xp = malloc(sizeof(float) * per * P->batch);
    float *tg = malloc(sizeof(float) * (size_t)R.E * P->batch);
    json_t *val_first = NULL, *val_last = NULL;
    wobble_loss last = {0, 0, 0};
    int64_t step = 0, start_step = 0;
    double t_train = 0;
    int cur_epoch = -1;
    double *red = NULL; /* data parallel: the gradient and the loss sums, reduced over the processes */
    size_t ntr = 0;
    if (!R.perm_all || !R.targets || !perm || !x || !xp || !tg) {
        rc = core_seterr(ctx, WOBBLE_ENOMEM, "finetune: out of memory for batch %d", P->batch);
        goto done;
    }
    permute(R.perm_all, R.n, mix(P->seed, 0x5EED5, 0, 0));
    /* the targets f(x) through the same arithmetic as the trained f'(x), so
     * that f' starts exactly at f (training leaves the fp32 kernel's packed
     * copies, which hold the weights as loaded) */
    model_drop_f32(m);
    if ((rc = compute_targets(&R))) goto done;
    if ((rc = wobble_tuner_create(ctx, m, &P->tune, &R.t))) goto done;
    snprintf(path, sizeof path, "%s/state/state.bin", out);
    if (P->resume && access(path, F_OK) == 0) {
        if ((rc = load_state(&R, cfg_hash, &start_step))) goto done;
    } else {
        start_step = 0;
    }
    if (writer && ((rc = cut_log(&R, "train_log.jsonl", start_step)) || (rc = cut_log(&R, "val.jsonl", start_step))))
        goto done;
    if (writer && start_step == 0) {
        snprintf(path, sizeof path, "%s/train_log.jsonl", out);
        unlink(path);
        snprintf(path, sizeof path, "%s/val.jsonl", out);
        unlink(path);
    }
    if (writer && R.n_val && start_step == 0) {
        if ((rc = validate(&R, &val_first, 0))) goto done;
        if ((rc = append_line(&R, "val.jsonl", val_first))) goto done;
    }
    ntr = wobble_tuner_num_trainable(R.t);
    if (dp && !(red = malloc(sizeof(double) * (ntr + 4)))) {
        rc = core_seterr(ctx, WOBBLE_ENOMEM, "finetune: out of memory for the gradient reduction");
        goto done;
    }
    for (step = start_step + 1; step <= P->steps; step++) {
        const double ts = core_now_s();
        /* the batch (data parallel: this process's items, packed) */
        int nl = 0;
        for (int i = 0; i < P->batch && rc == WOBBLE_OK; i++) {
            const int64_t pos = (step - 1) * (int64_t)P->batch + i;
            const int epoch = (int)(pos / R.n_train);
            if (epoch != cur_epoch) {
                permute(perm, R.n_train, mix(P->seed, 0xE90C, (uint64_t)epoch, 0));
                cur_epoch = epoch;
            }
            const int idx = R.perm_all[R.n_val + perm[pos % R.n_train]];
            const uint64_t r = mix(P->seed, (uint64_t)step, (uint64_t)i, 0x0B5);
            const wobble_finetune_op *op = &P->ops[r % (uint64_t)P->n_ops];
            const double level = draw_level(op, mix(P->seed, (uint64_t)step, (uint64_t)i, 0x1E7E1));
            const int view = R.K > 1 ? (int)(mix(P->seed, (uint64_t)step, (uint64_t)i, 0x71E3) % (uint64_t)R.K) : 0;
            if (dp && i % P->ranks != P->rank) continue;
            rc = load_pixels(&R, idx, view, op, level, mix(P->seed, (uint64_t)step, (uint64_t)i, 0x9015E),
                             x + per * nl, xp + per * nl);
            memcpy(tg + (size_t)nl * R.E, R.targets + ((size_t)idx * R.K + view) * R.E, sizeof(float) * R.E);
            nl++;
        }
        wobble_tuner_zero_grad(R.t);
        if (!rc) rc = wobble_tuner_loss_grad(ctx, R.t, x, xp, tg, nl, R.H, R.W, &P->tune, &last, NULL, NULL);
        if (dp) {
            /* the batch's mean: each process's mean weighted by its share; a
             * failed process makes every process stop at the same step */
            const double w = (double)nl / P->batch;
            float *g = wobble_tuner_grad(R.t);
            for (size_t k = 0; k < ntr; k++) red[k] = rc ? 0.0 : w * g[k];
            red[ntr] = rc ? 0 : w * last.total, red[ntr + 1] = rc ? 0 : w * last.rob;
            red[ntr + 2] = rc ? 0 : w * last.util, red[ntr + 3] = rc != 0;
            const int rrc = dp_sum(P, ctx, red, ntr + 4);
            if (!rc && rrc) rc = rrc;
            if (!rc && red[ntr + 3] > 0)
                rc = core_seterr(ctx, WOBBLE_EIO, "finetune: step %lld failed in another process", (long long)step);
            for (size_t k = 0; !rc && k < ntr; k++) g[k] = (float)red[k];
            last.total = red[ntr], last.rob = red[ntr + 1], last.util = red[ntr + 2];
        }
        if (rc) goto done;
        if (!isfinite(last.total)) {
            rc = core_seterr(ctx, WOBBLE_EDOMAIN, "step %lld: the loss is not finite (lower the learning rate)", (long long)step);
            goto done;
        }
        const double gn = wobble_tuner_grad_norm(R.t);
        if (!isfinite(gn)) {
            rc = core_seterr(ctx, WOBBLE_EDOMAIN, "step %lld: the gradient is not finite (lower the learning rate)", (long long)step);
            goto done;
        }
        if (P->clip > 0 && gn > P->clip) wobble_tuner_scale_grad(R.t, P->clip / gn);
        const double lr = lr_at(P, step);
        wobble_tuner_adamw_step(R.t, lr, &P->tune);
        const double dt = core_now_s() - ts;
        t_train += dt;
        json_t *line = json_pack("{s:I,s:f,s:f,s:f,s:f,s:f,s:f}", "step", (json_int_t)step, "lr", lr, "loss", last.total,
                                 "L_rob", last.rob, "L_util", last.util, "grad_norm", gn, "images_per_s", P->batch / dt);
        if (writer) rc = append_line(&R, "train_log.jsonl", line);
        json_decref(line);
        if (rc) goto done;
        if (writer && R.n_val && (step % P->val_every == 0 || step == P->steps)) {
            json_decref(val_last);
            val_last = NULL;
            if ((rc = validate(&R, &val_last, step)) || (rc = append_line(&R, "val.jsonl", val_last))) goto done;
        }
        if (writer && (step % P->save_every == 0 || step == P->steps))
            if ((rc = save_state(&R, cfg_hash))) goto done;
        if (P->progress) {
            wobble_finetune_status st = {0};
            st.phase = "train";
            st.step = step;
            st.steps = P->steps;
            st.loss = last;
            st.grad_norm = gn;
            st.lr = lr;
            st.seconds = t_train;
            st.steps_done_here = step - start_step;
            P->progress(P->user, &st);
        }
    }
    /* the model */
    snprintf(path, sizeof path, "%s/%s", out, "model.safetensors");
    if (writer && (rc = copy_side_files(&R))) goto done;
    if (writer && (rc = wobble_tuner_save_weights(ctx, R.t, path))) goto done;
    if (writer && R.n_val && !val_first) {
        /* resumed: the step-0 line is in val.jsonl */
        snprintf(path, sizeof path, "%s/val.jsonl", out);
        FILE *f = fopen(path, "r");
        char line[8192];
        if (f && fgets(line, sizeof line, f)) val_first = json_loads(line, 0, NULL);
        if (f) fclose(f);
    }
    const double wall = core_now_s() - t0, cpu = core_cpu_s() - c0;
    if (writer) {
        json_t *doc = json_pack("{s:s, s:O}", "wobble", wobble_version(), "config", cfg);
        json_t *res = json_object();
        json_object_set_new(res, "steps_done", json_integer(P->steps));
        json_object_set_new(res, "resumed_from_step", json_integer(start_step));
        json_object_set_new(res, "final_loss", json_pack("{s:f,s:f,s:f}", "total", last.total, "L_rob", last.rob, "L_util", last.util));
        json_object_set_new(res, "trainable_parameters", json_integer((json_int_t)wobble_tuner_num_trainable(R.t)));
        json_object_set_new(res, "train_images", json_integer(R.n_train));
        json_object_set_new(res, "val_images", json_integer(R.n_val));
        json_object_set_new(res, "seconds_training", json_real(t_train));
        json_object_set_new(res, "seconds_total", json_real(wall));
        json_object_set_new(res, "cpu_seconds_total", json_real(cpu));
        if (val_first) json_object_set(res, "val_before", val_first);
        if (val_last) json_object_set(res, "val_after", val_last);
        json_object_set_new(doc, "result", res);
        snprintf(path, sizeof path, "%s/finetune.json", out);
        rc = eval_write_json(ctx, path, doc);
        json_decref(doc);
    }
    if (sum) {
        memset(sum, 0, sizeof *sum);
        sum->steps = P->steps;
        sum->start_step = (int)start_step;
        sum->loss = last;
        sum->train_images = R.n_train;
        sum->val_images = R.n_val;
        sum->seconds = t_train;
        sum->seconds_total = wall;
        sum->cpu_seconds = cpu;
        sum->trainable = wobble_tuner_num_trainable(R.t);
        if (val_first) {
            sum->val_cos_before = json_real_value(json_object_get(val_first, "cos_clean"));
            sum->val_rdiv_before = json_real_value(json_object_get(val_first, "R_div_mean"));
        }
        if (val_last) {
            sum->val_cos_after = json_real_value(json_object_get(val_last, "cos_clean"));
            sum->val_rdiv_after = json_real_value(json_object_get(val_last, "R_div_mean"));
        }
    }
done:
    free(red);
    json_decref(cfg);
    json_decref(val_first);
    json_decref(val_last);
    wobble_tuner_free(R.t);
    free(R.perm_all);
    free(R.targets);
    free(perm);
    free(x);
    free(xp);
    free(tg);
    return rc;
}
