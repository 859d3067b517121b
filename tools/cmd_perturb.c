#include "cli.h"

#include <getopt.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: wobble perturb --op NAME [--level K | --levels K1,K2,...] [options] INPUT... OUT\n"
            "       wobble perturb --suite imagenet-c|imagenet-c-all [--levels S1,...] [options] INPUT... OUT\n"
            "\n"
            "Apply one operation to images. INPUT is an image file (PNG or JPEG) or a folder,\n"
            "searched recursively for .png/.jpg/.jpeg files.\n"
            "\n"
            "With one input file, one level and OUT ending in .png/.jpg/.jpeg, OUT is the output\n"
            "file. Otherwise OUT is a folder (created if needed) that receives, for every input\n"
            "and level, RELPATH_STEM__OP-LEVEL.png, where RELPATH is the input's path relative\n"
            "to the folder it was found in. Files are written atomically and flushed to\n"
            "disk together when the last is written (exit status 0: all on disk).\n"
            "\n"
            "With --suite, OUT receives the ImageNet-C layout OUT/CORRUPTION/SEVERITY/RELPATH_STEM.EXT\n"
            "for the suite's corruptions (imagenet-c: the 15 standard; imagenet-c-all: all 19) at\n"
            "severities 1-5 (or --levels); each image draws its own noise, seeded from --seed, its\n"
            "content and the severity (as eval does). Images are processed in parallel.\n"
            "\n"
            "options:\n"
            "  --op NAME           operation (see 'wobble ops')\n"
            "  --level K           one level\n"
            "  --levels K1,K2,...  several levels; without --level/--levels, the op's default grid\n"
            "  --seed N            seed for random operations (default 0). gaussian_noise also\n"
            "                      depends on the image content and the level; the imagenet_c.*\n"
            "                      corruptions draw exactly what imagecorruptions draws after\n"
            "                      np.random.seed(N) (N < 2^32), the same for every image\n"
            "  --suite S           imagenet-c or imagenet-c-all (instead of --op)\n"
            "  --imagenet-pipeline before the operation Resize(256) and CenterCrop(224) as\n"
            "                      torchvision does on PIL images (bilinear), and write JPEG\n"
            "                      quality 85: the pipeline that made ImageNet-C (CIFAR-10-C-style\n"
            "                      sets for your own data)\n"
            "  --format png|jpg    output format in folder mode (default png; jpg uses quality 95)\n"
            "  --png-level N       PNG compression, 0 (none) to 12 (smallest, slowest); default 6.\n"
            "                      1 encodes up to 4x faster, files up to 14%% larger\n"
            "  --threads N         worker threads (default: all cores)\n"
            "  --max-pixels N      refuse larger images (default 89478485; 0 = no limit)\n"
            "  -h, --help          this help\n"
            "\n"
            "exit status: 0 all written, 1 some input failed (reported, the others were written),\n"
            "             2 bad command line (nothing was written)\n");
}

static void level_str(double k, char *buf, size_t n) { snprintf(buf, n, "%g", k); }

/* torchvision Resize(256) (shorter side, bilinear on a PIL image) then
 * CenterCrop(224): the crop's offsets are round((h - 224) / 2), halves to
 * even, as Python's round */
static int imagenet_pipeline(wobble_ctx *ctx, const wobble_image *in, wobble_image **out) {
    const int w = wobble_image_width(in), h = wobble_image_height(in);
    const int rw = w <= h ? 256 : (int)(256.0 * w / h), rh = w <= h ? (int)(256.0 * h / w) : 256;
    wobble_image *r = NULL, *c = NULL;
    int rc = wobble_image_resize(ctx, in, rw, rh, WOBBLE_FILTER_BILINEAR, &r);
    if (rc == WOBBLE_OK) rc = wobble_image_create(ctx, 224, 224, &c);
    if (rc == WOBBLE_OK) {
        const int top = (int)nearbyint((rh - 224) / 2.0), left = (int)nearbyint((rw - 224) / 2.0);
        for (int y = 0; y < 224; y++)
            memcpy(wobble_image_data_mut(c) + (size_t)y * 224 * 3,
                   wobble_image_data(r) + ((size_t)(top + y) * rw + left) * 3, 224 * 3);
    }
    wobble_image_free(r);
    if (rc != WOBBLE_OK) {
        wobble_image_free(c);
        return rc;
    }
    *out = c;
    return WOBBLE_OK;
}

