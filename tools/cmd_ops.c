#include "cli.h"

#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(FILE *f) {
    fprintf(f, "usage: wobble ops [--json]\n"
               "\n"
               "List the perturbation operations: parameter, domain, identity level, default\n"
               "grid (mildest first) and the reference implementation each matches; for the\n"
               "ImageNet-C corruptions (imagenet_c.*, level = severity 1-5), their constants\n"
               "per severity.\n"
               "\n"
               "  --json     machine-readable output\n"
               "  -h, --help this help\n");
}

static void domain_str(const wobble_op_info *op, char *buf, size_t n) {
    char hi[32];
    if (isinf(op->max))
        snprintf(hi, sizeof hi, "inf");
    else
        snprintf(hi, sizeof hi, "%g", op->max);
    snprintf(buf, n, "%s%g, %s%s", op->min_open ? "(" : "[", op->min, hi,
             (op->max_open || isinf(op->max)) ? ")" : "]");
}

int cmd_ops(int argc, char **argv) {
    int json = 0;
    static const struct option lo[] = {{"json", no_argument, 0, 'j'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (c == 'j')
            json = 1;
        else if (c == 'h') {
            help(stdout);
            return EXIT_OK;
        } else {
            help(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        cli_error("ops: unexpected argument '%s'", argv[optind]);
        return EXIT_USAGE;
    }
    if (json) {
        json_t *arr = json_array();
        for (int i = 0; i < wobble_op_count(); i++) {
            const wobble_op_info *op = wobble_op_at(i);
            json_t *grid = json_array();
            for (int j = 0; j < op->grid_len; j++) json_array_append_new(grid, json_real(op->grid[j]));
            json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:f, s:o, s:b, s:b, s:b, s:o, s:o}", "name", op->name,
                                  "param", op->param, "description", op->description, "reference", op->reference,
                                  "min", op->min, "max", isinf(op->max) ? json_null() : json_real(op->max),
                                  "min_open", op->min_open, "max_open", op->max_open, "integer", op->integer,
                                  "identity", op->has_identity ? json_real(op->identity) : json_null(), "grid",
                                  grid);
            if (op->suite) {
                json_object_set_new(o, "suite", json_string(op->suite == 1 ? "imagenet-c" : "imagenet-c-validation"));
                json_object_set_new(o, "constants", json_string(op->constants));
            }
            json_array_append_new(arr, o);
        }
        char *s = json_dumps(arr, JSON_INDENT(2));
        puts(s);
        free(s);
        json_decref(arr);
        return EXIT_OK;
    }
    printf("%-28s %-8s %-14s %-9s %s\n", "op", "param", "domain", "identity", "default grid");
    for (int i = 0; i < wobble_op_count(); i++) {
        const wobble_op_info *op = wobble_op_at(i);
        char dom[64], id[32], grid[128] = "";
        domain_str(op, dom, sizeof dom);
        if (op->has_identity)
            snprintf(id, sizeof id, "%g", op->identity);
        else
            snprintf(id, sizeof id, "none");
        for (int j = 0; j < op->grid_len; j++) {
            char t[32];
            snprintf(t, sizeof t, "%s%g", j ? "," : "", op->grid[j]);
            strncat(grid, t, sizeof grid - strlen(grid) - 1);
        }
        printf("%-28s %-8s %-14s %-9s %s\n", op->name, op->param, dom, id, grid);
    }
    printf("\n");
    for (int i = 0; i < wobble_op_count(); i++) {
        const wobble_op_info *op = wobble_op_at(i);
        printf("%s\n    %s\n    matches: %s\n", op->name, op->description, op->reference);
        if (op->constants)
            printf("    %s, per severity 1-5: %s\n", op->suite == 1 ? "standard corruption" : "validation corruption",
                   op->constants);
    }
    const char *fd = wobble_frost_dir();
    printf("\nimagenet_c.frost photos: %s\n", fd ? fd : "not found (set WOBBLE_FROST_DIR to a folder with frost1.png ... frost6.jpg)");
    return EXIT_OK;
}
