/* Shared bits of the libFuzzer harnesses (tests/fuzz, docs/reliability.md).
 * Each harness feeds one parser the fuzzer's bytes; any crash, leak or
 * sanitizer report is a bug. A failure status is a correct answer. */
#ifndef WOBBLE_FUZZ_H
#define WOBBLE_FUZZ_H
#include "wobble.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One context for the process: errors are recorded, never printed; the
 * decoder refuses images over 4 megapixels so that a header cannot make a
 * run allocate gigabytes (that limit is itself under test). */
static inline wobble_ctx *fuzz_ctx(void) {
    static wobble_ctx *ctx;
    if (!ctx) {
        wobble_ctx_params p = wobble_ctx_default_params();
        p.threads = 1;
        p.max_pixels = 1u << 22;
        if (wobble_ctx_create(&p, &ctx) != WOBBLE_OK) abort();
    }
    return ctx;
}

/* Write data to path (the harnesses that drive file-based loaders). */
static inline void fuzz_write(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
}

/* A private scratch folder for this process. */
static inline const char *fuzz_dir(void) {
    static char dir[256];
    if (!dir[0]) {
        const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
        snprintf(dir, sizeof dir, "%s/wobble-fuzz-XXXXXX", base);
        if (!mkdtemp(dir)) abort();
    }
    return dir;
}
#endif
