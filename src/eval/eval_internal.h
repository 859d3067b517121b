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
#endif
