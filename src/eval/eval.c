/*
 * wobble eval: for every image, the clean embedding and one per (op, level);
 * the metrics per (image, op) and per (image, op, level); dataset aggregates.
 *
 * Stages over one run state (eval_run), each a function, with one cleanup:
 *   eval_setup     operations, hashes, the cache folder and buffers
 *   eval_lock      OUT/config.json: written on the first run, compared on a
 *                  re-run (model, preprocessing, data, seed, operations)
 *   per image      slot_prepare (decode, cache lookup, perturb + preprocess
 *                  what is missing), slot_forward (forward in balanced
 *                  chunks), slot_finish (cache save, metrics, the embedding
 *                  callback); with the model on a GPU the forward passes
 *                  overlap the next image's preparation (eval_model_images)
 *   eval_outputs   per_image.jsonl, summary.json, summary.csv from the
 *                  cache contents, all three committed together or none
 *
 * Embedding folders (docs/embeddings.md): with a NULL model and an
 * "embeddings" dataset, eval_folder_image takes each image's clean and perturbed
 * embeddings from the folder's arrays instead of decoding, perturbing and
 * embedding; everything after (metrics, callbacks, outputs) is shared.
 *
 * Embedding cache (src/eval/cache.h): OUT/cache/<image content hash>.bin is
 * rewritten atomically after each image, so a killed run loses at most the
 * image in progress; a re-run embeds only what is missing, and produces the
 * same result bytes as an uninterrupted one.
 */
#include "../core/internal.h"
#include "../data/data.h"
#include "../model/model.h"
#include "cache.h"
#include "eval_internal.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

wobble_eval_params wobble_eval_default_params(void) {
    wobble_eval_params p;
    memset(&p, 0, sizeof p);
    p.batch = 64;
    return p;
}

int eval_json_bytes(json_t *j, core_buf *out) {
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    if (!s) {
        out->failed = 1;
        return -1;
    }
    int rc = core_buf_add(out, s, strlen(s)) || core_buf_add(out, "\n", 1) ? -1 : 0;
    free(s);
    return rc;
}

int eval_write_json(wobble_ctx *ctx, const char *path, json_t *j) {
    core_buf b = {0};
    int rc = eval_json_bytes(j, &b) ? core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path)
                                    : wobble_write_file_atomic(ctx, path, b.p, b.len);
    core_buf_free(&b);
    return rc;
}

int eval_outset_json(wobble_ctx *ctx, core_outset *set, const char *dir, const char *name, json_t *j) {
    char *path = core_path_join(dir, name);
    core_buf b = {0};
    int rc = !path || !j || eval_json_bytes(j, &b) ? core_seterr(ctx, WOBBLE_ENOMEM, "%s/%s: out of memory", dir, name)
                                                 : core_outset_add(ctx, set, path, b.p, b.len);
    core_buf_free(&b);
    free(path);
    return rc;
}

int eval_outset_buf(wobble_ctx *ctx, core_outset *set, const char *dir, const char *name, const core_buf *b) {
    char *path = core_path_join(dir, name);
    int rc = !path || b->failed ? core_seterr(ctx, WOBBLE_ENOMEM, "%s/%s: out of memory", dir, name)
                                : core_outset_add(ctx, set, path, b->p ? b->p : "", b->len);
    free(path);
    return rc;
}

int wobble_eval_check_ops(wobble_ctx *ctx, const wobble_eval_op *ops, int n_ops) {
    if (n_ops < 1 || !ops) return core_seterr(ctx, WOBBLE_EINVAL, "eval: no operations");
    for (int o = 0; o < n_ops; o++) {
        const wobble_op_info *info = wobble_op_find(ops[o].name);
        if (!info)
            return core_seterr(ctx, WOBBLE_ENOTFOUND, "eval: unknown operation '%s' (see 'wobble ops')",
                                 ops[o].name ? ops[o].name : "(null)");
        for (int p = 0; p < o; p++)
            if (wobble_op_find(ops[p].name) == info)
                return core_seterr(ctx, WOBBLE_EINVAL, "eval: operation '%s' is given twice", info->name);
        if (ops[o].n_levels < 1 || !ops[o].levels)
            return core_seterr(ctx, WOBBLE_EINVAL, "eval: operation '%s' has no levels", info->name);
        for (int k = 0; k < ops[o].n_levels; k++) {
            int rc = wobble_op_check_level(ctx, info, ops[o].levels[k]);
            if (rc) return rc;
        }
    }
    return WOBBLE_OK;
}

/* ------------------------------------------------------------ run state */
/* One image's work: the pending (op, level) list, the model inputs and the
 * embeddings (two of these when a GPU's forward pass overlaps the next
 * image's preparation). */
typedef struct {
    struct pending {
        int op; /* -1: clean */
        double level;
    } *pend;
    size_t pend_cap;
    float *px, *emb;
    size_t px_cap, emb_cap;
} eval_bufs;

/* An image from the model, from preparation to its finish (the slot_*
 * steps; two of these when a GPU's forward pass overlaps the next image's
 * preparation): what preparing it found (a skip, a fatal error) is kept
 * with it and acted on in turn. */
typedef struct {
    int i;       /* image, or -1: none */
    int prc;     /* preparation: WOBBLE_OK, 1 (skip: name_it in skip_named), or a fatal status */
    int skip_named;
    char *msg;   /* the skip's or the fatal error's message */
    eval_cache c;
    char *cpath;
    int before, np, H, W;
    eval_bufs b;
    int frc;     /* the forward passes' status */
    double tf;   /* their time */
} eval_slot;

static void eval_slot_free(eval_slot *sl) {
    if (sl->i >= 0) eval_cache_clear(&sl->c);
    free(sl->msg), free(sl->cpath);
    free(sl->b.pend), free(sl->b.px), free(sl->b.emb);
    memset(sl, 0, sizeof *sl);
    sl->i = -1;
}

