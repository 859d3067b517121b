/*
 * Saving a (fine-tuned) model: one safetensors file holding every tensor of
 * the checkpoint it was loaded from, under the same names, shapes and
 * dtypes, so that the upstream code (Hugging Face, open_clip,
 * facebookresearch) and wobble load it unchanged. Tensors the model reads
 * (recorded at load, see tensor_ref) are written from their current float32
 * values, converted back to the file's layout (the OpenAI [D, E]
 * projections are stored transposed in memory; Hugging Face q/k/v biases are
 * concatenated) and dtype (F16 / BF16 by round-to-nearest-even); an
 * untouched F16/BF16 value survives the round trip exactly. Every other
 * tensor (text tower extras, logit_scale, mask tokens, ...) is copied byte
 * for byte.
 */
#include "model.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const tensor_ref *ref_of(const wobble_model *m, const char *name) {
    for (int i = 0; i < m->n_refs; i++)
        if (!strcmp(m->refs[i].name, name)) return &m->refs[i];
    return NULL;
}

static void put_value(uint8_t *dst, st_dtype dt, size_t i, float v) {
    if (dt == ST_F32) {
        memcpy(dst + 4 * i, &v, 4);
    } else {
        const uint16_t h = dt == ST_F16 ? st_f32_to_f16(v) : st_f32_to_bf16(v);
        memcpy(dst + 2 * i, &h, 2);
    }
}

int model_save_safetensors(wobble_ctx *ctx, const wobble_model *m, const char *path) {
    const st_file *st = m->st;
    const int n = st_count(st);
    json_t *hdr = json_object();
    if (!hdr) return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_at(st, i);
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        json_t *offs = json_pack("[II]", (json_int_t)off, (json_int_t)(off + t->nbytes));
        json_object_set_new(hdr, t->name, json_pack("{s:s,s:o,s:o}", "dtype", t->dtype_name, "shape", shape,
                                                    "data_offsets", offs));
        off += t->nbytes;
    }
    json_object_set_new(hdr, "__metadata__", json_pack("{s:s}", "format", "pt"));
    char *h = json_dumps(hdr, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(hdr);
    if (!h) return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", path);
    size_t hl = strlen(h), pad = (8 - hl % 8) % 8;
    const size_t total = 8 + hl + pad + off;
    uint8_t *buf = malloc(total);
    if (!buf) {
        free(h);
        return core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory for %zu bytes", path, total);
    }
    const uint64_t hlen = hl + pad;
    for (int b = 0; b < 8; b++) buf[b] = (uint8_t)(hlen >> (8 * b));
    memcpy(buf + 8, h, hl);
    memset(buf + 8 + hl, ' ', pad);
    free(h);
    uint8_t *data = buf + 8 + hlen;
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_at(st, i);
        const tensor_ref *r = ref_of(m, t->name);
        if (!r || t->dtype == ST_OTHER || !*r->slot) {
            memcpy(data, t->data, t->nbytes);
        } else {
            const float *v = *r->slot + r->offset;
            if (r->transpose) {
                for (int64_t a = 0; a < r->rows; a++)
                    for (int64_t c = 0; c < r->cols; c++)
                        put_value(data, t->dtype, (size_t)(a * r->cols + c), v[c * r->rows + a]);
            } else {
                for (int64_t k = 0; k < t->numel; k++) put_value(data, t->dtype, (size_t)k, v[k]);
            }
        }
        data += t->nbytes;
    }
    int rc = wobble_write_file_atomic(ctx, path, buf, total);
    free(buf);
    return rc;
}
