/* .npy reading (core_npy_parse: magic, versions 1 and 2, the header dict,
 * dtypes, shapes, the data size). */
#include "fuzz.h"
#include "../../src/core/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    wobble_array a;
    if (core_npy_parse(fuzz_ctx(), "fuzz.npy", data, size, &a) == WOBBLE_OK) {
        const size_t es = a.dtype == 'f' || a.dtype == 'i' ? 4 : a.dtype == 'B' ? 1 : 8;
        if (a.numel > 0) {
            volatile uint8_t x = ((const uint8_t *)a.data)[(size_t)a.numel * es - 1];
            (void)x;
        }
        wobble_array_release(&a);
    }
    return 0;
}
