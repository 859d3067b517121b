/* The eval embedding cache (format in cache.h). */
#include "cache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CACHE_MAGIC 0x43454257u /* "WBEC" */
#define CACHE_VERSION 2u
#define CACHE_HEADER 32

void eval_cache_init(eval_cache *c, int dim) {
    memset(c, 0, sizeof *c);
    c->dim = dim;
}

void eval_cache_clear(eval_cache *c) {
    for (int i = 0; i < c->n; i++) free(c->e[i].vec);
    free(c->e);
    eval_cache_init(c, c->dim);
}

float *eval_cache_find(const eval_cache *c, const char *op, double level) {
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->e[i].op, op) && c->e[i].level == level) return c->e[i].vec;
    return NULL;
}

int eval_cache_add(eval_cache *c, const char *op, double level, const float *v) {
    if (core_grow(&c->e, &c->cap, (size_t)c->n + 1, sizeof *c->e)) return -1;
    eval_cache_entry *e = &c->e[c->n];
    float *vec = malloc(sizeof(float) * (size_t)c->dim);
    if (!vec) return -1;
    memset(e->op, 0, EVAL_CACHE_OPNAME);
    snprintf(e->op, EVAL_CACHE_OPNAME, "%s", op);
    e->level = level;
    e->vec = vec;
    memcpy(vec, v, sizeof(float) * (size_t)c->dim);
    c->n++;
    return 0;
}

static uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t rd64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

int eval_cache_parse(eval_cache *c, const uint8_t *b, size_t size, uint64_t mh, uint64_t ph) {
    if (size < CACHE_HEADER || rd32(b) != CACHE_MAGIC || (rd32(b + 4) != CACHE_VERSION && rd32(b + 4) != 1u) ||
        rd64(b + 8) != mh || rd64(b + 16) != ph || (int64_t)rd32(b + 24) != c->dim || c->dim < 1)
        return 0;
    const size_t nl = rd32(b + 4) == 1u ? EVAL_CACHE_OPNAME_V1 : EVAL_CACHE_OPNAME;
    const size_t rec = nl + 8 + sizeof(float) * (size_t)c->dim;
    const uint32_t count = rd32(b + 28);
    float *v = malloc(sizeof(float) * (size_t)c->dim);
    if (!v) return -1;
    int rc = 0;
    const uint8_t *p = b + CACHE_HEADER;
    for (uint32_t i = 0; i < count && rc == 0 && (size_t)(b + size - p) >= rec; i++, p += rec) {
        char op[EVAL_CACHE_OPNAME];
        memcpy(op, p, nl);
        op[nl - 1] = 0;
        double level;
        memcpy(&level, p + nl, 8);
        memcpy(v, p + nl + 8, sizeof(float) * (size_t)c->dim);
        if (!eval_cache_find(c, op, level)) rc = eval_cache_add(c, op, level, v);
    }
    free(v);
    return rc;
}

int eval_cache_load(wobble_ctx *ctx, eval_cache *c, const char *path, uint64_t mh, uint64_t ph) {
    if (access(path, F_OK) != 0) return WOBBLE_OK;
    uint8_t *data = NULL;
    size_t size = 0;
    int rc = core_read_file(ctx, path, &data, &size);
    if (rc == WOBBLE_ENOMEM) return rc;
    if (rc) return WOBBLE_OK; /* unreadable: recompute */
    rc = eval_cache_parse(c, data, size, mh, ph);
    free(data);
    return rc ? core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory reading the cache", path) : WOBBLE_OK;
}

int eval_cache_save(wobble_ctx *ctx, const eval_cache *c, const char *path, uint64_t mh, uint64_t ph) {
    const size_t rec = EVAL_CACHE_OPNAME + 8 + sizeof(float) * (size_t)c->dim;
    const size_t size = CACHE_HEADER + rec * (size_t)c->n;
    uint8_t *b = malloc(size), *p = b;
    if (!b) return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
    const uint32_t hdr[2] = {CACHE_MAGIC, CACHE_VERSION}, dc[2] = {(uint32_t)c->dim, (uint32_t)c->n};
    const uint64_t h[2] = {mh, ph};
    memcpy(p, hdr, 8), p += 8;
    memcpy(p, h, 16), p += 16;
    memcpy(p, dc, 8), p += 8;
    for (int i = 0; i < c->n; i++) {
        memcpy(p, c->e[i].op, EVAL_CACHE_OPNAME), p += EVAL_CACHE_OPNAME;
        memcpy(p, &c->e[i].level, 8), p += 8;
        memcpy(p, c->e[i].vec, sizeof(float) * (size_t)c->dim), p += sizeof(float) * (size_t)c->dim;
    }
    int rc = wobble_write_file_atomic(ctx, path, b, size);
    free(b);
    return rc;
}
