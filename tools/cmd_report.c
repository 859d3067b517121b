/* wobble report */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: wobble report RUN_DIR... -o REPORT.html [options]\n"
            "\n"
            "One self-contained HTML file (inline CSS and SVG, thumbnails as data URIs, no\n"
            "network) from output folders of 'wobble eval' (with or without --task) and\n"
            "'wobble finetune': the runs, the robustness table, per operation the distance\n"
            "by level, R_div's distribution and the images moved most, downstream accuracy\n"
            "and its prediction from robustness, fine-tuning curves. Several folders are\n"
            "overlaid in every plot and get a column each in the tables (docs/report.md).\n"
            "\n"
            "options:\n"
            "  -o, --output FILE  the report (written atomically)\n"
            "  --worst K          images shown per operation and run, most moved first\n"
            "                     (default 3; 0: none)\n"
            "  --thumb-size N     their longer side in pixels (default 128)\n"
            "  --title T          the page title (default \"wobble report\")\n"
            "\n"
            "An image that is gone or changed since the eval is reported on stderr and\n"
            "shown without thumbnails.\n"
            "exit status: 0 ok, 1 a run folder is missing or unreadable (nothing written),\n"
            "             2 bad command line\n");
}

static void on_warn(void *u, const char *msg) {
    (void)u;
    cli_error("%s", msg);
}

int cmd_report(int argc, char **argv) {
    const char *out = NULL, *title = NULL;
    wobble_report_params rp = wobble_report_default_params();
    long long worst = rp.worst, thumb = rp.thumb_size;
    static const struct option longopts[] = {{"output", required_argument, 0, 'o'},
                                             {"worst", required_argument, 0, 'w'},
                                             {"thumb-size", required_argument, 0, 's'},
                                             {"title", required_argument, 0, 't'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'w':
            if (cli_opt_int("report", "--worst", optarg, 0, 100, &worst)) return EXIT_USAGE;
            break;
        case 's':
            if (cli_opt_int("report", "--thumb-size", optarg, 16, 1024, &thumb)) return EXIT_USAGE;
            break;
        case 't': title = optarg; break;
        case 'h': help(stdout); return EXIT_OK;
        default: help(stderr); return EXIT_USAGE;
        }
    }
    if (!out) {
        cli_error("report: -o REPORT.html is required (see 'wobble report --help')");
        return EXIT_USAGE;
    }
    if (optind >= argc) {
        cli_error("report: no run folder given (see 'wobble report --help')");
        return EXIT_USAGE;
    }
    rp.worst = (int)worst;
    rp.thumb_size = (int)thumb;
    rp.title = title;
    rp.warn = on_warn;
    wobble_ctx *ctx = NULL;
    if (wobble_ctx_create(NULL, &ctx) != WOBBLE_OK) {
        cli_error("report: out of memory");
        return EXIT_FAIL;
    }
    int rc = wobble_report_write(ctx, (const char *const *)(argv + optind), argc - optind, &rp, out);
    if (rc != WOBBLE_OK) cli_error("%s", wobble_last_error(ctx));
    wobble_ctx_free(ctx);
    return rc == WOBBLE_OK ? EXIT_OK : EXIT_FAIL;
}
