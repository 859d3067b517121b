#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER (100u << 20) /* 100 MiB, as the reference implementation */
#define ST_MAX_SHARDS 256

typedef struct st_map {
    char *path;
    uint8_t *base;
    size_t size;
    size_t data_off; /* 8 + header length */
    int mapped;      /* 1: mmap'ed here (unmapped at close); 0: the caller's memory */
} st_map;

struct st_file {
    char *path;
    st_map maps[ST_MAX_SHARDS];
    int nmaps;
    st_tensor *t;
    int n;
    size_t cap;
};

static int dtype_of(const char *s, st_dtype *dt, size_t *esize) {
    static const struct {
        const char *name;
        st_dtype dt;
        size_t size;
    } tab[] = {{"F32", ST_F32, 4}, {"F16", ST_F16, 2},  {"BF16", ST_BF16, 2}, {"F64", ST_OTHER, 8},
               {"I64", ST_OTHER, 8}, {"I32", ST_OTHER, 4}, {"I16", ST_OTHER, 2}, {"I8", ST_OTHER, 1},
               {"U8", ST_OTHER, 1},  {"BOOL", ST_OTHER, 1}, {"U16", ST_OTHER, 2}, {"U32", ST_OTHER, 4},
               {"U64", ST_OTHER, 8}, {"F8_E4M3", ST_OTHER, 1}, {"F8_E5M2", ST_OTHER, 1}};
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (!strcmp(s, tab[i].name)) {
            *dt = tab[i].dt;
            *esize = tab[i].size;
            return 1;
        }
    return 0;
}

static int cmp_off(const void *a, const void *b) {
    const st_tensor *x = *(st_tensor *const *)a, *y = *(st_tensor *const *)b;
    if (x->data < y->data) return -1;
    if (x->data > y->data) return 1;
    return 0;
}

static int push(st_file *st, st_tensor *t) {
    if (core_grow(&st->t, &st->cap, (size_t)st->n + 1, sizeof *st->t)) return -1;
    st->t[st->n++] = *t;
    return 0;
}

/* Parse one shard's header from its bytes (base, size), recorded as map
 * `shard` (mapped: munmap it at close). */
