/* The report's SVG chart module (src/report/plot.c): tick values, what each
 * series kind draws, NaN and log handling, the legend, escaping. */
#include "../src/report/plot.h"
#include "testutil.h"

#include <math.h>

static int count(const char *s, const char *what) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, what)); p += strlen(what)) n++;
    return n;
}

static void ticks(double lo, double hi, int max, const double *want, int n_want, double want_step) {
    double t[32], step = 0;
    const int n = report_plot_nice_ticks(lo, hi, max, t, &step);
    int ok = n == n_want && fabs(step - want_step) < 1e-12 * fmax(1, want_step);
    for (int i = 0; ok && i < n; i++) ok = fabs(t[i] - want[i]) < 1e-9 * fmax(1, fabs(want[i]));
    CHECK(ok, "ticks [%g, %g] max %d: got %d ticks step %g (first %g, last %g), want %d step %g", lo, hi, max, n, step,
          n ? t[0] : 0, n ? t[n - 1] : 0, n_want, want_step);
}

static char *svg(const plot_chart *c) {
    core_buf b = {0};
    CHECK(report_plot_svg(&b, c) == 0 && b.p, "report_plot_svg");
    return b.p;
}

int main(void) {
    /* nice ticks: 1, 2 or 5 x 10^k, covering the range */
    ticks(0, 1, 6, (double[]){0, 0.2, 0.4, 0.6, 0.8, 1.0}, 6, 0.2);
    ticks(0.0123, 0.0456, 6, (double[]){0.01, 0.02, 0.03, 0.04, 0.05}, 5, 0.01);
    ticks(-3, 7, 6, (double[]){-5, 0, 5, 10}, 4, 5); /* step 2 would need 7 ticks: widened to 5 */
    ticks(10, 90, 7, (double[]){0, 20, 40, 60, 80, 100}, 6, 20);
    ticks(0.125, 0.75, 7, (double[]){0, 0.2, 0.4, 0.6, 0.8}, 5, 0.2);
    {
        double t[32], step;
        const int n = report_plot_nice_ticks(0.125, 0.75, 7, t, &step);
        CHECK(n <= 7 && t[0] <= 0.125 && t[n - 1] >= 0.75, "at most max_ticks, covering: %d ticks %g..%g", n, t[0],
              t[n - 1]);
    }

    /* a line with a NaN: two polylines, one marker per finite point, each
     * with its title; a band; the legend has both labels */
    double x[5] = {1, 2, 3, 4, 5}, y[5] = {0.1, 0.2, NAN, 0.4, 0.5}, lo[5] = {0, 0.1, 0.2, 0.3, 0.4},
           hi[5] = {0.2, 0.3, 0.4, 0.5, 0.6};
    plot_series s[2] = {{PLOT_BAND, "p10 to p90", 0, 5, x, lo, hi, 0, NULL},
                        {PLOT_LINE, "mean <a&b>", 1, 5, x, y, NULL, 0, NULL}};
    plot_chart c = report_plot_chart_init();
    c.title = "t \"q\"";
    c.xlabel = "level";
    c.ylabel = "d";
    c.series = s;
    c.n_series = 2;
    char *o = svg(&c);
    CHECK(count(o, "<polyline") == 2, "NaN breaks the line: %d polylines", count(o, "<polyline"));
    CHECK(count(o, "<circle") == 4, "a marker per finite point: %d", count(o, "<circle"));
    CHECK(count(o, "<title>mean &lt;a&amp;b&gt;: 4, 0.4</title>") == 1, "marker title with its values, escaped");
    CHECK(count(o, "<polygon class=\"band\"") == 1, "band: one polygon");
    CHECK(strstr(o, "aria-label=\"t &quot;q&quot;\"") != NULL, "title escaped in attributes");
    CHECK(count(o, ">p10 to p90</text>") == 1 && count(o, ">mean &lt;a&amp;b&gt;</text>") == 1, "legend labels");
    CHECK(strstr(o, "#0072B2") && strstr(o, "#D55E00"), "palette colours 0 and 1");
    /* the y axis includes the band (0 .. 0.6): ticks 0.0 and 0.6 */
    CHECK(strstr(o, ">0.0</text>") && strstr(o, ">0.6</text>"), "y ticks cover the band");
    free(o);

    /* histogram: one rect per non-empty bin (plus the plot area) */
    double edges[5] = {0, 1, 2, 3, 4}, counts[4] = {3, 0, 1, 2};
    plot_series h = {PLOT_HIST, NULL, 0, 4, edges, counts, NULL, 0, NULL};
    c = report_plot_chart_init();
    c.series = &h;
    c.n_series = 1;
    c.y_zero = 1;
    o = svg(&c);
    CHECK(count(o, "<rect class=\"bar\"") == 3, "histogram bars: %d", count(o, "<rect class=\"bar\""));
    CHECK(count(o, "<title>0 to 1: 3</title>") == 1, "bar title");
    free(o);

    /* log axis: non-positive values left out, decade ticks */
    double lx[4] = {0, 0.01, 1, 100}, ly[4] = {1, 2, 3, 4};
    plot_series l = {PLOT_SCATTER, "s", 2, 4, lx, ly, NULL, 0, NULL};
    c = report_plot_chart_init();
    c.xlog = 1;
    c.series = &l;
    c.n_series = 1;
    o = svg(&c);
    CHECK(count(o, "<circle") == 3 + 1, "log x: the point at 0 left out (3 markers + legend dot): %d",
          count(o, "<circle"));
    CHECK(strstr(o, ">0.01</text>") && strstr(o, ">1</text>") && strstr(o, ">100</text>"), "log ticks");
    free(o);

    /* no data at all: still a valid, empty chart */
    c = report_plot_chart_init();
    o = svg(&c);
    CHECK(strstr(o, "<svg") && strstr(o, "</svg>") && !strstr(o, "nan") && !strstr(o, "inf"), "empty chart");
    free(o);
    return t_finish();
}
