/*
 * The operation registry: name -> function, domain, identity, default grid and
 * description. Callers (CLI, eval) iterate it through wobble_op_count /
 * wobble_op_at / wobble_op_find, so adding an operation (e.g. the ImageNet-C
 * corruptions) means adding one entry here and nothing else.
 * docs/perturbations.md justifies each default grid.
 */
#include "perturb.h"
#include "imagenet_c.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const double g_jpeg[] = {90, 70, 50, 30, 10};
static const double g_brightness[] = {0.9, 0.75, 0.6, 0.45, 0.3};
static const double g_contrast[] = {0.9, 0.75, 0.6, 0.45, 0.3};
static const double g_saturation[] = {0.8, 0.6, 0.4, 0.2, 0.0};
static const double g_sharpness[] = {1.5, 2.0, 3.0, 4.0, 6.0};
static const double g_hue[] = {0.02, 0.05, 0.1, 0.2, 0.35};
static const double g_blur[] = {0.5, 1.0, 1.5, 2.5, 4.0};
static const double g_noise[] = {0.01, 0.02, 0.04, 0.08, 0.16};
static const double g_rescale[] = {0.75, 0.5, 0.35, 0.25, 0.125};
static const double g_severity[] = {1, 2, 3, 4, 5};

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

typedef struct op_entry {
    wobble_op_info info;
    wobble_op_fn fn;
} op_entry;

