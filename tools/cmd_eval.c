/* wobble eval */
#include "cli.h"
#include "../src/core/internal.h" /* core_grow */

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#ifdef WOBBLE_HAVE_MPI
#endif
#include <time.h>
#include <unistd.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: wobble eval --model M --data DATA [--op NAME[:LEVELS]]... [options] -o OUT_DIR\n"
            "       wobble eval --task linear|knn --train TRAIN --model M --data TEST [...] -o OUT_DIR\n"
            "       wobble eval --task zeroshot --model CLIP --data TEST [...] -o OUT_DIR\n"
            "       wobble eval --task depth --model M --train TRAIN --data TEST [...] -o OUT_DIR\n"
            "       wobble eval --embeddings DIR [--op NAME[:LEVELS]]... [--limit N] -o OUT_DIR\n"
            "       wobble eval --embeddings DIR --task linear|knn [--train DIR2] [...] -o OUT_DIR\n"
            "\n"
            "--embeddings DIR evaluates embeddings computed by another tool (clean.npy,\n"
            "perturbed.npy, columns.json, index.jsonl; docs/embeddings.md): the same\n"
            "metrics, summaries and report, without a model. --op selects columns (a\n"
            "NAME alone: all of its levels); without --op, every column. With --task\n"
            "linear or knn, the classifier trains on the rows marked \"split\": \"train\"\n"
            "(or on the embedding folder --train names) and is tested on the others.\n"
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
            "                     repeat for several (default: the nine editing ops at their\n"
            "                     grids, unless --suite is given)\n"
            "  --suite S          add an ImageNet-C suite at severities 1-5: imagenet-c (the 15\n"
            "                     standard corruptions) or imagenet-c-all (all 19); with --task,\n"
            "                     downstream.json adds CE and mCE (docs/imagenet-c.md)\n"
            "  --seed N           seed of the random operations (default 0)\n"
            "  --limit N          only the first N images\n"
            "  --batch N          images per forward pass at most (default 64; each image's\n"
            "                     embeddings are split into equal chunks)\n"
            "  --threads N        worker threads (default: all cores)\n"
            "  --precision P      fp32 (default) or bf16 forward pass (needs AVX512_BF16 on\n"
            "                     the CPU; recorded in the outputs and the folder's lock)\n"
            "  --device D         cpu (default), cuda or cuda:N: the image tower on an NVIDIA\n"
            "                     GPU (recorded like the precision); --task depth runs on\n"
            "                     the CPU\n"
            "  --tf32             with --device cuda in fp32: cuBLAS may use TF32\n"
            "  -o, --output DIR   output folder: config.json, cache/, per_image.jsonl,\n"
            "                     summary.json, summary.csv, run.json (date, command,\n"
            "                     timings) and report.html (see 'wobble report --help')\n"
            "  --no-report        do not write report.html\n"
            "  --shard I/N        evaluate only images I, I+N, I+2N, ... (0 <= I < N; for\n"
            "                     Slurm array jobs and plain loops); 'wobble merge' combines\n"
            "                     the N shard folders into the bytes of one run\n"
            "\n"
            "downstream cost (docs/downstream.md): accuracy clean and per (op, level), the\n"
            "drop, per-class recall, per-image correctness joined to robustness, and fits\n"
            "predicting accuracy from R_cos / R_euc / R_div, in downstream.json,\n"
            "downstream.csv and downstream_per_image.jsonl (besides the files above):\n"
            "  --task T           linear (logistic-regression probe), knn, or zeroshot (CLIP)\n"
            "  --train TRAIN      labelled training set for linear and knn (any DATA form;\n"
            "                     its clean embeddings are cached in OUT_DIR/train)\n"
            "  --train-labels F   IDX label file of TRAIN\n"
            "  --train-limit N    only the first N training images\n"
            "  --l2 A,B,...       linear: L2 strengths to choose from on a held-out 20%% of\n"
            "                     TRAIN (default 1e-1 ... 1e-6 in half decades; one value:\n"
            "                     no choice; --seed also seeds the held-out split)\n"
            "  --k N              knn: neighbours (default 20)\n"
            "  --temperature T    knn: vote weight exp(cos / T) (default 0.07)\n"
            "  --tokenizer DIR    zeroshot: vocab.json + merges.txt or tokenizer.json\n"
            "                     (default: the model's folder)\n"
            "  --templates T      zeroshot: imagenet (the 80 CLIP templates, default),\n"
            "                     simple (\"a photo of a {}.\"), or a file, one per line\n"
            "  --classnames FILE  zeroshot: class names, one per line (default: the test\n"
            "                     set's; underscores read as spaces)\n"
            "  --bins N           per-image robustness bins for the fit (default 10)\n"
            "\n"
            "depth (docs/depth.md): a linear depth probe (DINOv2's linear head) on the frozen\n"
            "patch tokens, trained on TRAIN's clean images, then AbsRel, RMSE, log10, SiLog\n"
            "and delta1-3 on TEST clean and under every (op, level), joined to the same\n"
            "forward passes' R_cos / R_euc / R_div, with fits: depth.json, depth.csv,\n"
            "depth_per_image.jsonl. TRAIN and TEST: folders with image/ and depth/ (16-bit\n"
            "PNG, matched by file stem) or list files of \"IMAGE DEPTH\" lines:\n"
            "  --task depth --train TRAIN --data TEST\n"
            "  --train-frames A-B, --frames A-B   only those frames (0-based, sorted by name)\n"
            "  --depth-scale S    depth PNG units per metre (default 1000; TUM 5000, KITTI 256)\n"
            "  --d-min D, --d-max D   metres: bins and valid range (default 0.001, 10)\n"
            "  --steps N, --lr R  AdamW steps on the cached features (1000), peak rate (1e-2)\n"
            "  --eigen-crop       metrics inside Eigen's crop of 480x640 frames\n"
            "  --layers 1|4       the last block's tokens (1, default) or four blocks evenly\n"
            "                     spaced, concatenated (4: DINOv2's \"lin4\")\n"
            "\n"
            "Re-running with the same arguments resumes from the cache and never re-embeds;\n"
            "the result files are written atomically and equal an uninterrupted run's. An\n"
            "unreadable image is reported, skipped and counted in summary.json.\n"
            "exit status: 0 ok, 1 some images failed or the run failed, 2 bad command line\n");
}

static void report_warn(void *u, const char *msg) {
    (void)u;
    cli_error("%s", msg);
}

static void on_progress(void *u, long done, long total, const char *item) {
    ((cli_progress *)u)->total = total;
    cli_progress_update((cli_progress *)u, done, item);
}

static void on_warn(void *u, const char *msg) {
    cli_progress_end((cli_progress *)u);
    cli_error("%s (skipped)", msg);
}

