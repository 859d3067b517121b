/*
 * wobble: how far do image embeddings move under everyday edits?
 *
 * Public C API. Conventions:
 *  - Every fallible function returns an int status (WOBBLE_OK == 0 on
 *    success, a negative WOBBLE_E* code otherwise). wobble_strerror() names a
 *    code; wobble_last_error(ctx) gives the full one-line message of the last
 *    failure on that context (it names the file and the problem).
 *  - Objects are opaque handles with create/free pairs; every *_free(NULL) is
 *    a no-op. Outputs are returned through pointer arguments and are only
 *    written on success.
 *  - Parameter structs are initialised with *_default_params().
 *  - The library never prints and never exits.
 *  - A wobble_ctx is not thread-safe: use one context per thread. Images are
 *    immutable once produced and can be shared between threads.
 *  - Calls without a context (accessors, wobble_stats_compute,
 *    wobble_fit_linear, wobble_detect_format, wobble_model_normalize,
 *    wobble_tuner_* views) set no error message: the status is their only
 *    report. A call given ctx == NULL records nothing either.
 *  - Lifetimes: a string or array handed out by an object (a dataset's item,
 *    class and kind names, wobble_model_info's strings, wobble_classifier_info's
 *    arrays, wobble_op_info from the registry, tuner views) belongs to that
 *    object and stays valid until it is freed (the registry's: forever);
 *    wobble_last_error's text until the next failing call on that context.
 *    The library keeps no pointer to a caller's input after a call returns,
 *    except: a classifier keeps nothing; the parameter structs of
 *    wobble_eval_run, wobble_downstream_run and wobble_finetune_run (and the
 *    operations, datasets and tokenizer they point to) are read throughout
 *    the run.
 *  - Threads: a context's thread count sizes the library's OpenMP regions
 *    and its OpenBLAS calls. OpenBLAS keeps one thread count for the whole
 *    process: every call that runs GEMMs sets it (openblas_set_num_threads)
 *    to its context's count, so contexts with different counts used at the
 *    same time from different threads share whichever was set last.
 */
#ifndef WOBBLE_H
#define WOBBLE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WOBBLE_VERSION_MAJOR 0
#define WOBBLE_VERSION_MINOR 1
#define WOBBLE_VERSION_PATCH 0
#define WOBBLE_VERSION_STRING "0.1.0"

/* ------------------------------------------------------------------ */
/* Status codes                                                        */
/* ------------------------------------------------------------------ */
enum wobble_status {
    WOBBLE_OK = 0,
    WOBBLE_EINVAL = -1,    /* invalid argument (NULL, bad size, ...) */
    WOBBLE_ENOMEM = -2,    /* out of memory */
    WOBBLE_EIO = -3,       /* file cannot be opened, read or written */
    WOBBLE_EFORMAT = -4,   /* unknown or unsupported file format */
    WOBBLE_ECORRUPT = -5,  /* corrupt or truncated data */
    WOBBLE_ELIMIT = -6,    /* exceeds a configured limit (e.g. pixel count) */
    WOBBLE_EDOMAIN = -7,   /* parameter outside its documented domain */
    WOBBLE_ENOTFOUND = -8, /* unknown name (operation, ...) */
    WOBBLE_EINTERNAL = -9  /* internal error (a bug: please report) */
};

/* Short description of a status code ("corrupt or truncated data"). */
const char *wobble_strerror(int status);

/* Library version string, e.g. "0.1.0". */
const char *wobble_version(void);

/* ------------------------------------------------------------------ */
/* Context: configuration, thread count and last-error message         */
/* ------------------------------------------------------------------ */
typedef struct wobble_ctx wobble_ctx;

typedef struct wobble_ctx_params {
    int threads;            /* worker threads; 0 = number of online CPUs */
    uint64_t max_pixels;    /* decoder refuses larger images; 0 = no limit */
    int sync_writes;        /* 1 (default): every atomic write (wobble_write_file_atomic,
                               wobble_image_write*) is flushed to disk (fsync) before its
                               rename; 0: left to the system, for many files written in a
                               row, with one wobble_sync_path when they are all written */
    int png_level;          /* PNG writer's compression: libdeflate level 0 (stored) .. 12
                               (smallest, slowest); default 6 (docs/imagenet-c.md) */
} wobble_ctx_params;

/* Defaults: threads = 0 (all cores), max_pixels = 89478485 (Pillow's
 * MAX_IMAGE_PIXELS). */
wobble_ctx_params wobble_ctx_default_params(void);

/* params may be NULL for defaults. */
int wobble_ctx_create(const wobble_ctx_params *params, wobble_ctx **out);
void wobble_ctx_free(wobble_ctx *ctx);
/* Message of the last failed call on ctx ("" if none). Never NULL. */
const char *wobble_last_error(const wobble_ctx *ctx);
/* Status code of the last failed call on ctx (WOBBLE_OK if none). */
int wobble_last_status(const wobble_ctx *ctx);
/* Effective number of worker threads (>= 1). */
int wobble_ctx_threads(const wobble_ctx *ctx);

/* ------------------------------------------------------------------ */
/* Images: 8-bit RGB, interleaved, rows packed (stride = 3 * width)     */
/* ------------------------------------------------------------------ */
typedef struct wobble_image wobble_image;

/* New image with every byte zero. */
int wobble_image_create(wobble_ctx *ctx, int width, int height, wobble_image **out);
/* New image holding a copy of `rgb` (height rows of 3*width bytes). */
int wobble_image_from_rgb(wobble_ctx *ctx, int width, int height, const uint8_t *rgb,
                          wobble_image **out);
int wobble_image_clone(wobble_ctx *ctx, const wobble_image *img, wobble_image **out);
void wobble_image_free(wobble_image *img);

int wobble_image_width(const wobble_image *img);
int wobble_image_height(const wobble_image *img);
const uint8_t *wobble_image_data(const wobble_image *img);
uint8_t *wobble_image_data_mut(wobble_image *img);
/* 64-bit FNV-1a hash of (width, height, pixels): a content id. */
uint64_t wobble_image_hash(const wobble_image *img);

/* File formats recognised by content (magic bytes), never by extension. */
typedef enum wobble_format {
    WOBBLE_FORMAT_UNKNOWN = 0,
    WOBBLE_FORMAT_PNG = 1,
    WOBBLE_FORMAT_JPEG = 2
} wobble_format;

wobble_format wobble_detect_format(const void *data, size_t size);

