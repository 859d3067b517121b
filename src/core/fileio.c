#define _POSIX_C_SOURCE 200809L
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int wobble_read_file(wobble_ctx *ctx, const char *path, uint8_t **data, size_t *size) {
    if (!path || !data || !size) return wobble_seterr(ctx, WOBBLE_EINVAL, "read: NULL argument");
    int fd = open(path, O_RDONLY);
    if (fd < 0) return wobble_seterr(ctx, WOBBLE_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return wobble_seterr(ctx, WOBBLE_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return wobble_seterr(ctx, WOBBLE_EIO, "%s: is a directory", path);
    }
    size_t cap = st.st_size > 0 ? (size_t)st.st_size : 65536;
    uint8_t *buf = malloc(cap + 1);
    if (!buf) {
        close(fd);
        return wobble_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory reading %zu bytes", path, cap);
    }
    size_t len = 0;
    for (;;) {
        if (len == cap) {
            size_t ncap = cap * 2;
            uint8_t *nb = realloc(buf, ncap + 1);
            if (!nb) {
                free(buf);
                close(fd);
                return wobble_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
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
            return wobble_seterr(ctx, WOBBLE_EIO, "%s: read error: %s", path, strerror(e));
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
    if (!path || !*path) return wobble_seterr(ctx, WOBBLE_EINVAL, "mkdirs: empty path");
    char *p = strdup(path);
    if (!p) return wobble_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
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
    if (rc) return wobble_seterr(ctx, rc, "%s: cannot create the folder: %s", path, strerror(errno ? errno : ENOTDIR));
    return WOBBLE_OK;
}

int wobble_write_file_atomic(wobble_ctx *ctx, const char *path, const void *data, size_t size) {
    if (!path || (!data && size)) return wobble_seterr(ctx, WOBBLE_EINVAL, "write: NULL argument");
    size_t n = strlen(path);
    char *tmp = malloc(n + 16);
    if (!tmp) return wobble_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return wobble_seterr(ctx, WOBBLE_EIO, "%s: cannot create temporary file: %s", path, strerror(e));
    }
    const uint8_t *p = data;
    size_t left = size;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            free(tmp);
            return wobble_seterr(ctx, WOBBLE_EIO, "%s: write error: %s", path, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    /* mkstemp creates 0600; give the file the usual permissions */
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);
    if (fsync(fd) != 0 && errno != EINVAL) {
        int e = errno;
        close(fd);
        unlink(tmp);
        free(tmp);
        return wobble_seterr(ctx, WOBBLE_EIO, "%s: fsync failed: %s", path, strerror(e));
    }
    if (close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        return wobble_seterr(ctx, WOBBLE_EIO, "%s: close failed: %s", path, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        return wobble_seterr(ctx, WOBBLE_EIO, "%s: cannot rename temporary file: %s", path, strerror(e));
    }
    free(tmp);
    return WOBBLE_OK;
}