/* where and how the outputs are written */
typedef struct {
    int suite, pipeline, single_file;
    const char *out, *format;
} perturb_job;

/* the output path of (image rel, op, level) */
static char *dest_path(const perturb_job *J, const char *rel, const wobble_op_info *op, double level) {
    char ls[64];
    level_str(level, ls, sizeof ls);
    const char *dot = strrchr(rel, '.'), *slash = strrchr(rel, '/');
    const size_t stem = dot && (!slash || dot > slash) ? (size_t)(dot - rel) : strlen(rel);
    const char *ext = J->pipeline ? "jpg" : J->format;
    const size_t len = strlen(J->out) + stem + strlen(op->name) + strlen(ls) + 32;
    char *d = malloc(len);
    if (!d) return NULL;
    if (J->suite)
        snprintf(d, len, "%s/%s/%s/%.*s.%s", J->out, op->name + strlen("imagenet_c."), ls, (int)stem, rel, ext);
    else
        snprintf(d, len, "%s/%.*s__%s-%s.%s", J->out, (int)stem, rel, op->name, ls, ext);
    return d;
}

static int write_one(wobble_ctx *ctx, const perturb_job *J, const wobble_image *img, const char *dest) {
    if (!J->single_file) {
        char *dir = strdup(dest);
        if (!dir) return WOBBLE_ENOMEM;
        char *slash = strrchr(dir, '/');
        if (slash && slash > dir) {
            *slash = 0;
            wobble_mkdirs(ctx, dir); /* a failure shows when the file is written */
        }
        free(dir);
    }
    if (J->pipeline) return wobble_image_write_jpeg(ctx, img, dest, 85);
    return wobble_image_write(ctx, img, dest);
}

