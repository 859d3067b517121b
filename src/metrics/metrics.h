#ifndef WOBBLE_METRICS_H
#define WOBBLE_METRICS_H
#include "wobble.h"
#endif