/* The eval parameters every command path sets: operations, seed, the paths
 * recorded in the outputs, and progress on the terminal. */
static wobble_eval_params eval_params(const wobble_eval_op *ops, int n_ops, uint64_t seed, const char *model,
                                      const char *data, cli_progress *prog) {
    wobble_eval_params ep = wobble_eval_default_params();
    ep.ops = ops;
    ep.n_ops = n_ops;
    ep.seed = seed;
    ep.model_path = model;
    ep.data_path = data;
    ep.progress = on_progress;
    ep.user = prog;
    return ep;
}

static void print_table(const char *out) {
    char p[4096];
    snprintf(p, sizeof p, "%s/summary.json", out);
    json_t *s = json_load_file(p, 0, NULL);
    if (!s) return;
    json_t *ops = json_object_get(s, "ops");
    const char *src = json_string_value(json_object_get(json_object_get(s, "model"), "source"));
    printf("%s%s %s: %lld images (%lld failed)\n", src ? "" : json_string_value(json_object_get(json_object_get(s, "model"), "path")),
           src ? "embeddings from" : " on", json_string_value(json_object_get(json_object_get(s, "dataset"), "path")),
           (long long)json_integer_value(json_object_get(json_object_get(s, "dataset"), "evaluated")),
           (long long)json_integer_value(json_object_get(json_object_get(s, "dataset"), "failed_count")));
    printf("%-28s %-28s %9s %9s %9s %9s %9s\n", "op", "levels", "R_cos", "R_euc", "R_div", "R_div p90", "R_div max");
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
        printf("%-28s %-28.28s %9.5f %9.5f %9.5f %9.5f %9.5f\n", json_string_value(json_object_get(o, "op")), lv,
               MEAN("R_cos"), MEAN("R_euc"), MEAN("R_div"),
               json_real_value(json_object_get(json_object_get(m, "R_div"), "p90")),
               json_real_value(json_object_get(json_object_get(m, "R_div"), "max")));
#undef MEAN
    }
    printf("(means over images; lower is more robust; details in %s/summary.json and summary.csv)\n", out);
    json_decref(s);
}

/* run.json: what the result files leave out because it differs between
 * identical runs (date, command line, threads, timings); then report.html. */
static int write_run_and_report(wobble_ctx *ctx, const char *out, int argc, char **argv, const wobble_eval_summary *t,
                                double t_classifier, double t_classify, int no_report) {
    char date[32];
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    char cmd[8192] = "wobble";
    for (int i = 0; i < argc; i++) {
        const size_t l = strlen(cmd);
        snprintf(cmd + l, sizeof cmd - l, " %s", argv[i]);
    }
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) cwd[0] = 0;
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:i, s:{s:f, s:f, s:f, s:f, s:f, s:f, s:f}}", "wobble", wobble_version(),
                          "date", date, "command", cmd, "cwd", cwd, "threads", wobble_ctx_threads(ctx), "seconds", "total",
                          t->t_total, "decode", t->t_decode, "perturb", t->t_perturb, "preprocess", t->t_preprocess,
                          "forward", t->t_forward, "metrics", t->t_metrics, "io", t->t_io);
    if (j && t->t_gpu > 0) /* the GPU's busy time: against "forward", its busy share */
        json_object_set_new(json_object_get(j, "seconds"), "gpu", json_real(t->t_gpu));
    if (j && t_classifier >= 0) {
        json_t *sec = json_object_get(j, "seconds");
        json_object_set_new(sec, "train_classifier", json_real(t_classifier));
        json_object_set_new(sec, "classify", json_real(t_classify));
    }
    char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
    json_decref(j);
    char path[4096];
    snprintf(path, sizeof path, "%s/run.json", out);
    int rc = text ? wobble_write_file_atomic(ctx, path, text, strlen(text)) : WOBBLE_ENOMEM;
    free(text);
    if (rc) {
        cli_error("%s", rc == WOBBLE_ENOMEM ? "eval: out of memory" : wobble_last_error(ctx));
        return EXIT_FAIL;
    }
    if (no_report) return EXIT_OK;
    snprintf(path, sizeof path, "%s/report.html", out);
    wobble_report_params rp = wobble_report_default_params();
    rp.warn = report_warn;
    const char *dirs[1] = {out};
    if (wobble_report_write(ctx, dirs, 1, &rp, path) != WOBBLE_OK) {
        cli_error("%s", wobble_last_error(ctx));
        return EXIT_FAIL;
    }
    printf("report: %s\n", path);
    return EXIT_OK;
}

/* lines of a text file (empty lines and trailing whitespace dropped) */
static char **read_lines(const char *path, int *n) {
    FILE *f = fopen(path, "r");
    *n = 0;
    if (!f) return NULL;
    char **v = NULL, line[4096];
    size_t cap = 0;
    int ok = 1;
    while (ok && fgets(line, sizeof line, f)) {
        size_t l = strlen(line);
        while (l && (line[l - 1] == '\n' || line[l - 1] == '\r' || line[l - 1] == ' ' || line[l - 1] == '\t')) line[--l] = 0;
        if (!l) continue;
        if (core_grow(&v, &cap, (size_t)*n + 1, sizeof *v) || !(v[*n] = strdup(line)))
            ok = 0;
        else
            (*n)++;
    }
    fclose(f);
    if (ok && !v && !(v = calloc(1, sizeof(char *)))) ok = 0;
    if (!ok) {
        cli_free_list(v, *n);
        *n = 0;
        return NULL;
    }
    return v;
}

