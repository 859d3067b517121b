/* NumPy .npy reader (little-endian, C order) and float32 writer. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_header(const char *h, size_t len, char *dtype, int *fortran, int *ndim, int64_t *shape) {
    (void)len;
    const char *d = strstr(h, "'descr'");
    const char *f = strstr(h, "'fortran_order'");
    const char *s = strstr(h, "'shape'");
    if (!d || !f || !s) return -1;
    d = strchr(d + 7, '\'');
    if (!d) return -1;
    d++;
    if (!strncmp(d, "<f4", 3)) *dtype = 'f';
    else if (!strncmp(d, "<f8", 3)) *dtype = 'd';
    else if (!strncmp(d, "<i8", 3)) *dtype = 'q';
    else if (!strncmp(d, "<i4", 3)) *dtype = 'i';
    else if (!strncmp(d, "|u1", 3)) *dtype = 'B';
    else return -2;
    f = strchr(f + 15, ':');
    if (!f) return -1;
    f++;
    while (*f == ' ') f++;
    *fortran = !strncmp(f, "True", 4);
    s = strchr(s + 7, '(');
    if (!s) return -1;
    s++;
    *ndim = 0;
    while (*s && *s != ')') {
        while (*s == ' ' || *s == ',') s++;
        if (*s == ')') break;
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s || v < 0 || *ndim == 8) return -1;
        shape[(*ndim)++] = v;
        s = end;
    }
    return *s == ')' ? 0 : -1;
}

int core_npy_parse(wobble_ctx *ctx, const char *path, const uint8_t *buf, size_t n, wobble_array *out) {
    if (!out) return core_seterr(ctx, WOBBLE_EINVAL, "npy: NULL output");
    memset(out, 0, sizeof *out);
    path = core_name_or(path);
    if (!buf || n < 10 || memcmp(buf, "\x93NUMPY", 6) != 0)
        return core_seterr(ctx, WOBBLE_EFORMAT, "%s: not a .npy file", path);
    const int major = buf[6];
    size_t hlen, off;
    if (major == 1) {
        hlen = (size_t)buf[8] | ((size_t)buf[9] << 8);
        off = 10;
    } else {
        if (n < 12) return core_seterr(ctx, WOBBLE_ECORRUPT, "%s: truncated .npy header", path);
        hlen = (size_t)buf[8] | ((size_t)buf[9] << 8) | ((size_t)buf[10] << 16) | ((size_t)buf[11] << 24);
        off = 12;
    }
    if (hlen > n - off) return core_seterr(ctx, WOBBLE_ECORRUPT, "%s: truncated .npy header", path);
    char *h = malloc(hlen + 1);
    if (!h) return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
    memcpy(h, buf + off, hlen);
    h[hlen] = 0;
    int fortran = 0;
    int pr = parse_header(h, hlen, &out->dtype, &fortran, &out->ndim, out->shape);
    free(h);
    if (pr != 0 || fortran)
        return core_seterr(ctx, WOBBLE_EFORMAT, "%s: unsupported .npy header (%s)", path,
                             pr == -2 ? "dtype" : fortran ? "Fortran order" : "syntax");
    const size_t es = out->dtype == 'f' || out->dtype == 'i' ? 4 : out->dtype == 'B' ? 1 : 8;
    const size_t body = n - off - hlen;
    /* the element count, bounded by what the body could hold (no overflow) */
    size_t numel = 1;
    for (int i = 0; i < out->ndim; i++) {
        if (out->shape[i] < 0) return core_seterr(ctx, WOBBLE_EFORMAT, "%s: negative .npy dimension", path);
        const size_t d = (size_t)out->shape[i];
        if (d && numel > body / es / d)
            return core_seterr(ctx, WOBBLE_ECORRUPT, "%s: .npy data is %zu bytes, far less than its shape needs", path,
                                 body);
        numel *= d;
    }
    if (body != numel * es)
        return core_seterr(ctx, WOBBLE_ECORRUPT, "%s: .npy data is %zu bytes, shape needs %zu", path, body,
                             numel * es);
    out->numel = (int64_t)numel;
    out->data = malloc(body ? body : 1);
    if (!out->data) return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
    memcpy(out->data, buf + off + hlen, body);
    return WOBBLE_OK;
}

int wobble_npy_read(wobble_ctx *ctx, const char *path, wobble_array *out) {
    if (!out) return core_seterr(ctx, WOBBLE_EINVAL, "npy: NULL output");
    memset(out, 0, sizeof *out);
    uint8_t *buf = NULL;
    size_t n = 0;
    int rc = core_read_file(ctx, path, &buf, &n);
    if (rc) return rc;
    rc = core_npy_parse(ctx, path, buf, n, out);
    free(buf);
    return rc;
}

void wobble_array_release(wobble_array *a) {
    if (!a) return;
    free(a->data);
    a->data = NULL;
}

int core_npy_encode(wobble_ctx *ctx, const char *descr, const void *data, int ndim, const int64_t *shape, core_buf *out) {
    if ((!data && ndim) || ndim < 0 || ndim > 8) return core_seterr(ctx, WOBBLE_EINVAL, "npy: bad argument");
    char dict[256];
    int o = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        o += snprintf(dict + o, sizeof dict - o, "%lld,%s", (long long)shape[i], (ndim > 1 && i < ndim - 1) ? " " : "");
        numel *= shape[i];
    }
    if (ndim > 1) o--; /* "(a, b)" not "(a, b,)" */
    o += snprintf(dict + o, sizeof dict - o, "), }");
    /* pad so that data starts at a multiple of 64 */
    const size_t total = 10 + (size_t)o + 1;
    const size_t pad = (64 - total % 64) % 64;
    const size_t hlen = (size_t)o + pad + 1;
    uint8_t pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (uint8_t)(hlen & 0xff), (uint8_t)(hlen >> 8)};
    char spaces[64];
    memset(spaces, ' ', sizeof spaces);
    core_buf_add(out, pre, 10);
    core_buf_add(out, dict, (size_t)o);
    core_buf_add(out, spaces, pad);
    core_buf_add(out, "\n", 1);
    if (numel) core_buf_add(out, data, (size_t)numel * 4);
    return out->failed ? core_seterr(ctx, WOBBLE_ENOMEM, "npy: out of memory") : WOBBLE_OK;
}

static int npy_write4(wobble_ctx *ctx, const char *path, const char *descr, const void *data, int ndim,
                      const int64_t *shape) {
    if (!path) return core_seterr(ctx, WOBBLE_EINVAL, "npy: bad argument");
    core_buf b = {0};
    int rc = core_npy_encode(ctx, descr, data, ndim, shape, &b);
    if (rc == WOBBLE_OK) rc = wobble_write_file_atomic(ctx, path, b.p, b.len);
    core_buf_free(&b);
    return rc;
}

int wobble_npy_write_f32(wobble_ctx *ctx, const char *path, const float *data, int ndim, const int64_t *shape) {
    return npy_write4(ctx, path, "<f4", data, ndim, shape);
}

int wobble_npy_write_i32(wobble_ctx *ctx, const char *path, const int32_t *data, int ndim, const int64_t *shape) {
    return npy_write4(ctx, path, "<i4", data, ndim, shape);
}
