#ifndef WOBBLE_CLI_H
#define WOBBLE_CLI_H
#include "wobble.h"
#include <stddef.h>

/* Exit codes (documented in docs/cli.md and --help) */
#define EXIT_OK 0
#define EXIT_FAIL 1  /* some input or output failed; the others were processed */
#define EXIT_USAGE 2 /* bad command line: nothing was done */

void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parse "a,b,c" into a malloc'ed array of doubles; returns count or -1. */
int cli_parse_levels(const char *s, double **out);
int cli_parse_int(const char *s, long long lo, long long hi, long long *out);
int cli_parse_u64(const char *s, uint64_t *out);
/* A finite number in [lo, hi] (the whole string): 0 or -1. */
int cli_parse_real(const char *s, double lo, double hi, double *out);

/* Option values, one helper per kind: on a bad value print
 * "CMD: OPT 'VALUE' is not ..." and return -1 (the caller exits with
 * EXIT_USAGE). */
int cli_opt_int(const char *cmd, const char *opt, const char *s, long long lo, long long hi, long long *out);
int cli_opt_u64(const char *cmd, const char *opt, const char *s, uint64_t *out);
int cli_opt_real(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out);
/* --precision fp32|bf16 (whether this machine runs it: cli_check_device). */
int cli_opt_precision(const char *cmd, const char *s, wobble_precision *out);
/* --device cpu | cuda | cuda:N */
int cli_opt_device(const char *cmd, const char *s, wobble_device *dev, int *index);
/* After parsing: bf16 on a CPU without AVX512_BF16, or cuda in a build
 * without it, is a command-line error (one line, -1). */
int cli_check_device(const char *cmd, wobble_precision prec, wobble_device dev);

/* An --op spec: "name", "name:a,b,c", or (allow_range) "name:lo-hi" (e.g.
 * "hue:-0.2-0.2"). name is malloc'ed; levels is malloc'ed (NULL without a
 * list: the op's grid applies). Returns 0, or -1 with a message in err
 * (the caller prefixes its command). The levels' domain is not checked
 * here (wobble_eval_check_ops / the fine-tuner do). */
typedef struct cli_op_spec {
    char *name;
    double *levels;
    int n_levels; /* 0: no list given */
    int range;    /* 1: lo-hi given */
    double lo, hi;
} cli_op_spec;
int cli_parse_op_spec(const char *spec, int allow_range, cli_op_spec *out, char *err, size_t err_size);
void cli_op_spec_free(cli_op_spec *o);

/* Expand files and folders (recursively: .png .jpg .jpeg, any case) into a
 * sorted list. `rel` receives, per file, its path relative to the folder it
 * was found in (or its basename). Returns count or -1 on error (printed). */
int cli_collect_images(char **inputs, int n, char ***paths, char ***rel);
void cli_free_list(char **list, int n);

int cli_is_image_path(const char *p);

/* The tokenizer folder for a CLIP model: tokenizer if given, else the model
 * folder (or the folder of a .safetensors file). */
void cli_tokenizer_dir(const char *model, const char *tokenizer, char *dir, size_t size);

/* 1 when started by mpirun (Open MPI's, or a PMI/PMIx launcher's
 * environment): only then does the MPI build initialise MPI. */
int cli_mpi_launched(void);
#ifdef WOBBLE_HAVE_MPI
/* under mpirun: load libwobble_mpi.so and MPI_Init (0), or report why not
 * (-1); cli_mpi_stop finalises. The rest wrap MPI_COMM_WORLD's rank, size,
 * the int and double sums over all ranks (Allreduce) and rank 0's ints to
 * all (Bcast); 0 on success. */
int cli_mpi_start(int *argc, char ***argv);
void cli_mpi_stop(void);
int cli_mpi_rank(void);
int cli_mpi_size(void);
int cli_mpi_sum_int(const int *in, int *out, int n);
int cli_mpi_sum_double(double *v, size_t n);
int cli_mpi_bcast_int(int *v, int n);
#endif

/* Progress on stderr when it is a terminal; silent otherwise. */
typedef struct cli_progress {
    int enabled;
    long total;
    double t0;
} cli_progress;
void cli_progress_start(cli_progress *p, long total);
void cli_progress_update(cli_progress *p, long done, const char *what);
void cli_progress_end(cli_progress *p);

int cmd_ops(int argc, char **argv);
int cmd_perturb(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_finetune(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_merge(int argc, char **argv);
#endif
