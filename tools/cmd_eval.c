/* wobble eval */
#include "cli.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: wobble eval --model M --data DATA [--op NAME[:LEVELS]]... [options] -o OUT_DIR\n"
            "\n"
            "Measure how far each perturbation moves the model's embeddings: for every image\n"
            "the clean embedding and one per (op, level), the per-level values and the three\n"
            "metrics R_cos, R_euc, R_div (docs/metrics.md) per image and per dataset.\n"
            "\n"
            "DATA: a folder of images (recursive), an ImageFolder tree (class = subfolder),\n"
            "a CIFAR-10 binary file, or an IDX image file (its label file is found by name,\n"
            "or give --labels).\n"
            "\n"
            "options:\n"
            "  --model M          Hugging Face folder or .safetensors file\n"
            "  --data DATA        the dataset\n"
            "  --labels FILE      IDX label file\n"
            "  --op NAME[:LEVELS] an operation, with levels \"a,b,c\" (default: its grid);\n"
            "                     repeat for several (default: all nine at their grids)\n"
            "  --seed N           seed of the random operations (default 0)\n"
            "  --limit N          only the first N images\n"
            "  --batch N          images per forward pass at most (default 64; each image's\n"
            "                     embeddings are split into equal chunks)\n"
            "  --threads N        worker threads (default: all cores)\n"
            "  -o, --output DIR   output folder: config.json, cache/, per_image.jsonl,\n"
            "                     summary.json, summary.csv\n"
            "\n"
            "Re-running with the same arguments resumes from the cache and never re-embeds;\n"
            "the result files are written atomically and equal an uninterrupted run's. An\n"
            "unreadable image is reported, skipped and counted in summary.json.\n"
            "exit status: 0 ok, 1 some images failed or the run failed, 2 bad command line\n");
}

static void on_progress(void *u, long done, long total, const char *item) {
    ((cli_progress *)u)->total = total;
    cli_progress_update((cli_progress *)u, done, item);
}

static void on_warn(void *u, const char *msg) {
    cli_progress_end((cli_progress *)u);
    cli_error("%s (skipped)", msg);
}

static void print_table(const char *out) {
    char p[4096];
    snprintf(p, sizeof p, "%s/summary.json", out);
    json_t *s = json_load_file(p, 0, NULL);
    if (!s) return;
    json_t *ops = json_object_get(s, "ops");
    printf("%s on %s: %lld images (%lld failed)\n", json_string_value(json_object_get(json_object_get(s, "model"), "path")),
           json_string_value(json_object_get(json_object_get(s, "dataset"), "path")),
           (long long)json_integer_value(json_object_get(json_object_get(s, "dataset"), "evaluated")),
           (long long)json_integer_value(json_object_get(json_object_get(s, "dataset"), "failed_count")));
    printf("%-15s %-28s %9s %9s %9s %9s %9s\n", "op", "levels", "R_cos", "R_euc", "R_div", "R_div p90", "R_div max");
    size_t i;
    json_t *o;
    json_array_foreach(ops, i, o) {
        char lv[64] = "";
        size_t k;
        json_t *l;
        json_array_foreach(json_object_get(o, "levels"), k, l) {
            char t[24];
            snprintf(t, sizeof t, "%s%g", k ? "," : "", json_real_value(l));
            strncat(lv, t, sizeof lv - strlen(lv) - 1);
        }
        json_t *m = json_object_get(o, "metrics");
#define MEAN(name) json_real_value(json_object_get(json_object_get(m, name), "mean"))
        printf("%-15s %-28.28s %9.5f %9.5f %9.5f %9.5f %9.5f\n", json_string_value(json_object_get(o, "op")), lv,
               MEAN("R_cos"), MEAN("R_euc"), MEAN("R_div"),
               json_real_value(json_object_get(json_object_get(m, "R_div"), "p90")),
               json_real_value(json_object_get(json_object_get(m, "R_div"), "max")));
#undef MEAN
    }
    printf("(means over images; lower is more robust; details in %s/summary.json and summary.csv)\n", out);
    json_decref(s);
}

