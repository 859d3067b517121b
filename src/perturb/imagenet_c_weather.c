/*
 * ImageNet-C weather corruptions: snow (imagenet_c.h). fog is with the
 * per-pixel corruptions in imagenet_c.c.
 */
#include "imagenet_c.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* snow, step by step as the reference computes it:
 *  x = float32(x) / 255 (float32)
 *  layer = normal(loc, scale, (h, w)); clipped_zoom by z (float64, scipy
 *    zoom order 1); values below t set to 0; clip to [0, 1]
 *  layer = _motion_blur(layer, radius, sigma, uniform(-135, -45))
 *  layer = round(layer * 255) as uint8 / 255 (halves to even), cropped to
 *    (h, w)
 *  gray = cv2.cvtColor(x, RGB2GRAY) = fma(b, .114, fma(g, .587, r * .299))
 *    in float32, as OpenCV's AVX2 kernel computes it
 *  x = blend * x + (1 - blend) * max(x, gray * 1.5 + 0.5)   (float32)
 *  clip(x + layer + rot180(layer), 0, 1) * 255 (float64), truncated */
int perturb_ic_snow(wobble_ctx *ctx, const wobble_image *in, double level, const wobble_perturb_params *p,
                    wobble_image *out) {
    static const struct {
        double loc, scale, zoom, threshold;
        int radius, sigma;
        double blend;
    } C[5] = {{0.1, 0.3, 3, 0.5, 10, 4, 0.8},
              {0.2, 0.3, 2, 0.5, 12, 4, 0.7},
              {0.55, 0.3, 4, 0.9, 12, 8, 0.7},
              {0.55, 0.3, 4.5, 0.85, 12, 8, 0.65},
              {0.55, 0.3, 2.5, 0.85, 12, 12, 0.55}};
    int rc = perturb_ic_check(ctx, "imagenet_c.snow", in);
    if (rc != WOBBLE_OK) return rc;
    uint32_t seed;
    rc = perturb_ic_seed(ctx, "imagenet_c.snow", p, level, &seed);
    if (rc != WOBBLE_OK) return rc;
    const int H = in->height, W = in->width, sev = (int)level - 1, th = wobble_ctx_threads(ctx);
    const size_t npix = (size_t)W * H;
    perturb_mt mt;
    perturb_mt_seed(&mt, seed);
    double *snow = malloc(sizeof(double) * npix), *layer = NULL, *blurred = NULL;
    if (!snow) goto oom;
    for (size_t i = 0; i < npix; i++) snow[i] = perturb_mt_normal(&mt, C[sev].loc, C[sev].scale);
    int oh, ow;
    layer = perturb_ic_clipped_zoom(snow, H, W, 1, C[sev].zoom, 0, &oh, &ow);
    if (!layer) goto oom;
    if (oh < H || ow < W) {
        free(snow), free(layer);
        return core_seterr(ctx, WOBBLE_EINTERNAL, "imagenet_c.snow: the zoomed layer (%dx%d) is smaller than the image",
                           ow, oh);
    }
    const size_t nl = (size_t)oh * ow;
    for (size_t i = 0; i < nl; i++) {
        double v = layer[i] < C[sev].threshold ? 0.0 : layer[i];
        layer[i] = v < 0.0 ? 0.0 : v > 1.0 ? 1.0 : v;
    }
    const double angle = perturb_mt_uniform(&mt, -135, -45);
    blurred = malloc(sizeof(double) * nl);
    if (!blurred) goto oom;
    perturb_ic_motion(layer, oh, ow, 1, C[sev].radius, C[sev].sigma, angle, blurred, th);
    for (size_t i = 0; i < nl; i++) blurred[i] = (uint8_t)nearbyint(blurred[i] * 255) / 255.;
    const float blend = (float)C[sev].blend, rest = (float)(1 - C[sev].blend);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            const uint8_t *s = in->data + ((size_t)y * W + x) * 3;
            const float r = (float)s[0] / 255.0f, g = (float)s[1] / 255.0f, b = (float)s[2] / 255.0f;
            const float gray = fmaf(b, 0.114f, fmaf(g, 0.587f, r * 0.299f));
            const float lift = gray * 1.5f + 0.5f;
            const float ch[3] = {r, g, b};
            for (int k = 0; k < 3; k++) {
                const float xb = blend * ch[k] + rest * (ch[k] > lift ? ch[k] : lift);
                double v = ((double)xb + blurred[(size_t)y * ow + x]) + blurred[(size_t)(H - 1 - y) * ow + (W - 1 - x)];
                v = v < 0.0 ? 0.0 : v > 1.0 ? 1.0 : v;
                out->data[((size_t)y * W + x) * 3 + k] = (uint8_t)(v * 255.0);
            }
        }
    free(snow), free(layer), free(blurred);
    return WOBBLE_OK;
oom:
    free(snow), free(layer), free(blurred);
    return core_seterr(ctx, WOBBLE_ENOMEM, "imagenet_c.snow: out of memory");
}
