/* wobble finetune */
#include "cli.h"

#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#ifdef WOBBLE_HAVE_MPI
/* the sum over every rank, the same on all (data-parallel fine-tuning) */
static int mpi_sum(void *comm, double *v, size_t n) {
    (void)comm;
    return cli_mpi_sum_double(v, n) ? -1 : 0;
}
#endif

static void help(FILE *f) {
    fprintf(f,
            "usage: wobble finetune --model M --data DATA --op OP[:LEVELS] [options] -o OUT_DIR\n"
            "       wobble finetune --resume OUT_DIR [--threads N] [--device D]\n"
            "\n"
            "Fine-tune the image tower so that its embeddings hold still under the\n"
            "operations while staying close to the original model (docs/finetuning.md):\n"
            "  L = -mean cos(f'(x), f'(P(x))) - lambda * mean cos(f(x), f'(x))\n"
            "with f the frozen original and f' the model being tuned (AdamW, warm-up +\n"
            "cosine schedule, global-norm clipping).\n"
            "\n"
            "options:\n"
            "  --model M          Hugging Face folder or .safetensors file (CLIP, DINOv2, ViT)\n"
            "  --data DATA        training images: any dataset 'wobble eval' reads\n"
            "  --labels FILE      IDX label file (labels are not used; IDX needs one)\n"
            "  --limit N          only the first N images of DATA\n"
            "  --op OP[:LEVELS]   operation; each image of a batch gets one of the --op\n"
            "                     (repeat to mix them) and a level drawn from LEVELS: a list\n"
            "                     \"a,b,c\" (default: the op's grid) or a range \"lo-hi\"\n"
            "                     (e.g. jpeg:10-90; integers for integer ops)\n"
            "  --steps N          optimiser steps (default 150)\n"
            "  --batch B          images per step (default 16; each also perturbed)\n"
            "  --views K          augmentation: K views of each training image, the image and\n"
            "                     K-1 seeded random crops (30-100%% of the area, aspect 3/4-4/3,\n"
            "                     mirrored half the time), each with its frozen target f(view)\n"
            "                     computed once (default 1: no augmentation)\n"
            "  --lr LR            peak learning rate (default 1e-4)\n"
            "  --warmup N         linear warm-up steps (default: 10%% of the steps)\n"
            "  --lambda L         weight of the utility term (default 1)\n"
            "  --objective O      cos (default) or l2: mean ||f'(P(x)) - f(x)||^2 +\n"
            "                     lambda * mean ||f'(x) - f(x)||^2 (lambda 0: FARE's form)\n"
            "  --scope S          all (default), last:N (the last N blocks, final norm and\n"
            "                     projection), or norms (norm parameters and biases only)\n"
            "  --clip C           global gradient-norm clip (default 1; 0: off)\n"
            "  --weight-decay W   AdamW decoupled weight decay on weight matrices (default 0)\n"
            "  --recompute        recompute each block in the backward pass instead of\n"
            "                     keeping its activations (less memory, about 1/3 more time)\n"
            "  --val N            hold out N images (seeded) and validate on them: R_div of\n"
            "                     the trained ops and mean cos(f(x), f'(x)) (default 0)\n"
            "  --val-every K      validate every K steps (default 50) and at the end\n"
            "  --save-every K     save the training state every K steps (default 50)\n"
            "  --seed S           batches, levels and noise (default 0)\n"
            "  --threads N        worker threads (default: all cores)\n"
            "  --device D         cpu (default), cuda or cuda:N: forward and backward passes\n"
            "                     on an NVIDIA GPU (fp32, cuBLAS; the optimiser, the loss and\n"
            "                     the data stay on the CPU)\n"
            "  -o, --output DIR   output folder\n"
            "  --resume DIR       continue the run in DIR from its last saved state (the\n"
            "                     settings come from DIR/finetune.json; any given must match)\n"
            "\n"
            "OUT_DIR gets model.safetensors (the checkpoint's tensor names and dtypes), the\n"
            "model folder's other files (config, preprocessor config, tokenizer), so any\n"
            "loader of the original loads it, and finetune.json, train_log.jsonl,\n"
            "val.jsonl, state/. The same seed and thread count give the same weights, bit\n"
            "for bit, also when the run was killed and resumed.\n"
            "Bad input (an unloadable model, an empty dataset, an impossible setting, a\n"
            "--resume folder of another run) gets a one-line error and exit status 1, and\n"
            "leaves no half-written file.\n"
            "exit status: 0 ok, 1 the run failed or a setting is impossible, 2 malformed\n"
            "command line\n");
}