/* Decode a PNG or JPEG to RGB exactly as Pillow 9.4's
 * Image.open(f).convert("RGB") does (grayscale replicated, palette
 * expanded, alpha dropped without compositing, 16-bit samples reduced the
 * way Pillow reduces them, CMYK JPEGs with Adobe polarity). `name` is used in
 * error messages (may be NULL). */
int wobble_image_decode(wobble_ctx *ctx, const void *data, size_t size, const char *name,
                        wobble_image **out);
int wobble_image_read(wobble_ctx *ctx, const char *path, wobble_image **out);

/* Encode to a malloc'ed buffer (release with wobble_free). */
int wobble_image_encode_png(wobble_ctx *ctx, const wobble_image *img, uint8_t **buf,
                            size_t *size);
/* Baseline JPEG with the settings of Pillow 9.4's
 * img.save(f, format="JPEG", quality=quality): libjpeg defaults, 4:2:0 chroma
 * subsampling, quality scaling with force_baseline, islow DCT, no Huffman
 * optimisation. Decodes to the same pixels as Pillow's file. quality 1..100. */
int wobble_image_encode_jpeg(wobble_ctx *ctx, const wobble_image *img, int quality,
                             uint8_t **buf, size_t *size);
/* Write atomically (temporary file in the same folder, then rename). The
 * format follows the extension: .png, or .jpg/.jpeg (quality 95). */
int wobble_image_write(wobble_ctx *ctx, const wobble_image *img, const char *path);
int wobble_image_write_jpeg(wobble_ctx *ctx, const wobble_image *img, const char *path,
                            int quality);

/* Free memory returned by the library (encode buffers). */
void wobble_free(void *p);

/* Create a folder and its missing parents (mkdir -p). */
int wobble_mkdirs(wobble_ctx *ctx, const char *path);

/* Flush everything written to the file system that holds `path` (a file or
 * a folder) to disk (Linux syncfs): the one flush after writes made with
 * sync_writes = 0. */
int wobble_sync_path(wobble_ctx *ctx, const char *path);

/* Write `size` bytes to `path` atomically: `path.tmp.XXXXXX` then rename;
 * flushed to disk first unless the context was made with sync_writes = 0. */
int wobble_write_file_atomic(wobble_ctx *ctx, const char *path, const void *data,
                             size_t size);

/* ------------------------------------------------------------------ */
/* Resampling (Pillow's Image.resize semantics, 8-bit, antialiased)     */
/* ------------------------------------------------------------------ */
typedef enum wobble_filter {
    WOBBLE_FILTER_BOX = 0,
    WOBBLE_FILTER_BILINEAR = 1,
    WOBBLE_FILTER_HAMMING = 2,
    WOBBLE_FILTER_BICUBIC = 3,
    WOBBLE_FILTER_LANCZOS = 4
} wobble_filter;

/* Bit-exact with Pillow 9.4 Image.resize((w, h), filter) on RGB images. */
int wobble_image_resize(wobble_ctx *ctx, const wobble_image *img, int width, int height,
                        wobble_filter filter, wobble_image **out);

/* ------------------------------------------------------------------ */
/* Perturbations                                                       */
/* ------------------------------------------------------------------ */

/* Description of one operation in the registry. */
typedef struct wobble_op_info {
    const char *name;        /* "jpeg", "brightness", ... */
    const char *param;       /* what the level means: "quality", "factor", ... */
    const char *reference;   /* the implementation it matches bit for bit */
    const char *description; /* one line */
    double min, max;         /* domain bounds (max may be INFINITY) */
    int min_open, max_open;  /* 1 if the bound itself is excluded */
    int integer;             /* 1 if the level must be an integer */
    int has_identity;        /* 0 if no level leaves the image unchanged */
    double identity;         /* level that returns an exact copy */
    const double *grid;      /* default levels, mildest first */
    int grid_len;
    int suite;               /* 0: an editing op; ImageNet-C corruption (imagenet_c.*):
                                1 one of the 15 standard, 2 one of the 4 validation ones */
    const char *constants;   /* ImageNet-C: the constants per severity, one line; NULL otherwise */
} wobble_op_info;

int wobble_op_count(void);
/* i in [0, wobble_op_count()); NULL otherwise. */
const wobble_op_info *wobble_op_at(int i);
/* NULL if there is no operation of that name. */
const wobble_op_info *wobble_op_find(const char *name);

typedef struct wobble_perturb_params {
    uint64_t seed;     /* random operations (gaussian_noise, the random imagenet_c.* corruptions) */
    uint64_t image_id; /* random operations: with seed and level, fixes the noise */
    int exact_seed;    /* imagenet_c.*: 1 seeds NumPy's generators with `seed` itself, as
                          np.random.seed(seed) before imagecorruptions' corrupt() (seed must be
                          below 2^32); 0 (default) with a seed derived from (seed, image_id,
                          level), so every image and severity draws its own stream.
                          gaussian_noise ignores it. */
} wobble_perturb_params;

wobble_perturb_params wobble_perturb_default_params(void);

/* Check that `level` is in the domain of `op`; on failure the message names
 * the op, the value and the domain. */
int wobble_op_check_level(wobble_ctx *ctx, const wobble_op_info *op, double level);

/* The folder imagenet_c.frost reads its six photos from, or NULL when none
 * is found. Looked up on every call, in order: $WOBBLE_FROST_DIR; the
 * running executable's ../share/wobble/frost (a relocated install); the
 * install prefix's share/wobble/frost; the source tree's
 * data/imagenet-c/frost (binaries run from a build tree). The string is
 * valid until the calling thread's next call. */
const char *wobble_frost_dir(void);

/* out = P(img, level). params may be NULL for defaults. */
int wobble_perturb(wobble_ctx *ctx, const char *op, const wobble_image *img, double level,
                   const wobble_perturb_params *params, wobble_image **out);


/* ------------------------------------------------------------------ */
/* Image encoders (CLIP, DINOv2, ViT image towers)                      */
/* ------------------------------------------------------------------ */
typedef struct wobble_model wobble_model;

/* Arithmetic of the forward pass. BF16: every linear layer (patch
 * embedding, qkv, attention projection, MLP) takes bf16 weights (rounded
 * once at load) and bf16 inputs (rounded per call, round-to-nearest-even)
 * and accumulates in fp32; attention scores, softmax, LayerNorm, residuals,
 * the CLIP projection and the embedding stay fp32. Needs a CPU with
 * AVX512_BF16 (wobble_bf16_supported); fine-tuning runs in fp32 only. */