typedef struct {
    wobble_ctx *ctx;
    wobble_model *m;
    const wobble_dataset *ds;
    const wobble_eval_params *P;
    const char *out_dir;
    const wobble_op_info **info; /* [O] */
    const data_emb *X;           /* an embedding folder (model NULL), or NULL */
    int *col;                    /* with X: the column of (o, k) at [o * Kmax + k] */
    int N, E, O, Kmax, batch;
    uint64_t mh, ph;
    char mhs[17], phs[17];
    char *cache_dir;
    /* results: per-level values [o][k][i], per-(image, op) metrics [o][i] */
    double *lc, *le;
    wobble_robustness *rob;
    int *ok;
    char **errors;
    uint64_t *ihash;
    /* per-image work (eval_slot) */
    eval_slot slot[2];
    float *pert;
    wobble_ctx **tctx; /* the worker threads' contexts (eval_thread_ctxs) */
    int n_tctx;
    int n_ok, n_failed, embedded, from_cache;
    wobble_eval_summary T;
    double t_start;
} eval_run;

static void eval_run_free(eval_run *S) {
    for (int i = 0; S->errors && i < S->N; i++) free(S->errors[i]);
    free(S->errors), free(S->ok), free(S->lc), free(S->le), free(S->rob), free(S->ihash);
    for (int k = 0; k < 2; k++) eval_slot_free(&S->slot[k]);
    free(S->pert);
    for (int t = 0; t < S->n_tctx; t++) wobble_ctx_free(S->tctx[t]);
    free(S->tctx);
    free(S->info), free(S->cache_dir), free(S->col);
}

static int eval_setup(eval_run *S) {
    const wobble_eval_params *P = S->P;
    /* no operations: clean embeddings only (a training set for a downstream task) */
    int rc = P->n_ops == 0 ? WOBBLE_OK : wobble_eval_check_ops(S->ctx, P->ops, P->n_ops);
    if (rc) return rc;
    S->O = P->n_ops;
    S->N = wobble_dataset_size(S->ds);
    S->E = S->X ? S->X->d : wobble_model_embed_dim(S->m);
    S->batch = P->batch > 0 ? P->batch : 64;
    /* an embedding folder's content stands for the model and preprocessing */
    S->mh = S->X ? S->X->hash : model_content_hash(S->m);
    for (int i = 0; S->X && i < S->N; i++) { /* and which rows (a split) */
        const int r = data_emb_row(S->ds, i);
        S->mh = core_fnv1a(S->mh, &r, sizeof r);
    }
    S->ph = S->X ? 0 : model_preprocessing_hash(S->m);
    snprintf(S->mhs, sizeof S->mhs, "%016llx", (unsigned long long)S->mh);
    snprintf(S->phs, sizeof S->phs, "%016llx", (unsigned long long)S->ph);
    for (int o = 0; o < S->O; o++) S->Kmax = P->ops[o].n_levels > S->Kmax ? P->ops[o].n_levels : S->Kmax;
    const size_t N = (size_t)S->N, O = (size_t)S->O, K = (size_t)S->Kmax, E = (size_t)S->E;
    S->info = calloc(O + 1, sizeof *S->info);
    S->lc = calloc(O * K * N + 1, sizeof(double));
    S->le = calloc(O * K * N + 1, sizeof(double));
    S->rob = calloc(O * N + 1, sizeof(wobble_robustness));
    S->ok = calloc(N + 1, sizeof(int));
    S->errors = calloc(N + 1, sizeof(char *));
    S->ihash = calloc(N + 1, sizeof(uint64_t));
    S->pert = malloc(sizeof(float) * (K + 1) * E);
    S->cache_dir = core_path_join(S->out_dir, "cache");
    if (!S->info || !S->lc || !S->le || !S->rob || !S->ok || !S->errors || !S->ihash || !S->pert || !S->cache_dir)
        return core_seterr(S->ctx, WOBBLE_ENOMEM, "eval: out of memory for %d images", S->N);
    for (int o = 0; o < S->O; o++) S->info[o] = wobble_op_find(P->ops[o].name);
    if (S->X) {
        if (!(S->col = malloc(sizeof(int) * (O * K + 1))))
            return core_seterr(S->ctx, WOBBLE_ENOMEM, "eval: out of memory for %d images", S->N);
        for (int o = 0; o < S->O; o++)
            for (int k = 0; k < P->ops[o].n_levels; k++) {
                const double lv = P->ops[o].levels[k];
                const int c = data_emb_column(S->X, S->info[o]->name, lv);
                /* an identity level needs no column: it is the clean embedding, as in eval */
                if (c < 0 && !(S->info[o]->has_identity && lv == S->info[o]->identity))
                    return core_seterr(S->ctx, WOBBLE_EINVAL, "%s: no column holds %s at %g (see columns.json)",
                                       P->data_path ? P->data_path : "embeddings", S->info[o]->name, lv);
                S->col[(size_t)o * K + k] = c;
            }
        return wobble_mkdirs(S->ctx, S->out_dir); /* nothing to cache */
    }
    return wobble_mkdirs(S->ctx, S->cache_dir);
}