int cmd_perturb(int argc, char **argv) {
    const char *opname = NULL, *level = NULL, *levels = NULL, *format = "png", *suite = NULL;
    uint64_t seed = 0;
    long long threads = 0, maxpix = -1, png_level = -1;
    int pipeline = 0;
    static const struct option lo[] = {{"op", required_argument, 0, 'o'},
                                       {"level", required_argument, 0, 'l'},
                                       {"levels", required_argument, 0, 'L'},
                                       {"seed", required_argument, 0, 's'},
                                       {"format", required_argument, 0, 'f'},
                                       {"threads", required_argument, 0, 't'},
                                       {"max-pixels", required_argument, 0, 'm'},
                                       {"suite", required_argument, 0, 'S'},
                                       {"imagenet-pipeline", no_argument, 0, 'P'},
                                       {"png-level", required_argument, 0, 'Z'},
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
        case 'S': suite = optarg; break;
        case 'P': pipeline = 1; break;
        case 's':
            if (cli_opt_u64("perturb", "--seed", optarg, &seed)) return EXIT_USAGE;
            break;
        case 't':
            if (cli_opt_int("perturb", "--threads", optarg, 1, 4096, &threads)) return EXIT_USAGE;
            break;
        case 'm':
            if (cli_opt_int("perturb", "--max-pixels", optarg, 0, (long long)1 << 50, &maxpix)) return EXIT_USAGE;
            break;
        case 'Z':
            if (cli_opt_int("perturb", "--png-level", optarg, 0, 12, &png_level)) return EXIT_USAGE;
            break;
        case 'h': help(stdout); return EXIT_OK;
        default: help(stderr); return EXIT_USAGE;
        }
    }
    if (!opname == !suite) {
        cli_error(opname ? "perturb: give --op or --suite, not both" : "perturb: --op is required (or --suite; see 'wobble ops')");
        return EXIT_USAGE;
    }
    const wobble_op_info *ops[64];
    int n_ops = 0;
    if (suite) {
        const int want = !strcmp(suite, "imagenet-c") ? 1 : !strcmp(suite, "imagenet-c-all") ? 2 : 0;
        if (!want) {
            cli_error("perturb: --suite '%s' is not imagenet-c or imagenet-c-all", suite);
            return EXIT_USAGE;
        }
        if (level) {
            cli_error("perturb: --suite takes --levels (severities), not --level");
            return EXIT_USAGE;
        }
        for (int i = 0; i < wobble_op_count() && n_ops < 64; i++)
            if (wobble_op_at(i)->suite && wobble_op_at(i)->suite <= want) ops[n_ops++] = wobble_op_at(i);
    } else {
        ops[0] = wobble_op_find(opname);
        if (!ops[0]) {
            cli_error("perturb: unknown operation '%s' (see 'wobble ops')", opname);
            return EXIT_USAGE;
        }
        n_ops = 1;
        if (ops[0]->suite && seed > 0xffffffffull) {
            cli_error("perturb: --seed %llu is above 4294967295, the largest seed np.random.seed accepts (%s)",
                      (unsigned long long)seed, ops[0]->name);
            return EXIT_USAGE;
        }
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
        nl = ops[0]->grid_len;
        lv = malloc(sizeof(double) * nl);
        if (!lv) return EXIT_FAIL;
        memcpy(lv, ops[0]->grid, sizeof(double) * nl);
    }
#ifdef __GLIBC__
    /* every image allocates and frees the same few buffers (file, pixels,
     * filtered rows, compressed output): keep them in the heap for the next
     * one instead of mapping and unmapping each (glibc's defaults mmap
     * blocks from 128 KB and trim its top from 256 KB; each fresh 4 KB page
     * then costs a fault, ~10 us on a VM): 2,239 -> 398 faults and 58 -> 34 ms
     * for 24 224x224 contrast outputs at --png-level 0 on one thread */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 128 << 20);
