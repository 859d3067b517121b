/*
 * wobble eval: for every image, the clean embedding and one per (op, level);
 * the metrics per (image, op) and per (image, op, level); dataset aggregates.
 *
 * Embedding cache: OUT/cache/<image content hash>.bin holds every embedding
 * computed for that image, keyed by (op, level) under a header carrying the
 * model content hash and preprocessing hash. It is rewritten atomically after
 * each image, so a killed run loses at most the image in progress; a re-run
 * embeds only what is missing. The result files (per_image.jsonl,
 * summary.json, summary.csv) are derived from the cache at the end and
 * written atomically, so a resumed run produces the same bytes as an
 * uninterrupted one. OUT/config.json records model, preprocessing, data,
 * operations, levels and seed; a folder holding another configuration is
 * refused.
 */
#include "../core/internal.h"
#include "../model/model.h"
#include "eval_internal.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CACHE_MAGIC 0x43454257u /* "WBEC" */
#define OPNAME 24

uint64_t model_content_hash(wobble_model *m);
uint64_t model_preprocessing_hash(const wobble_model *m);

#include <time.h>
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Preprocess one image into slot j of the input buffer (all slots of one
 * source image have the same size). */
static int prep_into(wobble_ctx *ctx, wobble_model *m, const wobble_image *img, int j, float **px, size_t *cap, int *H,
                     int *W) {
    wobble_image *u = NULL;
    int rc = wobble_model_preprocess_u8(ctx, m, img, &u);
    if (rc) return rc;
    if (j == 0) {
        *H = u->height;
        *W = u->width;
    } else if (u->height != *H || u->width != *W) {
        wobble_image_free(u);
        return wobble_seterr(ctx, WOBBLE_EINTERNAL, "eval: perturbed images differ in size");
    }
    size_t need = (size_t)(j + 1) * 3 * (*H) * (*W);
    if (need > *cap) {
        size_t nc = need * 2;
        float *nb = realloc(*px, sizeof(float) * nc);
        if (!nb) {
            wobble_image_free(u);
            return wobble_seterr(ctx, WOBBLE_ENOMEM, "eval: out of memory");
        }
        *px = nb;
        *cap = nc;
    }
    wobble_model_normalize(m, u, *px + (size_t)j * 3 * (*H) * (*W));
    wobble_image_free(u);
    return WOBBLE_OK;
}

wobble_eval_params wobble_eval_default_params(void) {
    wobble_eval_params p;
    memset(&p, 0, sizeof p);
    p.batch = 64;
    return p;
}

typedef struct {
    char op[OPNAME];
    double level;
    float *vec;
} entry;

typedef struct {
    entry *e;
    int n, cap;
    int dim;
} cache_t;

static void cache_clear(cache_t *c) {
    for (int i = 0; i < c->n; i++) free(c->e[i].vec);
    free(c->e);
    memset(c, 0, sizeof *c);
}

static float *cache_find(cache_t *c, const char *op, double level) {
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->e[i].op, op) && c->e[i].level == level) return c->e[i].vec;
    return NULL;
}

static int cache_add(cache_t *c, const char *op, double level, const float *v) {
    if (c->n == c->cap) {
        int nc = c->cap ? 2 * c->cap : 64;
        entry *ne = realloc(c->e, sizeof(entry) * nc);
        if (!ne) return -1;
        c->e = ne;
        c->cap = nc;
    }
    entry *e = &c->e[c->n];
    memset(e->op, 0, OPNAME);
    snprintf(e->op, OPNAME, "%s", op);
    e->level = level;
    e->vec = malloc(sizeof(float) * c->dim);
    if (!e->vec) return -1;
    memcpy(e->vec, v, sizeof(float) * c->dim);
    c->n++;
    return 0;
}

