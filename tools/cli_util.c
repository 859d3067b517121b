#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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
    int cap = 8, n = 0;
    double *v = malloc(sizeof(double) * cap);
    if (!v) return -1;
    const char *p = s;
    for (;;) {
        char *end = NULL;
        errno = 0;
        double d = strtod(p, &end);
        if (end == p || errno == ERANGE || !isfinite(d)) {
            free(v);
            return -1;
        }
        if (n == cap) {
            cap *= 2;
            double *nv = realloc(v, sizeof(double) * cap);
            if (!nv) {
                free(v);
                return -1;
            }
            v = nv;
        }
        v[n++] = d;
        if (*end == ',') {
            p = end + 1;
            continue;
        }
        if (*end != 0) {
            free(v);
            return -1;
        }
        break;
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
    int n, cap;
} strlist;

static int sl_push(strlist *l, const char *path, const char *rel) {
    if (l->n == l->cap) {
        int nc = l->cap ? l->cap * 2 : 64;
        char **nv = realloc(l->v, sizeof(char *) * nc);
        if (!nv) return -1;
        l->v = nv;
        char **nr = realloc(l->rel, sizeof(char *) * nc);
        if (!nr) return -1;
        l->rel = nr;
        l->cap = nc;
    }
    l->v[l->n] = strdup(path);
    l->rel[l->n] = strdup(rel);
    if (!l->v[l->n] || !l->rel[l->n]) return -1;
    l->n++;
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int walk(strlist *l, const char *dir, const char *relbase) {
    DIR *d = opendir(dir);
    if (!d) {
        cli_error("%s: cannot open folder: %s", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nn = realloc(names, sizeof(char *) * cap);
            if (!nn) break;
            names = nn;
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof(char *), cmp_str);
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        size_t len = strlen(dir) + strlen(names[i]) + 2;
        size_t rlen = strlen(relbase) + strlen(names[i]) + 2;
        char *full = malloc(len), *rel = malloc(rlen);
        if (!full || !rel) {
            free(full);
            free(rel);
            rc = -1;
            break;
        }
        snprintf(full, len, "%s/%s", dir, names[i]);
        if (*relbase)
            snprintf(rel, rlen, "%s/%s", relbase, names[i]);
        else
            snprintf(rel, rlen, "%s", names[i]);
        struct stat st;
        if (stat(full, &st) == 0) {
            if (S_ISDIR(st.st_mode))
                rc = walk(l, full, rel);
            else if (S_ISREG(st.st_mode) && cli_is_image_path(names[i]))
                rc = sl_push(l, full, rel);
        }
        free(full);
        free(rel);
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
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

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void cli_progress_start(cli_progress *p, long total) {
    p->enabled = isatty(STDERR_FILENO);
    p->total = total;
    p->t0 = now_s();
}

void cli_progress_update(cli_progress *p, long done, const char *what) {
    if (!p->enabled || p->total <= 0) return;
    double el = now_s() - p->t0;
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
