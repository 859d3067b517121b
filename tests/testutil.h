/* Minimal test harness: CHECK records a failure and goes on; every test
 * binary ends with "N passed, N failed" and exits non-zero on failure, or
 * 77 (CTest SKIP_RETURN_CODE) when its inputs are absent. */
#ifndef WOBBLE_TESTUTIL_H
#define WOBBLE_TESTUTIL_H
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <zlib.h>

#include "wobble.h"

static int t_pass, t_fail;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (cond) {                                                        \
            t_pass++;                                                      \
        } else {                                                           \
            t_fail++;                                                      \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
        }                                                                  \
    } while (0)

static inline int t_finish(void) {
    printf("%d passed, %d failed\n", t_pass, t_fail);
    return t_fail ? 1 : 0;
}


static inline const char *t_env(const char *name, const char *fallback) {
    const char *v = getenv(name);
    return v && *v ? v : fallback;
}

/* A fresh folder under $TMPDIR (default /tmp) into buf, named PREFIX_XXXXXX. */
static inline char *t_mkdtemp(char *buf, size_t n, const char *prefix) {
    snprintf(buf, n, "%s/%s_XXXXXX", t_env("TMPDIR", "/tmp"), prefix);
    return mkdtemp(buf);
}

/* tests/ref folder and the shared folder (WOBBLE_SHARED overrides). */
/* whole file, NUL-terminated, malloc'ed; NULL if unreadable */
static inline char *t_slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    *n = fread(b, 1, (size_t)len, f);
    b[*n] = 0;
    fclose(f);
    return b;
}

static inline const char *t_ref_dir(void) { return t_env("WOBBLE_TEST_REF", "tests/ref"); }
static inline const char *t_shared_dir(void) { return t_env("WOBBLE_SHARED", "../shared"); }

/* 1 (after printing why) when `sub` is missing from the shared folder: the
 * test then exits with 77, "skipped" */
static inline int t_shared_missing(const char *sub) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", t_shared_dir(), sub);
    if (access(p, F_OK) == 0) return 0;
    printf("SKIP: %s not found (set WOBBLE_SHARED to the shared folder)\n", p);
    return 1;
}

static inline unsigned long t_crc(const wobble_image *img) {
    size_t n = (size_t)wobble_image_width(img) * wobble_image_height(img) * 3u;
    return crc32(crc32(0L, Z_NULL, 0), wobble_image_data(img), (uInt)n);
}

static inline int t_same(const wobble_image *a, const wobble_image *b) {
    if (wobble_image_width(a) != wobble_image_width(b) || wobble_image_height(a) != wobble_image_height(b)) return 0;
    size_t n = (size_t)wobble_image_width(a) * wobble_image_height(a) * 3u;
    return memcmp(wobble_image_data(a), wobble_image_data(b), n) == 0;
}
/* Cosine similarity and max-abs difference of two float vectors, checked
 * against the given limits; returns the max-abs difference. */
static inline double t_compare(const char *what, const float *a, const float *b, size_t n, double min_cos,
                               double max_abs) {
    double dot = 0, na = 0, nb = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        dot += (double)a[i] * b[i];
        na += (double)a[i] * a[i];
        nb += (double)b[i] * b[i];
        double d = (double)a[i] - b[i];
        d = d < 0 ? -d : d;
        if (d > mx) mx = d;
    }
    double cs = dot / (__builtin_sqrt(na) * __builtin_sqrt(nb) + 1e-300);
    CHECK(cs >= min_cos && mx <= max_abs, "%s: cosine %.9f, max-abs %.3g", what, cs, mx);
    return mx;
}
/* 1 if `dir` holds no leftover temporary file (name containing ".tmp.") */
static inline int t_no_temp(const char *dir) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "find '%s' -name '*.tmp.*' 2>/dev/null | grep -q .", dir);
    return system(cmd) != 0;
}
#endif