typedef struct {
    cli_progress prog;
    int tty;
} ui_t;

static void on_progress(void *u, const wobble_finetune_status *st) {
    ui_t *ui = u;
    if (!ui->tty) return;
    if (!strcmp(st->phase, "targets")) {
        fprintf(stderr, "\rfrozen targets %lld/%lld        ", (long long)st->step, (long long)st->steps);
    } else {
        const double per = st->steps_done_here > 0 ? st->seconds / st->steps_done_here : 0;
        const double eta = per * (double)(st->steps - st->step);
        fprintf(stderr, "\rstep %lld/%lld  loss %.5f (rob %.5f, util %.5f)  |g| %.3g  lr %.2e  %.1f s/step  ETA %dm%02ds   ",
                (long long)st->step, (long long)st->steps, st->loss.total, st->loss.rob, st->loss.util, st->grad_norm,
                st->lr, per, (int)(eta / 60), (int)fmod(eta, 60));
    }
    fflush(stderr);
}

/* "jpeg", "jpeg:10,30", "jpeg:10-90", "hue:-0.2-0.2" (cli_parse_op_spec) */
static int parse_op(const char *spec, wobble_finetune_op *o, cli_op_spec *sp) {
    char err[512];
    memset(o, 0, sizeof *o);
    if (cli_parse_op_spec(spec, 1, sp, err, sizeof err)) {
        cli_error("finetune: %s", err);
        return -1;
    }
    o->name = sp->name;
    const wobble_op_info *info = wobble_op_find(sp->name);
    if (!info) {
        cli_error("finetune: unknown operation '%s' (see 'wobble ops')", sp->name);
        return -1;
    }
    if (sp->range) {
        o->range = 1;
        o->lo = sp->lo;
        o->hi = sp->hi;
    } else if (sp->n_levels) {
        o->levels = sp->levels;
        o->n_levels = sp->n_levels;
    } else {
        o->levels = info->grid;
        o->n_levels = info->grid_len;
    }
    return 0;
}

static int cmd_finetune_main(int argc, char **argv);

/* Under mpirun: data-parallel fine-tuning (docs/scaling.md); MPI is
 * initialised only then. */
int cmd_finetune(int argc, char **argv) {
#ifdef WOBBLE_HAVE_MPI
    if (cli_mpi_launched()) {
        if (cli_mpi_start(&argc, &argv)) return EXIT_FAIL;
        const int code = cmd_finetune_main(argc, argv);
        cli_mpi_stop();
        return code;
    }
#endif
    return cmd_finetune_main(argc, argv);
}

static int cmd_finetune_main(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *labels = NULL, *out = NULL, *resume = NULL, *scope = NULL,
               *objective = NULL;
    long long steps = LLONG_MIN, batch = LLONG_MIN, /* LLONG_MIN: not given */ threads = 0, limit = -1, warmup = -2, val = -1, val_every = -1, save_every = -1, views = -1;
    double lr = NAN, lambda = NAN, clip = NAN, wd = NAN;
    int recompute = -1, have_seed = 0;
    wobble_device device = WOBBLE_DEVICE_CPU;
    int device_index = 0;
    uint64_t seed = 0;
    char *op_specs[64];
    int n_specs = 0;
    enum { O_STEPS = 256, O_BATCH, O_LR, O_LAMBDA, O_SCOPE, O_OBJ, O_SEED, O_WARM, O_CLIP, O_WD, O_REC, O_VAL, O_VALE,
           O_SAVE, O_RESUME, O_LIMIT, O_LABELS, O_THREADS, O_VIEWS, O_DEVICE };
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'},     {"data", required_argument, 0, 'd'},
        {"op", required_argument, 0, 'p'},        {"output", required_argument, 0, 'o'},
        {"steps", required_argument, 0, O_STEPS}, {"batch", required_argument, 0, O_BATCH},
        {"lr", required_argument, 0, O_LR},       {"lambda", required_argument, 0, O_LAMBDA},
        {"scope", required_argument, 0, O_SCOPE}, {"objective", required_argument, 0, O_OBJ},
        {"seed", required_argument, 0, O_SEED},   {"warmup", required_argument, 0, O_WARM},
        {"clip", required_argument, 0, O_CLIP},   {"weight-decay", required_argument, 0, O_WD},
        {"recompute", no_argument, 0, O_REC},     {"val", required_argument, 0, O_VAL},
        {"val-every", required_argument, 0, O_VALE}, {"save-every", required_argument, 0, O_SAVE},
        {"views", required_argument, 0, O_VIEWS},
        {"resume", required_argument, 0, O_RESUME}, {"limit", required_argument, 0, O_LIMIT},
        {"labels", required_argument, 0, O_LABELS}, {"threads", required_argument, 0, O_THREADS},
        {"device", required_argument, 0, O_DEVICE},
        {"help", no_argument, 0, 'h'},            {0, 0, 0, 0}};
    optind = 1;
    int c;
