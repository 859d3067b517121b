/*
 * GEMM candidates on the linear layers of ViT-Ti/16, ViT-B/16 and ViT-L/14
 * (rows = images x tokens), C = A W^T with A fp32 activations and
 * W PyTorch's [out, in] weights:
 *   sgemm      OpenBLAS cblas_sgemm, fp32 (wobble's fp32 path without AVX-512)
 *   f32        wobble's AVX-512 fp32 kernel (src/model/gemm_f32.c, its fp32
 *              path on AVX-512 CPUs): W packed once, A in place
 *   bf16       wobble's AVX512_BF16 kernel (src/model/gemm_bf16.c): A rounded
 *              per call, W packed once
 *   dnnl-bf16  oneDNN matmul, bf16 src (rounded per call by a oneDNN
 *              reorder, timed) and bf16 weights in oneDNN's own packed
 *              layout (reordered once, not timed), f32 dst
 *   bf16-pre, dnnl-pre  the same two with A already bf16 (the forward pass's
 *              producers write their rows rounded), and their ratio
 * (Debian's OpenBLAS is built without cblas_sbgemm, so it is no candidate.)
 * Prints GFLOP/s per shape and the ratios. Built when oneDNN's header is
 * found (Debian libdnnl-dev); without it the dnnl column is absent.
 *
 * IMAGES (default 16) sets the rows: IMAGES x tokens. The forward pass runs
 * a batch in chunks whose activations stay within 32 MB (forward.c), so at
 * batch 16 its GEMMs see fewer rows: 4 images (788 rows) for ViT-B/16 and 2
 * (514) for ViT-L/14, in bf16 and fp32; ViT-Ti/16 all 16.
 *
 * usage: bench_gemm [THREADS] [REPEATS] [IMAGES]
 */
#include "../src/core/internal.h"
#include "../src/model/gemm_f32.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef WOBBLE_BENCH_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return ((*s >> 8) / 16777216.0f - 0.5f) * 2.0f;
}

#ifdef WOBBLE_BENCH_DNNL
#define CK(x)                                                                                                         \
    do {                                                                                                              \
        dnnl_status_t st_ = (x);                                                                                      \
        if (st_ != dnnl_success) {                                                                                    \
            fprintf(stderr, "bench_gemm: %s failed (%d)\n", #x, (int)st_);                                           \
            exit(1);                                                                                                  \
        }                                                                                                             \
    } while (0)

typedef struct {
    dnnl_engine_t eng;
    dnnl_stream_t st;
    dnnl_primitive_t mm, reorder_a;
    dnnl_memory_t a32, a16, w16, c;
} dnnl_case;

static void dnnl_setup(dnnl_case *d, const float *A, const float *W, float *C, int M, int N, int K) {
    CK(dnnl_engine_create(&d->eng, dnnl_cpu, 0));
    CK(dnnl_stream_create(&d->st, d->eng, dnnl_stream_default_flags));
    dnnl_memory_desc_t a32, a16, w32, wany, c;
    dnnl_dims_t ad = {M, K}, wd = {K, N}, cd = {M, N};
    CK(dnnl_memory_desc_init_by_tag(&a32, 2, ad, dnnl_f32, dnnl_ab));
    CK(dnnl_memory_desc_init_by_tag(&a16, 2, ad, dnnl_bf16, dnnl_ab));
    CK(dnnl_memory_desc_init_by_tag(&w32, 2, wd, dnnl_f32, dnnl_ba)); /* W [N, K] row-major is B [K, N] "ba" */
    CK(dnnl_memory_desc_init_by_tag(&wany, 2, wd, dnnl_bf16, dnnl_format_tag_any));
    CK(dnnl_memory_desc_init_by_tag(&c, 2, cd, dnnl_f32, dnnl_ab));
    dnnl_matmul_desc_t md;
    CK(dnnl_matmul_desc_init(&md, &a16, &wany, NULL, &c));
    dnnl_primitive_desc_t pd;
    CK(dnnl_primitive_desc_create(&pd, &md, NULL, d->eng, NULL));
    CK(dnnl_primitive_create(&d->mm, pd));
    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    /* weights: f32 [N, K] -> the matmul's packed bf16, once */
    dnnl_memory_t w32m;
    CK(dnnl_memory_create(&w32m, &w32, d->eng, (void *)W));
    CK(dnnl_memory_create(&d->w16, wmd, d->eng, DNNL_MEMORY_ALLOCATE));
    dnnl_primitive_desc_t rpd;
    CK(dnnl_reorder_primitive_desc_create(&rpd, &w32, d->eng, wmd, d->eng, NULL));
    dnnl_primitive_t rw;
    CK(dnnl_primitive_create(&rw, rpd));
    dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, w32m}, {DNNL_ARG_TO, d->w16}};
    CK(dnnl_primitive_execute(rw, d->st, 2, ra));
    CK(dnnl_stream_wait(d->st));
    dnnl_primitive_destroy(rw);
    dnnl_primitive_desc_destroy(rpd);
    dnnl_memory_destroy(w32m);
    /* activations: f32 -> bf16 per call */
    CK(dnnl_memory_create(&d->a32, &a32, d->eng, (void *)A));
    CK(dnnl_memory_create(&d->a16, &a16, d->eng, DNNL_MEMORY_ALLOCATE));
    CK(dnnl_reorder_primitive_desc_create(&rpd, &a32, d->eng, &a16, d->eng, NULL));
    CK(dnnl_primitive_create(&d->reorder_a, rpd));
    dnnl_primitive_desc_destroy(rpd);
    CK(dnnl_memory_create(&d->c, &c, d->eng, C));
    dnnl_primitive_desc_destroy(pd);
}