typedef enum { WOBBLE_PRECISION_FP32 = 0, WOBBLE_PRECISION_BF16 = 1 } wobble_precision;

/* 1 when this CPU runs the bf16 forward pass (AVX512F, AVX512BW, AVX512_BF16). */
int wobble_bf16_supported(void);
/* "fp32" / "bf16"; NULL for anything else. */
const char *wobble_precision_name(wobble_precision p);
/* Parse "fp32" / "bf16"; -1 when s is neither. */
int wobble_precision_parse(const char *s);

/* Where the image tower's forward pass runs. WOBBLE_DEVICE_CUDA needs a
 * wobble built with the CUDA toolkit (wobble_cuda_built) and an NVIDIA GPU:
 * the weights are uploaded at load, the GEMMs run in cuBLAS (fp32, TF32 when
 * asked, or bf16 with fp32 accumulation at precision bf16, whatever the
 * CPU), LayerNorm, attention, activations and residuals in wobble's kernels.
 * The CLIP text tower, per-layer outputs and fine-tuning stay on the CPU. */
typedef enum { WOBBLE_DEVICE_CPU = 0, WOBBLE_DEVICE_CUDA = 1 } wobble_device;

typedef struct wobble_model_params {
    int max_batch;              /* images per forward call the arena is sized for (default 16) */
    wobble_precision precision; /* default WOBBLE_PRECISION_FP32 */
    wobble_device device;       /* default WOBBLE_DEVICE_CPU */
    int device_index;           /* CUDA device ordinal (default 0) */
    int tf32;                   /* CUDA, fp32: let cuBLAS use TF32 tensor cores (default 0: exact fp32) */
} wobble_model_params;

/* 1 when this wobble was built with CUDA. */
int wobble_cuda_built(void);
/* CUDA devices usable now (0 without CUDA, without a GPU or driver). */
int wobble_cuda_device_count(void);

wobble_model_params wobble_model_default_params(void);

/* path: a Hugging Face style folder (config.json, preprocessor_config.json,
 * model.safetensors or model.safetensors.index.json) or a bare .safetensors
 * file (architecture and hyper-parameters inferred from tensor names and
 * shapes; presets of the official models fill in the rest). Tensor namings:
 * Hugging Face CLIPModel / CLIPVisionModelWithProjection, OpenAI / open_clip
 * (visual.*), Hugging Face Dinov2Model, facebookresearch / timm DINOv2,
 * Hugging Face ViTModel. F32, F16 and BF16 weights (computed in F32). */
int wobble_model_load(wobble_ctx *ctx, const char *path, const wobble_model_params *params, wobble_model **out);
void wobble_model_free(wobble_model *model);

typedef struct wobble_model_info {
    const char *arch;       /* "clip", "dinov2", "vit" */
    const char *naming;     /* "huggingface", "openai", "facebookresearch" */
    const char *activation; /* "gelu", "quick_gelu", "swiglu" */
    const char *preset;     /* e.g. "OpenAI CLIP ViT-B/32", or "custom" */
    const char *path;
    int width, depth, heads, mlp_hidden, patch, native_grid, registers, embed_dim;
    float layer_norm_eps;
    int layerscale, has_projection;
    float interp_offset;    /* DINOv2 position-embedding interpolation */
    int interp_antialias;
    /* preprocessing */
    int resize_short;       /* > 0: short side resized to this */
    int resize_h, resize_w; /* > 0: resized to exactly this */
    wobble_filter filter;
    int crop_h, crop_w;     /* 0: no centre crop */
    double rescale;
    float mean[3], std[3];
    uint64_t n_params, weight_bytes;
    uint64_t arena_bytes; /* activation memory currently reserved */
    const char *precision;  /* "fp32" or "bf16" */
    uint64_t bf16_bytes;    /* packed bf16 weights (0 in fp32) */
    const char *device;     /* "cpu" or "cuda:N" */
    uint64_t device_bytes;  /* GPU memory held (weights and activations; 0 on the CPU) */
    double device_seconds;  /* GPU time of this model's forward passes so far (0 on the CPU) */
    uint64_t f32_bytes;     /* the weights again in the AVX-512 fp32 kernel's layout (precision fp32 on
                             * AVX-512 CPUs; 0 elsewhere, in bf16 and once fine-tuning changed them) */
    /* CLIP text tower (has_text 0: none) */
    int has_text, text_width, text_depth, text_heads, text_context, text_vocab;
    double logit_scale; /* exp(logit_scale); 0 if absent */
} wobble_model_info;

int wobble_model_get_info(const wobble_model *model, wobble_model_info *info);
int wobble_model_embed_dim(const wobble_model *model);

/* The model's preprocessing up to the 8-bit stage: resize (Pillow filter,
 * torchvision/HF output size) and centre crop (torchvision rounding). */
int wobble_model_preprocess_u8(wobble_ctx *ctx, const wobble_model *model, const wobble_image *img,
                               wobble_image **out);
/* The float stage of the preprocessing, applied to the output of
 * wobble_model_preprocess_u8: 3 x H x W floats (CHW), x * rescale then
 * (x - mean) / std in float32. */
int wobble_model_normalize(const wobble_model *model, const wobble_image *u8, float *chw);
/* Full preprocessing: writes 3 x H x W floats (CHW, rescaled, normalised);
 * *h and *w receive the size. chw may be NULL to query the size. */
int wobble_model_preprocess(wobble_ctx *ctx, const wobble_model *model, const wobble_image *img, float *chw, int *h,
                            int *w);

typedef struct wobble_embed_params {
    int normalize; /* L2-normalise each embedding (default 0) */
} wobble_embed_params;

wobble_embed_params wobble_embed_default_params(void);

/* Number of patch tokens for an input of h x w pixels. */
int wobble_model_num_patches(const wobble_model *model, int h, int w);

/* Forward pass on n preprocessed images (n x 3 x h x w floats). emb receives
 * n x embed_dim floats: CLIP the projected CLS token after ln_post, DINOv2
 * and ViT the CLS token after the final norm. patch_tokens (may be NULL)
 * receives n x num_patches x width floats: the patch tokens after the final
 * norm. n may exceed max_batch (processed in chunks). Not thread-safe: the
 * model owns its activation arena. */
int wobble_model_forward(wobble_ctx *ctx, wobble_model *model, const float *pixels, int n, int h, int w,
                         const wobble_embed_params *params, float *emb, float *patch_tokens);