/* The configuration lock: what the cache and results belong to. */
static int eval_lock(eval_run *S) {
    const wobble_eval_params *P = S->P;
    wobble_ctx *ctx = S->ctx;
    json_t *ops_j = json_array();
    for (int o = 0; ops_j && o < S->O; o++) {
        json_t *lv = json_array();
        for (int k = 0; k < P->ops[o].n_levels; k++) json_array_append_new(lv, json_real(P->ops[o].levels[k]));
        json_array_append_new(ops_j, json_pack("{s:s, s:o*}", "op", S->info[o]->name, "levels", lv));
    }
    json_t *cfg = json_pack("{s:s, s:s, s:s, s:s, s:I, s:o*}", "model_hash", S->mhs, "preprocessing_hash", S->phs,
                            "data", P->data_path ? P->data_path : "", "dataset_kind", wobble_dataset_kind(S->ds),
                            "seed", (json_int_t)P->seed, "ops", ops_j);
    /* bf16 embeddings are another model's: the key is there only then, so
     * folders written before it existed stay valid for fp32 */
    wobble_model_info mi;
    if (S->m) wobble_model_get_info(S->m, &mi);
    if (cfg && S->m && strcmp(mi.precision, "fp32") != 0)
        json_object_set_new(cfg, "precision", json_string(mi.precision));
    /* so are a GPU's (other GEMMs, other summation orders): "cuda" only then */
    if (cfg && S->m && strcmp(mi.device, "cpu") != 0) json_object_set_new(cfg, "device", json_string("cuda"));
    /* a shard's folder holds that shard only (the key is absent for a whole run) */
    if (cfg && P->shard_count > 1 && !P->cache_only) /* a cache-only shard fills a folder shared by all */
        json_object_set_new(cfg, "shard", json_pack("[i, i]", P->shard_index, P->shard_count));
    char *cfg_path = core_path_join(S->out_dir, "config.json");
    int rc = WOBBLE_OK;
    if (!cfg || !cfg_path) {
        rc = core_seterr(ctx, WOBBLE_ENOMEM, "eval: out of memory");
    } else if (access(cfg_path, F_OK) == 0) {
        json_error_t je;
        json_t *old = json_load_file(cfg_path, 0, &je);
        if (!old && CORE_JSON_OOM(&je)) {
            rc = core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", cfg_path);
        } else if (!old) {
            rc = core_seterr(ctx, WOBBLE_ECORRUPT, "%s: unreadable (%s); use another output folder", cfg_path, je.text);
        } else {
            static const char *keys[] = {"model_hash", "preprocessing_hash", "data",  "seed",
                                         "ops",        "precision",          "device", "shard"};
            static const char *what[] = {"another model", "another preprocessing", "another dataset", "another seed",
                                         "other operations or levels", "another precision", "another device",
                                         "another shard"};
            for (int k = 0; k < 8 && !rc; k++) {
                json_t *a = json_object_get(old, keys[k]), *b = json_object_get(cfg, keys[k]);
                if (a != b && !(a && b && json_equal(a, b))) /* absent in both is equal */
                    rc = core_seterr(ctx, WOBBLE_EINVAL,
                                       "%s holds results for %s (%s differs); use another output folder", S->out_dir,
                                       what[k], keys[k]);
            }
            json_decref(old);
        }
    } else {
        rc = eval_write_json(ctx, cfg_path, cfg);
    }
    free(cfg_path);
    json_decref(cfg);
    return rc;
}


static int is_identity(const wobble_op_info *oi, double lv) { return oi->has_identity && lv == oi->identity; }

/* The cached embedding of (o, k) for image c (identities are the clean one). */
static const float *level_vec(const eval_run *S, const eval_cache *c, int o, int k) {
    const double lv = S->P->ops[o].levels[k];
    return is_identity(S->info[o], lv) ? eval_cache_find(c, "clean", 0.0) : eval_cache_find(c, S->info[o]->name, lv);
}

/* Work item j of the pending list: perturbed (unless clean) and
 * preprocessed straight into its slot of the input buffer, on context tc.
 * The first item (items > 0) sets the size and sizes the buffer for that
 * many items; the others must match it. Adds its stage times to tp and tq. */
static int eval_item(eval_run *S, eval_bufs *b, wobble_ctx *tc, const wobble_image *img, uint64_t image_id, int j,
                     int items, int *H, int *W, double *tp, double *tq) {
    const int o = b->pend[j].op;
    const double lv = b->pend[j].level;
    wobble_perturb_params pp = wobble_perturb_default_params();
    pp.seed = S->P->seed;
    pp.image_id = image_id;
    wobble_image *x = NULL, *u = NULL;
    const double ta = core_now_s();
    int rc = o >= 0 ? wobble_perturb(tc, S->info[o]->name, img, lv, &pp, &x) : WOBBLE_OK;
    const double tb = core_now_s();
    *tp += tb - ta;
    if (rc == WOBBLE_OK) rc = wobble_model_preprocess_u8(tc, S->m, o < 0 ? img : x, &u);
    wobble_image_free(x);
    if (rc == WOBBLE_OK) {
        if (items > 0) {
            *H = u->height;
            *W = u->width;
            if (core_grow(&b->px, &b->px_cap, (size_t)items * 3 * (*H) * (*W), sizeof(float)))
                rc = core_seterr(tc, WOBBLE_ENOMEM, "eval: out of memory");
        } else if (u->height != *H || u->width != *W) {
            rc = core_seterr(tc, WOBBLE_EINTERNAL, "eval: perturbed images differ in size");
        }
    }
    if (rc == WOBBLE_OK) wobble_model_normalize(S->m, u, b->px + (size_t)j * 3 * (*H) * (*W));
    wobble_image_free(u);
    *tq += core_now_s() - tb;
    return rc;
}

/* Contexts for the worker threads (their own error messages and scratch),
 * made once per run: the caller's pixel limit, one thread each. */
static int eval_thread_ctxs(eval_run *S, int n) {
    if (S->n_tctx >= n) return WOBBLE_OK;
    wobble_ctx **t = realloc(S->tctx, sizeof *t * (size_t)n);
    if (!t) return core_seterr(S->ctx, WOBBLE_ENOMEM, "eval: out of memory");
    S->tctx = t;
    for (; S->n_tctx < n; S->n_tctx++) {
        wobble_ctx_params cp = wobble_ctx_default_params();
        cp.threads = 1;
        cp.max_pixels = S->ctx->max_pixels;
        if (wobble_ctx_create(&cp, &S->tctx[S->n_tctx]) != WOBBLE_OK)
            return core_seterr(S->ctx, WOBBLE_ENOMEM, "eval: out of memory");
    }
    return WOBBLE_OK;
}

/* Work list of image i: clean, then every (op, level) not cached
 * (identities reuse clean). The first item fixes the model input's size;
 * the others are perturbed and preprocessed on the context's threads, one
 * item each, straight into their slots, so memory holds model-sized inputs
 * only. Then one forward pass per balanced chunk. Every item's arithmetic
 * is independent of the others' and of the thread that runs it (each
 * perturbation's seed comes from the image, op and level). */