/* Read a cache file; a missing, foreign or damaged file yields an empty cache. */
static void cache_load(const char *path, uint64_t mh, uint64_t ph, cache_t *c) {
    FILE *f = fopen(path, "rb");
    if (!f) return;
    uint32_t hdr[2];
    uint64_t h[2];
    uint32_t dim_count[2];
    if (fread(hdr, 4, 2, f) != 2 || hdr[0] != CACHE_MAGIC || hdr[1] != 1 || fread(h, 8, 2, f) != 2 || h[0] != mh ||
        h[1] != ph || fread(dim_count, 4, 2, f) != 2 || (int)dim_count[0] != c->dim) {
        fclose(f);
        return;
    }
    float *v = malloc(sizeof(float) * c->dim);
    for (uint32_t i = 0; v && i < dim_count[1]; i++) {
        char op[OPNAME];
        double level;
        if (fread(op, 1, OPNAME, f) != OPNAME || fread(&level, 8, 1, f) != 1 ||
            fread(v, sizeof(float), (size_t)c->dim, f) != (size_t)c->dim)
            break;
        op[OPNAME - 1] = 0;
        if (!cache_find(c, op, level)) cache_add(c, op, level, v);
    }
    free(v);
    fclose(f);
}

static int cache_save(wobble_ctx *ctx, const char *path, uint64_t mh, uint64_t ph, const cache_t *c) {
    size_t rec = OPNAME + 8 + sizeof(float) * (size_t)c->dim;
    size_t size = 8 + 16 + 8 + rec * c->n;
    uint8_t *b = malloc(size), *p = b;
    if (!b) return wobble_seterr(ctx, WOBBLE_ENOMEM, "eval: out of memory");
    uint32_t hdr[2] = {CACHE_MAGIC, 1}, dc[2] = {(uint32_t)c->dim, (uint32_t)c->n};
    uint64_t h[2] = {mh, ph};
    memcpy(p, hdr, 8), p += 8;
    memcpy(p, h, 16), p += 16;
    memcpy(p, dc, 8), p += 8;
    for (int i = 0; i < c->n; i++) {
        memcpy(p, c->e[i].op, OPNAME), p += OPNAME;
        memcpy(p, &c->e[i].level, 8), p += 8;
        memcpy(p, c->e[i].vec, sizeof(float) * c->dim), p += sizeof(float) * c->dim;
    }
    int rc = wobble_write_file_atomic(ctx, path, b, size);
    free(b);
    return rc;
}

int eval_write_json(wobble_ctx *ctx, const char *path, json_t *j) {
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    if (!s) return wobble_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
    size_t n = strlen(s);
    s = realloc(s, n + 2);
    s[n] = '\n';
    int rc = wobble_write_file_atomic(ctx, path, s, n + 1);
    free(s);
    return rc;
}

static json_t *stats_json(const double *v, int n) {
    wobble_stats s;
    if (n <= 0 || wobble_stats_compute(v, n, &s) != WOBBLE_OK) return json_pack("{s:i}", "n", 0);
    return json_pack("{s:i, s:f, s:f, s:f, s:f, s:f, s:f}", "n", s.n, "mean", s.mean, "median", s.median, "p90",
                     s.p90, "p99", s.p99, "min", s.min, "max", s.max);
}

static void csv_row(char **buf, size_t *len, size_t *cap, const char *op, const char *level, const char *metric,
                    const double *v, int n) {
    wobble_stats s = {0, 0, 0, 0, 0, 0, 0};
    if (n > 0) wobble_stats_compute(v, n, &s);
    char line[512];
    int k = snprintf(line, sizeof line, "%s,%s,%s,%d,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g\n", op, level, metric, s.n, s.mean,
                     s.median, s.p90, s.p99, s.min, s.max);
    if (*len + (size_t)k + 1 > *cap) {
        *cap = (*cap + (size_t)k + 1) * 2;
        *buf = realloc(*buf, *cap);
    }
    memcpy(*buf + *len, line, (size_t)k + 1);
    *len += (size_t)k;
}

char *eval_path_join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    snprintf(s, n, "%s/%s", a, b);
    return s;
}