static void print_downstream(const char *out) {
    char p[4096];
    snprintf(p, sizeof p, "%s/downstream.json", out);
    json_t *s = json_load_file(p, 0, NULL);
    if (!s) return;
    json_t *clean = json_object_get(s, "clean");
    printf("%s task on %s: %lld test images, %zu classes; clean top-1 %.4f",
           json_string_value(json_object_get(s, "task")),
           json_string_value(json_object_get(json_object_get(s, "test"), "path")),
           (long long)json_integer_value(json_object_get(json_object_get(s, "test"), "evaluated")),
           json_array_size(json_object_get(s, "classes")), json_real_value(json_object_get(clean, "top1")));
    if (json_is_real(json_object_get(clean, "top5"))) printf(", top-5 %.4f", json_real_value(json_object_get(clean, "top5")));
    printf("\n%-28s %-10s %8s %8s %9s %9s\n", "op", "level", "top-1", "change", "cos_mean", "euc_mean");
    size_t i, k;
    json_t *o, *l;
    json_array_foreach(json_object_get(s, "ops"), i, o) {
        json_array_foreach(json_object_get(o, "per_level"), k, l) {
            printf("%-28s %-10g %8.4f %+8.4f %9.5f %9.5f\n", k ? "" : json_string_value(json_object_get(o, "op")),
                   json_real_value(json_object_get(l, "level")), json_real_value(json_object_get(l, "top1")),
                   -json_real_value(json_object_get(l, "top1_drop")), json_real_value(json_object_get(l, "cos_mean")),
                   json_real_value(json_object_get(l, "euc_mean")));
        }
    }
    json_t *po = json_object_get(json_object_get(s, "prediction"), "op");
    printf("accuracy predicted from robustness (over ops; leave-one-op-out mean abs error):\n");
    static const char *M[3] = {"R_cos", "R_euc", "R_div"};
    for (int q = 0; q < 3; q++) {
        json_t *f = json_object_get(json_object_get(po, "fits"), M[q]);
        json_t *lo = json_object_get(json_object_get(po, "leave_one_op_out"), M[q]);
        if (!json_is_object(f)) continue;
        char v[5][24];
        json_t *src[5] = {json_object_get(f, "slope"), json_object_get(f, "r2"), json_object_get(f, "pearson"),
                          json_object_get(f, "spearman"), json_object_get(lo, "mean_abs_error")};
        for (int k = 0; k < 5; k++) {
            if (json_is_number(src[k]))
                snprintf(v[k], sizeof v[k], k == 0 || k == 2 || k == 3 ? "%+.3f" : "%.3f", json_number_value(src[k]));
            else
                snprintf(v[k], sizeof v[k], "n/a");
        }
        printf("  %s: slope %s  R^2 %s  Pearson %s  Spearman %s  LOO error %s\n", M[q], v[0], v[1], v[2], v[3], v[4]);
    }
    json_t *ic = json_object_get(s, "imagenet_c");
    if (ic) {
        printf("ImageNet-C: mean top-1 %.4f over %lld (corruption, severity) pairs",
               json_number_value(json_object_get(ic, "mean_top1")),
               (long long)json_integer_value(json_object_get(ic, "mean_top1_pairs")));
        if (json_is_number(json_object_get(ic, "mCE")))
            printf("; mCE %.4f (AlexNet = 1; defined on ImageNet's 1000 classes)", json_number_value(json_object_get(ic, "mCE")));
        printf("\n");
    }
    printf("(details in %s/downstream.json, downstream.csv, downstream_per_image.jsonl)\n", out);
    json_decref(s);
}

static int run_downstream(wobble_ctx *ctx, wobble_model *m, wobble_dataset *test, wobble_eval_params *ep,
                          cli_progress *prog, int task, const char *train, const char *train_split,
                          const char *train_labels, int train_limit, const char *l2, int k, double temperature,
                          const char *tokenizer, const char *templates, const char *classnames, int bins,
                          const char *model, const char *out, int argc, char **argv, int no_report) {
    int exit_code = EXIT_OK, n_l2 = 0, n_tpl = 0, n_names = 0, mpi_bcast = 0;
    (void)mpi_bcast; /* used by the MPI build only */
    double *grid = NULL;
    char **tpl = NULL, **names = NULL;
    wobble_dataset *tr = NULL;
    wobble_tokenizer *tok = NULL;
    wobble_downstream_params dp = wobble_downstream_default_params();
    dp.task = (wobble_task)task;
    dp.bins = bins;
    dp.knn.k = k;
    dp.knn.temperature = temperature;
    dp.probe.seed = ep->seed;
    if (l2) {
        n_l2 = cli_parse_levels(l2, &grid);
        if (n_l2 < 1) {
            cli_error("eval: bad --l2 list '%s' (expected positive numbers separated by commas)", l2);
            exit_code = EXIT_USAGE;
            goto out;
        }
        dp.probe.l2_grid = grid;
        dp.probe.n_l2 = n_l2;
    }
    if (train) {
        wobble_dataset_params p = wobble_dataset_default_params();
        p.labels_path = train_labels;
        p.limit = train_limit;
        p.split = train_split;
        if (wobble_dataset_open(ctx, train, &p, &tr) != WOBBLE_OK) {
            cli_error("%s", wobble_last_error(ctx));
            exit_code = EXIT_FAIL;
            goto out;
        }
        dp.train = tr;
        dp.train_path = train;
    }
    if (task == WOBBLE_TASK_ZEROSHOT) {
        /* the text files first: they need no model */
        if (templates && strcmp(templates, "imagenet")) {
            if (!strcmp(templates, "simple")) {
                if (!(tpl = calloc(1, sizeof(char *))) || !(tpl[0] = strdup("a photo of a {}."))) {
                    cli_error("out of memory");
                    exit_code = EXIT_FAIL;
                    goto out;
                }
                n_tpl = 1;
            } else if (!(tpl = read_lines(templates, &n_tpl)) || n_tpl == 0) {
                cli_error("%s: cannot read templates (one per line, each with {})", templates);
                exit_code = EXIT_FAIL;
                goto out;
            }
            for (int i = 0; i < n_tpl; i++)
                if (!strstr(tpl[i], "{}")) {
                    cli_error("%s: template %d ('%s') has no {} for the class name", templates, i + 1, tpl[i]);
                    exit_code = EXIT_FAIL;
                    goto out;
                }
            dp.templates = (const char *const *)tpl;
            dp.n_templates = n_tpl;
        }
        if (classnames) {
            if (!(names = read_lines(classnames, &n_names)) || n_names == 0) {
                cli_error("%s: cannot read class names (one per line)", classnames);
                exit_code = EXIT_FAIL;
                goto out;
            }
            dp.class_names = (const char *const *)names;
            dp.n_class_names = n_names;
        }
        char dir[4096];
        cli_tokenizer_dir(model, tokenizer, dir, sizeof dir);
        if (wobble_model_has_text(m) && wobble_tokenizer_load(ctx, dir, &tok) != WOBBLE_OK) {
            cli_error("%s%s", wobble_last_error(ctx), tokenizer ? "" : " (give --tokenizer DIR)");
            exit_code = EXIT_FAIL;
            goto out;
        }
        dp.tokenizer = tok;
    }
    if (tr) prog->total = wobble_dataset_size(tr);
#ifdef WOBBLE_HAVE_MPI
    /* under mpirun: every rank embeds its shard of the training and test sets
     * into the shared caches (OUT/train/cache, OUT/cache); then rank 0 runs the
     * task on them, computing nothing again: the bytes of one process */
    int rank = 0, size = 1;
    mpi_bcast = 0;
    if (cli_mpi_launched()) rank = cli_mpi_rank(), size = cli_mpi_size();
    if (size > 1) {
        int bad = 0;
        if (tr) {
            char *tdir = malloc(strlen(out) + 8);
            if (tdir) snprintf(tdir, strlen(out) + 8, "%s/train", out);
            wobble_eval_params tp = *ep;
            tp.ops = NULL, tp.n_ops = 0, tp.data_path = train, tp.progress = NULL;
            tp.shard_index = rank, tp.shard_count = size, tp.cache_only = 1;
            if (!tdir || wobble_eval_run(ctx, m, tr, &tp, tdir, NULL) != WOBBLE_OK) {
                cli_error("rank %d: %s", rank, tdir ? wobble_last_error(ctx) : "eval: out of memory");
                bad = 1;
            }
            free(tdir);
        }
        wobble_eval_params vp = *ep;
        vp.progress = NULL, vp.warn = NULL; /* the images' problems are reported by rank 0's run */
        vp.shard_index = rank, vp.shard_count = size, vp.cache_only = 1;
        if (!bad && wobble_eval_run(ctx, m, test, &vp, out, NULL) != WOBBLE_OK) {
            cli_error("rank %d: %s", rank, wobble_last_error(ctx));
            bad = 1;
        }
        int any = 0;
        if (cli_mpi_sum_int(&bad, &any, 1)) any = 1;
        if (any) {
            exit_code = EXIT_FAIL;
            goto out;
        }
        if (rank != 0) { /* rank 0's outcome is the job's */
            cli_mpi_bcast_int(&exit_code, 1);
            goto out;
        }
        mpi_bcast = 1;
    }
#endif
    wobble_downstream_summary sum;
    int rc = wobble_downstream_run(ctx, m, test, ep, &dp, out, &sum);
    cli_progress_end(prog);
    if (rc != WOBBLE_OK) {
        cli_error("%s", wobble_last_error(ctx));
        exit_code = EXIT_FAIL;
        goto out;
    }
    print_downstream(out);
    exit_code = write_run_and_report(ctx, out, argc, argv, &sum.test, sum.t_train_classifier, sum.t_classify, no_report);
    fflush(stdout);
    fprintf(stderr,
            "wobble: %d test images (%d failed), %d training images; %d embeddings computed; classifier %.2f s, "
            "scoring %.2f s\n",
            sum.test.evaluated, sum.test.failed, sum.train_images, sum.test.embedded + sum.train.embedded,
            sum.t_train_classifier, sum.t_classify);
    if (sum.test.failed || sum.train.failed) exit_code = EXIT_FAIL;
out:
#ifdef WOBBLE_HAVE_MPI
    if (mpi_bcast) cli_mpi_bcast_int(&exit_code, 1);
#endif
    free(grid);
    for (int i = 0; i < n_tpl; i++) free(tpl[i]);
    free(tpl);
    for (int i = 0; i < n_names; i++) free(names[i]);
    free(names);
    wobble_tokenizer_free(tok);
    wobble_dataset_free(tr);
    return exit_code;
}

