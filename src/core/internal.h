/* Internal helpers shared by every subsystem. Not part of the public API. */
#ifndef WOBBLE_INTERNAL_H
#define WOBBLE_INTERNAL_H

#include "wobble.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define WOBBLE_ERRMSG_MAX 1024

#define CORE_SCRATCH_SLOTS 6
/* slots 4 and 5 belong to the image decoders (which never nest), so an
 * operation that decodes a file while holding slots 0-3 keeps its buffers */
#define CORE_SLOT_DECODE_IN 4
#define CORE_SLOT_DECODE_OUT 5

struct wobble_ctx {
    int threads;
    uint64_t max_pixels;
    int sync_writes; /* wobble_ctx_params.sync_writes */
    int png_level;
    int last_status;
    char last_error[WOBBLE_ERRMSG_MAX];
    /* work buffers kept between calls (core_tmp_get): image-sized scratch
     * freshly mapped on every call costs more than the work on small images */
    void *scratch[CORE_SCRATCH_SLOTS];
    size_t scratch_size[CORE_SCRATCH_SLOTS];
    /* the PNG encoder's libdeflate compressor (about 1 MB of tables), kept
     * between images for the same reason; freed with the context */
    struct libdeflate_compressor *png_z;
    struct libdeflate_decompressor *png_unz; /* the PNG decoder's fast path */
};

struct wobble_image {
    int width;
    int height;
    uint8_t *data; /* 3 * width * height bytes */
};

/* SplitMix64 (Steele, Lea and Flood): the golden-ratio increment, then the
 * finaliser. The noise generator and the probe's held-out split use it. */
/* 64-bit FNV-1a over n bytes, continuing from h (start with CORE_FNV_INIT):
 * the content ids of images, embedding folders and configurations. */
#define CORE_FNV_INIT 1469598103934665603ull
static inline uint64_t core_fnv1a(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = (const uint8_t *)p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static inline uint64_t core_splitmix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A work buffer of at least `bytes`: the context's scratch slot `slot`
 * (0 .. CORE_SCRATCH_SLOTS-1, grown as needed and kept until the context is
 * freed; two live buffers need two slots), or a malloc'ed one when ctx is
 * NULL. Contents are undefined. Release with core_tmp_put. NULL when out of
 * memory. Not for use from two threads on one context at once. */
typedef struct {
    void *p;
    int owned;
} core_tmp;
void *core_tmp_get(wobble_ctx *ctx, int slot, size_t bytes, core_tmp *t);
void core_tmp_put(core_tmp *t);

/* Record an error on ctx (ctx may be NULL) and return `status`. */
int core_seterr(wobble_ctx *ctx, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Allocate an uninitialised image; on failure sets ENOMEM or EINVAL. */
int image_alloc(wobble_ctx *ctx, int width, int height, wobble_image **out);

/* The raw samples of a 16-bit grayscale PNG (host order, row-major,
 * malloc'ed); any other PNG is refused (src/image/png.c). */
int image_png_decode_gray16(wobble_ctx *ctx, const uint8_t *data, size_t size, const char *name, uint16_t **out, int *w,
                            int *h);
/* The largest IDAT chunk the PNG encoder writes (default 1 GiB; 0 restores it): a test hook. */
void image_png_set_idat_max(size_t n);
/* test hook: 0 sends every PNG through libpng (the fast path off), 1 restores it */
void image_png_set_fast(int on);
long image_png_fast_hits(void); /* files the fast path decoded */

/* Read a whole file into a malloc'ed buffer. */
int core_read_file(wobble_ctx *ctx, const char *path, uint8_t **data, size_t *size);

/* Display name for messages: the name, or "<memory>". */
const char *core_name_or(const char *name);

/* ------------------------------------------------------------ core helpers
 * (src/core/util.c, fileio.c, npy.c): one copy each for every subsystem. */

/* Grow the array *p (of `elem`-byte items, capacity *cap items) to hold at
 * least `need` items. Returns 0, or -1 on overflow or out of memory, leaving
 * *p and *cap untouched (p is the address of the array pointer). */
int core_grow(void *p, size_t *cap, size_t need, size_t elem);
/* bytes of storage, 64-byte aligned; from 4 MiB up, 2 MiB aligned and
 * marked for transparent huge pages (fewer page faults and TLB misses on
 * the model's weights and activations). Free with free(); NULL when out of
 * memory. */
void *core_alloc_big(size_t bytes);
/* dlopen(flags) of the first of the n candidate paths (NULL entries are
 * skipped) that loads; NULL if none does, with the last failure in err
 * ("what: dlerror()") */
void *core_dlopen_first(const char *const *cand, int n, int flags, const char *what, char *err, size_t errsize);

/* A growable byte buffer, NUL-terminated once non-empty. A failed append
 * sets `failed` and makes every later one a no-op, so a builder checks once
 * at the end. Zero-initialise; release with core_buf_free. */
typedef struct {
    char *p;
    size_t len, cap;
    int failed;
} core_buf;
int core_buf_add(core_buf *b, const void *data, size_t n);
int core_buf_printf(core_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void core_buf_free(core_buf *b);

/* Seconds on the monotonic clock. */
double core_now_s(void);
/* CPU time of the whole process (all threads), seconds */
double core_cpu_s(void);
/* "a/b", malloc'ed (NULL when out of memory). */
char *core_path_join(const char *a, const char *b);
/* 1 if `path` is a folder (following links). */
int core_is_dir(const char *path);
/* The sorted names in a folder, dot files left out: 0, -1 out of memory, -2
 * the folder cannot be opened (errno says why). Free with core_free_names. */
int core_list_dir(const char *dir, char ***names, int *count);
void core_free_names(char **names, int count);
/* e /= ||e|| in place (a zero vector stays zero). */
void core_l2_normalize(float *e, int d);

/* Write a durable temporary file beside `path`; *tmp receives its name. */
int core_write_temp(wobble_ctx *ctx, const char *path, const void *data, size_t size, char **tmp);

/* A set of output files that appear together or not at all: each add
 * writes a temporary file; commit renames them all into place; abort (or a
 * failed add) removes the temporaries. Zero-initialise. */
#define CORE_OUTSET_MAX 16
typedef struct {
    int n;
    char *tmp[CORE_OUTSET_MAX], *dst[CORE_OUTSET_MAX];
} core_outset;
int core_outset_add(wobble_ctx *ctx, core_outset *s, const char *path, const void *data, size_t size);
int core_outset_commit(wobble_ctx *ctx, core_outset *s);
void core_outset_abort(core_outset *s);

/* A failed jansson load that ran out of memory: jansson reports it as
 * json_error_out_of_memory on some paths and leaves the error unset (empty
 * text) on others. For files that include <jansson.h>. */
#define CORE_JSON_OOM(e) (json_error_code(e) == json_error_out_of_memory || !(e)->text[0])

/* .npy from memory: the parser behind wobble_npy_read (`path` names the
 * source in messages), and the encoder behind the writers ("<f4" or "<i4",
 * C order), appending to out. */
int core_npy_parse(wobble_ctx *ctx, const char *path, const uint8_t *buf, size_t n, wobble_array *out);
int core_npy_encode(wobble_ctx *ctx, const char *descr, const void *data, int ndim, const int64_t *shape, core_buf *out);

#endif
