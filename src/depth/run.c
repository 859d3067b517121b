/* Depth as a downstream task (wobble eval --task depth; docs/depth.md).
 * Stages over one run state, one cleanup path:
 *
 *   dr_train     features of the clean training images (cached in memory),
 *                the head trained on them, the mean-depth baselines
 *   dr_test      each test image clean and under every (op, level): one
 *                forward pass gives the embedding (robustness) and the
 *                tokens (depth), metrics per image, R_cos/R_euc/R_div per
 *                (image, op)
 *   dr_outputs   means, fits of the depth error against robustness at the
 *                (op, level), op and image-bin grains with leave-one-op-out
 *                errors; depth.json, depth.csv, depth_per_image.jsonl
 *                written together or not at all
 */
#include "depth.h"
#include "../model/model.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------ data sets */
struct wobble_depth_set {
    char **image, **depth;
    int n;
};

void wobble_depth_set_free(wobble_depth_set *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) free(s->image[i]), free(s->depth[i]);
    free(s->image), free(s->depth);
    free(s);
}
int wobble_depth_set_size(const wobble_depth_set *s) { return s ? s->n : 0; }
const char *wobble_depth_set_image(const wobble_depth_set *s, int i) { return s && i >= 0 && i < s->n ? s->image[i] : NULL; }
const char *wobble_depth_set_depth(const wobble_depth_set *s, int i) { return s && i >= 0 && i < s->n ? s->depth[i] : NULL; }

static int set_add(wobble_depth_set *s, size_t *cap_i, size_t *cap_d, const char *img, const char *dep) {
    if (core_grow(&s->image, cap_i, (size_t)s->n + 1, sizeof(char *)) ||
        core_grow(&s->depth, cap_d, (size_t)s->n + 1, sizeof(char *)))
        return -1;
    s->image[s->n] = strdup(img);
    s->depth[s->n] = strdup(dep);
    if (!s->image[s->n] || !s->depth[s->n]) {
        free(s->image[s->n]), free(s->depth[s->n]);
        return -1;
    }
    s->n++;
    return 0;
}