static void dnnl_run(dnnl_case *d) {
    dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, d->a32}, {DNNL_ARG_TO, d->a16}};
    CK(dnnl_primitive_execute(d->reorder_a, d->st, 2, ra));
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, d->a16}, {DNNL_ARG_WEIGHTS, d->w16}, {DNNL_ARG_DST, d->c}};
    CK(dnnl_primitive_execute(d->mm, d->st, 3, args));
    CK(dnnl_stream_wait(d->st));
}

/* the matmul alone, A already bf16 (rounded by the last dnnl_run) */
static void dnnl_run_mm(dnnl_case *d) {
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, d->a16}, {DNNL_ARG_WEIGHTS, d->w16}, {DNNL_ARG_DST, d->c}};
    CK(dnnl_primitive_execute(d->mm, d->st, 3, args));
    CK(dnnl_stream_wait(d->st));
}

static void dnnl_teardown(dnnl_case *d) {
    dnnl_primitive_destroy(d->mm);
    dnnl_primitive_destroy(d->reorder_a);
    dnnl_memory_destroy(d->a32);
    dnnl_memory_destroy(d->a16);
    dnnl_memory_destroy(d->w16);
    dnnl_memory_destroy(d->c);
    dnnl_stream_destroy(d->st);
    dnnl_engine_destroy(d->eng);
}
#endif

/* One product to time: every candidate gets the same operands. */
typedef struct {
    int M, N, K, threads;
    const float *A, *W;
    float *C;
    const model_bf16_packed *P;
    const model_f32_packed *F;
    uint16_t *scratch;
#ifdef WOBBLE_BENCH_DNNL
    dnnl_case *d;
#endif
} job;

static void run_sgemm(const job *j) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->M, j->N, j->K, 1.0f, j->A, j->K, j->W, j->K, 0.0f, j->C,
                j->N);
}

static void run_f32(const job *j) { model_f32_gemm(j->A, j->M, j->K, j->F, NULL, 0, j->C, j->N, j->threads); }

static void run_bf16(const job *j) { model_bf16_gemm(j->A, j->M, j->K, j->P, NULL, 0, j->C, j->N, j->scratch, j->threads); }

/* A already rounded into scratch by run_bf16, as the forward pass's
 * producers now write it */
static void run_bf16_pre(const job *j) { model_bf16_gemm_rounded(j->scratch, j->M, 0, j->P, NULL, 0, j->C, j->N, j->threads); }

#ifdef WOBBLE_BENCH_DNNL
static void run_dnnl(const job *j) { dnnl_run(j->d); }
static void run_dnnl_pre(const job *j) { dnnl_run_mm(j->d); }
#endif

/* best of `reps` timed runs, after one warm-up */
static double best_of(int reps, void (*f)(const job *), const job *j) {
    f(j);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        const double t0 = now();
        f(j);
        const double t = now() - t0;
        if (t < best) best = t;
    }
    return best;
}

