#include "internal.h"

#include <libdeflate.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *wobble_version(void) { return WOBBLE_VERSION_STRING; }

const char *wobble_strerror(int status) {
    switch (status) {
    case WOBBLE_OK: return "success";
    case WOBBLE_EINVAL: return "invalid argument";
    case WOBBLE_ENOMEM: return "out of memory";
    case WOBBLE_EIO: return "input/output error";
    case WOBBLE_EFORMAT: return "unknown or unsupported format";
    case WOBBLE_ECORRUPT: return "corrupt or truncated data";
    case WOBBLE_ELIMIT: return "limit exceeded";
    case WOBBLE_EDOMAIN: return "parameter outside its domain";
    case WOBBLE_ENOTFOUND: return "not found";
    case WOBBLE_EINTERNAL: return "internal error";
    default: return "unknown status";
    }
}

wobble_ctx_params wobble_ctx_default_params(void) {
    wobble_ctx_params p;
    memset(&p, 0, sizeof p);
    p.threads = 0;
    p.max_pixels = 89478485u;
    p.sync_writes = 1;
    p.png_level = 6;
    return p;
}

int wobble_ctx_create(const wobble_ctx_params *params, wobble_ctx **out) {
    if (!out) return WOBBLE_EINVAL;
    *out = NULL;
    wobble_ctx_params p = params ? *params : wobble_ctx_default_params();
    if (p.threads < 0 || p.png_level < 0 || p.png_level > 12) return WOBBLE_EINVAL;
    wobble_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return WOBBLE_ENOMEM;
    if (p.threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        p.threads = n > 0 ? (int)n : 1;
    }
    ctx->threads = p.threads;
    ctx->max_pixels = p.max_pixels;
    ctx->sync_writes = p.sync_writes;
    ctx->png_level = p.png_level;
    *out = ctx;
    return WOBBLE_OK;
}

void wobble_ctx_free(wobble_ctx *ctx) {
    if (!ctx) return;
    for (int i = 0; i < CORE_SCRATCH_SLOTS; i++) free(ctx->scratch[i]);
    if (ctx->png_z) libdeflate_free_compressor(ctx->png_z);
    if (ctx->png_unz) libdeflate_free_decompressor(ctx->png_unz);
    free(ctx);
}

void *core_tmp_get(wobble_ctx *ctx, int slot, size_t bytes, core_tmp *t) {
    t->p = NULL, t->owned = 0;
    if (!bytes) bytes = 1;
    if (!ctx || slot < 0 || slot >= CORE_SCRATCH_SLOTS) {
        t->p = malloc(bytes);
        t->owned = 1;
        return t->p;
    }
    if (ctx->scratch_size[slot] < bytes) {
        free(ctx->scratch[slot]);
        ctx->scratch[slot] = malloc(bytes);
        ctx->scratch_size[slot] = ctx->scratch[slot] ? bytes : 0;
    }
    t->p = ctx->scratch[slot];
    return t->p;
}

void core_tmp_put(core_tmp *t) {
    if (t->owned) free(t->p);
    t->p = NULL, t->owned = 0;
}

const char *wobble_last_error(const wobble_ctx *ctx) { return ctx ? ctx->last_error : ""; }

int wobble_last_status(const wobble_ctx *ctx) { return ctx ? ctx->last_status : WOBBLE_OK; }

int wobble_ctx_threads(const wobble_ctx *ctx) { return ctx && ctx->threads > 0 ? ctx->threads : 1; }

int core_seterr(wobble_ctx *ctx, int status, const char *fmt, ...) {
    if (ctx) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->last_error, sizeof ctx->last_error, fmt, ap);
        va_end(ap);
        /* keep messages on one line */
        for (char *c = ctx->last_error; *c; c++)
            if (*c == '\n' || *c == '\r') *c = ' ';
        ctx->last_status = status;
    }
    return status;
}

const char *core_name_or(const char *name) { return name && *name ? name : "<memory>"; }

void wobble_free(void *p) { free(p); }