static int is_image_name(const char *n) {
    const char *dot = strrchr(n, '.');
    return dot && (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

int wobble_depth_set_open(wobble_ctx *ctx, const char *path, int first, int count, wobble_depth_set **out) {
    *out = NULL;
    if (first < 0 || count < 0) return core_seterr(ctx, WOBBLE_EINVAL, "%s: frame range %d+%d", path, first, count);
    wobble_depth_set *s = calloc(1, sizeof *s);
    if (!s) return core_seterr(ctx, WOBBLE_ENOMEM, "depth data: out of memory");
    size_t cap = 0, cap_d = 0;
    int rc = WOBBLE_OK;
    if (core_is_dir(path)) {
        /* PATH/image/NAME.{png,jpg} with PATH/depth/NAME.png */
        char *idir = core_path_join(path, "image"), *ddir = core_path_join(path, "depth");
        char **names = NULL;
        int nn = 0;
        if (!idir || !ddir) rc = core_seterr(ctx, WOBBLE_ENOMEM, "depth data: out of memory");
        else if (!core_is_dir(idir) || !core_is_dir(ddir))
            rc = core_seterr(ctx, WOBBLE_EIO, "%s: not a depth data folder (needs image/ and depth/ subfolders)", path);
        else if (core_list_dir(idir, &names, &nn))
            rc = core_seterr(ctx, WOBBLE_EIO, "%s: cannot be listed", idir);
        for (int i = 0; !rc && i < nn; i++) {
            if (!is_image_name(names[i])) continue;
            const char *dot = strrchr(names[i], '.');
            char ip[4096], dpth[4096];
            snprintf(ip, sizeof ip, "%s/%s", idir, names[i]);
            snprintf(dpth, sizeof dpth, "%s/%.*s.png", ddir, (int)(dot - names[i]), names[i]);
            FILE *f = fopen(dpth, "rb");
            if (!f) {
                rc = core_seterr(ctx, WOBBLE_EIO, "%s: missing (the depth map of %s)", dpth, ip);
                break;
            }
            fclose(f);
            if (set_add(s, &cap, &cap_d, ip, dpth)) rc = core_seterr(ctx, WOBBLE_ENOMEM, "depth data: out of memory");
        }
        core_free_names(names, nn);
        free(idir), free(ddir);
    } else {
        /* a list file: "IMAGE DEPTH" per line, relative to the file's folder */
        FILE *f = fopen(path, "r");
        if (!f) {
            wobble_depth_set_free(s);
            return core_seterr(ctx, WOBBLE_EIO, "%s: cannot open", path);
        }
        char base[4096];
        snprintf(base, sizeof base, "%s", path);
        char *sl = strrchr(base, '/');
        if (sl) sl[1] = 0;
        else base[0] = 0;
        char line[8192];
        for (int ln = 1; !rc && fgets(line, sizeof line, f); ln++) {
            char a[4096], b[4096];
            if (line[0] == '#' || sscanf(line, "%4095s %4095s", a, b) < 1) continue;
            if (sscanf(line, "%4095s %4095s", a, b) != 2) {
                rc = core_seterr(ctx, WOBBLE_ECORRUPT, "%s: line %d: not \"IMAGE DEPTH\"", path, ln);
                break;
            }
            char ip[8200], dpth[8200];
            snprintf(ip, sizeof ip, "%s%s", a[0] == '/' ? "" : base, a);
            snprintf(dpth, sizeof dpth, "%s%s", b[0] == '/' ? "" : base, b);
            if (set_add(s, &cap, &cap_d, ip, dpth)) rc = core_seterr(ctx, WOBBLE_ENOMEM, "depth data: out of memory");
        }
        fclose(f);
    }
    if (!rc) {
        /* the frame range */
        const int end = count ? first + count : s->n;
        if (first >= s->n || end > s->n)
            rc = core_seterr(ctx, WOBBLE_EINVAL, "%s: frames %d-%d asked, the set has %d (0-%d)", path, first, end - 1,
                             s->n, s->n - 1);
        else {
            for (int i = 0; i < first; i++) free(s->image[i]), free(s->depth[i]);
            for (int i = end; i < s->n; i++) free(s->image[i]), free(s->depth[i]);
            memmove(s->image, s->image + first, sizeof(char *) * (end - first));
            memmove(s->depth, s->depth + first, sizeof(char *) * (end - first));
            s->n = end - first;
        }
    }
    if (!rc && !s->n) rc = core_seterr(ctx, WOBBLE_EINVAL, "%s: no image with a depth map", path);
    if (rc) {
        wobble_depth_set_free(s);
        return rc;
    }
    *out = s;
    return WOBBLE_OK;
}

/* ------------------------------------------------------------ one pair */
static int load_pair(wobble_ctx *ctx, const wobble_depth_set *s, int i, const wobble_depth_params *p, wobble_image **img,
                     float **gt, int *w, int *h) {
    *img = NULL, *gt = NULL;
    int rc = wobble_image_read(ctx, s->image[i], img);
    if (!rc) rc = wobble_depth_read_png(ctx, s->depth[i], p->depth_scale, w, h, gt);
    if (!rc && (*w != wobble_image_width(*img) || *h != wobble_image_height(*img)))
        rc = core_seterr(ctx, WOBBLE_EINVAL, "%s: depth map is %dx%d, its image %s is %dx%d", s->depth[i], *w, *h,
                         s->image[i], wobble_image_width(*img), wobble_image_height(*img));
    long valid = 0;
    for (size_t k = 0; !rc && k < (size_t)*w * *h; k++) valid += (*gt)[k] > p->d_min && (*gt)[k] <= p->d_max;
    if (!rc && !valid)
        rc = core_seterr(ctx, WOBBLE_EINVAL, "%s: no valid depth pixel in (%g, %g] m (depth scale %g units per metre)",
                         s->depth[i], p->d_min, p->d_max, p->depth_scale);
    if (rc) {
        wobble_image_free(*img), wobble_free(*gt);
        *img = NULL, *gt = NULL;
    }
    return rc;
}

/* ------------------------------------------------------------ run state */
typedef struct {
    wobble_ctx *ctx;
    wobble_model *m;
    const wobble_depth_set *train, *test;
    const wobble_eval_params *ep;
    const wobble_depth_params *dp;
    wobble_model_info info;
    int P, D, E, C;       /* patch, width, embedding, feature channels (2D per block) */
    int layers[4], nl;    /* the blocks read out */
    float *px, *cls, *tok; /* one forward's buffers */
    size_t px_cap, tok_cap;
    wobble_depth_head *head;
    double *loss_log;
    int n_log;
    /* baselines */
    float *mean_map;
    int mw, mh;
    /* test results: [image][slot] metrics, slot 0 clean, then (op, level) */
    int S, *slot0;
    wobble_depth_metrics *met;
    wobble_depth_metrics *base_mean, *base_median; /* [image] */
    wobble_robustness *rob;                        /* [image][op] */
    double *lcos, *leuc;                           /* [image][slot] per-level values (slot 0 unused) */
    int n_test;
    wobble_depth_summary sum;
    /* resumable state in OUT/depth-state: the trained head, one file per test image */
    const char *out;
    uint64_t key_train, key_test;
} dr_run;

/* The depth input: the whole frame resized. DINOv2 interpolates its
 * position embeddings: height = the model's crop (or resize) size, width the
 * multiple of the patch nearest the image's aspect ratio. CLIP and ViT
 * have a fixed grid: its square (the aspect ratio is not kept; the depth is
 * resized back to the frame's size). */
static void input_size(const dr_run *R, int iw, int ih, int *H, int *W) {
    if (strcmp(R->info.arch, "dinov2")) {
        *H = *W = R->info.native_grid * R->P;
        return;
    }
    int h = R->info.crop_h > 0 ? R->info.crop_h : R->info.resize_short > 0 ? R->info.resize_short : 224;
    h = h / R->P * R->P;
    if (h < R->P) h = R->P;
    long w = lround((double)h * iw / ih / R->P) * R->P;
    *H = h, *W = (int)(w < R->P ? R->P : w);
}

/* One image: emb (E), feat (gh*gw x C: per block read out, the token then
 * the CLS token). */
static int features(dr_run *R, const wobble_image *img, float *emb, float **feat, int *gh, int *gw) {
    int H, W;
    input_size(R, wobble_image_width(img), wobble_image_height(img), &H, &W);
    wobble_image *u8 = NULL;
    int rc = wobble_image_resize(R->ctx, img, W, H, R->info.filter, &u8);
    const size_t np = (size_t)(H / R->P) * (W / R->P), D = (size_t)R->D;
    if (!rc && (core_grow(&R->px, &R->px_cap, (size_t)3 * H * W, sizeof(float)) ||
                core_grow(&R->tok, &R->tok_cap, R->nl * np * D, sizeof(float))))
        rc = core_seterr(R->ctx, WOBBLE_ENOMEM, "depth: out of memory");
    if (!rc) rc = wobble_model_normalize(R->m, u8, R->px);
    wobble_image_free(u8);
    if (!rc) rc = model_forward_tokens(R->ctx, R->m, R->px, H, W, R->layers, R->nl, emb, R->cls, R->tok);
    float *f = rc ? NULL : malloc(sizeof(float) * np * R->C);
    if (!rc && !f) rc = core_seterr(R->ctx, WOBBLE_ENOMEM, "depth: out of memory");
    if (rc) return rc;
    for (size_t t = 0; t < np; t++)
        for (int j = 0; j < R->nl; j++) {
            float *o = f + t * R->C + (size_t)j * 2 * D;
            memcpy(o, R->tok + ((size_t)j * np + t) * D, sizeof(float) * D);
            memcpy(o + D, R->cls + (size_t)j * D, sizeof(float) * D);
        }
    *feat = f, *gh = H / R->P, *gw = W / R->P;
    return WOBBLE_OK;
}

static void progress(dr_run *R, long done, long total, const char *item) {
    if (R->ep->progress) R->ep->progress(R->ep->user, done, total, item);
}

/* ------------------------------------------------------------ resume state
 * OUT/depth-state/head.bin (the trained head, the baseline map, the loss
 * log) and test-NNNNN.bin (one test image's results), each written
 * atomically and keyed by a hash of everything that determines it; a rerun
 * loads them instead of recomputing, so a killed run resumes and the result
 * files equal an uninterrupted run's. */
#define STATE_MAGIC "WBDEPTH1"

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}
static uint64_t fnv_str(uint64_t h, const char *s) { return fnv(h, s, strlen(s) + 1); }

static void make_keys(dr_run *R) {
    const wobble_depth_params *p = R->dp;
    uint64_t h = 0xcbf29ce484222325ull;
    const uint64_t mh = model_content_hash(R->m), ph = model_preprocessing_hash(R->m);
    const double d[6] = {p->d_min, p->d_max, p->depth_scale, p->lr, p->weight_decay, p->grad_loss_weight};
    const int iv[5] = {p->bins, p->steps, p->batch, p->layers, (int)sizeof(wobble_depth_metrics)};
    h = fnv(h, &mh, 8), h = fnv(h, &ph, 8), h = fnv(h, d, sizeof d), h = fnv(h, iv, sizeof iv), h = fnv(h, &p->seed, 8);
    h = fnv_str(h, R->info.precision);
    for (int i = 0; i < R->train->n; i++) h = fnv_str(fnv_str(h, R->train->image[i]), R->train->depth[i]);
    R->key_train = h;
    h = fnv(h, &p->eigen_crop, sizeof p->eigen_crop), h = fnv(h, &R->ep->seed, 8);
    for (int o = 0; o < R->ep->n_ops; o++) {
        h = fnv_str(h, R->ep->ops[o].name);
        h = fnv(h, R->ep->ops[o].levels, sizeof(double) * R->ep->ops[o].n_levels);
    }
    for (int i = 0; i < R->test->n; i++) h = fnv_str(fnv_str(h, R->test->image[i]), R->test->depth[i]);
    R->key_test = h;
}

static char *state_path(const dr_run *R, const char *name) {
    char *dir = core_path_join(R->out, "depth-state");
    char *p = dir ? core_path_join(dir, name) : NULL;
    free(dir);
    return p;
}

/* a state file's payload when its magic and key match (NULL otherwise;
 * *other set when the file exists with another key) */
static uint8_t *state_load(dr_run *R, const char *name, uint64_t key, size_t *n, int *other) {
    char *p = state_path(R, name);
    uint8_t *data = NULL;
    size_t size = 0;
    *other = 0;
    FILE *f = p ? fopen(p, "rb") : NULL;
    if (f) {
        fclose(f);
        if (core_read_file(R->ctx, p, &data, &size) == WOBBLE_OK && size >= 16 && !memcmp(data, STATE_MAGIC, 8)) {
            uint64_t k;
            memcpy(&k, data + 8, 8);
            if (k != key) *other = 1, free(data), data = NULL;
        } else {
            free(data), data = NULL; /* unreadable or torn: recomputed */
        }
    }
    free(p);
    if (data) {
        memmove(data, data + 16, size - 16);
        *n = size - 16;
    }
    return data;
}

static int state_save(dr_run *R, const char *name, uint64_t key, const core_buf *payload) {
    char *dir = core_path_join(R->out, "depth-state");
    char *p = state_path(R, name);
    core_buf b = {0};
    core_buf_add(&b, STATE_MAGIC, 8);
    core_buf_add(&b, &key, 8);
    core_buf_add(&b, payload->p, payload->len);
    int rc = !dir || !p || b.failed || payload->failed ? core_seterr(R->ctx, WOBBLE_ENOMEM, "depth: out of memory")
                                                       : wobble_mkdirs(R->ctx, dir);
    if (!rc) rc = wobble_write_file_atomic(R->ctx, p, b.p, b.len);
    core_buf_free(&b);
    free(dir), free(p);
    return rc;
}

/* head.bin: C, K, weights, the loss log, the baseline map */
static int head_state_save(dr_run *R) {
    core_buf b = {0};
    const int C = R->C, K = R->dp->bins;
    core_buf_add(&b, &C, sizeof C), core_buf_add(&b, &K, sizeof K);
    core_buf_add(&b, wobble_depth_head_weights(R->head), sizeof(float) * ((size_t)C * K + K));
    core_buf_add(&b, &R->n_log, sizeof R->n_log), core_buf_add(&b, R->loss_log, sizeof(double) * R->n_log);
    core_buf_add(&b, &R->mw, sizeof R->mw), core_buf_add(&b, &R->mh, sizeof R->mh);
    if (R->mean_map) core_buf_add(&b, R->mean_map, sizeof(float) * (size_t)R->mw * R->mh);
    const int rc = state_save(R, "head.bin", R->key_train, &b);
    core_buf_free(&b);
    return rc;
}

/* 1: loaded; 0: none; < 0: error */
static int head_state_load(dr_run *R) {
    size_t n = 0;
    int other = 0;
    uint8_t *d = state_load(R, "head.bin", R->key_train, &n, &other);
    if (other)
        return core_seterr(R->ctx, WOBBLE_EINVAL,
                           "%s: holds a depth run of another model, data or probe setting (depth-state/head.bin); use "
                           "another output folder",
                           R->out);
    if (!d) return 0;
    const int K = R->dp->bins;
    int C = 0, Kf = 0, nl = 0, mw = 0, mh = 0;
    size_t o = 0, need = 2 * sizeof(int);
    int ok = n >= need;
    if (ok) memcpy(&C, d, sizeof C), memcpy(&Kf, d + sizeof C, sizeof Kf), o = need;
    const size_t wn = (size_t)R->C * K + K;
    ok = ok && C == R->C && Kf == K && n >= o + sizeof(float) * wn + sizeof(int);
    int rc = ok ? wobble_depth_head_create(R->ctx, R->C, R->dp, &R->head) : WOBBLE_OK;
    if (ok && !rc) {
        memcpy(wobble_depth_head_weights(R->head), d + o, sizeof(float) * wn), o += sizeof(float) * wn;
        memcpy(&nl, d + o, sizeof nl), o += sizeof nl;
        ok = nl == R->n_log && n >= o + sizeof(double) * nl + 2 * sizeof(int);
        if (ok) memcpy(R->loss_log, d + o, sizeof(double) * nl), o += sizeof(double) * nl;
        if (ok) memcpy(&mw, d + o, sizeof mw), memcpy(&mh, d + o + sizeof mw, sizeof mh), o += 2 * sizeof(int);
        const size_t mp = (size_t)mw * mh;
        ok = ok && mw >= 0 && mh >= 0 && n == o + sizeof(float) * mp;
        if (ok && mp) {
            if (!(R->mean_map = malloc(sizeof(float) * mp))) rc = core_seterr(R->ctx, WOBBLE_ENOMEM, "depth: out of memory");
            else memcpy(R->mean_map, d + o, sizeof(float) * mp), R->mw = mw, R->mh = mh;
        }
    }
    free(d);
    if (rc) return rc;
    if (!ok) { /* torn: train again */
        wobble_depth_head_free(R->head), R->head = NULL;
        return 0;
    }
    return 1;
}

/* test-NNNNN.bin: the image's metrics, baselines and robustness */
static int test_state_io(dr_run *R, int i, int save) {
    const int S = R->S, O = R->ep->n_ops;
    char name[64];
    snprintf(name, sizeof name, "test-%05d.bin", i);
    wobble_depth_metrics *met = &R->met[(size_t)i * S];
    wobble_robustness *rob = &R->rob[(size_t)i * O];
    double *lc = R->lcos + (size_t)i * S, *le = R->leuc + (size_t)i * S;
    const size_t parts[6] = {sizeof *met * S, sizeof(wobble_depth_metrics), sizeof(wobble_depth_metrics),
                             sizeof *rob * O, sizeof(double) * S, sizeof(double) * S};
    void *ptr[6] = {met, &R->base_mean[i], &R->base_median[i], rob, lc, le};
    if (save) {
        core_buf b = {0};
        for (int k = 0; k < 6; k++) core_buf_add(&b, ptr[k], parts[k]);
        const int rc = state_save(R, name, R->key_test, &b);
        core_buf_free(&b);
        return rc;
    }
    size_t n = 0, tot = 0;
    int other = 0;
    for (int k = 0; k < 6; k++) tot += parts[k];
    uint8_t *d = state_load(R, name, R->key_test, &n, &other);
    if (!d || n != tot) {
        free(d);
        return 0; /* absent, torn or from other operations: computed again */
    }
    size_t o = 0;
    for (int k = 0; k < 6; k++) memcpy(ptr[k], d + o, parts[k]), o += parts[k];
    free(d);
    return 1;
}


/* ------------------------------------------------------------ training */
static int dr_train(dr_run *R) {
    const int N = R->train->n;
    R->n_log = R->dp->steps / 10 + 1;
    if (!(R->loss_log = calloc((size_t)R->n_log, sizeof(double))))
        return core_seterr(R->ctx, WOBBLE_ENOMEM, "depth: out of memory");
    const int got = head_state_load(R);
    if (got < 0) return got;
    if (got) {
        R->sum.resumed_head = 1;
        return WOBBLE_OK;
    }
    wobble_depth_sample *s = calloc((size_t)N, sizeof *s);
    float *emb = malloc(sizeof(float) * R->E);
    int rc = s && emb ? WOBBLE_OK : core_seterr(R->ctx, WOBBLE_ENOMEM, "depth: out of memory");
    double t0 = core_now_s();
    for (int i = 0; i < N && !rc; i++) {
        wobble_image *img = NULL;
        float *gt = NULL, *feat = NULL;
        int w, h, gh, gw;
        rc = load_pair(R->ctx, R->train, i, R->dp, &img, &gt, &w, &h);
        if (!rc) rc = features(R, img, emb, &feat, &gh, &gw);
        wobble_image_free(img);
        if (rc) {
            wobble_free(gt);
            break;
        }
        s[i] = (wobble_depth_sample){feat, gh, gw, gt, w, h};
        R->sum.feature_bytes += sizeof(float) * ((size_t)gh * gw * R->C + (size_t)w * h);
        progress(R, i + 1, N, R->train->image[i]);
    }
    R->sum.t_features = core_now_s() - t0;
    /* baselines: the training set's mean depth map (valid pixels) */
    if (!rc && N) {
        int same = 1;
        for (int i = 1; i < N; i++) same &= s[i].w == s[0].w && s[i].h == s[0].h;
        if (same) {
            const size_t P = (size_t)s[0].w * s[0].h;
            R->mean_map = calloc(P, sizeof(float));
            int *cnt = calloc(P, sizeof(int));
            if (!R->mean_map || !cnt) rc = core_seterr(R->ctx, WOBBLE_ENOMEM, "depth: out of memory");
            for (int i = 0; i < N && !rc; i++)
                for (size_t k = 0; k < P; k++)
                    if (s[i].gt[k] > R->dp->d_min && s[i].gt[k] <= R->dp->d_max) R->mean_map[k] += s[i].gt[k], cnt[k]++;
            double all = 0;
            long na = 0;
            for (size_t k = 0; !rc && k < P; k++)
                if (cnt[k]) all += R->mean_map[k], na += cnt[k];
            for (size_t k = 0; !rc && k < P; k++) R->mean_map[k] = cnt[k] ? R->mean_map[k] / cnt[k] : (float)(all / na);
            R->mw = s[0].w, R->mh = s[0].h;
            free(cnt);
        }
    }
    t0 = core_now_s();
    if (!rc) rc = wobble_depth_head_create(R->ctx, R->C, R->dp, &R->head);
    if (!rc) rc = wobble_depth_head_train(R->ctx, R->head, s, N, R->dp, R->loss_log, 10);
    if (!rc) rc = head_state_save(R);
    R->sum.t_train = core_now_s() - t0;
    for (int i = 0; s && i < N; i++) free((float *)s[i].feat), wobble_free((float *)s[i].gt);
    free(s), free(emb);
    return rc;
}

/* ------------------------------------------------------------ test */
static int median_cmp(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static double median_of(const float *v, const float *gt, size_t n, const wobble_depth_params *p, float *tmp) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (gt[i] > p->d_min && gt[i] <= p->d_max) tmp[k++] = v[i];
    if (!k) return NAN;
    qsort(tmp, k, sizeof(float), median_cmp);
    return k % 2 ? tmp[k / 2] : 0.5 * ((double)tmp[k / 2 - 1] + tmp[k / 2]);
}

static int dr_test(dr_run *R) {
    const wobble_eval_params *ep = R->ep;
    const int N = R->test->n, O = ep->n_ops, S = R->S;
    R->met = calloc((size_t)N * S, sizeof *R->met);
    R->base_mean = calloc((size_t)N, sizeof *R->base_mean);
    R->base_median = calloc((size_t)N, sizeof *R->base_median);
    R->rob = calloc((size_t)N * (O ? O : 1), sizeof *R->rob);
    R->lcos = calloc((size_t)N * S, sizeof(double));
    R->leuc = calloc((size_t)N * S, sizeof(double));
    int Kmax = 1;
    for (int o = 0; o < O; o++) Kmax = ep->ops[o].n_levels > Kmax ? ep->ops[o].n_levels : Kmax;
    float *emb0 = malloc(sizeof(float) * R->E), *embk = malloc(sizeof(float) * (size_t)Kmax * R->E);
    int rc = R->met && R->base_mean && R->base_median && R->rob && R->lcos && R->leuc && emb0 && embk
                 ? WOBBLE_OK
                 : core_seterr(R->ctx, WOBBLE_ENOMEM, "depth: out of memory");
    const double t0 = core_now_s();
    for (int i = 0; i < N && !rc; i++) {
        if (test_state_io(R, i, 0)) {
            R->sum.resumed_test++;
            progress(R, i + 1, N, R->test->image[i]);
            continue;
        }
        wobble_image *img = NULL;
        float *gt = NULL, *pred = NULL, *feat = NULL, *tmp = NULL;
        int w, h, gh, gw;
        rc = load_pair(R->ctx, R->test, i, R->dp, &img, &gt, &w, &h);
        if (!rc && (!(pred = malloc(sizeof(float) * w * h)) || !(tmp = malloc(sizeof(float) * w * h))))
            rc = core_seterr(R->ctx, WOBBLE_ENOMEM, "depth: out of memory");
        /* baselines */
        if (!rc && R->mean_map && R->mw == w && R->mh == h) {
            rc = wobble_depth_metrics_compute(R->ctx, R->mean_map, gt, w, h, R->dp, &R->base_mean[i]);
            const double s = median_of(gt, gt, (size_t)w * h, R->dp, tmp) / median_of(R->mean_map, gt, (size_t)w * h, R->dp, tmp);
            for (size_t k = 0; k < (size_t)w * h; k++)
                pred[k] = (float)fmin(fmax(R->mean_map[k] * s, R->dp->d_min), R->dp->d_max);
            if (!rc) rc = wobble_depth_metrics_compute(R->ctx, pred, gt, w, h, R->dp, &R->base_median[i]);
        }
        /* clean, then every (op, level) */
        if (!rc) rc = features(R, img, emb0, &feat, &gh, &gw);
        if (!rc) rc = wobble_depth_head_predict(R->ctx, R->head, feat, gh, gw, w, h, pred);
        if (!rc) rc = wobble_depth_metrics_compute(R->ctx, pred, gt, w, h, R->dp, &R->met[(size_t)i * S]);
        free(feat), feat = NULL;
        wobble_perturb_params pp = wobble_perturb_default_params();
        pp.seed = ep->seed;
        pp.image_id = img ? wobble_image_hash(img) : 0;
        for (int o = 0; o < O && !rc; o++) {
            const int K = ep->ops[o].n_levels;
            for (int k = 0; k < K && !rc; k++) {
                wobble_image *x = NULL;
                rc = wobble_perturb(R->ctx, ep->ops[o].name, img, ep->ops[o].levels[k], &pp, &x);
                if (!rc) rc = features(R, x, embk + (size_t)k * R->E, &feat, &gh, &gw);
                wobble_image_free(x);
                if (!rc) rc = wobble_depth_head_predict(R->ctx, R->head, feat, gh, gw, w, h, pred);
                if (!rc)
                    rc = wobble_depth_metrics_compute(R->ctx, pred, gt, w, h, R->dp,
                                                      &R->met[(size_t)i * S + R->slot0[o] + k]);
                free(feat), feat = NULL;
            }
            if (!rc)
                rc = wobble_robustness_compute(R->ctx, emb0, embk, K, R->E, R->lcos + (size_t)i * S + R->slot0[o],
                                               R->leuc + (size_t)i * S + R->slot0[o], &R->rob[(size_t)i * O + o]);
        }
        wobble_image_free(img), wobble_free(gt), free(pred), free(tmp);
        if (!rc) rc = test_state_io(R, i, 1);
        progress(R, i + 1, N, R->test->image[i]);
    }
    R->n_test = N;
    R->sum.t_test = core_now_s() - t0;
    free(emb0), free(embk);
    return rc;
}

/* ------------------------------------------------------------ outputs */
static const char *const MNAME[7] = {"abs_rel", "rmse", "log10", "silog", "d1", "d2", "d3"};
static double mget(const wobble_depth_metrics *m, int k) {
    switch (k) {
    case 0: return m->abs_rel;
    case 1: return m->rmse;
    case 2: return m->log10;
    case 3: return m->silog;
    case 4: return m->d1;
    case 5: return m->d2;
    default: return m->d3;
    }
}

static json_t *jnum(double v) { return isfinite(v) ? json_real(v) : json_null(); }

/* mean over the test images of each metric of slot `slot` (or of a baseline) */
static json_t *means(const dr_run *R, const wobble_depth_metrics *base, int slot, double *out7) {
    json_t *o = json_object();
    for (int k = 0; k < 7; k++) {
        double s = 0;
        for (int i = 0; i < R->n_test; i++) s += mget(base ? &base[i] : &R->met[(size_t)i * R->S + slot], k);
        s /= R->n_test;
        if (out7) out7[k] = s;
        json_object_set_new(o, MNAME[k], jnum(s));
    }
    return o;
}

static json_t *fit_json(const double *x, const double *y, int n) {
    wobble_fit f;
    if (n < 2 || wobble_fit_linear(x, y, n, &f) != WOBBLE_OK) return json_null();
    return json_pack("{s:i, s:o, s:o, s:o, s:o, s:o}", "n", f.n, "slope", jnum(f.slope), "intercept", jnum(f.intercept),
                     "r2", jnum(f.r2), "pearson", jnum(f.pearson), "spearman", jnum(f.spearman));
}

/* mean absolute error of predicting each op's points from a line fitted to
 * the other ops' points */
static json_t *loo_json(const double *x, const double *y, const int *op, int n, const wobble_eval_params *ep) {
    json_t *per = json_object();
    double tot = 0;
    int nt = 0;
    double *fx = malloc(sizeof(double) * (n ? n : 1)), *fy = malloc(sizeof(double) * (n ? n : 1));
    for (int o = 0; fx && fy && o < ep->n_ops; o++) {
        int m = 0;
        for (int i = 0; i < n; i++)
            if (op[i] != o) fx[m] = x[i], fy[m] = y[i], m++;
        wobble_fit f;
        if (m < 2 || m == n || wobble_fit_linear(fx, fy, m, &f) != WOBBLE_OK || !isfinite(f.slope)) continue;
        double e = 0;
        int k = 0;
        for (int i = 0; i < n; i++)
            if (op[i] == o) e += fabs(f.slope * x[i] + f.intercept - y[i]), k++;
        json_object_set_new(per, ep->ops[o].name, json_real(e / k));
        tot += e / k, nt++;
    }
    free(fx), free(fy);
    return json_pack("{s:o, s:o}", "mean_abs_error", nt ? json_real(tot / nt) : json_null(), "per_op", per);
}

/* an (image, op) pair: its metric, its error change, its index */
typedef struct {
    double x, y;
    int i;
} pair_pt;

static int cmp_pair(const void *a, const void *b) {
    const pair_pt *p = a, *q = b;
    return p->x < q->x ? -1 : p->x > q->x ? 1 : p->i - q->i;
}

static int dr_outputs(dr_run *R, const char *out_dir) {
    const wobble_eval_params *ep = R->ep;
    const int N = R->n_test, O = ep->n_ops, S = R->S;
    json_t *root = json_object(), *ops = json_array();
    core_buf csv = {0}, jl = {0};
    core_buf_printf(&csv, "op,level,metric,value\n");
    double clean7[7];
    json_object_set_new(root, "clean", means(R, NULL, 0, clean7));
    for (int k = 0; k < 7; k++) core_buf_printf(&csv, "clean,,%s,%.9g\n", MNAME[k], clean7[k]);
    if (R->mean_map) {
        json_object_set_new(root, "baseline_mean_depth", means(R, R->base_mean, 0, NULL));
        json_object_set_new(root, "baseline_mean_depth_median_scaled", means(R, R->base_median, 0, NULL));
    }
    /* points for the fits: y = mean AbsRel */
    const int P = S - 1;
    double *px_c = malloc(sizeof(double) * (P + 1)), *px_e = malloc(sizeof(double) * (P + 1)),
           *py = malloc(sizeof(double) * (P + 1));
    int *pop = malloc(sizeof(int) * (P + 1));
    double *ox[3], *oy = malloc(sizeof(double) * (O + 1));
    for (int m = 0; m < 3; m++) ox[m] = malloc(sizeof(double) * (O + 1));
    const size_t NP = (size_t)N * (O ? O : 1);
    double *ix[3], *iy = malloc(sizeof(double) * NP);
    for (int m = 0; m < 3; m++) ix[m] = malloc(sizeof(double) * NP);
    int rc = root && ops && px_c && px_e && py && pop && oy && ox[0] && ox[1] && ox[2] && iy && ix[0] && ix[1] && ix[2]
                 ? WOBBLE_OK
                 : WOBBLE_ENOMEM;
    int np = 0;
    for (int o = 0; o < O && !rc; o++) {
        json_t *lv = json_array();
        double sum_abs = 0, rsum[3] = {0, 0, 0};
        for (int k = 0; k < ep->ops[o].n_levels; k++) {
            const int sl = R->slot0[o] + k;
            double m7[7], c = 0, e = 0;
            json_t *mj = means(R, NULL, sl, m7);
            for (int i = 0; i < N; i++) c += R->lcos[(size_t)i * S + sl], e += R->leuc[(size_t)i * S + sl];
            c /= N, e /= N;
            json_object_set_new(mj, "level", json_real(ep->ops[o].levels[k]));
            json_object_set_new(mj, "abs_rel_change", jnum(m7[0] - clean7[0]));
            json_object_set_new(mj, "rmse_change", jnum(m7[1] - clean7[1]));
            json_object_set_new(mj, "d1_change", jnum(m7[4] - clean7[4]));
            json_object_set_new(mj, "cos_mean", jnum(c));
            json_object_set_new(mj, "euc_mean", jnum(e));
            json_array_append_new(lv, mj);
            for (int q = 0; q < 7; q++) core_buf_printf(&csv, "%s,%.9g,%s,%.9g\n", ep->ops[o].name, ep->ops[o].levels[k], MNAME[q], m7[q]);
            px_c[np] = c, px_e[np] = e, py[np] = m7[0], pop[np] = o, np++;
            sum_abs += m7[0];
        }
        for (int i = 0; i < N; i++) {
            const wobble_robustness *r = &R->rob[(size_t)i * O + o];
            rsum[0] += r->cos_max, rsum[1] += r->euc_max, rsum[2] += r->div_radius;
            const double rv[3] = {r->cos_max, r->euc_max, r->div_radius};
            double d = 0;
            for (int k = 0; k < ep->ops[o].n_levels; k++)
                d += R->met[(size_t)i * S + R->slot0[o] + k].abs_rel - R->met[(size_t)i * S].abs_rel;
            for (int m = 0; m < 3; m++) ix[m][(size_t)o * N + i] = rv[m];
            iy[(size_t)o * N + i] = d / ep->ops[o].n_levels;
        }
        for (int m = 0; m < 3; m++) ox[m][o] = rsum[m] / N;
        oy[o] = sum_abs / ep->ops[o].n_levels;
        json_array_append_new(ops, json_pack("{s:s, s:o, s:o, s:o, s:o, s:o}", "op", ep->ops[o].name, "mean_abs_rel",
                                             jnum(oy[o]), "R_cos_mean", jnum(ox[0][o]), "R_euc_mean", jnum(ox[1][o]),
                                             "R_div_mean", jnum(ox[2][o]), "per_level", lv));
    }
    if (!rc) {
        json_object_set_new(root, "ops", ops);
        ops = NULL;
        /* fits of the error against robustness: (op, level) points with the
         * per-level values (R_div of a pair equals R_euc), ops, (image, op)
         * pairs in equal-count bins */
        static const char *const MN[3] = {"R_cos", "R_euc", "R_div"};
        json_t *ol = json_object(), *olo = json_object(), *og = json_object(), *ogl = json_object(), *ib = json_object();
        int *oidx = malloc(sizeof(int) * (O + 1));
        for (int o = 0; oidx && o < O; o++) oidx[o] = o;
        const int B = 10, PAIRS = N * O;
        double *bx = malloc(sizeof(double) * B), *by = malloc(sizeof(double) * B);
        pair_pt *ord = malloc(sizeof *ord * (PAIRS ? PAIRS : 1));
        for (int m = 0; m < 3 && oidx && bx && by && ord; m++) {
            const double *x = m == 0 ? px_c : px_e;
            json_object_set_new(ol, MN[m], fit_json(x, py, np));
            json_object_set_new(olo, MN[m], loo_json(x, py, pop, np, ep));
            json_object_set_new(og, MN[m], fit_json(ox[m], oy, O));
            json_object_set_new(ogl, MN[m], loo_json(ox[m], oy, oidx, O, ep));
            /* equal-count bins of the pairs by the metric (ties keep pair order) */
            for (int i = 0; i < PAIRS; i++) ord[i] = (pair_pt){ix[m][i], iy[i], i};
            qsort(ord, (size_t)PAIRS, sizeof *ord, cmp_pair);
            const int nb = PAIRS < B ? PAIRS : B;
            for (int b = 0; b < nb; b++) {
                const int lo = (int)((long)PAIRS * b / nb), hi = (int)((long)PAIRS * (b + 1) / nb);
                double sx = 0, sy = 0;
                for (int j = lo; j < hi; j++) sx += ord[j].x, sy += ord[j].y;
                bx[b] = sx / (hi - lo), by[b] = sy / (hi - lo);
            }
            json_object_set_new(ib, MN[m], fit_json(bx, by, nb));
        }
        json_object_set_new(
            root, "prediction",
            json_pack("{s:{s:s, s:o, s:o}, s:{s:s, s:o, s:o}, s:{s:s, s:o}}", "op_level", "points",
                      "one per (op, level): x = mean over images of the per-level (1 - cos)/2 (R_cos) or ||e - e_k||/2 "
                      "(R_euc, R_div), y = mean AbsRel",
                      "fits", ol, "leave_one_op_out", olo, "op", "points",
                      "one per op: x = mean over images of R_cos / R_euc / R_div, y = AbsRel averaged over its levels",
                      "fits", og, "leave_one_op_out", ogl, "image_bins", "points",
                      "(image, op) pairs in 10 equal-count bins of the metric: x = mean metric, y = mean change of "
                      "AbsRel from the clean image, averaged over the op's levels",
                      "fits", ib));
        free(oidx), free(bx), free(by), free(ord);
        /* per image */
        for (int i = 0; i < N; i++)
            for (int o = 0; o < O; o++) {
                json_t *rec = json_pack("{s:s, s:s, s:s}", "image", R->test->image[i], "depth", R->test->depth[i],
                                        "op", ep->ops[o].name);
                json_t *lv = json_array(), *cm = json_object();
                for (int q = 0; q < 7; q++) json_object_set_new(cm, MNAME[q], jnum(mget(&R->met[(size_t)i * S], q)));
                json_t *per = json_object();
                for (int q = 0; q < 7; q++) json_object_set_new(per, MNAME[q], json_array());
                for (int k = 0; k < ep->ops[o].n_levels; k++) {
                    json_array_append_new(lv, json_real(ep->ops[o].levels[k]));
                    for (int q = 0; q < 7; q++)
                        json_array_append_new(json_object_get(per, MNAME[q]),
                                              jnum(mget(&R->met[(size_t)i * S + R->slot0[o] + k], q)));
                }
                const wobble_robustness *r = &R->rob[(size_t)i * O + o];
                json_object_set_new(rec, "levels", lv);
                json_object_set_new(rec, "clean", cm);
                json_object_set_new(rec, "perturbed", per);
                json_object_set_new(rec, "R_cos", jnum(r->cos_max));
                json_object_set_new(rec, "R_euc", jnum(r->euc_max));
                json_object_set_new(rec, "R_div", jnum(r->div_radius));
                char *line = json_dumps(rec, JSON_COMPACT | JSON_REAL_PRECISION(17));
                if (line) core_buf_printf(&jl, "%s\n", line);
                else jl.failed = 1;
                free(line);
                json_decref(rec);
            }
        if (!N || !O) core_buf_add(&jl, "", 0);
    }
    if (!rc) {
        /* the run's description; no timings (they differ between equal runs) */
        const wobble_depth_params *p = R->dp;
        json_t *loss = json_array();
        for (int k = 0; k < R->n_log && k * 10 < p->steps; k++)
            json_array_append_new(loss, json_pack("{s:i, s:o}", "step", k * 10, "loss", jnum(R->loss_log[k])));
        json_object_set_new(root, "wobble", json_string(wobble_version()));
        json_object_set_new(root, "task", json_string("depth"));
        json_object_set_new(root, "model", json_pack("{s:s, s:s, s:s, s:i, s:i}", "path", ep->model_path ? ep->model_path : "",
                                                     "preset", R->info.preset, "arch", R->info.arch, "width", R->D,
                                                     "feature_channels", R->C));
        json_object_set_new(root, "train", json_pack("{s:i, s:s}", "images", R->train->n, "first", R->train->image[0]));
        json_object_set_new(root, "test", json_pack("{s:i, s:s}", "images", N, "first", R->test->image[0]));
        json_object_set_new(root, "seed", json_integer((json_int_t)ep->seed));
        json_t *blocks = json_array();
        for (int j = 0; j < R->nl; j++) json_array_append_new(blocks, json_integer(R->layers[j]));
        json_object_set_new(root, "probe", json_pack("{s:o, s:f, s:f, s:i, s:f, s:i, s:i, s:f, s:f, s:f, s:b, s:O}", "blocks", blocks, "d_min", p->d_min,
                                                     "d_max", p->d_max, "bins", p->bins, "depth_scale", p->depth_scale,
                                                     "steps", p->steps, "batch", p->batch, "lr", p->lr, "weight_decay",
                                                     p->weight_decay, "grad_loss_weight", p->grad_loss_weight,
                                                     "eigen_crop", p->eigen_crop, "loss", loss));
        json_decref(loss);
        json_object_set_new(root, "per_image", json_string("depth_per_image.jsonl"));
        char *text = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
        core_outset out = {0};
        char *p1 = core_path_join(out_dir, "depth.json"), *p2 = core_path_join(out_dir, "depth.csv"),
             *p3 = core_path_join(out_dir, "depth_per_image.jsonl");
        if (!text || !p1 || !p2 || !p3 || csv.failed || jl.failed) rc = WOBBLE_ENOMEM;
        if (!rc && !(rc = wobble_mkdirs(R->ctx, out_dir)) && !(rc = core_outset_add(R->ctx, &out, p1, text, strlen(text))) &&
            !(rc = core_outset_add(R->ctx, &out, p2, csv.p, csv.len)) &&
            !(rc = core_outset_add(R->ctx, &out, p3, jl.p ? jl.p : "", jl.len)))
            rc = core_outset_commit(R->ctx, &out);
        if (rc) core_outset_abort(&out);
        free(text), free(p1), free(p2), free(p3);
        R->sum.clean_abs_rel = clean7[0], R->sum.clean_rmse = clean7[1], R->sum.clean_d1 = clean7[4];
    }
    json_decref(root), json_decref(ops);
    core_buf_free(&csv), core_buf_free(&jl);
    free(px_c), free(px_e), free(py), free(pop), free(oy), free(iy);
    for (int m = 0; m < 3; m++) free(ox[m]), free(ix[m]);
    return rc == WOBBLE_ENOMEM ? core_seterr(R->ctx, WOBBLE_ENOMEM, "depth: out of memory") : rc;
}

int wobble_depth_run(wobble_ctx *ctx, wobble_model *m, const wobble_depth_set *train, const wobble_depth_set *test,
                     const wobble_eval_params *ep, const wobble_depth_params *dp, const char *out_dir,
                     wobble_depth_summary *summary) {
    if (!m || !train || !test || !ep || !dp || !out_dir) return core_seterr(ctx, WOBBLE_EINVAL, "depth: NULL argument");
    int rc = depth_check_params(ctx, dp);
    if (!rc && ep->n_ops) rc = wobble_eval_check_ops(ctx, ep->ops, ep->n_ops);
    if (rc) return rc;
    dr_run R;
    memset(&R, 0, sizeof R);
    R.ctx = ctx, R.m = m, R.train = train, R.test = test, R.ep = ep, R.dp = dp;
    wobble_model_get_info(m, &R.info);
    R.P = R.info.patch, R.D = R.info.width, R.E = R.info.embed_dim;
    R.nl = dp->layers;
    if (R.nl > R.info.depth) {
        free(R.slot0);
        return core_seterr(ctx, WOBBLE_EINVAL, "%s: %d blocks read out, the model has %d", R.info.path, R.nl,
                           R.info.depth);
    }
    for (int j = 0; j < R.nl; j++) R.layers[j] = R.nl == 1 ? R.info.depth - 1 : R.info.depth * (j + 1) / 4 - 1;
    R.C = 2 * R.D * R.nl;
    R.cls = malloc(sizeof(float) * R.D * R.nl);
    R.slot0 = malloc(sizeof(int) * (ep->n_ops + 1));
    if (!R.cls || !R.slot0) rc = core_seterr(ctx, WOBBLE_ENOMEM, "depth: out of memory");
    R.S = 1;
    for (int o = 0; !rc && o < ep->n_ops; o++) R.slot0[o] = R.S, R.S += ep->ops[o].n_levels;
    R.out = out_dir;
    if (!rc) make_keys(&R);
    if (!rc) rc = dr_train(&R);
    if (!rc) rc = dr_test(&R);
    if (!rc) rc = dr_outputs(&R, out_dir);
    if (!rc && summary) {
        *summary = R.sum;
        summary->train_images = train->n, summary->test_images = test->n;
    }
    free(R.px), free(R.cls), free(R.tok), free(R.slot0), free(R.loss_log), free(R.mean_map);
    free(R.met), free(R.base_mean), free(R.base_median), free(R.rob), free(R.lcos), free(R.leuc);
    wobble_depth_head_free(R.head);
    return rc;
}
