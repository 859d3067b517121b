/* The --op NAME[:LEVELS] parser of wobble eval and finetune
 * (cli_parse_op_spec; the first byte's low bit allows LOW-HIGH ranges), then
 * the library's judgement of the levels (wobble_eval_check_ops, or
 * wobble_op_check_level on a range's ends). */
#include "fuzz.h"
#include "../../tools/cli.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 4096) return 0;
    const int allow_range = data[0] & 1;
    char *s = malloc(size);
    if (!s) return 0;
    memcpy(s, data + 1, size - 1);
    s[size - 1] = 0;
    cli_op_spec o;
    char err[512];
    if (cli_parse_op_spec(s, allow_range, &o, err, sizeof err) == 0) {
        const wobble_op_info *info = wobble_op_find(o.name);
        wobble_ctx *ctx = fuzz_ctx();
        if (o.range && info) {
            wobble_op_check_level(ctx, info, o.lo);
            wobble_op_check_level(ctx, info, o.hi);
        } else {
            wobble_eval_op op = {o.name, o.n_levels ? o.levels : info ? info->grid : NULL,
                                 o.n_levels ? o.n_levels : info ? info->grid_len : 0};
            wobble_eval_check_ops(ctx, &op, 1);
        }
        cli_op_spec_free(&o);
    } else if (!err[0]) {
        abort(); /* a refusal always says why */
    }
    free(s);
    return 0;
}
