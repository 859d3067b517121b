/*
 * wobble merge: the folders of `wobble eval --shard I/N` (every I of one N)
 * combined into the result files of one whole run, byte for byte.
 *
 * A shard folder holds config.json (the run's lock plus "shard": [I, N]),
 * shard.json (the dataset size and the shard's items: [index, name]),
 * per_image.jsonl and summary.json of its images. Everything the whole
 * run's files say is there: per image its records (17 significant digits,
 * so every double reads back exactly) or its error, and the model block.
 * The merged files are made by the same writer as eval's
 * (eval_results_stage), so they are the bytes of a one-process run.
 */
#include "../core/internal.h"
#include "eval_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *dir;
    json_t *config, *shard, *summary;
    int index;
} shard_t;

static json_t *load(wobble_ctx *ctx, const char *dir, const char *name, int *rc) {
    char *p = core_path_join(dir, name);
    if (!p) {
        *rc = core_seterr(ctx, WOBBLE_ENOMEM, "merge: out of memory");
        return NULL;
    }
    json_error_t je;
    json_t *j = json_load_file(p, 0, &je);
    if (!j)
        *rc = CORE_JSON_OOM(&je) ? core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", p)
              : je.position == 0 && je.line <= 1
                  ? core_seterr(ctx, WOBBLE_EIO, "%s: cannot read it (not a shard of wobble eval --shard?)", p)
                  : core_seterr(ctx, WOBBLE_ECORRUPT, "%s: %s (line %d)", p, je.text, je.line);
    free(p);
    return j;
}

typedef struct {
    int T, O, Kmax, n_ok, n_failed;
    wobble_eval_op *ops;
    double *levels;
    const wobble_op_info **info;
    char **names, **errors;
    int *labels, *ok;
    uint64_t *ihash;
    wobble_robustness *rob;
    double *lc, *le;
} merged;

static void merged_free(merged *M) {
    for (int i = 0; i < M->T; i++) {
        if (M->names) free(M->names[i]);
        if (M->errors) free(M->errors[i]);
    }
    free(M->names), free(M->errors), free(M->labels), free(M->ok), free(M->ihash), free(M->rob), free(M->lc);
    free(M->le), free(M->ops), free(M->levels), free(M->info);
}

/* The operations of the lock. */
static int lock_ops(wobble_ctx *ctx, const char *dir, json_t *cfg, merged *M) {
    json_t *ops = json_object_get(cfg, "ops");
    M->O = (int)json_array_size(ops);
    size_t nl = 0, i;
    json_t *o;
    json_array_foreach(ops, i, o) nl += json_array_size(json_object_get(o, "levels"));
    M->ops = calloc((size_t)M->O + 1, sizeof *M->ops);
    M->levels = calloc(nl + 1, sizeof(double));
    M->info = calloc((size_t)M->O + 1, sizeof *M->info);
    if (!M->ops || !M->levels || !M->info) return core_seterr(ctx, WOBBLE_ENOMEM, "merge: out of memory");
    if (M->O < 1) return core_seterr(ctx, WOBBLE_ECORRUPT, "%s/config.json: no operations", dir);
    size_t at = 0;
    json_array_foreach(ops, i, o) {
        const wobble_op_info *info = wobble_op_find(json_string_value(json_object_get(o, "op")));
        json_t *lv = json_object_get(o, "levels");
        if (!info || !json_array_size(lv))
            return core_seterr(ctx, WOBBLE_ECORRUPT, "%s/config.json: operation %zu is unknown or has no levels", dir, i);
        M->info[i] = info;
        M->ops[i].name = info->name;
        M->ops[i].levels = M->levels + at;
        M->ops[i].n_levels = (int)json_array_size(lv);
        for (size_t k = 0; k < json_array_size(lv); k++) M->levels[at++] = json_number_value(json_array_get(lv, k));
        if (M->ops[i].n_levels > M->Kmax) M->Kmax = M->ops[i].n_levels;
    }
    return WOBBLE_OK;
}

