/* Model identity: content hashes that key the eval cache and the
 * configuration locks of eval and finetune. */
#include "model.h"

#include <stdlib.h>
#include <string.h>

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t hash_bytes(uint64_t h, const uint8_t *p, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001B3ull;
        h ^= h >> 29;
    }
    for (; i < n; i++) h = (h ^ p[i]) * 0x100000001B3ull;
    return mix64(h + n);
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

/* Content hash of the weights: every tensor's name, dtype, shape and bytes, in
 * name order (so the same weights give the same hash however they are
 * sharded or laid out). Computed once per model. */
uint64_t model_content_hash(wobble_model *m) {
    if (m->content_hash) return m->content_hash;
    const int n = st_count(m->st);
    const st_tensor **t = malloc(sizeof(*t) * (size_t)(n ? n : 1));
    if (!t) return 0;
    for (int i = 0; i < n; i++) t[i] = st_at(m->st, i);
    qsort(t, (size_t)n, sizeof *t, cmp_tensor_name);
    uint64_t h = 0x6A09E667F3BCC908ull;
    for (int i = 0; i < n; i++) {
        h = hash_bytes(h, (const uint8_t *)t[i]->name, strlen(t[i]->name));
        h = hash_bytes(h, (const uint8_t *)t[i]->dtype_name, strlen(t[i]->dtype_name));
        h = hash_bytes(h, (const uint8_t *)t[i]->shape, sizeof(int64_t) * (size_t)t[i]->ndim);
        h = hash_bytes(h, t[i]->data, t[i]->nbytes);
    }
    free(t);
    m->content_hash = h ? h : 1;
    return m->content_hash;
}

/* Hash of everything that decides the model's input pixels. */
uint64_t model_preprocessing_hash(const wobble_model *m) {
    struct {
        int32_t v[6];
        float mean[3], std[3];
        double rescale;
    } k;
    memset(&k, 0, sizeof k);
    k.v[0] = m->resize_short, k.v[1] = m->resize_h, k.v[2] = m->resize_w;
    k.v[3] = (int32_t)m->filter, k.v[4] = m->crop_h, k.v[5] = m->crop_w;
    memcpy(k.mean, m->mean, sizeof k.mean);
    memcpy(k.std, m->std, sizeof k.std);
    k.rescale = m->rescale;
    return hash_bytes(0x243F6A8885A308D3ull, (const uint8_t *)&k, sizeof k);
}
