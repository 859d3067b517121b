/* SVG charts for the report: see plot.h. */
#include "plot.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Okabe & Ito (2008), "Color Universal Design": distinguishable under the
 * common colour-vision deficiencies; the yellow, weak on white, comes last. */
static const char *const palette[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                      "#E69F00", "#56B4E9", "#000000", "#F0E442"};

const char *report_plot_color(int i) {
    const int n = (int)(sizeof palette / sizeof palette[0]);
    return palette[((i % n) + n) % n];
}

plot_chart report_plot_chart_init(void) {
    plot_chart c;
    memset(&c, 0, sizeof c);
    c.xmin = c.xmax = c.ymin = c.ymax = NAN;
    return c;
}

void report_plot_escape(core_buf *out, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '&': core_buf_add(out, "&amp;", 5); break;
        case '<': core_buf_add(out, "&lt;", 4); break;
        case '>': core_buf_add(out, "&gt;", 4); break;
        case '"': core_buf_add(out, "&quot;", 6); break;
        default: core_buf_add(out, s, 1);
        }
    }
}

/* Heckbert's "nice numbers" (Graphics Gems, 1990): 1, 2 or 5 times a power
 * of ten, rounded or taken as the ceiling. */
static double nice_num(double x, int round_it) {
    const double e = floor(log10(x)), f = x / pow(10.0, e);
    double nf;
    if (round_it)
        nf = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
    else
        nf = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
    return nf * pow(10.0, e);
}

int report_plot_nice_ticks(double lo, double hi, int max_ticks, double *ticks, double *step) {
    if (max_ticks < 2) max_ticks = 2;
    const double range = nice_num(hi - lo, 0);
    double d = nice_num(range / (max_ticks - 1), 1);
    double g0 = floor(lo / d) * d, g1 = ceil(hi / d) * d;
    while ((int)llround((g1 - g0) / d) + 1 > max_ticks) {
        d = nice_num(d * 1.5, 0);
        g0 = floor(lo / d) * d, g1 = ceil(hi / d) * d;
    }
    const int n = (int)llround((g1 - g0) / d) + 1;
    for (int i = 0; i < n; i++) {
        double v = g0 + i * d;
        if (fabs(v) < d * 1e-9) v = 0; /* no "-0" or 1e-17 */
        ticks[i] = v;
    }
    *step = d;
    return n;
}

/* Geometry, in viewBox units */
enum { W = 440, ML = 60, MR = 24, MT = 28, PH = 190, PW = W - ML - MR, LEG_ROW = 16 };
#define MAX_TICKS 24

typedef struct {
    int log;
    double lo, hi; /* axis range (log: of log10 values) */
    double ticks[MAX_TICKS];
    int n_ticks;
    double step; /* linear tick spacing (label decimals) */
} axis;

static int usable(const axis *a, double v) { return isfinite(v) && (!a->log || v > 0); }
static double axv(const axis *a, double v) { return a->log ? log10(v) : v; }

static void axis_add(axis *a, double v, double *lo, double *hi) {
    if (!usable(a, v)) return;
    v = axv(a, v);
    if (v < *lo) *lo = v;
    if (v > *hi) *hi = v;
}

static void axis_build(axis *a, double lo, double hi, int max_ticks) {
    if (!(lo <= hi)) lo = 0, hi = 1; /* no data */
    if (a->log) {
        lo = floor(lo), hi = ceil(hi);
        if (hi <= lo) hi = lo + 1;
        a->n_ticks = 0;
        const int decades = (int)(hi - lo);
        for (int e = (int)lo; e <= (int)hi && a->n_ticks < MAX_TICKS; e++) {
            static const double sub[] = {1, 2, 5};
            for (int s = 0; s < (decades <= 2 ? 3 : 1) && a->n_ticks < MAX_TICKS; s++) {
                const double v = log10(sub[s]) + e;
                if (v <= hi + 1e-12) a->ticks[a->n_ticks++] = v;
            }
        }
        a->lo = lo, a->hi = hi, a->step = 0;
        return;
    }
    if (hi - lo < 1e-300 || (hi - lo) < fabs(hi) * 1e-12) {
        const double pad = lo != 0 ? fabs(lo) * 0.1 : 1;
        lo -= pad, hi += pad;
    }
    a->n_ticks = report_plot_nice_ticks(lo, hi, max_ticks, a->ticks, &a->step);
    a->lo = a->ticks[0], a->hi = a->ticks[a->n_ticks - 1];
}

