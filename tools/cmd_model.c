/* wobble info / wobble embed */
#include "cli.h"
#include "../src/core/internal.h" /* output sets, .npy encoding */

#include <getopt.h>
#include <jansson.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *filter_name(wobble_filter f) {
    static const char *n[] = {"box", "bilinear", "hamming", "bicubic", "lanczos"};
    return (unsigned)f <= WOBBLE_FILTER_LANCZOS ? n[f] : "?";
}

static json_t *info_json(const wobble_model_info *i) {
    json_t *pre = json_pack("{s:i, s:i, s:i, s:s, s:i, s:i, s:f, s:[f,f,f], s:[f,f,f]}", "resize_short", i->resize_short,
                            "resize_h", i->resize_h, "resize_w", i->resize_w, "filter", filter_name(i->filter),
                            "crop_h", i->crop_h, "crop_w", i->crop_w, "rescale", i->rescale, "mean", i->mean[0],
                            i->mean[1], i->mean[2], "std", i->std[0], i->std[1], i->std[2]);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:b, s:b, s:f, s:b, s:I, s:I, s:o, s:o}",
                     "path", i->path, "preset", i->preset, "arch", i->arch, "naming", i->naming, "activation", i->activation, "width",
                     i->width, "depth", i->depth, "heads", i->heads, "mlp_hidden", i->mlp_hidden, "patch", i->patch,
                     "native_grid", i->native_grid, "registers", i->registers, "embed_dim", i->embed_dim,
                     "layer_norm_eps", (double)i->layer_norm_eps, "layerscale", i->layerscale, "projection",
                     i->has_projection, "interpolate_offset", (double)i->interp_offset, "interpolate_antialias",
                     i->interp_antialias, "parameters", (json_int_t)i->n_params, "weight_bytes",
                     (json_int_t)i->weight_bytes, "preprocessing", pre, "text",
                     i->has_text ? json_pack("{s:i, s:i, s:i, s:i, s:i, s:f}", "width", i->text_width, "depth",
                                             i->text_depth, "heads", i->text_heads, "context_length", i->text_context,
                                             "vocab_size", i->text_vocab, "logit_scale", i->logit_scale)
                                 : json_null());
}

/* Where and how the model runs (--precision, --device, --tf32). */
typedef struct {
    wobble_precision prec;
    wobble_device device;
    int index, tf32;
} run_on;

static int load_model(const char *path, int batch, int threads, run_on on, wobble_ctx **ctx, wobble_model **m) {
    wobble_ctx_params cp = wobble_ctx_default_params();
    cp.threads = threads;
    if (wobble_ctx_create(&cp, ctx) != WOBBLE_OK) {
        cli_error("cannot create context");
        return EXIT_FAIL;
    }
    wobble_model_params mp = wobble_model_default_params();
    mp.max_batch = batch;
    mp.precision = on.prec;
    mp.device = on.device;
    mp.device_index = on.index;
    mp.tf32 = on.tf32;
    if (wobble_model_load(*ctx, path, &mp, m) != WOBBLE_OK) {
        cli_error("%s", wobble_last_error(*ctx));
        wobble_ctx_free(*ctx);
        *ctx = NULL;
        return EXIT_FAIL;
    }
    return EXIT_OK;
}

static void info_help(FILE *f) {
    fprintf(f, "usage: wobble info --model DIR_OR_FILE [--json]\n"
               "\n"
               "Print the detected architecture, tensor naming, hyper-parameters and\n"
               "preprocessing of an image encoder checkpoint.\n"
               "\n"
               "exit status: 0 ok, 1 the model cannot be loaded, 2 bad command line\n");
}