#define INT_OPT(var, lo_, hi_, what)                                                    \
    if (cli_opt_int("finetune", what, optarg, lo_, hi_, &var)) return EXIT_USAGE;       \
    break
#define REAL_OPT(var, what)                                                             \
    if (cli_opt_real("finetune", what, optarg, -HUGE_VAL, HUGE_VAL, &var)) return EXIT_USAGE; \
    break
    while ((c = getopt_long(argc, argv, "ho:", lo, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'd': data = optarg; break;
        case 'o': out = optarg; break;
        case 'p':
            if (n_specs == 64) {
                cli_error("finetune: too many --op");
                return EXIT_USAGE;
            }
            op_specs[n_specs++] = optarg;
            break;
        case O_STEPS: INT_OPT(steps, -1000000000, 100000000, "--steps");
        case O_BATCH: INT_OPT(batch, -1000000000, 1000000000, "--batch");
        case O_WARM: INT_OPT(warmup, 0, 100000000, "--warmup");
        case O_VAL: INT_OPT(val, 0, 1 << 30, "--val");
        case O_VALE: INT_OPT(val_every, 1, 100000000, "--val-every");
        case O_SAVE: INT_OPT(save_every, 1, 100000000, "--save-every");
        case O_VIEWS: INT_OPT(views, 1, 256, "--views");
        case O_LIMIT: INT_OPT(limit, 1, 1LL << 31, "--limit");
        case O_THREADS: INT_OPT(threads, 1, 4096, "--threads");
        case O_LR: REAL_OPT(lr, "--lr");
        case O_LAMBDA: REAL_OPT(lambda, "--lambda");
        case O_CLIP: REAL_OPT(clip, "--clip");
        case O_WD: REAL_OPT(wd, "--weight-decay");
        case O_SCOPE: scope = optarg; break;
        case O_OBJ: objective = optarg; break;
        case O_REC: recompute = 1; break;
        case O_RESUME: resume = optarg; break;
        case O_LABELS: labels = optarg; break;
        case O_SEED:
            if (cli_opt_u64("finetune", "--seed", optarg, &seed)) return EXIT_USAGE;
            have_seed = 1;
            break;
        case O_DEVICE:
            if (cli_opt_device("finetune", optarg, &device, &device_index) ||
                cli_check_device("finetune", WOBBLE_PRECISION_FP32, device))
                return EXIT_USAGE;
            break;
        case 'h': help(stdout); return EXIT_OK;
        default: help(stderr); return EXIT_USAGE;
        }
    }
#undef INT_OPT
#undef REAL_OPT
    if (optind < argc) {
        cli_error("finetune: unexpected argument '%s'", argv[optind]);
        return EXIT_USAGE;
    }
    if (resume && out && strcmp(resume, out)) {
        cli_error("finetune: --resume %s and -o %s name different folders", resume, out);
        return EXIT_USAGE;
    }
    if (resume) out = resume;
    /* with --resume, unset settings come from the folder's finetune.json */
    json_t *saved = NULL, *sc = NULL;
    char **rs_specs = NULL;
    int n_rs = 0;
    if (resume) {
        char p[4200];
        snprintf(p, sizeof p, "%s/finetune.json", resume);
        json_error_t je;
        saved = json_load_file(p, 0, &je);
        if (!saved) {
            cli_error("%s: no fine-tuning run to resume (%s)", resume, je.text);
            return EXIT_FAIL;
        }
        sc = json_object_get(saved, "config");
#define SGET(k) json_object_get(sc, k)
        if (!model) model = json_string_value(json_object_get(SGET("model"), "path"));
        if (!data) data = json_string_value(json_object_get(SGET("dataset"), "path"));
        if (!labels) labels = json_string_value(json_object_get(SGET("dataset"), "labels"));
        if (limit < 0) limit = json_integer_value(json_object_get(SGET("dataset"), "limit"));
        if (steps == LLONG_MIN) steps = json_integer_value(SGET("steps"));
        if (batch == LLONG_MIN) batch = json_integer_value(SGET("batch"));
        if (warmup == -2) warmup = json_integer_value(SGET("warmup"));
        if (val < 0) val = json_integer_value(SGET("val"));
        if (val_every < 0) val_every = json_integer_value(SGET("val_every"));
        if (save_every < 0) save_every = json_integer_value(SGET("save_every"));
        if (views < 0) views = SGET("views") ? json_integer_value(SGET("views")) : 1;
        if (isnan(lr)) lr = json_number_value(SGET("lr"));
        if (isnan(lambda)) lambda = json_number_value(SGET("lambda"));
        if (isnan(clip)) clip = json_number_value(SGET("clip"));
        if (isnan(wd)) wd = json_number_value(json_object_get(SGET("adamw"), "weight_decay"));
        if (!objective) objective = json_string_value(SGET("objective"));
        if (!have_seed) seed = (uint64_t)json_integer_value(SGET("seed"));
        if (!scope) {
            static char sbuf[32];
            const char *s = json_string_value(SGET("scope"));
            if (s && !strcmp(s, "last"))
                snprintf(sbuf, sizeof sbuf, "last:%lld", (long long)json_integer_value(SGET("last_blocks")));
            else
                snprintf(sbuf, sizeof sbuf, "%s", s ? s : "all");
            scope = sbuf;
        }
        if (!n_specs) {
            json_t *ops = SGET("ops"), *o;
            size_t i;
            rs_specs = calloc(json_array_size(ops) + 1, sizeof(char *));
            json_array_foreach(ops, i, o) {
                char buf[2048];
                size_t n = (size_t)snprintf(buf, sizeof buf, "%s:", json_string_value(json_object_get(o, "op")));
                json_t *r = json_object_get(o, "range");
                if (r) {
                    snprintf(buf + n, sizeof buf - n, "%.17g-%.17g", json_number_value(json_array_get(r, 0)),
                             json_number_value(json_array_get(r, 1)));
                } else {
                    size_t k;
                    json_t *l;
                    json_array_foreach(json_object_get(o, "levels"), k, l) n += (size_t)snprintf(
                        buf + n, sizeof buf - n, "%s%.17g", k ? "," : "", json_number_value(l));
                }
                rs_specs[n_rs++] = strdup(buf);
                if (n_specs < 64) op_specs[n_specs++] = rs_specs[n_rs - 1];
            }
        }
#undef SGET
    }
    int exit_code = EXIT_OK;
    if (!model || !data || !out || !n_specs) {
        cli_error("finetune: %s is required (see 'wobble finetune --help')",
                  !model ? "--model" : !data ? "--data" : !out ? "-o OUT_DIR" : "--op");
        exit_code = EXIT_USAGE;
        goto early;
    }
    wobble_finetune_params P = wobble_finetune_default_params();
    if (steps != LLONG_MIN) P.steps = (int)steps;
    if (batch != LLONG_MIN) P.batch = (int)batch;
    if (warmup >= 0) P.warmup = (int)warmup;
    if (val >= 0) P.val = (int)val;
    if (val_every > 0) P.val_every = (int)val_every;
    if (save_every > 0) P.save_every = (int)save_every;
    if (views > 0) P.views = (int)views;
    if (!isnan(lr)) P.lr = lr;
    if (!isnan(lambda)) P.tune.lambda = lambda;
    if (!isnan(clip)) P.clip = clip;
    if (!isnan(wd)) P.tune.weight_decay = wd;
    P.tune.checkpoint = recompute > 0;
    P.seed = seed;
    P.resume = resume != NULL;
    P.model_path = model;
    P.data_path = data;
    P.labels_path = labels;
    P.data_limit = limit > 0 ? (int)limit : 0;
    if (objective) {
        if (!strcmp(objective, "cos")) P.tune.objective = WOBBLE_OBJECTIVE_COS;
        else if (!strcmp(objective, "l2")) P.tune.objective = WOBBLE_OBJECTIVE_L2;
        else {
            cli_error("finetune: --objective '%s' is not cos or l2", objective);
            exit_code = EXIT_USAGE;
            goto early;
        }
    }
    if (scope) {
        long long nb = 0;
        if (!strcmp(scope, "all")) P.tune.scope = WOBBLE_SCOPE_ALL;
        else if (!strcmp(scope, "norms")) P.tune.scope = WOBBLE_SCOPE_NORMS;
        else if (!strncmp(scope, "last:", 5) && !cli_parse_int(scope + 5, 1, 100000, &nb)) {
            P.tune.scope = WOBBLE_SCOPE_LAST;
            P.tune.last_blocks = (int)nb;
        } else {
            cli_error("finetune: --scope '%s' is not all, norms or last:N (N >= 1)", scope);
            exit_code = EXIT_USAGE;
            goto early;
        }
    }
    wobble_finetune_op ops[64];
    cli_op_spec specs[64];
    int n_ops = 0;
    for (int i = 0; i < n_specs; i++, n_ops++)
        if (parse_op(op_specs[i], &ops[i], &specs[i])) {
            n_ops++;
            exit_code = EXIT_USAGE;
            goto out;
        }
    P.ops = ops;
    P.n_ops = n_ops;
    /* everything that needs no model is checked before loading it */
    wobble_ctx *ctx = NULL;
    wobble_ctx_params cp = wobble_ctx_default_params();
    cp.threads = (int)threads;
    wobble_ctx_create(&cp, &ctx);
    wobble_model *m = NULL;
    wobble_dataset *ds = NULL;
    if (wobble_finetune_check_params(ctx, NULL, &P) != WOBBLE_OK) {
        cli_error("finetune: %s", wobble_last_error(ctx));
        exit_code = EXIT_FAIL;
        goto fail;
    }
    wobble_dataset_params dp = wobble_dataset_default_params();
    dp.labels_path = labels;
    dp.limit = P.data_limit;
    wobble_model_params mp = wobble_model_default_params();
    mp.device = device;
    mp.device_index = device_index;
    if (wobble_dataset_open(ctx, data, &dp, &ds) != WOBBLE_OK || wobble_model_load(ctx, model, &mp, &m) != WOBBLE_OK) {
        cli_error("%s", wobble_last_error(ctx));
        exit_code = EXIT_FAIL;
        goto fail;
    }
    ui_t ui = {{0, 0, 0}, isatty(2)};
    P.progress = on_progress;
    P.user = &ui;
    int rank = 0;
#ifdef WOBBLE_HAVE_MPI
    if (cli_mpi_launched()) {
        rank = cli_mpi_rank();
        P.ranks = cli_mpi_size();
        P.rank = rank;
        P.allreduce = mpi_sum;
        if (rank) P.progress = NULL; /* rank 0 speaks for the job */
    }
#endif
    wobble_finetune_summary sum;
    int rc = wobble_finetune_run(ctx, m, ds, &P, out, &sum);
    if (ui.tty && rank == 0) fprintf(stderr, "\r%*s\r", 140, "");
    if (rc != WOBBLE_OK) {
        cli_error("%s", wobble_last_error(ctx));
        exit_code = EXIT_FAIL;
        goto fail;
    }
    if (rank != 0) goto fail; /* the summary is rank 0's to print */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("fine-tuned %s on %d images (%zu trainable parameters): steps %d..%d, last loss %.5f (L_rob %.5f, "
           "L_util %.5f)\n",
           model, sum.train_images, sum.trainable, sum.start_step + 1, sum.steps, sum.loss.total, sum.loss.rob,
           sum.loss.util);
    if (sum.val_images)
        printf("validation (%d images): R_div %.5f -> %.5f, cos(f(x), f'(x)) %.5f -> %.5f\n", sum.val_images,
               sum.val_rdiv_before, sum.val_rdiv_after, sum.val_cos_before, sum.val_cos_after);
    const int done_here = sum.steps - sum.start_step;
    printf("%.1f s training (%.2f s/step, %.1f images/s); whole run %.1f s, %.1f s of CPU over %d threads; "
           "peak memory %.0f MB; model in %s/model.safetensors\n",
           sum.seconds, done_here ? sum.seconds / done_here : 0.0,
           sum.seconds > 0 ? done_here * P.batch / sum.seconds : 0.0, sum.seconds_total, sum.cpu_seconds,
           wobble_ctx_threads(ctx), ru.ru_maxrss / 1024.0, out);
fail:
    wobble_model_free(m);
    wobble_dataset_free(ds);
    wobble_ctx_free(ctx);
out:
    for (int i = 0; i < n_ops; i++) cli_op_spec_free(&specs[i]);
early:
    for (int i = 0; i < n_rs; i++) free(rs_specs[i]);
    free(rs_specs);
    json_decref(saved);
    return exit_code;
}