static const op_entry OPS[] = {
    {{"jpeg", "quality", "Pillow 9.4 Image.save(format=\"JPEG\", quality=k), then decode",
      "JPEG recompression at quality k (4:2:0), decoded back", 1, 100, 0, 0, 1, 0, NAN, g_jpeg, N(g_jpeg), 0, NULL},
     perturb_op_jpeg},
    {{"brightness", "factor", "Pillow 9.4 ImageEnhance.Brightness(im).enhance(k)",
      "scale intensities by k (0 = black, 1 = unchanged)", 0, INFINITY, 0, 1, 0, 1, 1.0, g_brightness,
      N(g_brightness), 0, NULL},
     perturb_op_brightness},
    {{"contrast", "factor", "Pillow 9.4 ImageEnhance.Contrast(im).enhance(k)",
      "blend with the mean gray level (0 = flat gray, 1 = unchanged)", 0, INFINITY, 0, 1, 0, 1, 1.0, g_contrast,
      N(g_contrast), 0, NULL},
     perturb_op_contrast},
    {{"saturation", "factor", "Pillow 9.4 ImageEnhance.Color(im).enhance(k)",
      "blend with the grayscale image (0 = grayscale, 1 = unchanged)", 0, INFINITY, 0, 1, 0, 1, 1.0,
      g_saturation, N(g_saturation), 0, NULL},
     perturb_op_saturation},
    {{"sharpness", "factor", "Pillow 9.4 ImageEnhance.Sharpness(im).enhance(k)",
      "blend with the SMOOTH-filtered image (0 = smoothed, 1 = unchanged, >1 sharpened)", 0, INFINITY, 0, 1, 0,
      1, 1.0, g_sharpness, N(g_sharpness), 0, NULL},
     perturb_op_sharpness},
    {{"hue", "shift", "torchvision 0.14 functional.adjust_hue(pil_image, k) (HSV via Pillow)",
      "rotate hue by k turns in Pillow's 8-bit HSV space", -0.5, 0.5, 0, 0, 0, 1, 0.0, g_hue, N(g_hue), 0, NULL},
     perturb_op_hue},
    {{"gaussian_blur", "sigma", "Pillow 9.4 Image.filter(ImageFilter.GaussianBlur(radius=k))",
      "Gaussian blur with standard deviation k pixels (3 extended box passes)", 0, INFINITY, 0, 1, 0, 1, 0.0,
      g_blur, N(g_blur), 0, NULL},
     perturb_op_gaussian_blur},
    {{"gaussian_noise", "sigma", "x/255 + N(0, k^2), clipped to [0,1], x255, rounded half up",
      "additive Gaussian noise, k in units of full scale, reproducible from (seed, image id, level)", 0, 1, 0,
      0, 0, 1, 0.0, g_noise, N(g_noise), 0, NULL},
     perturb_op_gaussian_noise},
    {{"rescale", "factor", "Pillow 9.4 bicubic resize to (max(1,floor(w*k+0.5)), max(1,floor(h*k+0.5))) and back",
      "downscale by k and upscale back to the original size (bicubic, antialiased)", 0, 1, 1, 0, 0, 1, 1.0,
      g_rescale, N(g_rescale), 0, NULL},
     perturb_op_rescale},

/* ImageNet-C (imagecorruptions 1.1.2): the level is the severity 1-5 */
#define IC(name, suite, what, constants)                                                                    \
    {{"imagenet_c." #name, "severity",                                                                      \
      "imagecorruptions 1.1.2 corrupt(x, severity=k, corruption_name=\"" #name "\") after np.random.seed(seed)", \
      what, 1, 5, 0, 0, 1, 0, NAN, g_severity, N(g_severity), suite, constants},                             \
     perturb_ic_##name}
    IC(gaussian_noise, 1, "ImageNet-C Gaussian noise: x + N(0, c^2) on [0,1]", "c: .08 .12 .18 .26 .38"),
    IC(shot_noise, 1, "ImageNet-C shot noise: Poisson(x c) / c", "c: 60 25 12 5 3"),
    IC(impulse_noise, 1, "ImageNet-C impulse noise: a fraction c of the values set to 0 or 1 (skimage s&p, default_rng(seed))",
       "c: .03 .06 .09 .17 .27"),
    IC(defocus_blur, 1, "ImageNet-C defocus blur: correlation with an anti-aliased disk (radius r, alias blur a; OpenCV)",
       "(r, a): (3, .1) (4, .5) (6, .5) (8, .5) (10, .5)"),
    IC(glass_blur, 1,
       "ImageNet-C glass blur: Gaussian blur (sigma), local pixel shuffle (max delta d, n passes; the draws as with "
       "NUMBA_DISABLE_JIT=1), blur",
       "(sigma, d, n): (.7, 1, 2) (.9, 2, 1) (1, 2, 3) (1.1, 3, 2) (1.5, 4, 2)"),
    IC(motion_blur, 1, "ImageNet-C motion blur: Gaussian-weighted shifted copies along a random angle in [-45, 45]",
       "(radius, sigma): (10, 3) (15, 5) (15, 8) (15, 12) (20, 15)"),
    IC(zoom_blur, 1, "ImageNet-C zoom blur: mean of the image and its centre zooms by 1, 1 + s, ... < z (scipy zoom, linear)",
       "(z, s): (1.11, .01) (1.16, .01) (1.21, .02) (1.26, .02) (1.31, .03)"),
    IC(snow, 1, "ImageNet-C snow: a zoomed, thresholded, motion-blurred noise layer (and its 180-degree turn) over a lifted gray",
       "(loc, scale, zoom, threshold, radius, sigma, blend): (.1, .3, 3, .5, 10, 4, .8) (.2, .3, 2, .5, 12, 4, .7) "
       "(.55, .3, 4, .9, 12, 8, .7) (.55, .3, 4.5, .85, 12, 8, .65) (.55, .3, 2.5, .85, 12, 12, .55)"),
    IC(frost, 1, "ImageNet-C frost: blend with a crop of one of five frost photos, scaled to cover (OpenCV cubic)",
       "(image, frost): (1, .4) (.8, .6) (.7, .7) (.65, .7) (.6, .75)"),
    IC(fog, 1, "ImageNet-C fog: x + c0 plasma fractal (wibble decay c1), rescaled to the input maximum",
       "(c0, c1): (1.5, 2) (2, 2) (2.5, 1.7) (2.5, 1.5) (3, 1.4)"),
    IC(brightness, 1, "ImageNet-C brightness: HSV value + c (skimage rgb2hsv)", "c: .1 .2 .3 .4 .5"),
    IC(contrast, 1, "ImageNet-C contrast: (x - channel mean) c + channel mean", "c: .4 .3 .2 .1 .05"),
    IC(elastic_transform, 1,
       "ImageNet-C elastic transform: resampled along smoothed random displacements (sigma 0.01 size, max 0.005 h)",
       "alpha: 12.5 16.25 21.25 25 30"),
    IC(pixelate, 1, "ImageNet-C pixelate: Pillow box downscale by c, nearest upscale", "c: .6 .5 .4 .3 .25"),
    IC(jpeg_compression, 1, "ImageNet-C JPEG: Pillow quality c", "quality: 25 18 15 10 7"),
    IC(speckle_noise, 2, "ImageNet-C speckle noise (validation): x + x N(0, c^2)", "c: .15 .2 .35 .45 .6"),
    IC(gaussian_blur, 2, "ImageNet-C Gaussian blur (validation): scipy gaussian_filter, sigma c, truncate 4, edges nearest",
       "c: 1 2 3 4 6"),
    IC(spatter, 2, "ImageNet-C spatter (validation): water drops (1-3, OpenCV Canny/distance/emboss chain) or mud (4-5)",
       "(loc, scale, sigma, threshold, intensity, mud): (.65, .3, 4, .69, .6, 0) (.65, .3, 3, .68, .6, 0) "
       "(.65, .3, 2, .68, .5, 0) (.65, .3, 1, .65, 1.5, 1) (.67, .4, 1, .65, 1.5, 1)"),
    IC(saturate, 2, "ImageNet-C saturate (validation): HSV saturation s c0 + c1",
       "(c0, c1): (.3, 0) (.1, 0) (2, 0) (5, .1) (20, .2)"),
#undef IC
};

int wobble_op_count(void) { return N(OPS); }

const wobble_op_info *wobble_op_at(int i) { return (i >= 0 && i < N(OPS)) ? &OPS[i].info : NULL; }

static const op_entry *find_entry(const char *name) {
    if (!name) return NULL;
    for (int i = 0; i < N(OPS); i++)
        if (strcmp(OPS[i].info.name, name) == 0) return &OPS[i];
    return NULL;
}

const wobble_op_info *wobble_op_find(const char *name) {
    const op_entry *e = find_entry(name);
    return e ? &e->info : NULL;
}

wobble_perturb_params wobble_perturb_default_params(void) {
    wobble_perturb_params p;
    memset(&p, 0, sizeof p);
    p.seed = 0;
    p.image_id = 0;
    return p;
}

static void format_domain(const wobble_op_info *op, char *buf, size_t n) {
    char lo[32], hi[32];
    snprintf(lo, sizeof lo, "%g", op->min);
    if (isinf(op->max))
        snprintf(hi, sizeof hi, "inf");
    else
        snprintf(hi, sizeof hi, "%g", op->max);
    snprintf(buf, n, "%s%s, %s%s%s", op->min_open ? "(" : "[", lo, hi, op->max_open || isinf(op->max) ? ")" : "]",
             op->integer ? " (integer)" : "");
}

int wobble_op_check_level(wobble_ctx *ctx, const wobble_op_info *op, double level) {
    if (!op) return core_seterr(ctx, WOBBLE_EINVAL, "perturb: NULL operation");
    char dom[96];
    format_domain(op, dom, sizeof dom);
    int ok = isfinite(level);
    if (ok) ok = op->min_open ? level > op->min : level >= op->min;
    if (ok) ok = op->max_open ? level < op->max : level <= op->max;
    if (ok && op->integer) ok = level == floor(level);
    if (!ok)
        return core_seterr(ctx, WOBBLE_EDOMAIN, "%s: %s %g is outside the domain %s", op->name, op->param, level,
                             dom);
    return WOBBLE_OK;
}

int wobble_perturb(wobble_ctx *ctx, const char *op, const wobble_image *img, double level,
                   const wobble_perturb_params *params, wobble_image **out) {
    if (!out) return core_seterr(ctx, WOBBLE_EINVAL, "perturb: NULL output pointer");
    *out = NULL;
    if (!img) return core_seterr(ctx, WOBBLE_EINVAL, "perturb: NULL image");
    const op_entry *e = find_entry(op);
    if (!e) {
        char names[256] = "";
        int nic = 0;
        for (int i = 0; i < N(OPS); i++) {
            if (OPS[i].info.suite) {
                nic++;
                continue;
            }
            if (names[0]) strncat(names, ", ", sizeof names - strlen(names) - 1);
            strncat(names, OPS[i].info.name, sizeof names - strlen(names) - 1);
        }
        return core_seterr(ctx, WOBBLE_ENOTFOUND, "unknown operation '%s' (known: %s and %d imagenet_c.* corruptions)",
                           op ? op : "(null)", names, nic);
    }
    int rc = wobble_op_check_level(ctx, &e->info, level);
    if (rc != WOBBLE_OK) return rc;
    if (e->info.suite && (rc = perturb_ic_check(ctx, e->info.name, img)) != WOBBLE_OK) return rc;
    if (e->info.has_identity && level == e->info.identity) return wobble_image_clone(ctx, img, out);
    wobble_perturb_params p = params ? *params : wobble_perturb_default_params();
    wobble_image *o = NULL;
    rc = image_alloc(ctx, img->width, img->height, &o);
    if (rc != WOBBLE_OK) return rc;
    rc = e->fn(ctx, img, level, &p, o);
    if (rc != WOBBLE_OK) {
        wobble_image_free(o);
        return rc;
    }
    *out = o;
    return WOBBLE_OK;
}