int cmd_info(int argc, char **argv) {
    const char *model = NULL;
    int json = 0;
    static const struct option lo[] = {{"model", required_argument, 0, 'm'},
                                       {"json", no_argument, 0, 'j'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "hm:", lo, NULL)) != -1) {
        if (c == 'm') model = optarg;
        else if (c == 'j') json = 1;
        else if (c == 'h') {
            info_help(stdout);
            return EXIT_OK;
        } else {
            info_help(stderr);
            return EXIT_USAGE;
        }
    }
    if (!model || optind < argc) {
        cli_error("info: %s", model ? "unexpected argument" : "--model is required");
        return EXIT_USAGE;
    }
    wobble_ctx *ctx;
    wobble_model *m;
    int rc = load_model(model, 1, 1, (run_on){WOBBLE_PRECISION_FP32, WOBBLE_DEVICE_CPU, 0, 0}, &ctx, &m);
    if (rc) return rc;
    wobble_model_info i;
    wobble_model_get_info(m, &i);
    if (json) {
        json_t *j = info_json(&i);
        char *s = json_dumps(j, JSON_INDENT(2));
        puts(s);
        free(s);
        json_decref(j);
    } else {
        printf("model          %s\n", i.path);
        printf("architecture   %s image tower (%s tensor names), preset: %s\n", i.arch, i.naming, i.preset);
        printf("width          %d, depth %d, heads %d, MLP %d (%s)\n", i.width, i.depth, i.heads, i.mlp_hidden,
               i.activation);
        printf("patch          %d px, native grid %dx%d (%d px)\n", i.patch, i.native_grid, i.native_grid,
               i.native_grid * i.patch);
        printf("tokens         1 class%s%d registers\n", i.registers ? " + " : ", ", i.registers);
        printf("norm           LayerNorm eps %g%s\n", (double)i.layer_norm_eps, i.layerscale ? ", LayerScale" : "");
        printf("embedding      %d-d (%s)\n", i.embed_dim,
               i.has_projection ? "projected CLS after ln_post" : "CLS after the final norm");
        if (!strcmp(i.arch, "dinov2"))
            printf("pos. interp.   bicubic, offset %g, antialias %s\n", (double)i.interp_offset,
                   i.interp_antialias ? "yes" : "no");
        if (i.has_text)
            printf("text tower     width %d, depth %d, heads %d, %d tokens, vocabulary %d, logit scale %g\n",
                   i.text_width, i.text_depth, i.text_heads, i.text_context, i.text_vocab, i.logit_scale);
        printf("parameters     %.2f M (%.1f MiB of weights)\n", i.n_params / 1e6, i.weight_bytes / 1048576.0);
        if (i.resize_short)
            printf("preprocessing  resize short side to %d (%s)", i.resize_short, filter_name(i.filter));
        else if (i.resize_h)
            printf("preprocessing  resize to %dx%d (%s)", i.resize_w, i.resize_h, filter_name(i.filter));
        else
            printf("preprocessing  no resize");
        if (i.crop_h) printf(", centre crop %dx%d", i.crop_w, i.crop_h);
        printf(", x %.9g, mean (%g, %g, %g), std (%g, %g, %g)\n", i.rescale, (double)i.mean[0], (double)i.mean[1],
               (double)i.mean[2], (double)i.std[0], (double)i.std[1], (double)i.std[2]);
    }
    wobble_model_free(m);
    wobble_ctx_free(ctx);
    return EXIT_OK;
}

static void embed_help(FILE *f) {
    fprintf(f,
            "usage: wobble embed --model DIR_OR_FILE [options] IMAGES_OR_FOLDERS... -o OUT.npy\n"
            "       wobble embed --model CLIP [options] --text T [--text T...] [--text-file F] -o OUT.npy\n"
            "\n"
            "Embed images with the model's own preprocessing and write a float32 NumPy\n"
            "array [N, D] plus OUT.npy.json listing the embedded inputs in row order.\n"
            "Folders are searched recursively for .png/.jpg/.jpeg files.\n"
            "With --text / --text-file (a whole CLIP checkpoint), embed texts with the\n"
            "text tower instead (clip.tokenize, then encode_text); the sidecar lists\n"
            "each text with its token count and whether it was cut to the context\n"
            "length (77 for the official models).\n"
            "\n"
            "options:\n"
            "  --model M         Hugging Face folder or .safetensors file (see 'wobble info')\n"
            "  -o, --output F    output .npy file (written atomically)\n"
            "  --batch N         images per forward pass (default 16)\n"
            "  --threads N       worker threads (default: all cores)\n"
            "  --precision P     fp32 (default) or bf16: bf16 weights and GEMM inputs with\n"
            "                    fp32 accumulation, norms and softmax (needs AVX512_BF16;\n"
            "                    see docs/models.md for speed and fidelity; on a GPU, any CPU)\n"
            "  --device D        cpu (default), cuda or cuda:N: the image tower on an NVIDIA\n"
            "                    GPU (a build with the CUDA toolkit; docs/models.md)\n"
            "  --tf32            with --device cuda in fp32: let cuBLAS use TF32 tensor cores\n"
            "  --normalize       L2-normalise the embeddings\n"
            "  --patch-tokens F  also write the patch tokens [N, P, width] to F (.npy)\n"
            "  --max-pixels N    refuse larger images (default 89478485; 0 = no limit)\n"
            "  --text T          a text to embed (repeatable; no images then)\n"
            "  --text-file F     texts to embed, one per line (UTF-8; empty lines skipped)\n"
            "  --tokenizer DIR   vocab.json + merges.txt or tokenizer.json (default: the\n"
            "                    model's folder)\n"
            "\n"
            "An unreadable image is reported and skipped (listed under \"failed\" in the\n"
            "sidecar); the others are embedded.\n"
            "exit status: 0 all embedded, 1 some inputs failed or the model cannot be\n"
            "loaded, 2 bad command line\n");
}

