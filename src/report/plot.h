/* A small SVG chart module for the HTML report (docs/report.md).
 *
 * A chart is a description (axes, labels, series) handed to plot_svg, which
 * places everything: linear or log axes with nice tick values, a
 * colour-blind-safe palette (Okabe and Ito), lines with markers, bands,
 * scatter points, histograms, horizontal reference lines and a legend under
 * the plot area (it never covers data). Every marker carries a <title>, so a
 * browser shows its values on hover without any script.
 * Internal to the library. */
#ifndef WOBBLE_REPORT_PLOT_H
#define WOBBLE_REPORT_PLOT_H

#include "../core/internal.h"

typedef enum {
    PLOT_LINE,    /* x[i], y[i] joined in order (a NaN breaks the line), with markers */
    PLOT_BAND,    /* the area between y[i] (low) and y2[i] (high) */
    PLOT_SCATTER, /* markers only */
    PLOT_HIST,    /* n bins: edges x[0..n], counts y[0..n-1] */
    PLOT_HLINE,   /* a horizontal line at y[0] across the plot */
    PLOT_SEGMENT  /* a dashed straight line from (x[0], y[0]) to (x[1], y[1]) */
} plot_kind;

typedef struct {
    plot_kind kind;
    const char *label;        /* legend entry; NULL: none */
    int color;                /* palette index (plot_color) */
    int n;
    const double *x, *y, *y2;
    int dashed;
    const char *const *tips;  /* per point hover text (LINE, SCATTER); NULL: "label: x, y" */
} plot_series;

typedef struct {
    const char *title, *xlabel, *ylabel;
    int xlog, ylog;                 /* log10 axes (non-positive values are left out) */
    double xmin, xmax, ymin, ymax;  /* NaN: from the data */
    int y_zero;                     /* include 0 in the y range */
    const plot_series *series;
    int n_series;
    const char *id;                 /* the svg element's id (may be NULL) */
} plot_chart;

/* "#rrggbb" of palette entry i (cycles). */
const char *report_plot_color(int i);

/* A chart description with every bound unset (NaN). */
plot_chart report_plot_chart_init(void);

/* Append the chart as one <svg class="plot"> element; -1 when the buffer failed. */
int report_plot_svg(core_buf *out, const plot_chart *c);

/* Append s with &, <, >, " escaped. */
void report_plot_escape(core_buf *out, const char *s);

/* Tick values for [lo, hi]: at most max_ticks "nice" values (1, 2 or 5
 * times a power of ten apart) covering the range; *step receives the
 * spacing. Returns the count (exposed for the tests). */
int report_plot_nice_ticks(double lo, double hi, int max_ticks, double *ticks, double *step);
#endif
