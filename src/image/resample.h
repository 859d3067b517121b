#ifndef WOBBLE_RESAMPLE_H
#define WOBBLE_RESAMPLE_H
#include "wobble.h"

/* Fixed-point filter weights for one axis (Pillow's precompute_coeffs). */
typedef struct wobble_coeffs {
    int n;          /* output size */
    int ksize;      /* stride of k */
    int *start;     /* first input index per output */
    int *count;     /* number of taps per output */
    int32_t *k;     /* n * ksize weights, 22-bit fixed point */
} wobble_coeffs;

int image_coeffs_make(int in_size, int out_size, wobble_filter filter, wobble_coeffs *c);
void image_coeffs_free(wobble_coeffs *c);

/* Resize packed RGB src (w x h) into dst (ow x oh). */
int image_resize_rgb(const uint8_t *src, int w, int h, uint8_t *dst, int ow, int oh, wobble_filter filter,
                     int threads);
/* Only the window [x0, x0 + cw) x [y0, y0 + ch) of that resize, into dst
 * (cw x ch): the same pixels, for less work (a centre crop after a resize).
 * WOBBLE_EINVAL when the window is not inside ow x oh. */
int image_resize_rgb_window(const uint8_t *src, int w, int h, uint8_t *dst, int ow, int oh, int x0, int y0, int cw,
                            int ch, wobble_filter filter, int threads);

/* Pillow 9.4 Image.resize((ow, oh), Image.NEAREST) of packed RGB. */
int image_resize_nearest_rgb(const uint8_t *src, int w, int h, uint8_t *dst, int ow, int oh);
#endif