/* OUT.npy.json (the sidecar, taking `side`) staged beside OUT.npy. */
static int stage_sidecar(wobble_ctx *ctx, core_outset *set, const char *out, json_t *side) {
    char *txt = side ? json_dumps(side, JSON_INDENT(2)) : NULL;
    const size_t sl = strlen(out) + 6;
    char *sp = malloc(sl);
    if (sp) snprintf(sp, sl, "%s.json", out);
    int rc = txt && sp ? core_outset_add(ctx, set, sp, txt, strlen(txt))
                       : core_seterr(ctx, WOBBLE_ENOMEM, "%s: out of memory", out);
    free(sp);
    free(txt);
    json_decref(side);
    return rc;
}

/* Texts to embed: each --text, then each non-empty line of each --text-file
 * (a trailing CR dropped); where[i] names text i's origin for messages
 * ("--text 2", "FILE:LINE"). Returns the count, -1 on error (printed). */
static int collect_texts(wobble_ctx *ctx, char **given, int ng, char **files, int nf, char ***out, char ***where) {
    char **t = NULL, **w = NULL;
    int n = 0;
    size_t cap = 0, capw = 0;
    for (int i = 0; i < ng + nf; i++) {
        uint8_t *data = NULL;
        size_t size = 0;
        if (i >= ng && core_read_file(ctx, files[i - ng], &data, &size) != WOBBLE_OK) {
            cli_error("%s", wobble_last_error(ctx));
            cli_free_list(t, n);
            return -1;
        }
        if (i >= ng && size == 0) {
            free(data);
            continue;
        }
        if (i >= ng && memchr(data, 0, size)) {
            cli_error("%s: not a text file (it holds a NUL byte)", files[i - ng]);
            free(data);
            cli_free_list(t, n);
            cli_free_list(w, n);
            return -1;
        }
        long line = 0;
        const char *p = i < ng ? given[i] : (const char *)data;
        const char *end = i < ng ? p + strlen(p) : p + size;
        while (p <= end) {
            const char *nl = i < ng ? end : memchr(p, '\n', (size_t)(end - p));
            if (!nl) nl = end;
            size_t len = (size_t)(nl - p);
            if (i >= ng && len && p[len - 1] == '\r') len--;
            line++;
            if (len || i < ng) {
                char origin[4200];
                if (i < ng) snprintf(origin, sizeof origin, "--text %d", i + 1);
                else snprintf(origin, sizeof origin, "%s: line %ld", files[i - ng], line);
                int bad = core_grow((void **)&t, &cap, (size_t)n + 1, sizeof *t) != 0 ||
                          core_grow((void **)&w, &capw, (size_t)n + 1, sizeof *w) != 0;
                if (!bad) {
                    t[n] = strndup(p, len);
                    w[n] = strdup(origin);
                    if (!t[n] || !w[n]) {
                        free(t[n]), free(w[n]);
                        bad = 1;
                    }
                }
                if (bad) {
                    cli_error("embed: out of memory");
                    free(data);
                    cli_free_list(t, n);
                    cli_free_list(w, n);
                    return -1;
                }
                n++;
            }
            p = nl + 1;
        }
        free(data);
    }
    *out = t;
    *where = w;
    return n;
}