#define TASK_DEPTH 100

/* --task depth: the probe on TRAIN, the errors on TEST clean and perturbed */
static int run_depth(wobble_ctx *ctx, const char *model, long long batch, wobble_precision prec, const char *train,
                     const int *train_frames, const char *test, const int *frames, const wobble_eval_op *ops, int n_ops,
                     uint64_t seed, const wobble_depth_params *dp, const char *out, int argc, char **argv,
                     int no_report) {
    if (!(dp->d_min < dp->d_max)) {
        cli_error("eval: --d-min %g must be below --d-max %g", dp->d_min, dp->d_max);
        return EXIT_USAGE;
    }
    wobble_depth_set *tr = NULL, *te = NULL;
    wobble_model *m = NULL;
    int exit_code = EXIT_OK;
    wobble_model_params mp = wobble_model_default_params();
    mp.max_batch = (int)batch;
    mp.precision = prec;
    if (wobble_depth_set_open(ctx, train, train_frames[0], train_frames[1], &tr) != WOBBLE_OK ||
        wobble_depth_set_open(ctx, test, frames[0], frames[1], &te) != WOBBLE_OK ||
        wobble_model_load(ctx, model, &mp, &m) != WOBBLE_OK) {
        cli_error("%s", wobble_last_error(ctx));
        exit_code = EXIT_FAIL;
        goto out;
    }
    cli_progress prog;
    cli_progress_start(&prog, wobble_depth_set_size(tr));
    wobble_eval_params ep = eval_params(ops, n_ops, seed, model, test, &prog);
    wobble_depth_summary sum;
    const double t0 = core_now_s();
    int rc = wobble_depth_run(ctx, m, tr, te, &ep, dp, out, &sum);
    cli_progress_end(&prog);
    if (rc != WOBBLE_OK) {
        cli_error("%s", wobble_last_error(ctx));
        exit_code = EXIT_FAIL;
        goto out;
    }
    printf("depth probe on %d training images, %d test images (%s/depth.json)\n", sum.train_images, sum.test_images, out);
    printf("clean: AbsRel %.4f, RMSE %.4f m, delta1 %.4f\n", sum.clean_abs_rel, sum.clean_rmse, sum.clean_d1);
    printf("seconds: features %.1f, training %.1f, test %.1f; cached training features and depth maps %.1f MB\n",
           sum.t_features, sum.t_train, sum.t_test, sum.feature_bytes / 1e6);
    if (sum.resumed_head || sum.resumed_test)
        printf("resumed from %s/depth-state: %s, %d of %d test images\n", out,
               sum.resumed_head ? "the trained head" : "not the head", sum.resumed_test, sum.test_images);
    {
        wobble_eval_summary es;
        memset(&es, 0, sizeof es);
        es.t_total = core_now_s() - t0;
        es.t_forward = sum.t_features + sum.t_test;
        exit_code = write_run_and_report(ctx, out, argc, argv, &es, -1, -1, no_report);
    }
out:
    wobble_depth_set_free(tr), wobble_depth_set_free(te);
    wobble_model_free(m);
    return exit_code;
}

/* wobble eval --embeddings DIR: the folder's columns (all, or those --op
 * selects) through the same pipeline, without a model. */
#ifdef WOBBLE_HAVE_MPI

/* mpirun -n N wobble eval: rank R evaluates shard R/N into OUT/shards/R-of-N
 * (its own cache, so a killed job resumes), then rank 0 merges the shards
 * into OUT: the bytes of a one-process run with the same --threads. */
