/*
 * The image tower on a GPU: the glue between a loaded model and the CUDA
 * backend (src/cuda/cuda_backend.h). The backend is its own shared library,
 * libwobble_cuda.so, loaded here the first time a model asks for it (so
 * CPU runs never map the CUDA libraries): from $WOBBLE_CUDA_LIB, else the
 * build tree's, else the installed one, else the loader's search path.
 * Without CUDA in the build, asking for it is a clear error and everything
 * else is unchanged.
 */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef WOBBLE_HAVE_CUDA
#include "../cuda/cuda_backend.h"

#include <dlfcn.h>
#include <pthread.h>

static struct {
    int (*device_count)(int *, char *, size_t);
    int (*create)(const cuda_model_desc *, int, cuda_model **, char *, size_t);
    int (*forward)(cuda_model *, const float *, int, int, int, const float *, float *, float *, double *, char *,
                   size_t);
    size_t (*bytes)(const cuda_model *);
    void (*release)(cuda_model *);
    int (*record)(cuda_model *, const float *, int, int, int, const float *, int, float *, double *, char *, size_t);
    int (*backward)(cuda_model *, const float *, const cuda_grads *, float *, double *, char *, size_t);
    int (*refresh)(cuda_model *, const cuda_model_desc *, char *, size_t);
    int loaded;
    char err[600];
} api;
static pthread_once_t api_once = PTHREAD_ONCE_INIT;

static void api_load(void) {
    /* WOBBLE_CUDA_LIB, when set, is the only candidate */
    const char *env = getenv("WOBBLE_CUDA_LIB");
    const char *cand[] = {env && *env ? env : NULL, env && *env ? NULL : WOBBLE_CUDA_LIB_BUILD,
                          env && *env ? NULL : WOBBLE_CUDA_LIB_INSTALL, env && *env ? NULL : "libwobble_cuda.so"};
    void *h = core_dlopen_first(cand, (int)(sizeof cand / sizeof cand[0]), RTLD_NOW | RTLD_LOCAL,
                                "cannot load the CUDA backend", api.err, sizeof api.err);
    if (!h) return;
    *(void **)&api.device_count = dlsym(h, "cuda_device_count");
    *(void **)&api.create = dlsym(h, "cuda_model_create");
    *(void **)&api.forward = dlsym(h, "cuda_model_forward");
    *(void **)&api.bytes = dlsym(h, "cuda_model_bytes");
    *(void **)&api.release = dlsym(h, "cuda_model_free");
    *(void **)&api.record = dlsym(h, "cuda_model_forward_record");
    *(void **)&api.backward = dlsym(h, "cuda_model_backward");
    *(void **)&api.refresh = dlsym(h, "cuda_model_refresh");
    if (!api.device_count || !api.create || !api.forward || !api.bytes || !api.release || !api.record ||
        !api.backward || !api.refresh) {
        snprintf(api.err, sizeof api.err, "the CUDA backend library lacks its entry points (another version?)");
        dlclose(h);
        return;
    }
    api.loaded = 1;
}

static int api_ready(void) {
    pthread_once(&api_once, api_load);
    return api.loaded;
}
#endif

int wobble_cuda_built(void) {
#ifdef WOBBLE_HAVE_CUDA
    return 1;
#else
    return 0;
#endif
}

int wobble_cuda_device_count(void) {
#ifdef WOBBLE_HAVE_CUDA
    int n = 0;
    char msg[256];
    return api_ready() && api.device_count(&n, msg, sizeof msg) == CUDA_B_OK ? n : 0;
#else
    return 0;
#endif
}

#ifdef WOBBLE_HAVE_CUDA
static int status_of(int rc) {
    return rc == CUDA_B_NOMEM ? WOBBLE_ENOMEM : rc == CUDA_B_NODEVICE ? WOBBLE_EINVAL : WOBBLE_EIO;
}

static cuda_linear_desc lin(const linear_t *L) { return (cuda_linear_desc){L->w, L->b, L->out, L->in}; }

/* The model's current values as the backend's description (bd: depth
 * entries, caller-owned). */
static cuda_model_desc describe(const wobble_model *m, cuda_block_desc *bd, int bf16, int tf32) {
    for (int l = 0; l < m->depth; l++) {
        const block_t *b = &m->blocks[l];
        bd[l] = (cuda_block_desc){b->ln1.g, b->ln1.b, b->ln2.g, b->ln2.b, lin(&b->qkv), {b->wq, b->wk, b->wv},
                                  lin(&b->proj), lin(&b->fc1), lin(&b->fc2), b->ls1, b->ls2};
    }
    return (cuda_model_desc){m->dim, m->depth, m->heads, m->hidden, m->patch, m->n_reg, (int)m->act, m->eps,
                             bf16, tf32, m->patch_w, m->patch_b, m->cls, m->pos, m->reg, m->pre_norm.g,
                             m->pre_norm.b, m->final_norm.g, m->final_norm.b, bd, m->head.w, m->embed_dim};
}

/* Copy the values again when they changed since the device copy was made. */
static int refresh_if_stale(wobble_ctx *ctx, wobble_model *m) {
    if (!m->device_stale) return WOBBLE_OK;
    cuda_block_desc *bd = calloc((size_t)(m->depth ? m->depth : 1), sizeof *bd);
    if (!bd) return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", m->path);
    const cuda_model_desc d = describe(m, bd, m->precision == WOBBLE_PRECISION_BF16, m->device_tf32);
    char msg[512] = "";
    const int rc = api.refresh(m->device, &d, msg, sizeof msg);
    free(bd);
    if (rc != CUDA_B_OK) return core_seterr(ctx, status_of(rc), "%s: %s: %s", m->path, m->device_name, msg);
    m->device_stale = 0;
    return WOBBLE_OK;
}
#endif

