#include "cli.h"
#include "../src/core/internal.h" /* core helpers: growable arrays, folder listing, time */

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void cli_error(const char *fmt, ...) {
    va_list ap;
    fputs("wobble: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cli_parse_levels(const char *s, double **out) {
    *out = NULL;
    if (!s || !*s) return -1;
    double *v = NULL;
    size_t cap = 0;
    int n = 0;
    for (const char *p = s;;) {
        char *end = NULL;
        errno = 0;
        const double d = strtod(p, &end);
        if (end == p || errno == ERANGE || !isfinite(d) || (*end && *end != ',') ||
            core_grow(&v, &cap, (size_t)n + 1, sizeof *v)) {
            free(v);
            return -1;
        }
        v[n++] = d;
        if (!*end) break;
        p = end + 1;
    }
    *out = v;
    return n;
}

int cli_parse_int(const char *s, long long lo, long long hi, long long *out) {
    if (!s || !*s) return -1;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end || errno || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int cli_parse_u64(const char *s, uint64_t *out) {
    if (!s || !*s || *s == '-') return -1;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno) return -1;
    *out = (uint64_t)v;
    return 0;
}

int cli_is_image_path(const char *p) {
    const char *dot = strrchr(p, '.');
    if (!dot) return 0;
    return !strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg");
}

typedef struct strlist {
    char **v;
    char **rel;
    int n;
    size_t cap_v, cap_rel;
} strlist;

static int sl_push(strlist *l, const char *path, const char *rel) {
    if (core_grow(&l->v, &l->cap_v, (size_t)l->n + 1, sizeof *l->v) ||
        core_grow(&l->rel, &l->cap_rel, (size_t)l->n + 1, sizeof *l->rel))
        return -1;
    char *a = strdup(path), *b = strdup(rel);
    if (!a || !b) {
        free(a), free(b);
        return -1;
    }
    l->v[l->n] = a;
    l->rel[l->n] = b;
    l->n++;
    return 0;
}

static int walk(strlist *l, const char *dir, const char *relbase) {
    char **names = NULL;
    int n = 0;
    const int lr = core_list_dir(dir, &names, &n);
    if (lr == -2) {
        cli_error("%s: cannot open folder: %s", dir, strerror(errno));
        return -1;
    }
    if (lr) {
        cli_error("%s: out of memory listing the folder", dir);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        char *full = core_path_join(dir, names[i]), *rel = *relbase ? core_path_join(relbase, names[i]) : strdup(names[i]);
        if (!full || !rel) {
            cli_error("%s: out of memory listing the folder", dir);
            rc = -1;
        }
        struct stat st;
        if (!rc && stat(full, &st) == 0) {
            if (S_ISDIR(st.st_mode))
                rc = walk(l, full, rel);
            else if (S_ISREG(st.st_mode) && cli_is_image_path(names[i]) && (rc = sl_push(l, full, rel)))
                cli_error("%s: out of memory listing the folder", dir);
        }
        free(full);
        free(rel);
    }
    core_free_names(names, n);
    return rc;
}

int cli_collect_images(char **inputs, int n, char ***paths, char ***rel) {
    strlist l = {0};
    for (int i = 0; i < n; i++) {
        struct stat st;
        if (stat(inputs[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            if (walk(&l, inputs[i], "") != 0) {
                cli_free_list(l.v, l.n);
                cli_free_list(l.rel, l.n);
                return -1;
            }
        } else {
            /* a missing or unreadable file is reported when it is read */
            const char *base = strrchr(inputs[i], '/');
            if (sl_push(&l, inputs[i], base ? base + 1 : inputs[i]) != 0) {
                cli_error("out of memory collecting the inputs");
                cli_free_list(l.v, l.n);
                cli_free_list(l.rel, l.n);
                return -1;
            }
        }
    }
    *paths = l.v;
    *rel = l.rel;
    return l.n;
}

void cli_free_list(char **list, int n) {
    if (!list) return;
    for (int i = 0; i < n; i++) free(list[i]);
    free(list);
}

void cli_progress_start(cli_progress *p, long total) {
    p->enabled = isatty(STDERR_FILENO);
    p->total = total;
    p->t0 = core_now_s();
}

void cli_progress_update(cli_progress *p, long done, const char *what) {
    if (!p->enabled || p->total <= 0) return;
    double el = core_now_s() - p->t0;
    double eta = done > 0 ? el / done * (p->total - done) : 0;
    int width = 30, fill = (int)(width * done / p->total);
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\r[%s] %ld/%ld  %.0fs elapsed, ETA %.0fs  %-40.40s", bar, done, p->total, el, eta,
            what ? what : "");
    fflush(stderr);
}

void cli_progress_end(cli_progress *p) {
    if (!p->enabled) return;
    fprintf(stderr, "\r%*s\r", 120, "");
    fflush(stderr);
}
