/*
 * Times every operation at its default grid on the given images and prints
 * one JSON object per line: {"op":..., "ms_per_image":...}. Also times a
 * plain libjpeg-turbo encode+decode (quality 75, 4:2:0) as the floor for
 * the jpeg op. bench/perturb runs this beside Pillow and prints ratios.
 *
 * usage: bench_perturb [--threads N] [--repeat R] IMAGE...
 */
#include "wobble.h"

#include <stdio.h>

#include <jpeglib.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Reference floor: libjpeg-turbo's own encode + decode of RGB pixels. */
static void raw_jpeg_roundtrip(const uint8_t *rgb, int w, int h, int q, uint8_t *out) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    unsigned char *buf = NULL;
    unsigned long len = 0;
    jpeg_mem_dest(&c, &buf, &len);
    c.image_width = w;
    c.image_height = h;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, q, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW r = (JSAMPROW)(rgb + (size_t)c.next_scanline * w * 3);
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    struct jpeg_decompress_struct d;
    d.err = jpeg_std_error(&e);
    jpeg_create_decompress(&d);
    jpeg_mem_src(&d, buf, len);
    jpeg_read_header(&d, TRUE);
    d.out_color_space = JCS_RGB;
    jpeg_start_decompress(&d);
    while (d.output_scanline < d.output_height) {
        JSAMPROW r = out + (size_t)d.output_scanline * w * 3;
        jpeg_read_scanlines(&d, &r, 1);
    }
    jpeg_finish_decompress(&d);
    jpeg_destroy_decompress(&d);
    free(buf);
}

int main(int argc, char **argv) {
    int threads = 0, repeat = 3, first = 1;
    while (first < argc && argv[first][0] == '-') {
        if (!strcmp(argv[first], "--threads") && first + 1 < argc)
            threads = atoi(argv[first + 1]);
        else if (!strcmp(argv[first], "--repeat") && first + 1 < argc)
            repeat = atoi(argv[first + 1]);
        else {
            fprintf(stderr, "usage: bench_perturb [--threads N] [--repeat R] IMAGE...\n");
            return 2;
        }
        first += 2;
    }
    int n = argc - first;
    if (n <= 0) {
        fprintf(stderr, "usage: bench_perturb [--threads N] [--repeat R] IMAGE...\n");
        return 2;
    }
    wobble_ctx_params cp = wobble_ctx_default_params();
    cp.threads = threads;
    wobble_ctx *ctx = NULL;
    wobble_ctx_create(&cp, &ctx);
    wobble_image **imgs = calloc(n, sizeof *imgs);
    for (int i = 0; i < n; i++) {
        if (wobble_image_read(ctx, argv[first + i], &imgs[i]) != WOBBLE_OK) {
            fprintf(stderr, "bench_perturb: %s\n", wobble_last_error(ctx));
            return 1;
        }
    }
    for (int o = 0; o < wobble_op_count(); o++) {
        const wobble_op_info *op = wobble_op_at(o);
        if (op->suite) continue; /* the ImageNet-C corruptions: bench/corrupt */
        double best = 1e30;
        for (int r = 0; r < repeat; r++) {
            double t0 = now_s();
            for (int i = 0; i < n; i++)
                for (int j = 0; j < op->grid_len; j++) {
                    wobble_image *out = NULL;
                    wobble_perturb_params pp = wobble_perturb_default_params();
                    pp.image_id = (uint64_t)i;
                    if (wobble_perturb(ctx, op->name, imgs[i], op->grid[j], &pp, &out) != WOBBLE_OK) {
                        fprintf(stderr, "bench_perturb: %s\n", wobble_last_error(ctx));
                        return 1;
                    }
                    wobble_image_free(out);
                }
            double t = now_s() - t0;
            if (t < best) best = t;
        }
        printf("{\"op\": \"%s\", \"ms_per_image\": %.4f, \"levels\": %d, \"threads\": %d}\n", op->name,
               1e3 * best / (n * op->grid_len), op->grid_len, wobble_ctx_threads(ctx));
    }
    /* libjpeg-turbo floor at the jpeg op's default grid */
    const wobble_op_info *jp = wobble_op_find("jpeg");
    double best = 1e30;
    for (int r = 0; r < repeat; r++) {
        double t0 = now_s();
        for (int i = 0; i < n; i++) {
            int w = wobble_image_width(imgs[i]), h = wobble_image_height(imgs[i]);
            uint8_t *out = malloc((size_t)w * h * 3);
            for (int j = 0; j < jp->grid_len; j++) raw_jpeg_roundtrip(wobble_image_data(imgs[i]), w, h, (int)jp->grid[j], out);
            free(out);
        }
        double t = now_s() - t0;
        if (t < best) best = t;
    }
    printf("{\"op\": \"libjpeg-turbo\", \"ms_per_image\": %.4f, \"levels\": %d, \"threads\": 1}\n",
           1e3 * best / (n * jp->grid_len), jp->grid_len);
    for (int i = 0; i < n; i++) wobble_image_free(imgs[i]);
    free(imgs);
    wobble_ctx_free(ctx);
    return 0;
}
