#define _POSIX_C_SOURCE 200809L
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int core_read_file(wobble_ctx *ctx, const char *path, uint8_t **data, size_t *size) {
    if (!path || !data || !size) return core_seterr(ctx, WOBBLE_EINVAL, "read: NULL argument");
    int fd = open(path, O_RDONLY);
    if (fd < 0) return core_seterr(ctx, WOBBLE_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return core_seterr(ctx, WOBBLE_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return core_seterr(ctx, WOBBLE_EIO, "%s: is a directory", path);
    }
    size_t cap = st.st_size > 0 ? (size_t)st.st_size : 65536;
    uint8_t *buf = malloc(cap + 1);
    if (!buf) {
        close(fd);
        return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory reading %zu bytes", path, cap);
    }
    size_t len = 0;
    for (;;) {
        if (len == cap) {
            size_t ncap = cap * 2;
            uint8_t *nb = realloc(buf, ncap + 1);
            if (!nb) {
                free(buf);
                close(fd);
                return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            free(buf);
            close(fd);
            return core_seterr(ctx, WOBBLE_EIO, "%s: read error: %s", path, strerror(e));
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    close(fd);
    *data = buf;
    *size = len;
    return WOBBLE_OK;
}

int wobble_mkdirs(wobble_ctx *ctx, const char *path) {
    if (!path || !*path) return core_seterr(ctx, WOBBLE_EINVAL, "mkdirs: empty path");
    char *p = strdup(path);
    if (!p) return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
    int rc = WOBBLE_OK;
    for (char *c = p + 1; *c && rc == WOBBLE_OK; c++)
        if (*c == '/') {
            *c = 0;
            if (mkdir(p, 0777) != 0 && errno != EEXIST) rc = WOBBLE_EIO;
            *c = '/';
        }
    if (rc == WOBBLE_OK && mkdir(p, 0777) != 0 && errno != EEXIST) rc = WOBBLE_EIO;
    if (rc == WOBBLE_OK) {
        struct stat st;
        if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) rc = WOBBLE_EIO;
    }
    free(p);
    if (rc) return core_seterr(ctx, rc, "%s: cannot create the folder: %s", path, strerror(errno ? errno : ENOTDIR));
    return WOBBLE_OK;
}

/* Write `size` bytes to a new temporary file beside `path` (made durable);
 * on success *tmp_out holds its malloc'ed name. */
int core_write_temp(wobble_ctx *ctx, const char *path, const void *data, size_t size, char **tmp_out) {
    *tmp_out = NULL;
    if (!path || (!data && size)) return core_seterr(ctx, WOBBLE_EINVAL, "write: NULL argument");
    size_t n = strlen(path);
    char *tmp = malloc(n + 16);
    if (!tmp) return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return core_seterr(ctx, WOBBLE_EIO, "%s: cannot create temporary file: %s", path, strerror(e));
    }
    const uint8_t *p = data;
    size_t left = size;
    const char *what = NULL;
    int e = 0;
    while (left && !what) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            e = errno, what = "write error";
        } else {
            p += w;
            left -= (size_t)w;
        }
    }
    if (!what) {
        /* mkstemp creates 0600; give the file the usual permissions */
        mode_t mask = umask(0);
        umask(mask);
        if (fchmod(fd, 0666 & ~mask) != 0) e = errno, what = "cannot set permissions";
    }
    if (!what && (!ctx || ctx->sync_writes) && fsync(fd) != 0 && errno != EINVAL) e = errno, what = "fsync failed";
    if (close(fd) != 0 && !what) e = errno, what = "close failed";
    if (what) {
        unlink(tmp);
        free(tmp);
        return core_seterr(ctx, WOBBLE_EIO, "%s: %s: %s", path, what, strerror(e));
    }
    *tmp_out = tmp;
    return WOBBLE_OK;
}

int wobble_write_file_atomic(wobble_ctx *ctx, const char *path, const void *data, size_t size) {
    char *tmp = NULL;
    int rc = core_write_temp(ctx, path, data, size, &tmp);
    if (rc) return rc;
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        return core_seterr(ctx, WOBBLE_EIO, "%s: cannot rename temporary file: %s", path, strerror(e));
    }
    free(tmp);
    return WOBBLE_OK;
}

/* ---------------------------------------------------------- output sets */
int core_outset_add(wobble_ctx *ctx, core_outset *s, const char *path, const void *data, size_t size) {
    if (s->n == CORE_OUTSET_MAX) return core_seterr(ctx, WOBBLE_EINTERNAL, "%s: too many outputs in one set", path);
    char *dst = strdup(path), *tmp = NULL;
    if (!dst) return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
    int rc = core_write_temp(ctx, path, data, size, &tmp);
    if (rc) {
        free(dst);
        return rc;
    }
    s->dst[s->n] = dst;
    s->tmp[s->n] = tmp;
    s->n++;
    return WOBBLE_OK;
}

int core_outset_commit(wobble_ctx *ctx, core_outset *s) {
    int rc = WOBBLE_OK;
    /* what would make a rename fail is checked for every file before the
     * first one is renamed */
    for (int i = 0; i < s->n && rc == WOBBLE_OK; i++) {
        struct stat st;
        if (stat(s->dst[i], &st) == 0 && S_ISDIR(st.st_mode))
            rc = core_seterr(ctx, WOBBLE_EIO, "%s: is a folder; cannot write the result there", s->dst[i]);
    }
    for (int i = 0; i < s->n && rc == WOBBLE_OK; i++) {
        if (rename(s->tmp[i], s->dst[i]) != 0)
            rc = core_seterr(ctx, WOBBLE_EIO, "%s: cannot rename temporary file: %s", s->dst[i], strerror(errno));
        else {
            free(s->tmp[i]);
            s->tmp[i] = NULL;
        }
    }
    core_outset_abort(s);
    return rc;
}

void core_outset_abort(core_outset *s) {
    for (int i = 0; i < s->n; i++) {
        if (s->tmp[i]) unlink(s->tmp[i]);
        free(s->tmp[i]);
        free(s->dst[i]);
    }
    s->n = 0;
}

int wobble_sync_path(wobble_ctx *ctx, const char *path) {
    if (!path) return core_seterr(ctx, WOBBLE_EINVAL, "sync: NULL path");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return core_seterr(ctx, WOBBLE_EIO, "%s: cannot open to flush it to disk: %s", path, strerror(e));
    }
    int rc = syncfs(fd);
    int e = errno;
    close(fd);
    if (rc != 0) return core_seterr(ctx, WOBBLE_EIO, "%s: flushing to disk failed: %s", path, strerror(e));
    return WOBBLE_OK;
}