int model_device_attach(wobble_ctx *ctx, wobble_model *m, const wobble_model_params *p) {
    if (p->device == WOBBLE_DEVICE_CPU) return WOBBLE_OK;
    if (p->device != WOBBLE_DEVICE_CUDA)
        return core_seterr(ctx, WOBBLE_EINVAL, "model: device %d is neither cpu (0) nor cuda (1)", (int)p->device);
    if (p->device_index < 0)
        return core_seterr(ctx, WOBBLE_EINVAL, "model: CUDA device %d: the index must be >= 0", p->device_index);
#ifndef WOBBLE_HAVE_CUDA
    return core_seterr(ctx, WOBBLE_EINVAL,
                       "%s: device cuda: this wobble was built without CUDA (build it where the CUDA toolkit is "
                       "installed)",
                       m->path);
#else
    if (!api_ready())
        return core_seterr(ctx, WOBBLE_EINVAL, "%s: device cuda: %s", m->path, api.err);
    cuda_block_desc *bd = calloc((size_t)(m->depth ? m->depth : 1), sizeof *bd);
    if (!bd) return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", m->path);
    const cuda_model_desc d = describe(m, bd, p->precision == WOBBLE_PRECISION_BF16, p->tf32 != 0);
    char msg[512] = "";
    cuda_model *g = NULL;
    const int rc = api.create(&d, p->device_index, &g, msg, sizeof msg);
    free(bd);
    if (rc != CUDA_B_OK) return core_seterr(ctx, status_of(rc), "%s: device cuda:%d: %s", m->path, p->device_index, msg);
    m->device = g;
    m->device_index = p->device_index;
    m->device_tf32 = p->tf32 != 0;
    m->device_stale = 0;
    snprintf(m->device_name, sizeof m->device_name, "cuda:%d", p->device_index);
    return WOBBLE_OK;
#endif
}

int model_device_forward(wobble_ctx *ctx, wobble_model *m, const float *pixels, int n, int H, int W, const float *ppos,
                         float *cls, float *patch_out) {
#ifdef WOBBLE_HAVE_CUDA
    char msg[512] = "";
    int rc = refresh_if_stale(ctx, m);
    if (rc) return rc;
    rc = api.forward(m->device, pixels, n, H, W, ppos, cls, patch_out, &m->device_ms, msg, sizeof msg);
    if (rc != CUDA_B_OK) return core_seterr(ctx, status_of(rc), "%s: %s: %s", m->path, m->device_name, msg);
    return WOBBLE_OK;
#else
    (void)pixels, (void)n, (void)H, (void)W, (void)ppos, (void)cls, (void)patch_out;
    return core_seterr(ctx, WOBBLE_EINTERNAL, "%s: no device backend in this build", m->path);
#endif
}

int model_device_forward_record(wobble_ctx *ctx, wobble_model *m, const float *pixels, int n, int H, int W,
                                const float *ppos, int checkpoint, float *xcls) {
#ifdef WOBBLE_HAVE_CUDA
    char msg[512] = "";
    int rc = refresh_if_stale(ctx, m);
    if (rc) return rc;
    rc = api.record(m->device, pixels, n, H, W, ppos, checkpoint, xcls, &m->device_ms, msg, sizeof msg);
    if (rc != CUDA_B_OK) return core_seterr(ctx, status_of(rc), "%s: %s: %s", m->path, m->device_name, msg);
    return WOBBLE_OK;
#else
    (void)pixels, (void)n, (void)H, (void)W, (void)ppos, (void)checkpoint, (void)xcls;
    return core_seterr(ctx, WOBBLE_EINTERNAL, "%s: no device backend in this build", m->path);
#endif
}

int model_device_backward(wobble_ctx *ctx, wobble_model *m, const float *dxcls, const model_device_grads *g,
                          float *dpixels) {
#ifdef WOBBLE_HAVE_CUDA
    const cuda_grads cg = {g->blk,   g->patch_w, g->patch_b, g->cls,    g->pos0,  g->reg,
                           g->pre_g, g->pre_b,   g->ppos,    g->lowest, g->embed};
    char msg[512] = "";
    const int rc = api.backward(m->device, dxcls, &cg, dpixels, &m->device_ms, msg, sizeof msg);
    if (rc != CUDA_B_OK) return core_seterr(ctx, status_of(rc), "%s: %s: %s", m->path, m->device_name, msg);
    return WOBBLE_OK;
#else
    (void)dxcls, (void)g, (void)dpixels;
    return core_seterr(ctx, WOBBLE_EINTERNAL, "%s: no device backend in this build", m->path);
#endif
}

void model_device_free(wobble_model *m) {
#ifdef WOBBLE_HAVE_CUDA
    if (m->device) api.release(m->device);
#endif
    m->device = NULL;
}

uint64_t model_device_bytes(const wobble_model *m) {
#ifdef WOBBLE_HAVE_CUDA
    return m->device ? api.bytes(m->device) : 0;
#else
    (void)m;
    return 0;
#endif
}