static void tick_label(const axis *a, double t, char *s, size_t n) {
    if (a->log) {
        snprintf(s, n, "%g", pow(10.0, t));
        return;
    }
    const double m = fmax(fabs(a->lo), fabs(a->hi));
    if (m >= 1e5 || a->step < 1e-4) {
        snprintf(s, n, "%.3g", t);
        return;
    }
    int dec = (int)-floor(log10(a->step) + 1e-9);
    if (dec < 0) dec = 0;
    snprintf(s, n, "%.*f", dec, t);
}

typedef struct {
    axis x, y;
    double top; /* y of the plot area's top edge */
} frame;

static double px(const frame *f, double v) { return ML + (axv(&f->x, v) - f->x.lo) / (f->x.hi - f->x.lo) * PW; }
static double py(const frame *f, double v) {
    return f->top + PH - (axv(&f->y, v) - f->y.lo) / (f->y.hi - f->y.lo) * PH;
}

static void tip_default(char *s, size_t n, const char *label, double x, double y) {
    snprintf(s, n, "%s%s%.4g, %.4g", label ? label : "", label ? ": " : "", x, y);
}

static void marker(core_buf *o, const frame *f, double x, double y, const char *col, const char *tip) {
    core_buf_printf(o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.2\" fill=\"%s\"><title>", px(f, x), py(f, y), col);
    report_plot_escape(o, tip);
    core_buf_printf(o, "</title></circle>");
}