/* Preprocess and embed n images (any sizes). */
int wobble_model_embed(wobble_ctx *ctx, wobble_model *model, const wobble_image *const *imgs, int n,
                       const wobble_embed_params *params, float *emb);

/* ------------------------------------------------------------------ */
/* CLIP text tower and tokenizer (docs/models.md, "Text tower")         */
/* ------------------------------------------------------------------ */
/* A whole CLIP checkpoint (OpenAI / open_clip names, or a Hugging Face
 * CLIPModel) also loads its text tower and logit_scale. */
int wobble_model_has_text(const wobble_model *model);
/* Tokens per text the text tower takes (77 for the official models); 0 without one. */
int wobble_model_context_length(const wobble_model *model);
/* exp(logit_scale) of a whole CLIP checkpoint (100 for the official ones); 0 if absent. */
double wobble_model_logit_scale(const wobble_model *model);
/* Text embeddings of n token sequences (n x len int32 ids, as from
 * wobble_tokenize): the features of the first highest id (<|endoftext|>)
 * after the final norm, times the text projection; emb gets n x embed_dim. */
int wobble_model_encode_text(wobble_ctx *ctx, wobble_model *model, const int32_t *ids, int n, int len,
                             const wobble_embed_params *params, float *emb);

typedef struct wobble_tokenizer wobble_tokenizer;
/* path: a folder holding vocab.json + merges.txt or tokenizer.json, or a
 * tokenizer.json file (Hugging Face formats of the CLIP BPE list). */
int wobble_tokenizer_load(wobble_ctx *ctx, const char *path, wobble_tokenizer **out);
void wobble_tokenizer_free(wobble_tokenizer *tok);
int wobble_tokenizer_vocab_size(const wobble_tokenizer *tok);
/* clip.tokenize for one UTF-8 text: <|startoftext|>, the BPE ids,
 * <|endoftext|>, zeros up to context_len; a longer text is cut to
 * context_len ids with <|endoftext|> last (*truncated = 1; may be NULL). */
int wobble_tokenize(wobble_ctx *ctx, const wobble_tokenizer *tok, const char *text, int context_len, int32_t *ids,
                    int *truncated);

/* ------------------------------------------------------------------ */
/* Classifiers on embeddings (docs/downstream.md)                       */
/* ------------------------------------------------------------------ */
typedef struct wobble_probe_params {
    const double *l2_grid; /* L2 strengths lambda to choose from (default 1e-1 ... 1e-6, half decades) */
    int n_l2;              /* 1: use l2_grid[0] without a held-out split */
    double holdout;        /* fraction of each class held out for the choice (default 0.2) */
    int max_iter;          /* L-BFGS iterations per fit (default 1000) */
    double tol;            /* gradient max-norm at convergence (default 1e-8) */
    uint64_t seed;         /* held-out split */
} wobble_probe_params;

wobble_probe_params wobble_probe_default_params(void);

typedef struct wobble_knn_params {
    int k;              /* neighbours (default 20) */
    double temperature; /* vote weight exp(cos / T) (default 0.07) */
} wobble_knn_params;

wobble_knn_params wobble_knn_default_params(void);

typedef struct wobble_classifier wobble_classifier;

/* Linear probe: multinomial logistic regression on standardised features,
 * (1/n) sum CE + (lambda/2) ||W||^2, L-BFGS; lambda chosen on a stratified
 * held-out split, then refitted on all of X. X: n x d, y: n labels in
 * [0, n_classes); every class needs an example. */
int wobble_classifier_linear(wobble_ctx *ctx, const float *X, const int *y, int n, int d, int n_classes,
                             const wobble_probe_params *params, wobble_classifier **out);
/* kNN: cosine similarity to the n training embeddings, the k nearest vote
 * with weight exp(cos / T) (DINOv2's evaluation). */
int wobble_classifier_knn(wobble_ctx *ctx, const float *X, const int *y, int n, int d, int n_classes,
                          const wobble_knn_params *params, wobble_classifier **out);
/* CLIP zero-shot: for each class, every template with "{}" replaced by the
 * class name (underscores read as spaces) is encoded, L2-normalised, the
 * mean taken and normalised again; scores = logit_scale * cos. */
int wobble_classifier_zeroshot(wobble_ctx *ctx, wobble_model *model, const wobble_tokenizer *tok,
                               const char *const *class_names, int n_classes, const char *const *templates,
                               int n_templates, wobble_classifier **out);
void wobble_classifier_free(wobble_classifier *clf);

/* scores: n x n_classes; linear: probabilities, kNN: summed vote weights,
 * zero-shot: logits. Predictions are the highest score (ties: lower class). */
int wobble_classifier_scores(wobble_ctx *ctx, const wobble_classifier *clf, const float *X, int n, float *scores);

typedef struct wobble_classifier_info {
    const char *kind; /* "linear", "knn", "zeroshot" */
    int n_classes, dim;
    /* linear */
    double l2;
    int iterations, converged;
    double loss, grad_norm;
    const double *l2_grid, *holdout_accuracy; /* n_l2 each (accuracy 0 without a split) */
    int n_l2, holdout_n;
    /* kNN */
    int k, n_train;
    double temperature;
    /* zero-shot */
    int n_templates;
    double logit_scale;
} wobble_classifier_info;

int wobble_classifier_get_info(const wobble_classifier *clf, wobble_classifier_info *info);

/* The 80 ImageNet prompt templates of the CLIP paper (openai/CLIP,
 * notebooks/Prompt_Engineering_for_ImageNet.ipynb). */
const char *const *wobble_imagenet_templates(int *n);

/* ------------------------------------------------------------------ */
/* NumPy .npy files                                                    */
/* ------------------------------------------------------------------ */
typedef struct wobble_array {
    char dtype;        /* 'f' float32, 'd' float64, 'q' int64, 'i' int32, 'B' uint8 */
    int ndim;
    int64_t shape[8];
    int64_t numel;
    void *data;
} wobble_array;

/* Read a little-endian, C-order .npy file. Release with wobble_array_release. */
int wobble_npy_read(wobble_ctx *ctx, const char *path, wobble_array *out);
void wobble_array_release(wobble_array *a);
/* Write float32 data atomically. */
int wobble_npy_write_f32(wobble_ctx *ctx, const char *path, const float *data, int ndim, const int64_t *shape);
int wobble_npy_write_i32(wobble_ctx *ctx, const char *path, const int32_t *data, int ndim, const int64_t *shape);