/* wobble embed --text ...: the CLIP text tower on tokenized texts. */
static int embed_texts(const char *model, const char *tokenizer, char **given, int ng, char **files, int nf,
                       const char *out, int batch, int threads, run_on on, int normalize) {
    wobble_ctx *ctx;
    wobble_model *m;
    const double t_start = core_now_s();
    int rc = load_model(model, batch, threads, on, &ctx, &m);
    if (rc) return rc;
    const double t_loaded = core_now_s();
    int exit_code = EXIT_FAIL;
    char **texts = NULL, **where = NULL;
    int n = 0;
    wobble_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    int *ntok = NULL, *cut = NULL;
    float *emb = NULL;
    json_t *list = NULL;
    if (!wobble_model_has_text(m)) {
        cli_error("%s: has no text tower (--text needs a whole CLIP checkpoint, image and text towers)", model);
        goto done;
    }
    char dir[4096];
    cli_tokenizer_dir(model, tokenizer, dir, sizeof dir);
    if (wobble_tokenizer_load(ctx, dir, &tok) != WOBBLE_OK) {
        cli_error("%s%s", wobble_last_error(ctx), tokenizer ? "" : " (give --tokenizer DIR)");
        goto done;
    }
    n = collect_texts(ctx, given, ng, files, nf, &texts, &where);
    if (n < 0) {
        n = 0;
        goto done;
    }
    if (n == 0) {
        cli_error("embed: no text given (the text files hold only empty lines)");
        goto done;
    }
    const int L = wobble_model_context_length(m), D = wobble_model_embed_dim(m);
    ids = malloc(sizeof(int32_t) * (size_t)n * L);
    ntok = malloc(sizeof(int) * (size_t)n);
    cut = malloc(sizeof(int) * (size_t)n);
    emb = malloc(sizeof(float) * (size_t)n * D);
    list = json_array();
    if (!ids || !ntok || !cut || !emb || !list) {
        cli_error("embed: out of memory for %d texts", n);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        int32_t *r = ids + (size_t)i * L;
        if (wobble_tokenize(ctx, tok, texts[i], L, r, &cut[i]) != WOBBLE_OK) {
            const char *msg = wobble_last_error(ctx);
            if (!strncmp(msg, "tokenizer: ", 11)) msg += 11;
            cli_error("%s: %s", where[i], msg);
            goto done;
        }
        int c = 0;
        while (c < L && r[c] != 0) c++;
        ntok[i] = c;
        json_array_append_new(list, json_pack("{s:s, s:i, s:b}", "text", texts[i], "tokens", c, "truncated", cut[i]));
    }
    wobble_embed_params ep = wobble_embed_default_params();
    ep.normalize = normalize;
    cli_progress prog;
    cli_progress_start(&prog, n);
    for (int s = 0; s < n; s += batch) {
        const int k = n - s < batch ? n - s : batch;
        cli_progress_update(&prog, s, texts[s]);
        if (wobble_model_encode_text(ctx, m, ids + (size_t)s * L, k, L, &ep, emb + (size_t)s * D) != WOBBLE_OK) {
            cli_progress_end(&prog);
            cli_error("embed: %s", wobble_last_error(ctx));
            goto done;
        }
    }
    cli_progress_update(&prog, n, "");
    cli_progress_end(&prog);
    /* OUT.npy and OUT.npy.json appear together or not at all */
    core_outset set = {0};
    core_buf eb = {0};
    const int64_t shape[2] = {n, D};
    wobble_model_info info;
    wobble_model_get_info(m, &info);
    rc = core_npy_encode(ctx, "<f4", emb, 2, shape, &eb);
    if (rc == WOBBLE_OK) rc = core_outset_add(ctx, &set, out, eb.p, eb.len);
    if (rc == WOBBLE_OK) {
        int truncated = 0;
        for (int i = 0; i < n; i++) truncated += cut[i];
        json_t *side = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:b, s:s, s:i, s:{s:f, s:f}, s:O}", "wobble",
                                 wobble_version(), "kind", "text", "model", model, "arch", info.arch, "naming",
                                 info.naming, "rows", n, "dim", D, "context_length", L, "normalized", normalize,
                                 "precision", info.precision, "truncated", truncated, "seconds", "load",
                                 t_loaded - t_start, "embed", core_now_s() - t_loaded, "texts", list);
        rc = stage_sidecar(ctx, &set, out, side);
    }
    if (rc == WOBBLE_OK) rc = core_outset_commit(ctx, &set);
    core_outset_abort(&set);
    core_buf_free(&eb);
    if (rc != WOBBLE_OK) {
        cli_error("%s", wobble_last_error(ctx));
        goto done;
    }
    exit_code = EXIT_OK;
