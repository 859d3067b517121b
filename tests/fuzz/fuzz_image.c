/* PNG and JPEG decoding (wobble_image_decode: by content, with the pixel
 * limit); PNGs also through the 16-bit depth-map reader. */
#include "fuzz.h"
#include "../../src/core/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    wobble_ctx *ctx = fuzz_ctx();
    wobble_image *img = NULL;
    if (wobble_image_decode(ctx, data, size, "fuzz", &img) == WOBBLE_OK) {
        if (wobble_image_width(img) < 1 || wobble_image_height(img) < 1) abort();
        wobble_image_free(img);
    }
    if (wobble_detect_format(data, size) == WOBBLE_FORMAT_PNG) {
        uint16_t *d = NULL;
        int w = 0, h = 0;
        if (image_png_decode_gray16(ctx, data, size, "fuzz", &d, &w, &h) == WOBBLE_OK) {
            if (w < 1 || h < 1 || !d) abort();
            volatile uint16_t sink = d[(size_t)w * h - 1]; /* the whole map was written */
            (void)sink;
            free(d);
        }
    }
    return 0;
}
