/*
 * Additive Gaussian noise: out = round_half_up(255 * clip(x/255 + k*z, 0, 1))
 * with z ~ N(0, 1) independent per pixel and channel.
 *
 * Reproducibility: z depends only on (seed, image_id, level, pixel index,
 * channel), never on the thread count. key = mix(seed) ^ mix(image_id + C1)
 * ^ mix(bits(level) + C2); pixel i draws two 64-bit words
 * u = mix(key + (2i + j) * GOLDEN), j = 0, 1, whose 32-bit halves are
 * uniforms in (0, 1); Box-Muller turns the halves of word 0 into z for R and
 * G (cos and sin branches) and word 1 into z for B (cos branch).
 * mix is one SplitMix64 step (core_splitmix64: add the golden gamma, then
 * the finaliser). docs/perturbations.md restates this.
 */
#include "perturb.h"

#include <math.h>
#include <string.h>

#define GOLDEN 0x9E3779B97F4A7C15ull

static inline double unit(uint32_t v) { return ((double)v + 0.5) * (1.0 / 4294967296.0); }

static inline uint8_t noisy(uint8_t x, double k, double z) {
    double v = x / 255.0 + k * z;
    v = v < 0.0 ? 0.0 : v > 1.0 ? 1.0 : v;
    return (uint8_t)floor(v * 255.0 + 0.5);
}

int perturb_op_gaussian_noise(wobble_ctx *ctx, const wobble_image *in, double level,
                             const wobble_perturb_params *p, wobble_image *out) {
    const uint64_t key = perturb_stream_key(p, level, 0x13198A2E03707344ull);
    const size_t npix = (size_t)in->width * in->height;
    const uint8_t *s = in->data;
    uint8_t *d = out->data;
    const double two_pi = 6.283185307179586476925286766559;
    const int par = npix * 3 > WOBBLE_PAR_MIN_BYTES;
#pragma omp parallel for num_threads(wobble_ctx_threads(ctx)) schedule(static) if (par)
    for (size_t i = 0; i < npix; i++) {
        const uint64_t w0 = core_splitmix64(key + (2 * (uint64_t)i) * GOLDEN);
        const uint64_t w1 = core_splitmix64(key + (2 * (uint64_t)i + 1) * GOLDEN);
        const double r0 = sqrt(-2.0 * log(unit((uint32_t)(w0 >> 32))));
        const double a0 = two_pi * unit((uint32_t)w0);
        const double r1 = sqrt(-2.0 * log(unit((uint32_t)(w1 >> 32))));
        const double a1 = two_pi * unit((uint32_t)w1);
        const uint8_t *q = s + 3 * i;
        uint8_t *o = d + 3 * i;
        o[0] = noisy(q[0], level, r0 * cos(a0));
        o[1] = noisy(q[1], level, r0 * sin(a0));
        o[2] = noisy(q[2], level, r1 * cos(a1));
    }
    return WOBBLE_OK;
}
