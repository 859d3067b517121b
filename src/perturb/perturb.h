/* Internal interface of the perturbation engine. */
#ifndef WOBBLE_PERTURB_H
#define WOBBLE_PERTURB_H
#include "../core/internal.h"

#include <string.h>

/* An operation: writes P(in, level) into `out` (same size as in unless the
 * op says otherwise; ops that change size allocate *out themselves). `in`
 * and `out` never alias. The level is already validated and is never the
 * identity value. */
typedef int (*wobble_op_fn)(wobble_ctx *ctx, const wobble_image *in, double level,
                            const wobble_perturb_params *p, wobble_image *out);

int perturb_op_jpeg(wobble_ctx *, const wobble_image *, double, const wobble_perturb_params *, wobble_image *);
int perturb_op_brightness(wobble_ctx *, const wobble_image *, double, const wobble_perturb_params *, wobble_image *);
int perturb_op_contrast(wobble_ctx *, const wobble_image *, double, const wobble_perturb_params *, wobble_image *);
int perturb_op_saturation(wobble_ctx *, const wobble_image *, double, const wobble_perturb_params *, wobble_image *);
int perturb_op_sharpness(wobble_ctx *, const wobble_image *, double, const wobble_perturb_params *, wobble_image *);
int perturb_op_hue(wobble_ctx *, const wobble_image *, double, const wobble_perturb_params *, wobble_image *);
int perturb_op_gaussian_blur(wobble_ctx *, const wobble_image *, double, const wobble_perturb_params *, wobble_image *);
int perturb_op_gaussian_noise(wobble_ctx *, const wobble_image *, double, const wobble_perturb_params *, wobble_image *);
int perturb_op_rescale(wobble_ctx *, const wobble_image *, double, const wobble_perturb_params *, wobble_image *);

/* The key of a random operation's stream, fixed by (seed, image_id, level):
 * mix(seed) ^ mix(image_id + C1) ^ mix(bits(level) + salt), mix one
 * SplitMix64 step. gaussian_noise and the ImageNet-C corruptions (derived
 * seeds) use it with salts of their own. */
static inline uint64_t perturb_stream_key(const wobble_perturb_params *p, double level, uint64_t salt) {
    uint64_t lbits;
    memcpy(&lbits, &level, sizeof lbits);
    return core_splitmix64(p->seed) ^ core_splitmix64(p->image_id + 0x243F6A8885A308D3ull) ^
           core_splitmix64(lbits + salt);
}

/* Parallel-region threshold: images smaller than this run on one thread. */
#define WOBBLE_PAR_MIN_BYTES 65536
#endif
