/*
 * Embedding folders (wobble eval --embeddings DIR, docs/embeddings.md):
 * embeddings computed by another tool, laid out as
 *   clean.npy      float32 (or float64) [N, D]
 *   perturbed.npy  float32 (or float64) [N, K, D]
 *   columns.json   K objects {"op": NAME, "level": VALUE}: what column k is
 *   index.jsonl    N lines {"id": STRING, "label": INT (optional, -1 none),
 *                  "split": "train" | "test" (optional)}
 *   classes.json   optional: the class names of the labels, in label order
 * perturbed.npy and columns.json may both be absent (K = 0: clean embeddings
 * only, such as a training set).
 * Every check a layout can fail names the file and the problem.
 */
#include "data.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void data_emb_free(data_emb *e) {
    if (!e) return;
    free(e->clean);
    free(e->pert);
    core_free_names(e->col_op, e->k);
    free(e->col_level);
    free(e->split);
    free(e);
}

/* An .npy of float32 or float64 as float32, with its shape checked against
 * want (-1: any) and every value finite. */
static int read_matrix(wobble_ctx *ctx, const char *dir, const char *name, int ndim, const int64_t *want,
                       int64_t *shape, float **out) {
    char *path = core_path_join(dir, name);
    if (!path) return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", dir);
    wobble_array a;
    int rc = wobble_npy_read(ctx, path, &a);
    if (rc) {
        free(path);
        return rc;
    }
    char sh[128] = "";
    for (int i = 0; i < a.ndim; i++) {
        char t[32];
        snprintf(t, sizeof t, "%s%lld", i ? ", " : "", (long long)a.shape[i]);
        strncat(sh, t, sizeof sh - strlen(sh) - 1);
    }
    if (a.dtype != 'f' && a.dtype != 'd') {
        rc = core_seterr(ctx, WOBBLE_EFORMAT, "%s: dtype is not float32 or float64", path);
    } else if (a.ndim != ndim) {
        rc = core_seterr(ctx, WOBBLE_EINVAL, "%s: shape (%s); expected %s", path, sh,
                         ndim == 2 ? "[N, D]" : "[N, K, D]");
    } else {
        for (int i = 0; i < ndim && !rc; i++) {
            if (a.shape[i] < 1 || a.shape[i] > INT32_MAX / 2)
                rc = core_seterr(ctx, WOBBLE_EINVAL, "%s: shape (%s): every dimension must be 1 or more", path, sh);
            else if (want[i] >= 0 && a.shape[i] != want[i])
                rc = core_seterr(ctx, WOBBLE_EINVAL, "%s: shape (%s) does not match clean.npy's [N = %lld, D = %lld]",
                                 path, sh, (long long)want[0], (long long)want[ndim - 1]);
            shape[i] = a.shape[i];
        }
    }
    float *f = NULL;
    if (!rc && !(f = malloc(sizeof(float) * (size_t)a.numel)))
        rc = core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
    for (int64_t i = 0; !rc && i < a.numel; i++) {
        const double v = a.dtype == 'f' ? ((const float *)a.data)[i] : ((const double *)a.data)[i];
        f[i] = (float)v;
        if (!isfinite(f[i])) {
            const int64_t row = i / (a.numel / a.shape[0]);
            rc = core_seterr(ctx, WOBBLE_EINVAL, "%s: row %lld holds %s", path, (long long)row,
                             isnan(v) ? "NaN" : "an infinite value (or one beyond float32)");
        }
    }
    wobble_array_release(&a);
    free(path);
    if (rc) {
        free(f);
        return rc;
    }
    *out = f;
    return WOBBLE_OK;
}

static json_t *load_json(wobble_ctx *ctx, const char *path, int *rc) {
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) *rc = CORE_JSON_OOM(&je) ? core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path)
                                     : core_seterr(ctx, WOBBLE_ECORRUPT, "%s: %s (line %d)", path, je.text, je.line);
    return j;
}