static int parse_shard(wobble_ctx *ctx, st_file *st, const char *path, uint8_t *base, size_t size, int mapped) {
    if (st->nmaps == ST_MAX_SHARDS) {
        if (mapped) munmap(base, size);
        return core_seterr(ctx, WOBBLE_ELIMIT, "%s: too many shards", path);
    }
    st_map *m = &st->maps[st->nmaps];
    m->path = strdup(path);
    m->base = base;
    m->size = size;
    m->mapped = mapped;
    int shard = st->nmaps++;
    if (!m->path) return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
    if (size < 8)
        return core_seterr(ctx, WOBBLE_ECORRUPT, "%s: truncated safetensors file (%zu bytes, no header)", path, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | base[i];
    if (hlen > ST_MAX_HEADER)
        return core_seterr(ctx, WOBBLE_ECORRUPT, "%s: header length %llu is over the %u-byte limit", path,
                             (unsigned long long)hlen, ST_MAX_HEADER);
    if (8 + hlen > size)
        return core_seterr(ctx, WOBBLE_ECORRUPT, "%s: header length %llu runs past the end of the file (%zu bytes)",
                             path, (unsigned long long)hlen, size);
    m->data_off = 8 + (size_t)hlen;
    const size_t data_size = size - m->data_off;
    json_error_t jerr;
    json_t *h = json_loadb((const char *)base + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!h && CORE_JSON_OOM(&jerr))
        return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory reading the header", path);
    if (!h) return core_seterr(ctx, WOBBLE_ECORRUPT, "%s: header is not valid JSON: %s", path, jerr.text);
    if (!json_is_object(h)) {
        json_decref(h);
        return core_seterr(ctx, WOBBLE_ECORRUPT, "%s: header is not a JSON object", path);
    }
    int first = st->n;
    const char *key;
    json_t *v;
    int rc = WOBBLE_OK;
    json_object_foreach(h, key, v) {
        if (!strcmp(key, "__metadata__")) continue;
        json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
               *jo = json_object_get(v, "data_offsets");
        if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo) || json_array_size(jo) != 2) {
            rc = core_seterr(ctx, WOBBLE_ECORRUPT, "%s: tensor '%s' lacks dtype, shape or data_offsets", path, key);
            break;
        }
        st_tensor t;
        memset(&t, 0, sizeof t);
        size_t esize;
        if (!dtype_of(json_string_value(jd), &t.dtype, &esize)) {
            rc = core_seterr(ctx, WOBBLE_ECORRUPT, "%s: tensor '%s' has unknown dtype '%s'", path, key,
                               json_string_value(jd));
            break;
        }
        snprintf(t.dtype_name, sizeof t.dtype_name, "%s", json_string_value(jd));
        t.ndim = (int)json_array_size(js);
        if (t.ndim > 8) {
            rc = core_seterr(ctx, WOBBLE_ECORRUPT, "%s: tensor '%s' has %d dimensions", path, key, t.ndim);
            break;
        }
        int64_t numel = 1;
        int bad = 0;
        for (int d = 0; d < t.ndim; d++) {
            json_t *e = json_array_get(js, d);
            if (!json_is_integer(e) || json_integer_value(e) < 0) {
                bad = 1;
                break;
            }
            t.shape[d] = json_integer_value(e);
            if (t.shape[d] && numel > INT64_MAX / t.shape[d]) {
                bad = 1;
                break;
            }
            numel *= t.shape[d];
        }
        json_t *b0 = json_array_get(jo, 0), *b1 = json_array_get(jo, 1);
        if (bad || !json_is_integer(b0) || !json_is_integer(b1)) {
            rc = core_seterr(ctx, WOBBLE_ECORRUPT, "%s: tensor '%s' has an invalid shape or offsets", path, key);
            break;
        }
        json_int_t begin = json_integer_value(b0), end = json_integer_value(b1);
        if (begin < 0 || end < begin || (uint64_t)end > data_size) {
            rc = core_seterr(ctx, WOBBLE_ECORRUPT,
                               "%s: tensor '%s' offsets [%lld, %lld] are outside the %zu-byte data section", path,
                               key, (long long)begin, (long long)end, data_size);
            break;
        }
        if ((uint64_t)numel > UINT64_MAX / esize || (uint64_t)(end - begin) != (uint64_t)numel * esize) {
            rc = core_seterr(ctx, WOBBLE_ECORRUPT,
                               "%s: tensor '%s' is %lld bytes but shape x %s needs %llu", path, key,
                               (long long)(end - begin), t.dtype_name, (unsigned long long)numel * esize);
            break;
        }
        t.numel = numel;
        t.nbytes = (size_t)(end - begin);
        t.data = base + m->data_off + begin;
        t.shard = shard;
        t.name = strdup(key);
        if (!t.name || push(st, &t) != 0) {
            free(t.name);
            rc = core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
            break;
        }
    }
    json_decref(h);
    if (rc != WOBBLE_OK) return rc;
    /* no two tensors of this shard may overlap */
    int cnt = st->n - first;
    st_tensor **order = malloc(sizeof(st_tensor *) * (cnt ? cnt : 1));
    if (!order) return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
    for (int i = 0; i < cnt; i++) order[i] = &st->t[first + i];
    qsort(order, cnt, sizeof *order, cmp_off);
    for (int i = 1; i < cnt; i++)
        if (order[i]->data < order[i - 1]->data + order[i - 1]->nbytes) {
            rc = core_seterr(ctx, WOBBLE_ECORRUPT, "%s: tensors '%s' and '%s' overlap", path, order[i - 1]->name,
                               order[i]->name);
            break;
        }
    free(order);
    return rc;
}

