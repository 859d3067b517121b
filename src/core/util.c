/* Small helpers every subsystem uses, one copy each: growable arrays and
 * byte buffers, monotonic time, path joining, folder listing, L2 norms. */
#define _POSIX_C_SOURCE 200809L
#include "internal.h"

#include <dlfcn.h>

#include <sys/mman.h>

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int core_grow(void *pp, size_t *cap, size_t need, size_t elem) {
    void **p = pp;
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) {
        if (nc > SIZE_MAX / 2) return -1;
        nc *= 2;
    }
    if (elem && nc > SIZE_MAX / elem) return -1;
    void *q = realloc(*p, nc * elem);
    if (!q) return -1;
    *p = q;
    *cap = nc;
    return 0;
}

int core_buf_add(core_buf *b, const void *data, size_t n) {
    if (b->failed) return -1;
    if (b->len + n + 1 < b->len || core_grow(&b->p, &b->cap, b->len + n + 1, 1)) {
        b->failed = 1;
        return -1;
    }
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

int core_buf_printf(core_buf *b, const char *fmt, ...) {
    if (b->failed) return -1;
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int k = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (k < 0) {
        b->failed = 1;
        return -1;
    }
    if ((size_t)k < sizeof small) return core_buf_add(b, small, (size_t)k);
    if (core_grow(&b->p, &b->cap, b->len + (size_t)k + 1, 1)) {
        b->failed = 1;
        return -1;
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)k;
    return 0;
}

void core_buf_free(core_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

double core_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

double core_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

char *core_path_join(const char *a, const char *b) {
    const size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", a, b);
    return s;
}

int core_is_dir(const char *path) {
    struct stat st;
    return path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int core_list_dir(const char *dir, char ***names, int *count) {
    *names = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) return -2;
    char **v = NULL;
    size_t cap = 0;
    int n = 0, rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (core_grow(&v, &cap, (size_t)n + 1, sizeof *v) || !(v[n] = strdup(e->d_name))) {
            rc = -1;
            break;
        }
        n++;
    }
    closedir(d);
    if (rc) {
        core_free_names(v, n);
        return rc;
    }
    if (n) qsort(v, (size_t)n, sizeof *v, cmp_str);
    *names = v;
    *count = n;
    return 0;
}

void core_free_names(char **v, int n) {
    for (int i = 0; v && i < n; i++) free(v[i]);
    free(v);
}

void core_l2_normalize(float *e, int d) {
    double s = 0;
    for (int j = 0; j < d; j++) s += (double)e[j] * e[j];
    const float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f;
    for (int j = 0; j < d; j++) e[j] *= inv;
}

void *core_alloc_big(size_t bytes) {
    const size_t huge = (size_t)2 << 20;
    if (bytes < 2 * huge) return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    const size_t n = (bytes + huge - 1) & ~(huge - 1);
    void *p = aligned_alloc(huge, n);
#ifdef MADV_HUGEPAGE
    if (p) madvise(p, n, MADV_HUGEPAGE); /* advice only: without THP the pages stay small */
#endif
    return p;
}

void *core_dlopen_first(const char *const *cand, int n, int flags, const char *what, char *err, size_t errsize) {
    void *h = NULL;
    for (int i = 0; i < n && !h; i++) {
        if (!cand[i]) continue;
        h = dlopen(cand[i], flags);
        if (!h) { /* the last failure is the one reported */
            const char *e = dlerror();
            snprintf(err, errsize, "%s: %s", what, e ? e : cand[i]);
        }
    }
    return h;
}