/* ------------------------------------------------------------------ */
/* Robustness metrics (docs/metrics.md)                                 */
/* ------------------------------------------------------------------ */
typedef struct wobble_meb_info {
    int iterations;   /* Frank-Wolfe iterations */
    int polish_steps; /* active-set steps */
    int support;      /* points on the sphere with positive weight */
} wobble_meb_info;

/* Exact minimum enclosing ball of n points (n x d doubles, row-major):
 * radius, and optionally the centre (d doubles) and solver details. */
int wobble_meb_f64(wobble_ctx *ctx, const double *points, int n, int d, double *radius, double *center,
                   wobble_meb_info *info);

typedef struct wobble_robustness {
    double cos_max;    /* R_cos = max_k (1 - cos(f(x), f(P(x,k)))) / 2 */
    double euc_max;    /* R_euc = max_k ||e(x) - e(P(x,k))|| / 2 */
    double div_radius; /* R_div = MEB radius of {e(x)} and {e(P(x,k))} */
    double cos_mean;   /* mean over levels of the per-level cosine value */
    double euc_mean;   /* mean over levels of the per-level Euclidean value */
} wobble_robustness;

/* clean: d floats; perturbed: K x d floats (any norm, normalised here).
 * level_cos and level_euc (K doubles each, may be NULL) receive the
 * per-level values. A zero or non-finite embedding is an error. */
int wobble_robustness_compute(wobble_ctx *ctx, const float *clean, const float *perturbed, int K, int d,
                              double *level_cos, double *level_euc, wobble_robustness *out);

typedef struct wobble_stats {
    int n;
    double mean, median, p90, p99, min, max; /* percentiles interpolate linearly, as NumPy */
    double p10;
} wobble_stats;

int wobble_stats_compute(const double *values, int n, wobble_stats *out);

typedef struct wobble_fit {
    int n;
    double slope, intercept; /* least squares y = slope * x + intercept */
    double r2;               /* coefficient of determination of that line */
    double pearson, spearman; /* Spearman: average ranks for ties */
    double mean_x, mean_y;
} wobble_fit;

/* n >= 2 finite pairs. Values undefined for a constant x or y are NaN. */
int wobble_fit_linear(const double *x, const double *y, int n, wobble_fit *out);

/* ------------------------------------------------------------------ */
/* Datasets                                                            */
/* ------------------------------------------------------------------ */
typedef struct wobble_dataset wobble_dataset;

typedef struct wobble_dataset_params {
    const char *labels_path; /* IDX label file (default: derived from the image file name) */
    int limit;               /* keep the first `limit` items (0 = all) */
    const char *split;       /* embedding folders: "train" keeps the rows marked train, "test" the
                                others; NULL (default) every row. Ignored by image datasets. */
} wobble_dataset_params;

wobble_dataset_params wobble_dataset_default_params(void);

/* path: a folder of images (searched recursively; unlabelled), an
 * ImageFolder tree (only subfolders at the top: class = subfolder, in sorted
 * order), a single image, a CIFAR-10 binary file, or an IDX image file
 * (.gz allowed) with its label file. Items are in sorted order.
 * A folder holding clean.npy and index.jsonl is an embedding folder
 * (docs/embeddings.md): embeddings computed elsewhere, items in index.jsonl
 * order, no pixels (wobble_dataset_load fails); wobble_eval_run takes it
 * with a NULL model. */
int wobble_dataset_open(wobble_ctx *ctx, const char *path, const wobble_dataset_params *params,
                        wobble_dataset **out);
void wobble_dataset_free(wobble_dataset *ds);
int wobble_dataset_size(const wobble_dataset *ds);
const char *wobble_dataset_kind(const wobble_dataset *ds); /* "folder", "imagefolder", "cifar10", "idx", "embeddings" */
int wobble_dataset_num_classes(const wobble_dataset *ds);  /* 0 when unlabelled */
const char *wobble_dataset_class_name(const wobble_dataset *ds, int k);
const char *wobble_dataset_item(const wobble_dataset *ds, int i); /* file path, or FILE#INDEX */
int wobble_dataset_label(const wobble_dataset *ds, int i);        /* -1 when unlabelled */
int wobble_dataset_load(wobble_ctx *ctx, const wobble_dataset *ds, int i, wobble_image **out);
/* Embedding folders: the embedding width (0 for image datasets), the
 * number of perturbed columns, and what column k is (registry name, level;
 * the name lives as long as the dataset). No error message is set. */
int wobble_dataset_embed_dim(const wobble_dataset *ds);
int wobble_dataset_num_columns(const wobble_dataset *ds);
int wobble_dataset_column(const wobble_dataset *ds, int k, const char **op, double *level);

/* ------------------------------------------------------------------ */
/* Evaluation pipeline (wobble eval)                                   */
/* ------------------------------------------------------------------ */
typedef struct wobble_eval_op {
    const char *name;
    const double *levels;
    int n_levels;
} wobble_eval_op;

typedef struct wobble_eval_params {
    const wobble_eval_op *ops;
    int n_ops;
    uint64_t seed;          /* random operations; with the image content and level it fixes the noise */
    int batch;              /* images per forward pass at most (default 64) */
    const char *model_path; /* recorded in the outputs */
    const char *data_path;  /* recorded in the outputs and the configuration lock */
    /* progress and per-image problems (called from the calling thread; may be NULL) */
    void (*progress)(void *user, long done, long total, const char *item);
    void (*warn)(void *user, const char *message);
    /* every embedding of each image once it is complete (computed or cached):
     * op = -1 (level 0) for the clean image, else the index into ops and
     * level the index into its levels (may be NULL) */
    void (*embedding)(void *user, int image, int op, int level, const float *emb, int dim);
    void *user;
    /* shard_count > 1: evaluate only the images i with i % shard_count ==
     * shard_index (wobble eval --shard I/N; wobble_eval_merge combines the
     * shards' folders into the bytes of one run). Default 0: every image. */
    int shard_index, shard_count;
    /* 1: compute and cache the embeddings only, write no result file (a
     * rank filling the shared cache before one process uses it all). */
    int cache_only;
} wobble_eval_params;

wobble_eval_params wobble_eval_default_params(void);