int wobble_eval_check_ops(wobble_ctx *ctx, const wobble_eval_op *ops, int n_ops) {
    if (n_ops < 1 || !ops) return wobble_seterr(ctx, WOBBLE_EINVAL, "eval: no operations");
    for (int o = 0; o < n_ops; o++) {
        const wobble_op_info *info = wobble_op_find(ops[o].name);
        if (!info)
            return wobble_seterr(ctx, WOBBLE_ENOTFOUND, "eval: unknown operation '%s' (see 'wobble ops')",
                                 ops[o].name ? ops[o].name : "(null)");
        for (int p = 0; p < o; p++)
            if (wobble_op_find(ops[p].name) == info)
                return wobble_seterr(ctx, WOBBLE_EINVAL, "eval: operation '%s' is given twice", info->name);
        if (ops[o].n_levels < 1 || !ops[o].levels)
            return wobble_seterr(ctx, WOBBLE_EINVAL, "eval: operation '%s' has no levels", info->name);
        for (int k = 0; k < ops[o].n_levels; k++) {
            int rc = wobble_op_check_level(ctx, info, ops[o].levels[k]);
            if (rc) return rc;
        }
    }
    return WOBBLE_OK;
}

int wobble_eval_run(wobble_ctx *ctx, wobble_model *m, const wobble_dataset *ds, const wobble_eval_params *params,
                    const char *out_dir, wobble_eval_summary *summary) {
    if (!m || !ds || !params || !out_dir) return wobble_seterr(ctx, WOBBLE_EINVAL, "eval: NULL argument");
    const wobble_eval_params *P = params;
    /* no operations: clean embeddings only (a training set for a downstream task) */
    int rc = P->n_ops == 0 ? WOBBLE_OK : wobble_eval_check_ops(ctx, P->ops, P->n_ops);
    if (rc) return rc;
    const wobble_op_info **info = calloc((size_t)P->n_ops + 1, sizeof *info);
    if (!info) return wobble_seterr(ctx, WOBBLE_ENOMEM, "eval: out of memory");
    for (int o = 0; o < P->n_ops; o++) info[o] = wobble_op_find(P->ops[o].name);
    const int N = wobble_dataset_size(ds), E = wobble_model_embed_dim(m), O = P->n_ops;
    const uint64_t mh = model_content_hash(m), ph = model_preprocessing_hash(m);
    char mhs[17], phs[17];
    snprintf(mhs, sizeof mhs, "%016llx", (unsigned long long)mh);
    snprintf(phs, sizeof phs, "%016llx", (unsigned long long)ph);
    char *cache_dir = eval_path_join(out_dir, "cache");
    if ((rc = wobble_mkdirs(ctx, cache_dir)) != WOBBLE_OK) {
        free(cache_dir);
        free(info);
        return rc;
    }
    /* configuration lock */
    json_t *ops_j = json_array();
    for (int o = 0; o < O; o++) {
        json_t *lv = json_array();
        for (int k = 0; k < P->ops[o].n_levels; k++) json_array_append_new(lv, json_real(P->ops[o].levels[k]));
        json_array_append_new(ops_j, json_pack("{s:s, s:o}", "op", info[o]->name, "levels", lv));
    }
    json_t *cfg = json_pack("{s:s, s:s, s:s, s:s, s:I, s:O}", "model_hash", mhs, "preprocessing_hash", phs, "data",
                            P->data_path ? P->data_path : "", "dataset_kind", wobble_dataset_kind(ds), "seed",
                            (json_int_t)P->seed, "ops", ops_j);
    char *cfg_path = eval_path_join(out_dir, "config.json");
    if (access(cfg_path, F_OK) == 0) {
        json_error_t je;
        json_t *old = json_load_file(cfg_path, 0, &je);
        if (!old) {
            rc = wobble_seterr(ctx, WOBBLE_ECORRUPT, "%s: unreadable (%s); use another output folder", cfg_path, je.text);
        } else {
            static const char *keys[] = {"model_hash", "preprocessing_hash", "data", "seed", "ops"};
            static const char *what[] = {"another model", "another preprocessing", "another dataset", "another seed",
                                         "other operations or levels"};
            for (int k = 0; k < 5 && !rc; k++)
                if (!json_equal(json_object_get(old, keys[k]), json_object_get(cfg, keys[k])))
                    rc = wobble_seterr(ctx, WOBBLE_EINVAL,
                                       "%s holds results for %s (%s differs); use another output folder", out_dir,
                                       what[k], keys[k]);
            json_decref(old);
        }
    } else {
        rc = eval_write_json(ctx, cfg_path, cfg);
    }
    free(cfg_path);
    if (rc) {
        json_decref(cfg);
        json_decref(ops_j);
        free(cache_dir);
        free(info);
        return rc;
    }
    /* per-level values [o][k][i], per-op metrics [o][metric][i] */
    int Kmax = 0;
    for (int o = 0; o < O; o++) Kmax = P->ops[o].n_levels > Kmax ? P->ops[o].n_levels : Kmax;
    double *lc = calloc((size_t)O * Kmax * N + 1, sizeof(double)), *le = calloc((size_t)O * Kmax * N + 1, sizeof(double));
    wobble_robustness *rob = calloc((size_t)O * N + 1, sizeof(wobble_robustness));
    int *ok = calloc((size_t)N, sizeof(int));
    char **errors = calloc((size_t)N, sizeof(char *));
    uint64_t *ihash = calloc((size_t)N, sizeof(uint64_t));
    const int batch = P->batch > 0 ? P->batch : 64;
    int pcap = 64;
    int *pend_o = calloc((size_t)pcap, sizeof(int));
    double *pend_l = calloc((size_t)pcap, sizeof(double));
    float *emb = malloc(sizeof(float) * (size_t)pcap * E), *pert = malloc(sizeof(float) * (size_t)(Kmax + 1) * E);
    if (!lc || !le || !rob || !ok || !errors || !ihash || !pend_o || !pend_l || !emb || !pert)
        rc = wobble_seterr(ctx, WOBBLE_ENOMEM, "eval: out of memory for %d images", N);
    int n_ok = 0, n_failed = 0, embedded = 0, from_cache = 0;
    wobble_eval_summary T;
    memset(&T, 0, sizeof T);
    float *pxbuf = NULL;
    size_t pxcap = 0;
    double t_start = now_s(), ta;
    for (int i = 0; i < N && rc == WOBBLE_OK; i++) {
        if (P->progress) P->progress(P->user, i, N, wobble_dataset_item(ds, i));
        wobble_image *img = NULL;
        ta = now_s();
        int lrc = wobble_dataset_load(ctx, ds, i, &img);
        T.t_decode += now_s() - ta;
        if (lrc != WOBBLE_OK) {
            errors[i] = strdup(wobble_last_error(ctx));
            n_failed++;
            if (P->warn) P->warn(P->user, errors[i]);
            continue;
        }
        ihash[i] = wobble_image_hash(img);
        char name[64];
        snprintf(name, sizeof name, "%016llx.bin", (unsigned long long)ihash[i]);
        char *cpath = eval_path_join(cache_dir, name);
        cache_t c = {NULL, 0, 0, E};
        ta = now_s();
        cache_load(cpath, mh, ph, &c);
        T.t_io += now_s() - ta;
        int before = c.n;
        wobble_perturb_params pp = wobble_perturb_default_params();
        pp.seed = P->seed;
        pp.image_id = ihash[i];
        /* work list: clean, then every (op, level) not cached (identities reuse
         * clean). Each is perturbed and preprocessed at once, so memory holds
         * model-sized inputs only; then one forward pass per balanced chunk. */
        int np = 0, H = 0, W = 0;
        int item_rc = WOBBLE_OK;
        for (int o = -1; o < O && item_rc == WOBBLE_OK; o++) {
            const int K = o < 0 ? 1 : P->ops[o].n_levels;
            for (int k = 0; k < K && item_rc == WOBBLE_OK; k++) {
                const char *opn = o < 0 ? "clean" : info[o]->name;
                const double lv = o < 0 ? 0.0 : P->ops[o].levels[k];
                if (cache_find(&c, opn, lv)) continue;
                if (o >= 0 && info[o]->has_identity && lv == info[o]->identity) continue; /* = clean */
                wobble_image *x = NULL;
                ta = now_s();
                if (o >= 0) item_rc = wobble_perturb(ctx, opn, img, lv, &pp, &x);
                const double tb = now_s();
                T.t_perturb += tb - ta;
                if (item_rc) break;
                item_rc = prep_into(ctx, m, o < 0 ? img : x, np, &pxbuf, &pxcap, &H, &W);
                T.t_preprocess += now_s() - tb;
                wobble_image_free(x);
                if (item_rc) break;
                if (np == pcap) {
                    pcap = pcap ? 2 * pcap : 64;
                    pend_o = realloc(pend_o, sizeof(int) * pcap);
                    pend_l = realloc(pend_l, sizeof(double) * pcap);
                    emb = realloc(emb, sizeof(float) * (size_t)pcap * E);
                    if (!pend_o || !pend_l || !emb) item_rc = wobble_seterr(ctx, WOBBLE_ENOMEM, "eval: out of memory");
                }
                if (item_rc) break;
                pend_o[np] = o;
                pend_l[np] = lv;
                np++;
            }
        }
        if (item_rc == WOBBLE_OK && np) {
            const int chunks = (np + batch - 1) / batch;
            ta = now_s();
            for (int ch = 0, s0 = 0; ch < chunks && item_rc == WOBBLE_OK; ch++) {
                const int len = np / chunks + (ch < np % chunks);
                item_rc = wobble_model_forward(ctx, m, pxbuf + (size_t)s0 * 3 * H * W, len, H, W, NULL,
                                               emb + (size_t)s0 * E, NULL);
                s0 += len;
            }
            T.t_forward += now_s() - ta;
            for (int j = 0; j < np && item_rc == WOBBLE_OK; j++)
                if (cache_add(&c, pend_o[j] < 0 ? "clean" : info[pend_o[j]]->name, pend_l[j], emb + (size_t)j * E))
                    item_rc = wobble_seterr(ctx, WOBBLE_ENOMEM, "eval: out of memory");
            embedded += np;
        }
        wobble_image_free(img);
        ta = now_s();
        if (item_rc == WOBBLE_OK && c.n > before) item_rc = cache_save(ctx, cpath, mh, ph, &c);
        T.t_io += now_s() - ta;
        if (item_rc == WOBBLE_OK && c.n == before) from_cache++;
        free(cpath);
        ta = now_s();
        if (item_rc == WOBBLE_OK) {
            const float *clean = cache_find(&c, "clean", 0.0);
            for (int o = 0; o < O && item_rc == WOBBLE_OK; o++) {
                const int K = P->ops[o].n_levels;
                for (int k = 0; k < K; k++) {
                    const double lv = P->ops[o].levels[k];
                    const float *v = (info[o]->has_identity && lv == info[o]->identity) ? clean
                                                                                      : cache_find(&c, info[o]->name, lv);
                    memcpy(pert + (size_t)k * E, v, sizeof(float) * E);
                }
                double tc[64], te[64];
                double *pc = K <= 64 ? tc : malloc(sizeof(double) * K), *pe = K <= 64 ? te : malloc(sizeof(double) * K);
                item_rc = wobble_robustness_compute(ctx, clean, pert, K, E, pc, pe, &rob[(size_t)o * N + i]);
                for (int k = 0; k < K; k++) {
                    lc[((size_t)o * Kmax + k) * N + i] = pc[k];
                    le[((size_t)o * Kmax + k) * N + i] = pe[k];
                }
                if (pc != tc) free(pc);
                if (pe != te) free(pe);
            }
        }
        T.t_metrics += now_s() - ta;
        if (item_rc == WOBBLE_OK && P->embedding) {
            const float *clean = cache_find(&c, "clean", 0.0);
            P->embedding(P->user, i, -1, 0, clean, E);
            for (int o = 0; o < O; o++)
                for (int k = 0; k < P->ops[o].n_levels; k++) {
                    const double lv = P->ops[o].levels[k];
                    const float *v = (info[o]->has_identity && lv == info[o]->identity) ? clean
                                                                                      : cache_find(&c, info[o]->name, lv);
                    P->embedding(P->user, i, o, k, v, E);
                }
        }
        cache_clear(&c);
        if (item_rc != WOBBLE_OK) {
            /* a model or memory failure stops the run; the cache keeps what was done */
            rc = item_rc;
            break;
        }
        ok[i] = 1;
        n_ok++;
    }
    if (P->progress && rc == WOBBLE_OK) P->progress(P->user, N, N, "");
    if (rc == WOBBLE_OK && n_ok == 0)
        rc = wobble_seterr(ctx, WOBBLE_EINVAL, "eval: no image of %s could be read (%d failed)",
                           P->data_path ? P->data_path : "the dataset", n_failed);
    /* ---------------- outputs, derived from the cache contents */
    ta = now_s();
    if (rc == WOBBLE_OK) {
        /* per_image.jsonl */
        size_t cap = 1 << 16, len = 0;
        char *jl = malloc(cap);
        for (int i = 0; i < N && jl; i++) {
            if (!ok[i]) continue;
            for (int o = 0; o < O; o++) {
                const int K = P->ops[o].n_levels;
                json_t *lvs = json_array(), *cs = json_array(), *es = json_array();
                for (int k = 0; k < K; k++) {
                    json_array_append_new(lvs, json_real(P->ops[o].levels[k]));
                    json_array_append_new(cs, json_real(lc[((size_t)o * Kmax + k) * N + i]));
                    json_array_append_new(es, json_real(le[((size_t)o * Kmax + k) * N + i]));
                }
                const wobble_robustness *r = &rob[(size_t)o * N + i];
                char hs[17];
                snprintf(hs, sizeof hs, "%016llx", (unsigned long long)ihash[i]);
                json_t *rec = json_pack("{s:s, s:s, s:i, s:s, s:o, s:o, s:o, s:f, s:f, s:f, s:f, s:f}", "image",
                                        wobble_dataset_item(ds, i), "image_hash", hs, "label", wobble_dataset_label(ds, i),
                                        "op", info[o]->name, "levels", lvs, "cos", cs, "euc", es, "R_cos", r->cos_max,
                                        "R_euc", r->euc_max, "R_div", r->div_radius, "cos_mean", r->cos_mean,
                                        "euc_mean", r->euc_mean);
                char *s = json_dumps(rec, JSON_COMPACT | JSON_REAL_PRECISION(17));
                size_t sl = strlen(s);
                if (len + sl + 2 > cap) {
                    cap = (len + sl + 2) * 2;
                    jl = realloc(jl, cap);
                }
                memcpy(jl + len, s, sl);
                len += sl;
                jl[len++] = '\n';
                free(s);
                json_decref(rec);
            }
        }
        char *pj = eval_path_join(out_dir, "per_image.jsonl");
        rc = jl ? wobble_write_file_atomic(ctx, pj, jl, len) : wobble_seterr(ctx, WOBBLE_ENOMEM, "out of memory");
        free(pj);
        free(jl);
    }
    if (rc == WOBBLE_OK) {
        double *v = malloc(sizeof(double) * N);
        json_t *ops_out = json_array();
        size_t cap = 4096, len = 0;
        char *csv = malloc(cap);
        len = (size_t)snprintf(csv, cap, "op,level,metric,n,mean,median,p90,p99,min,max\n");
        static const char *mnames[5] = {"R_cos", "R_euc", "R_div", "cos_mean", "euc_mean"};
        for (int o = 0; o < O; o++) {
            const int K = P->ops[o].n_levels;
            json_t *metrics = json_object();
            for (int q = 0; q < 5; q++) {
                int n = 0;
                for (int i = 0; i < N; i++) {
                    if (!ok[i]) continue;
                    const wobble_robustness *r = &rob[(size_t)o * N + i];
                    v[n++] = q == 0 ? r->cos_max : q == 1 ? r->euc_max : q == 2 ? r->div_radius : q == 3 ? r->cos_mean : r->euc_mean;
                }
                json_object_set_new(metrics, mnames[q], stats_json(v, n));
                csv_row(&csv, &len, &cap, info[o]->name, "all", mnames[q], v, n);
            }
            json_t *per_level = json_array();
            for (int k = 0; k < K; k++) {
                int n = 0;
                for (int i = 0; i < N; i++)
                    if (ok[i]) v[n++] = lc[((size_t)o * Kmax + k) * N + i];
                json_t *cj = stats_json(v, n);
                char lvs[64];
                snprintf(lvs, sizeof lvs, "%.17g", P->ops[o].levels[k]);
                csv_row(&csv, &len, &cap, info[o]->name, lvs, "cos", v, n);
                n = 0;
                for (int i = 0; i < N; i++)
                    if (ok[i]) v[n++] = le[((size_t)o * Kmax + k) * N + i];
                json_t *ej = stats_json(v, n);
                csv_row(&csv, &len, &cap, info[o]->name, lvs, "euc", v, n);
                json_array_append_new(per_level, json_pack("{s:f, s:o, s:o}", "level", P->ops[o].levels[k], "cos", cj,
                                                           "euc", ej));
            }
            json_t *lv = json_array();
            for (int k = 0; k < K; k++) json_array_append_new(lv, json_real(P->ops[o].levels[k]));
            const wobble_op_info *oi = info[o];
            json_t *param = json_pack("{s:s, s:s, s:s, s:f, s:o, s:b, s:b, s:b, s:o}", "parameter", oi->param,
                                      "reference", oi->reference, "description", oi->description, "min", oi->min, "max",
                                      isinf(oi->max) ? json_null() : json_real(oi->max), "min_open", oi->min_open,
                                      "max_open", oi->max_open, "integer", oi->integer, "identity",
                                      oi->has_identity ? json_real(oi->identity) : json_null());
            json_array_append_new(ops_out, json_pack("{s:s, s:o, s:o, s:o, s:o}", "op", oi->name, "definition", param,
                                                     "levels", lv, "metrics", metrics, "per_level", per_level));
        }
        wobble_model_info mi;
        wobble_model_get_info(m, &mi);
        json_t *failed = json_array();
        for (int i = 0; i < N; i++)
            if (errors[i]) json_array_append_new(failed, json_pack("{s:s, s:s}", "image", wobble_dataset_item(ds, i), "error", errors[i]));
        json_t *model_j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:{s:i, s:i, s:i, s:i, s:i, s:s, s:f, s:[f,f,f], s:[f,f,f]}}",
                                    "path", P->model_path ? P->model_path : mi.path, "preset", mi.preset, "arch", mi.arch,
                                    "naming", mi.naming, "content_hash", mhs, "embed_dim", mi.embed_dim,
                                    "preprocessing_hash", phs, "preprocessing", "resize_short", mi.resize_short,
                                    "resize_h", mi.resize_h, "resize_w", mi.resize_w, "crop_h", mi.crop_h, "crop_w",
                                    mi.crop_w, "filter",
                                    (const char *[]){"box", "bilinear", "hamming", "bicubic", "lanczos"}[mi.filter],
                                    "rescale", mi.rescale, "mean", (double)mi.mean[0], (double)mi.mean[1],
                                    (double)mi.mean[2], "std", (double)mi.std[0], (double)mi.std[1], (double)mi.std[2]);
        json_t *sum = json_pack("{s:s, s:o, s:{s:s, s:s, s:i, s:i, s:i, s:o}, s:I, s:s, s:o}", "wobble", wobble_version(),
                                "model", model_j, "dataset", "path", P->data_path ? P->data_path : "", "kind",
                                wobble_dataset_kind(ds), "images", N, "evaluated", n_ok, "failed_count", n_failed,
                                "failed", failed, "seed", (json_int_t)P->seed, "metrics_doc",
                                "docs/metrics.md: R_cos = max_k (1-cos)/2, R_euc = max_k ||e-e_k||/2, R_div = MEB radius; "
                                "cos_mean/euc_mean average the per-level values",
                                "ops", ops_out);
        char *sp = eval_path_join(out_dir, "summary.json");
        rc = eval_write_json(ctx, sp, sum);
        free(sp);
        if (rc == WOBBLE_OK) {
            char *cp = eval_path_join(out_dir, "summary.csv");
            rc = wobble_write_file_atomic(ctx, cp, csv, len);
            free(cp);
        }
        json_decref(sum);
        free(csv);
        free(v);
    }
    T.t_io += now_s() - ta;
    if (summary) {
        *summary = T;
        summary->t_total = now_s() - t_start;
        summary->images = N;
        summary->evaluated = n_ok;
        summary->failed = n_failed;
        summary->embedded = embedded;
        summary->from_cache = from_cache;
    }
    for (int i = 0; i < N; i++) free(errors[i]);
    free(errors), free(ok), free(lc), free(le), free(rob), free(ihash), free(pend_o), free(pend_l);
    free(emb), free(pert), free(info), free(cache_dir), free(pxbuf);
    json_decref(cfg);
    json_decref(ops_j);
    return rc;
}