static int load_shard(wobble_ctx *ctx, st_file *st, const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return core_seterr(ctx, WOBBLE_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat s;
    if (fstat(fd, &s) != 0 || !S_ISREG(s.st_mode)) {
        close(fd);
        return core_seterr(ctx, WOBBLE_EIO, "%s: not a regular file", path);
    }
    size_t size = (size_t)s.st_size;
    if (size < 8) {
        close(fd);
        return core_seterr(ctx, WOBBLE_ECORRUPT, "%s: truncated safetensors file (%zu bytes, no header)", path, size);
    }
    uint8_t *base = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (base == MAP_FAILED) return core_seterr(ctx, WOBBLE_EIO, "%s: mmap failed: %s", path, strerror(errno));
    return parse_shard(ctx, st, path, base, size, 1);
}

void st_release(const st_file *st, const void *p, size_t bytes) {
    if (!st || !p) return;
    const uintptr_t a = (uintptr_t)p, page = (uintptr_t)sysconf(_SC_PAGESIZE);
    for (int i = 0; i < st->nmaps; i++) {
        const st_map *m = &st->maps[i];
        const uintptr_t b = (uintptr_t)m->base;
        if (!m->mapped || a < b || a - b >= m->size || bytes > m->size - (a - b)) continue;
        const uintptr_t lo = (a + page - 1) & ~(page - 1), hi = (a + bytes) & ~(page - 1);
        if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
        return;
    }
}

int st_open_memory(wobble_ctx *ctx, const char *name, const uint8_t *data, size_t size, st_file **out) {
    *out = NULL;
    name = core_name_or(name);
    st_file *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(name))) {
        free(st);
        return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", name);
    }
    int rc = parse_shard(ctx, st, name, (uint8_t *)data, size, 0);
    for (int i = 0; rc == WOBBLE_OK && i < st->n; i++)
        for (int j = i + 1; j < st->n; j++)
            if (!strcmp(st->t[i].name, st->t[j].name)) {
                rc = core_seterr(ctx, WOBBLE_ECORRUPT, "%s: tensor '%s' appears twice", name, st->t[i].name);
                break;
            }
    if (rc) {
        st_close(st);
        return rc;
    }
    *out = st;
    return WOBBLE_OK;
}

static char *dir_of(const char *path) {
    const char *s = strrchr(path, '/');
    if (!s) return strdup(".");
    size_t n = (size_t)(s - path);
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, path, n);
    d[n] = 0;
    return d;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

int st_open(wobble_ctx *ctx, const char *path, st_file **out) {
    if (!path || !out) return core_seterr(ctx, WOBBLE_EINVAL, "safetensors: NULL argument");
    *out = NULL;
    st_file *st = calloc(1, sizeof *st);
    if (!st) return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
    if (!(st->path = strdup(path))) {
        free(st);
        return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
    }
    int rc = WOBBLE_OK;
    if (ends_with(path, ".json")) {
        json_error_t jerr;
        json_t *idx = json_load_file(path, 0, &jerr);
        if (!idx) {
            rc = CORE_JSON_OOM(&jerr) ? core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path)
               : access(path, R_OK) != 0 ? core_seterr(ctx, WOBBLE_EIO, "%s: cannot open: %s", path, strerror(errno))
                                         : core_seterr(ctx, WOBBLE_ECORRUPT, "%s: invalid JSON: %s", path, jerr.text);
            st_close(st);
            return rc;
        }
        json_t *wm = json_object_get(idx, "weight_map");
        if (!json_is_object(wm) || json_object_size(wm) == 0) {
            json_decref(idx);
            st_close(st);
            return core_seterr(ctx, WOBBLE_ECORRUPT, "%s: no \"weight_map\" object", path);
        }
        char *dir = dir_of(path);
        /* load each distinct shard once, in order of first appearance */
        const char *key;
        json_t *v;
        char **seen = NULL;
        int nseen = 0;
        size_t seen_cap = 0;
        json_object_foreach(wm, key, v) {
            if (!json_is_string(v)) {
                rc = core_seterr(ctx, WOBBLE_ECORRUPT, "%s: weight_map entry '%s' is not a file name", path, key);
                break;
            }
            const char *f = json_string_value(v);
            if (strchr(f, '/') || !strcmp(f, "..")) {
                rc = core_seterr(ctx, WOBBLE_ECORRUPT, "%s: shard name '%s' is not a plain file name", path, f);
                break;
            }
            int dup = 0;
            for (int i = 0; i < nseen; i++) dup |= !strcmp(seen[i], f);
            if (dup) continue;
            char *sp = core_path_join(dir, f);
            if (!sp || core_grow(&seen, &seen_cap, (size_t)nseen + 1, sizeof *seen)) {
                free(sp);
                rc = core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
                break;
            }
            seen[nseen++] = (char *)f;
            rc = load_shard(ctx, st, sp);
            free(sp);
            if (rc != WOBBLE_OK) break;
        }
        free(seen);
        /* every mapped name must be in the shard the index names */
        if (rc == WOBBLE_OK) {
            json_object_foreach(wm, key, v) {
                const st_tensor *t = st_find(st, key);
                if (!t) {
                    rc = core_seterr(ctx, WOBBLE_ECORRUPT, "%s: tensor '%s' is listed in the index but missing from %s",
                                       path, key, json_string_value(v));
                    break;
                }
                const char *sp = st->maps[t->shard].path;
                if (!ends_with(sp, json_string_value(v))) {
                    rc = core_seterr(ctx, WOBBLE_ECORRUPT, "%s: tensor '%s' is in %s, the index says %s", path, key,
                                       sp, json_string_value(v));
                    break;
                }
            }
        }
        free(dir);
        json_decref(idx);
    } else {
        rc = load_shard(ctx, st, path);
    }
    if (rc == WOBBLE_OK) {
        /* names must be unique across shards */
        for (int i = 0; i < st->n && rc == WOBBLE_OK; i++)
            for (int j = i + 1; j < st->n; j++)
                if (!strcmp(st->t[i].name, st->t[j].name)) {
                    rc = core_seterr(ctx, WOBBLE_ECORRUPT, "%s: tensor '%s' appears twice", path, st->t[i].name);
                    break;
                }
    }
    if (rc != WOBBLE_OK) {
        st_close(st);
        return rc;
    }
    *out = st;
    return WOBBLE_OK;
}