static void draw_series(core_buf *o, const frame *f, const plot_series *s) {
    const char *col = report_plot_color(s->color);
    char tip[256];
    switch (s->kind) {
    case PLOT_BAND: {
        /* one polygon per run of usable points */
        for (int i = 0; i < s->n;) {
            while (i < s->n && !(usable(&f->x, s->x[i]) && usable(&f->y, s->y[i]) && usable(&f->y, s->y2[i]))) i++;
            int j = i;
            while (j < s->n && usable(&f->x, s->x[j]) && usable(&f->y, s->y[j]) && usable(&f->y, s->y2[j])) j++;
            if (j - i >= 2) {
                core_buf_printf(o, "<polygon class=\"band\" fill=\"%s\" points=\"", col);
                for (int k = i; k < j; k++) core_buf_printf(o, "%.1f,%.1f ", px(f, s->x[k]), py(f, s->y[k]));
                for (int k = j - 1; k >= i; k--) core_buf_printf(o, "%.1f,%.1f ", px(f, s->x[k]), py(f, s->y2[k]));
                core_buf_printf(o, "\"/>");
            }
            i = j;
        }
        break;
    }
    case PLOT_LINE:
    case PLOT_SCATTER: {
        if (s->kind == PLOT_LINE) {
            int open = 0;
            for (int i = 0; i < s->n; i++) {
                const int ok = usable(&f->x, s->x[i]) && usable(&f->y, s->y[i]);
                if (ok && !open) {
                    core_buf_printf(o, "<polyline class=\"line%s\" stroke=\"%s\" points=\"", s->dashed ? " dash" : "",
                                    col);
                    open = 1;
                }
                if (ok) core_buf_printf(o, "%.1f,%.1f ", px(f, s->x[i]), py(f, s->y[i]));
                if (!ok && open) core_buf_printf(o, "\"/>"), open = 0;
            }
            if (open) core_buf_printf(o, "\"/>");
        }
        /* long lines (training curves) without markers */
        for (int i = 0; i < s->n && (s->kind == PLOT_SCATTER || s->n <= 60); i++) {
            if (!(usable(&f->x, s->x[i]) && usable(&f->y, s->y[i]))) continue;
            if (s->tips && s->tips[i])
                snprintf(tip, sizeof tip, "%s", s->tips[i]);
            else
                tip_default(tip, sizeof tip, s->label, s->x[i], s->y[i]);
            marker(o, f, s->x[i], s->y[i], col, tip);
        }
        break;
    }
    case PLOT_HIST:
        for (int i = 0; i < s->n; i++) {
            if (!(s->y[i] > 0) || !usable(&f->x, s->x[i]) || !usable(&f->x, s->x[i + 1])) continue;
            const double x0 = px(f, s->x[i]), x1 = px(f, s->x[i + 1]), y0 = py(f, s->y[i]), yb = f->top + PH;
            core_buf_printf(o, "<rect class=\"bar\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" stroke=\"%s\"><title>",
                            x0, y0, fmax(x1 - x0, 0.5), yb - y0, col, col);
            snprintf(tip, sizeof tip, "%s%s%.4g to %.4g: %g", s->label ? s->label : "", s->label ? ": " : "", s->x[i],
                     s->x[i + 1], s->y[i]);
            report_plot_escape(o, tip);
            core_buf_printf(o, "</title></rect>");
        }
        break;
    case PLOT_HLINE:
        if (s->n >= 1 && usable(&f->y, s->y[0])) {
            const double y = py(f, s->y[0]);
            core_buf_printf(o, "<line class=\"line dash\" stroke=\"%s\" x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\"><title>",
                            col, ML, ML + PW, y, y);
            snprintf(tip, sizeof tip, "%s%s%.4g", s->label ? s->label : "", s->label ? ": " : "", s->y[0]);
            report_plot_escape(o, tip);
            core_buf_printf(o, "</title></line>");
        }
        break;
    case PLOT_SEGMENT:
        if (s->n >= 2 && usable(&f->x, s->x[0]) && usable(&f->x, s->x[1]) && usable(&f->y, s->y[0]) &&
            usable(&f->y, s->y[1]))
            core_buf_printf(o, "<line class=\"line dash\" stroke=\"%s\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>",
                            col, px(f, s->x[0]), px(f, s->x[1]), py(f, s->y[0]), py(f, s->y[1]));
        break;
    }
}

/* Legend entries laid out in rows under the axis label; returns the rows
 * used (draw = 0: only count). */
static int legend(core_buf *o, const plot_chart *c, double y0, int draw) {
    int rows = 0;
    double x = ML;
    for (int i = 0; i < c->n_series; i++) {
        const plot_series *s = &c->series[i];
        if (!s->label || !s->label[0]) continue;
        const double w = 22 + 6.2 * (double)strlen(s->label) + 14;
        if (rows == 0 || x + w > W - 4) {
            rows++;
            x = ML;
        }
        if (draw) {
            const double y = y0 + (rows - 1) * LEG_ROW;
            const char *col = report_plot_color(s->color);
            if (s->kind == PLOT_SCATTER)
                core_buf_printf(o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.2\" fill=\"%s\"/>", x + 8, y - 4, col);
            else if (s->kind == PLOT_BAND || s->kind == PLOT_HIST)
                core_buf_printf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"16\" height=\"9\" fill=\"%s\" class=\"%s\"/>", x,
                                y - 8, col, s->kind == PLOT_BAND ? "band" : "bar");
            else
                core_buf_printf(o, "<line class=\"line%s\" stroke=\"%s\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>",
                                s->dashed || s->kind == PLOT_HLINE || s->kind == PLOT_SEGMENT ? " dash" : "", col, x,
                                x + 16, y - 4, y - 4);
            core_buf_printf(o, "<text x=\"%.1f\" y=\"%.1f\">", x + 21, y);
            report_plot_escape(o, s->label);
            core_buf_printf(o, "</text>");
        }
        x += w;
    }
    return rows;
}

