/*
 * The MPI calls of the wobble command, in a library of their own
 * (libwobble_mpi.so, linked with Open MPI) that the command loads only when
 * mpirun started it (tools/cli_mpi.c): a plain `wobble perturb` or `wobble
 * ops` then never maps Open MPI and its six libraries (about 2 ms and 100
 * page faults per process on the development VM). Every function returns 0
 * on success, -1 on an MPI error.
 */
#include <mpi.h>

#define OK(call) ((call) == MPI_SUCCESS ? 0 : -1)

int wobble_mpi_init(int *argc, char ***argv) { return OK(MPI_Init(argc, argv)); }
int wobble_mpi_finalize(void) { return OK(MPI_Finalize()); }
int wobble_mpi_rank(int *rank) { return OK(MPI_Comm_rank(MPI_COMM_WORLD, rank)); }
int wobble_mpi_size(int *size) { return OK(MPI_Comm_size(MPI_COMM_WORLD, size)); }
/* out = the sum over all ranks of in (n ints), on every rank */
int wobble_mpi_sum_int(const int *in, int *out, int n) {
    return OK(MPI_Allreduce(in, out, n, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
}
/* v = the sum over all ranks of v (n doubles), on every rank */
int wobble_mpi_sum_double(double *v, int n) {
    return OK(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
}
/* rank 0's v (n ints) on every rank */
int wobble_mpi_bcast_int(int *v, int n) { return OK(MPI_Bcast(v, n, MPI_INT, 0, MPI_COMM_WORLD)); }