void st_close(st_file *st) {
    if (!st) return;
    for (int i = 0; i < st->nmaps; i++) {
        if (st->maps[i].mapped) munmap(st->maps[i].base, st->maps[i].size);
        free(st->maps[i].path);
    }
    for (int i = 0; i < st->n; i++) free(st->t[i].name);
    free(st->t);
    free(st->path);
    free(st);
}

int st_count(const st_file *st) { return st ? st->n : 0; }
const st_tensor *st_at(const st_file *st, int i) { return st && i >= 0 && i < st->n ? &st->t[i] : NULL; }
const char *st_path(const st_file *st) { return st ? st->path : ""; }

const st_tensor *st_find(const st_file *st, const char *name) {
    if (!st || !name) return NULL;
    for (int i = 0; i < st->n; i++)
        if (!strcmp(st->t[i].name, name)) return &st->t[i];
    return NULL;
}

uint64_t st_data_bytes(const st_file *st) {
    uint64_t s = 0;
    for (int i = 0; st && i < st->n; i++) s += st->t[i].nbytes;
    return s;
}

float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float st_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t st_f32_to_bf16(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    if ((b & 0x7fffffff) > 0x7f800000) return (uint16_t)((b >> 16) | 0x40);
    b += 0x7fff + ((b >> 16) & 1); /* round to nearest even */
    return (uint16_t)(b >> 16);
}

uint16_t st_f32_to_f16(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    uint32_t sign = (b >> 16) & 0x8000;
    int32_t exp = (int32_t)((b >> 23) & 0xff) - 127 + 15;
    uint32_t man = b & 0x7fffff;
    if (((b >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    if (exp >= 31) return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t)sign;
        man |= 0x800000;
        int shift = 14 - exp;
        uint32_t half = 1u << (shift - 1);
        uint32_t r = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = man >> 13, rem = man & 0x1fff;
    uint32_t out = sign | ((uint32_t)exp << 10) | r;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) out++;
    return (uint16_t)out;
}

int st_to_f32(wobble_ctx *ctx, const st_file *st, const st_tensor *t, const float **data, float **owned) {
    *data = NULL;
    *owned = NULL;
    const char *path = st->maps[t->shard].path;
    if (t->dtype == ST_OTHER)
        return core_seterr(ctx, WOBBLE_EFORMAT, "%s: tensor '%s' has dtype %s (expected F32, F16 or BF16)", path,
                             t->name, t->dtype_name);
    const size_t n = (size_t)t->numel;
    float *buf = NULL;
    const float *f = NULL;
    if (t->dtype == ST_F32 && ((uintptr_t)t->data % sizeof(float)) == 0) {
        f = (const float *)(const void *)t->data;
    } else {
        buf = malloc(sizeof(float) * (n ? n : 1));
        if (!buf) return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory converting '%s'", path, t->name);
        if (t->dtype == ST_F32) {
            memcpy(buf, t->data, n * 4);
        } else {
            for (size_t i = 0; i < n; i++) {
                uint16_t h;
                memcpy(&h, t->data + 2 * i, 2);
                buf[i] = t->dtype == ST_F16 ? st_f16_to_f32(h) : st_bf16_to_f32(h);
            }
        }
        f = buf;
    }
    for (size_t i = 0; i < n; i++)
        if (!isfinite(f[i])) {
            const char *what = isnan(f[i]) ? "NaN" : "Inf"; /* before f (= buf) is freed */
            free(buf);
            return core_seterr(ctx, WOBBLE_ECORRUPT, "%s: tensor '%s' holds %s at element %zu", path, t->name, what, i);
        }
    *data = f;
    *owned = buf;
    return WOBBLE_OK;
}