static int eval_prepare(eval_run *S, eval_bufs *b, const wobble_image *img, uint64_t image_id, eval_cache *c,
                        int *np_out, int *H_out, int *W_out) {
    const wobble_eval_params *P = S->P;
    wobble_ctx *ctx = S->ctx;
    int np = 0, H = 0, W = 0, rc = WOBBLE_OK;
    *np_out = 0;
    for (int o = -1; o < S->O; o++) {
        const int K = o < 0 ? 1 : P->ops[o].n_levels;
        for (int k = 0; k < K; k++) {
            const char *opn = o < 0 ? "clean" : S->info[o]->name;
            const double lv = o < 0 ? 0.0 : P->ops[o].levels[k];
            if (eval_cache_find(c, opn, lv) || (o >= 0 && is_identity(S->info[o], lv))) continue;
            if (core_grow(&b->pend, &b->pend_cap, (size_t)np + 1, sizeof *b->pend) ||
                core_grow(&b->emb, &b->emb_cap, ((size_t)np + 1) * S->E, sizeof(float)))
                return core_seterr(ctx, WOBBLE_ENOMEM, "eval: out of memory");
            b->pend[np].op = o;
            b->pend[np].level = lv;
            np++;
        }
    }
    if (!np) return WOBBLE_OK;
    const double t0 = core_now_s();
    double tp = 0, tq = 0;
    rc = eval_item(S, b, ctx, img, image_id, 0, np, &H, &W, &tp, &tq);
    int workers = wobble_ctx_threads(ctx);
    if (workers > np - 1) workers = np - 1;
    if (rc == WOBBLE_OK && workers > 1) rc = eval_thread_ctxs(S, workers);
    if (rc == WOBBLE_OK && np > 1) {
        int bad = np; /* the first failing item, reported as a serial run would */
#pragma omp parallel for num_threads(workers > 1 ? workers : 1) schedule(dynamic, 1) reduction(+ : tp, tq)
        for (int j = 1; j < np; j++) {
            wobble_ctx *tc = workers > 1 ? S->tctx[omp_get_thread_num()] : ctx;
            const int r = eval_item(S, b, tc, img, image_id, j, 0, &H, &W, &tp, &tq);
            if (r != WOBBLE_OK) {
#pragma omp critical(eval_item_failure)
                if (j < bad) {
                    bad = j;
                    rc = tc == ctx ? r : core_seterr(ctx, r, "%s", wobble_last_error(tc));
                }
            }
        }
    }
    /* the stages' share of the wall time (the threads' sums can exceed it) */
    const double wall = core_now_s() - t0;
    S->T.t_perturb += tp + tq > 0 ? wall * tp / (tp + tq) : 0;
    S->T.t_preprocess += tp + tq > 0 ? wall * tq / (tp + tq) : 0;
    if (rc) return rc;
    *np_out = np, *H_out = H, *W_out = W;
    return WOBBLE_OK;
}

/* The forward passes of np prepared inputs (b), one per balanced chunk, on
 * context ctx; adds to t (the forward time). */
static int eval_forward(eval_run *S, wobble_ctx *ctx, eval_bufs *b, int np, int H, int W, double *t) {
    const int chunks = (np + S->batch - 1) / S->batch;
    const double ta = core_now_s();
    int rc = WOBBLE_OK;
    for (int ch = 0, s0 = 0; ch < chunks && rc == WOBBLE_OK; ch++) {
        const int len = np / chunks + (ch < np % chunks);
        rc = wobble_model_forward(ctx, S->m, b->px + (size_t)s0 * 3 * H * W, len, H, W, NULL, b->emb + (size_t)s0 * S->E,
                                  NULL);
        s0 += len;
    }
    *t += core_now_s() - ta;
    return rc;
}

/* The np new embeddings of b into the image's cache. */
static int eval_store(eval_run *S, eval_cache *c, const eval_bufs *b, int np) {
    for (int j = 0; j < np; j++)
        if (eval_cache_add(c, b->pend[j].op < 0 ? "clean" : S->info[b->pend[j].op]->name, b->pend[j].level,
                           b->emb + (size_t)j * S->E))
            return core_seterr(S->ctx, WOBBLE_ENOMEM, "eval: out of memory");
    S->embedded += np;
    return WOBBLE_OK;
}

static int eval_metrics(eval_run *S, int i, const eval_cache *c) {
    const float *clean = eval_cache_find(c, "clean", 0.0);
    const size_t N = (size_t)S->N, Km = (size_t)S->Kmax, E = (size_t)S->E;
    int rc = WOBBLE_OK;
    double *tc = malloc(sizeof(double) * 2 * (Km + 1)); /* per-level cos, then euc */
    if (!tc) return core_seterr(S->ctx, WOBBLE_ENOMEM, "eval: out of memory");
    for (int o = 0; o < S->O && rc == WOBBLE_OK; o++) {
        const int K = S->P->ops[o].n_levels;
        for (int k = 0; k < K && rc == WOBBLE_OK; k++) {
            const float *v = level_vec(S, c, o, k);
            if (!v) {
                rc = core_seterr(S->ctx, WOBBLE_EINTERNAL, "eval: no embedding of %s at %g", S->info[o]->name,
                                 S->P->ops[o].levels[k]);
                break;
            }
            memcpy(S->pert + (size_t)k * E, v, sizeof(float) * E);
        }
        if (rc != WOBBLE_OK) break;
        rc = wobble_robustness_compute(S->ctx, clean, S->pert, K, S->E, tc, tc + Km + 1, &S->rob[(size_t)o * N + i]);
        for (int k = 0; k < K && rc == WOBBLE_OK; k++) {
            S->lc[((size_t)o * Km + k) * N + i] = tc[k];
            S->le[((size_t)o * Km + k) * N + i] = tc[Km + 1 + k];
        }
    }
    free(tc);
    return rc;
}

/* Record image i as failed with the context's message (prefixed with the
 * item's name when the message lacks it) and report it: WOBBLE_OK, or
 * ENOMEM. */
static int eval_skip(eval_run *S, int i, int name_it) {
    const char *msg = wobble_last_error(S->ctx), *item = name_it ? wobble_dataset_item(S->ds, i) : NULL;
    const size_t len = strlen(item ? item : "") + strlen(msg) + 4;
    if (!(S->errors[i] = malloc(len))) return core_seterr(S->ctx, WOBBLE_ENOMEM, "eval: out of memory");
    snprintf(S->errors[i], len, "%s%s%s", item ? item : "", item ? ": " : "", msg);
    S->n_failed++;
    if (S->P->warn) S->P->warn(S->P->user, S->errors[i]);
    return WOBBLE_OK;
}

