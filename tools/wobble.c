/* wobble command-line interface: dispatch to subcommands. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: wobble COMMAND [OPTIONS]\n"
            "\n"
            "How far do image embeddings move under everyday edits?\n"
            "\n"
            "commands:\n"
            "  ops        list the perturbation operations, their domains and default grids\n"
            "  perturb    apply an operation to images at one or more levels\n"
            "  info       describe an image encoder checkpoint\n"
            "  embed      embed images with an encoder, to a .npy file\n"
            "  eval       measure embedding robustness under the operations on a dataset\n"
            "  merge      combine the folders of 'wobble eval --shard I/N' into one run's results\n"
            "  finetune   fine-tune an encoder to hold still under operations, keeping its utility\n"
            "  report     one self-contained HTML report with plots from eval / finetune folders\n"
            "  version    print the version\n"
            "\n"
            "Run 'wobble COMMAND --help' for the options of a command.\n"
            "\n"
            "exit status: 0 success, 1 some input or output failed (the rest was done),\n"
            "             2 bad command line (nothing was done)\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return EXIT_OK;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("wobble %s\n", wobble_version());
        return EXIT_OK;
    }
    if (!strcmp(cmd, "ops")) return cmd_ops(argc - 1, argv + 1);
    if (!strcmp(cmd, "perturb")) return cmd_perturb(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "embed")) return cmd_embed(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "finetune")) return cmd_finetune(argc - 1, argv + 1);
    if (!strcmp(cmd, "report")) return cmd_report(argc - 1, argv + 1);
    if (!strcmp(cmd, "merge")) return cmd_merge(argc - 1, argv + 1);
    cli_error("unknown command '%s' (try 'wobble --help')", cmd);
    return EXIT_USAGE;
}
