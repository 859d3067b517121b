/* safetensors headers (st_open_memory: JSON header, dtypes, shapes,
 * offsets, overlaps, duplicates), then the F32 view of every tensor (F16 and
 * BF16 conversion, alignment, NaN/Inf checks). */
#include "fuzz.h"
#include "../../src/model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    wobble_ctx *ctx = fuzz_ctx();
    st_file *st = NULL;
    if (st_open_memory(ctx, "fuzz.safetensors", data, size, &st) != WOBBLE_OK) return 0;
    for (int i = 0; i < st_count(st); i++) {
        const st_tensor *t = st_at(st, i);
        if (!t || t->data < data || t->data + t->nbytes > data + size) abort();
        const float *f = NULL;
        float *owned = NULL;
        if (st_to_f32(ctx, st, t, &f, &owned) == WOBBLE_OK && t->numel > 0) {
            volatile float x = f[t->numel - 1]; /* the whole view is readable */
            (void)x;
        }
        free(owned);
    }
    st_close(st);
    return 0;
}
