/* Internal representation shared by every supported image tower. */
#ifndef WOBBLE_MODEL_H
#define WOBBLE_MODEL_H
#include "../core/internal.h"
#include "safetensors.h"
#include "gemm_bf16.h"
#include "gemm_f32.h"

typedef enum { ARCH_CLIP = 0, ARCH_DINOV2 = 1, ARCH_VIT = 2 } arch_t;
typedef enum { NAMING_HF = 0, NAMING_OPENAI = 1, NAMING_FB = 2 } naming_t;
typedef enum { ACT_GELU = 0, ACT_QUICK_GELU = 1, ACT_SWIGLU = 2 } act_t;

typedef struct {
    const float *w; /* [out, in], row-major (PyTorch Linear layout) */
    const float *b; /* [out] or NULL */
    int out, in;
    const model_bf16_packed *bp; /* the weights packed in bf16 (precision bf16), else NULL */
    const model_f32_packed *fp;  /* the weights packed for the AVX-512 fp32 kernel (precision fp32), else NULL */
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
    uint16_t *bf16s;   /* bf16 GEMM input scratch (precision bf16) */
    size_t cap_bf16s;  /* elements */
    uint16_t *bf16a;   /* bf16 attention scratch, one slice per thread (precision bf16) */
    size_t cap_bf16a;  /* elements */
    float *f32a;       /* fp32-kernel attention scratch, one slice per thread (packed fp32 layers) */
    size_t cap_f32a;   /* floats */
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

/* Where each checkpoint tensor's values live in the model, for saving a
 * trained model under the same names (recorded at load). */
typedef struct {
    char *name;
    const float **slot;  /* the model field that points to the values */
    size_t offset;       /* floats into *slot */
    int transpose;       /* the file holds [rows, cols]; the model [cols, rows] */
    int64_t rows, cols;
} tensor_ref;

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
    const model_bf16_packed *patch_bp; /* patch_w in bf16 (precision bf16), else NULL */
    wobble_precision precision;
    uint64_t bf16_bytes;  /* packed bf16 weights */
    const model_f32_packed *patch_fp; /* patch_w for the fp32 kernel, else NULL */
    model_f32_packed *f32;  /* every layer packed for the fp32 kernel (model_pack_f32), n_f32 of them */
    int n_f32;
    uint64_t f32_bytes;
    /* the forward pass on a GPU (src/model/device.c), or NULL */
    void *device;           /* cuda_model * */
    int device_index;
    char device_name[24];   /* "cuda:N" while device is set */
    int device_tf32;        /* the device's fp32 GEMMs may use TF32 */
    int device_stale;       /* the values changed since the device copy was made (model_params_changed) */
    double device_ms;       /* GPU time of the forward passes so far */
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
    int n_owned;
    size_t cap_owned;
    char *path;
    uint64_t n_params;
    uint64_t content_hash; /* 0 until computed */
    tensor_ref *refs;
    int n_refs;
    size_t cap_refs;
    int max_batch;
    arena_t arena;
};

/* ------------------------------------------------------------ training hooks
 * The forward pass records what the backward pass (src/train) needs. */

/* One block's activations ([rows = n * T] rows each). */
typedef struct {
    float *x_in;  /* [rows, D] block input (the residual stream) */
    float *h1;    /* [rows, D] ln1 output */
    float *qkv;   /* [rows, 3D] */
    float *probs; /* [n * heads, T, T] softmax probabilities */
    float *o;     /* [rows, D] attention output, before the projection */
    float *y1;    /* [rows, D] projection output without bias (LayerScale models only) */
    float *x_mid; /* [rows, D] residual stream after the attention branch */
    float *h2;    /* [rows, D] ln2 output */
    float *u;     /* [rows, H] or [rows, 2H] (SwiGLU) fc1 output without bias */
    float *a;     /* [rows, H] activation output */
    float *y2;    /* [rows, D] fc2 output without bias (LayerScale models only) */
} block_rec;

/* A recorded forward pass of the image tower on n images. With checkpoint,
 * only each block's input is kept and the backward pass recomputes the
 * block into `scratch` (per-block activation recomputation). */
typedef struct {
    int n, H, W, gh, gw, T, rows, checkpoint;
    float *patches; /* [n * gh * gw, 3 P P] im2col of the input */
    float *x0;      /* [rows, D] token embeddings (before ln_pre for CLIP) */
    block_rec *blk; /* depth records */
    block_rec scratch;
    float *xcls;    /* [n, D] stack output at the CLS rows */
    float *ncls;    /* [n, D] final norm of those rows (the head's input) */
    float *buf;
    size_t cap, bytes;
    int depth_cap;
} fwd_tape;

