/* Datasets (src/data): the input source of eval, downstream and finetune.
 * The public API is wobble_dataset_* in wobble.h; these are the parsers
 * behind it, exposed for the fuzz harnesses. */
#ifndef WOBBLE_DATA_H
#define WOBBLE_DATA_H
#include "../core/internal.h"

/* An empty dataset for `path` (NULL when out of memory); free with
 * wobble_dataset_free. */
wobble_dataset *data_alloc(const char *path);
/* Hand the dataset its raw bytes (malloc'ed; the dataset frees them). */
void data_set_raw(wobble_dataset *ds, uint8_t *raw);
/* Index the raw bytes (size of them) as CIFAR-10 records, or as an IDX image
 * file against the IDX label bytes lab (ls of them, from the file lp). */
int data_cifar_index(wobble_ctx *ctx, wobble_dataset *ds, size_t size);
int data_idx_index(wobble_ctx *ctx, wobble_dataset *ds, size_t size, const uint8_t *lab, size_t ls, const char *lp);

/* An embedding folder (src/data/embeddings.c, docs/embeddings.md): the rows
 * of clean.npy [n, d] and perturbed.npy [n, k, d], what each column is, and
 * a content hash of all of it. */
typedef struct data_emb {
    int n, d, k;
    float *clean, *pert;
    char **col_op;     /* [k] registry names */
    double *col_level; /* [k] */
    int *split;        /* [n]: 0 none, DATA_SPLIT_TRAIN, 2 test */
    uint64_t hash;
} data_emb;

/* Parse DIR: the arrays, the ids and labels (index.jsonl, n of each) and the
 * class names (classes.json, or "0".."max label"; none when unlabelled). */
int data_emb_open(wobble_ctx *ctx, const char *dir, data_emb **out, char ***ids, int **labels, int *n,
                  char ***classes, int *n_classes);
/* The split of each row ("split" in index.jsonl): 0 none, 1 train, 2 test. */
#define DATA_SPLIT_TRAIN 1
void data_emb_free(data_emb *e);
/* Column of (op, level), or -1. */
int data_emb_column(const data_emb *e, const char *op, double level);
/* The embedding folder behind an "embeddings" dataset; NULL for image datasets. */
const data_emb *data_embeddings(const wobble_dataset *ds);
/* The folder row of item i of an embeddings dataset (a split keeps some rows). */
int data_emb_row(const wobble_dataset *ds, int i);
#endif