done:
    json_decref(list);
    free(emb);
    free(cut);
    free(ntok);
    free(ids);
    cli_free_list(texts, n);
    cli_free_list(where, n);
    wobble_tokenizer_free(tok);
    wobble_model_free(m);
    wobble_ctx_free(ctx);
    return exit_code;
}

/* One input image decoded, preprocessed and normalised for the model
 * ([3, h, w] floats in px), or the one-line reason it could not be (err). */
typedef struct {
    float *px;
    int h, w;
    int failed;
    char *err; /* NULL when even the message could not be kept */
} prepped;

static void prep_image(wobble_ctx *ctx, const wobble_model *m, const char *path, prepped *out) {
    wobble_image *img = NULL, *u = NULL;
    int rc = wobble_image_read(ctx, path, &img);
    if (rc == WOBBLE_OK) rc = wobble_model_preprocess_u8(ctx, m, img, &u);
    if (rc == WOBBLE_OK) {
        out->h = wobble_image_height(u);
        out->w = wobble_image_width(u);
        out->px = malloc(sizeof(float) * 3 * (size_t)out->h * out->w);
        rc = out->px ? wobble_model_normalize(m, u, out->px) : WOBBLE_ENOMEM;
    }
    if (rc != WOBBLE_OK) {
        free(out->px);
        out->px = NULL;
        out->failed = 1;
        out->err = strdup(out->h && rc == WOBBLE_ENOMEM ? "embed: out of memory" : wobble_last_error(ctx));
    }
    wobble_image_free(img);
    wobble_image_free(u);
}

/* Images s .. s + k - 1 prepared on the workers (one context each). */
static void prep_batch(wobble_ctx **tctx, int workers, const wobble_model *m, char **paths, int s, int k,
                       prepped *pp) {
#pragma omp parallel for num_threads(workers) schedule(dynamic, 1)
    for (int j = 0; j < k; j++) prep_image(tctx[omp_get_thread_num()], m, paths[s + j], &pp[j]);
}

static void free_batch(prepped *pp, int k) {
    for (int j = 0; j < k; j++) {
        free(pp[j].px);
        free(pp[j].err);
        memset(&pp[j], 0, sizeof pp[j]);
    }
}

/* embed's state: what the batches' forward runs read, and the results
 * they add to. */
typedef struct {
    wobble_ctx *ctx;
    wobble_model *m;
    char **paths;
    const wobble_embed_params *ep;
    int D, width;
    const char *patch_out;
    cli_progress *prog;
    float *emb;      /* [n, D], rows in input order of the images embedded */
    int *ok;         /* [n]: embedded */
    json_t *failed;  /* the images that could not be read, with why */
    int failures, nok;
    float *group;    /* consecutive images of one preprocessed size, [g, 3, H, W] */
    size_t cap_group;
    float *patches;  /* --patch-tokens: [nok, np, width] */
    size_t patch_rows;
    int np, ph, pw;
} embed_state;

/* A prepared batch (images s .. s + k - 1), in input order: report the
 * failures, then one forward pass per run of equal size. */