static int run_mpi(wobble_ctx *ctx, wobble_model *m, wobble_dataset *ds, wobble_eval_params *ep, cli_progress *prog,
                   const char *out, int argc, char **argv, int no_report, int rank, int size) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/shards/%d-of-%d", out, rank, size);
    ep->shard_index = rank;
    ep->shard_count = size;
    if (rank != 0) ep->progress = NULL; /* rank 0's progress stands for the job's; every rank reports its bad images */
    wobble_eval_summary sum;
    int rc = wobble_eval_run(ctx, m, ds, ep, dir, &sum);
    if (rank == 0) cli_progress_end(prog);
    if (rc != WOBBLE_OK) cli_error("rank %d: %s", rank, wobble_last_error(ctx));
    /* every rank's outcome: a failed rank fails the job (its message is above) */
    int mine[2] = {rc != WOBBLE_OK, sum.failed}, all[2] = {0, 0};
    if (cli_mpi_sum_int(mine, all, 2)) all[0] = 1;
    if (all[0]) return EXIT_FAIL;
    int code = EXIT_OK;
    if (rank == 0) {
        char **dirs = malloc(sizeof(char *) * (size_t)size);
        for (int r = 0; dirs && r < size; r++) {
            dirs[r] = malloc(strlen(out) + 48);
            if (dirs[r]) snprintf(dirs[r], strlen(out) + 48, "%s/shards/%d-of-%d", out, r, size);
        }
        wobble_eval_summary ms;
        if (!dirs || wobble_eval_merge(ctx, (const char *const *)dirs, size, out, &ms) != WOBBLE_OK) {
            cli_error("%s", dirs ? wobble_last_error(ctx) : "eval: out of memory");
            code = EXIT_FAIL;
        } else {
            print_table(out);
            ms.t_total = sum.t_total; /* rank 0's timings stand for the job's */
            code = write_run_and_report(ctx, out, argc, argv, &ms, -1, -1, no_report);
            fflush(stdout);
            fprintf(stderr, "wobble: %d ranks: %d images evaluated, %d failed\n", size, ms.evaluated, ms.failed);
            if (all[1]) code = EXIT_FAIL;
        }
        for (int r = 0; dirs && r < size; r++) free(dirs[r]);
        free(dirs);
    }
    cli_mpi_bcast_int(&code, 1);
    return code;
}
#endif

typedef struct {
    int task; /* -1: none */
    const char *train, *l2;
    int train_limit, k, bins;
    double temperature;
    uint64_t seed;
} emb_task;

static int run_embeddings(const char *dir, char **op_specs, int n_specs, int limit, int threads, const emb_task *t,
                          const char *out, int argc, char **argv, int no_report) {
    wobble_ctx_params cp = wobble_ctx_default_params();
    cp.threads = threads;
    wobble_ctx *ctx = NULL;
    wobble_dataset *ds = NULL;
    wobble_eval_op ops[64];
    double *lv = NULL;
    cli_op_spec specs[64];
    int n_ops = 0, exit_code = EXIT_FAIL;
    memset(specs, 0, sizeof specs);
    if (wobble_ctx_create(&cp, &ctx) != WOBBLE_OK) {
        cli_error("eval: out of memory");
        return EXIT_FAIL;
    }
    wobble_dataset_params dp = wobble_dataset_default_params();
    dp.limit = limit;
    dp.split = t->task >= 0 ? "test" : NULL; /* a task tests on the rows not marked train */
    if (wobble_dataset_open(ctx, dir, &dp, &ds) != WOBBLE_OK) {
        cli_error("%s", wobble_last_error(ctx));
        goto done;
    }
    if (strcmp(wobble_dataset_kind(ds), "embeddings") != 0) {
        cli_error("%s: not an embedding folder (clean.npy and index.jsonl; see docs/embeddings.md)", dir);
        goto done;
    }
    const int K = wobble_dataset_num_columns(ds);
    if (K == 0) {
        cli_error("%s: clean embeddings only (no perturbed.npy and columns.json): a training set for --train, "
                  "nothing to evaluate", dir);
        goto done;
    }
    if (!(lv = malloc(sizeof(double) * (size_t)K))) {
        cli_error("eval: out of memory");
        goto done;
    }
    /* the operations: those named by --op, else every column's, in the folder's order */
    const char *names[64];
    int n_names = 0;
    for (int s = 0; s < n_specs; s++) {
        char err[512];
        if (cli_parse_op_spec(op_specs[s], 0, &specs[s], err, sizeof err)) {
            cli_error("eval: %s", err);
            exit_code = EXIT_USAGE;
            goto done;
        }
        const wobble_op_info *oi = wobble_op_find(specs[s].name);
        names[n_names++] = oi ? oi->name : specs[s].name;
    }
    for (int c = 0; !n_specs && c < K; c++) {
        const char *op;
        wobble_dataset_column(ds, c, &op, NULL);
        int seen = 0;
        for (int q = 0; q < n_names; q++) seen |= !strcmp(names[q], op);
        if (!seen && n_names < 64) names[n_names++] = op;
    }
    int used = 0;
    for (int o = 0; o < n_names; o++) {
        ops[o].name = names[o];
        if (o < n_specs && specs[o].n_levels) {
            ops[o].levels = specs[o].levels;
            ops[o].n_levels = specs[o].n_levels;
            continue;
        }
        ops[o].levels = lv + used;
        ops[o].n_levels = 0;
        for (int c = 0; c < K; c++) {
            const char *op;
            double level;
            wobble_dataset_column(ds, c, &op, &level);
            if (!strcmp(op, names[o])) lv[used + ops[o].n_levels++] = level;
        }
        used += ops[o].n_levels;
        if (!ops[o].n_levels) {
            cli_error("%s: no column holds %s (see columns.json)", dir, names[o]);
            exit_code = EXIT_USAGE;
            goto done;
        }
    }
    n_ops = n_names;
    if (wobble_eval_check_ops(ctx, ops, n_ops) != WOBBLE_OK) {
        cli_error("%s", wobble_last_error(ctx));
        exit_code = EXIT_USAGE;
        goto done;
    }
    cli_progress prog;
    cli_progress_start(&prog, wobble_dataset_size(ds));
    wobble_eval_params ep = eval_params(ops, n_ops, t->seed, dir, dir, &prog);
    ep.warn = on_warn;
    if (t->task >= 0) {
        /* the training set: the folder's train rows, or another embedding folder */
        exit_code = run_downstream(ctx, NULL, ds, &ep, &prog, t->task, t->train ? t->train : dir,
                                   t->train ? NULL : "train", NULL, t->train_limit, t->l2, t->k, t->temperature, NULL,
                                   NULL, NULL, t->bins, dir, out, argc, argv, no_report);
        goto done;
    }
    wobble_eval_summary sum;
    int rc = wobble_eval_run(ctx, NULL, ds, &ep, out, &sum);
    cli_progress_end(&prog);
    if (rc != WOBBLE_OK) {
        cli_error("%s", wobble_last_error(ctx));
        goto done;
    }
    print_table(out);
    exit_code = write_run_and_report(ctx, out, argc, argv, &sum, -1, -1, no_report);
    fflush(stdout);
    fprintf(stderr, "wobble: %d images evaluated from %s\n", sum.evaluated, dir);
done:
    for (int s = 0; s < n_specs; s++) cli_op_spec_free(&specs[s]);
    free(lv);
    wobble_dataset_free(ds);
    wobble_ctx_free(ctx);
    return exit_code;
}

