/*
 * The CUDA backend of the image tower's forward pass (built when CMake finds
 * the CUDA toolkit; WOBBLE_HAVE_CUDA). A C interface over plain host
 * pointers, so the CUDA side needs nothing of model.h: src/model/device.c
 * describes a loaded model with it and calls it from the forward pass.
 *
 * Arithmetic, per layer, as the CPU forward pass (src/model/forward.c):
 *   patch embedding (im2col, one GEMM), tokens = [cls + pos0, registers,
 *   (patch + bias) + interpolated position], optional pre-norm, blocks of
 *   LN -> qkv -> attention -> proj -> residual (LayerScale) -> LN -> fc1 ->
 *   GELU / QuickGELU / SwiGLU -> fc2 -> residual, final LN. The CLS row (and
 *   the patch rows) of the final norm come back to the host, where the
 *   projection and normalisation run as on the CPU.
 * GEMMs: cuBLAS, fp32 (compute 32F: no TF32 unless asked), TF32 when
 * tf32 is set, or bf16 weights and inputs with fp32 accumulation and fp32
 * outputs (bf16). LayerNorm, softmax, activations and residuals in fp32.
 * Attention: one fused kernel, flash-style (key/value tiles in shared
 * memory, online softmax in fp32), no T x T matrix in memory.
 */
#ifndef WOBBLE_CUDA_BACKEND_H
#define WOBBLE_CUDA_BACKEND_H
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const float *w; /* [out, in] host, row-major (PyTorch Linear) */
    const float *b; /* [out] or NULL */
    int out, in;
} cuda_linear_desc;

typedef struct {
    const float *ln1_g, *ln1_b, *ln2_g, *ln2_b;
    cuda_linear_desc qkv; /* qkv.w NULL: three [D, D] matrices in q_rows */
    const float *q_rows[3];
    cuda_linear_desc proj, fc1, fc2; /* fc1 [2H, D] for SwiGLU */
    const float *ls1, *ls2;          /* LayerScale or NULL */
} cuda_block_desc;

typedef struct {
    int dim, depth, heads, hidden, patch, n_reg;
    int act; /* 0 GELU (erf), 1 QuickGELU, 2 SwiGLU */
    float eps;
    int bf16; /* GEMMs on bf16 weights and inputs, fp32 accumulation */
    int tf32; /* fp32 GEMMs may use TF32 tensor cores */
    const float *patch_w, *patch_b; /* [D, 3 P P], [D] or NULL */
    const float *cls, *pos0, *reg;  /* [D], position row 0 [D], [n_reg, D] or NULL */
    const float *pre_g, *pre_b;     /* pre-norm (CLIP ln_pre) or NULL */
    const float *fin_g, *fin_b;
    const cuda_block_desc *blocks;
    const float *head_w; /* projection [embed_dim, dim] (CLIP) or NULL */
    int embed_dim;
} cuda_model_desc;

typedef struct cuda_model cuda_model;

/* Status of the calls below: 0, or one of these with a one-line message in
 * msg (len bytes). */
enum { CUDA_B_OK = 0, CUDA_B_ERROR = -1, CUDA_B_NOMEM = -2, CUDA_B_NODEVICE = -3 };

/* The CUDA devices this process can use (0 is not an error). */
int cuda_device_count(int *count, char *msg, size_t len);
/* A short description of device `device` (name, memory, compute capability). */
int cuda_device_describe(int device, char *out, size_t len);

/* Upload the weights to `device`. */
int cuda_model_create(const cuda_model_desc *d, int device, cuda_model **out, char *msg, size_t len);

/* pixels: host [n, 3, H, W] (normalised); ppos: host [np, D], the position
 * embeddings of the (H / P) x (W / P) patch grid. Writes the embeddings to
 * cls_out: the final-norm CLS tokens [n, D], or with a projection
 * (head_w) their projection [n, embed_dim] (an fp32 GEMM on the GPU); and,
 * unless NULL, the patch tokens to patch_out [n, np, D]. Adds the time the
 * GPU spent on this call to *gpu_ms when not NULL. */
int cuda_model_forward(cuda_model *g, const float *pixels, int n, int H, int W, const float *ppos, float *cls_out,
                       float *patch_out, double *gpu_ms, char *msg, size_t len);

/* ---- training (fp32 models only; train.cuh) ----
 *
 * A recorded forward pass keeps every activation the backward pass needs on
 * the device (with checkpoint, only each block's input: the backward pass
 * recomputes the block). xcls gets the stack output's CLS rows [n, D],
 * before the final norm: the final norm, the projection and the loss run
 * on the host, which hands the gradient at those rows back to
 * cuda_model_backward. */
int cuda_model_forward_record(cuda_model *g, const float *pixels, int n, int H, int W, const float *ppos,
                              int checkpoint, float *xcls, double *gpu_ms, char *msg, size_t len);

/* Host gradient buffers of the backward pass: added to (+=), NULL where not
 * needed. Per block, CUDA_BLOCK_GRADS pointers in this order: ln1_g, ln1_b,
 * qkv_w ([3D, D], q then k then v rows), qkv_b, proj_w, proj_b, ln2_g,
 * ln2_b, fc1_w, fc1_b, fc2_w, fc2_b, ls1, ls2. cls and pos0 both receive
 * the sum of the CLS rows' gradients; ppos ([np, D], overwritten) the
 * gradient of the interpolated position rows summed over the images (the
 * host maps it back to the position table). Blocks below lowest, and the
 * embedding when lowest > 0 or embed is 0, are skipped. */
#define CUDA_BLOCK_GRADS 14
typedef struct {
    float *const *blk; /* depth * CUDA_BLOCK_GRADS pointers, or NULL */
    float *patch_w, *patch_b, *cls, *pos0, *reg, *pre_g, *pre_b, *ppos;
    int lowest, embed;
} cuda_grads;

/* Backward pass of the last recorded forward pass from dxcls [n, D];
 * dpixels, unless NULL, receives the input gradient [n, 3, H, W]. */
int cuda_model_backward(cuda_model *g, const float *dxcls, const cuda_grads *grads, float *dpixels, double *gpu_ms,
                        char *msg, size_t len);

/* Copy the weights again from the host (same shapes as at creation): after
 * an optimiser step, or any change of the model's values. */
int cuda_model_refresh(cuda_model *g, const cuda_model_desc *d, char *msg, size_t len);

/* Device memory held (weights and activation buffers). */
size_t cuda_model_bytes(const cuda_model *g);
void cuda_model_free(cuda_model *g);

#ifdef __cplusplus
}
#endif
#endif