static int read_columns(wobble_ctx *ctx, const char *dir, data_emb *e) {
    char *path = core_path_join(dir, "columns.json");
    if (!path) return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", dir);
    int rc = WOBBLE_OK;
    json_t *j = load_json(ctx, path, &rc);
    if (!rc && !json_is_array(j)) rc = core_seterr(ctx, WOBBLE_EFORMAT, "%s: not a JSON array of columns", path);
    if (!rc && (int)json_array_size(j) != e->k)
        rc = core_seterr(ctx, WOBBLE_EINVAL, "%s: %zu columns for K = %d in perturbed.npy", path, json_array_size(j),
                         e->k);
    if (!rc) {
        e->col_op = calloc((size_t)e->k, sizeof(char *));
        e->col_level = calloc((size_t)e->k, sizeof(double));
        if (!e->col_op || !e->col_level) rc = core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
    }
    for (int c = 0; !rc && c < e->k; c++) {
        json_t *o = json_array_get(j, (size_t)c), *op = json_object_get(o, "op"), *lv = json_object_get(o, "level");
        if (!json_is_string(op) || !json_is_number(lv)) {
            rc = core_seterr(ctx, WOBBLE_EFORMAT, "%s: column %d is not {\"op\": NAME, \"level\": NUMBER}", path, c);
            break;
        }
        const wobble_op_info *info = wobble_op_find(json_string_value(op));
        if (!info) {
            rc = core_seterr(ctx, WOBBLE_ENOTFOUND, "%s: column %d: unknown operation '%s' (see 'wobble ops')", path, c,
                             json_string_value(op));
            break;
        }
        e->col_level[c] = json_number_value(lv);
        if ((rc = wobble_op_check_level(ctx, info, e->col_level[c]))) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", wobble_last_error(ctx));
            rc = core_seterr(ctx, rc, "%s: column %d: %s", path, c, msg);
            break;
        }
        if (!(e->col_op[c] = strdup(info->name))) {
            rc = core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
            break;
        }
        for (int p = 0; p < c; p++)
            if (!strcmp(e->col_op[p], e->col_op[c]) && e->col_level[p] == e->col_level[c]) {
                rc = core_seterr(ctx, WOBBLE_EINVAL, "%s: columns %d and %d are both %s at %g", path, p, c,
                                 e->col_op[c], e->col_level[c]);
                break;
            }
    }
    json_decref(j);
    free(path);
    return rc;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* index.jsonl: one record per row of clean.npy. */
static int read_index(wobble_ctx *ctx, const char *dir, int n, char ***ids_out, int **labels_out, int *split,
                      int *max_label) {
    char *path = core_path_join(dir, "index.jsonl");
    if (!path) return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", dir);
    uint8_t *data = NULL;
    size_t size = 0;
    int rc = core_read_file(ctx, path, &data, &size);
    char **ids = rc ? NULL : calloc((size_t)n, sizeof(char *));
    int *labels = rc ? NULL : malloc(sizeof(int) * (size_t)n);
    if (!rc && (!ids || !labels)) rc = core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
    int row = 0, line = 0;
    *max_label = -1;
    for (size_t p = 0; !rc && p < size;) {
        const uint8_t *nl = memchr(data + p, '\n', size - p);
        const size_t len = (nl ? (size_t)(nl - data) : size) - p;
        line++;
        const char *s = (const char *)data + p;
        p += len + 1;
        size_t b = 0;
        while (b < len && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r')) b++;
        if (b == len) continue; /* blank line */
        if (row >= n) {
            rc = core_seterr(ctx, WOBBLE_EINVAL, "%s: more records than the %d rows of clean.npy (line %d)", path, n,
                             line);
            break;
        }
        json_error_t je;
        json_t *r = json_loadb(s, len, 0, &je);
        json_t *id = r ? json_object_get(r, "id") : NULL, *lab = r ? json_object_get(r, "label") : NULL;
        json_t *sp = r ? json_object_get(r, "split") : NULL;
        const char *sps = json_string_value(sp);
        if (!r) {
            rc = CORE_JSON_OOM(&je) ? core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path)
                                    : core_seterr(ctx, WOBBLE_ECORRUPT, "%s: line %d: %s", path, line, je.text);
        } else if (!json_is_string(id) || !json_string_length(id)) {
            rc = core_seterr(ctx, WOBBLE_EINVAL, "%s: line %d: no \"id\" (a non-empty string)", path, line);
        } else if (lab && !json_is_null(lab) && (!json_is_integer(lab) || json_integer_value(lab) < -1 ||
                                                 json_integer_value(lab) > 1000000)) {
            rc = core_seterr(ctx, WOBBLE_EINVAL, "%s: line %d: \"label\" must be an integer from -1 (none) to 1000000",
                             path, line);
        } else if (sp && !json_is_null(sp) && (!sps || (strcmp(sps, "train") && strcmp(sps, "test")))) {
            rc = core_seterr(ctx, WOBBLE_EINVAL, "%s: line %d: \"split\" must be \"train\" or \"test\"", path, line);
        } else if (!(ids[row] = strdup(json_string_value(id)))) {
            rc = core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
        } else {
            labels[row] = lab && json_is_integer(lab) ? (int)json_integer_value(lab) : -1;
            split[row] = !sps ? 0 : !strcmp(sps, "train") ? DATA_SPLIT_TRAIN : 2;
            if (labels[row] > *max_label) *max_label = labels[row];
            row++;
        }
        json_decref(r);
    }
    if (!rc && row < n)
        rc = core_seterr(ctx, WOBBLE_EINVAL, "%s: %d records for the %d rows of clean.npy", path, row, n);
    /* ids are unique: sort copies of the pointers and compare neighbours */
    if (!rc) {
        char **sorted = malloc(sizeof(char *) * (size_t)n);
        if (!sorted) {
            rc = core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
        } else {
            memcpy(sorted, ids, sizeof(char *) * (size_t)n);
            qsort(sorted, (size_t)n, sizeof(char *), cmp_str);
            for (int i = 1; i < n && !rc; i++)
                if (!strcmp(sorted[i - 1], sorted[i]))
                    rc = core_seterr(ctx, WOBBLE_EINVAL, "%s: id '%s' occurs more than once", path, sorted[i]);
            free(sorted);
        }
    }
    free(data);
    free(path);
    if (rc) {
        core_free_names(ids, ids ? n : 0);
        free(labels);
        return rc;
    }
    *ids_out = ids;
    *labels_out = labels;
    return WOBBLE_OK;
}

