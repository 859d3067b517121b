/* The depth downstream task (docs/depth.md). Internal. */
#ifndef WOBBLE_DEPTH_H
#define WOBBLE_DEPTH_H

#include "../core/internal.h"

/* Parameters in their domains, else EDOMAIN with a message. */
int depth_check_params(wobble_ctx *ctx, const wobble_depth_params *p);
#endif