int report_plot_svg(core_buf *o, const plot_chart *c) {
    frame f;
    memset(&f, 0, sizeof f);
    f.x.log = c->xlog, f.y.log = c->ylog;
    f.top = MT;
    double xl = INFINITY, xh = -INFINITY, yl = INFINITY, yh = -INFINITY;
    for (int i = 0; i < c->n_series; i++) {
        const plot_series *s = &c->series[i];
        const int nx = s->kind == PLOT_HIST ? s->n + 1 : s->kind == PLOT_HLINE ? 0 : s->n;
        for (int k = 0; k < nx; k++) axis_add(&f.x, s->x[k], &xl, &xh);
        const int ny = s->kind == PLOT_HLINE ? (s->n > 0) : s->n;
        for (int k = 0; k < ny; k++) {
            axis_add(&f.y, s->y[k], &yl, &yh);
            if (s->kind == PLOT_BAND) axis_add(&f.y, s->y2[k], &yl, &yh);
        }
    }
    axis_add(&f.x, c->xmin, &xl, &xh), axis_add(&f.x, c->xmax, &xl, &xh);
    axis_add(&f.y, c->ymin, &yl, &yh), axis_add(&f.y, c->ymax, &yl, &yh);
    if (c->y_zero && !c->ylog && yl <= yh) yl = fmin(yl, 0), yh = fmax(yh, 0);
    axis_build(&f.x, xl, xh, 7);
    axis_build(&f.y, yl, yh, 6);

    const int rows = legend(o, c, 0, 0);
    const double leg_top = MT + PH + 46;
    /* one legend row at least, so that charts side by side keep one height */
    const int H = (int)(leg_top + (rows ? rows : 1) * LEG_ROW);
    core_buf_printf(o, "<svg class=\"plot\"%s%s%s viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"", c->id ? " id=\"" : "",
                    c->id ? c->id : "", c->id ? "\"" : "", W, H);
    report_plot_escape(o, c->title);
    core_buf_printf(o, "\"><text class=\"t\" x=\"%d\" y=\"17\" text-anchor=\"middle\">", W / 2);
    report_plot_escape(o, c->title);
    core_buf_printf(o, "</text><rect class=\"area\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\"/>", ML, MT, PW, PH);
    char lab[48];
    for (int i = 0; i < f.x.n_ticks; i++) {
        const double x = ML + (f.x.ticks[i] - f.x.lo) / (f.x.hi - f.x.lo) * PW;
        tick_label(&f.x, f.x.ticks[i], lab, sizeof lab);
        core_buf_printf(o, "<line class=\"grid\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\"/>", x, x, MT, MT + PH);
        core_buf_printf(o, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>", x, MT + PH + 14, lab);
    }
    for (int i = 0; i < f.y.n_ticks; i++) {
        const double y = MT + PH - (f.y.ticks[i] - f.y.lo) / (f.y.hi - f.y.lo) * PH;
        tick_label(&f.y, f.y.ticks[i], lab, sizeof lab);
        core_buf_printf(o, "<line class=\"grid\" x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\"/>", ML, ML + PW, y, y);
        core_buf_printf(o, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>", ML - 5, y + 3.5, lab);
    }
    /* bands and bars first, so lines and markers stay on top */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < c->n_series; i++) {
            const int back = c->series[i].kind == PLOT_BAND || c->series[i].kind == PLOT_HIST;
            if (back == (pass == 0)) draw_series(o, &f, &c->series[i]);
        }
    core_buf_printf(o, "<text class=\"lab\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">", ML + PW / 2, MT + PH + 32);
    report_plot_escape(o, c->xlabel);
    core_buf_printf(o, "</text><text class=\"lab\" transform=\"translate(13 %d) rotate(-90)\" text-anchor=\"middle\">",
                    MT + PH / 2);
    report_plot_escape(o, c->ylabel);
    core_buf_printf(o, "</text>");
    legend(o, c, leg_top, 1);
    core_buf_printf(o, "</svg>");
    return o->failed ? -1 : 0;
}