/* Image i of an embedding folder: its rows of the arrays, as a cache would
 * hold them; its id's hash stands for the content hash. */
static int eval_external(eval_run *S, int i, eval_cache *c) {
    const data_emb *X = S->X;
    const size_t E = (size_t)S->E, Km = (size_t)S->Kmax, row = (size_t)data_emb_row(S->ds, i);
    const char *id = wobble_dataset_item(S->ds, i);
    S->ihash[i] = core_fnv1a(CORE_FNV_INIT, id, strlen(id));
    if (eval_cache_add(c, "clean", 0.0, X->clean + row * E))
        return core_seterr(S->ctx, WOBBLE_ENOMEM, "eval: out of memory");
    for (int o = 0; o < S->O; o++)
        for (int k = 0; k < S->P->ops[o].n_levels; k++) {
            const int col = S->col[(size_t)o * Km + k];
            if (col >= 0 && eval_cache_add(c, S->info[o]->name, S->P->ops[o].levels[k],
                                           X->pert + (row * X->k + col) * E))
                return core_seterr(S->ctx, WOBBLE_ENOMEM, "eval: out of memory");
        }
    S->from_cache++;
    return WOBBLE_OK;
}

/* Image i's metrics and embedding callback, from its cache c (rc: how
 * getting the embeddings went; 1: skipped). Clears c. */
static int eval_finish(eval_run *S, int i, eval_cache *c, int rc) {
    const wobble_eval_params *P = S->P;
    if (rc == 1) { /* skipped */
        eval_cache_clear(c);
        return WOBBLE_OK;
    }
    const double ta = core_now_s();
    if (rc == WOBBLE_OK) rc = eval_metrics(S, i, c);
    S->T.t_metrics += core_now_s() - ta;
    if (rc == WOBBLE_OK && P->embedding) {
        P->embedding(P->user, i, -1, 0, eval_cache_find(c, "clean", 0.0), S->E);
        for (int o = 0; o < S->O; o++)
            for (int k = 0; k < P->ops[o].n_levels; k++) P->embedding(P->user, i, o, k, level_vec(S, c, o, k), S->E);
    }
    eval_cache_clear(c);
    if (rc == WOBBLE_OK) {
        S->ok[i] = 1;
        S->n_ok++;
    }
    return rc;
}

/* ------------------------------------------------ images from the model
 * Each image: slot_prepare (decode, cache lookup, the missing items
 * perturbed and preprocessed into the slot's buffers), slot_forward (the
 * forward passes), slot_finish (cache, metrics, callbacks). With the model
 * on a GPU, image i's forward passes run on a thread of their own while the
 * CPU threads prepare image i + step in the other slot; every result,
 * message and file is the serial loop's, in the same order. */

static void slot_keep_error(eval_run *S, eval_slot *sl, int prc, int named) {
    sl->prc = prc;
    sl->skip_named = named;
    free(sl->msg);
    sl->msg = strdup(wobble_last_error(S->ctx));
}

static void slot_prepare(eval_run *S, eval_slot *sl, int i) {
    wobble_ctx *ctx = S->ctx;
    const wobble_eval_params *P = S->P;
    if (P->progress) P->progress(P->user, i, S->N, wobble_dataset_item(S->ds, i));
    sl->i = i, sl->prc = WOBBLE_OK, sl->np = 0, sl->frc = WOBBLE_OK, sl->tf = 0;
    eval_cache_init(&sl->c, S->E);
    free(sl->cpath);
    sl->cpath = NULL;
    wobble_image *img = NULL;
    double ta = core_now_s();
    int rc = wobble_dataset_load(ctx, S->ds, i, &img);
    S->T.t_decode += core_now_s() - ta;
    if (rc != WOBBLE_OK) { /* out of memory stops the run; otherwise the decoder's message names the file */
        slot_keep_error(S, sl, rc == WOBBLE_ENOMEM ? rc : 1, 0);
        return;
    }
    S->ihash[i] = wobble_image_hash(img);
    char name[64];
    snprintf(name, sizeof name, "%016llx.bin", (unsigned long long)S->ihash[i]);
    sl->cpath = core_path_join(S->cache_dir, name);
    ta = core_now_s();
    rc = sl->cpath ? eval_cache_load(ctx, &sl->c, sl->cpath, S->mh, S->ph)
                   : core_seterr(ctx, WOBBLE_ENOMEM, "eval: out of memory");
    S->T.t_io += core_now_s() - ta;
    sl->before = sl->c.n;
    if (rc == WOBBLE_OK) rc = eval_prepare(S, &sl->b, img, S->ihash[i], &sl->c, &sl->np, &sl->H, &sl->W);
    wobble_image_free(img);
    /* the levels were checked up front, so EDOMAIN is the image's own
     * problem (smaller than an ImageNet-C corruption accepts): skip it */
    if (rc == WOBBLE_EDOMAIN)
        slot_keep_error(S, sl, 1, 1);
    else if (rc != WOBBLE_OK)
        slot_keep_error(S, sl, rc, 0);
}

typedef struct {
    eval_run *S;
    wobble_ctx *ctx;
    eval_slot *sl;
} forward_job;

static void *slot_forward(void *arg) {
    forward_job *f = arg;
    eval_slot *sl = f->sl;
    sl->frc = eval_forward(f->S, f->ctx, &sl->b, sl->np, sl->H, sl->W, &sl->tf);
    if (sl->frc) {
        free(sl->msg);
        sl->msg = strdup(wobble_last_error(f->ctx));
    }
    return NULL;
}