/* Forward pass of n images (no chunking) recording into tape; emb gets
 * n x embed_dim floats. */
int model_forward_record(wobble_ctx *ctx, wobble_model *m, const float *pixels, int n, int H, int W, fwd_tape *tape,
                         float *emb);
void model_tape_free(fwd_tape *t);
/* Forward pass of one preprocessed image giving, besides emb (embed_dim),
 * the final norm of the outputs of blocks layers[0..n_layers-1] (0-based):
 * CLS tokens [n_layers][width] and patch tokens [n_layers][num_patches]
 * [width] (the depth probe's features; the last block is the usual
 * read-out). */
int model_forward_tokens(wobble_ctx *ctx, wobble_model *m, const float *pixels, int H, int W, const int *layers,
                         int n_layers, float *emb, float *cls, float *patch);
/* Block l of the image tower on x in place, recording into r (may be NULL). */
void model_block_forward(wobble_model *m, int l, float *x, int n, int T, block_rec *r, int th);
void model_ln_stats(const float *x, int rows, int d, float eps, float *mu, float *rstd, int threads);
/* Gradient of the interpolated patch position embeddings (gh x gw grid,
 * [gh*gw, D]) added to the stored grid's gradient ([grid*grid, D]). */
int model_pos_backward(wobble_ctx *ctx, const wobble_model *m, int gh, int gw, const float *dppos, float *dgrid);
/* The parameters changed: drop values derived from them (interpolated
 * position embeddings, content hash). */
void model_params_changed(wobble_model *m);

/* Write the model's weights as one safetensors file: every tensor of the
 * loaded checkpoint, under its name, shape and dtype, with the current
 * values of the recorded ones (the rest copied byte for byte). Atomic. */
int model_save_safetensors(wobble_ctx *ctx, const wobble_model *m, const char *path);

/* Keep a malloc'ed buffer alive as long as the model. */
int model_own(wobble_model *m, void *p);
/* The fp32 kernel's copies of the weights (gemm_f32.h): made at load at
 * precision fp32 where the kernel runs; dropped (back to sgemm on the
 * weights themselves) when the parameters change, as fine-tuning does. */
int model_pack_f32(wobble_model *m);
/* src/model/device.c: put the image tower on the device params ask for
 * (nothing for the CPU); run one chunk there, giving the final-norm CLS
 * rows [n, D] (and patch rows [n, np, D] when patch_out); free it. */
int model_device_attach(wobble_ctx *ctx, wobble_model *m, const wobble_model_params *p);
int model_device_forward(wobble_ctx *ctx, wobble_model *m, const float *pixels, int n, int H, int W, const float *ppos,
                         float *cls, float *patch_out);
void model_device_free(wobble_model *m);
/* Fine-tuning on the device (fp32): a recorded forward pass whose tape
 * stays on the device (xcls: the stack output's CLS rows [n, D], before the
 * final norm), and its backward pass from the gradient at those rows. */
int model_device_forward_record(wobble_ctx *ctx, wobble_model *m, const float *pixels, int n, int H, int W,
                                const float *ppos, int checkpoint, float *xcls);
/* Host gradient buffers of a device backward pass (+=; NULL: not needed).
 * blk: depth * MODEL_BLOCK_GRADS pointers per block, in this order: ln1_g,
 * ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_g, ln2_b, fc1_w, fc1_b, fc2_w,
 * fc2_b, ls1, ls2. cls and pos0 both get the CLS rows' sum; ppos ([np, D],
 * overwritten) the gradient of the interpolated patch positions. */
#define MODEL_BLOCK_GRADS 14
typedef struct {
    float *const *blk;
    float *patch_w, *patch_b, *cls, *pos0, *reg, *pre_g, *pre_b, *ppos;
    int lowest, embed;
} model_device_grads;
int model_device_backward(wobble_ctx *ctx, wobble_model *m, const float *dxcls, const model_device_grads *g,
                          float *dpixels);
uint64_t model_device_bytes(const wobble_model *m);
void model_drop_f32(wobble_model *m);

/* Content hash of the weights (src/model/identity.c): every tensor's name,
 * dtype, shape and bytes in name order, so the same weights give the same
 * hash however they are sharded. Computed once and kept; 0 only when out of
 * memory. */
uint64_t model_content_hash(wobble_model *m);
/* Hash of everything that decides the model's input pixels. */
uint64_t model_preprocessing_hash(const wobble_model *m);
#endif
