/* Internal representation shared by every supported image tower. */
#ifndef WOBBLE_MODEL_H
#define WOBBLE_MODEL_H
#include "../core/internal.h"
#include "safetensors.h"

typedef enum { ARCH_CLIP = 0, ARCH_DINOV2 = 1, ARCH_VIT = 2 } arch_t;
typedef enum { NAMING_HF = 0, NAMING_OPENAI = 1, NAMING_FB = 2 } naming_t;
typedef enum { ACT_GELU = 0, ACT_QUICK_GELU = 1, ACT_SWIGLU = 2 } act_t;

typedef struct {
    const float *w; /* [out, in], row-major (PyTorch Linear layout) */
    const float *b; /* [out] or NULL */
    int out, in;
} linear_t;

typedef struct {
    const float *g, *b; /* NULL g: no norm */
} norm_t;

typedef struct {
    norm_t ln1, ln2;
    linear_t qkv;  /* [3D, D]: q rows, then k, then v; w NULL when stored apart */
    const float *wq, *wk, *wv; /* [D, D] each when q, k, v are separate tensors (no copy) */
    linear_t proj; /* [D, D] */
    linear_t fc1;  /* [H, D], or [2H, D] for SwiGLU (x1 rows, then x2) */
    linear_t fc2;  /* [D, H] */
    const float *ls1, *ls2; /* LayerScale gammas or NULL */
} block_t;

typedef struct {
    float *x, *h, *qkv, *attn, *mlp, *mlp2, *patches, *scores;
    size_t cap_rows;   /* batch * tokens the buffers hold */
    size_t cap_scores; /* floats in scores */
    size_t cap_patches;
    float *ones, *zeros; /* constant vectors (LayerScale / bias stand-ins) */
    float *pos;        /* interpolated position embeddings for pos_h x pos_w */
    int pos_h, pos_w;
} arena_t;

/* A stack of pre-norm transformer blocks (image or text tower). */
typedef struct {
    int dim, depth, heads, hidden;
    act_t act;
    float eps;
    const block_t *blocks;
} xfstack_t;

/* CLIP text tower: token + position embeddings, causal blocks, final norm,
 * the <|endoftext|> token's features times the projection. */
typedef struct {
    int dim, depth, heads, hidden, ctx_len, vocab, embed_dim;
    act_t act;
    float eps;
    const float *tok_emb; /* [vocab, D] */
    const float *pos;     /* [ctx_len, D] */
    block_t *blocks;
    norm_t final_norm;
    linear_t proj;        /* [E, D] (Linear layout; the OpenAI [D, E] tensor is transposed at load) */
    arena_t arena;
} text_tower_t;

struct wobble_model {
    arch_t arch;
    naming_t naming;
    act_t act;
    int dim, depth, heads, hidden, patch, grid, n_reg, embed_dim;
    float eps;
    int layerscale;
    float interp_offset;
    int interp_antialias;
    const float *patch_w; /* [D, 3*P*P] */
    const float *patch_b; /* [D] or NULL */
    const float *cls;     /* [D] */
    const float *pos;     /* [(1 + grid^2), D] */
    const float *reg;     /* [n_reg, D] or NULL */
    norm_t pre_norm;      /* CLIP ln_pre */
    norm_t final_norm;
    linear_t head;        /* CLIP projection [embed_dim, D]; w NULL if none */
    block_t *blocks;
    text_tower_t *text;   /* CLIP text tower, or NULL */
    float logit_scale;    /* exp(logit_scale) of a whole CLIP model; 0 if absent */
    /* preprocessing */
    int resize_short;     /* > 0: resize the short side to this */
    int resize_h, resize_w; /* > 0 (and resize_short == 0): resize to exactly this */
    wobble_filter filter;
    int crop_h, crop_w;   /* 0: no crop */
    float mean[3], std[3];
    double rescale;
    /* storage */
    st_file *st;
    void **owned;
    int n_owned, cap_owned;
    char *path;
    uint64_t n_params;
    uint64_t content_hash; /* 0 until computed */
    int max_batch;
    arena_t arena;
};

/* Keep a malloc'ed buffer alive as long as the model. */
int model_own(wobble_model *m, void *p);
#endif
