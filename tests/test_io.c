/* Decoding parity with Pillow's convert("RGB") and bad-input handling. */
#include "testutil.h"

/* src/core/internal.h: the PNG encoder's and decoder's test hooks */
void image_png_set_idat_max(size_t n);
void image_png_set_fast(int on);
long image_png_fast_hits(void);

/* decode with the PNG fast path and with libpng alone: the same status,
 * message and pixels */
static void same_both_ways(wobble_ctx *ctx, const uint8_t *buf, size_t n, const char *name) {
    wobble_image *a = NULL, *b = NULL;
    int ra = wobble_image_decode(ctx, buf, n, name, &a);
    char ea[1024];
    snprintf(ea, sizeof ea, "%s", ra ? wobble_last_error(ctx) : "");
    image_png_set_fast(0);
    int rb = wobble_image_decode(ctx, buf, n, name, &b);
    image_png_set_fast(1);
    CHECK(ra == rb, "%s (%zu bytes): status %d with the fast path, %d with libpng", name, n, ra, rb);
    if (ra && rb) CHECK(!strcmp(ea, wobble_last_error(ctx)), "%s: '%s' vs libpng's '%s'", name, ea, wobble_last_error(ctx));
    if (!ra && !rb)
        CHECK(t_same(a, b), "%s (%zu bytes): pixels differ between the fast path and libpng", name, n);
    wobble_image_free(a);
    wobble_image_free(b);
}

static int read_file(const char *path, uint8_t **buf, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    *buf = malloc(len > 0 ? (size_t)len : 1);
    *n = fread(*buf, 1, (size_t)len, f);
    fclose(f);
    return 0;
}

static void test_goldens(wobble_ctx *ctx) {
    char path[512];
    snprintf(path, sizeof path, "%s/io_goldens.tsv", t_ref_dir());
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "cannot open %s", path);
    if (!f) return;
    char line[512];
    int rows = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        char name[128], mode[16];
        int w, h;
        unsigned long crc;
        if (sscanf(line, "%127s %d %d %lx %15s", name, &w, &h, &crc, mode) != 5) continue;
        rows++;
        char file[600];
        snprintf(file, sizeof file, "%s/data/io/%s", t_ref_dir(), name);
        wobble_image *img = NULL;
        int rc = wobble_image_read(ctx, file, &img);
        CHECK(rc == WOBBLE_OK, "%s (Pillow mode %s): %s", name, mode, wobble_last_error(ctx));
        if (rc != WOBBLE_OK) continue;
        CHECK(wobble_image_width(img) == w && wobble_image_height(img) == h, "%s: size %dx%d, Pillow %dx%d", name,
              wobble_image_width(img), wobble_image_height(img), w, h);
        CHECK(t_crc(img) == crc, "%s (Pillow mode %s): pixels differ from Pillow's convert(\"RGB\")", name, mode);
        /* every truncation of the file is an error naming the file, never a crash */
        uint8_t *buf = NULL;
        size_t n = 0;
        read_file(file, &buf, &n);
        const int is_png = n > 8 && wobble_detect_format(buf, n) == WOBBLE_FORMAT_PNG;
        if (is_png) same_both_ways(ctx, buf, n, name);
        size_t cuts[] = {1, 3, 8, 16, 33, n / 4, n / 2, 3 * n / 4, n > 20 ? n - 16 : n / 2};
        for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
            if (cuts[c] >= n) continue;
            wobble_image *t = NULL;
            int r = wobble_image_decode(ctx, buf, cuts[c], name, &t);
            CHECK(r == WOBBLE_ECORRUPT || r == WOBBLE_EFORMAT, "%s cut to %zu bytes: status %d", name, cuts[c], r);
            CHECK(t == NULL, "no image on failure");
            CHECK(strstr(wobble_last_error(ctx), name) != NULL, "message names the file: %s",
                  wobble_last_error(ctx));
            wobble_image_free(t);
            if (is_png) same_both_ways(ctx, buf, cuts[c], name);
        }
        /* corrupted bytes: any outcome but a crash (ASan checks memory) */
        srand(1234);
        for (int trial = 0; trial < 40; trial++) {
            uint8_t *cp = malloc(n);
            memcpy(cp, buf, n);
            for (int k = 0; k < 4; k++) cp[(size_t)rand() % n] ^= (uint8_t)(1 + rand() % 255);
            wobble_image *t = NULL;
            int r = wobble_image_decode(ctx, cp, n, name, &t);
            CHECK((r == WOBBLE_OK) == (t != NULL), "%s fuzz %d: status and output agree", name, trial);
            wobble_image_free(t);
            if (is_png) same_both_ways(ctx, cp, n, name);
            free(cp);
        }
        free(buf);
        wobble_image_free(img);
    }
    fclose(f);
    CHECK(rows >= 25, "io goldens read: %d", rows);
}

