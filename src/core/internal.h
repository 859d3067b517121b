/* Internal helpers shared by every subsystem. Not part of the public API. */
#ifndef WOBBLE_INTERNAL_H
#define WOBBLE_INTERNAL_H

#include "wobble.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define WOBBLE_ERRMSG_MAX 1024

struct wobble_ctx {
    int threads;
    uint64_t max_pixels;
    int last_status;
    char last_error[WOBBLE_ERRMSG_MAX];
};

struct wobble_image {
    int width;
    int height;
    uint8_t *data; /* 3 * width * height bytes */
};

/* SplitMix64 (Steele, Lea and Flood): the golden-ratio increment, then the
 * finaliser. The noise generator and the probe's held-out split use it. */
static inline uint64_t wobble_splitmix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Record an error on ctx (ctx may be NULL) and return `status`. */
int wobble_seterr(wobble_ctx *ctx, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Allocate an uninitialised image; on failure sets ENOMEM or EINVAL. */
int wobble_image_alloc(wobble_ctx *ctx, int width, int height, wobble_image **out);

/* Read a whole file into a malloc'ed buffer. */
int wobble_read_file(wobble_ctx *ctx, const char *path, uint8_t **data, size_t *size);

/* Display name for messages: the name, or "<memory>". */
const char *wobble_name_or(const char *name);

#endif
