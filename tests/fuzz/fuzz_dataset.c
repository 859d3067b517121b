/* CIFAR-10 and IDX datasets: the first byte picks the format. CIFAR: the
 * rest is the record file. IDX: a 4-byte little-endian length L, then L
 * bytes of the image file and the rest as the label file. Each parsed
 * dataset loads its first and last images. */
#include "fuzz.h"
#include "../../src/data/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    wobble_ctx *ctx = fuzz_ctx();
    if (size < 1) return 0;
    const int idx = data[0] & 1;
    data++, size--;
    size_t img_n = size;
    const uint8_t *lab = NULL;
    size_t lab_n = 0;
    if (idx) {
        if (size < 4) return 0;
        uint32_t L;
        memcpy(&L, data, 4);
        data += 4, size -= 4;
        img_n = L < size ? L : size;
        lab = data + img_n;
        lab_n = size - img_n;
    }
    wobble_dataset *ds = data_alloc("fuzz");
    if (!ds) return 0;
    uint8_t *raw = malloc(img_n + 1);
    if (!raw) {
        wobble_dataset_free(ds);
        return 0;
    }
    if (img_n) memcpy(raw, data, img_n);
    data_set_raw(ds, raw);
    const int rc = idx ? data_idx_index(ctx, ds, img_n, lab, lab_n, "fuzz-labels")
                       : data_cifar_index(ctx, ds, img_n);
    if (rc == WOBBLE_OK) {
        const int n = wobble_dataset_size(ds);
        for (int i = 0; i < n && i < 2; i++) {
            wobble_image *im = NULL;
            if (wobble_dataset_load(ctx, ds, i ? n - 1 : 0, &im) == WOBBLE_OK) wobble_image_free(im);
        }
        for (int k = 0; k < wobble_dataset_num_classes(ds); k++)
            if (!wobble_dataset_class_name(ds, k)) abort();
    }
    wobble_dataset_free(ds);
    return 0;
}