static uint32_t be32_at(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

/* a chunk (name t, n data bytes) written at o with its CRC; returns its size */
static size_t put_chunk_at(uint8_t *o, const char *t, const uint8_t *d, uint32_t n) {
    o[0] = (uint8_t)(n >> 24), o[1] = (uint8_t)(n >> 16), o[2] = (uint8_t)(n >> 8), o[3] = (uint8_t)n;
    memcpy(o + 4, t, 4);
    if (n) memcpy(o + 8, d, n);
    const uint32_t c = (uint32_t)crc32(0, o + 4, n + 4);
    o[8 + n] = (uint8_t)(c >> 24), o[9 + n] = (uint8_t)(c >> 16), o[10 + n] = (uint8_t)(c >> 8), o[11 + n] = (uint8_t)c;
    return (size_t)n + 12;
}

/* Damage the 8-bit PNGs in ways their CRCs do not catch (bytes changed and
 * every CRC recomputed; chunks inserted or deleted), so the fast path parses
 * the damage itself: it must end where libpng ends, file after file. */
static void test_png_paths_agree(wobble_ctx *ctx) {
    static const char *files[] = {"rgb8_filters.png", "rgba8_filters.png", "gray8_filters.png",
                                  "gray_alpha8_filters.png", "rgb8_trns.png", "gray8_trns.png"};
    static const char *types[] = {"IHDR", "PLTE", "tRNS", "IDAT", "IEND", "gAMA", "sBIT", "bKGD",
                                  "zzZZ", "ABCD", "iCCP", "sRGB", "tEXt", "IDAT"};
    srand(20261205);
    const long hits0 = image_png_fast_hits();
    int cases = 0;
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        char file[600];
        snprintf(file, sizeof file, "%s/data/io/%s", t_ref_dir(), files[f]);
        uint8_t *d0 = NULL;
        size_t n0 = 0;
        CHECK(read_file(file, &d0, &n0) == 0 && n0 > 45, "%s", file);
        if (!d0 || n0 <= 45) continue;
        size_t bnd[64];
        int nb = 0;
        for (size_t pos = 8; pos + 12 <= n0 && nb < 63; pos += be32_at(d0 + pos) + 12) bnd[nb++] = pos;
        bnd[nb++] = n0;
        uint8_t *d = malloc(n0 + 512);
        for (int m = 0; m < 300; m++) {
            size_t len = n0;
            const int kind = rand() % 4;
            if (kind < 2) { /* bytes changed, CRCs repaired */
                memcpy(d, d0, n0);
                if (kind == 0)
                    d[8 + (size_t)rand() % (n0 - 8)] ^= (uint8_t)(1 << (rand() % 8));
                else /* a filter type or zlib header byte */
                    d[41 + (size_t)rand() % 24] = (uint8_t)(rand() % 8);
                for (int c = 0; c + 1 < nb; c++) {
                    const uint32_t cl = be32_at(d + bnd[c]);
                    if (bnd[c] + 12 + (size_t)cl > n0) break;
                    put_chunk_at(d + bnd[c], (const char *)d + bnd[c] + 4, d + bnd[c] + 8, cl);
                }
            } else if (kind == 2) { /* a chunk inserted between two */
                const int at = 1 + rand() % (nb - 1);
                uint8_t data[64];
                const uint32_t dn = (uint32_t)(rand() % 64);
                for (uint32_t q = 0; q < dn; q++) data[q] = (uint8_t)rand();
                memcpy(d, d0, bnd[at]);
                len = bnd[at] + put_chunk_at(d + bnd[at], types[rand() % 14], data, dn);
                memcpy(d + len, d0 + bnd[at], n0 - bnd[at]);
                len += n0 - bnd[at];
            } else { /* a chunk deleted */
                const int del = rand() % (nb - 1);
                memcpy(d, d0, bnd[del]);
                memcpy(d + bnd[del], d0 + bnd[del + 1], n0 - bnd[del + 1]);
                len = bnd[del] + (n0 - bnd[del + 1]);
            }
            same_both_ways(ctx, d, len, files[f]);
            cases++;
        }
        free(d);
        free(d0);
    }
    CHECK(cases == 6 * 300, "%d damaged files", cases);
    CHECK(image_png_fast_hits() - hits0 >= 200, "the fast path decoded %ld of them", image_png_fast_hits() - hits0);
}

