/*
 * Datasets: a folder of images (recursive, unlabelled), an ImageFolder tree
 * (one subfolder per class, labels in sorted folder order), a CIFAR-10 binary
 * file (records of 1 label byte + 1024 R + 1024 G + 1024 B; class names from
 * batches.meta.txt beside it), or an IDX image file with its IDX label file
 * (Fashion-MNIST / MNIST; .gz read transparently; gray converted to RGB).
 */
#include "data.h"

#include <errno.h>
#include <limits.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <zlib.h>

typedef enum { DS_FOLDER, DS_IMAGEFOLDER, DS_CIFAR, DS_IDX, DS_EMBEDDINGS } ds_kind;

struct wobble_dataset {
    ds_kind kind;
    char *path;
    int n;
    char **names;   /* per item: file path, or "file#index" */
    int *labels;    /* -1 when unlabelled */
    size_t cap_names, cap_labels;
    char **classes;
    int n_classes;
    uint8_t *raw;   /* CIFAR records or IDX pixels */
    int rows, cols; /* IDX image size */
    data_emb *emb;  /* an embedding folder's arrays */
    int *emb_row;   /* item -> folder row (a split keeps some rows) */
};

wobble_dataset_params wobble_dataset_default_params(void) {
    wobble_dataset_params p;
    memset(&p, 0, sizeof p);
    p.labels_path = NULL;
    p.limit = 0;
    return p;
}

static int is_image(const char *n) {
    const char *d = strrchr(n, '.');
    return d && (!strcasecmp(d, ".png") || !strcasecmp(d, ".jpg") || !strcasecmp(d, ".jpeg"));
}

/* Append an item (taking `name`, which may be NULL after a failed
 * allocation): 0, or -1 out of memory (name is freed). */
static int add_item(wobble_dataset *ds, char *name, int label) {
    if (!name || core_grow(&ds->names, &ds->cap_names, (size_t)ds->n + 1, sizeof *ds->names) ||
        core_grow(&ds->labels, &ds->cap_labels, (size_t)ds->n + 1, sizeof *ds->labels)) {
        free(name);
        return -1;
    }
    ds->names[ds->n] = name;
    ds->labels[ds->n++] = label;
    return 0;
}

/* 0, -1 out of memory, -2 a folder cannot be opened */
static int walk(wobble_dataset *ds, const char *dir, int label) {
    int n;
    char **v = NULL;
    int rc = core_list_dir(dir, &v, &n);
    for (int i = 0; i < n && !rc; i++) {
        char *full = core_path_join(dir, v[i]);
        if (!full) {
            rc = -1;
        } else if (core_is_dir(full)) {
            rc = walk(ds, full, label);
            free(full);
        } else if (is_image(v[i])) {
            rc = add_item(ds, full, label);
        } else {
            free(full);
        }
    }
    core_free_names(v, n);
    return rc;
}

static int open_folder(wobble_ctx *ctx, wobble_dataset *ds) {
    int n;
    char **v = NULL;
    int rc = core_list_dir(ds->path, &v, &n);
    if (rc == -2) return core_seterr(ctx, WOBBLE_EIO, "%s: cannot open folder: %s", ds->path, strerror(errno));
    int subdirs = 0, images = 0;
    char **full = rc ? NULL : calloc((size_t)n + 1, sizeof *full);
    if (!full) rc = -1;
    for (int i = 0; i < n && !rc; i++) {
        if (!(full[i] = core_path_join(ds->path, v[i]))) rc = -1;
        else if (core_is_dir(full[i])) subdirs++;
        else if (is_image(v[i])) images++;
    }
    if (!rc && subdirs > 0 && images == 0) {
        /* ImageFolder: class = subfolder */
        ds->kind = DS_IMAGEFOLDER;
        if (!(ds->classes = calloc((size_t)subdirs, sizeof(char *)))) rc = -1;
        for (int i = 0; i < n && !rc; i++)
            if (core_is_dir(full[i])) {
                if (!(ds->classes[ds->n_classes] = strdup(v[i]))) rc = -1;
                else rc = walk(ds, full[i], ds->n_classes++);
            }
    } else if (!rc) {
        ds->kind = DS_FOLDER;
        rc = walk(ds, ds->path, -1);
    }
    core_free_names(full, full ? n : 0);
    core_free_names(v, n);
    if (rc == -1) return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory listing the folder", ds->path);
    return rc ? core_seterr(ctx, WOBBLE_EIO, "%s: cannot list the folder", ds->path) : WOBBLE_OK;
}

