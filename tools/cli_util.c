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

int cli_parse_real(const char *s, double lo, double hi, double *out) {
    if (!s || !*s) return -1;
    char *end = NULL;
    errno = 0;
    const double v = strtod(s, &end);
    if (*end || errno == ERANGE || !isfinite(v) || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int cli_opt_int(const char *cmd, const char *opt, const char *s, long long lo, long long hi, long long *out) {
    if (!cli_parse_int(s, lo, hi, out)) return 0;
    cli_error("%s: %s '%s' is not an integer in %lld..%lld", cmd, opt, s, lo, hi);
    return -1;
}

int cli_opt_u64(const char *cmd, const char *opt, const char *s, uint64_t *out) {
    if (!cli_parse_u64(s, out)) return 0;
    cli_error("%s: %s '%s' is not a non-negative integer", cmd, opt, s);
    return -1;
}

int cli_opt_real(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out) {
    if (!cli_parse_real(s, lo, hi, out)) return 0;
    cli_error("%s: %s '%s' is not a number in [%g, %g]", cmd, opt, s, lo, hi);
    return -1;
}

int cli_opt_precision(const char *cmd, const char *s, wobble_precision *out) {
    const int p = wobble_precision_parse(s);
    if (p < 0) {
        cli_error("%s: --precision '%s' is neither fp32 nor bf16", cmd, s);
        return -1;
    }
    *out = (wobble_precision)p;
    return 0;
}

int cli_opt_device(const char *cmd, const char *s, wobble_device *dev, int *index) {
    if (!strcmp(s, "cpu")) {
        *dev = WOBBLE_DEVICE_CPU;
        *index = 0;
        return 0;
    }
    if (!strncmp(s, "cuda", 4) && (s[4] == 0 || s[4] == ':')) {
        long long i = 0;
        if (s[4] == ':' && cli_opt_int(cmd, "--device cuda:N", s + 5, 0, 1023, &i)) return -1;
        *dev = WOBBLE_DEVICE_CUDA;
        *index = (int)i;
        return 0;
    }
    cli_error("%s: --device '%s' is not cpu, cuda or cuda:N", cmd, s);
    return -1;
}

int cli_check_device(const char *cmd, wobble_precision prec, wobble_device dev) {
    if (dev == WOBBLE_DEVICE_CPU && prec == WOBBLE_PRECISION_BF16 && !wobble_bf16_supported()) {
        cli_error("%s: --precision bf16 needs a CPU with AVX512_BF16, which this one lacks; use fp32 (or --device cuda)",
                  cmd);
        return -1;
    }
    if (dev == WOBBLE_DEVICE_CUDA && !wobble_cuda_built()) {
        cli_error("%s: --device cuda: this wobble was built without CUDA (build it where the CUDA toolkit is installed)",
                  cmd);
        return -1;
    }
    return 0;
}

void cli_op_spec_free(cli_op_spec *o) {
    free(o->name);
    free(o->levels);
    memset(o, 0, sizeof *o);
}

int cli_parse_op_spec(const char *spec, int allow_range, cli_op_spec *o, char *err, size_t err_size) {
    memset(o, 0, sizeof *o);
    const char *colon = strchr(spec, ':');
    o->name = colon ? strndup(spec, (size_t)(colon - spec)) : strdup(spec);
    if (!o->name) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    if (!*o->name) {
        snprintf(err, err_size, "--op '%s' has no operation name", spec);
        cli_op_spec_free(o);
        return -1;
    }
    if (!colon) return 0;
    const char *v = colon + 1;
    /* a range: one '-' after a digit or '.', no comma */
    const char *dash = NULL;
    for (const char *p = v; *p && p[1]; p++)
        if (p[1] == '-' && ((*p >= '0' && *p <= '9') || *p == '.')) dash = p + 1;
    if (allow_range && dash && !strchr(v, ',')) {
        char *lo_s = strndup(v, (size_t)(dash - v));
        const int bad = !lo_s || cli_parse_real(lo_s, -HUGE_VAL, HUGE_VAL, &o->lo) ||
                        cli_parse_real(dash + 1, -HUGE_VAL, HUGE_VAL, &o->hi);
        free(lo_s);
        if (bad) {
            snprintf(err, err_size, "bad range in --op '%s' (expected LOW-HIGH)", spec);
            cli_op_spec_free(o);
            return -1;
        }
        o->range = 1;
        return 0;
    }
    o->n_levels = cli_parse_levels(v, &o->levels);
    if (o->n_levels < 1) {
        snprintf(err, err_size, "bad level list '%s' for %s (expected numbers separated by commas%s)", v, o->name,
                 allow_range ? ", or LOW-HIGH" : "");
        cli_op_spec_free(o);
        return -1;
    }
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

void cli_tokenizer_dir(const char *model, const char *tokenizer, char *dir, size_t size) {
    if (tokenizer) {
        snprintf(dir, size, "%s", tokenizer);
        return;
    }
    snprintf(dir, size, "%s", model);
    struct stat st;
    if (stat(dir, &st) == 0 && !S_ISDIR(st.st_mode)) {
        char *sl = strrchr(dir, '/');
        if (sl) *sl = 0;
        else snprintf(dir, size, ".");
    }
}

int cli_mpi_launched(void) { return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK"); }