/* One shard's images into the merged arrays. */
static int take_shard(wobble_ctx *ctx, const shard_t *sh, merged *M) {
    const size_t N = (size_t)M->T, Km = (size_t)M->Kmax;
    json_t *items = json_object_get(sh->shard, "items");
    const int of = (int)json_integer_value(json_object_get(sh->shard, "of"));
    size_t j;
    json_t *it;
    /* the items are exactly index, index + of, ... below the dataset size */
    int expect = sh->index;
    json_array_foreach(items, j, it) {
        const int i = (int)json_integer_value(json_array_get(it, 0));
        const char *name = json_string_value(json_array_get(it, 1));
        if (i != expect || i >= M->T || !name)
            return core_seterr(ctx, WOBBLE_ECORRUPT, "%s/shard.json: item %zu is not image %d of shard %d", sh->dir, j,
                               expect, sh->index);
        if (!(M->names[i] = strdup(name))) return core_seterr(ctx, WOBBLE_ENOMEM, "merge: out of memory");
        M->labels[i] = -1;
        expect += of;
    }
    if (expect < M->T)
        return core_seterr(ctx, WOBBLE_ECORRUPT, "%s/shard.json: image %d is missing", sh->dir, expect);
    /* failed images: their errors */
    json_t *failed = json_object_get(json_object_get(sh->summary, "dataset"), "failed");
    json_array_foreach(failed, j, it) {
        const char *name = json_string_value(json_object_get(it, "image"));
        const char *err = json_string_value(json_object_get(it, "error"));
        int i = sh->index;
        while (i < M->T && !(name && M->names[i] && !strcmp(M->names[i], name))) i += of;
        if (i >= M->T || !err)
            return core_seterr(ctx, WOBBLE_ECORRUPT, "%s/summary.json: failed image %zu is not one of the shard's", sh->dir, j);
        if (!(M->errors[i] = strdup(err))) return core_seterr(ctx, WOBBLE_ENOMEM, "merge: out of memory");
        M->n_failed++;
    }
    /* the records: every operation of each evaluated image, in image order */
    char *path = core_path_join(sh->dir, "per_image.jsonl");
    uint8_t *data = NULL;
    size_t size = 0;
    int rc = path ? core_read_file(ctx, path, &data, &size) : core_seterr(ctx, WOBBLE_ENOMEM, "merge: out of memory");
    int line = 0, i = sh->index - of, o = M->O;
    for (size_t p = 0; !rc && p < size;) {
        const uint8_t *nl = memchr(data + p, '\n', size - p);
        const size_t len = (nl ? (size_t)(nl - data) : size) - p;
        json_error_t je;
        json_t *r = json_loadb((const char *)data + p, len, 0, &je);
        p += len + 1;
        line++;
        if (!r) {
            rc = CORE_JSON_OOM(&je) ? core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path)
                                    : core_seterr(ctx, WOBBLE_ECORRUPT, "%s: line %d: %s", path, line, je.text);
            break;
        }
        if (o == M->O) { /* the next evaluated image */
            const char *name = json_string_value(json_object_get(r, "image"));
            do i += of;
            while (i < M->T && (M->errors[i] || !name || strcmp(M->names[i], name)));
            o = 0;
        }
        const char *hs = json_string_value(json_object_get(r, "image_hash"));
        json_t *cs = json_object_get(r, "cos"), *es = json_object_get(r, "euc");
        const int K = o < M->O ? M->ops[o].n_levels : 0;
        const char *opn = json_string_value(json_object_get(r, "op"));
        if (i >= M->T || !hs || strlen(hs) != 16 || !opn || strcmp(opn, M->info[o]->name) ||
            (int)json_array_size(cs) != K || (int)json_array_size(es) != K) {
            json_decref(r);
            rc = core_seterr(ctx, WOBBLE_ECORRUPT, "%s: line %d does not follow the shard's images and operations", path,
                             line);
            break;
        }
        M->ihash[i] = strtoull(hs, NULL, 16);
        M->labels[i] = (int)json_integer_value(json_object_get(r, "label"));
        for (int k = 0; k < K; k++) {
            M->lc[((size_t)o * Km + k) * N + i] = json_number_value(json_array_get(cs, (size_t)k));
            M->le[((size_t)o * Km + k) * N + i] = json_number_value(json_array_get(es, (size_t)k));
        }
        wobble_robustness *rb = &M->rob[(size_t)o * N + i];
        rb->cos_max = json_number_value(json_object_get(r, "R_cos"));
        rb->euc_max = json_number_value(json_object_get(r, "R_euc"));
        rb->div_radius = json_number_value(json_object_get(r, "R_div"));
        rb->cos_mean = json_number_value(json_object_get(r, "cos_mean"));
        rb->euc_mean = json_number_value(json_object_get(r, "euc_mean"));
        if (++o == M->O) {
            M->ok[i] = 1;
            M->n_ok++;
        }
        json_decref(r);
    }
    if (!rc && o != M->O)
        rc = core_seterr(ctx, WOBBLE_ECORRUPT, "%s: the last image has %d of its %d operations", path, o, M->O);
    free(data);
    free(path);
    return rc;
}