static void expect_fail(wobble_ctx *ctx, const char *name, int status, const char *needle) {
    char file[600];
    snprintf(file, sizeof file, "%s/data/io/%s", t_ref_dir(), name);
    wobble_image *img = NULL;
    int rc = wobble_image_read(ctx, file, &img);
    CHECK(rc == status, "%s: status %d (%s), expected %d", name, rc, wobble_last_error(ctx), status);
    CHECK(img == NULL, "%s: no image", name);
    CHECK(strstr(wobble_last_error(ctx), file) != NULL, "%s: message names the file: %s", name, wobble_last_error(ctx));
    CHECK(strstr(wobble_last_error(ctx), needle) != NULL, "%s: message says '%s': %s", name, needle,
          wobble_last_error(ctx));
    CHECK(strchr(wobble_last_error(ctx), '\n') == NULL, "one line");
    wobble_image_free(img);
}

int main(void) {
    wobble_ctx *ctx = NULL;
    wobble_ctx_create(NULL, &ctx);
    const long hits0 = image_png_fast_hits();
    test_goldens(ctx);
    /* the 8-bit gray, gray + alpha, RGB and RGBA files (plain, with every
     * filter type in many IDATs, with tRNS) went through the fast path */
    CHECK(image_png_fast_hits() - hits0 >= 2 * 10, "PNG fast path used %ld times", image_png_fast_hits() - hits0);
    test_png_paths_agree(ctx);

    expect_fail(ctx, "bad_huge.png", WOBBLE_ELIMIT, "over the limit");
    expect_fail(ctx, "bad_huge.jpg", WOBBLE_ELIMIT, "over the limit");
    expect_fail(ctx, "bad_garbage.png", WOBBLE_ECORRUPT, "corrupt PNG");
    expect_fail(ctx, "bad_notimage.txt", WOBBLE_EFORMAT, "unknown image format");
    expect_fail(ctx, "does_not_exist.png", WOBBLE_EIO, "cannot open");

    wobble_image *img = NULL;
    CHECK(wobble_image_decode(ctx, "", 0, "empty.png", &img) == WOBBLE_ECORRUPT, "empty");
    CHECK(strstr(wobble_last_error(ctx), "empty.png: empty file") != NULL, "%s", wobble_last_error(ctx));

    /* the pixel limit is configurable and exact */
    char file[600];
    snprintf(file, sizeof file, "%s/data/io/gray8.png", t_ref_dir());
    wobble_ctx_params p = wobble_ctx_default_params();
    p.max_pixels = 13 * 7 - 1;
    wobble_ctx *small = NULL;
    wobble_ctx_create(&p, &small);
    CHECK(wobble_image_read(small, file, &img) == WOBBLE_ELIMIT, "13x7 over a 90-pixel limit");
    wobble_ctx_free(small);
    p.max_pixels = 13 * 7;
    wobble_ctx_create(&p, &small);
    CHECK(wobble_image_read(small, file, &img) == WOBBLE_OK, "13x7 at a 91-pixel limit");
    wobble_image_free(img);
    img = NULL;
    wobble_ctx_free(small);

    /* PNG encode/decode is lossless; JPEG quality outside 1..100 is refused */
    wobble_image *rnd = NULL;
    wobble_image_create(ctx, 37, 23, &rnd);
    srand(99);
    for (int i = 0; i < 37 * 23 * 3; i++) wobble_image_data_mut(rnd)[i] = (uint8_t)rand();
    uint8_t *buf = NULL;
    size_t n = 0;
    CHECK(wobble_image_encode_png(ctx, rnd, &buf, &n) == WOBBLE_OK, "encode png");
    CHECK(wobble_detect_format(buf, n) == WOBBLE_FORMAT_PNG, "png magic");
    CHECK(wobble_image_decode(ctx, buf, n, "mem", &img) == WOBBLE_OK && t_same(img, rnd), "png lossless");
    wobble_image_free(img);
    img = NULL;
    wobble_free(buf);
    /* the encoder's own chunks and filters: lossless at every small shape (one
     * pixel, one row, one column) and on smooth content, where the filters
     * other than None win */
    const int shapes[5][2] = {{1, 1}, {5, 1}, {1, 6}, {2, 3}, {64, 40}};
    for (int k = 0; k < 5; k++) {
        wobble_image *sm = NULL, *back = NULL;
        const int sw = shapes[k][0], sh = shapes[k][1];
        wobble_image_create(ctx, sw, sh, &sm);
        for (int y = 0; y < sh; y++)
            for (int x = 0; x < sw; x++)
                for (int c = 0; c < 3; c++)
                    wobble_image_data_mut(sm)[((size_t)y * sw + x) * 3 + c] = (uint8_t)(k == 4 ? x * 3 + y * 2 + c * 40 : rand());
        uint8_t *sb = NULL;
        size_t sn = 0;
        CHECK(wobble_image_encode_png(ctx, sm, &sb, &sn) == WOBBLE_OK, "encode png %dx%d", sw, sh);
        CHECK(sb && wobble_image_decode(ctx, sb, sn, "mem", &back) == WOBBLE_OK && t_same(back, sm), "png %dx%d lossless",
              sw, sh);
        if (k == 4) {
            CHECK(sn < (size_t)sw * sh, "a smooth 64x40 gradient compresses (%zu bytes)", sn);
            /* split into IDAT chunks of 100 bytes (the encoder's path past 1 GiB) */
            image_png_set_idat_max(100);
            uint8_t *mb = NULL;
            size_t mn = 0;
            wobble_image *mback = NULL;
            CHECK(wobble_image_encode_png(ctx, sm, &mb, &mn) == WOBBLE_OK, "encode png in 100-byte IDATs");
            int idats = 0;
            for (size_t q = 0; mb && q + 4 <= mn; q++) idats += !memcmp(mb + q, "IDAT", 4);
            CHECK(idats == (int)((sn - 57 + 99) / 100) && mn == sn + 12 * (size_t)(idats - 1),
                  "%d IDAT chunks, %zu bytes (one chunk: %zu)", idats, mn, sn);
            CHECK(mb && wobble_image_decode(ctx, mb, mn, "mem", &mback) == WOBBLE_OK && t_same(mback, sm),
                  "png in many IDATs lossless");
            image_png_set_idat_max(0);
            wobble_image_free(mback);
            wobble_free(mb);
        }
        wobble_image_free(back);
        wobble_image_free(sm);
        wobble_free(sb);
    }
    CHECK(wobble_image_encode_jpeg(ctx, rnd, 0, &buf, &n) == WOBBLE_EDOMAIN, "quality 0");
    CHECK(wobble_image_encode_jpeg(ctx, rnd, 101, &buf, &n) == WOBBLE_EDOMAIN, "quality 101");
    CHECK(wobble_image_encode_jpeg(ctx, rnd, 75, &buf, &n) == WOBBLE_OK, "encode jpeg");
    CHECK(wobble_detect_format(buf, n) == WOBBLE_FORMAT_JPEG, "jpeg magic");
    CHECK(wobble_image_decode(ctx, buf, n, "mem", &img) == WOBBLE_OK && wobble_image_width(img) == 37, "jpeg decodes");
    wobble_image_free(img);
    wobble_free(buf);
    wobble_image_free(rnd);
    wobble_ctx_free(ctx);
    return t_finish();
}
