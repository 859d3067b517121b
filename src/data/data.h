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
#endif