static int cmd_eval_main(int argc, char **argv);

/* Under mpirun, MPI lives for the whole command; otherwise it is never touched. */
int cmd_eval(int argc, char **argv) {
#ifdef WOBBLE_HAVE_MPI
    if (cli_mpi_launched()) {
        if (cli_mpi_start(&argc, &argv)) return EXIT_FAIL;
        int code = cmd_eval_main(argc, argv);
        cli_mpi_stop();
        return code;
    }
#endif
    return cmd_eval_main(argc, argv);
}

static int cmd_eval_main(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *labels = NULL, *out = NULL;
    const char *task = NULL, *train = NULL, *train_labels = NULL, *l2 = NULL, *tokenizer = NULL, *templates = NULL,
               *classnames = NULL;
    uint64_t seed = 0;
    const char *suite = NULL, *embeddings = NULL;
    int shard_i = 0, shard_n = 0;
    int no_report = 0;
    int frames[2] = {0, 0}, train_frames[2] = {0, 0};
    wobble_depth_params dpp = wobble_depth_default_params();
    /* defaults from the library */
    const wobble_eval_params ed = wobble_eval_default_params();
    const wobble_downstream_params dd = wobble_downstream_default_params();
    long long limit = 0, batch = ed.batch, threads = 0, train_limit = 0, knn_k = dd.knn.k, bins = dd.bins;
    double temperature = dd.knn.temperature;
    wobble_precision prec = WOBBLE_PRECISION_FP32;
    wobble_device device = WOBBLE_DEVICE_CPU;
    int device_index = 0, tf32 = 0;
    char *op_specs[64];
    int n_specs = 0;
    static const struct option lo[] = {{"model", required_argument, 0, 'm'}, {"data", required_argument, 0, 'd'},
                                       {"labels", required_argument, 0, 'L'}, {"op", required_argument, 0, 'p'},
                                       {"seed", required_argument, 0, 's'},  {"limit", required_argument, 0, 'n'},
                                       {"batch", required_argument, 0, 'b'}, {"threads", required_argument, 0, 't'},
                                       {"output", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'},
                                       {"task", required_argument, 0, 'T'}, {"train", required_argument, 0, 'R'},
                                       {"train-labels", required_argument, 0, 'B'},
                                       {"train-limit", required_argument, 0, 'N'}, {"l2", required_argument, 0, 'l'},
                                       {"k", required_argument, 0, 'k'}, {"temperature", required_argument, 0, 'e'},
                                       {"tokenizer", required_argument, 0, 'z'}, {"templates", required_argument, 0, 'P'},
                                       {"classnames", required_argument, 0, 'C'}, {"bins", required_argument, 0, 'i'},
                                       {"precision", required_argument, 0, 'Q'}, {"suite", required_argument, 0, 'S'},
                                       {"no-report", no_argument, 0, 'X'}, {"embeddings", required_argument, 0, 'E'},
                                       {"shard", required_argument, 0, 1010},
                                       {"device", required_argument, 0, 1011}, {"tf32", no_argument, 0, 1012},
                                       {"frames", required_argument, 0, 1001}, {"train-frames", required_argument, 0, 1002},
                                       {"depth-scale", required_argument, 0, 1003}, {"d-min", required_argument, 0, 1004},
                                       {"d-max", required_argument, 0, 1005}, {"steps", required_argument, 0, 1006},
                                       {"eigen-crop", no_argument, 0, 1007}, {"lr", required_argument, 0, 1008},
                                       {"layers", required_argument, 0, 1009},
                                       {0, 0, 0, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "ho:", lo, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'd': data = optarg; break;
        case 'L': labels = optarg; break;
        case 'o': out = optarg; break;
        case 'X': no_report = 1; break;
        case 1001:
        case 1002: {
            long long a = 0, b = 0;
            char *dash = strchr(optarg, '-');
            char first[32];
            snprintf(first, sizeof first, "%.*s", dash ? (int)(dash - optarg) : 0, optarg);
            if (!dash || cli_parse_int(first, 0, 1 << 30, &a) || cli_parse_int(dash + 1, 0, 1 << 30, &b) || b < a) {
                cli_error("eval: %s '%s' is not a frame range A-B", c == 1001 ? "--frames" : "--train-frames", optarg);
                return EXIT_USAGE;
            }
            if (c == 1001) frames[0] = (int)a, frames[1] = (int)(b - a + 1);
            else train_frames[0] = (int)a, train_frames[1] = (int)(b - a + 1);
            break;
        }
        case 1003:
            if (cli_opt_real("eval", "--depth-scale", optarg, 1e-9, 1e12, &dpp.depth_scale)) return EXIT_USAGE;
            break;
        case 1004:
            if (cli_opt_real("eval", "--d-min", optarg, 1e-9, 1e9, &dpp.d_min)) return EXIT_USAGE;
            break;
        case 1005:
            if (cli_opt_real("eval", "--d-max", optarg, 1e-9, 1e9, &dpp.d_max)) return EXIT_USAGE;
            break;
        case 1006: {
            long long v;
            if (cli_opt_int("eval", "--steps", optarg, 0, 1 << 24, &v)) return EXIT_USAGE;
            dpp.steps = (int)v;
            break;
        }
        case 1007: dpp.eigen_crop = 1; break;
        case 1009: {
            long long v = 0;
            if (cli_opt_int("eval", "--layers", optarg, 1, 4, &v)) return EXIT_USAGE;
            if (v != 1 && v != 4) {
                cli_error("eval: --layers '%s' is not 1 or 4", optarg);
                return EXIT_USAGE;
            }
            dpp.layers = (int)v;
            break;
        }
        case 1008:
            if (cli_opt_real("eval", "--lr", optarg, 1e-12, 10, &dpp.lr)) return EXIT_USAGE;
            break;
        case 'p':
            if (n_specs == 64) {
                cli_error("eval: too many --op");
                return EXIT_USAGE;
            }
            op_specs[n_specs++] = optarg;
            break;
        case 's':
            if (cli_opt_u64("eval", "--seed", optarg, &seed)) return EXIT_USAGE;
            break;
        case 'n':
            if (cli_opt_int("eval", "--limit", optarg, 1, 1LL << 31, &limit)) return EXIT_USAGE;
            break;
        case 'b':
            if (cli_opt_int("eval", "--batch", optarg, 1, 4096, &batch)) return EXIT_USAGE;
            break;
        case 't':
            if (cli_opt_int("eval", "--threads", optarg, 1, 4096, &threads)) return EXIT_USAGE;
            break;
        case 'Q':
            if (cli_opt_precision("eval", optarg, &prec)) return EXIT_USAGE;
            break;
        case 1011:
            if (cli_opt_device("eval", optarg, &device, &device_index)) return EXIT_USAGE;
            break;
        case 1012: tf32 = 1; break;
        case 'S': suite = optarg; break;
        case 'T': task = optarg; break;
        case 'R': train = optarg; break;
        case 'B': train_labels = optarg; break;
        case 'l': l2 = optarg; break;
        case 'z': tokenizer = optarg; break;
        case 'P': templates = optarg; break;
        case 'C': classnames = optarg; break;
        case 'N':
            if (cli_opt_int("eval", "--train-limit", optarg, 1, 1LL << 31, &train_limit)) return EXIT_USAGE;
            break;
        case 'k':
            if (cli_opt_int("eval", "--k", optarg, 1, 1 << 20, &knn_k)) return EXIT_USAGE;
            break;
        case 'i':
            if (cli_opt_int("eval", "--bins", optarg, 2, 1 << 20, &bins)) return EXIT_USAGE;
            break;
        case 'e':
            if (cli_opt_real("eval", "--temperature", optarg, 1e-12, 1e6, &temperature)) return EXIT_USAGE;
            break;
        case 'E': embeddings = optarg; break;
        case 1010: {
            long long a = -1, b = -1;
            const char *sl = strchr(optarg, '/');
            char head[32];
            if (sl && (size_t)(sl - optarg) < sizeof head) {
                memcpy(head, optarg, (size_t)(sl - optarg));
                head[sl - optarg] = 0;
            }
            if (!sl || (size_t)(sl - optarg) >= sizeof head || cli_parse_int(head, 0, 1 << 20, &a) ||
                cli_parse_int(sl + 1, 1, 1 << 20, &b) || a >= b) {
                cli_error("eval: --shard '%s' is not I/N with 0 <= I < N", optarg);
                return EXIT_USAGE;
            }
            shard_i = (int)a, shard_n = (int)b;
            break;
        }
        case 'h': help(stdout); return EXIT_OK;
        default: help(stderr); return EXIT_USAGE;
        }
    }
    int mpi_rank = 0, mpi_size = 1;
#ifdef WOBBLE_HAVE_MPI
    if (cli_mpi_launched()) mpi_rank = cli_mpi_rank(), mpi_size = cli_mpi_size();
    if (mpi_size > 1 && (shard_n || embeddings || (task && !strcmp(task, "depth")))) {
        if (mpi_rank == 0)
            cli_error("eval: under mpirun, eval runs the robustness evaluation or a classification task (not "
                      "--shard, --embeddings or --task depth)");
        return EXIT_USAGE;
    }
#endif
    if (shard_n && (task || embeddings)) {
        cli_error("eval: --shard is for the robustness run (not --task or --embeddings)");
        return EXIT_USAGE;
    }
    if (embeddings) {
        const char *clash = model ? "--model" : data ? "--data" : suite ? "--suite" : labels ? "--labels"
                          : prec != WOBBLE_PRECISION_FP32 ? "--precision" : device || tf32 ? "--device"
                          : train_labels ? "--train-labels"
                          : tokenizer || templates || classnames ? "--tokenizer" : NULL;
        emb_task et = {-1, train, l2, (int)train_limit, (int)knn_k, (int)bins, temperature, seed};
        if (task) et.task = !strcmp(task, "linear") ? WOBBLE_TASK_LINEAR : !strcmp(task, "knn") ? WOBBLE_TASK_KNN : -2;
        if (clash || !out || optind < argc) {
            cli_error("eval: %s", !out ? "-o OUT_DIR is required" : optind < argc ? "unexpected argument"
                                                                  : "--embeddings takes no --model, --data, --suite, "
                                                                    "--labels, --precision, --device or zero-shot "
                                                                    "options");
            return EXIT_USAGE;
        }
        if (et.task == -2 || (et.task < 0 && (train || l2 || train_limit))) {
            cli_error("eval: %s", et.task == -2 ? "--embeddings takes --task linear or knn (zero-shot and depth need "
                                                  "a model)"
                                                : "--train, --l2 and --train-limit need --task");
            return EXIT_USAGE;
        }
        return run_embeddings(embeddings, op_specs, n_specs, (int)limit, (int)threads, &et, out, argc, argv,
                              no_report);
    }
    if (!model || !data || !out) {
        cli_error("eval: %s is required (see 'wobble eval --help')", !model ? "--model" : !data ? "--data" : "-o OUT_DIR");
        return EXIT_USAGE;
    }
    if (optind < argc) {
        cli_error("eval: unexpected argument '%s'", argv[optind]);
        return EXIT_USAGE;
    }
    if (tf32 && (device != WOBBLE_DEVICE_CUDA || prec != WOBBLE_PRECISION_FP32)) {
        cli_error("eval: --tf32 needs --device cuda and fp32");
        return EXIT_USAGE;
    }
    if (task && !strcmp(task, "depth") && device != WOBBLE_DEVICE_CPU) {
        cli_error("eval: --task depth runs on the CPU (no --device)");
        return EXIT_USAGE;
    }
    if (cli_check_device("eval", prec, device)) return EXIT_USAGE;
    int task_id = -1;
    if (task) {
        task_id = !strcmp(task, "linear") ? WOBBLE_TASK_LINEAR : !strcmp(task, "knn") ? WOBBLE_TASK_KNN
                  : !strcmp(task, "zeroshot") ? WOBBLE_TASK_ZEROSHOT : !strcmp(task, "depth") ? TASK_DEPTH : -1;
        if (task_id < 0) {
            cli_error("eval: --task '%s' is not linear, knn, zeroshot or depth", task);
            return EXIT_USAGE;
        }
        if (task_id != WOBBLE_TASK_ZEROSHOT && !train) {
            cli_error("eval: --task %s needs --train TRAIN (%s)", task,
                      task_id == TASK_DEPTH ? "image/ + depth/ pairs" : "a labelled training set");
            return EXIT_USAGE;
        }
        if (task_id == WOBBLE_TASK_ZEROSHOT && train) {
            cli_error("eval: --task zeroshot takes no --train (the classes come from the text tower)");
            return EXIT_USAGE;
        }
    } else if (train || train_labels || train_limit || l2 || tokenizer || templates || classnames || frames[1] ||
               train_frames[1]) {
        cli_error("eval: --train, --l2, --tokenizer, --templates, --classnames and --frames need --task");
        return EXIT_USAGE;
    }
    /* operations: the --op specs, then the suite's corruptions; neither: the
     * editing ops */
    int suite_level = 0;
    if (suite) {
        suite_level = !strcmp(suite, "imagenet-c") ? 1 : !strcmp(suite, "imagenet-c-all") ? 2 : 0;
        if (!suite_level) {
            cli_error("eval: --suite '%s' is not imagenet-c or imagenet-c-all", suite);
            return EXIT_USAGE;
        }
    }
    const wobble_op_info *extra[64];
    int n_extra = 0;
    for (int i = 0; i < wobble_op_count(); i++) {
        const wobble_op_info *oi = wobble_op_at(i);
        if (suite_level ? (oi->suite && oi->suite <= suite_level) : (!n_specs && !oi->suite)) extra[n_extra++] = oi;
    }
    if (n_specs + n_extra > 64) {
        cli_error("eval: too many operations (%d)", n_specs + n_extra);
        return EXIT_USAGE;
    }
    int n_ops = n_specs + n_extra;
    wobble_eval_op *ops = calloc((size_t)n_ops, sizeof *ops);
    cli_op_spec *specs = calloc((size_t)n_ops, sizeof *specs);
    int exit_code = EXIT_OK;
    wobble_ctx *ctx = NULL;
    wobble_model *m = NULL;
    wobble_dataset *ds = NULL;
    wobble_ctx_params cp = wobble_ctx_default_params();
    cp.threads = (int)threads;
    if (!ops || !specs || wobble_ctx_create(&cp, &ctx) != WOBBLE_OK) {
        cli_error("eval: out of memory");
        exit_code = EXIT_FAIL;
        goto done;
    }
    /* NAME[:LEVELS] -> operations; wobble_eval_check_ops judges them */
    for (int o = 0; o < n_ops; o++) {
        const wobble_op_info *info = o < n_specs ? NULL : extra[o - n_specs];
        if (o < n_specs) {
            char err[512];
            if (cli_parse_op_spec(op_specs[o], 0, &specs[o], err, sizeof err)) {
                cli_error("eval: %s", err);
                exit_code = EXIT_USAGE;
                goto done;
            }
            info = wobble_op_find(specs[o].name);
        }
        ops[o].name = info ? info->name : specs[o].name;
        if (specs[o].n_levels) {
            ops[o].levels = specs[o].levels;
            ops[o].n_levels = specs[o].n_levels;
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
    if (task_id == TASK_DEPTH) {
        exit_code = run_depth(ctx, model, batch, prec, train, train_frames, data, frames, ops, n_ops, seed, &dpp, out,
                              argc, argv, no_report);
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
    mp.precision = prec;
    mp.device = device;
    mp.device_index = device_index;
    mp.tf32 = tf32;
    if (wobble_model_load(ctx, model, &mp, &m) != WOBBLE_OK) {
        cli_error("%s", wobble_last_error(ctx));
        exit_code = EXIT_FAIL;
        goto done;
    }
    cli_progress prog;
    cli_progress_start(&prog, wobble_dataset_size(ds));
    wobble_eval_params ep = eval_params(ops, n_ops, seed, model, data, &prog);
    ep.batch = (int)batch;
    ep.warn = on_warn;
    ep.shard_index = shard_i;
    ep.shard_count = shard_n;
    wobble_eval_summary sum;
    int rc;
#ifdef WOBBLE_HAVE_MPI
    if (mpi_size > 1 && task_id < 0) {
        exit_code = run_mpi(ctx, m, ds, &ep, &prog, out, argc, argv, no_report, mpi_rank, mpi_size);
        goto done;
    }
#endif
    (void)mpi_rank, (void)mpi_size;
    if (task_id >= 0) {
        exit_code = run_downstream(ctx, m, ds, &ep, &prog, task_id, train, NULL, train_labels, (int)train_limit, l2,
                                   (int)knn_k, temperature, tokenizer, templates, classnames, (int)bins, model, out, argc, argv, no_report);
        goto done;
    }
    rc = wobble_eval_run(ctx, m, ds, &ep, out, &sum);
    cli_progress_end(&prog);
    if (rc != WOBBLE_OK) {
        cli_error("%s", wobble_last_error(ctx));
        exit_code = EXIT_FAIL;
        goto done;
    }
    print_table(out);
    exit_code = write_run_and_report(ctx, out, argc, argv, &sum, -1, -1, no_report);
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
    for (int o = 0; specs && o < n_ops; o++) cli_op_spec_free(&specs[o]);
    free(specs);
    free(ops);
    wobble_dataset_free(ds);
    wobble_model_free(m);
    wobble_ctx_free(ctx);
    return exit_code;
}

static void merge_help(FILE *f) {
    fprintf(f, "usage: wobble merge SHARD_DIR... -o OUT_DIR [--no-report]\n"
               "\n"
               "Combine the folders of 'wobble eval --shard I/N' (every I from 0 to N-1 once)\n"
               "into OUT_DIR: config.json, per_image.jsonl, summary.json and summary.csv, the\n"
               "same bytes as one 'wobble eval' over every image, then run.json and report.html.\n"
               "Needs no model and no images. Refuses shards of other models, preprocessing,\n"
               "data, seeds, operations, precisions or devices, and missing or repeated shards.\n"
               "\n"
               "exit status: 0 merged, 1 bad or inconsistent shards (nothing written),\n"
               "2 bad command line\n");
}

int cmd_merge(int argc, char **argv) {
    const char *out = NULL;
    int no_report = 0;
    static const struct option lo[] = {{"output", required_argument, 0, 'o'}, {"no-report", no_argument, 0, 'X'},
                                       {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "ho:", lo, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'X': no_report = 1; break;
        case 'h': merge_help(stdout); return EXIT_OK;
        default: merge_help(stderr); return EXIT_USAGE;
        }
    }
    if (!out || optind >= argc) {
        cli_error("merge: %s (see 'wobble merge --help')", !out ? "-o OUT_DIR is required" : "no shard folders given");
        return EXIT_USAGE;
    }
    wobble_ctx *ctx = NULL;
    if (wobble_ctx_create(NULL, &ctx) != WOBBLE_OK) {
        cli_error("merge: out of memory");
        return EXIT_FAIL;
    }
    wobble_eval_summary sum;
    int exit_code = EXIT_OK;
    if (wobble_eval_merge(ctx, (const char *const *)(argv + optind), argc - optind, out, &sum) != WOBBLE_OK) {
        cli_error("%s", wobble_last_error(ctx));
        exit_code = EXIT_FAIL;
    } else {
        print_table(out);
        exit_code = write_run_and_report(ctx, out, argc, argv, &sum, -1, -1, no_report);
        fflush(stdout);
        fprintf(stderr, "wobble: %d shards merged: %d images evaluated, %d failed\n", argc - optind, sum.evaluated,
                sum.failed);
    }
    wobble_ctx_free(ctx);
    return exit_code;
}