typedef struct wobble_eval_summary {
    int images, evaluated, failed;
    int embedded;   /* embeddings computed in this run */
    int from_cache; /* images fully served by the cache */
    /* wall-clock seconds by stage */
    double t_decode, t_perturb, t_preprocess, t_forward, t_metrics, t_io, t_total;
    double t_gpu; /* with the model on a GPU: the GPU's busy time in the forward passes (0 on the CPU) */
} wobble_eval_summary;

/* Check an operation list: known names, none twice, at least one level
 * each, every level in its domain. wobble_eval_run checks it too. */
int wobble_eval_check_ops(wobble_ctx *ctx, const wobble_eval_op *ops, int n_ops);

/* Run the evaluation into out_dir (created if needed): config.json,
 * cache/, per_image.jsonl, summary.json, summary.csv (with n_ops = 0: the
 * clean embeddings only, for a training set). Unreadable images are
 * reported through warn, skipped and counted. Resumable: a re-run reuses the
 * cache and writes the same result files. A folder holding results for
 * another model, preprocessing, dataset, seed or operation set is refused.
 * model NULL with an embedding folder as ds (docs/embeddings.md): the
 * embeddings come from its arrays (every (op, level) needs a column, or is
 * an identity level); no cache/ is written. */
int wobble_eval_run(wobble_ctx *ctx, wobble_model *model, const wobble_dataset *ds, const wobble_eval_params *params,
                    const char *out_dir, wobble_eval_summary *summary);

/* The folders of a sharded eval (shard_count N; every shard_index 0..N-1
 * exactly once) combined into out_dir: config.json, per_image.jsonl,
 * summary.json and summary.csv, the same bytes as one wobble_eval_run over
 * every image. Shards of other models, preprocessing, data, seeds, operation
 * sets or precisions, and missing or repeated shards, are refused. No model
 * or image is needed: the shards' records hold every number. */
int wobble_eval_merge(wobble_ctx *ctx, const char *const *shard_dirs, int n, const char *out_dir,
                      wobble_eval_summary *summary);

/* ------------------------------------------------------------------ */
/* Downstream cost (wobble eval --task; docs/downstream.md)             */
/* ------------------------------------------------------------------ */
typedef enum { WOBBLE_TASK_LINEAR = 0, WOBBLE_TASK_KNN = 1, WOBBLE_TASK_ZEROSHOT = 2 } wobble_task;

typedef struct wobble_downstream_params {
    wobble_task task;
    const wobble_dataset *train; /* linear, knn: labelled training set (clean embeddings) */
    const char *train_path;      /* recorded in the outputs */
    wobble_probe_params probe;
    wobble_knn_params knn;
    const wobble_tokenizer *tokenizer;  /* zeroshot */
    const char *const *class_names;     /* zeroshot: one per test class (default: the test set's names) */
    int n_class_names;
    const char *const *templates;       /* zeroshot: default the 80 ImageNet templates */
    int n_templates;
    int bins; /* per-image robustness bins for the fit (default 10) */
} wobble_downstream_params;

wobble_downstream_params wobble_downstream_default_params(void);

typedef struct wobble_downstream_summary {
    wobble_eval_summary test, train;
    int n_classes, test_images, train_images;
    double clean_top1, clean_top5; /* top5 is NaN with 5 classes or fewer */
    double t_train_classifier, t_classify;
} wobble_downstream_summary;

/* The robustness evaluation of `test` into out_dir (as wobble_eval_run), the
 * training set's clean embeddings into out_dir/train (linear, knn), the
 * classifier, then accuracy clean and per (op, level), per-class recall,
 * per-image correctness joined to per-image robustness, and the fits that
 * predict accuracy from robustness: downstream.json, downstream.csv,
 * downstream_per_image.jsonl. Test classes are matched to training classes
 * by name; a test class absent from the training set, or a training class
 * without examples, is an error. model NULL: test and params->train are
 * embedding folders (linear and knn only). */
int wobble_downstream_run(wobble_ctx *ctx, wobble_model *model, const wobble_dataset *test,
                          const wobble_eval_params *eval, const wobble_downstream_params *params, const char *out_dir,
                          wobble_downstream_summary *summary);

/* ------------------------------------------------------------------ */
/* Robust fine-tuning (wobble finetune; docs/finetuning.md)             */
/* ------------------------------------------------------------------ */
typedef enum { WOBBLE_SCOPE_ALL = 0, WOBBLE_SCOPE_LAST = 1, WOBBLE_SCOPE_NORMS = 2 } wobble_scope;
typedef enum { WOBBLE_OBJECTIVE_COS = 0, WOBBLE_OBJECTIVE_L2 = 1 } wobble_objective;

typedef struct wobble_tune_params {
    wobble_scope scope;   /* all parameters, the last `last_blocks` blocks (+ final norm, head), or norms and biases */
    int last_blocks;
    int checkpoint;       /* recompute each block in the backward pass instead of keeping its activations */
    wobble_objective objective;
    double lambda;        /* weight of the utility term (default 1) */
    double beta1, beta2, eps, weight_decay; /* AdamW (defaults 0.9, 0.999, 1e-8, 0) */
} wobble_tune_params;

wobble_tune_params wobble_tune_default_params(void);
/* Check the parameters (model may be NULL: then last_blocks is not bounded). */
int wobble_tune_check_params(wobble_ctx *ctx, const wobble_model *model, const wobble_tune_params *params);

typedef struct wobble_loss {
    double total, rob, util; /* total = rob + lambda * util */
} wobble_loss;

/* A model being fine-tuned. Creating one copies the trainable image-tower
 * parameters into memory the model then reads: the model's forward pass
 * (wobble_model_forward, wobble_model_embed) sees every update. */
typedef struct wobble_tuner wobble_tuner;
int wobble_tuner_create(wobble_ctx *ctx, wobble_model *model, const wobble_tune_params *params, wobble_tuner **out);
void wobble_tuner_free(wobble_tuner *tuner);
size_t wobble_tuner_num_trainable(const wobble_tuner *tuner);
void wobble_tuner_zero_grad(wobble_tuner *tuner);
/* Loss of one batch and its gradient, accumulated into the tuner's
 * gradients. x, xp: n preprocessed clean and perturbed images (n x 3 x h x
 * w); targets: the frozen model's embeddings of x (n x embed_dim). dx, dxp
 * (may be NULL) receive dL/dx and dL/dxp. */
int wobble_tuner_loss_grad(wobble_ctx *ctx, wobble_tuner *tuner, const float *x, const float *xp, const float *targets,
                           int n, int h, int w, const wobble_tune_params *params, wobble_loss *out, float *dx,
                           float *dxp);
