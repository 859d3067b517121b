#include "cli.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: wobble perturb --op NAME [--level K | --levels K1,K2,...] [options] INPUT... OUT\n"
            "\n"
            "Apply one operation to images. INPUT is an image file (PNG or JPEG) or a folder,\n"
            "searched recursively for .png/.jpg/.jpeg files.\n"
            "\n"
            "With one input file, one level and OUT ending in .png/.jpg/.jpeg, OUT is the output\n"
            "file. Otherwise OUT is a folder (created if needed) that receives, for every input\n"
            "and level, RELPATH_STEM__OP-LEVEL.png, where RELPATH is the input's path relative\n"
            "to the folder it was found in. Files are written atomically.\n"
            "\n"
            "options:\n"
            "  --op NAME           operation (see 'wobble ops')\n"
            "  --level K           one level\n"
            "  --levels K1,K2,...  several levels; without --level/--levels, the op's default grid\n"
            "  --seed N            seed for random operations (default 0). gaussian_noise also\n"
            "                      depends on the image content and the level; the imagenet_c.*\n"
            "                      corruptions draw exactly what imagecorruptions draws after\n"
            "                      np.random.seed(N) (N < 2^32), the same for every image\n"
            "  --format png|jpg    output format in folder mode (default png; jpg uses quality 95)\n"
            "  --threads N         worker threads (default: all cores)\n"
            "  --max-pixels N      refuse larger images (default 89478485; 0 = no limit)\n"
            "  -h, --help          this help\n"
            "\n"
            "exit status: 0 all written, 1 some input failed (reported, the others were written),\n"
            "             2 bad command line (nothing was written)\n");
}

static void level_str(double k, char *buf, size_t n) { snprintf(buf, n, "%g", k); }