static int read_all(wobble_ctx *ctx, const char *path, uint8_t **data, size_t *size) {
    /* gzread reads plain files unchanged */
    gzFile g = gzopen(path, "rb");
    if (!g) return core_seterr(ctx, WOBBLE_EIO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 20, n = 0;
    uint8_t *b = malloc(cap);
    for (;;) {
        if (!b) {
            gzclose(g);
            return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
        }
        if (n == cap && core_grow(&b, &cap, cap + 1, 1)) {
            free(b);
            b = NULL;
            continue;
        }
        int r = gzread(g, b + n, (unsigned)(cap - n > (1u << 30) ? (1u << 30) : cap - n));
        if (r < 0) {
            int e;
            const char *msg = gzerror(g, &e);
            char m[200];
            snprintf(m, sizeof m, "%s", msg);
            gzclose(g);
            free(b);
            return core_seterr(ctx, WOBBLE_ECORRUPT, "%s: read error: %s", path, m);
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    gzclose(g);
    *data = b;
    *size = n;
    return WOBBLE_OK;
}

static uint32_t be32(const uint8_t *p) { return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]; }

/* Class names "0" .. "C-1" for the classes from k on. */
static int number_classes(wobble_dataset *ds, int k) {
    for (; k < ds->n_classes; k++) {
        char t[16];
        snprintf(t, sizeof t, "%d", k);
        if (!(ds->classes[k] = strdup(t))) return -1;
    }
    return 0;
}

/* Index CIFAR-10 records already in ds->raw (size bytes). */
int data_cifar_index(wobble_ctx *ctx, wobble_dataset *ds, size_t size) {
    if (size == 0 || size % 3073 != 0)
        return core_seterr(ctx, WOBBLE_ECORRUPT, "%s: %zu bytes is not a whole number of CIFAR-10 records (3073 bytes)",
                             ds->path, size);
    if (size / 3073 > INT_MAX) return core_seterr(ctx, WOBBLE_EFORMAT, "%s: too many CIFAR-10 records", ds->path);
    const int n = (int)(size / 3073);
    int maxlab = 0;
    const size_t plen = strlen(ds->path) + 16;
    for (int i = 0; i < n; i++) {
        char *full = malloc(plen);
        if (full) snprintf(full, plen, "%s#%d", ds->path, i);
        const int lab = ds->raw[(size_t)i * 3073];
        if (lab > maxlab) maxlab = lab;
        if (add_item(ds, full, lab)) return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", ds->path);
    }
    ds->n_classes = maxlab + 1;
    if (!(ds->classes = calloc((size_t)ds->n_classes, sizeof(char *))) || number_classes(ds, 0))
        return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", ds->path);
    ds->kind = DS_CIFAR;
    return WOBBLE_OK;
}

static int open_cifar(wobble_ctx *ctx, wobble_dataset *ds) {
    size_t size = 0;
    int rc = read_all(ctx, ds->path, &ds->raw, &size);
    if (rc == WOBBLE_OK) rc = data_cifar_index(ctx, ds, size);
    if (rc) return rc;
    /* class names from batches.meta.txt beside the file */
    const char *sl = strrchr(ds->path, '/');
    char meta[4096];
    snprintf(meta, sizeof meta, "%.*s/batches.meta.txt", sl ? (int)(sl - ds->path) : 1, sl ? ds->path : ".");
    FILE *f = fopen(meta, "r");
    char line[256];
    int k = 0;
    while (f && k < ds->n_classes && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!*line) continue;
        char *name = strdup(line);
        if (!name) {
            rc = WOBBLE_ENOMEM;
            break;
        }
        free(ds->classes[k]); /* the number it had */
        ds->classes[k++] = name;
    }
    if (f) fclose(f);
    if (rc) return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", ds->path);
    return WOBBLE_OK;
}

/* Index an IDX image file already in ds->raw against its label file. */
int data_idx_index(wobble_ctx *ctx, wobble_dataset *ds, size_t size, const uint8_t *lab, size_t ls, const char *lp) {
    if (size < 16 || be32(ds->raw) != 0x00000803)
        return core_seterr(ctx, WOBBLE_EFORMAT, "%s: not an IDX image file (magic 0x00000803)", ds->path);
    const uint32_t n = be32(ds->raw + 4), r = be32(ds->raw + 8), c = be32(ds->raw + 12);
    /* n * r * c + 16 == size, without overflow */
    if (r == 0 || c == 0 || r > 65535 || c > 65535 || (size - 16) / ((uint64_t)r * c) != n ||
        (size - 16) % ((uint64_t)r * c) != 0)
        return core_seterr(ctx, WOBBLE_ECORRUPT, "%s: header says %u images of %ux%u but the file has %zu bytes",
                             ds->path, n, r, c, size);
    if (n > INT_MAX) return core_seterr(ctx, WOBBLE_EFORMAT, "%s: too many IDX images", ds->path);
    ds->rows = (int)r;
    ds->cols = (int)c;
    if (ls < 8 || be32(lab) != 0x00000801)
        return core_seterr(ctx, WOBBLE_EFORMAT, "%s: not an IDX label file (magic 0x00000801)", lp);
    if (be32(lab + 4) != n || ls - 8 != (size_t)n)
        return core_seterr(ctx, WOBBLE_ECORRUPT, "%s: %u labels for %u images in %s", lp, be32(lab + 4), n, ds->path);
    int maxlab = 0;
    const size_t plen = strlen(ds->path) + 16;
    for (uint32_t i = 0; i < n; i++) {
        char *full = malloc(plen);
        if (full) snprintf(full, plen, "%s#%u", ds->path, i);
        if (lab[8 + i] > maxlab) maxlab = lab[8 + i];
        if (add_item(ds, full, lab[8 + i])) return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", ds->path);
    }
    ds->n_classes = maxlab + 1;
    if (!(ds->classes = calloc((size_t)ds->n_classes, sizeof(char *))) || number_classes(ds, 0))
        return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", ds->path);
    ds->kind = DS_IDX;
    return WOBBLE_OK;
}

static int open_idx(wobble_ctx *ctx, wobble_dataset *ds, const char *labels_path) {
    size_t size = 0;
    int rc = read_all(ctx, ds->path, &ds->raw, &size);
    if (rc) return rc;
    if (size < 16 || be32(ds->raw) != 0x00000803)
        return core_seterr(ctx, WOBBLE_EFORMAT, "%s: not an IDX image file (magic 0x00000803)", ds->path);
    char lp[4096];
    if (labels_path) {
        snprintf(lp, sizeof lp, "%s", labels_path);
    } else {
        /* t10k-images-idx3-ubyte[.gz] -> t10k-labels-idx1-ubyte[.gz] */
        snprintf(lp, sizeof lp, "%s", ds->path);
        char *p = strstr(lp, "images-idx3");
        if (!p) return core_seterr(ctx, WOBBLE_EINVAL, "%s: give the IDX label file with --labels", ds->path);
        memcpy(p, "labels-idx1", 11);
    }
    uint8_t *lab = NULL;
    size_t ls = 0;
    rc = read_all(ctx, lp, &lab, &ls);
    if (rc == WOBBLE_OK) rc = data_idx_index(ctx, ds, size, lab, ls, lp);
    free(lab);
    return rc;
}

wobble_dataset *data_alloc(const char *path) {
    wobble_dataset *ds = calloc(1, sizeof *ds);
    if (ds && !(ds->path = strdup(path))) {
        free(ds);
        ds = NULL;
    }
    return ds;
}

void data_set_raw(wobble_dataset *ds, uint8_t *raw) { ds->raw = raw; }

void wobble_dataset_free(wobble_dataset *ds) {
    if (!ds) return;
    core_free_names(ds->names, ds->n);
    free(ds->labels);
    core_free_names(ds->classes, ds->n_classes);
    free(ds->raw);
    data_emb_free(ds->emb);
    free(ds->emb_row);
    free(ds->path);
    free(ds);
}

const data_emb *data_embeddings(const wobble_dataset *ds) { return ds ? ds->emb : NULL; }

/* A folder holding clean.npy and index.jsonl is an embedding folder: 1, 0,
 * or -1 out of memory. */
static int is_embedding_folder(const char *dir) {
    char *a = core_path_join(dir, "clean.npy"), *b = core_path_join(dir, "index.jsonl");
    const int yes = !a || !b ? -1 : access(a, F_OK) == 0 && access(b, F_OK) == 0;
    free(a), free(b);
    return yes;
}

int data_emb_row(const wobble_dataset *ds, int i) { return ds->emb_row ? ds->emb_row[i] : i; }

/* split: NULL every row, "train" the rows marked train, "test" the others. */
static int open_embeddings(wobble_ctx *ctx, wobble_dataset *ds, const char *split) {
    ds->kind = DS_EMBEDDINGS;
    int n = 0;
    int rc = data_emb_open(ctx, ds->path, &ds->emb, &ds->names, &ds->labels, &n, &ds->classes, &ds->n_classes);
    if (rc) return rc;
    ds->n = n;
    ds->cap_names = ds->cap_labels = (size_t)n;
    if (!split) return WOBBLE_OK;
    const int want_train = !strcmp(split, "train");
    if (!want_train && strcmp(split, "test"))
        return core_seterr(ctx, WOBBLE_EINVAL, "%s: split '%s' is neither train nor test", ds->path, split);
    if (!(ds->emb_row = malloc(sizeof(int) * (size_t)n + 1))) return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", ds->path);
    int m = 0;
    for (int r = 0; r < n; r++) {
        if ((ds->emb->split[r] == DATA_SPLIT_TRAIN) != want_train) {
            free(ds->names[r]);
            continue;
        }
        ds->names[m] = ds->names[r];
        ds->labels[m] = ds->labels[r];
        ds->emb_row[m++] = r;
    }
    ds->n = m;
    if (m == 0)
        return core_seterr(ctx, WOBBLE_EINVAL, "%s: no row of index.jsonl is in the %s split%s", ds->path, split,
                           want_train ? " (\"split\": \"train\")" : "");
    return WOBBLE_OK;
}

int wobble_dataset_open(wobble_ctx *ctx, const char *path, const wobble_dataset_params *params, wobble_dataset **out) {
    if (!path || !out) return core_seterr(ctx, WOBBLE_EINVAL, "dataset: NULL argument");
    *out = NULL;
    wobble_dataset_params p = params ? *params : wobble_dataset_default_params();
    wobble_dataset *ds = data_alloc(path);
    if (!ds) return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
    int rc, emb;
    struct stat st;
    if (stat(path, &st) != 0) {
        rc = core_seterr(ctx, WOBBLE_EIO, "%s: cannot open: %s", path, strerror(errno));
    } else if (S_ISDIR(st.st_mode) && (emb = is_embedding_folder(path)) != 0) {
        rc = emb < 0 ? core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path) : open_embeddings(ctx, ds, p.split);
    } else if (S_ISDIR(st.st_mode)) {
        rc = open_folder(ctx, ds);
    } else {
        /* by content: IDX magic, else CIFAR-10 by size, else a single image */
        uint8_t head[4] = {0};
        gzFile g = gzopen(path, "rb");
        int got = g ? gzread(g, head, 4) : 0;
        if (g) gzclose(g);
        if (got == 4 && be32(head) == 0x00000803) {
            rc = open_idx(ctx, ds, p.labels_path);
        } else if (is_image(path)) {
            ds->kind = DS_FOLDER;
            rc = add_item(ds, strdup(path), -1) ? core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path) : WOBBLE_OK;
        } else if (st.st_size > 0 && st.st_size % 3073 == 0) {
            rc = open_cifar(ctx, ds);
        } else {
            rc = core_seterr(ctx, WOBBLE_EFORMAT,
                               "%s: not a folder, an image, a CIFAR-10 binary file or an IDX image file", path);
        }
    }
    if (rc == WOBBLE_OK && ds->n == 0) rc = core_seterr(ctx, WOBBLE_EINVAL, "%s: the dataset is empty", path);
    if (rc == WOBBLE_OK && p.limit > 0 && p.limit < ds->n) {
        for (int i = p.limit; i < ds->n; i++) free(ds->names[i]);
        ds->n = p.limit;
    }
    if (rc) {
        wobble_dataset_free(ds);
        return rc;
    }
    *out = ds;
    return WOBBLE_OK;
}