double wobble_tuner_grad_norm(const wobble_tuner *tuner);
void wobble_tuner_scale_grad(wobble_tuner *tuner, double s);
/* One AdamW step (PyTorch semantics; weight decay on weight matrices only). */
void wobble_tuner_adamw_step(wobble_tuner *tuner, double lr, const wobble_tune_params *params);
int64_t wobble_tuner_step(const wobble_tuner *tuner);
/* Optimiser state (first and second moments, wobble_tuner_num_trainable
 * floats each, and the step count), for saving and restoring. */
int wobble_tuner_state(wobble_tuner *tuner, float **m1, float **m2, int64_t **step);
/* The accumulated gradient, flat over the trainable parameters
 * (wobble_tuner_num_trainable floats; data-parallel reduction). */
float *wobble_tuner_grad(wobble_tuner *tuner);

typedef struct wobble_param_view {
    const char *name; /* "blocks.3.fc1.w", "pos", ... */
    size_t n;
    int trainable;
    float *data;      /* the values the model reads */
    float *grad;      /* NULL when not trainable */
} wobble_param_view;
int wobble_tuner_count(const wobble_tuner *tuner);
int wobble_tuner_param(const wobble_tuner *tuner, int i, wobble_param_view *view);
/* The gradient of one checkpoint tensor, by its name in the file and in the
 * file's layout (n values). */
int wobble_tuner_tensor_grad(wobble_ctx *ctx, const wobble_tuner *tuner, const char *name, float *out, size_t n);
/* The model's weights as one safetensors file with the checkpoint's tensor
 * names, shapes and dtypes (atomic). */
int wobble_tuner_save_weights(wobble_ctx *ctx, const wobble_tuner *tuner, const char *path);

/* The whole fine-tuning run (wobble finetune). */
typedef struct wobble_finetune_op {
    const char *name;
    const double *levels; /* levels to draw from (uniformly), or */
    int n_levels;
    int range;            /* 1: a level drawn uniformly from [lo, hi] (integers for integer ops) */
    double lo, hi;
} wobble_finetune_op;

typedef struct wobble_finetune_status {
    const char *phase;  /* "targets" (frozen embeddings), "train" */
    int64_t step, steps;
    wobble_loss loss;
    double grad_norm, lr;
    double seconds;          /* training time in this process */
    int64_t steps_done_here; /* steps run in this process (for the ETA) */
} wobble_finetune_status;

typedef struct wobble_finetune_params {
    wobble_tune_params tune;
    const wobble_finetune_op *ops; /* each image of a batch gets one op (uniformly) and a level */
    int n_ops;
    int steps, batch;    /* default 150, 16 */
    int views;           /* augmentation: views per training image, each with its frozen target cached (default 1:
                          * the image as it is; K > 1 adds K - 1 seeded random crops, mirrored half the time) */
    double lr;           /* peak learning rate (default 1e-4) */
    int warmup;          /* linear warm-up steps; -1: 10% of the steps (default) */
    double clip;         /* global gradient-norm clip (default 1; 0: off) */
    int val;             /* images held out for validation (default 0: none) */
    int val_every;       /* validate every K steps (default 50) and at the end */
    int save_every;      /* training state every K steps (default 50) and at the end */
    uint64_t seed;
    int resume;          /* continue the run in out_dir */
    const char *model_path, *data_path; /* recorded; the model folder's config files are copied */
    const char *labels_path;             /* recorded (IDX label file, or NULL) */
    int data_limit;                      /* recorded (the dataset's --limit, 0: none) */
    void (*progress)(void *user, const wobble_finetune_status *status);
    void *user;
    /* Data parallelism (wobble finetune under mpirun; docs/scaling.md): with
     * ranks > 1 this process takes the items i of each batch with i % ranks
     * == rank, and allreduce(comm, data, n) sums n doubles in place over all
     * processes, giving every process the same result (MPI_Allreduce). The
     * summed gradient is the whole batch's, every process takes the same
     * AdamW step, and only rank 0 writes files and validates. 0/1: off. */
    int rank, ranks;
    int (*allreduce)(void *comm, double *data, size_t n);
    void *comm;
} wobble_finetune_params;

wobble_finetune_params wobble_finetune_default_params(void);
int wobble_finetune_check_params(wobble_ctx *ctx, const wobble_model *model, const wobble_finetune_params *params);

typedef struct wobble_finetune_summary {
    int steps, start_step, train_images, val_images;
    size_t trainable;
    wobble_loss loss; /* of the last step */
    double seconds;   /* training time in this process */
    double seconds_total, cpu_seconds; /* the whole call (targets, validation, saving): wall clock, and the
                                        * process's CPU time over all threads */
    double val_cos_before, val_cos_after, val_rdiv_before, val_rdiv_after; /* 0 without --val */
} wobble_finetune_summary;

/* Fine-tune `model` (in place) on `ds` into out_dir: model.safetensors and
 * the model folder's other files, finetune.json, train_log.jsonl, val.jsonl,
 * state/ (docs/finetuning.md). */
int wobble_finetune_run(wobble_ctx *ctx, wobble_model *model, const wobble_dataset *ds,
                        const wobble_finetune_params *params, const char *out_dir, wobble_finetune_summary *summary);

/* ------------------------------------------------------------------ */
/* Depth: a linear depth probe on frozen patch tokens (docs/depth.md)  */
/* ------------------------------------------------------------------ */
typedef struct wobble_depth_params {
    double d_min, d_max;     /* metres: the bins' range and the valid ground truth (default 0.001, 10) */
    int bins;                /* bins uniform over [d_min, d_max] (default 256) */
    double depth_scale;      /* depth PNG units per metre (default 1000: NYU, ICL-NUIM; 5000 TUM; 256 KITTI) */
    int steps, batch;        /* AdamW steps on the cached features, images per step (default 1000, 8) */
    double lr, weight_decay; /* peak learning rate (cosine to 0) and decoupled weight decay (1e-2, 1e-4) */
    double grad_loss_weight; /* loss = SigLoss + this x gradient loss (default 0.5) */
    int eigen_crop;          /* metrics inside Eigen's crop on 480 x 640 frames (default 0) */
    uint64_t seed;           /* the head's initialisation and the batches */
    int layers;              /* 1: the last block's tokens (DINOv2's "lin1", default); 4: four blocks evenly
                              * spaced, depth/4 - 1 ... depth - 1 ("lin4"), concatenated */
} wobble_depth_params;