static int run_batch(embed_state *S, prepped *pp, int s, int k) {
    int rc = WOBBLE_OK;
    for (int j = 0; j < k && rc == WOBBLE_OK;) {
        if (pp[j].failed) {
            const char *why = pp[j].err ? pp[j].err : "out of memory";
            cli_progress_end(S->prog);
            cli_error("%s", why);
            json_array_append_new(S->failed, json_pack("{s:s, s:s}", "path", S->paths[s + j], "error", why));
            S->failures++;
            j++;
            continue;
        }
        const int H = pp[j].h, W = pp[j].w;
        int g = j + 1;
        while (g < k && !pp[g].failed && pp[g].h == H && pp[g].w == W) g++;
        if (S->patch_out && S->ph && (H != S->ph || W != S->pw)) {
            cli_error("embed: --patch-tokens needs one preprocessed size for every image");
            return WOBBLE_EINVAL;
        }
        const size_t per = (size_t)3 * H * W;
        const float *px = pp[j].px;
        if (g - j > 1) { /* one contiguous [g - j, 3, H, W] input */
            if ((size_t)(g - j) * per > S->cap_group) {
                float *ng = realloc(S->group, sizeof(float) * (size_t)(g - j) * per);
                if (!ng) {
                    cli_error("embed: out of memory");
                    return WOBBLE_ENOMEM;
                }
                S->group = ng;
                S->cap_group = (size_t)(g - j) * per;
            }
            for (int i = j; i < g; i++) memcpy(S->group + (size_t)(i - j) * per, pp[i].px, sizeof(float) * per);
            px = S->group;
        }
        float *e = S->emb + (size_t)S->nok * S->D;
        if (S->patch_out) {
            S->ph = H, S->pw = W;
            S->np = wobble_model_num_patches(S->m, H, W);
            float *np2 = realloc(S->patches, sizeof(float) * (S->patch_rows + (size_t)(g - j) * S->np) * S->width);
            if (!np2) {
                cli_error("embed: out of memory");
                return WOBBLE_ENOMEM;
            }
            S->patches = np2;
            rc = wobble_model_forward(S->ctx, S->m, px, g - j, H, W, S->ep, e, S->patches + S->patch_rows * (size_t)S->width);
            S->patch_rows += (size_t)(g - j) * S->np;
        } else {
            rc = wobble_model_forward(S->ctx, S->m, px, g - j, H, W, S->ep, e, NULL);
        }
        if (rc != WOBBLE_OK) {
            cli_progress_end(S->prog);
            cli_error("embed: %s", wobble_last_error(S->ctx));
            break;
        }
        for (int i = j; i < g; i++) S->ok[s + i] = 1;
        S->nok += g - j;
        j = g;
    }
    return rc;
}

typedef struct {
    embed_state *S;
    prepped *pp;
    int s, k, rc;
} batch_job;

static void *run_batch_thread(void *arg) {
    batch_job *b = arg;
    b->rc = run_batch(b->S, b->pp, b->s, b->k);
    return NULL;
}

