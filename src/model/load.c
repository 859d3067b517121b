/*
 * Loading: find the checkpoint (folder or file), detect the architecture and
 * tensor naming from the tensor names, read hyper-parameters from shapes
 * (width, depth, patch, MLP width, grid, registers, projection) and from
 * config.json where shapes cannot tell (heads, activation, epsilon,
 * interpolation), fall back to the presets of the official models, and read
 * preprocessing from preprocessor_config.json or the preset.
 */
#include "model.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The model frees p with itself: 0, or -1 out of memory (p is then still
 * the caller's to free). */
int model_own(wobble_model *m, void *p) {
    if (!p) return -1;
    if (core_grow(&m->owned, &m->cap_owned, (size_t)m->n_owned + 1, sizeof *m->owned)) return -1;
    m->owned[m->n_owned++] = p;
    return 0;
}

typedef struct {
    wobble_ctx *ctx;
    wobble_model *m;
    const char *prefix;
    const char *file;
} loader;

static const st_tensor *find(loader *L, const char *name) {
    char full[512];
    snprintf(full, sizeof full, "%s%s", L->prefix, name);
    return st_find(L->m->st, full);
}

static void shape_str(const int64_t *s, int nd, char *buf, size_t n) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "[");
    for (int i = 0; i < nd && o < n; i++)
        o += s[i] < 0 ? (size_t)snprintf(buf + o, n - o, "%s*", i ? ", " : "")
                      : (size_t)snprintf(buf + o, n - o, "%s%lld", i ? ", " : "", (long long)s[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

/* Drop the mapped pages wholly inside [p, p + n) from memory: used once a
 * tensor has been converted or copied, so the weights are not resident
 * twice. The mapping is private and read-only, so a page touched again is
 * simply read back from the file. */
static void release_pages(const void *p, size_t n) {
    const uintptr_t ps = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + ps - 1) & ~(ps - 1), b = ((uintptr_t)p + n) & ~(ps - 1);
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

/* Record where a checkpoint tensor's values live (see tensor_ref). */
static int add_ref(wobble_model *m, const char *name, const float **slot, size_t offset, int transpose, int64_t rows,
                   int64_t cols) {
    if (core_grow(&m->refs, &m->cap_refs, (size_t)m->n_refs + 1, sizeof *m->refs)) return -1;
    char *nm = strdup(name);
    if (!nm) return -1;
    m->refs[m->n_refs++] = (tensor_ref){nm, slot, offset, transpose, rows, cols};
    return 0;
}

/* Fetch tensor `name` (prefix applied) as F32 with exactly the given shape
 * (a negative entry accepts any size). `out` is recorded as the tensor's
 * home unless it is a temporary (then the caller records it, or not). */
static int get(loader *L, const char *name, int nd, const int64_t *shape, const float **out) {
    char full[512];
    snprintf(full, sizeof full, "%s%s", L->prefix, name);
    const st_tensor *t = st_find(L->m->st, full);
    if (!t) return core_seterr(L->ctx, WOBBLE_ECORRUPT, "%s: missing tensor '%s'", L->file, full);
    int ok = t->ndim == nd;
    for (int i = 0; ok && i < nd; i++) ok = shape[i] < 0 || shape[i] == t->shape[i];
    if (!ok) {
        char e[128], f[128];
        shape_str(shape, nd, e, sizeof e);
        shape_str(t->shape, t->ndim, f, sizeof f);
        return core_seterr(L->ctx, WOBBLE_ECORRUPT, "%s: tensor '%s' has shape %s, expected %s", L->file, full, f, e);
    }
    float *owned = NULL;
    int rc = st_to_f32(L->ctx, L->m->st, t, out, &owned);
    if (rc != WOBBLE_OK) return rc;
    if (owned) release_pages(t->data, t->nbytes); /* the converted copy replaces the mapped bytes */
    if (owned && model_own(L->m, owned) != 0) {
        free(owned);
        return core_seterr(L->ctx, WOBBLE_ENOMEM, "%s: out of memory", L->file);
    }
    L->m->n_params += (uint64_t)t->numel;
    if (add_ref(L->m, full, out, 0, 0, 0, 0) != 0) return core_seterr(L->ctx, WOBBLE_ENOMEM, "%s: out of memory", L->file);
    return WOBBLE_OK;
}

/* The last recorded tensor lives elsewhere than get() assumed. */
static void amend_ref(loader *L, const float **slot, size_t offset, int transpose, int64_t rows, int64_t cols) {
    tensor_ref *r = &L->m->refs[L->m->n_refs - 1];
    r->slot = slot;
    r->offset = offset;
    r->transpose = transpose;
    r->rows = rows;
    r->cols = cols;
}

static void drop_ref(loader *L) {
    free(L->m->refs[--L->m->n_refs].name);
}

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define NDIM(...) ((int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define GET(L, name, out, ...) get(L, name, NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__), out)

static int get_linear(loader *L, const char *w, const char *b, int out_f, int in_f, linear_t *lin) {
    int rc = GET(L, w, &lin->w, out_f, in_f);
    if (rc == WOBBLE_OK && b) rc = GET(L, b, &lin->b, out_f);
    lin->out = out_f;
    lin->in = in_f;
    return rc;
}

static int get_norm(loader *L, const char *w, const char *b, int d, norm_t *n) {
    int rc = GET(L, w, &n->g, d);
    if (rc == WOBBLE_OK) rc = GET(L, b, &n->b, d);
    return rc;
}

/* Separate q, k, v projections: the weights are used where they are (three
 * GEMMs write into the packed qkv activations); only the three biases are
 * concatenated. */
static int get_qkv_split(loader *L, const char *pre, const char *q, const char *k, const char *v, const char *wsuf,
                         const char *bsuf, int d, block_t *blk) {
    const char *names[3] = {q, k, v};
    const float **w[3] = {&blk->wq, &blk->wk, &blk->wv};
    float *b = malloc(sizeof(float) * 3 * (size_t)d);
    if (!b || model_own(L->m, b) != 0) {
        free(b);
        return core_seterr(L->ctx, WOBBLE_ENOMEM, "%s: out of memory", L->file);
    }
    for (int i = 0; i < 3; i++) {
        char nw[256], nb[256];
        snprintf(nw, sizeof nw, "%s%s%s", pre, names[i], wsuf);
        snprintf(nb, sizeof nb, "%s%s%s", pre, names[i], bsuf);
        const float *pb;
        int rc = GET(L, nw, w[i], d, d);
        if (rc == WOBBLE_OK) rc = GET(L, nb, &pb, d);
        if (rc != WOBBLE_OK) return rc;
        amend_ref(L, &blk->qkv.b, (size_t)i * d, 0, 0, 0);
        memcpy(b + (size_t)i * d, pb, sizeof(float) * (size_t)d);
    }
    blk->qkv.w = NULL;
    blk->qkv.b = b;
    blk->qkv.out = 3 * d;
    blk->qkv.in = d;
    return WOBBLE_OK;
}

/* ---------------------------------------------------------------- config */

static json_t *load_json_opt(wobble_ctx *ctx, const char *dir, const char *name, int *rc) {
    *rc = WOBBLE_OK;
    if (!dir) return NULL;
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    if (access(p, F_OK) != 0) return NULL;
    json_error_t e;
    json_t *j = json_load_file(p, 0, &e);
    if (!j && CORE_JSON_OOM(&e))
        *rc = core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", p);
    else if (!j)
        *rc = core_seterr(ctx, WOBBLE_ECORRUPT, "%s: invalid JSON at line %d: %s", p, e.line, e.text);
    return j;
}

static double jnum(json_t *o, const char *key, double def) {
    json_t *v = o ? json_object_get(o, key) : NULL;
    if (json_is_number(v)) return json_number_value(v);
    return def;
}

/* An integer setting: the number at key (default def), or -1 when it is not
 * a whole number that fits an int (a setting that is then refused). */
static int jint(json_t *o, const char *key, int def) {
    const double v = jnum(o, key, def);
    return v >= -2147483647.0 && v <= 2147483647.0 && v == floor(v) ? (int)v : -1;
}

static const char *jstr(json_t *o, const char *key) {
    json_t *v = o ? json_object_get(o, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int jbool(json_t *o, const char *key, int def) {
    json_t *v = o ? json_object_get(o, key) : NULL;
    if (json_is_boolean(v)) return json_is_true(v);
    return def;
}

/* ---------------------------------------------------------------- detection */

typedef struct {
    arch_t arch;
    naming_t naming;
    const char *prefix;
} detected;

static int has_suffix_tensor(const st_file *st, const char *suffix, char *prefix_out, size_t n) {
    size_t ls = strlen(suffix);
    for (int i = 0; i < st_count(st); i++) {
        const char *nm = st_at(st, i)->name;
        size_t ln = strlen(nm);
        if (ln >= ls && !strcmp(nm + ln - ls, suffix)) {
            size_t pl = ln - ls;
            if (pl < n) {
                memcpy(prefix_out, nm, pl);
                prefix_out[pl] = 0;
                return 1;
            }
        }
    }
    return 0;
}

static int detect(wobble_ctx *ctx, wobble_model *m, const char *file, json_t *cfg, char *prefix, size_t n,
                  detected *d) {
    const st_file *st = m->st;
    if (has_suffix_tensor(st, "visual.conv1.weight", prefix, n)) {
        strncat(prefix, "visual.", n - strlen(prefix) - 1);
        d->arch = ARCH_CLIP;
        d->naming = NAMING_OPENAI;
        return WOBBLE_OK;
    }
    if (has_suffix_tensor(st, "vision_model.embeddings.patch_embedding.weight", prefix, n)) {
        strncat(prefix, "vision_model.", n - strlen(prefix) - 1);
        d->arch = ARCH_CLIP;
        d->naming = NAMING_HF;
        return WOBBLE_OK;
    }
    if (has_suffix_tensor(st, "patch_embed.proj.weight", prefix, n)) {
        d->arch = ARCH_DINOV2;
        d->naming = NAMING_FB;
        return WOBBLE_OK;
    }
    if (has_suffix_tensor(st, "embeddings.patch_embeddings.projection.weight", prefix, n)) {
        char tmp[512];
        snprintf(tmp, sizeof tmp, "%sencoder.layer.0.layernorm_before.weight", prefix);
        const char *mt = jstr(cfg, "model_type");
        if (st_find(st, tmp) || (mt && !strcmp(mt, "vit"))) {
            d->arch = ARCH_VIT;
        } else {
            d->arch = ARCH_DINOV2;
        }
        d->naming = NAMING_HF;
        return WOBBLE_OK;
    }
    /* say what was found */
    char names[400] = "";
    for (int i = 0; i < st_count(st) && i < 4; i++) {
        if (i) strncat(names, ", ", sizeof names - strlen(names) - 1);
        strncat(names, st_at(st, i)->name, sizeof names - strlen(names) - 1);
    }
    return core_seterr(ctx, WOBBLE_EFORMAT,
                         "%s: unknown architecture: %d tensors (%s%s) match no CLIP, DINOv2 or ViT naming", file,
                         st_count(st), names, st_count(st) > 4 ? ", ..." : "");
}

/* ---------------------------------------------------------------- builders */

static int count_blocks(loader *L, const char *fmt) {
    int n = 0;
    char nm[256];
    for (;;) {
        snprintf(nm, sizeof nm, fmt, n);
        if (!find(L, nm)) return n;
        n++;
    }
}

static int grid_of(loader *L, int64_t npos, int extra, int *grid) {
    int64_t np = npos - extra;
    int g = (int)llround(sqrt((double)(np > 0 ? np : 0)));
    if (np <= 0 || (int64_t)g * g != np)
        return core_seterr(L->ctx, WOBBLE_ECORRUPT, "%s: %lld position embeddings do not form a square grid", L->file,
                             (long long)npos);
    *grid = g;
    return WOBBLE_OK;
}

/* An OpenAI-layout projection [D, E] (used as x @ P), stored transposed as a
 * Linear [E, D]; the mapped original is released. */
static int get_proj_t(loader *L, const char *name, int D, int E, linear_t *out) {
    const float *p;
    int rc = GET(L, name, &p, D, E);
    if (rc) return rc;
    amend_ref(L, &out->w, 0, 1, D, E);
    float *t = malloc(sizeof(float) * (size_t)E * D);
    if (!t || model_own(L->m, t)) {
        free(t);
        return core_seterr(L->ctx, WOBBLE_ENOMEM, "%s: out of memory", L->file);
    }
    for (int r = 0; r < D; r++)
        for (int e = 0; e < E; e++) t[(size_t)e * D + r] = p[(size_t)r * E + e];
    release_pages(p, sizeof(float) * (size_t)D * E);
    out->w = t;
    out->b = NULL;
    out->out = E;
    out->in = D;
    return WOBBLE_OK;
}

/* One CLIP residual block under prefix p (OpenAI: ln_1, attn.in_proj_*,
 * attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj; HF: layer_norm1, self_attn.
 * q/k/v/out_proj, layer_norm2, mlp.fc1, mlp.fc2), for both towers. */
static int clip_block(loader *L, int openai, const char *p, int D, int hidden, block_t *b) {
    char a[256], c[256];
    int rc;
#define N2(x, y) do { snprintf(a, sizeof a, "%s%s", p, x); snprintf(c, sizeof c, "%s%s", p, y); } while (0)
    if (openai) {
        N2("ln_1.weight", "ln_1.bias");
        if ((rc = get_norm(L, a, c, D, &b->ln1))) return rc;
        N2("attn.in_proj_weight", "attn.in_proj_bias");
        if ((rc = get_linear(L, a, c, 3 * D, D, &b->qkv))) return rc;
        N2("attn.out_proj.weight", "attn.out_proj.bias");
        if ((rc = get_linear(L, a, c, D, D, &b->proj))) return rc;
        N2("ln_2.weight", "ln_2.bias");
        if ((rc = get_norm(L, a, c, D, &b->ln2))) return rc;
        N2("mlp.c_fc.weight", "mlp.c_fc.bias");
        if ((rc = get_linear(L, a, c, hidden, D, &b->fc1))) return rc;
        N2("mlp.c_proj.weight", "mlp.c_proj.bias");
        return get_linear(L, a, c, D, hidden, &b->fc2);
    }
    N2("layer_norm1.weight", "layer_norm1.bias");
    if ((rc = get_norm(L, a, c, D, &b->ln1))) return rc;
    snprintf(a, sizeof a, "%sself_attn.", p);
    if ((rc = get_qkv_split(L, a, "q_proj", "k_proj", "v_proj", ".weight", ".bias", D, b))) return rc;
    N2("self_attn.out_proj.weight", "self_attn.out_proj.bias");
    if ((rc = get_linear(L, a, c, D, D, &b->proj))) return rc;
    N2("layer_norm2.weight", "layer_norm2.bias");
    if ((rc = get_norm(L, a, c, D, &b->ln2))) return rc;
    N2("mlp.fc1.weight", "mlp.fc1.bias");
    if ((rc = get_linear(L, a, c, hidden, D, &b->fc1))) return rc;
    N2("mlp.fc2.weight", "mlp.fc2.bias");
    return get_linear(L, a, c, D, hidden, &b->fc2);
#undef N2
}

static int build_clip(loader *L, json_t *vcfg) {
    wobble_model *m = L->m;
    const int openai = m->naming == NAMING_OPENAI;
    const st_tensor *pw = find(L, openai ? "conv1.weight" : "embeddings.patch_embedding.weight");
    if (!pw || pw->ndim != 4) return core_seterr(L->ctx, WOBBLE_ECORRUPT, "%s: patch embedding is not 4-D", L->file);
    const int D = (int)pw->shape[0], P = (int)pw->shape[2];
    m->dim = D;
    m->patch = P;
    m->depth = count_blocks(L, openai ? "transformer.resblocks.%d.ln_1.weight" : "encoder.layers.%d.layer_norm1.weight");
    if (m->depth == 0) return core_seterr(L->ctx, WOBBLE_ECORRUPT, "%s: no transformer blocks found", L->file);
    const st_tensor *fc = find(L, openai ? "transformer.resblocks.0.mlp.c_fc.weight" : "encoder.layers.0.mlp.fc1.weight");
    m->hidden = fc && fc->ndim == 2 ? (int)fc->shape[0] : 4 * D;
    const st_tensor *pos = find(L, openai ? "positional_embedding" : "embeddings.position_embedding.weight");
    if (!pos || pos->ndim != 2) return core_seterr(L->ctx, WOBBLE_ECORRUPT, "%s: missing 2-D position embedding", L->file);
    int rc = grid_of(L, pos->shape[0], 1, &m->grid);
    if (rc) return rc;
    m->heads = jint(vcfg, "num_attention_heads", jint(vcfg, "heads", 0));
    if (m->heads == 0) {
        const double hw = jnum(vcfg, "head_width", 64);
        m->heads = hw >= 1 && hw <= D ? (int)(D / hw) : -1;
    }
    const char *act = jstr(vcfg, "hidden_act");
    m->act = (act && !strcmp(act, "gelu")) || !jbool(vcfg, "quick_gelu", 1) ? ACT_GELU : ACT_QUICK_GELU;
    m->eps = (float)jnum(vcfg, "layer_norm_eps", 1e-5);
    if ((rc = GET(L, openai ? "conv1.weight" : "embeddings.patch_embedding.weight", &m->patch_w, D, 3, P, P))) return rc;
    m->patch_b = NULL;
    if ((rc = GET(L, openai ? "class_embedding" : "embeddings.class_embedding", &m->cls, D))) return rc;
    if ((rc = GET(L, openai ? "positional_embedding" : "embeddings.position_embedding.weight", &m->pos,
                  1 + (int64_t)m->grid * m->grid, D)))
        return rc;
    if ((rc = openai ? get_norm(L, "ln_pre.weight", "ln_pre.bias", D, &m->pre_norm)
                     : get_norm(L, "pre_layrnorm.weight", "pre_layrnorm.bias", D, &m->pre_norm)))
        return rc;
    if ((rc = openai ? get_norm(L, "ln_post.weight", "ln_post.bias", D, &m->final_norm)
                     : get_norm(L, "post_layernorm.weight", "post_layernorm.bias", D, &m->final_norm)))
        return rc;
    m->blocks = calloc((size_t)m->depth, sizeof(block_t));
    if (!m->blocks || model_own(m, m->blocks)) {
        free(m->blocks);
        m->blocks = NULL;
        return core_seterr(L->ctx, WOBBLE_ENOMEM, "out of memory");
    }
    for (int i = 0; i < m->depth && !rc; i++) {
        char p[128];
        snprintf(p, sizeof p, openai ? "transformer.resblocks.%d." : "encoder.layers.%d.", i);
        rc = clip_block(L, openai, p, D, m->hidden, &m->blocks[i]);
    }
    if (rc) return rc;
    /* projection: openai stores [D, E] (x @ proj), HF stores [E, D] (Linear) */
    if (openai) {
        const st_tensor *pj = find(L, "proj");
        if (pj) {
            if (pj->ndim != 2 || pj->shape[0] != D)
                return core_seterr(L->ctx, WOBBLE_ECORRUPT, "%s: tensor '%sproj' has shape [%lld, %lld], expected [%d, *]",
                                     L->file, L->prefix, (long long)pj->shape[0], (long long)(pj->ndim > 1 ? pj->shape[1] : 0), D);
            if ((rc = get_proj_t(L, "proj", D, (int)pj->shape[1], &m->head))) return rc;
        }
    } else {
        /* visual_projection lives outside the vision_model prefix */
        const char *saved = L->prefix;
        char pre[256];
        snprintf(pre, sizeof pre, "%s", saved);
        char *vm = strstr(pre, "vision_model.");
        if (vm) *vm = 0;
        L->prefix = pre;
        const st_tensor *pj = find(L, "visual_projection.weight");
        if (pj && pj->ndim == 2) rc = get_linear(L, "visual_projection.weight", NULL, (int)pj->shape[0], D, &m->head);
        L->prefix = saved;
        if (rc) return rc;
    }
    m->embed_dim = m->head.w ? m->head.out : D;
    return WOBBLE_OK;
}

static int build_dinov2_or_vit(loader *L, json_t *cfg) {
    wobble_model *m = L->m;
    const int fb = m->naming == NAMING_FB, vit = m->arch == ARCH_VIT;
    const char *pwn = fb ? "patch_embed.proj.weight" : "embeddings.patch_embeddings.projection.weight";
    const st_tensor *pw = find(L, pwn);
    if (!pw || pw->ndim != 4) return core_seterr(L->ctx, WOBBLE_ECORRUPT, "%s: patch embedding is not 4-D", L->file);
    const int D = (int)pw->shape[0], P = (int)pw->shape[2];
    m->dim = D;
    m->patch = P;
    m->depth = count_blocks(L, fb ? "blocks.%d.norm1.weight"
                                  : (vit ? "encoder.layer.%d.layernorm_before.weight" : "encoder.layer.%d.norm1.weight"));
    if (m->depth == 0) {
        /* facebookresearch ViT-g checkpoints may chunk blocks as blocks.C.N */
        return core_seterr(L->ctx, WOBBLE_ECORRUPT, "%s: no transformer blocks found", L->file);
    }
    const st_tensor *pos = find(L, fb ? "pos_embed" : "embeddings.position_embeddings");
    if (!pos || pos->ndim != 3) return core_seterr(L->ctx, WOBBLE_ECORRUPT, "%s: missing 3-D position embedding", L->file);
    int rc = grid_of(L, pos->shape[1], 1, &m->grid);
    if (rc) return rc;
    const char *reg_name = fb ? (find(L, "reg_token") ? "reg_token" : "register_tokens") : "embeddings.register_tokens";
    const st_tensor *reg = find(L, reg_name);
    m->n_reg = reg && reg->ndim == 3 ? (int)reg->shape[1] : 0;
    /* MLP: plain or SwiGLU */
    char nm[256];
    snprintf(nm, sizeof nm, fb ? "blocks.0.mlp.w12.weight" : "encoder.layer.0.mlp.weights_in.weight");
    const st_tensor *w12 = vit ? NULL : find(L, nm);
    if (w12 && w12->ndim == 2) {
        m->act = ACT_SWIGLU;
        m->hidden = (int)w12->shape[0] / 2;
    } else {
        snprintf(nm, sizeof nm, fb ? "blocks.0.mlp.fc1.weight"
                                   : (vit ? "encoder.layer.0.intermediate.dense.weight" : "encoder.layer.0.mlp.fc1.weight"));
        const st_tensor *f1 = find(L, nm);
        m->hidden = f1 && f1->ndim == 2 ? (int)f1->shape[0] : 4 * D;
        m->act = ACT_GELU;
        const char *act = jstr(cfg, "hidden_act");
        if (act && !strcmp(act, "quick_gelu")) m->act = ACT_QUICK_GELU;
    }
    m->heads = jint(cfg, "num_attention_heads", 0);
    if (m->heads == 0) m->heads = D / 64 > 0 ? D / 64 : 1;
    m->eps = (float)jnum(cfg, "layer_norm_eps", vit ? 1e-12 : 1e-6);
    m->interp_offset = (float)jnum(cfg, "interpolate_offset", m->n_reg ? 0.0 : 0.1);
    m->interp_antialias = jbool(cfg, "interpolate_antialias", m->n_reg ? 1 : 0);
    if ((rc = GET(L, pwn, &m->patch_w, D, 3, P, P))) return rc;
    if ((rc = GET(L, fb ? "patch_embed.proj.bias" : "embeddings.patch_embeddings.projection.bias", &m->patch_b, D))) return rc;
    if ((rc = GET(L, fb ? "cls_token" : "embeddings.cls_token", &m->cls, 1, 1, D))) return rc;
    if ((rc = GET(L, fb ? "pos_embed" : "embeddings.position_embeddings", &m->pos, 1, 1 + (int64_t)m->grid * m->grid, D)))
        return rc;
    if (m->n_reg && (rc = GET(L, reg_name, &m->reg, 1, m->n_reg, D)))
        return rc;
    if ((rc = fb ? get_norm(L, "norm.weight", "norm.bias", D, &m->final_norm)
                 : get_norm(L, "layernorm.weight", "layernorm.bias", D, &m->final_norm)))
        return rc;
    m->blocks = calloc((size_t)m->depth, sizeof(block_t));
    if (!m->blocks || model_own(m, m->blocks)) {
        free(m->blocks);
        m->blocks = NULL;
        return core_seterr(L->ctx, WOBBLE_ENOMEM, "out of memory");
    }
    const int H = m->hidden, H1 = m->act == ACT_SWIGLU ? 2 * H : H;
    for (int i = 0; i < m->depth && !rc; i++) {
        block_t *b = &m->blocks[i];
        char p[128], a[256], c[256];
#define N2(x, y) do { snprintf(a, sizeof a, "%s%s", p, x); snprintf(c, sizeof c, "%s%s", p, y); } while (0)
        if (fb) {
            snprintf(p, sizeof p, "blocks.%d.", i);
            N2("norm1.weight", "norm1.bias");
            if ((rc = get_norm(L, a, c, D, &b->ln1))) break;
            N2("attn.qkv.weight", "attn.qkv.bias");
            if ((rc = get_linear(L, a, c, 3 * D, D, &b->qkv))) break;
            N2("attn.proj.weight", "attn.proj.bias");
            if ((rc = get_linear(L, a, c, D, D, &b->proj))) break;
            N2("norm2.weight", "norm2.bias");
            if ((rc = get_norm(L, a, c, D, &b->ln2))) break;
            if (m->act == ACT_SWIGLU) {
                N2("mlp.w12.weight", "mlp.w12.bias");
                if ((rc = get_linear(L, a, c, H1, D, &b->fc1))) break;
                N2("mlp.w3.weight", "mlp.w3.bias");
            } else {
                N2("mlp.fc1.weight", "mlp.fc1.bias");
                if ((rc = get_linear(L, a, c, H1, D, &b->fc1))) break;
                N2("mlp.fc2.weight", "mlp.fc2.bias");
            }
            if ((rc = get_linear(L, a, c, D, H, &b->fc2))) break;
            snprintf(a, sizeof a, "%sls1.gamma", p);
            if (find(L, a)) {
                if ((rc = GET(L, a, &b->ls1, D))) break;
                snprintf(a, sizeof a, "%sls2.gamma", p);
                if ((rc = GET(L, a, &b->ls2, D))) break;
                m->layerscale = 1;
            }
        } else {
            snprintf(p, sizeof p, "encoder.layer.%d.", i);
            if (vit)
                N2("layernorm_before.weight", "layernorm_before.bias");
            else
                N2("norm1.weight", "norm1.bias");
            if ((rc = get_norm(L, a, c, D, &b->ln1))) break;
            snprintf(a, sizeof a, "%sattention.attention.", p);
            if ((rc = get_qkv_split(L, a, "query", "key", "value", ".weight", ".bias", D, b))) break;
            N2("attention.output.dense.weight", "attention.output.dense.bias");
            if ((rc = get_linear(L, a, c, D, D, &b->proj))) break;
            if (vit)
                N2("layernorm_after.weight", "layernorm_after.bias");
            else
                N2("norm2.weight", "norm2.bias");
            if ((rc = get_norm(L, a, c, D, &b->ln2))) break;
            if (vit) {
                N2("intermediate.dense.weight", "intermediate.dense.bias");
                if ((rc = get_linear(L, a, c, H1, D, &b->fc1))) break;
                N2("output.dense.weight", "output.dense.bias");
            } else if (m->act == ACT_SWIGLU) {
                N2("mlp.weights_in.weight", "mlp.weights_in.bias");
                if ((rc = get_linear(L, a, c, H1, D, &b->fc1))) break;
                N2("mlp.weights_out.weight", "mlp.weights_out.bias");
            } else {
                N2("mlp.fc1.weight", "mlp.fc1.bias");
                if ((rc = get_linear(L, a, c, H1, D, &b->fc1))) break;
                N2("mlp.fc2.weight", "mlp.fc2.bias");
            }
            if ((rc = get_linear(L, a, c, D, H, &b->fc2))) break;
            snprintf(a, sizeof a, "%slayer_scale1.lambda1", p);
            if (!vit && find(L, a)) {
                if ((rc = GET(L, a, &b->ls1, D))) break;
                snprintf(a, sizeof a, "%slayer_scale2.lambda1", p);
                if ((rc = GET(L, a, &b->ls2, D))) break;
                m->layerscale = 1;
            }
        }
#undef N2
    }
    if (rc) return rc;
    m->embed_dim = D;
    return WOBBLE_OK;
}


/* The text tower and logit_scale of a whole CLIP checkpoint, when present.
 * root: the prefix above "visual." / "vision_model.". */
static int build_clip_text(loader *L, json_t *cfg) {
    wobble_model *m = L->m;
    const int openai = m->naming == NAMING_OPENAI;
    const st_tensor *te = find(L, openai ? "token_embedding.weight" : "text_model.embeddings.token_embedding.weight");
    const st_tensor *ls = find(L, "logit_scale");
    if (ls && ls->numel == 1) {
        const int64_t *sh = ls->shape;
        const float *v;
        int rc = get(L, "logit_scale", ls->ndim, sh, &v);
        if (rc) return rc;
        drop_ref(L); /* copied byte for byte when saved */
        if (!isfinite(v[0]))
            return core_seterr(L->ctx, WOBBLE_ECORRUPT, "%s: tensor '%slogit_scale' is not finite", L->file, L->prefix);
        m->logit_scale = expf(v[0]);
    }
    if (!te) return WOBBLE_OK;
    if (te->ndim != 2)
        return core_seterr(L->ctx, WOBBLE_ECORRUPT, "%s: the token embedding is not 2-D", L->file);
    text_tower_t *t = calloc(1, sizeof *t);
    if (!t || model_own(m, t)) {
        free(t);
        return core_seterr(L->ctx, WOBBLE_ENOMEM, "out of memory");
    }
    m->text = t;
    const int D = (int)te->shape[1];
    t->dim = D;
    t->vocab = (int)te->shape[0];
    json_t *tc = NULL;
    if (cfg) {
        tc = json_object_get(cfg, "text_config");
        json_t *oc = json_object_get(cfg, "model_cfg");
        if (!json_is_object(tc) && json_is_object(oc)) tc = json_object_get(oc, "text_cfg");
        if (!json_is_object(tc)) tc = json_object_get(cfg, "text_cfg");
        if (!json_is_object(tc)) tc = NULL;
    }
    t->depth = count_blocks(L, openai ? "transformer.resblocks.%d.ln_1.weight" : "text_model.encoder.layers.%d.layer_norm1.weight");
    if (t->depth == 0) return core_seterr(L->ctx, WOBBLE_ECORRUPT, "%s: text tower without blocks", L->file);
    const st_tensor *fc = find(L, openai ? "transformer.resblocks.0.mlp.c_fc.weight" : "text_model.encoder.layers.0.mlp.fc1.weight");
    t->hidden = fc && fc->ndim == 2 ? (int)fc->shape[0] : 4 * D;
    const st_tensor *pos = find(L, openai ? "positional_embedding" : "text_model.embeddings.position_embedding.weight");
    if (!pos || pos->ndim != 2) return core_seterr(L->ctx, WOBBLE_ECORRUPT, "%s: text tower without 2-D position embeddings", L->file);
    t->ctx_len = (int)pos->shape[0];
    /* OpenAI: heads = width / 64 (clip/model.py build_model) */
    t->heads = jint(tc, "num_attention_heads", jint(tc, "heads", 0));
    if (t->heads == 0) t->heads = D >= 64 ? D / 64 : 1;
    if (t->heads < 1 || t->heads > D)
        return core_seterr(L->ctx, WOBBLE_ECORRUPT, "%s: text tower: %d attention heads for width %d", L->file, t->heads, D);
    t->eps = (float)jnum(tc, "layer_norm_eps", 1e-5);
    if (!(t->eps > 0 && t->eps < 1))
        return core_seterr(L->ctx, WOBBLE_ECORRUPT, "%s: text tower: layer_norm_eps %g is not in (0, 1)", L->file, (double)t->eps);
    if (D % t->heads) return core_seterr(L->ctx, WOBBLE_ECORRUPT, "%s: text width %d is not divisible into %d heads", L->file, D, t->heads);
    const char *act = jstr(tc, "hidden_act");
    int quick = m->act == ACT_QUICK_GELU;
    if (act) quick = strcmp(act, "gelu") != 0;
    t->act = quick ? ACT_QUICK_GELU : ACT_GELU;
    int rc;
    if ((rc = GET(L, openai ? "token_embedding.weight" : "text_model.embeddings.token_embedding.weight", &t->tok_emb, t->vocab, D))) return rc;
    if ((rc = GET(L, openai ? "positional_embedding" : "text_model.embeddings.position_embedding.weight", &t->pos, t->ctx_len, D))) return rc;
    if ((rc = openai ? get_norm(L, "ln_final.weight", "ln_final.bias", D, &t->final_norm)
                     : get_norm(L, "text_model.final_layer_norm.weight", "text_model.final_layer_norm.bias", D, &t->final_norm)))
        return rc;
    t->blocks = calloc((size_t)t->depth, sizeof(block_t));
    if (!t->blocks || model_own(m, t->blocks)) {
        free(t->blocks);
        t->blocks = NULL;
        return core_seterr(L->ctx, WOBBLE_ENOMEM, "out of memory");
    }
    for (int i = 0; i < t->depth && !rc; i++) {
        char p[128];
        snprintf(p, sizeof p, openai ? "transformer.resblocks.%d." : "text_model.encoder.layers.%d.", i);
        rc = clip_block(L, openai, p, D, t->hidden, &t->blocks[i]);
    }
    if (rc) return rc;
    /* projection: OpenAI [D, E] (x @ P), HF Linear [E, D] */
    const char *pn = openai ? "text_projection" : "text_projection.weight";
    const st_tensor *pj = find(L, pn);
    if (!pj || pj->ndim != 2)
        return core_seterr(L->ctx, WOBBLE_ECORRUPT, "%s: missing 2-D tensor '%s%s'", L->file, L->prefix, pn);
    if (openai) {
        if ((rc = get_proj_t(L, pn, D, (int)pj->shape[1], &t->proj))) return rc;
    } else if ((rc = get_linear(L, pn, NULL, (int)pj->shape[0], D, &t->proj))) {
        return rc;
    }
    t->embed_dim = t->proj.out;
    if (t->embed_dim != m->embed_dim)
        return core_seterr(L->ctx, WOBBLE_ECORRUPT, "%s: text embeddings have %d dimensions, image embeddings %d",
                             L->file, t->embed_dim, m->embed_dim);
    return WOBBLE_OK;
}

/* ---------------------------------------------------------------- preprocessing */

static const float CLIP_MEAN[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float CLIP_STD[3] = {0.26862954f, 0.26130258f, 0.27577711f};
static const float IMNET_MEAN[3] = {0.485f, 0.456f, 0.406f};
static const float IMNET_STD[3] = {0.229f, 0.224f, 0.225f};

static void preset_preprocessing(wobble_model *m) {
    m->rescale = 1.0 / 255.0;
    m->resize_h = m->resize_w = 0;
    if (m->arch == ARCH_CLIP) {
        int s = m->grid * m->patch; /* 224, or 336 for ViT-L/14-336 */
        m->resize_short = s;
        m->crop_h = m->crop_w = s;
        m->filter = WOBBLE_FILTER_BICUBIC;
        memcpy(m->mean, CLIP_MEAN, sizeof m->mean);
        memcpy(m->std, CLIP_STD, sizeof m->std);
    } else if (m->arch == ARCH_DINOV2) {
        m->resize_short = 256;
        m->crop_h = m->crop_w = 224;
        m->filter = WOBBLE_FILTER_BICUBIC;
        memcpy(m->mean, IMNET_MEAN, sizeof m->mean);
        memcpy(m->std, IMNET_STD, sizeof m->std);
    } else {
        int s = m->grid * m->patch;
        m->resize_short = 0;
        m->resize_h = m->resize_w = s;
        m->crop_h = m->crop_w = 0;
        m->filter = WOBBLE_FILTER_BILINEAR;
        for (int i = 0; i < 3; i++) m->mean[i] = m->std[i] = 0.5f;
    }
}

/* A size in pixels: 1 .. 16384, else 0 (refused). */
static int px_size(json_t *v) {
    const json_int_t x = json_integer_value(v);
    return x >= 1 && x <= 16384 ? (int)x : 0;
}

static int read_size(json_t *v, int *shortest, int *h, int *w) {
    *shortest = *h = *w = 0;
    if (json_is_integer(v)) {
        *shortest = px_size(v);
        return *shortest > 0;
    }
    if (json_is_object(v)) {
        json_t *se = json_object_get(v, "shortest_edge"), *hh = json_object_get(v, "height"),
               *ww = json_object_get(v, "width");
        if (se && !(*shortest = px_size(se))) return 0;
        if (json_is_integer(hh) && json_is_integer(ww)) {
            *h = px_size(hh);
            *w = px_size(ww);
            if (!*h || !*w) return 0;
        }
        return *shortest > 0 || (*h > 0 && *w > 0);
    }
    return 0;
}

static int apply_preprocessor_config(wobble_ctx *ctx, wobble_model *m, json_t *pp, const char *file) {
    if (!pp) return WOBBLE_OK;
    int s, h, w;
    if (jbool(pp, "do_resize", 1)) {
        json_t *sz = json_object_get(pp, "size");
        if (sz) {
            if (!read_size(sz, &s, &h, &w)) return core_seterr(ctx, WOBBLE_ECORRUPT, "%s: unreadable \"size\"", file);
            m->resize_short = s;
            m->resize_h = s ? 0 : h;
            m->resize_w = s ? 0 : w;
        }
    } else {
        m->resize_short = m->resize_h = m->resize_w = 0;
    }
    if (jbool(pp, "do_center_crop", m->crop_h > 0)) {
        json_t *cs = json_object_get(pp, "crop_size");
        if (cs) {
            if (!read_size(cs, &s, &h, &w)) return core_seterr(ctx, WOBBLE_ECORRUPT, "%s: unreadable \"crop_size\"", file);
            m->crop_h = s ? s : h;
            m->crop_w = s ? s : w;
        }
    } else {
        m->crop_h = m->crop_w = 0;
    }
    json_t *rs = json_object_get(pp, "resample");
    if (json_is_integer(rs)) {
        /* PIL codes: 0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming */
        static const int map[6] = {-1, WOBBLE_FILTER_LANCZOS, WOBBLE_FILTER_BILINEAR, WOBBLE_FILTER_BICUBIC,
                                   WOBBLE_FILTER_BOX, WOBBLE_FILTER_HAMMING};
        json_int_t r = json_integer_value(rs);
        if (r < 1 || r > 5)
            return core_seterr(ctx, WOBBLE_EFORMAT, "%s: unsupported resample filter %lld", file, (long long)r);
        m->filter = (wobble_filter)map[r];
    }
    m->rescale = jbool(pp, "do_rescale", 1) ? jnum(pp, "rescale_factor", 1.0 / 255.0) : 1.0;
    if (!(m->rescale > 0 && m->rescale < 1e6))
        return core_seterr(ctx, WOBBLE_ECORRUPT, "%s: rescale_factor %g is not a positive number", file, m->rescale);
    if (jbool(pp, "do_normalize", 1)) {
        json_t *mean = json_object_get(pp, "image_mean"), *std = json_object_get(pp, "image_std");
        for (int i = 0; i < 3; i++) {
            if (json_is_array(mean) && json_array_size(mean) == 3) m->mean[i] = (float)json_number_value(json_array_get(mean, i));
            if (json_is_array(std) && json_array_size(std) == 3) m->std[i] = (float)json_number_value(json_array_get(std, i));
            if (!(m->std[i] > 0) || !isfinite(m->std[i]) || !isfinite(m->mean[i]))
                return core_seterr(ctx, WOBBLE_ECORRUPT, "%s: image_mean and image_std must be finite, image_std positive",
                                     file);
        }
    } else {
        for (int i = 0; i < 3; i++) {
            m->mean[i] = 0.0f;
            m->std[i] = 1.0f;
        }
    }
    return WOBBLE_OK;
}

/* ---------------------------------------------------------------- bf16 */

int wobble_bf16_supported(void) { return model_bf16_supported(); }

const char *wobble_precision_name(wobble_precision p) {
    return p == WOBBLE_PRECISION_FP32 ? "fp32" : p == WOBBLE_PRECISION_BF16 ? "bf16" : NULL;
}

int wobble_precision_parse(const char *s) {
    if (s && !strcmp(s, "fp32")) return WOBBLE_PRECISION_FP32;
    if (s && !strcmp(s, "bf16")) return WOBBLE_PRECISION_BF16;
    return -1;
}

/* Keep a freshly packed layer (descriptor and storage) as long as the
 * model; b comes from malloc, packed by the caller (packed != 0: failed). */
static int keep_packed(wobble_model *m, model_bf16_packed *b, int packed, const model_bf16_packed **out) {
    if (!b || packed != 0) {
        free(b);
        return -1;
    }
    if (model_own(m, b->p) != 0) {
        model_bf16_free(b);
        free(b);
        return -1;
    }
    if (model_own(m, b) != 0) { /* b->p is already owned */
        free(b);
        return -1;
    }
    m->bf16_bytes += model_bf16_packed_bytes(b);
    *out = b;
    return 0;
}

/* A packer: W of layer L, given as n rows of k floats, into the layer's
 * pack (bf16 or fp32 kernel); 0, or -1 out of memory. */
typedef int (*pack_fn)(wobble_model *m, linear_t *L, const float *const *rows, int n, int k);

/* Pack layer L, whose weights are the nm matrices mats (L->out / nm rows
 * each: one [out, in] matrix, or separate q, k, v packed as one), then hand
 * their checkpoint pages back: the forward pass reads the pack only. */
static int pack_layer(wobble_model *m, linear_t *L, const float *const *mats, int nm, pack_fn fn) {
    if (!mats[0]) return 0; /* no such layer */
    const int per = L->out / nm, k = L->in;
    const float **rows = malloc(sizeof(*rows) * (size_t)(L->out > 0 ? L->out : 1));
    if (!rows) return -1;
    for (int j = 0; j < L->out; j++) rows[j] = mats[j / per] + (size_t)(j % per) * k;
    const int rc = fn(m, L, rows, L->out, k);
    free(rows);
    if (rc == 0)
        for (int i = 0; i < nm; i++) st_release(m->st, mats[i], sizeof(float) * (size_t)per * k);
    return rc;
}

/* The patch embedding (its descriptor returned in *pe) and every linear
 * layer of the image and text stacks, through fn. */
static int pack_model(wobble_model *m, linear_t *pe, pack_fn fn) {
    *pe = (linear_t){m->patch_w, NULL, m->dim, 3 * m->patch * m->patch, NULL, NULL};
    if (pack_layer(m, pe, &pe->w, 1, fn)) return -1;
    for (int s = 0; s < (m->text ? 2 : 1); s++) {
        block_t *blocks = s ? m->text->blocks : m->blocks;
        for (int l = 0; l < (s ? m->text->depth : m->depth); l++) {
            block_t *bk = &blocks[l];
            const float *qkv[3] = {bk->wq, bk->wk, bk->wv};
            if ((bk->qkv.w ? pack_layer(m, &bk->qkv, &bk->qkv.w, 1, fn) : pack_layer(m, &bk->qkv, qkv, 3, fn)) ||
                pack_layer(m, &bk->proj, &bk->proj.w, 1, fn) || pack_layer(m, &bk->fc1, &bk->fc1.w, 1, fn) ||
                pack_layer(m, &bk->fc2, &bk->fc2.w, 1, fn))
                return -1;
        }
    }
    return 0;
}

static int pack_bf16_layer(wobble_model *m, linear_t *L, const float *const *rows, int n, int k) {
    model_bf16_packed *b = malloc(sizeof *b);
    return keep_packed(m, b, b ? model_bf16_pack(b, rows, n, k) : -1, &L->bp);
}

static int pack_bf16(wobble_ctx *ctx, wobble_model *m) {
    if (!model_bf16_supported())
        return core_seterr(ctx, WOBBLE_EINVAL,
                           "%s: precision bf16 needs a CPU with AVX512_BF16, which this one lacks; use fp32", m->path);
    linear_t pe;
    if (pack_model(m, &pe, pack_bf16_layer))
        return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory for the bf16 weights", m->path);
    m->patch_bp = pe.bp;
    m->precision = WOBBLE_PRECISION_BF16;
    return WOBBLE_OK;
}

/* The fp32 kernel's packs live in one array (fixed once made, so
 * linear_t.fp can point into it): the patch embedding and every block's
 * four layers. */
static int pack_f32_layer(wobble_model *m, linear_t *L, const float *const *rows, int n, int k) {
    model_f32_packed *b = &m->f32[m->n_f32];
    if (model_f32_pack(b, rows, n, k) != 0) return -1;
    m->n_f32++;
    m->f32_bytes += model_f32_packed_bytes(b);
    L->fp = b;
    return 0;
}

static void unlink_f32(block_t *blocks, int depth) {
    for (int l = 0; l < depth; l++) blocks[l].qkv.fp = blocks[l].proj.fp = blocks[l].fc1.fp = blocks[l].fc2.fp = NULL;
}

void model_drop_f32(wobble_model *m) {
    if (!m->f32) return;
    m->patch_fp = NULL;
    unlink_f32(m->blocks, m->depth);
    if (m->text) unlink_f32(m->text->blocks, m->text->depth);
    for (int i = 0; i < m->n_f32; i++) model_f32_free(&m->f32[i]);
    free(m->f32);
    m->f32 = NULL;
    m->n_f32 = 0;
    m->f32_bytes = 0;
}

int model_pack_f32(wobble_model *m) {
    if (m->f32 || m->precision != WOBBLE_PRECISION_FP32 || !model_f32_kernel_supported()) return 0;
    const size_t n = 1 + 4 * (size_t)m->depth + (m->text ? 4 * (size_t)m->text->depth : 0);
    m->f32 = calloc(n, sizeof *m->f32);
    if (!m->f32) return -1;
    linear_t pe;
    if (pack_model(m, &pe, pack_f32_layer)) {
        model_drop_f32(m);
        return -1;
    }
    m->patch_fp = pe.fp;
    return 0;
}

/* ---------------------------------------------------------------- entry */

wobble_model_params wobble_model_default_params(void) {
    wobble_model_params p;
    memset(&p, 0, sizeof p);
    p.max_batch = 16;
    return p;
}


int wobble_model_load(wobble_ctx *ctx, const char *path, const wobble_model_params *params, wobble_model **out) {
    if (!path || !out) return core_seterr(ctx, WOBBLE_EINVAL, "model: NULL argument");
    *out = NULL;
    wobble_model_params p = params ? *params : wobble_model_default_params();
    if (p.max_batch < 1) return core_seterr(ctx, WOBBLE_EINVAL, "model: max_batch must be >= 1");
    if (!wobble_precision_name(p.precision))
        return core_seterr(ctx, WOBBLE_EINVAL, "model: precision %d is neither fp32 (0) nor bf16 (1)", (int)p.precision);
    char file[4096];
    char *dir = NULL;
    if (core_is_dir(path)) {
        if (!(dir = strdup(path))) return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
        static const char *cands[] = {"model.safetensors", "model.safetensors.index.json",
                                      "open_clip_model.safetensors"};
        int found = 0;
        for (int i = 0; i < 3 && !found; i++) {
            snprintf(file, sizeof file, "%s/%s", path, cands[i]);
            found = access(file, F_OK) == 0;
        }
        if (!found) {
            free(dir);
            return core_seterr(ctx, WOBBLE_EIO,
                                 "%s: no model.safetensors, model.safetensors.index.json or open_clip_model.safetensors in the folder",
                                 path);
        }
    } else {
        if (access(path, F_OK) != 0) return core_seterr(ctx, WOBBLE_EIO, "%s: cannot open: %s", path, strerror(errno));
        snprintf(file, sizeof file, "%s", path);
        /* a file inside an HF folder still gets its configs */
        const char *sl = strrchr(path, '/');
        char d[4096];
        if (sl) {
            snprintf(d, sizeof d, "%.*s", (int)(sl - path), path);
        } else {
            snprintf(d, sizeof d, ".");
        }
        char cfgp[4200];
        snprintf(cfgp, sizeof cfgp, "%s/config.json", d);
        if (access(cfgp, F_OK) == 0 && !(dir = strdup(d))) return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
    }
    wobble_model *m = calloc(1, sizeof *m);
    if (!m) {
        free(dir);
        return core_seterr(ctx, WOBBLE_ENOMEM, "model: out of memory");
    }
    m->max_batch = p.max_batch;
    int rc = (m->path = strdup(path)) ? st_open(ctx, file, &m->st) : core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
    json_t *cfg = NULL, *pp = NULL;
    if (rc == WOBBLE_OK) cfg = load_json_opt(ctx, dir, "config.json", &rc);
    if (rc == WOBBLE_OK && !cfg) cfg = load_json_opt(ctx, dir, "open_clip_config.json", &rc);
    if (rc == WOBBLE_OK) pp = load_json_opt(ctx, dir, "preprocessor_config.json", &rc);
    char prefix[256] = "";
    detected d = {0, 0, NULL};
    if (rc == WOBBLE_OK) rc = detect(ctx, m, file, cfg, prefix, sizeof prefix, &d);
    if (rc == WOBBLE_OK) {
        m->arch = d.arch;
        m->naming = d.naming;
        loader L = {ctx, m, prefix, file};
        /* vision hyper-parameters may sit in a sub-object */
        json_t *vcfg = cfg;
        if (cfg && json_is_object(json_object_get(cfg, "vision_config"))) vcfg = json_object_get(cfg, "vision_config");
        if (cfg && json_is_object(json_object_get(cfg, "vision"))) vcfg = json_object_get(cfg, "vision");
        json_t *oc = cfg ? json_object_get(cfg, "model_cfg") : NULL; /* open_clip_config.json */
        if (json_is_object(oc) && json_is_object(json_object_get(oc, "vision_cfg"))) {
            vcfg = json_object_get(oc, "vision_cfg");
            if (!jbool(oc, "quick_gelu", 0)) json_object_set_new(vcfg, "quick_gelu", json_false());
        }
        if (m->arch == ARCH_CLIP) {
            rc = build_clip(&L, vcfg);
            if (rc == WOBBLE_OK) {
                /* the text tower sits beside the image tower */
                char root[256];
                snprintf(root, sizeof root, "%s", prefix);
                char *cut = strstr(root, m->naming == NAMING_OPENAI ? "visual." : "vision_model.");
                if (cut) *cut = 0;
                loader LT = {ctx, m, root, file};
                rc = build_clip_text(&LT, cfg);
            }
        } else {
            rc = build_dinov2_or_vit(&L, cfg);
        }
    }
    if (rc == WOBBLE_OK && (m->heads <= 0 || m->dim % m->heads != 0))
        rc = core_seterr(ctx, WOBBLE_ECORRUPT, "%s: width %d is not divisible into %d heads", file, m->dim, m->heads);
    if (rc == WOBBLE_OK && !(m->eps > 0 && m->eps < 1))
        rc = core_seterr(ctx, WOBBLE_ECORRUPT, "%s: layer_norm_eps %g is not in (0, 1)", file, (double)m->eps);
    if (rc == WOBBLE_OK && !(m->interp_offset >= 0 && m->interp_offset <= 1))
        rc = core_seterr(ctx, WOBBLE_ECORRUPT, "%s: interpolate_offset %g is not in [0, 1]", file, (double)m->interp_offset);
    if (rc == WOBBLE_OK) {
        preset_preprocessing(m);
        char ppath[4200];
        snprintf(ppath, sizeof ppath, "%s/preprocessor_config.json", dir ? dir : ".");
        rc = apply_preprocessor_config(ctx, m, pp, ppath);
    }
    if (rc == WOBBLE_OK) rc = model_device_attach(ctx, m, &p); /* nothing to do for the CPU */
    if (rc == WOBBLE_OK && m->device) {
        /* the image tower runs on the device: no CPU packs (the CPU path,
         * kept for the text tower and per-layer outputs, uses sgemm) */
        m->precision = p.precision;
    } else if (rc == WOBBLE_OK) {
        if (p.precision == WOBBLE_PRECISION_BF16) rc = pack_bf16(ctx, m);
        if (rc == WOBBLE_OK && model_pack_f32(m) != 0)
            rc = core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory for the fp32 kernel's weights", m->path);
    }
    json_decref(cfg);
    json_decref(pp);
    free(dir);
    if (rc != WOBBLE_OK) {
        wobble_model_free(m);
        return rc;
    }
    *out = m;
    return WOBBLE_OK;
}

static void arena_free(arena_t *a) {
    free(a->x);
    free(a->h);
    free(a->qkv);
    free(a->attn);
    free(a->mlp);
    free(a->mlp2);
    free(a->patches);
    free(a->scores);
    free(a->pos);
    free(a->ones);
    free(a->zeros);
    free(a->bf16s);
    free(a->bf16a);
    free(a->f32a);
    memset(a, 0, sizeof *a);
}

void wobble_model_free(wobble_model *m) {
    if (!m) return;
    model_device_free(m);
    model_drop_f32(m);
    arena_free(&m->arena);
    if (m->text) arena_free(&m->text->arena);
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    for (int i = 0; i < m->n_refs; i++) free(m->refs[i].name);
    free(m->refs);
    free(m->owned);
    st_close(m->st);
    free(m->path);
    free(m);
}

int wobble_model_embed_dim(const wobble_model *m) { return m ? m->embed_dim : 0; }

/* The official models wobble targets, recognised by shape (for `info`); their
 * hyper-parameters follow from the rules above: heads = width / 64,
 * QuickGELU and eps 1e-5 for OpenAI CLIP, eps 1e-6 and the DINOv2
 * interpolation settings, SwiGLU detected from the w12 / weights_in tensors. */
static const struct {
    arch_t arch;
    int width, depth, patch, grid, regs;
    const char *name;
} PRESETS[] = {
    {ARCH_CLIP, 768, 12, 32, 7, 0, "OpenAI CLIP ViT-B/32"},      {ARCH_CLIP, 768, 12, 16, 14, 0, "OpenAI CLIP ViT-B/16"},
    {ARCH_CLIP, 1024, 24, 14, 16, 0, "OpenAI CLIP ViT-L/14"},    {ARCH_CLIP, 1024, 24, 14, 24, 0, "OpenAI CLIP ViT-L/14@336px"},
    {ARCH_DINOV2, 384, 12, 14, 37, 0, "DINOv2 ViT-S/14"},        {ARCH_DINOV2, 768, 12, 14, 37, 0, "DINOv2 ViT-B/14"},
    {ARCH_DINOV2, 1024, 24, 14, 37, 0, "DINOv2 ViT-L/14"},       {ARCH_DINOV2, 1536, 40, 14, 37, 0, "DINOv2 ViT-g/14"},
    {ARCH_DINOV2, 384, 12, 14, 37, 4, "DINOv2 ViT-S/14 + registers"}, {ARCH_DINOV2, 768, 12, 14, 37, 4, "DINOv2 ViT-B/14 + registers"},
    {ARCH_DINOV2, 1024, 24, 14, 37, 4, "DINOv2 ViT-L/14 + registers"}, {ARCH_DINOV2, 1536, 40, 14, 37, 4, "DINOv2 ViT-g/14 + registers"},
    {ARCH_VIT, 192, 12, 16, 14, 0, "ViT-Ti/16"},                 {ARCH_VIT, 384, 12, 16, 14, 0, "ViT-S/16"},
    {ARCH_VIT, 768, 12, 16, 14, 0, "ViT-B/16"},
};

int wobble_model_get_info(const wobble_model *m, wobble_model_info *info) {
    if (!m || !info) return WOBBLE_EINVAL;
    static const char *arch[] = {"clip", "dinov2", "vit"};
    static const char *naming[] = {"huggingface", "openai", "facebookresearch"};
    static const char *act[] = {"gelu", "quick_gelu", "swiglu"};
    memset(info, 0, sizeof *info);
    info->arch = arch[m->arch];
    info->preset = "custom";
    for (size_t i = 0; i < sizeof PRESETS / sizeof PRESETS[0]; i++)
        if (PRESETS[i].arch == m->arch && PRESETS[i].width == m->dim && PRESETS[i].depth == m->depth &&
            PRESETS[i].patch == m->patch && PRESETS[i].grid == m->grid && PRESETS[i].regs == m->n_reg)
            info->preset = PRESETS[i].name;
    info->naming = naming[m->naming];
    info->activation = act[m->act];
    info->path = m->path;
    info->width = m->dim;
    info->depth = m->depth;
    info->heads = m->heads;
    info->mlp_hidden = m->hidden;
    info->patch = m->patch;
    info->native_grid = m->grid;
    info->registers = m->n_reg;
    info->embed_dim = m->embed_dim;
    info->layer_norm_eps = m->eps;
    info->layerscale = m->layerscale;
    info->has_projection = m->head.w != NULL;
    info->interp_offset = m->interp_offset;
    info->interp_antialias = m->interp_antialias;
    info->resize_short = m->resize_short;
    info->resize_h = m->resize_h;
    info->resize_w = m->resize_w;
    info->filter = m->filter;
    info->crop_h = m->crop_h;
    info->crop_w = m->crop_w;
    info->rescale = m->rescale;
    for (int i = 0; i < 3; i++) {
        info->mean[i] = m->mean[i];
        info->std[i] = m->std[i];
    }
    if (m->text) {
        info->has_text = 1;
        info->text_width = m->text->dim;
        info->text_depth = m->text->depth;
        info->text_heads = m->text->heads;
        info->text_context = m->text->ctx_len;
        info->text_vocab = m->text->vocab;
    }
    info->logit_scale = m->logit_scale;
    info->n_params = m->n_params;
    info->weight_bytes = st_data_bytes(m->st);
    const arena_t *a = &m->arena;
    const size_t D = (size_t)m->dim, H = (size_t)m->hidden;
    info->arena_bytes = sizeof(float) * (a->cap_rows * D * 4 + a->cap_rows * 3 * D +
                                         a->cap_rows * (m->act == ACT_SWIGLU ? 3 * H : H) + a->cap_scores +
                                         a->cap_patches + (a->pos ? (size_t)a->pos_h * a->pos_w * D : 0)) +
                       sizeof(uint16_t) * (a->cap_bf16s + a->cap_bf16a) + sizeof(float) * a->cap_f32a;
    info->precision = wobble_precision_name(m->precision);
    info->bf16_bytes = m->bf16_bytes;
    info->f32_bytes = m->f32_bytes;
    info->device = m->device ? m->device_name : "cpu";
    info->device_bytes = model_device_bytes(m);
    info->device_seconds = m->device_ms / 1000.0;
    return WOBBLE_OK;
}
