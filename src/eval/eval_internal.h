/* Helpers shared by the eval pipeline, the downstream pipeline and the
 * fine-tuner (internal). */
#ifndef WOBBLE_EVAL_INTERNAL_H
#define WOBBLE_EVAL_INTERNAL_H
#include "../core/internal.h"

#include <jansson.h>

/* JSON with 17 significant digits, newline-terminated, appended to out:
 * 0, or -1 out of memory (out->failed is set). */
int eval_json_bytes(json_t *j, core_buf *out);
/* The same, written atomically to path. */
int eval_write_json(wobble_ctx *ctx, const char *path, json_t *j);
/* Add dir/name to an output set from JSON (NULL j: out of memory) or from a
 * buffer (a failed buffer: out of memory). */
int eval_outset_json(wobble_ctx *ctx, core_outset *set, const char *dir, const char *name, json_t *j);
int eval_outset_buf(wobble_ctx *ctx, core_outset *set, const char *dir, const char *name, const core_buf *b);
/* wobble_eval_run with the result files staged in `set` (the caller
 * commits or aborts them): a pipeline built on eval makes its own outputs
 * and eval's appear together. */
int eval_run_staged(wobble_ctx *ctx, wobble_model *m, const wobble_dataset *ds, const wobble_eval_params *params,
                    const char *out_dir, wobble_eval_summary *summary, core_outset *set);

/* What eval's result files are made of, for eval itself and for merging
 * shards (src/eval/merge.c). Arrays are indexed by dataset index i < N:
 * names, labels, content hashes, ok flags, errors (NULL unless the image
 * failed); rob[o * N + i]; lc, le[(o * Kmax + k) * N + i]. items (n_items of
 * them; NULL: all N in order) are the images the files cover. */
typedef struct {
    int N, O, Kmax;
    const wobble_eval_op *ops;
    const wobble_op_info *const *info;
    const char *const *names;
    const int *labels;
    const uint64_t *ihash;
    const int *ok;
    char *const *errors;
    const wobble_robustness *rob;
    const double *lc, *le;
    const int *items;
    int n_items, n_ok, n_failed;
    const char *data_path, *kind;
    uint64_t seed;
    json_t *model; /* summary.json's "model" (borrowed) */
    json_t *extra; /* keys added to summary.json (borrowed; may be NULL) */
} eval_results;

/* per_image.jsonl, summary.json and summary.csv from R, staged in set. */
int eval_results_stage(wobble_ctx *ctx, const eval_results *R, const char *out_dir, core_outset *set);
#endif