int cmd_embed(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *patch_out = NULL, *tokenizer = NULL;
    long long batch = wobble_model_default_params().max_batch, threads = 0, maxpix = -1;
    char **texts = NULL, **text_files = NULL;
    int ntexts = 0, nfiles = 0;
    int normalize = 0;
    run_on on = {WOBBLE_PRECISION_FP32, WOBBLE_DEVICE_CPU, 0, 0};
    static const struct option lo[] = {{"model", required_argument, 0, 'm'},  {"output", required_argument, 0, 'o'},
                                       {"precision", required_argument, 0, 'P'},
                                       {"device", required_argument, 0, 'D'}, {"tf32", no_argument, 0, 'G'},
                                       {"batch", required_argument, 0, 'b'},  {"threads", required_argument, 0, 't'},
                                       {"normalize", no_argument, 0, 'n'},    {"patch-tokens", required_argument, 0, 'p'},
                                       {"max-pixels", required_argument, 0, 'x'}, {"help", no_argument, 0, 'h'},
                                       {"text", required_argument, 0, 'T'},   {"text-file", required_argument, 0, 'F'},
                                       {"tokenizer", required_argument, 0, 'z'}, {0, 0, 0, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "hm:o:", lo, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'o': out = optarg; break;
        case 'p': patch_out = optarg; break;
        case 'n': normalize = 1; break;
        case 'b':
            if (cli_opt_int("embed", "--batch", optarg, 1, 4096, &batch)) return EXIT_USAGE;
            break;
        case 't':
            if (cli_opt_int("embed", "--threads", optarg, 1, 4096, &threads)) return EXIT_USAGE;
            break;
        case 'x':
            if (cli_opt_int("embed", "--max-pixels", optarg, 0, (long long)1 << 50, &maxpix)) return EXIT_USAGE;
            break;
        case 'P':
            if (cli_opt_precision("embed", optarg, &on.prec)) return EXIT_USAGE;
            break;
        case 'D':
            if (cli_opt_device("embed", optarg, &on.device, &on.index)) return EXIT_USAGE;
            break;
        case 'G':
            on.tf32 = 1;
            break;
        case 'T':
        case 'F': {
            char ***l = c == 'T' ? &texts : &text_files;
            int *nl = c == 'T' ? &ntexts : &nfiles;
            char **g = realloc(*l, sizeof(char *) * (size_t)(*nl + 1));
            if (!g) {
                free(texts), free(text_files);
                cli_error("embed: out of memory");
                return EXIT_FAIL;
            }
            g[(*nl)++] = optarg;
            *l = g;
            break;
        }
        case 'z': tokenizer = optarg; break;
        case 'h': free(texts), free(text_files); embed_help(stdout); return EXIT_OK;
        default: free(texts), free(text_files); embed_help(stderr); return EXIT_USAGE;
        }
    }
    const char *usage = !model ? "--model is required" : !out ? "-o OUT.npy is required" : NULL;
    if (!usage && (ntexts || nfiles) && optind < argc) usage = "give images or --text / --text-file, not both";
    if (!usage && (ntexts || nfiles) && patch_out) usage = "--patch-tokens is for images, not --text";
    if (!usage && (ntexts || nfiles) && maxpix >= 0) usage = "--max-pixels is for images, not --text";
    if (!usage && tokenizer && !ntexts && !nfiles) usage = "--tokenizer needs --text or --text-file";
    if (!usage && on.tf32 && on.device != WOBBLE_DEVICE_CUDA) usage = "--tf32 needs --device cuda";
    if (!usage && on.tf32 && on.prec != WOBBLE_PRECISION_FP32) usage = "--tf32 is for fp32, not bf16";
    if (!usage && (ntexts || nfiles) && on.device != WOBBLE_DEVICE_CPU)
        usage = "--device is for images (the text tower runs on the CPU)";
    if (!usage && cli_check_device("embed", on.prec, on.device)) {
        free(texts), free(text_files);
        return EXIT_USAGE;
    }
    if (usage) {
        free(texts), free(text_files);
        cli_error("embed: %s (see 'wobble embed --help')", usage);
        return EXIT_USAGE;
    }
    if (ntexts || nfiles) {
        int rc = embed_texts(model, tokenizer, texts, ntexts, text_files, nfiles, out, (int)batch, (int)threads, on,
                             normalize);
        free(texts), free(text_files);
        return rc;
    }
    if (optind >= argc) {
        cli_error("embed: no input images given");
        return EXIT_USAGE;
    }
    char **paths = NULL, **rel = NULL;
    int n = cli_collect_images(argv + optind, argc - optind, &paths, &rel);
    if (n < 0) return EXIT_FAIL;
    if (n == 0) {
        cli_error("embed: no images found in the inputs");
        return EXIT_FAIL;
    }
    wobble_ctx *ctx;
    wobble_model *m;
    const double t_start = core_now_s();
    int rc = load_model(model, (int)batch, (int)threads, on, &ctx, &m);
    const double t_loaded = core_now_s();
    if (rc) {
        cli_free_list(paths, n);
        cli_free_list(rel, n);
        return rc;
    }
    wobble_model_info info;
    wobble_model_get_info(m, &info);
    const int D = info.embed_dim;
    float *emb = malloc(sizeof(float) * (size_t)n * D);
    int *ok = calloc((size_t)n, sizeof(int));
    json_t *failed = json_array();
    prepped *pp = calloc((size_t)batch, sizeof *pp), *pp2 = calloc((size_t)batch, sizeof *pp2);
    wobble_embed_params ep = wobble_embed_default_params();
    ep.normalize = normalize;
    cli_progress prog;
    embed_state st = {.ctx = ctx, .m = m, .paths = paths, .ep = &ep, .D = D, .width = info.width,
                      .patch_out = patch_out, .prog = &prog, .emb = emb, .ok = ok, .failed = failed};
    /* decoding and preprocessing run on the context's threads, one image
     * each, with a context per thread for the error messages */
    const int workers = wobble_ctx_threads(ctx);
    wobble_ctx **tctx = calloc((size_t)workers, sizeof *tctx);
    int ctx_ok = tctx != NULL;
    for (int t = 0; ctx_ok && t < workers; t++) {
        wobble_ctx_params cp = wobble_ctx_default_params();
        cp.threads = 1;
        if (maxpix >= 0) cp.max_pixels = (uint64_t)maxpix;
        ctx_ok = wobble_ctx_create(&cp, &tctx[t]) == WOBBLE_OK;
    }
    cli_progress_start(&prog, n);
    if (!emb || !ok || !pp || !pp2 || !ctx_ok) {
        cli_error("embed: out of memory");
        return EXIT_FAIL;
    }
    /* On a GPU, batch i's forward pass runs on a thread of its own while
     * the workers decode and preprocess batch i + 1 (two sets of prepared
     * images), so the GPU does not wait for the CPU. On the CPU the forward
     * pass takes every core: one batch after the other (WOBBLE_PIPELINE=1
     * pipelines it anyway: the tests' way to run this path without a GPU). */
    const char *pipe_env = getenv("WOBBLE_PIPELINE");
    const int pipelined = strcmp(info.device, "cpu") != 0 || (pipe_env && !strcmp(pipe_env, "1"));
    prepped *cur = pp, *next = pp2;
    const int k0 = n < batch ? n : (int)batch;
    cli_progress_update(&prog, 0, rel[0]);
    prep_batch(tctx, workers, m, paths, 0, k0, cur);
    for (int s = 0; s < n;) {
        const int k = n - s < batch ? n - s : (int)batch;
        const int s2 = s + k, k2 = n - s2 < batch ? n - s2 : (int)batch;
        batch_job job = {&st, cur, s, k, WOBBLE_OK};
        pthread_t th;
        const int threaded = pipelined && k2 > 0 && pthread_create(&th, NULL, run_batch_thread, &job) == 0;
        if (!threaded) job.rc = run_batch(&st, cur, s, k);
        if (k2 > 0) {
            cli_progress_update(&prog, s2, rel[s2]);
            prep_batch(tctx, workers, m, paths, s2, k2, next);
        }
        if (threaded) pthread_join(th, NULL);
        rc = job.rc;
        free_batch(cur, k);
        prepped *t = cur;
        cur = next, next = t;
        s = s2;
        if (rc != WOBBLE_OK) {
            free_batch(cur, k2);
            st.failures = -1;
            break;
        }
    }
    cli_progress_update(&prog, n, "");
    cli_progress_end(&prog);
    int exit_code = st.failures ? EXIT_FAIL : EXIT_OK;
    if (st.failures >= 0 && st.nok > 0) {
        /* OUT.npy, OUT.npy.json and the patch tokens appear together or not at all */
        core_outset set = {0};
        core_buf eb = {0}, pb = {0};
        const int64_t shape[2] = {st.nok, D};
        int rc = core_npy_encode(ctx, "<f4", emb, 2, shape, &eb);
        if (rc == WOBBLE_OK) rc = core_outset_add(ctx, &set, out, eb.p, eb.len);
        if (rc == WOBBLE_OK) {
            json_t *inputs = json_array();
            for (int i = 0; i < n; i++)
                if (ok[i]) json_array_append_new(inputs, json_string(paths[i]));
            wobble_model_get_info(m, &info); /* the GPU time so far */
            json_t *side = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:b, s:s, s:s, s:{s:f, s:f}, s:o, s:o, s:o}",
                                     "wobble", wobble_version(), "model", model, "arch", info.arch, "naming",
                                     info.naming, "rows", st.nok, "dim", D, "normalized", normalize, "precision",
                                     info.precision, "device", info.device, "seconds", "load", t_loaded - t_start,
                                     "embed", core_now_s() - t_loaded, "model_info", info_json(&info), "inputs",
                                     inputs, "failed", json_incref(failed));
            if (side && strcmp(info.device, "cpu") != 0)
                json_object_set_new(json_object_get(side, "seconds"), "gpu", json_real(info.device_seconds));
            rc = stage_sidecar(ctx, &set, out, side);
        }
        if (rc == WOBBLE_OK && patch_out && st.patches) {
            const int64_t ps[3] = {st.nok, st.np, info.width};
            rc = core_npy_encode(ctx, "<f4", st.patches, 3, ps, &pb);
            if (rc == WOBBLE_OK) rc = core_outset_add(ctx, &set, patch_out, pb.p, pb.len);
        }
        if (rc == WOBBLE_OK) rc = core_outset_commit(ctx, &set);
        core_outset_abort(&set);
        core_buf_free(&eb);
        core_buf_free(&pb);
        if (rc != WOBBLE_OK) {
            cli_error("%s", wobble_last_error(ctx));
            exit_code = EXIT_FAIL;
        }
    } else if (st.nok == 0 && st.failures >= 0) {
        cli_error("embed: no image could be read; nothing written");
        exit_code = EXIT_FAIL;
    } else {
        exit_code = EXIT_FAIL;
    }
    json_decref(failed);
    free(st.patches);
    free(emb);
    free(ok);
    free(pp);
    free(pp2);
    free(st.group);
    for (int t = 0; tctx && t < workers; t++) wobble_ctx_free(tctx[t]);
    free(tctx);
    cli_free_list(paths, n);
    cli_free_list(rel, n);
    wobble_model_free(m);
    wobble_ctx_free(ctx);
    return exit_code;
}