#endif
    wobble_ctx_params cp = wobble_ctx_default_params();
    cp.threads = (int)threads;
    if (maxpix >= 0) cp.max_pixels = (uint64_t)maxpix;
    /* no fsync per file: one flush of the output's file system at the end,
     * before the exit status says the outputs are there */
    cp.sync_writes = 0;
    if (png_level >= 0) cp.png_level = (int)png_level;
    wobble_ctx *ctx = NULL;
    if (wobble_ctx_create(&cp, &ctx) != WOBBLE_OK) {
        cli_error("perturb: cannot create context");
        free(lv);
        return EXIT_FAIL;
    }
    for (int o = 0; o < n_ops; o++)
        for (int i = 0; i < nl; i++) {
            if (wobble_op_check_level(ctx, ops[o], lv[i]) != WOBBLE_OK) {
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
    if (!suite && n == 1 && nl == 1 && npos == 2 && cli_is_image_path(out) && !(stat(out, &st) == 0 && S_ISDIR(st.st_mode))) {
        struct stat si;
        single_file = !(stat(argv[optind], &si) == 0 && S_ISDIR(si.st_mode));
    }
    if (!single_file && cli_is_image_path(out) && !(stat(out, &st) == 0 && S_ISDIR(st.st_mode))) {
        cli_error("perturb: OUT '%s' names an image file but %ld outputs would be written; give a folder",
                  out, (long)n * nl * n_ops);
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
    const perturb_job J = {suite != NULL, pipeline, single_file, out, format};
    /* the image's content id seeds the editing ops' noise and the suite's
     * streams; under --op imagenet_c.* the seed alone does (np.random.seed) */
    int need_id = suite != NULL;
    for (int o = 0; o < n_ops; o++) need_id |= !ops[o]->suite;
    const int threads_n = wobble_ctx_threads(ctx);
    const long total = (long)n * nl * n_ops;
    int failures = 0;
    long done = 0;
    cli_progress prog;
    cli_progress_start(&prog, total);
    /* images in parallel, each on a one-thread context of its own; with one
     * image its operations use all the threads instead */
    const int outer = n > 1 ? threads_n : 1;
#pragma omp parallel num_threads(outer)
    {
        wobble_ctx_params tp = cp;
        tp.threads = outer > 1 ? 1 : threads_n;
        wobble_ctx *tc = NULL;
        if (wobble_ctx_create(&tp, &tc) != WOBBLE_OK) tc = NULL;
#pragma omp for schedule(dynamic)
        for (int i = 0; i < n; i++) {
            int fails = 0, left = nl * n_ops; /* outputs of this image not yet counted as done */
            wobble_image *img = NULL, *src = NULL;
            if (!tc) {
                fails = left;
#pragma omp critical(perturb_report)
                cli_error("perturb: out of memory");
                goto next;
            }
            if (wobble_image_read(tc, paths[i], &img) != WOBBLE_OK ||
                (pipeline && imagenet_pipeline(tc, img, &src) != WOBBLE_OK)) {
#pragma omp critical(perturb_report)
                {
                    cli_progress_end(&prog);
                    if (img)
                        cli_error("%s: %s", paths[i], wobble_last_error(tc));
                    else
                        cli_error("%s", wobble_last_error(tc)); /* names the file */
                }
                fails = left;
                goto next;
            }
            if (!src) src = img, img = NULL;
            wobble_perturb_params pp = wobble_perturb_default_params();
            pp.seed = seed;
            pp.image_id = need_id ? wobble_image_hash(src) : 0;
            pp.exact_seed = !suite; /* --op: the np.random.seed(N) contract; --suite: a stream per image */
            for (int o = 0; o < n_ops; o++)
                for (int j = 0; j < nl; j++) {
#pragma omp critical(perturb_report)
                    cli_progress_update(&prog, done, rel[i]);
                    wobble_image *res = NULL;
                    char *dest = NULL;
                    int rc = wobble_perturb(tc, ops[o]->name, src, lv[j], &pp, &res);
                    if (rc == WOBBLE_OK) {
                        dest = single_file ? strdup(out) : dest_path(&J, rel[i], ops[o], lv[j]);
                        rc = dest ? write_one(tc, &J, res, dest) : WOBBLE_ENOMEM;
                    }
                    if (rc != WOBBLE_OK) {
                        fails++;
#pragma omp critical(perturb_report)
                        {
                            cli_progress_end(&prog);
                            if (!dest && res)
                                cli_error("perturb: out of memory");
                            else if (res)
                                cli_error("%s", wobble_last_error(tc));
                            else
                                cli_error("%s: %s", paths[i], wobble_last_error(tc));
                        }
                    }
                    free(dest);
                    wobble_image_free(res);
                    left--;
#pragma omp atomic
                    done++;
                }
        next:
            wobble_image_free(img);
            wobble_image_free(src);
#pragma omp atomic
            done += left;
#pragma omp atomic
            failures += fails;
        }
        wobble_ctx_free(tc);
    }
    cli_progress_update(&prog, done, "");
    cli_progress_end(&prog);
    int synced = 1;
    if (failures < total && wobble_sync_path(ctx, out) != WOBBLE_OK) {
        cli_error("%s", wobble_last_error(ctx));
        synced = 0;
    }
    if (failures) cli_error("perturb: %d of %ld outputs failed", failures, total);
    cli_free_list(paths, n);
    cli_free_list(rel, n);
    wobble_ctx_free(ctx);
    free(lv);
    return failures || !synced ? EXIT_FAIL : EXIT_OK;
}
