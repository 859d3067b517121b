/* Embedding folders (wobble eval --embeddings, docs/embeddings.md): byte 0
 * picks the file the rest replaces in an otherwise valid folder (0
 * index.jsonl, 1 columns.json, 2 classes.json, 3 clean.npy, 4
 * perturbed.npy); the folder is opened whole and as its train and test
 * splits, and every accessor is read back. */
#include "fuzz.h"
#include "../../src/data/data.h"

#include <sys/stat.h>
#include <unistd.h>

enum { N = 3, K = 2, D = 4 };

static void npy(const char *path, const float *v, int ndim, const int64_t *shape) {
    if (wobble_npy_write_f32(fuzz_ctx(), path, v, ndim, shape) != WOBBLE_OK) abort();
}

static void check(const wobble_dataset *ds) {
    const int n = wobble_dataset_size(ds), k = wobble_dataset_num_columns(ds), d = wobble_dataset_embed_dim(ds);
    const data_emb *e = data_embeddings(ds);
    if (!e || n < 1 || d < 1 || k < 0 || e->k != k) abort();
    for (int i = 0; i < n; i++) {
        const int r = data_emb_row(ds, i);
        if (r < 0 || r >= e->n || !wobble_dataset_item(ds, i)) abort();
        const int l = wobble_dataset_label(ds, i);
        if (l < -1 || (l >= 0 && l >= wobble_dataset_num_classes(ds))) abort();
        volatile float s = e->clean[(size_t)r * d];
        if (k) s += e->pert[((size_t)r * k + (size_t)k - 1) * d + (size_t)d - 1];
        (void)s;
    }
    for (int c = 0; c < k; c++) {
        const char *op;
        double lv;
        if (wobble_dataset_column(ds, c, &op, &lv) != WOBBLE_OK || !wobble_op_find(op) ||
            data_emb_column(e, op, lv) != c)
            abort();
    }
    for (int c = 0; c < wobble_dataset_num_classes(ds); c++)
        if (!wobble_dataset_class_name(ds, c)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    wobble_ctx *ctx = fuzz_ctx();
    if (size < 1) return 0;
    static const char *files[5] = {"index.jsonl", "columns.json", "classes.json", "clean.npy", "perturbed.npy"};
    const int which = data[0] % 5;
    char dir[600], p[700];
    snprintf(dir, sizeof dir, "%s/emb", fuzz_dir());
    if (access(dir, F_OK) != 0 && mkdir(dir, 0755) != 0) abort();
    /* the valid folder */
    float c[N * D], q[N * K * D];
    for (int i = 0; i < N * D; i++) c[i] = (float)(i % 5) - 1.5f;
    for (int i = 0; i < N * K * D; i++) q[i] = (float)(i % 7) - 2.5f;
    const int64_t cs[2] = {N, D}, ps[3] = {N, K, D};
    static const char *idx = "{\"id\": \"a\", \"label\": 0, \"split\": \"train\"}\n{\"id\": \"b\", \"label\": 1, "
                             "\"split\": \"train\"}\n{\"id\": \"c\", \"label\": 1}\n";
    static const char *cols = "[{\"op\": \"jpeg\", \"level\": 50}, {\"op\": \"hue\", \"level\": 0.1}]";
    static const char *cls = "[\"cat\", \"dog\"]";
    snprintf(p, sizeof p, "%s/index.jsonl", dir), fuzz_write(p, idx, strlen(idx));
    snprintf(p, sizeof p, "%s/columns.json", dir), fuzz_write(p, cols, strlen(cols));
    snprintf(p, sizeof p, "%s/classes.json", dir), fuzz_write(p, cls, strlen(cls));
    snprintf(p, sizeof p, "%s/clean.npy", dir), npy(p, c, 2, cs);
    snprintf(p, sizeof p, "%s/perturbed.npy", dir), npy(p, q, 3, ps);
    /* the fuzzed file */
    snprintf(p, sizeof p, "%s/%s", dir, files[which]);
    fuzz_write(p, data + 1, size - 1);
    static const char *splits[3] = {NULL, "train", "test"};
    for (int s = 0; s < 3; s++) {
        wobble_dataset_params dp = wobble_dataset_default_params();
        dp.split = splits[s];
        wobble_dataset *ds = NULL;
        if (wobble_dataset_open(ctx, dir, &dp, &ds) == WOBBLE_OK) {
            if (strcmp(wobble_dataset_kind(ds), "embeddings")) abort();
            check(ds);
        }
        wobble_dataset_free(ds);
    }
    return 0;
}
