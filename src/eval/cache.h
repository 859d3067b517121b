/* The embedding cache of wobble eval (one file per image content hash under
 * OUT/cache/): every embedding computed for that image, keyed by (op, level),
 * under a header carrying the model content hash and preprocessing hash.
 *
 * File format (little-endian):
 *   u32 magic "WBEC", u32 version 2, u64 model hash, u64 preprocessing hash,
 *   u32 dim, u32 count, then count records of
 *   char op[48] (NUL-padded), f64 level, f32 vec[dim].
 * Version 1 files (op[24], before the ImageNet-C names) are still read.
 * A file of another model, preprocessing or dimension, or a damaged one,
 * reads as empty (its embeddings are recomputed); a truncated tail loses
 * only the records it cuts. */
#ifndef WOBBLE_EVAL_CACHE_H
#define WOBBLE_EVAL_CACHE_H
#include "../core/internal.h"

#define EVAL_CACHE_OPNAME 48
#define EVAL_CACHE_OPNAME_V1 24

typedef struct {
    char op[EVAL_CACHE_OPNAME];
    double level;
    float *vec;
} eval_cache_entry;

typedef struct {
    eval_cache_entry *e;
    int n;
    size_t cap;
    int dim;
} eval_cache;

/* An empty cache for embeddings of `dim` floats. */
void eval_cache_init(eval_cache *c, int dim);
void eval_cache_clear(eval_cache *c);
float *eval_cache_find(const eval_cache *c, const char *op, double level);
/* Add a copy of v: 0, or -1 out of memory (the cache is unchanged). */
int eval_cache_add(eval_cache *c, const char *op, double level, const float *v);
/* Parse a cache file's bytes into c (entries not yet present are added):
 * 0 (also for a foreign or damaged file), -1 out of memory. */
int eval_cache_parse(eval_cache *c, const uint8_t *data, size_t size, uint64_t model_hash, uint64_t prep_hash);
/* Read `path` into c (a missing file is an empty cache): WOBBLE_OK or ENOMEM. */
int eval_cache_load(wobble_ctx *ctx, eval_cache *c, const char *path, uint64_t model_hash, uint64_t prep_hash);
/* Write c to `path` atomically. */
int eval_cache_save(wobble_ctx *ctx, const eval_cache *c, const char *path, uint64_t model_hash, uint64_t prep_hash);
#endif