/* Image sl->i after its forward passes; the slot is free again after. */
static int slot_finish(eval_run *S, eval_slot *sl) {
    wobble_ctx *ctx = S->ctx;
    const int i = sl->i;
    int rc = sl->prc;
    sl->i = -1;
    S->T.t_forward += sl->tf;
    if (rc != WOBBLE_OK) { /* the message preparing it left, for the skip's record or the caller */
        core_seterr(ctx, rc == 1 ? WOBBLE_EIO : rc, "%s", sl->msg ? sl->msg : "eval: out of memory");
        if (rc == 1) {
            const int sk = eval_skip(S, i, sl->skip_named);
            rc = sk ? sk : 1;
        }
        return eval_finish(S, i, &sl->c, rc);
    }
    if (sl->frc) {
        core_seterr(ctx, sl->frc, "%s", sl->msg ? sl->msg : "eval: forward pass failed");
        eval_cache_clear(&sl->c);
        return sl->frc;
    }
    if (sl->np) rc = eval_store(S, &sl->c, &sl->b, sl->np);
    const double ta = core_now_s();
    if (rc == WOBBLE_OK && sl->c.n > sl->before) rc = eval_cache_save(ctx, &sl->c, sl->cpath, S->mh, S->ph);
    S->T.t_io += core_now_s() - ta;
    if (rc == WOBBLE_OK && sl->c.n == sl->before) S->from_cache++;
    return eval_finish(S, i, &sl->c, rc);
}

/* Images first, first + step, ... from the model; pipelined: the forward
 * passes on their own thread (context fctx) beside the next preparation. */
static int eval_model_images(eval_run *S, int first, int step, int pipelined) {
    wobble_ctx *fctx = S->ctx;
    if (pipelined) {
        wobble_ctx_params cp = wobble_ctx_default_params();
        cp.threads = wobble_ctx_threads(S->ctx);
        cp.max_pixels = S->ctx->max_pixels;
        if (wobble_ctx_create(&cp, &fctx) != WOBBLE_OK) return core_seterr(S->ctx, WOBBLE_ENOMEM, "eval: out of memory");
    }
    int rc = WOBBLE_OK, cur = 0;
    if (first < S->N) slot_prepare(S, &S->slot[0], first);
    while (rc == WOBBLE_OK && S->slot[cur].i >= 0) {
        eval_slot *A = &S->slot[cur], *B = &S->slot[1 - cur];
        forward_job job = {S, fctx, A};
        pthread_t th;
        const int work = A->prc == WOBBLE_OK && A->np > 0;
        const int threaded = pipelined && work && pthread_create(&th, NULL, slot_forward, &job) == 0;
        if (work && !threaded) slot_forward(&job);
        const int next = A->i + step;
        /* a fatal preparation ends the run at A */
        const int more = (A->prc == WOBBLE_OK || A->prc == 1) && next < S->N;
        if (pipelined && more) slot_prepare(S, B, next);
        if (threaded) pthread_join(th, NULL);
        rc = slot_finish(S, A);
        if (!pipelined && more && rc == WOBBLE_OK) slot_prepare(S, B, next);
        cur = 1 - cur;
    }
    if (fctx != S->ctx) wobble_ctx_free(fctx);
    return rc;
}

/* Image i of an embedding folder: its rows, then the metrics and callback. */
static int eval_folder_image(eval_run *S, int i) {
    if (S->P->progress) S->P->progress(S->P->user, i, S->N, wobble_dataset_item(S->ds, i));
    eval_cache c;
    eval_cache_init(&c, S->E);
    return eval_finish(S, i, &c, eval_external(S, i, &c));
}

/* ------------------------------------------------------------ outputs */
static json_t *stats_json(const double *v, int n) {
    wobble_stats s;
    if (n <= 0 || wobble_stats_compute(v, n, &s) != WOBBLE_OK) return json_pack("{s:i}", "n", 0);
    return json_pack("{s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "n", s.n, "mean", s.mean, "median", s.median, "p10",
                     s.p10, "p90", s.p90, "p99", s.p99, "min", s.min, "max", s.max);
}

static void csv_row(core_buf *b, const char *op, const char *level, const char *metric, const double *v, int n) {
    wobble_stats s = {0, 0, 0, 0, 0, 0, 0, 0};
    if (n > 0 && wobble_stats_compute(v, n, &s) != WOBBLE_OK) b->failed = 1;
    core_buf_printf(b, "%s,%s,%s,%d,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g\n", op, level, metric, s.n, s.mean, s.median,
                    s.p10, s.p90, s.p99, s.min, s.max);
}

/* dataset index of the j-th item the results cover */
static int res_item(const eval_results *R, int j) { return R->items ? R->items[j] : j; }