wobble_depth_params wobble_depth_default_params(void);

/* A 16-bit grayscale PNG depth map in metres (value / depth_scale; 0 stays
 * 0 = invalid): w x h floats, release with wobble_free. Any other PNG is an
 * error naming the file. */
int wobble_depth_read_png(wobble_ctx *ctx, const char *path, double depth_scale, int *w, int *h, float **metres);

typedef struct wobble_depth_metrics {
    double abs_rel, rmse, log10, silog; /* silog: 100 sqrt(mean(e^2) - mean(e)^2), e = log pred - log gt */
    double d1, d2, d3;                   /* fraction with max(gt/pred, pred/gt) < 1.25, 1.25^2, 1.25^3 */
    long valid;                          /* pixels with d_min < gt <= d_max (inside the crop) */
} wobble_depth_metrics;

/* Per-image metrics of pred against gt (W x H each). */
int wobble_depth_metrics_compute(wobble_ctx *ctx, const float *pred, const float *gt, int W, int H,
                                 const wobble_depth_params *params, wobble_depth_metrics *out);

/* The head: upsampling x4, a 1x1 layer from `channels` features to `bins`
 * logits, w = relu(logit) + 0.1 normalised, depth = sum w_k c_k. */
typedef struct wobble_depth_head wobble_depth_head;
int wobble_depth_head_create(wobble_ctx *ctx, int channels, const wobble_depth_params *params,
                             wobble_depth_head **out);
void wobble_depth_head_free(wobble_depth_head *head);
int wobble_depth_head_channels(const wobble_depth_head *head);
/* The parameters, channels x bins weights then bins biases (writable). */
float *wobble_depth_head_weights(wobble_depth_head *head);
/* Depth (W x H, clamped to [d_min, d_max]) from one image's features
 * (gh x gw tokens x channels). */
int wobble_depth_head_predict(wobble_ctx *ctx, const wobble_depth_head *head, const float *feat, int gh, int gw,
                              int W, int H, float *depth);

typedef struct wobble_depth_sample {
    const float *feat; /* gh x gw x channels */
    int gh, gw;
    const float *gt;   /* w x h metres (0: invalid) */
    int w, h;
} wobble_depth_sample;

/* SigLoss over the valid pixels of the n samples together plus
 * grad_weight x the mean of their gradient losses; grad (may be NULL)
 * receives d loss / d parameters (the layout of wobble_depth_head_weights). */
int wobble_depth_head_loss(wobble_ctx *ctx, const wobble_depth_head *head, const wobble_depth_sample *samples, int n,
                           double grad_weight, double *loss, float *grad);
/* AdamW for params->steps steps on batches drawn from the samples (seeded
 * epochs); loss_log (may be NULL) receives the loss every log_every steps. */
int wobble_depth_head_train(wobble_ctx *ctx, wobble_depth_head *head, const wobble_depth_sample *samples, int n,
                            const wobble_depth_params *params, double *loss_log, int log_every);

/* Pairs of an image and its depth map: a folder with image/ and depth/
 * (matched by file stem: image/NAME.jpg or .png with depth/NAME.png), or a
 * list file of "IMAGE DEPTH" lines (relative to its folder). Sorted by
 * name; frames first .. first + count - 1 are kept (count 0: to the end).
 * An image without its depth map is an error naming the missing file. */
typedef struct wobble_depth_set wobble_depth_set;
int wobble_depth_set_open(wobble_ctx *ctx, const char *path, int first, int count, wobble_depth_set **out);
void wobble_depth_set_free(wobble_depth_set *set);
int wobble_depth_set_size(const wobble_depth_set *set);
const char *wobble_depth_set_image(const wobble_depth_set *set, int i);
const char *wobble_depth_set_depth(const wobble_depth_set *set, int i);

typedef struct wobble_depth_summary {
    int train_images, test_images;
    double clean_abs_rel, clean_rmse, clean_d1;
    size_t feature_bytes;                  /* the cached training features and depth maps */
    double t_features, t_train, t_test;    /* seconds */
    int resumed_head, resumed_test;        /* the head, and test images, read from OUT/depth-state */
} wobble_depth_summary;

/* The probe trained on `train`'s clean images, then `test` clean and under
 * every operation of eval->ops at its levels (eval->seed seeds the random
 * ones, as wobble eval does): per-image metrics, R_cos / R_euc / R_div of
 * the embeddings of the same forward passes, means, and fits of the error
 * against robustness, into out_dir: depth.json, depth.csv,
 * depth_per_image.jsonl (together, or none). eval->progress reports the
 * training features, then the test images. Resumable: the trained head and
 * each test image's results are kept in out_dir/depth-state and reused by
 * a rerun of the same setting (a folder holding another setting's run is
 * refused), which writes the same result files. */
int wobble_depth_run(wobble_ctx *ctx, wobble_model *model, const wobble_depth_set *train, const wobble_depth_set *test,
                     const wobble_eval_params *eval, const wobble_depth_params *params, const char *out_dir,
                     wobble_depth_summary *summary);

/* ------------------------------------------------------------------ */
/* HTML report (wobble report; docs/report.md)                         */
/* ------------------------------------------------------------------ */
typedef struct wobble_report_params {
    int worst;         /* worst images shown per op and run, clean beside perturbed (default 3; 0: none) */
    int thumb_size;    /* their longer side in pixels (default 128) */
    int thumb_quality; /* their JPEG quality (default 75) */
    const char *title; /* NULL: "wobble report" */
    /* problems that do not stop the report (an image no longer where the
     * run found it, or changed since): called once each (may be NULL) */
    void (*warn)(void *user, const char *message);
    void *user;
} wobble_report_params;

wobble_report_params wobble_report_default_params(void);

/* One self-contained HTML file (inline CSS and SVG, a small inline script,
 * thumbnails as data URIs; no network) from the output folders of wobble
 * eval (with or without --task) and wobble finetune: runs are overlaid in
 * every plot and get a column each in the tables. Every number shown is
 * read from the runs' JSON files. A folder without summary.json or
 * finetune.json, unparsable JSON, or a run written by another wobble
 * version is an error naming the file. Written atomically. */
int wobble_report_write(wobble_ctx *ctx, const char *const *run_dirs, int n_runs,
                        const wobble_report_params *params, const char *out_path);

#ifdef __cplusplus
}
#endif
#endif /* WOBBLE_H */