/* classes.json when present, else "0".."max_label". */
static int read_classes(wobble_ctx *ctx, const char *dir, int max_label, char ***out, int *n_out) {
    *out = NULL;
    *n_out = 0;
    if (max_label < 0) return WOBBLE_OK;
    char *path = core_path_join(dir, "classes.json");
    if (!path) return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", dir);
    int rc = WOBBLE_OK, n = max_label + 1;
    json_t *j = NULL;
    if (access(path, F_OK) == 0) {
        j = load_json(ctx, path, &rc);
        if (!rc && !json_is_array(j)) rc = core_seterr(ctx, WOBBLE_EFORMAT, "%s: not a JSON array of names", path);
        if (!rc && (int)json_array_size(j) < n)
            rc = core_seterr(ctx, WOBBLE_EINVAL, "%s: %zu class names, but index.jsonl has label %d", path,
                             json_array_size(j), max_label);
        if (!rc) n = (int)json_array_size(j);
    }
    char **names = rc ? NULL : calloc((size_t)n, sizeof(char *));
    if (!rc && !names) rc = core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
    for (int k = 0; !rc && k < n; k++) {
        char num[16];
        snprintf(num, sizeof num, "%d", k);
        json_t *s = j ? json_array_get(j, (size_t)k) : NULL;
        if (j && !json_is_string(s))
            rc = core_seterr(ctx, WOBBLE_EFORMAT, "%s: class %d is not a string", path, k);
        else if (!(names[k] = strdup(j ? json_string_value(s) : num)))
            rc = core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
    }
    json_decref(j);
    free(path);
    if (rc) {
        core_free_names(names, names ? n : 0);
        return rc;
    }
    *out = names;
    *n_out = n;
    return WOBBLE_OK;
}

int data_emb_open(wobble_ctx *ctx, const char *dir, data_emb **out, char ***ids, int **labels, int *n,
                  char ***classes, int *n_classes) {
    data_emb *e = calloc(1, sizeof *e);
    if (!e) return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", dir);
    int64_t cs[2], ps[3];
    const int64_t any2[2] = {-1, -1};
    int rc = read_matrix(ctx, dir, "clean.npy", 2, any2, cs, &e->clean);
    int clean_only = 0;
    if (!rc) {
        e->n = (int)cs[0];
        e->d = (int)cs[1];
        char *pp = core_path_join(dir, "perturbed.npy"), *cp = core_path_join(dir, "columns.json");
        if (!pp || !cp) rc = core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", dir);
        else clean_only = access(pp, F_OK) != 0 && access(cp, F_OK) != 0;
        free(pp), free(cp);
        const int64_t want[3] = {cs[0], -1, cs[1]};
        if (!rc && !clean_only) rc = read_matrix(ctx, dir, "perturbed.npy", 3, want, ps, &e->pert);
    }
    if (!rc && !clean_only) e->k = (int)ps[1];
    if (!rc && !clean_only) rc = read_columns(ctx, dir, e);
    int max_label = -1;
    *ids = NULL;
    *labels = NULL;
    if (!rc && !(e->split = calloc((size_t)e->n, sizeof(int))))
        rc = core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", dir);
    if (!rc) rc = read_index(ctx, dir, e->n, ids, labels, e->split, &max_label);
    if (!rc) rc = read_classes(ctx, dir, max_label, classes, n_classes);
    if (rc) {
        if (*ids) core_free_names(*ids, e->n);
        free(*labels);
        *ids = NULL;
        *labels = NULL;
        data_emb_free(e);
        return rc;
    }
    /* content hash: the arrays and the columns (what an eval cache lock compares) */
    const int dims[3] = {e->n, e->k, e->d};
    uint64_t h = core_fnv1a(CORE_FNV_INIT, dims, sizeof dims);
    h = core_fnv1a(h, e->clean, sizeof(float) * (size_t)e->n * e->d);
    if (e->pert) h = core_fnv1a(h, e->pert, sizeof(float) * (size_t)e->n * e->k * e->d);
    for (int c = 0; c < e->k; c++) {
        h = core_fnv1a(h, e->col_op[c], strlen(e->col_op[c]) + 1);
        h = core_fnv1a(h, &e->col_level[c], sizeof(double));
    }
    e->hash = h;
    *n = e->n;
    *out = e;
    return WOBBLE_OK;
}

int data_emb_column(const data_emb *e, const char *op, double level) {
    for (int c = 0; e && c < e->k; c++)
        if (!strcmp(e->col_op[c], op) && e->col_level[c] == level) return c;
    return -1;
}