static void per_image_jsonl(const eval_results *R, core_buf *jl) {
    const size_t N = (size_t)R->N, Km = (size_t)R->Kmax;
    for (int j = 0; j < R->n_items && !jl->failed; j++) {
        const int i = res_item(R, j);
        if (!R->ok[i]) continue;
        for (int o = 0; o < R->O && !jl->failed; o++) {
            const int K = R->ops[o].n_levels;
            json_t *lvs = json_array(), *cs = json_array(), *es = json_array();
            for (int k = 0; k < K; k++) {
                json_array_append_new(lvs, json_real(R->ops[o].levels[k]));
                json_array_append_new(cs, json_real(R->lc[((size_t)o * Km + k) * N + i]));
                json_array_append_new(es, json_real(R->le[((size_t)o * Km + k) * N + i]));
            }
            const wobble_robustness *r = &R->rob[(size_t)o * N + i];
            char hs[17];
            snprintf(hs, sizeof hs, "%016llx", (unsigned long long)R->ihash[i]);
            json_t *rec = json_pack("{s:s, s:s, s:i, s:s, s:o*, s:o*, s:o*, s:f, s:f, s:f, s:f, s:f}", "image",
                                    R->names[i], "image_hash", hs, "label", R->labels[i], "op", R->info[o]->name,
                                    "levels", lvs, "cos", cs, "euc", es, "R_cos", r->cos_max, "R_euc", r->euc_max,
                                    "R_div", r->div_radius, "cos_mean", r->cos_mean, "euc_mean", r->euc_mean);
            char *s = rec ? json_dumps(rec, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
            if (!s || core_buf_add(jl, s, strlen(s)) || core_buf_add(jl, "\n", 1)) jl->failed = 1;
            free(s);
            json_decref(rec);
        }
    }
}

static json_t *op_summary(const eval_results *R, int o, double *v, core_buf *csv) {
    static const char *mnames[5] = {"R_cos", "R_euc", "R_div", "cos_mean", "euc_mean"};
    const size_t N = (size_t)R->N, Km = (size_t)R->Kmax;
    const wobble_op_info *oi = R->info[o];
    const int K = R->ops[o].n_levels;
    json_t *metrics = json_object();
    for (int q = 0; q < 5; q++) {
        int n = 0;
        for (int j = 0; j < R->n_items; j++) {
            const int i = res_item(R, j);
            if (!R->ok[i]) continue;
            const wobble_robustness *r = &R->rob[(size_t)o * N + i];
            v[n++] = q == 0 ? r->cos_max : q == 1 ? r->euc_max : q == 2 ? r->div_radius : q == 3 ? r->cos_mean : r->euc_mean;
        }
        json_object_set_new(metrics, mnames[q], stats_json(v, n));
        csv_row(csv, oi->name, "all", mnames[q], v, n);
    }
    json_t *per_level = json_array();
    for (int k = 0; k < K; k++) {
        char lvs[64];
        snprintf(lvs, sizeof lvs, "%.17g", R->ops[o].levels[k]);
        json_t *j2[2];
        for (int t = 0; t < 2; t++) {
            const double *src = t == 0 ? R->lc : R->le;
            int n = 0;
            for (int j = 0; j < R->n_items; j++) {
                const int i = res_item(R, j);
                if (R->ok[i]) v[n++] = src[((size_t)o * Km + k) * N + i];
            }
            j2[t] = stats_json(v, n);
            csv_row(csv, oi->name, lvs, t == 0 ? "cos" : "euc", v, n);
        }
        json_array_append_new(per_level, json_pack("{s:f, s:o*, s:o*}", "level", R->ops[o].levels[k], "cos", j2[0],
                                                   "euc", j2[1]));
    }
    json_t *lv = json_array();
    for (int k = 0; k < K; k++) json_array_append_new(lv, json_real(R->ops[o].levels[k]));
    json_t *param = json_pack("{s:s, s:s, s:s, s:f, s:o*, s:b, s:b, s:b, s:o*}", "parameter", oi->param, "reference",
                              oi->reference, "description", oi->description, "min", oi->min, "max",
                              isinf(oi->max) ? json_null() : json_real(oi->max), "min_open", oi->min_open, "max_open",
                              oi->max_open, "integer", oi->integer, "identity",
                              oi->has_identity ? json_real(oi->identity) : json_null());
    return json_pack("{s:s, s:o*, s:o*, s:o*, s:o*}", "op", oi->name, "definition", param, "levels", lv, "metrics",
                     metrics, "per_level", per_level);
}

static json_t *summary_json(const eval_results *R, double *v, core_buf *csv) {
    json_t *ops_out = json_array();
    for (int o = 0; o < R->O && ops_out; o++) {
        json_t *oj = op_summary(R, o, v, csv);
        if (!oj || json_array_append_new(ops_out, oj)) {
            json_decref(ops_out);
            return NULL;
        }
    }
    json_t *failed = json_array();
    for (int j = 0; j < R->n_items && failed; j++) {
        const int i = res_item(R, j);
        if (R->errors[i])
            json_array_append_new(failed, json_pack("{s:s, s:s}", "image", R->names[i], "error", R->errors[i]));
    }
    json_t *root = json_pack("{s:s, s:O, s:{s:s, s:s, s:i, s:i, s:i, s:o*}, s:I, s:s, s:o*}", "wobble",
                             wobble_version(), "model", R->model, "dataset", "path", R->data_path ? R->data_path : "",
                             "kind", R->kind, "images", R->n_items, "evaluated", R->n_ok, "failed_count", R->n_failed,
                             "failed", failed, "seed", (json_int_t)R->seed, "metrics_doc",
                             "docs/metrics.md: R_cos = max_k (1-cos)/2, R_euc = max_k ||e-e_k||/2, R_div = MEB radius; "
                             "cos_mean/euc_mean average the per-level values",
                             "ops", ops_out);
    if (root && R->extra && json_object_update(root, R->extra)) {
        json_decref(root);
        return NULL;
    }
    return root;
}

int eval_results_stage(wobble_ctx *ctx, const eval_results *R, const char *out_dir, core_outset *set) {
    core_buf jl = {0}, csv = {0};
    double *v = malloc(sizeof(double) * ((size_t)R->N + 1));
    per_image_jsonl(R, &jl);
    core_buf_printf(&csv, "op,level,metric,n,mean,median,p10,p90,p99,min,max\n");
    json_t *sum = v && R->model ? summary_json(R, v, &csv) : NULL;
    int rc = eval_outset_buf(ctx, set, out_dir, "per_image.jsonl", &jl);
    if (rc == WOBBLE_OK) rc = eval_outset_json(ctx, set, out_dir, "summary.json", sum);
    if (rc == WOBBLE_OK) rc = eval_outset_buf(ctx, set, out_dir, "summary.csv", &csv);
    json_decref(sum);
    core_buf_free(&jl);
    core_buf_free(&csv);
    free(v);
    return rc;
}

/* summary.json's "model": the model's description, or an embedding folder's */
static json_t *model_json(const eval_run *S) {
    const wobble_eval_params *P = S->P;
    if (!S->m)
        return json_pack("{s:s, s:s, s:s, s:s, s:s, s:i}", "path", P->data_path ? P->data_path : "", "source",
                         "embeddings", "preset", "external", "arch", "external", "content_hash", S->mhs, "embed_dim",
                         S->E);
    static const char *FILTERS[] = {"box", "bilinear", "hamming", "bicubic", "lanczos"};
    wobble_model_info mi;
    wobble_model_get_info(S->m, &mi);
    return json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:{s:i, s:i, s:i, s:i, s:i, s:s, s:f, s:[f,f,f], s:[f,f,f]}}", "path",
        P->model_path ? P->model_path : mi.path, "preset", mi.preset, "arch", mi.arch, "naming", mi.naming,
        "content_hash", S->mhs, "precision", mi.precision, "embed_dim", mi.embed_dim, "preprocessing_hash", S->phs,
        "preprocessing", "resize_short", mi.resize_short, "resize_h", mi.resize_h, "resize_w", mi.resize_w, "crop_h",
        mi.crop_h, "crop_w", mi.crop_w, "filter", FILTERS[mi.filter], "rescale", mi.rescale, "mean", (double)mi.mean[0],
        (double)mi.mean[1], (double)mi.mean[2], "std", (double)mi.std[0], (double)mi.std[1], (double)mi.std[2]);
}