int cmd_perturb(int argc, char **argv) {
    const char *opname = NULL, *level = NULL, *levels = NULL, *format = "png";
    uint64_t seed = 0;
    long long threads = 0, maxpix = -1;
    static const struct option lo[] = {{"op", required_argument, 0, 'o'},
                                       {"level", required_argument, 0, 'l'},
                                       {"levels", required_argument, 0, 'L'},
                                       {"seed", required_argument, 0, 's'},
                                       {"format", required_argument, 0, 'f'},
                                       {"threads", required_argument, 0, 't'},
                                       {"max-pixels", required_argument, 0, 'm'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'o': opname = optarg; break;
        case 'l': level = optarg; break;
        case 'L': levels = optarg; break;
        case 'f': format = optarg; break;
        case 's':
            if (cli_opt_u64("perturb", "--seed", optarg, &seed)) return EXIT_USAGE;
            break;
        case 't':
            if (cli_opt_int("perturb", "--threads", optarg, 1, 4096, &threads)) return EXIT_USAGE;
            break;
        case 'm':
            if (cli_opt_int("perturb", "--max-pixels", optarg, 0, (long long)1 << 50, &maxpix)) return EXIT_USAGE;
            break;
        case 'h': help(stdout); return EXIT_OK;
        default: help(stderr); return EXIT_USAGE;
        }
    }
    if (!opname) {
        cli_error("perturb: --op is required (see 'wobble ops')");
        return EXIT_USAGE;
    }
    const wobble_op_info *op = wobble_op_find(opname);
    if (!op) {
        cli_error("perturb: unknown operation '%s' (see 'wobble ops')", opname);
        return EXIT_USAGE;
    }
    if (op->suite && seed > 0xffffffffull) {
        cli_error("perturb: --seed %llu is above 4294967295, the largest seed np.random.seed accepts (%s)",
                  (unsigned long long)seed, op->name);
        return EXIT_USAGE;
    }
    if (level && levels) {
        cli_error("perturb: give --level or --levels, not both");
        return EXIT_USAGE;
    }
    if (strcmp(format, "png") && strcmp(format, "jpg")) {
        cli_error("perturb: --format must be png or jpg, not '%s'", format);
        return EXIT_USAGE;
    }
    double *lv = NULL;
    int nl;
    if (level || levels) {
        nl = cli_parse_levels(level ? level : levels, &lv);
        if (nl < 0 || (level && nl != 1)) {
            cli_error("perturb: bad level list '%s' (expected numbers separated by commas)", level ? level : levels);
            free(lv);
            return EXIT_USAGE;
        }
    } else {
        nl = op->grid_len;
        lv = malloc(sizeof(double) * nl);
        if (!lv) return EXIT_FAIL;
        memcpy(lv, op->grid, sizeof(double) * nl);
    }
    wobble_ctx_params cp = wobble_ctx_default_params();
    cp.threads = (int)threads;
    if (maxpix >= 0) cp.max_pixels = (uint64_t)maxpix;
    wobble_ctx *ctx = NULL;
    if (wobble_ctx_create(&cp, &ctx) != WOBBLE_OK) {
        cli_error("perturb: cannot create context");
        free(lv);
        return EXIT_FAIL;
    }
    for (int i = 0; i < nl; i++) {
        if (wobble_op_check_level(ctx, op, lv[i]) != WOBBLE_OK) {
            cli_error("perturb: %s", wobble_last_error(ctx));
            wobble_ctx_free(ctx);
            free(lv);
            return EXIT_USAGE;
        }
    }
    int npos = argc - optind;
    if (npos < 2) {
        cli_error("perturb: need at least one INPUT and an OUT (see 'wobble perturb --help')");
        wobble_ctx_free(ctx);
        free(lv);
        return EXIT_USAGE;
    }
    const char *out = argv[argc - 1];
    char **paths = NULL, **rel = NULL;
    int n = cli_collect_images(argv + optind, npos - 1, &paths, &rel);
    if (n < 0) {
        wobble_ctx_free(ctx);
        free(lv);
        return EXIT_FAIL;
    }
    if (n == 0) {
        cli_error("perturb: no images found in the inputs");
        wobble_ctx_free(ctx);
        free(lv);
        return EXIT_FAIL;
    }
    struct stat st;
    int single_file = 0;
    if (n == 1 && nl == 1 && npos == 2 && cli_is_image_path(out) && !(stat(out, &st) == 0 && S_ISDIR(st.st_mode))) {
        struct stat si;
        single_file = !(stat(argv[optind], &si) == 0 && S_ISDIR(si.st_mode));
    }
    if (!single_file && cli_is_image_path(out) && !(stat(out, &st) == 0 && S_ISDIR(st.st_mode))) {
        cli_error("perturb: OUT '%s' names an image file but %ld outputs would be written; give a folder",
                  out, (long)n * nl);
        cli_free_list(paths, n);
        cli_free_list(rel, n);
        wobble_ctx_free(ctx);
        free(lv);
        return EXIT_USAGE;
    }
    if (!single_file && wobble_mkdirs(ctx, out) != WOBBLE_OK) {
        cli_error("%s", wobble_last_error(ctx));
        cli_free_list(paths, n);
        cli_free_list(rel, n);
        wobble_ctx_free(ctx);
        free(lv);
        return EXIT_FAIL;
    }
    int failures = 0;
    long done = 0;
    cli_progress prog;
    cli_progress_start(&prog, (long)n * nl);
    for (int i = 0; i < n; i++) {
        wobble_image *img = NULL;
        if (wobble_image_read(ctx, paths[i], &img) != WOBBLE_OK) {
            cli_progress_end(&prog);
            cli_error("%s", wobble_last_error(ctx));
            failures += nl;
            done += nl;
            continue;
        }
        wobble_perturb_params pp = wobble_perturb_default_params();
        pp.seed = seed;
        pp.image_id = wobble_image_hash(img);
        pp.exact_seed = 1;
        for (int j = 0; j < nl; j++) {
            cli_progress_update(&prog, done, rel[i]);
            wobble_image *res = NULL;
            if (wobble_perturb(ctx, op->name, img, lv[j], &pp, &res) != WOBBLE_OK) {
                cli_progress_end(&prog);
                cli_error("%s: %s", paths[i], wobble_last_error(ctx));
                failures++;
                done++;
                continue;
            }
            char *dest;
            if (single_file) {
                dest = strdup(out);
            } else {
                char ls[64];
                level_str(lv[j], ls, sizeof ls);
                const char *dot = strrchr(rel[i], '.');
                size_t stem = dot ? (size_t)(dot - rel[i]) : strlen(rel[i]);
                size_t len = strlen(out) + stem + strlen(op->name) + strlen(ls) + 16;
                dest = malloc(len);
                if (dest) {
                    snprintf(dest, len, "%s/%.*s__%s-%s.%s", out, (int)stem, rel[i], op->name, ls, format);
                    char *slash = strrchr(dest, '/');
                    if (slash > dest + strlen(out)) {
                        *slash = 0;
                        wobble_mkdirs(ctx, dest); /* a failure shows when the file is written */
                        *slash = '/';
                    }
                }
            }
            if (!dest || wobble_image_write(ctx, res, dest) != WOBBLE_OK) {
                cli_progress_end(&prog);
                cli_error("%s", dest ? wobble_last_error(ctx) : "out of memory");
                failures++;
            }
            free(dest);
            wobble_image_free(res);
            done++;
        }
        wobble_image_free(img);
    }
    cli_progress_update(&prog, done, "");
    cli_progress_end(&prog);
    if (failures) cli_error("perturb: %d of %ld outputs failed", failures, (long)n * nl);
    cli_free_list(paths, n);
    cli_free_list(rel, n);
    wobble_ctx_free(ctx);
    free(lv);
    return failures ? EXIT_FAIL : EXIT_OK;
}
