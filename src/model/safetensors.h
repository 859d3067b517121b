/* safetensors reader: mmap, strict validation, sharded checkpoints. */
#ifndef WOBBLE_SAFETENSORS_H
#define WOBBLE_SAFETENSORS_H
#include "../core/internal.h"

typedef enum st_dtype { ST_F32 = 0, ST_F16 = 1, ST_BF16 = 2, ST_OTHER = 3 } st_dtype;

typedef struct st_tensor {
    char *name;
    st_dtype dtype;
    char dtype_name[16];
    int ndim;
    int64_t shape[8];
    int64_t numel;
    size_t nbytes;
    const uint8_t *data; /* inside the mapping */
    int shard;
} st_tensor;

typedef struct st_file st_file;

/* path: a .safetensors file or a model.safetensors.index.json. */
int st_open(wobble_ctx *ctx, const char *path, st_file **out);
/* A single safetensors file already in memory (name for messages); the
 * bytes must outlive the handle. */
int st_open_memory(wobble_ctx *ctx, const char *name, const uint8_t *data, size_t size, st_file **out);
void st_close(st_file *st);
int st_count(const st_file *st);
const st_tensor *st_at(const st_file *st, int i);
const st_tensor *st_find(const st_file *st, const char *name);
const char *st_path(const st_file *st);
/* total bytes of tensor data */
uint64_t st_data_bytes(const st_file *st);
/* Hand the whole pages of [p, p + bytes) back to the kernel when they lie
 * in a file this handle mapped (no-op for anything else): the model copied
 * them elsewhere; a later read faults them in again from the file. */
void st_release(const st_file *st, const void *p, size_t bytes);

/* F32 view of a tensor: points into the mapping when the tensor is F32 and
 * aligned, otherwise converts into *owned (caller frees). Fails with a
 * message naming the tensor when the dtype is not F32/F16/BF16 or when a
 * value is NaN or infinite. */
int st_to_f32(wobble_ctx *ctx, const st_file *st, const st_tensor *t, const float **data, float **owned);

float st_f16_to_f32(uint16_t h);
float st_bf16_to_f32(uint16_t h);
uint16_t st_f32_to_f16(float f);
uint16_t st_f32_to_bf16(float f);
#endif
