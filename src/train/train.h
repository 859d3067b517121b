/* Fine-tuning internals: trainable parameters, the backward pass, AdamW. */
#ifndef WOBBLE_TRAIN_H
#define WOBBLE_TRAIN_H
#include "../model/model.h"

/* Gradients of one block, in the model's layout (NULL: not needed). For
 * separate q/k/v checkpoints qkv_w is still one [3D, D] buffer (q rows,
 * then k, then v). */
typedef struct {
    float *ln1_g, *ln1_b, *qkv_w, *qkv_b, *proj_w, *proj_b, *ln2_g, *ln2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b, *ls1, *ls2;
} gblock_t;

typedef struct {
    float *patch_w, *patch_b, *cls, *pos, *reg, *pre_g, *pre_b, *fin_g, *fin_b, *head_w;
    gblock_t *blk;
    int lowest; /* backward stops below this block (no gradient needed further down) */
    int embed;  /* the patch embedding, tokens or ln_pre need gradients (lowest == 0) */
} grads_t;

/* Backward scratch, grown as needed. */
typedef struct {
    float *buf;
    size_t cap;
    float *dpatch; /* [n * np, 3 P P], only for input gradients */
    size_t cap_dpatch;
} bwd_ws;

/* Accumulate (+=) into g the gradient of a loss whose gradient with respect
 * to the recorded pass's embeddings is demb ([n, E]). dpixels (may be NULL)
 * receives the gradient with respect to the input pixels ([n, 3, H, W],
 * overwritten; needs lowest == 0). */
int train_backward(wobble_ctx *ctx, wobble_model *m, fwd_tape *t, const float *demb, const grads_t *g, bwd_ws *ws,
                   float *dpixels);
void train_bwd_ws_free(bwd_ws *ws);

/* Kinds of parameter, for scopes and weight decay. */
enum { PK_MATRIX = 0, PK_BIAS = 1, PK_NORM = 2, PK_TOKEN = 3, PK_SCALE = 4 };

typedef struct {
    char what[64];       /* "blocks.3.fc1.w", for messages */
    const float **slot;  /* model field that points to the values */
    float *data;         /* mutable copy the model now reads (trainable only) */
    float *grad;         /* gradient (trainable only) */
    size_t n;
    int kind, block, trainable;
} tparam;
#endif