int main(int argc, char **argv) {
    const int threads = argc > 1 ? atoi(argv[1]) : 2;
    const int reps = argc > 2 ? atoi(argv[2]) : 5;
    const int imgs = argc > 3 ? atoi(argv[3]) : 16;
    if (threads < 1 || reps < 1 || imgs < 1) {
        fprintf(stderr, "usage: bench_gemm [THREADS] [REPEATS] [IMAGES]\n");
        return 2;
    }
    if (!model_bf16_supported()) {
        printf("bench_gemm: this CPU has no AVX512_BF16; only the fp32 path runs here\n");
        return 0;
    }
    openblas_set_num_threads(threads);
    omp_set_num_threads(threads);
    const struct {
        const char *model, *layer;
        int M, N, K;
    } cases[] = {
        {"ViT-Ti/16", "qkv", imgs * 197, 576, 192},  {"ViT-Ti/16", "fc1", imgs * 197, 768, 192},
        {"ViT-Ti/16", "fc2", imgs * 197, 192, 768},  {"ViT-B/16", "qkv", imgs * 197, 2304, 768},
        {"ViT-B/16", "proj", imgs * 197, 768, 768},  {"ViT-B/16", "fc1", imgs * 197, 3072, 768},
        {"ViT-B/16", "fc2", imgs * 197, 768, 3072},  {"ViT-L/14", "qkv", imgs * 257, 3072, 1024},
        {"ViT-L/14", "fc1", imgs * 257, 4096, 1024}, {"ViT-L/14", "fc2", imgs * 257, 1024, 4096},
    };
    printf("threads %d, best of %d, %d images a call; OpenBLAS core %s; GFLOP/s (2 M N K / time)\n", threads, reps, imgs,
           openblas_get_corename());
    printf("%-10s %-5s %5s %5s %5s %9s %9s %9s %9s %10s %10s %10s %9s %9s %9s %9s %9s\n", "model", "layer", "M", "N", "K",
           "sgemm", "f32", "bf16", "dnnl-bf16", "f32/sgemm", "bf16/sgemm", "bf16/dnnl", "f32 err", "bf16 err", "bf16-pre",
           "dnnl-pre", "pre ratio");
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int M = cases[c].M, N = cases[c].N, K = cases[c].K;
        float *A = malloc(sizeof(float) * (size_t)M * K), *W = malloc(sizeof(float) * (size_t)N * K);
        float *C0 = malloc(sizeof(float) * (size_t)M * N), *C1 = malloc(sizeof(float) * (size_t)M * N);
        /* on 2 MiB pages where the system gives them, as the forward pass's
         * activations (core_alloc_big) */
        uint16_t *s = core_alloc_big(model_bf16_scratch_elems(M, K) * 2);
        model_bf16_packed P;
        model_f32_packed F;
        if (!A || !W || !C0 || !C1 || !s) return 1;
        unsigned seed = 1;
        for (size_t i = 0; i < (size_t)M * K; i++) A[i] = frand(&seed);
        for (size_t i = 0; i < (size_t)N * K; i++) W[i] = frand(&seed) * 0.05f;
        if (model_bf16_pack_dense(&P, W, N, K) || model_f32_pack_dense(&F, W, N, K)) return 1;
        const double fl = 2.0 * M * N * K * 1e-9;
        job j = {.M = M, .N = N, .K = K, .threads = threads, .A = A, .W = W, .C = C0, .P = &P, .F = &F, .scratch = s};
        const double ts = best_of(reps, run_sgemm, &j);
        j.C = C1;
        const double tf = best_of(reps, run_f32, &j);
        double errf = 0;
        for (size_t i = 0; i < (size_t)M * N; i++) errf = fmax(errf, fabs((double)C1[i] - C0[i]));
        const double tb = best_of(reps, run_bf16, &j);
        const double tbp = best_of(reps, run_bf16_pre, &j);
        double err = 0;
        for (size_t i = 0; i < (size_t)M * N; i++) err = fmax(err, fabs((double)C1[i] - C0[i]));
        double td = NAN, tdp = NAN;
#ifdef WOBBLE_BENCH_DNNL
        float *C2 = malloc(sizeof(float) * (size_t)M * N);
        dnnl_case d;
        dnnl_setup(&d, A, W, C2, M, N, K);
        j.C = C2;
        j.d = &d;
        td = best_of(reps, run_dnnl, &j);
        tdp = best_of(reps, run_dnnl_pre, &j);
        dnnl_teardown(&d);
        free(C2);
#endif
        printf("%-10s %-5s %5d %5d %5d %9.1f %9.1f %9.1f %9.1f %10.2f %10.2f %10.2f %9.2g %9.2g %9.1f %9.1f %9.2f\n",
               cases[c].model, cases[c].layer, M, N, K, fl / ts, fl / tf, fl / tb, fl / td, ts / tf, ts / tb, td / tb, errf,
               err, fl / tbp, fl / tdp, tdp / tbp);
        model_bf16_free(&P);
        model_f32_free(&F);
        free(A), free(W), free(C0), free(C1), free(s);
    }
    return 0;
}