int wobble_eval_merge(wobble_ctx *ctx, const char *const *dirs, int n, const char *out_dir,
                      wobble_eval_summary *summary) {
    if (!dirs || n < 1 || !out_dir) return core_seterr(ctx, WOBBLE_EINVAL, "merge: no shard folders");
    shard_t *sh = calloc((size_t)n, sizeof *sh);
    merged M;
    memset(&M, 0, sizeof M);
    json_t *lock = NULL;
    int rc = sh ? WOBBLE_OK : core_seterr(ctx, WOBBLE_ENOMEM, "merge: out of memory");
    int of = 0;
    for (int s = 0; !rc && s < n; s++) {
        sh[s].dir = dirs[s];
        sh[s].config = load(ctx, dirs[s], "config.json", &rc);
        if (!rc && !json_object_get(sh[s].config, "shard"))
            rc = core_seterr(ctx, WOBBLE_EINVAL, "%s: not a shard of wobble eval --shard I/N", dirs[s]);
        if (!rc) sh[s].shard = load(ctx, dirs[s], "shard.json", &rc);
        if (!rc) sh[s].summary = load(ctx, dirs[s], "summary.json", &rc);
        if (rc) break;
        json_t *at = json_object_get(sh[s].config, "shard");
        const int I = (int)json_integer_value(json_array_get(at, 0)), N = (int)json_integer_value(json_array_get(at, 1));
        if (!json_is_array(at) || N < 2 || I < 0 || I >= N || I != (int)json_integer_value(json_object_get(sh[s].shard, "shard")) ||
            N != (int)json_integer_value(json_object_get(sh[s].shard, "of"))) {
            rc = core_seterr(ctx, WOBBLE_EINVAL, "%s: not a shard of wobble eval --shard I/N", dirs[s]);
            break;
        }
        sh[s].index = I;
        if (s == 0) {
            of = N;
            /* the lock of the whole run: the shard's without "shard" */
            if (!(lock = json_deep_copy(sh[0].config)) || json_object_del(lock, "shard")) {
                rc = core_seterr(ctx, WOBBLE_ENOMEM, "merge: out of memory");
                break;
            }
            M.T = (int)json_integer_value(json_object_get(sh[0].shard, "dataset_size"));
            continue;
        }
        if (N != of) {
            rc = core_seterr(ctx, WOBBLE_EINVAL, "%s is a shard of %d, %s of %d", dirs[s], N, dirs[0], of);
            break;
        }
        static const char *keys[] = {"model_hash", "preprocessing_hash", "data",      "dataset_kind",
                                     "seed",       "ops",                "precision", "device"};
        static const char *what[] = {"another model", "another preprocessing", "another dataset", "another dataset",
                                     "another seed", "other operations or levels", "another precision",
                                     "another device"};
        for (int k = 0; k < 8 && !rc; k++) {
            json_t *a = json_object_get(lock, keys[k]), *b = json_object_get(sh[s].config, keys[k]);
            if (a != b && !(a && b && json_equal(a, b)))
                rc = core_seterr(ctx, WOBBLE_EINVAL, "%s holds a shard of %s than %s (%s differs)", dirs[s], what[k],
                                 dirs[0], keys[k]);
        }
        if (!rc && json_integer_value(json_object_get(sh[s].shard, "dataset_size")) != M.T)
            rc = core_seterr(ctx, WOBBLE_EINVAL, "%s holds a shard of another dataset than %s (its size differs)",
                             dirs[s], dirs[0]);
        for (int t = 0; t < s && !rc; t++)
            if (sh[t].index == sh[s].index)
                rc = core_seterr(ctx, WOBBLE_EINVAL, "%s and %s are both shard %d of %d", dirs[t], dirs[s], sh[s].index, of);
    }
    if (!rc && n != of) {
        char miss[256] = "";
        int nm = 0;
        for (int I = 0; I < of; I++) {
            int found = 0;
            for (int s = 0; s < n; s++) found |= sh[s].index == I;
            if (!found && nm++ < 8) {
                char t[24];
                snprintf(t, sizeof t, "%s%d", nm > 1 ? ", " : "", I);
                strncat(miss, t, sizeof miss - strlen(miss) - 1);
            }
        }
        rc = core_seterr(ctx, WOBBLE_EINVAL, "merge: %d of the %d shards are missing (%s%s)", of - n, of, miss,
                         nm > 8 ? ", ..." : "");
    }
    if (!rc && (M.T < 1 || M.T > INT32_MAX / 2))
        rc = core_seterr(ctx, WOBBLE_ECORRUPT, "%s/shard.json: bad dataset size", dirs[0]);
    if (!rc) rc = lock_ops(ctx, dirs[0], lock, &M);
    if (!rc) {
        const size_t T = (size_t)M.T, O = (size_t)M.O, K = (size_t)M.Kmax;
        M.names = calloc(T, sizeof(char *));
        M.errors = calloc(T, sizeof(char *));
        M.labels = calloc(T, sizeof(int));
        M.ok = calloc(T, sizeof(int));
        M.ihash = calloc(T, sizeof(uint64_t));
        M.rob = calloc(O * T, sizeof(wobble_robustness));
        M.lc = calloc(O * K * T, sizeof(double));
        M.le = calloc(O * K * T, sizeof(double));
        if (!M.names || !M.errors || !M.labels || !M.ok || !M.ihash || !M.rob || !M.lc || !M.le)
            rc = core_seterr(ctx, WOBBLE_ENOMEM, "merge: out of memory for %d images", M.T);
    }
    for (int s = 0; s < n && !rc; s++) rc = take_shard(ctx, &sh[s], &M);
    core_outset set = {0};
    if (!rc && M.n_ok == 0) rc = core_seterr(ctx, WOBBLE_EINVAL, "merge: no image was evaluated in any shard");
    if (!rc) { /* an output folder of another run is not overwritten */
        char *cp = core_path_join(out_dir, "config.json");
        json_error_t je;
        json_t *old = cp ? json_load_file(cp, 0, &je) : NULL;
        if (!cp) rc = core_seterr(ctx, WOBBLE_ENOMEM, "merge: out of memory");
        else if (old && !json_equal(old, lock))
            rc = core_seterr(ctx, WOBBLE_EINVAL, "%s holds results of another run (its config.json differs); use another "
                             "output folder", out_dir);
        json_decref(old);
        free(cp);
    }
    if (!rc) rc = wobble_mkdirs(ctx, out_dir);
    if (!rc) rc = eval_outset_json(ctx, &set, out_dir, "config.json", lock);
    if (!rc) {
        json_t *model = json_object_get(sh[0].summary, "model");
        const eval_results R = {M.T,
                                M.O,
                                M.Kmax,
                                M.ops,
                                M.info,
                                (const char *const *)M.names,
                                M.labels,
                                M.ihash,
                                M.ok,
                                M.errors,
                                M.rob,
                                M.lc,
                                M.le,
                                NULL,
                                M.T,
                                M.n_ok,
                                M.n_failed,
                                json_string_value(json_object_get(lock, "data")),
                                json_string_value(json_object_get(lock, "dataset_kind")),
                                (uint64_t)json_integer_value(json_object_get(lock, "seed")),
                                model,
                                NULL};
        rc = model && R.kind ? eval_results_stage(ctx, &R, out_dir, &set)
                             : core_seterr(ctx, WOBBLE_ECORRUPT, "%s/summary.json: no model or dataset kind", dirs[0]);
    }
    if (!rc) rc = core_outset_commit(ctx, &set);
    core_outset_abort(&set);
    if (summary) {
        memset(summary, 0, sizeof *summary);
        summary->images = M.T;
        summary->evaluated = M.n_ok;
        summary->failed = M.n_failed;
    }
    for (int s = 0; sh && s < n; s++) json_decref(sh[s].config), json_decref(sh[s].shard), json_decref(sh[s].summary);
    free(sh);
    json_decref(lock);
    merged_free(&M);
    return rc;
}
