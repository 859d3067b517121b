/*
 * MPI for the command, through libwobble_mpi.so (tools/mpi_glue.c), loaded
 * by cli_mpi_start under mpirun: from $WOBBLE_MPI_LIB, else the build
 * tree's, else the installed one, else the loader's search path (the CUDA
 * backend's order, src/model/device.c).
 */
#include "cli.h"

#ifdef WOBBLE_HAVE_MPI
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

static struct {
    int (*init)(int *, char ***);
    int (*finalize)(void);
    int (*rank)(int *);
    int (*size)(int *);
    int (*sum_int)(const int *, int *, int);
    int (*sum_double)(double *, int);
    int (*bcast_int)(int *, int);
} api;
static int started;

int cli_mpi_start(int *argc, char ***argv) {
    const char *env = getenv("WOBBLE_MPI_LIB");
    const char *cand[] = {env && *env ? env : NULL, env && *env ? NULL : WOBBLE_MPI_LIB_BUILD,
                          env && *env ? NULL : WOBBLE_MPI_LIB_INSTALL, env && *env ? NULL : "libwobble_mpi.so"};
    void *h = NULL;
    char err[600] = "";
    for (size_t i = 0; i < sizeof cand / sizeof cand[0] && !h; i++) {
        if (!cand[i]) continue;
        /* global: Open MPI's own components, loaded by libmpi, look for its symbols */
        h = dlopen(cand[i], RTLD_NOW | RTLD_GLOBAL);
        if (!h) {
            const char *e = dlerror();
            snprintf(err, sizeof err, "%s", e ? e : cand[i]);
        }
    }
    if (!h) {
        cli_error("mpirun: cannot load wobble's MPI library: %s", err);
        return -1;
    }
    *(void **)&api.init = dlsym(h, "wobble_mpi_init");
    *(void **)&api.finalize = dlsym(h, "wobble_mpi_finalize");
    *(void **)&api.rank = dlsym(h, "wobble_mpi_rank");
    *(void **)&api.size = dlsym(h, "wobble_mpi_size");
    *(void **)&api.sum_int = dlsym(h, "wobble_mpi_sum_int");
    *(void **)&api.sum_double = dlsym(h, "wobble_mpi_sum_double");
    *(void **)&api.bcast_int = dlsym(h, "wobble_mpi_bcast_int");
    if (!api.init || !api.finalize || !api.rank || !api.size || !api.sum_int || !api.sum_double || !api.bcast_int) {
        cli_error("mpirun: wobble's MPI library lacks its entry points (another version?)");
        return -1;
    }
    if (api.init(argc, argv) != 0) {
        cli_error("mpirun: MPI_Init failed");
        return -1;
    }
    started = 1;
    return 0;
}

void cli_mpi_stop(void) {
    if (started) api.finalize();
    started = 0;
}

int cli_mpi_rank(void) {
    int r = 0;
    if (started) api.rank(&r);
    return r;
}

int cli_mpi_size(void) {
    int s = 1;
    if (started) api.size(&s);
    return s;
}

int cli_mpi_sum_int(const int *in, int *out, int n) { return api.sum_int(in, out, n); }

int cli_mpi_sum_double(double *v, size_t n) { return n <= (size_t)INT_MAX ? api.sum_double(v, (int)n) : -1; }

int cli_mpi_bcast_int(int *v, int n) { return api.bcast_int(v, n); }
#endif