int wobble_dataset_size(const wobble_dataset *ds) { return ds ? ds->n : 0; }
int wobble_dataset_num_classes(const wobble_dataset *ds) { return ds ? ds->n_classes : 0; }
const char *wobble_dataset_class_name(const wobble_dataset *ds, int k) {
    return ds && k >= 0 && k < ds->n_classes ? ds->classes[k] : NULL;
}
const char *wobble_dataset_kind(const wobble_dataset *ds) {
    static const char *k[] = {"folder", "imagefolder", "cifar10", "idx", "embeddings"};
    return ds ? k[ds->kind] : "";
}
const char *wobble_dataset_item(const wobble_dataset *ds, int i) { return ds && i >= 0 && i < ds->n ? ds->names[i] : NULL; }
int wobble_dataset_label(const wobble_dataset *ds, int i) { return ds && i >= 0 && i < ds->n ? ds->labels[i] : -1; }

int wobble_dataset_load(wobble_ctx *ctx, const wobble_dataset *ds, int i, wobble_image **out) {
    if (!ds || !out || i < 0 || i >= ds->n) return core_seterr(ctx, WOBBLE_EINVAL, "dataset: bad index %d", i);
    *out = NULL;
    if (ds->kind == DS_FOLDER || ds->kind == DS_IMAGEFOLDER) return wobble_image_read(ctx, ds->names[i], out);
    if (ds->kind == DS_EMBEDDINGS)
        return core_seterr(ctx, WOBBLE_EINVAL, "%s: an embedding folder holds no images (item '%s')", ds->path,
                           ds->names[i]);
    if (ds->kind == DS_CIFAR) {
        const uint8_t *r = ds->raw + (size_t)i * 3073 + 1;
        int rc = image_alloc(ctx, 32, 32, out);
        if (rc) return rc;
        for (int p = 0; p < 1024; p++)
            for (int c = 0; c < 3; c++) (*out)->data[3 * p + c] = r[c * 1024 + p];
        return WOBBLE_OK;
    }
    const size_t per = (size_t)ds->rows * ds->cols;
    const uint8_t *r = ds->raw + 16 + (size_t)i * per;
    int rc = image_alloc(ctx, ds->cols, ds->rows, out);
    if (rc) return rc;
    for (size_t p = 0; p < per; p++) (*out)->data[3 * p] = (*out)->data[3 * p + 1] = (*out)->data[3 * p + 2] = r[p];
    return WOBBLE_OK;
}

int wobble_dataset_embed_dim(const wobble_dataset *ds) { return ds && ds->emb ? ds->emb->d : 0; }
int wobble_dataset_num_columns(const wobble_dataset *ds) { return ds && ds->emb ? ds->emb->k : 0; }
int wobble_dataset_column(const wobble_dataset *ds, int k, const char **op, double *level) {
    if (!ds || !ds->emb || k < 0 || k >= ds->emb->k) return WOBBLE_EINVAL;
    if (op) *op = ds->emb->col_op[k];
    if (level) *level = ds->emb->col_level[k];
    return WOBBLE_OK;
}