/* The three result files (and, for a shard, shard.json), staged in `set`. */
static int eval_outputs(eval_run *S, core_outset *set) {
    const wobble_eval_params *P = S->P;
    const char **names = malloc(sizeof(char *) * ((size_t)S->N + 1));
    int *labels = malloc(sizeof(int) * ((size_t)S->N + 1)), *items = NULL, n_items = S->N;
    json_t *model = model_json(S), *extra = NULL;
    int rc = names && labels && model ? WOBBLE_OK : core_seterr(S->ctx, WOBBLE_ENOMEM, "eval: out of memory");
    for (int i = 0; !rc && i < S->N; i++) {
        names[i] = wobble_dataset_item(S->ds, i);
        labels[i] = wobble_dataset_label(S->ds, i);
    }
    if (!rc && P->shard_count > 1) {
        /* a shard: its own images, and shard.json saying which they are */
        items = malloc(sizeof(int) * ((size_t)S->N + 1));
        json_t *list = json_array();
        n_items = 0;
        for (int i = P->shard_index; items && list && i < S->N; i += P->shard_count) {
            items[n_items++] = i;
            json_array_append_new(list, json_pack("[i, s]", i, names[i]));
        }
        json_t *sh = items && list ? json_pack("{s:s, s:i, s:i, s:i, s:O}", "wobble", wobble_version(), "shard",
                                               P->shard_index, "of", P->shard_count, "dataset_size", S->N, "items", list)
                                   : NULL;
        extra = json_pack("{s:{s:i, s:i}}", "shard", "index", P->shard_index, "of", P->shard_count);
        rc = sh && extra ? eval_outset_json(S->ctx, set, S->out_dir, "shard.json", sh)
                         : core_seterr(S->ctx, WOBBLE_ENOMEM, "eval: out of memory");
        json_decref(sh);
        json_decref(list);
    }
    if (!rc) {
        const eval_results R = {S->N,        S->O,     S->Kmax,  P->ops,    S->info,     names,
                                labels,      S->ihash, S->ok,    S->errors, S->rob,      S->lc,
                                S->le,       items,    n_items,  S->n_ok,   S->n_failed, P->data_path,
                                wobble_dataset_kind(S->ds), P->seed, model, extra};
        rc = eval_results_stage(S->ctx, &R, S->out_dir, set);
    }
    free(names), free(labels), free(items);
    json_decref(model), json_decref(extra);
    return rc;
}

int eval_run_staged(wobble_ctx *ctx, wobble_model *m, const wobble_dataset *ds, const wobble_eval_params *params,
                    const char *out_dir, wobble_eval_summary *summary, core_outset *set) {
    if (!ds || !params || !out_dir || !set) return core_seterr(ctx, WOBBLE_EINVAL, "eval: NULL argument");
    if (params->shard_count < 0 || (params->shard_count > 1 && (params->shard_index < 0 ||
                                                                params->shard_index >= params->shard_count)))
        return core_seterr(ctx, WOBBLE_EINVAL, "eval: shard %d of %d does not exist", params->shard_index,
                           params->shard_count);
    if (!m && !data_embeddings(ds))
        return core_seterr(ctx, WOBBLE_EINVAL, "eval: no model (only an embedding folder can be evaluated without one)");
    if (m && data_embeddings(ds))
        return core_seterr(ctx, WOBBLE_EINVAL, "%s: an embedding folder is evaluated without a model",
                           params->data_path ? params->data_path : "eval");
    eval_run S;
    memset(&S, 0, sizeof S);
    S.slot[0].i = S.slot[1].i = -1;
    S.ctx = ctx, S.m = m, S.ds = ds, S.P = params, S.out_dir = out_dir;
    S.X = data_embeddings(ds);
    S.t_start = core_now_s();
    const double gpu_ms0 = m ? m->device_ms : 0;
    int rc = eval_setup(&S);
    if (rc == WOBBLE_OK) rc = eval_lock(&S);
    const int step = params->shard_count > 1 ? params->shard_count : 1, first = step > 1 ? params->shard_index : 0;
    const char *pipe = getenv("WOBBLE_PIPELINE"); /* "1": pipelined on the CPU too (the tests' way to run it) */
    if (rc == WOBBLE_OK && S.X)
        for (int i = first; i < S.N && rc == WOBBLE_OK; i += step) rc = eval_folder_image(&S, i);
    else if (rc == WOBBLE_OK)
        rc = eval_model_images(&S, first, step, S.m->device || (pipe && !strcmp(pipe, "1")));
    if (rc == WOBBLE_OK && params->progress) params->progress(params->user, S.N, S.N, "");
    if (rc == WOBBLE_OK && S.n_ok == 0)
        rc = core_seterr(ctx, WOBBLE_EINVAL, "eval: no image of %s could be read (%d failed)",
                           params->data_path ? params->data_path : "the dataset", S.n_failed);
    const double ta = core_now_s();
    if (rc == WOBBLE_OK && !params->cache_only) rc = eval_outputs(&S, set);
    S.T.t_io += core_now_s() - ta;
    if (summary) {
        *summary = S.T;
        summary->t_total = core_now_s() - S.t_start;
        summary->images = S.N;
        summary->evaluated = S.n_ok;
        summary->failed = S.n_failed;
        summary->embedded = S.embedded;
        summary->from_cache = S.from_cache;
        summary->t_gpu = m && m->device ? (m->device_ms - gpu_ms0) / 1000.0 : 0;
    }
    eval_run_free(&S);
    return rc;
}

/* The result files appear together, and only when the run succeeds. */
int wobble_eval_run(wobble_ctx *ctx, wobble_model *m, const wobble_dataset *ds, const wobble_eval_params *params,
                    const char *out_dir, wobble_eval_summary *summary) {
    core_outset set = {0};
    int rc = eval_run_staged(ctx, m, ds, params, out_dir, summary, &set);
    if (rc == WOBBLE_OK) rc = core_outset_commit(ctx, &set);
    core_outset_abort(&set);
    return rc;
}