int cmd_eval(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *labels = NULL, *out = NULL;
    uint64_t seed = 0;
    long long limit = 0, batch = 64, threads = 0;
    char *op_specs[64];
    int n_specs = 0;
    static const struct option lo[] = {{"model", required_argument, 0, 'm'}, {"data", required_argument, 0, 'd'},
                                       {"labels", required_argument, 0, 'L'}, {"op", required_argument, 0, 'p'},
                                       {"seed", required_argument, 0, 's'},  {"limit", required_argument, 0, 'n'},
                                       {"batch", required_argument, 0, 'b'}, {"threads", required_argument, 0, 't'},
                                       {"output", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "ho:", lo, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'd': data = optarg; break;
        case 'L': labels = optarg; break;
        case 'o': out = optarg; break;
        case 'p':
            if (n_specs == 64) {
                cli_error("eval: too many --op");
                return EXIT_USAGE;
            }
            op_specs[n_specs++] = optarg;
            break;
        case 's':
            if (cli_parse_u64(optarg, &seed)) {
                cli_error("eval: --seed '%s' is not a non-negative integer", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'n':
            if (cli_parse_int(optarg, 1, 1LL << 31, &limit)) {
                cli_error("eval: --limit '%s' is not a positive integer", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'b':
            if (cli_parse_int(optarg, 1, 4096, &batch)) {
                cli_error("eval: --batch '%s' is not an integer in 1..4096", optarg);
                return EXIT_USAGE;
            }
            break;
        case 't':
            if (cli_parse_int(optarg, 1, 4096, &threads)) {
                cli_error("eval: --threads '%s' is not an integer in 1..4096", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'h': help(stdout); return EXIT_OK;
        default: help(stderr); return EXIT_USAGE;
        }
    }
    if (!model || !data || !out) {
        cli_error("eval: %s is required (see 'wobble eval --help')", !model ? "--model" : !data ? "--data" : "-o OUT_DIR");
        return EXIT_USAGE;
    }
    if (optind < argc) {
        cli_error("eval: unexpected argument '%s'", argv[optind]);
        return EXIT_USAGE;
    }
    /* operations */
    int n_ops = n_specs ? n_specs : wobble_op_count();
    wobble_eval_op *ops = calloc((size_t)n_ops, sizeof *ops);
    double **lv = calloc((size_t)n_ops, sizeof(double *));
    char **names = calloc((size_t)n_ops, sizeof(char *));
    int exit_code = EXIT_OK;
    wobble_ctx *ctx = NULL;
    wobble_model *m = NULL;
    wobble_dataset *ds = NULL;
    wobble_ctx_params cp = wobble_ctx_default_params();
    cp.threads = (int)threads;
    wobble_ctx_create(&cp, &ctx);
    /* NAME[:LEVELS] -> operations; wobble_eval_check_ops judges them */
    for (int o = 0; o < n_ops; o++) {
        const wobble_op_info *info = n_specs ? NULL : wobble_op_at(o);
        const char *colon = NULL;
        if (n_specs) {
            colon = strchr(op_specs[o], ':');
            size_t len = colon ? (size_t)(colon - op_specs[o]) : strlen(op_specs[o]);
            names[o] = strndup(op_specs[o], len);
            info = wobble_op_find(names[o]);
        }
        ops[o].name = info ? info->name : names[o];
        if (colon) {
            ops[o].n_levels = cli_parse_levels(colon + 1, &lv[o]);
            ops[o].levels = lv[o];
            if (ops[o].n_levels < 1) {
                cli_error("eval: bad level list '%s' for %s (expected numbers separated by commas)", colon + 1,
                          names[o]);
                exit_code = EXIT_USAGE;
                goto done;
            }
        } else if (info) {
            ops[o].levels = info->grid;
            ops[o].n_levels = info->grid_len;
        }
    }
    if (wobble_eval_check_ops(ctx, ops, n_ops) != WOBBLE_OK) {
        cli_error("%s", wobble_last_error(ctx));
        exit_code = EXIT_USAGE;
        goto done;
    }
    wobble_dataset_params dp = wobble_dataset_default_params();
    dp.labels_path = labels;
    dp.limit = (int)limit;
    if (wobble_dataset_open(ctx, data, &dp, &ds) != WOBBLE_OK) {
        cli_error("%s", wobble_last_error(ctx));
        exit_code = EXIT_FAIL;
        goto done;
    }
    wobble_model_params mp = wobble_model_default_params();
    mp.max_batch = (int)batch;
    if (wobble_model_load(ctx, model, &mp, &m) != WOBBLE_OK) {
        cli_error("%s", wobble_last_error(ctx));
        exit_code = EXIT_FAIL;
        goto done;
    }
    cli_progress prog;
    cli_progress_start(&prog, wobble_dataset_size(ds));
    wobble_eval_params ep = wobble_eval_default_params();
    ep.ops = ops;
    ep.n_ops = n_ops;
    ep.seed = seed;
    ep.batch = (int)batch;
    ep.model_path = model;
    ep.data_path = data;
    ep.progress = on_progress;
    ep.warn = on_warn;
    ep.user = &prog;
    wobble_eval_summary sum;
    int rc = wobble_eval_run(ctx, m, ds, &ep, out, &sum);
    cli_progress_end(&prog);
    if (rc != WOBBLE_OK) {
        cli_error("%s", wobble_last_error(ctx));
        exit_code = EXIT_FAIL;
        goto done;
    }
    print_table(out);
    fflush(stdout);
    fprintf(stderr, "wobble: %d images evaluated, %d failed; %d embeddings computed, %d images from the cache\n",
            sum.evaluated, sum.failed, sum.embedded, sum.from_cache);
    if (getenv("WOBBLE_TIMINGS"))
        fprintf(stderr,
                "wobble: timings {\"total\": %.3f, \"decode\": %.3f, \"perturb\": %.3f, \"preprocess\": %.3f, "
                "\"forward\": %.3f, \"metrics\": %.3f, \"io\": %.3f}\n",
                sum.t_total, sum.t_decode, sum.t_perturb, sum.t_preprocess, sum.t_forward, sum.t_metrics, sum.t_io);
    if (sum.failed) exit_code = EXIT_FAIL;
done:
    for (int o = 0; o < n_ops; o++) {
        free(lv[o]);
        free(names[o]);
    }
    free(lv);
    free(names);
    free(ops);
    wobble_dataset_free(ds);
    wobble_model_free(m);
    wobble_ctx_free(ctx);
    return exit_code;
}
