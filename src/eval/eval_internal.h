/* Helpers shared by eval.c and downstream.c (internal). */
#ifndef WOBBLE_EVAL_INTERNAL_H
#define WOBBLE_EVAL_INTERNAL_H
#include "../core/internal.h"

#include <jansson.h>

/* JSON with 17 significant digits, newline-terminated, written atomically. */
int eval_write_json(wobble_ctx *ctx, const char *path, json_t *j);
/* malloc'ed "a/b" */
char *eval_path_join(const char *a, const char *b);
#endif
