/*
 * Bit-exact parity of every deterministic operation with its reference
 * (Pillow 9.4 / torchvision 0.14), against tests/ref/perturb_goldens.tsv made
 * by tests/ref/gen_goldens.py. Argument: "synthetic" (inputs in tests/ref/data)
 * or "kodak" (inputs in $WOBBLE_SHARED/data/kodak; skipped when absent).
 */
#include "testutil.h"

#include <sys/stat.h>

typedef struct {
    char name[128];
    wobble_image *img;
} cached;

int main(int argc, char **argv) {
    const int kodak = argc > 1 && !strcmp(argv[1], "kodak");
    char path[600];
    if (kodak && t_shared_missing("data/kodak")) return 77;
    wobble_ctx *ctx = NULL;
    wobble_ctx_create(NULL, &ctx);
    snprintf(path, sizeof path, "%s/perturb_goldens.tsv", t_ref_dir());
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "cannot open %s", path);
    if (!f) return t_finish();
    cached cache[64];
    int ncache = 0, rows = 0;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        char src[128], op[32];
        double level;
        int w, h;
        unsigned long crc;
        if (sscanf(line, "%127s %31s %lf %d %d %lx", src, op, &level, &w, &h, &crc) != 6) continue;
        int is_kodak = !strncmp(src, "kodak/", 6);
        if (is_kodak != kodak) continue;
        wobble_image *in = NULL;
        for (int i = 0; i < ncache; i++)
            if (!strcmp(cache[i].name, src)) in = cache[i].img;
        if (!in) {
            if (is_kodak)
                snprintf(path, sizeof path, "%s/data/%s", t_shared_dir(), src);
            else
                snprintf(path, sizeof path, "%s/data/%s", t_ref_dir(), src);
            int rc = wobble_image_read(ctx, path, &in);
            CHECK(rc == WOBBLE_OK, "%s", wobble_last_error(ctx));
            if (rc != WOBBLE_OK || ncache == 64) return t_finish();
            snprintf(cache[ncache].name, sizeof cache[ncache].name, "%s", src);
            cache[ncache++].img = in;
        }
        rows++;
        wobble_image *out = NULL;
        int rc = wobble_perturb(ctx, op, in, level, NULL, &out);
        CHECK(rc == WOBBLE_OK, "%s %s %g: %s", src, op, level, wobble_last_error(ctx));
        if (rc != WOBBLE_OK) continue;
        CHECK(wobble_image_width(out) == w && wobble_image_height(out) == h, "%s %s %g: size", src, op, level);
        CHECK(t_crc(out) == crc, "%s %s %g: differs from the reference", src, op, level);
        wobble_image_free(out);
    }
    fclose(f);
    CHECK(rows >= (kodak ? 900 : 300), "%d golden rows checked", rows);
    printf("%d %s parity cases\n", rows, kodak ? "Kodak" : "synthetic");
    for (int i = 0; i < ncache; i++) wobble_image_free(cache[i].img);
    wobble_ctx_free(ctx);
    return t_finish();
}
