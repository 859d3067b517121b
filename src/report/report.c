/* wobble report: one self-contained HTML file from eval / finetune output
 * folders (docs/report.md).
 *
 * Every number the page shows is read from the runs' JSON files and is
 * written as <... data-j="RUN:FILE:PATH"> with the JSON path it came from
 * (tests/test_report.py checks each against the file). Plots come from
 * src/report/plot.c; the worst images are re-made from the dataset with the
 * run's seed and checked against the content hash eval recorded. */
#include "plot.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

wobble_report_params wobble_report_default_params(void) {
    wobble_report_params p;
    memset(&p, 0, sizeof p);
    p.worst = 3;
    p.thumb_size = 128;
    p.thumb_quality = 75;
    return p;
}

/* ------------------------------------------------------------ the runs */
typedef struct {
    char *image;   /* as eval recorded it */
    char hash[24]; /* its content hash (hex) */
    int op;        /* index into summary.ops */
    int line;      /* 0-based line of per_image.jsonl */
    int worst;     /* level index with the largest euc */
    double r_div;
} rp_rec;

typedef struct {
    const char *dir;
    char label[160];
    json_t *summary, *run, *down, *ft, *train_log, *val; /* NULL when absent */
    json_t *depth;                                       /* depth.json (eval --task depth) */
    json_t *per_image;                                   /* the lines of per_image.jsonl */
    rp_rec *rec;
    size_t n_rec;
    int missing;         /* worst images that could not be shown */
    char first_miss[1100];
} rp_run;

typedef struct {
    wobble_ctx *ctx;
    const wobble_report_params *P;
    rp_run *runs;
    int n;
    core_buf o;
    int chart_id;
} rp;

static double jnum(const json_t *v) { return json_is_number(v) ? json_number_value(v) : NAN; }

/* json at a '/'-separated path (array items by index). */
static json_t *jpath(json_t *root, const char *path) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *v = root;
    for (char *save = NULL, *t = strtok_r(buf, "/", &save); v && t; t = strtok_r(NULL, "/", &save)) {
        if (json_is_array(v)) {
            char *end;
            const long i = strtol(t, &end, 10);
            v = *end ? NULL : json_array_get(v, (size_t)i);
        } else {
            v = json_object_get(v, t);
        }
    }
    return v;
}

static const char *jstr(json_t *root, const char *path) {
    const char *s = json_string_value(jpath(root, path));
    return s ? s : "";
}

static int file_exists(const char *p) {
    FILE *f = fopen(p, "rb");
    if (f) fclose(f);
    return f != NULL;
}

/* A JSON file of the run folder: NULL and OK when absent and optional. */
static int load_json(wobble_ctx *ctx, const char *dir, const char *name, int required, json_t **out) {
    *out = NULL;
    char *p = core_path_join(dir, name);
    if (!p) return core_seterr(ctx, WOBBLE_ENOMEM, "report: out of memory");
    int rc = WOBBLE_OK;
    if (!file_exists(p)) {
        if (required) rc = core_seterr(ctx, WOBBLE_EIO, "%s: cannot be read (not a wobble output folder?)", p);
    } else {
        json_error_t e;
        *out = json_load_file(p, 0, &e);
        if (!*out)
            rc = CORE_JSON_OOM(&e) ? core_seterr(ctx, WOBBLE_ENOMEM, "report: out of memory")
                                   : core_seterr(ctx, WOBBLE_ECORRUPT, "%s: not valid JSON (line %d: %s)", p, e.line,
                                                 e.text);
        else if (!json_is_object(*out)) {
            json_decref(*out), *out = NULL;
            rc = core_seterr(ctx, WOBBLE_ECORRUPT, "%s: not a JSON object", p);
        }
    }
    free(p);
    return rc;
}

/* A .jsonl file as a JSON array of its lines (NULL when absent). */
static int load_jsonl(wobble_ctx *ctx, const char *dir, const char *name, json_t **out) {
    *out = NULL;
    char *p = core_path_join(dir, name);
    if (!p) return core_seterr(ctx, WOBBLE_ENOMEM, "report: out of memory");
    if (!file_exists(p)) {
        free(p);
        return WOBBLE_OK;
    }
    uint8_t *data = NULL;
    size_t size = 0;
    int rc = core_read_file(ctx, p, &data, &size);
    json_t *arr = rc ? NULL : json_array();
    if (!rc && !arr) rc = core_seterr(ctx, WOBBLE_ENOMEM, "report: out of memory");
    size_t start = 0;
    for (int line = 1; !rc && start < size; line++) {
        size_t end = start;
        while (end < size && data[end] != '\n') end++;
        if (end > start) {
            json_error_t e;
            json_t *v = json_loadb((const char *)data + start, end - start, 0, &e);
            if (!v)
                rc = CORE_JSON_OOM(&e) ? core_seterr(ctx, WOBBLE_ENOMEM, "report: out of memory")
                                       : core_seterr(ctx, WOBBLE_ECORRUPT, "%s: line %d is not valid JSON (%s)", p,
                                                     line, e.text);
            else if (!json_is_object(v)) {
                json_decref(v);
                rc = core_seterr(ctx, WOBBLE_ECORRUPT, "%s: line %d is not a JSON object", p, line);
            } else if (json_array_append_new(arr, v))
                rc = core_seterr(ctx, WOBBLE_ENOMEM, "report: out of memory");
        } else if (end < size) {
            rc = core_seterr(ctx, WOBBLE_ECORRUPT, "%s: line %d is empty", p, line);
        }
        start = end + 1;
    }
    free(data);
    if (rc)
        json_decref(arr);
    else
        *out = arr;
    free(p);
    return rc;
}

static const char *base_name(const char *p) {
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') n--;
    size_t i = n;
    while (i > 0 && p[i - 1] != '/') i--;
    static __thread char b[128];
    snprintf(b, sizeof b, "%.*s", (int)(n - i), p + i);
    return b;
}

static int check_version(wobble_ctx *ctx, const char *dir, const char *file, json_t *root) {
    const char *v = json_string_value(json_object_get(root, "wobble"));
    if (!v) return core_seterr(ctx, WOBBLE_ECORRUPT, "%s/%s: no \"wobble\" version field (not written by wobble?)", dir, file);
    if (strcmp(v, wobble_version()))
        return core_seterr(ctx, WOBBLE_ECORRUPT,
                           "%s/%s: written by wobble %s; this is wobble %s, which reports its own version's runs "
                           "(re-run the eval with this version)",
                           dir, file, v, wobble_version());
    return WOBBLE_OK;
}

/* per_image.jsonl: one record per (image, op) */
static int load_records(wobble_ctx *ctx, rp_run *r) {
    int rc = load_jsonl(ctx, r->dir, "per_image.jsonl", &r->per_image);
    if (rc) return rc;
    json_t *lines = r->per_image;
    if (!lines) return core_seterr(ctx, WOBBLE_EIO, "%s/per_image.jsonl: cannot be read", r->dir);
    json_t *ops = json_object_get(r->summary, "ops");
    const size_t n = json_array_size(lines);
    r->rec = calloc(n ? n : 1, sizeof *r->rec);
    if (!r->rec) rc = core_seterr(ctx, WOBBLE_ENOMEM, "report: out of memory");
    for (size_t i = 0; !rc && i < n; i++) {
        json_t *l = json_array_get(lines, i);
        const char *op = json_string_value(json_object_get(l, "op"));
        const char *img = json_string_value(json_object_get(l, "image"));
        const char *hash = json_string_value(json_object_get(l, "image_hash"));
        json_t *euc = json_object_get(l, "euc");
        const double rd = jnum(json_object_get(l, "R_div"));
        int o = -1;
        for (size_t k = 0; op && k < json_array_size(ops); k++)
            if (!strcmp(op, jstr(json_array_get(ops, k), "op"))) o = (int)k;
        if (!op || !img || !hash || !json_is_array(euc) || !json_array_size(euc) || !isfinite(rd) || o < 0) {
            rc = core_seterr(ctx, WOBBLE_ECORRUPT,
                             "%s/per_image.jsonl: line %zu lacks image, image_hash, a known op, euc or R_div", r->dir,
                             i + 1);
            break;
        }
        rp_rec *q = &r->rec[r->n_rec++];
        q->image = strdup(img);
        if (!q->image) rc = core_seterr(ctx, WOBBLE_ENOMEM, "report: out of memory");
        snprintf(q->hash, sizeof q->hash, "%s", hash);
        q->op = o, q->line = (int)i, q->r_div = rd;
        double best = -1;
        for (size_t k = 0; k < json_array_size(euc); k++)
            if (jnum(json_array_get(euc, k)) > best) best = jnum(json_array_get(euc, k)), q->worst = (int)k;
    }
    return rc;
}

static int load_run(wobble_ctx *ctx, const char *dir, rp_run *r) {
    memset(r, 0, sizeof *r);
    r->dir = dir;
    int rc = load_json(ctx, dir, "summary.json", 0, &r->summary);
    if (!rc && !r->summary) rc = load_json(ctx, dir, "finetune.json", 0, &r->ft);
    if (!rc && !r->summary && !r->ft) rc = load_json(ctx, dir, "depth.json", 0, &r->depth);
    if (rc) return rc;
    if (!r->summary && !r->ft && !r->depth) {
        if (!core_is_dir(dir)) return core_seterr(ctx, WOBBLE_EIO, "%s: no such folder", dir);
        return core_seterr(ctx, WOBBLE_EIO,
                           "%s: neither summary.json nor finetune.json (not the output folder of wobble eval or "
                           "wobble finetune)",
                           dir);
    }
    if (r->depth) {
        if ((rc = check_version(ctx, dir, "depth.json", r->depth))) return rc;
        if (!json_is_array(json_object_get(r->depth, "ops")) || !json_is_object(json_object_get(r->depth, "clean")))
            return core_seterr(ctx, WOBBLE_ECORRUPT, "%s/depth.json: no \"clean\" or \"ops\" (not a wobble depth run)", dir);
        if ((rc = load_json(ctx, dir, "run.json", 0, &r->run))) return rc;
        snprintf(r->label, sizeof r->label, "%s depth (%s)", jstr(r->depth, "model/preset"), base_name(dir));
        return WOBBLE_OK;
    }
    if (r->summary) {
        if ((rc = check_version(ctx, dir, "summary.json", r->summary))) return rc;
        if (!json_is_array(json_object_get(r->summary, "ops")))
            return core_seterr(ctx, WOBBLE_ECORRUPT, "%s/summary.json: no \"ops\" list (not a wobble eval summary)", dir);
        if ((rc = load_json(ctx, dir, "run.json", 0, &r->run)) || (rc = load_json(ctx, dir, "downstream.json", 0, &r->down)))
            return rc;
        if (r->down && (rc = check_version(ctx, dir, "downstream.json", r->down))) return rc;
        if ((rc = load_records(ctx, r))) return rc;
        snprintf(r->label, sizeof r->label, "%s (%s)", jstr(r->summary, "model/preset"), base_name(dir));
    } else {
        if (json_object_get(r->ft, "wobble") && (rc = check_version(ctx, dir, "finetune.json", r->ft))) return rc;
        if (!json_is_object(json_object_get(r->ft, "config")))
            return core_seterr(ctx, WOBBLE_ECORRUPT, "%s/finetune.json: no \"config\" (not a wobble finetune record)", dir);
        if ((rc = load_jsonl(ctx, dir, "train_log.jsonl", &r->train_log)) || (rc = load_jsonl(ctx, dir, "val.jsonl", &r->val)))
            return rc;
        snprintf(r->label, sizeof r->label, "fine-tune (%s)", base_name(dir));
    }
    return WOBBLE_OK;
}

static void free_run(rp_run *r) {
    json_decref(r->summary), json_decref(r->run), json_decref(r->down), json_decref(r->ft), json_decref(r->depth);
    json_decref(r->train_log), json_decref(r->val), json_decref(r->per_image);
    for (size_t i = 0; i < r->n_rec; i++) free(r->rec[i].image);
    free(r->rec);
}

/* ------------------------------------------------------------ HTML bits */
#define OUT(...) core_buf_printf(&R->o, __VA_ARGS__)
static void esc(rp *R, const char *s) { report_plot_escape(&R->o, s); }

/* A number from a run's file at PATH, in `tag` with its source:
 * data-j="RUN:FILE:PATH" and data-v (the full value, for sorting). Integers
 * print as integers, other numbers with 4 significant digits; anything else
 * as a dash. bar >= 0 draws an inline bar of that fraction (table cells). */
static void num_at(rp *R, const char *tag, int run, const char *file, json_t *root, double bar, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
static void num_at(rp *R, const char *tag, int run, const char *file, json_t *root, double bar, const char *fmt, ...) {
    char path[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof path, fmt, ap);
    va_end(ap);
    json_t *v = jpath(root, path);
    if (!json_is_number(v)) {
        OUT("<%s class=\"na\">&ndash;</%s>", tag, tag);
        return;
    }
    OUT("<%s class=\"num%s\" data-j=\"%d:%s:%s\" data-v=\"%.17g\"", tag, bar >= 0 ? " bar" : "", run, file, path,
        json_number_value(v));
    if (bar >= 0) OUT(" style=\"--w:%.1f%%\"", 100 * fmin(fmax(bar, 0), 1));
    if (json_is_integer(v))
        OUT(">%lld</%s>", (long long)json_integer_value(v), tag);
    else
        OUT(">%.4g</%s>", json_real_value(v), tag);
}

static const char CSS[] =
    "*{box-sizing:border-box}body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1b1b1b;"
    "margin:0 auto;max-width:1400px;padding:12px 18px}h1{font-size:1.6em;margin:.3em 0}h2{font-size:1.3em;"
    "border-bottom:2px solid #0072B2;margin-top:1.6em}h3{font-size:1.1em;margin:1.2em 0 .3em}p.note{color:#555;"
    "font-size:.9em}nav a{margin-right:1em}.scroll{overflow-x:auto}table{border-collapse:collapse;margin:.4em 0;"
    "font-size:.9em}th,td{padding:3px 8px;border-bottom:1px solid #e3e3e3;text-align:left;vertical-align:top}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}td.bar{background:linear-gradient(90deg,#cfe2f3 "
    "var(--w),transparent var(--w))}th.sort{cursor:pointer;user-select:none}th.sort:after{content:' \\2195';"
    "color:#999}.charts{display:flex;flex-wrap:wrap;gap:10px}.charts svg.plot{flex:0 1 395px;"
    "min-width:280px;height:auto}svg.plot text{font:11px system-ui,sans-serif;fill:#222}svg.plot text.t{font-weight:600;"
    "font-size:12px}svg.plot .area{fill:#fff;stroke:#999}svg.plot .grid{stroke:#ececec}svg.plot .line{fill:none;"
    "stroke-width:1.8}svg.plot .dash{stroke-dasharray:5 3}svg.plot .band{opacity:.18}svg.plot .bar{fill-opacity:.35;"
    "stroke-width:1}.worst{display:flex;flex-wrap:wrap;gap:12px}.worst figure{margin:0;font-size:.8em;color:#333}"
    ".worst img{display:block;border:1px solid #ccc}.pair{display:flex;gap:3px}dl.kv{display:grid;grid-template-"
    "columns:max-content 1fr;gap:2px 12px;margin:.4em 0}dl.kv dt{color:#555}dl.kv dd{margin:0;word-break:break-all}"
    "code{font-size:.9em}@media print{body{max-width:none;font-size:11px}nav{display:none}.charts svg.plot{max-width:"
    "330px}section,figure,svg,tr{break-inside:avoid}.scroll{overflow:visible}}";

/* Sort a table by the clicked column's data-v (numbers) or text. */
static const char SCRIPT[] =
    "document.querySelectorAll('table.sortable th.sort').forEach(function(th){th.addEventListener('click',"
    "function(){var t=th.closest('table'),b=t.tBodies[0],i=th.cellIndex,d=th.dataset.dir==='a'?'d':'a';"
    "th.dataset.dir=d;var rows=Array.prototype.slice.call(b.rows);rows.sort(function(x,y){var a=x.cells[i],c="
    "y.cells[i],u=a&&a.dataset.v!==undefined?+a.dataset.v:NaN,w=c&&c.dataset.v!==undefined?+c.dataset.v:NaN,r;"
    "if(isNaN(u)&&isNaN(w))r=(a?a.textContent:'').localeCompare(c?c.textContent:'');else if(isNaN(u))r=1;else "
    "if(isNaN(w))r=-1;else r=u-w;return d==='a'?r:-r;});rows.forEach(function(r){b.appendChild(r);});});});";

/* ------------------------------------------------------------ sections */
static int n_eval(const rp *R) {
    int k = 0;
    for (int i = 0; i < R->n; i++) k += R->runs[i].summary != NULL;
    return k;
}

static void kv(rp *R, const char *k, const char *v) {
    OUT("<dt>%s</dt><dd>", k);
    esc(R, v);
    OUT("</dd>");
}

/* date, command line, threads and seconds per stage from run.json */
static void run_rows(rp *R, int i, rp_run *r) {
    kv(R, "date", jstr(r->run, "date"));
    kv(R, "command", jstr(r->run, "command"));
    OUT("<dt>seconds</dt><dd>");
    const char *key;
    json_t *val;
    int st = 0;
    json_object_foreach(json_object_get(r->run, "seconds"), key, val) {
        OUT("%s", st++ ? ", " : "");
        esc(R, key);
        OUT(" ");
        num_at(R, "span", i, "run", r->run, -1, "seconds/%s", key);
    }
    OUT(" (");
    num_at(R, "span", i, "run", r->run, -1, "threads");
    OUT(" threads)</dd>");
}

static void section_runs(rp *R) {
    OUT("<section id=\"runs\"><h2>Runs</h2>");
    for (int i = 0; i < R->n; i++) {
        rp_run *r = &R->runs[i];
        OUT("<h3><span class=\"sw\" style=\"color:%s\">&#9632;</span> ", report_plot_color(i));
        esc(R, r->label);
        OUT("</h3><dl class=\"kv\">");
        kv(R, "folder", r->dir);
        if (r->summary) {
            json_t *s = r->summary;
            char t[600];
            snprintf(t, sizeof t, "%s, %s (%s naming), %s", jstr(s, "model/preset"), jstr(s, "model/arch"),
                     jstr(s, "model/naming"), jstr(s, "model/precision"));
            OUT("<dt>model</dt><dd>");
            esc(R, t);
            OUT(", embedding dimension ");
            num_at(R, "span", i, "summary", s, -1, "model/embed_dim");
            OUT("</dd>");
            kv(R, "model path", jstr(s, "model/path"));
            kv(R, "model content hash", jstr(s, "model/content_hash"));
            snprintf(t, sizeof t, "%s (%s)", jstr(s, "dataset/path"), jstr(s, "dataset/kind"));
            kv(R, "dataset", t);
            OUT("<dt>images</dt><dd>");
            num_at(R, "span", i, "summary", s, -1, "dataset/evaluated");
            OUT(" evaluated of ");
            num_at(R, "span", i, "summary", s, -1, "dataset/images");
            OUT(", ");
            num_at(R, "span", i, "summary", s, -1, "dataset/failed_count");
            OUT(" failed</dd><dt>seed</dt><dd>");
            num_at(R, "span", i, "summary", s, -1, "seed");
            OUT("</dd><dt>operations</dt><dd>");
            size_t k;
            json_t *op;
            json_array_foreach(json_object_get(s, "ops"), k, op) {
                OUT("%s<code>", k ? "; " : "");
                esc(R, jstr(op, "op"));
                OUT("</code>");
                for (size_t l = 0; l < json_array_size(json_object_get(op, "levels")); l++) {
                    OUT("%s", l ? ", " : " ");
                    num_at(R, "span", i, "summary", s, -1, "ops/%zu/levels/%zu", k, l);
                }
            }
            OUT("</dd>");
            kv(R, "wobble", jstr(s, "wobble"));
            if (r->down) {
                snprintf(t, sizeof t, "%s, classifier %s; test %s, train %s", jstr(r->down, "task"),
                         jstr(r->down, "classifier/kind"), jstr(r->down, "test/path"),
                         jstr(r->down, "train/path")[0] ? jstr(r->down, "train/path") : "none");
                kv(R, "downstream", t);
            }
            if (r->run) {
                run_rows(R, i, r);
            } else {
                kv(R, "date, timings", "not recorded (run.json is written by the wobble eval command)");
            }
        } else if (r->depth) {
            json_t *d = r->depth;
            char t[600];
            snprintf(t, sizeof t, "%s (%s), path %s", jstr(d, "model/preset"), jstr(d, "model/arch"), jstr(d, "model/path"));
            kv(R, "model", t);
            OUT("<dt>depth probe</dt><dd>");
            num_at(R, "span", i, "depth", d, -1, "train/images");
            OUT(" training images from ");
            esc(R, jstr(d, "train/first"));
            OUT(", ");
            num_at(R, "span", i, "depth", d, -1, "test/images");
            OUT(" test images from ");
            esc(R, jstr(d, "test/first"));
            OUT("; ");
            num_at(R, "span", i, "depth", d, -1, "probe/bins");
            OUT(" bins over ");
            num_at(R, "span", i, "depth", d, -1, "probe/d_min");
            OUT(" to ");
            num_at(R, "span", i, "depth", d, -1, "probe/d_max");
            OUT(" m, ");
            num_at(R, "span", i, "depth", d, -1, "probe/steps");
            OUT(" steps; seed ");
            num_at(R, "span", i, "depth", d, -1, "seed");
            OUT("</dd>");
            kv(R, "wobble", jstr(d, "wobble"));
            if (r->run) run_rows(R, i, r);
        } else {
            json_t *c = json_object_get(r->ft, "config");
            char t[600];
            snprintf(t, sizeof t, "%s (content hash %s)", jstr(c, "model/path"), jstr(c, "model/content_hash"));
            kv(R, "model fine-tuned", t);
            kv(R, "training data", jstr(c, "dataset/path"));
            OUT("<dt>settings</dt><dd>objective %s, &lambda; ", jstr(c, "objective"));
            num_at(R, "span", i, "finetune", r->ft, -1, "config/lambda");
            OUT(", steps ");
            num_at(R, "span", i, "finetune", r->ft, -1, "config/steps");
            OUT(", batch ");
            num_at(R, "span", i, "finetune", r->ft, -1, "config/batch");
            OUT(", lr ");
            num_at(R, "span", i, "finetune", r->ft, -1, "config/lr");
            OUT(", seed ");
            num_at(R, "span", i, "finetune", r->ft, -1, "config/seed");
            OUT("</dd><dt>operations</dt><dd>");
            size_t k;
            json_t *op;
            json_array_foreach(json_object_get(c, "ops"), k, op) {
                OUT("%s<code>", k ? "; " : "");
                esc(R, jstr(op, "op"));
                OUT("</code>");
                for (size_t l = 0; l < json_array_size(json_object_get(op, "levels")); l++) {
                    OUT("%s", l ? ", " : " ");
                    num_at(R, "span", i, "finetune", r->ft, -1, "config/ops/%zu/levels/%zu", k, l);
                }
            }
            OUT("</dd><dt>seconds</dt><dd>training ");
            num_at(R, "span", i, "finetune", r->ft, -1, "result/seconds_training");
            OUT(", total ");
            num_at(R, "span", i, "finetune", r->ft, -1, "result/seconds_total");
            OUT("</dd>");
        }
        OUT("</dl>");
    }
    OUT("</section>");
}

/* The op names of every eval run, in the order of the table: by the first
 * run's mean R_div (most robust first), then ops only later runs have. */
typedef struct {
    const char *name;
    double key;
} op_key;

static int cmp_key(const void *a, const void *b) {
    const op_key *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int op_order(rp *R, op_key **out) {
    op_key *v = NULL;
    size_t cap = 0;
    int n = 0, rank = 0;
    for (int i = 0; i < R->n; i++) {
        json_t *ops = R->runs[i].summary ? json_object_get(R->runs[i].summary, "ops") : NULL;
        size_t k;
        json_t *op;
        json_array_foreach(ops, k, op) {
            const char *name = jstr(op, "op");
            int seen = 0;
            for (int j = 0; j < n; j++) seen |= !strcmp(v[j].name, name);
            if (seen) continue;
            if (core_grow(&v, &cap, (size_t)n + 1, sizeof *v)) {
                free(v);
                return -1;
            }
            const double m = jnum(jpath(op, "metrics/R_div/mean"));
            v[n].name = name;
            v[n].key = rank == 0 && isfinite(m) ? m : 1e300 + n; /* later runs' extra ops: in order, last */
            n++;
        }
        if (ops) rank++;
    }
    if (n) qsort(v, n, sizeof *v, cmp_key);
    *out = v;
    return n;
}

/* index of op `name` in run r's summary.ops, or -1 */
static int op_index(const rp_run *r, const char *name) {
    json_t *ops = r->summary ? json_object_get(r->summary, "ops") : NULL;
    for (size_t k = 0; k < json_array_size(ops); k++)
        if (!strcmp(name, jstr(json_array_get(ops, k), "op"))) return (int)k;
    return -1;
}

static const char *const METRICS[3] = {"R_cos", "R_euc", "R_div"};
static const char *const STATS[3] = {"mean", "median", "p90"};

static void section_table(rp *R, const op_key *ops, int n_ops) {
    OUT("<section id=\"robustness\"><h2>Robustness</h2><p class=\"note\">Per operation, over the images: R_cos = "
        "max over levels of (1 &minus; cos)/2, R_euc = max of &#8214;e &minus; e<sub>k</sub>&#8214;/2, R_div = radius of "
        "the minimum enclosing ball of the clean and perturbed embeddings (docs/metrics.md). Lower is more robust; "
        "rows start with the most robust operation (by the first run's mean R_div). Click a column to sort.</p>"
        "<div class=\"scroll\"><table class=\"sortable\" id=\"robustness-table\"><thead><tr><th rowspan=\"2\" "
        "class=\"sort\">operation</th>");
    const int E = n_eval(R);
    for (int i = 0; i < R->n; i++)
        if (R->runs[i].summary) {
            OUT("<th colspan=\"9\">");
            if (E > 1) {
                OUT("<span style=\"color:%s\">&#9632;</span> ", report_plot_color(i));
                esc(R, R->runs[i].label);
            }
            OUT("</th>");
        }
    OUT("</tr><tr>");
    for (int i = 0; i < R->n; i++)
        if (R->runs[i].summary)
            for (int m = 0; m < 3; m++)
                for (int s = 0; s < 3; s++) OUT("<th class=\"sort\">%s %s</th>", METRICS[m], STATS[s]);
    OUT("</tr></thead><tbody>");
    /* bars: each mean against its column's largest */
    for (int j = 0; j < n_ops; j++) {
        OUT("<tr><td><a href=\"#op-%d\"><code>", j);
        esc(R, ops[j].name);
        OUT("</code></a></td>");
        for (int i = 0; i < R->n; i++) {
            rp_run *r = &R->runs[i];
            if (!r->summary) continue;
            const int o = op_index(r, ops[j].name);
            for (int m = 0; m < 3; m++)
                for (int s = 0; s < 3; s++) {
                    double bar = -1;
                    if (s == 0 && o >= 0) {
                        double mx = 0;
                        json_t *all = json_object_get(r->summary, "ops");
                        for (size_t k = 0; k < json_array_size(all); k++) {
                            char p[96];
                            snprintf(p, sizeof p, "metrics/%s/mean", METRICS[m]);
                            mx = fmax(mx, jnum(jpath(json_array_get(all, k), p)));
                        }
                        char p[128];
                        snprintf(p, sizeof p, "ops/%d/metrics/%s/mean", o, METRICS[m]);
                        const double v = jnum(jpath(r->summary, p));
                        bar = mx > 0 && isfinite(v) ? v / mx : 0;
                    }
                    if (o < 0)
                        OUT("<td class=\"na\">&ndash;</td>");
                    else
                        num_at(R, "td", i, "summary", r->summary, bar, "ops/%d/metrics/%s/%s", o, METRICS[m], STATS[s]);
                }
        }
        OUT("</tr>");
    }
    OUT("</tbody></table></div></section>");
}

/* ------------------------------------------------------------ thumbnails */
static void b64(core_buf *o, const uint8_t *d, size_t n) {
    static const char T[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char q[4];
    for (size_t i = 0; i < n; i += 3) {
        const uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
        q[0] = T[v >> 18 & 63], q[1] = T[v >> 12 & 63];
        q[2] = i + 1 < n ? T[v >> 6 & 63] : '=';
        q[3] = i + 2 < n ? T[v & 63] : '=';
        core_buf_add(o, q, 4);
    }
}

static int thumb(rp *R, const wobble_image *img, const char *alt) {
    const int w = wobble_image_width(img), h = wobble_image_height(img), S = R->P->thumb_size;
    /* the longer side S, or S/2 for images smaller than that (CIFAR's 32 px) */
    const int L = w > h ? w : h, T = L > S ? S : L < S / 2 ? S / 2 : L;
    int tw = w, th = h;
    if (w >= h) tw = T, th = (int)fmax(1, lround((double)h * T / w));
    else th = T, tw = (int)fmax(1, lround((double)w * T / h));
    wobble_image *t = NULL;
    uint8_t *jpg = NULL;
    size_t n = 0;
    int rc = wobble_image_resize(R->ctx, img, tw, th, WOBBLE_FILTER_BICUBIC, &t);
    if (!rc) rc = wobble_image_encode_jpeg(R->ctx, t, R->P->thumb_quality, &jpg, &n);
    if (!rc) {
        OUT("<img width=\"%d\" height=\"%d\" alt=\"", tw, th);
        esc(R, alt);
        OUT("\" src=\"data:image/jpeg;base64,");
        b64(&R->o, jpg, n);
        OUT("\">");
    }
    wobble_free(jpg);
    wobble_image_free(t);
    return rc;
}

/* The image of record q as eval read it (a FILE#INDEX item from its dataset). */
static int load_item(rp *R, const rp_run *r, const char *item, wobble_image **out) {
    /* a relative path is relative to the folder eval ran in (run.json) */
    const char *cwd = r->run ? json_string_value(json_object_get(r->run, "cwd")) : NULL;
    char abs_item[4096];
    if (item[0] != '/' && cwd && !file_exists(item)) {
        snprintf(abs_item, sizeof abs_item, "%s/%s", cwd, item);
        item = abs_item;
    }
    const char *hash = strrchr(item, '#');
    if (!hash || file_exists(item)) return wobble_image_read(R->ctx, item, out);
    char file[4096];
    snprintf(file, sizeof file, "%.*s", (int)(hash - item), item);
    char *end;
    const long idx = strtol(hash + 1, &end, 10);
    if (*end || idx < 0) return wobble_image_read(R->ctx, item, out);
    wobble_dataset_params dp = wobble_dataset_default_params();
    dp.limit = (int)idx + 1;
    wobble_dataset *ds = NULL;
    int rc = wobble_dataset_open(R->ctx, file, &dp, &ds);
    if (!rc) rc = idx < wobble_dataset_size(ds) ? wobble_dataset_load(R->ctx, ds, (int)idx, out)
                                                : core_seterr(R->ctx, WOBBLE_EIO, "%s: no item %ld", file, idx);
    wobble_dataset_free(ds);
    return rc;
}

static void warn(rp *R, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(rp *R, const char *fmt, ...) {
    if (!R->P->warn) return;
    char m[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    R->P->warn(R->P->user, m);
}

static int cmp_rec(const void *a, const void *b) {
    const rp_rec *x = *(rp_rec *const *)a, *y = *(rp_rec *const *)b;
    if (x->r_div != y->r_div) return x->r_div > y->r_div ? -1 : 1;
    return x->line - y->line;
}

/* The k images of run i that op o moved most (by R_div), clean beside
 * perturbed at their worst level. ENOMEM stops the report; an image that is
 * gone or changed only loses its thumbnails (with a warning). */
static int worst_images(rp *R, int i, int o) {
    rp_run *r = &R->runs[i];
    const int K = R->P->worst;
    if (K <= 0) return WOBBLE_OK;
    rp_rec **v = malloc(sizeof *v * (r->n_rec ? r->n_rec : 1));
    if (!v) return core_seterr(R->ctx, WOBBLE_ENOMEM, "report: out of memory");
    int n = 0;
    for (size_t k = 0; k < r->n_rec; k++)
        if (r->rec[k].op == o) v[n++] = &r->rec[k];
    qsort(v, n, sizeof *v, cmp_rec);
    json_t *op = json_array_get(json_object_get(r->summary, "ops"), o);
    const char *name = jstr(op, "op");
    int rc = WOBBLE_OK;
    if (n) {
        OUT("<div class=\"worst\">");
        if (n_eval(R) > 1) {
            OUT("<p class=\"note\" style=\"width:100%%;margin:0\"><span style=\"color:%s\">&#9632;</span> ", report_plot_color(i));
            esc(R, r->label);
            OUT("</p>");
        }
    }
    for (int j = 0; j < n && j < K && !rc; j++) {
        const rp_rec *q = v[j];
        const double level = jnum(json_array_get(json_object_get(op, "levels"), (size_t)q->worst));
        OUT("<figure><div class=\"pair\">");
        wobble_image *img = NULL, *pert = NULL;
        /* an embedding folder's run has no pixels to show: names and numbers only */
        const int pixels = strcmp(jstr(r->summary, "dataset/kind"), "embeddings") != 0;
        int ok = pixels && load_item(R, r, q->image, &img) == WOBBLE_OK;
        if (!pixels) {
            OUT("<span class=\"note\">embeddings computed elsewhere: no image</span>");
        } else if (!ok) {
            if (wobble_last_status(R->ctx) == WOBBLE_ENOMEM) rc = WOBBLE_ENOMEM;
            if (!r->missing++) snprintf(r->first_miss, sizeof r->first_miss, "%s", wobble_last_error(R->ctx));
        } else {
            char h[24];
            snprintf(h, sizeof h, "%016llx", (unsigned long long)wobble_image_hash(img));
            if (strcmp(h, q->hash)) {
                ok = 0;
                if (!r->missing++)
                    snprintf(r->first_miss, sizeof r->first_miss, "%s: changed since the eval (content hash %s, the run recorded %s)",
                             q->image, h, q->hash);
            }
        }
        if (ok) {
            wobble_perturb_params pp = wobble_perturb_default_params();
            pp.seed = (uint64_t)json_integer_value(json_object_get(r->summary, "seed"));
            pp.image_id = wobble_image_hash(img);
            rc = wobble_perturb(R->ctx, name, img, level, &pp, &pert);
            if (!rc) rc = thumb(R, img, "clean");
            if (!rc) rc = thumb(R, pert, "perturbed");
        } else if (!rc && pixels) {
            OUT("<span class=\"note\">image not available</span>");
        }
        wobble_image_free(img);
        wobble_image_free(pert);
        OUT("</div><figcaption><code>");
        esc(R, base_name(q->image));
        OUT("</code><br>R_div ");
        num_at(R, "span", i, "per_image", r->per_image, -1, "%d/R_div", q->line);
        OUT("<br>level ");
        num_at(R, "span", i, "summary", r->summary, -1, "ops/%d/levels/%d", o, q->worst);
        OUT(": euc ");
        num_at(R, "span", i, "per_image", r->per_image, -1, "%d/euc/%d", q->line, q->worst);
        OUT("</figcaption></figure>");
    }
    if (n) OUT("</div>");
    free(v);
    return rc;
}

/* ------------------------------------------------------------ per op */
static int next_id(rp *R, char *id, size_t n, const char *what) {
    snprintf(id, n, "%s-%d", what, R->chart_id++);
    return 0;
}

/* x: the levels, y: per_level[k].Q.mean, band p10..p90, one pair of series
 * per run that has the op. */
static int chart_levels(rp *R, const char *name, const char *q, const char *title, const char *ylabel) {
    const int E = n_eval(R);
    plot_series *ser = calloc((size_t)2 * R->n, sizeof *ser);
    double **mem = calloc((size_t)R->n, sizeof *mem);
    int ns = 0, rc = WOBBLE_OK;
    if (!ser || !mem) rc = WOBBLE_ENOMEM;
    for (int i = 0; i < R->n && !rc; i++) {
        rp_run *r = &R->runs[i];
        const int o = op_index(r, name);
        if (o < 0) continue;
        json_t *op = json_array_get(json_object_get(r->summary, "ops"), (size_t)o);
        const int K = (int)json_array_size(json_object_get(op, "per_level"));
        double *m = mem[i] = malloc(sizeof(double) * 4 * (K ? K : 1));
        if (!m) {
            rc = WOBBLE_ENOMEM;
            break;
        }
        int have_band = 1;
        for (int k = 0; k < K; k++) {
            char p[96];
            json_t *lv = json_array_get(json_object_get(op, "per_level"), (size_t)k);
            m[k] = jnum(json_object_get(lv, "level"));
            snprintf(p, sizeof p, "%s/mean", q);
            m[K + k] = jnum(jpath(lv, p));
            snprintf(p, sizeof p, "%s/p10", q);
            m[2 * K + k] = jnum(jpath(lv, p));
            snprintf(p, sizeof p, "%s/p90", q);
            m[3 * K + k] = jnum(jpath(lv, p));
            have_band &= isfinite(m[2 * K + k]) && isfinite(m[3 * K + k]);
        }
        if (have_band)
            ser[ns++] = (plot_series){PLOT_BAND, E > 1 ? NULL : "p10 to p90 of the images", i, K, m, m + 2 * K, m + 3 * K,
                                      0, NULL};
        ser[ns++] = (plot_series){PLOT_LINE, E > 1 ? r->label : "mean over the images", i, K, m, m + K, NULL, 0, NULL};
    }
    if (!rc) {
        plot_chart c = report_plot_chart_init();
        char id[48];
        next_id(R, id, sizeof id, "chart");
        c.id = id, c.title = title, c.xlabel = "level", c.ylabel = ylabel, c.y_zero = 1, c.series = ser, c.n_series = ns;
        if (report_plot_svg(&R->o, &c)) rc = WOBBLE_ENOMEM;
    }
    for (int i = 0; mem && i < R->n; i++) free(mem[i]);
    free(mem), free(ser);
    return rc ? core_seterr(R->ctx, rc, "report: out of memory") : WOBBLE_OK;
}

/* R_div over the images: a histogram per run, 20 common bins */
static int chart_rdiv(rp *R, const char *name) {
    const int E = n_eval(R), B = 20;
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < R->n; i++) {
        const int o = op_index(&R->runs[i], name);
        for (size_t k = 0; o >= 0 && k < R->runs[i].n_rec; k++)
            if (R->runs[i].rec[k].op == o) lo = fmin(lo, R->runs[i].rec[k].r_div), hi = fmax(hi, R->runs[i].rec[k].r_div);
    }
    if (!(lo <= hi)) return WOBBLE_OK;
    if (hi - lo < 1e-12) lo -= 0.5e-3, hi += 0.5e-3;
    plot_series *ser = calloc((size_t)R->n, sizeof *ser);
    double *edges = malloc(sizeof(double) * (B + 1)), *counts = calloc((size_t)R->n * B, sizeof(double));
    int ns = 0, rc = ser && edges && counts ? WOBBLE_OK : WOBBLE_ENOMEM;
    for (int b = 0; !rc && b <= B; b++) edges[b] = lo + (hi - lo) * b / B;
    for (int i = 0; i < R->n && !rc; i++) {
        const int o = op_index(&R->runs[i], name);
        if (o < 0) continue;
        double *cnt = counts + (size_t)i * B;
        for (size_t k = 0; k < R->runs[i].n_rec; k++) {
            if (R->runs[i].rec[k].op != o) continue;
            int b = (int)((R->runs[i].rec[k].r_div - lo) / (hi - lo) * B);
            cnt[b < 0 ? 0 : b >= B ? B - 1 : b] += 1;
        }
        ser[ns++] = (plot_series){PLOT_HIST, E > 1 ? R->runs[i].label : NULL, i, B, edges, cnt, NULL, 0, NULL};
    }
    if (!rc) {
        plot_chart c = report_plot_chart_init();
        char id[48];
        next_id(R, id, sizeof id, "chart");
        c.id = id, c.title = "R_div over the images", c.xlabel = "R_div (radius of the minimum enclosing ball)",
        c.ylabel = "images", c.y_zero = 1, c.series = ser, c.n_series = ns;
        if (report_plot_svg(&R->o, &c)) rc = WOBBLE_ENOMEM;
    }
    free(ser), free(edges), free(counts);
    return rc ? core_seterr(R->ctx, rc, "report: out of memory") : WOBBLE_OK;
}

static int section_ops(rp *R, const op_key *ops, int n_ops) {
    OUT("<section id=\"ops\"><h2>Per operation</h2><p class=\"note\">For each operation: the mean distance of the "
        "perturbed embedding from the clean one at each level, with the band from the 10th to the 90th percentile "
        "of the images; the distribution of R_div over the images; and the images it moved most (largest R_div), "
        "clean beside perturbed at the level that moved them most. Hover a point for its value.</p>");
    int rc = WOBBLE_OK;
    for (int j = 0; j < n_ops && !rc; j++) {
        const char *name = ops[j].name;
        OUT("<section id=\"op-%d\"><h3><code>", j);
        esc(R, name);
        OUT("</code></h3>");
        for (int i = 0; i < R->n; i++) {
            const int o = op_index(&R->runs[i], name);
            if (o < 0) continue;
            json_t *d = jpath(R->runs[i].summary, "ops");
            d = json_object_get(json_array_get(d, (size_t)o), "definition");
            OUT("<p class=\"note\">");
            esc(R, jstr(d, "description"));
            OUT(". Reference: ");
            esc(R, jstr(d, "reference"));
            OUT(".</p>");
            break;
        }
        OUT("<div class=\"charts\">");
        rc = chart_levels(R, name, "cos", "cosine distance (1 - cos)/2 by level", "(1 - cos)/2");
        if (!rc) rc = chart_levels(R, name, "euc", "Euclidean distance ||e - e_k||/2 by level", "||e - e_k||/2");
        if (!rc) rc = chart_rdiv(R, name);
        OUT("</div>");
        for (int i = 0; i < R->n && !rc; i++) {
            const int o = op_index(&R->runs[i], name);
            if (o >= 0) rc = worst_images(R, i, o);
        }
        OUT("</section>");
    }
    OUT("</section>");
    return rc;
}

/* ------------------------------------------------------------ downstream */
/* ------------------------------------------------------------ task plots
 * The downstream tasks' two kinds of plot, for classification
 * (downstream.json: top-1) and depth (depth.json: AbsRel). */
typedef struct {
    int depth;              /* 0: the runs' downstream.json, 1: their depth.json */
    const char *y, *clean;  /* the per-level key, the clean value's path */
    const char *what, *ylab; /* "top-1 accuracy", "top-1 (dashed: clean)" */
    int unit_range;         /* y axis 0..1 */
} task_view;

static const task_view TOP1 = {0, "top1", "clean/top1", "top-1", "top-1", 1};
static const task_view DEPTH = {1, "abs_rel", "clean/abs_rel", "depth AbsRel", "AbsRel", 0};

static json_t *task_root(const rp_run *r, const task_view *v) { return v->depth ? r->depth : r->down; }

static int task_op_index(json_t *root, const char *name) {
    json_t *ops = json_object_get(root, "ops");
    for (size_t k = 0; k < json_array_size(ops); k++)
        if (!strcmp(name, jstr(json_array_get(ops, k), "op"))) return (int)k;
    return -1;
}

/* the task's value against the level for op `name`, one line per run,
 * its clean value dashed */
static int chart_task_levels(rp *R, const char *name, const task_view *v) {
    plot_series *ser = calloc((size_t)2 * R->n, sizeof *ser);
    size_t need = 1;
    for (int i = 0; i < R->n; i++) {
        json_t *d = task_root(&R->runs[i], v);
        const int o = d ? task_op_index(d, name) : -1;
        if (o >= 0) need += 2 * json_array_size(json_object_get(json_array_get(json_object_get(d, "ops"), (size_t)o), "per_level")) + 1;
    }
    double *mem = malloc(sizeof(double) * need);
    int ns = 0, rc = ser && mem ? WOBBLE_OK : WOBBLE_ENOMEM;
    double *m = mem;
    for (int i = 0; i < R->n && !rc; i++) {
        json_t *d = task_root(&R->runs[i], v);
        const int o = d ? task_op_index(d, name) : -1;
        if (o < 0) continue;
        json_t *pl = json_object_get(json_array_get(json_object_get(d, "ops"), (size_t)o), "per_level");
        const int K = (int)json_array_size(pl);
        for (int k = 0; k < K; k++) {
            m[k] = jnum(json_object_get(json_array_get(pl, (size_t)k), "level"));
            m[K + k] = jnum(json_object_get(json_array_get(pl, (size_t)k), v->y));
        }
        m[2 * K] = jnum(jpath(d, v->clean));
        const int many = n_eval(R) + (v->depth ? R->n : 0) > 1;
        ser[ns++] = (plot_series){PLOT_HLINE, many ? NULL : "clean", i, 1, NULL, m + 2 * K, NULL, 1, NULL};
        ser[ns++] = (plot_series){PLOT_LINE, many ? R->runs[i].label : "perturbed", i, K, m, m + K, NULL, 0, NULL};
        m += 2 * K + 1;
    }
    if (!rc && ns) {
        plot_chart c = report_plot_chart_init();
        char id[48], title[160], yl[96];
        next_id(R, id, sizeof id, "chart");
        snprintf(title, sizeof title, "%s: %s", v->what, name);
        snprintf(yl, sizeof yl, "%s (dashed: clean)", v->ylab);
        c.id = id, c.title = title, c.xlabel = "level", c.ylabel = yl, c.series = ser, c.n_series = ns;
        if (v->unit_range) c.ymin = 0, c.ymax = 1;
        else c.y_zero = 1;
        if (report_plot_svg(&R->o, &c)) rc = WOBBLE_ENOMEM;
    }
    free(ser), free(mem);
    return rc ? core_seterr(R->ctx, rc, "report: out of memory") : WOBBLE_OK;
}

/* the task's value against robustness, one point per (op, level), and the
 * fitted line of prediction.op_level */
static int chart_task_fit(rp *R, int m_idx, const task_view *v) {
    const char *metric = METRICS[m_idx];
    const char *xkey = m_idx == 0 ? "cos_mean" : "euc_mean";
    plot_series *ser = calloc((size_t)2 * R->n, sizeof *ser);
    size_t need = 0;
    for (int i = 0; i < R->n; i++) {
        json_t *d = task_root(&R->runs[i], v), *ops = d ? json_object_get(d, "ops") : NULL;
        for (size_t k = 0; k < json_array_size(ops); k++)
            need += json_array_size(json_object_get(json_array_get(ops, k), "per_level"));
    }
    double *mem = malloc(sizeof(double) * (2 * need + 4 * (size_t)R->n + 1));
    char **tips = calloc(need + 1, sizeof *tips);
    int ns = 0, nt = 0, rc = ser && mem && tips ? WOBBLE_OK : WOBBLE_ENOMEM;
    double *m = mem;
    for (int i = 0; i < R->n && !rc; i++) {
        json_t *d = task_root(&R->runs[i], v);
        if (!d) continue;
        json_t *ops = json_object_get(d, "ops");
        size_t cnt = 0;
        for (size_t k = 0; k < json_array_size(ops); k++) cnt += json_array_size(json_object_get(json_array_get(ops, k), "per_level"));
        double *x = m, *y = m + cnt;
        char **tp = tips + nt;
        int n = 0;
        for (size_t k = 0; k < json_array_size(ops) && !rc; k++) {
            json_t *op = json_array_get(ops, k), *pl = json_object_get(op, "per_level");
            for (size_t l = 0; l < json_array_size(pl) && !rc; l++) {
                json_t *e = json_array_get(pl, l);
                x[n] = jnum(json_object_get(e, xkey)), y[n] = jnum(json_object_get(e, v->y));
                char t[200];
                snprintf(t, sizeof t, "%s at %g: %s %.4g, %s %.4g", jstr(op, "op"), jnum(json_object_get(e, "level")),
                         metric, x[n], v->ylab, y[n]);
                if (!(tp[n] = strdup(t))) rc = WOBBLE_ENOMEM;
                n++, nt++;
            }
        }
        m += 2 * cnt;
        const int many = n_eval(R) + (v->depth ? R->n : 0) > 1;
        ser[ns++] = (plot_series){PLOT_SCATTER, many ? R->runs[i].label : "one (op, level)", i, n, x, y, NULL, 0,
                                  (const char *const *)tp};
        char p[128];
        snprintf(p, sizeof p, "prediction/op_level/fits/%s/slope", metric);
        const double a = jnum(jpath(d, p));
        snprintf(p, sizeof p, "prediction/op_level/fits/%s/intercept", metric);
        const double b = jnum(jpath(d, p));
        double lo = INFINITY, hi = -INFINITY;
        for (int k = 0; k < n; k++)
            if (isfinite(x[k])) lo = fmin(lo, x[k]), hi = fmax(hi, x[k]);
        if (isfinite(a) && isfinite(b) && lo <= hi) {
            m[0] = lo, m[1] = hi, m[2] = a * lo + b, m[3] = a * hi + b;
            ser[ns++] = (plot_series){PLOT_SEGMENT, many ? NULL : "least-squares line", i, 2, m, m + 2, NULL, 1, NULL};
            m += 4;
        }
    }
    if (!rc && ns) {
        plot_chart c = report_plot_chart_init();
        char id[48], title[128], xl[96];
        next_id(R, id, sizeof id, "chart");
        snprintf(title, sizeof title, "%s against %s, one point per (op, level)", v->what, metric);
        snprintf(xl, sizeof xl, "%s of the (clean, perturbed) pair, mean over images", metric);
        c.id = id, c.title = title, c.xlabel = xl, c.ylabel = v->ylab, c.series = ser, c.n_series = ns;
        if (report_plot_svg(&R->o, &c)) rc = WOBBLE_ENOMEM;
    }
    for (int k = 0; tips && k < nt; k++) free(tips[k]);
    free(tips), free(ser), free(mem);
    return rc ? core_seterr(R->ctx, rc, "report: out of memory") : WOBBLE_OK;
}

static void table_recall(rp *R, int i) {
    json_t *d = R->runs[i].down;
    json_t *cls = json_object_get(d, "classes"), *ops = json_object_get(d, "ops");
    const int C = (int)json_array_size(cls), O = (int)json_array_size(ops);
    if (!C) return;
    /* per op: its hardest level (lowest top-1) */
    int *worst = calloc((size_t)O + 1, sizeof *worst), *order = malloc(sizeof(int) * C);
    double *drop = malloc(sizeof(double) * C);
    if (!worst || !order || !drop) {
        R->o.failed = 1;
        free(worst), free(order), free(drop);
        return;
    }
    for (int o = 0; o < O; o++) {
        json_t *pl = json_object_get(json_array_get(ops, (size_t)o), "per_level");
        double best = INFINITY;
        for (size_t k = 0; k < json_array_size(pl); k++) {
            const double t = jnum(json_object_get(json_array_get(pl, k), "top1"));
            if (t < best) best = t, worst[o] = (int)k;
        }
    }
    for (int c = 0; c < C; c++) {
        order[c] = c;
        const double clean = jnum(json_array_get(jpath(d, "clean/per_class_recall"), (size_t)c));
        double s = 0;
        for (int o = 0; o < O; o++) {
            char p[160];
            snprintf(p, sizeof p, "ops/%d/per_level/%d/per_class_recall/%d", o, worst[o], c);
            s += jnum(jpath(d, p));
        }
        drop[c] = O ? clean - s / O : 0;
    }
    const int SHOW = 30;
    if (C > SHOW) /* the classes that lose the most first */
        for (int a = 1; a < C; a++)
            for (int b = a; b > 0 && drop[order[b]] > drop[order[b - 1]]; b--) {
                const int t = order[b];
                order[b] = order[b - 1], order[b - 1] = t;
            }
    OUT("<h3>Per-class recall");
    if (n_eval(R) > 1) {
        OUT(": ");
        esc(R, R->runs[i].label);
    }
    OUT("</h3><p class=\"note\">Recall of each class on the clean images and at each operation's hardest level "
        "(its lowest top-1)%s.</p>",
        C > SHOW ? "; the 30 classes whose recall falls most (clean minus the mean over the operations)" : "");
    OUT("<div class=\"scroll\"><table class=\"sortable\"><thead><tr><th class=\"sort\">class</th><th class=\"sort\">"
        "clean</th>");
    for (int o = 0; o < O; o++) {
        OUT("<th class=\"sort\"><code>");
        esc(R, jstr(json_array_get(ops, (size_t)o), "op"));
        OUT("</code> ");
        char p[96];
        snprintf(p, sizeof p, "ops/%d/per_level/%d/level", o, worst[o]);
        num_at(R, "span", i, "downstream", d, -1, "%s", p);
        OUT("</th>");
    }
    OUT("</tr></thead><tbody>");
    for (int r = 0; r < C && r < SHOW; r++) {
        const int c = C > SHOW ? order[r] : r;
        OUT("<tr><td>");
        esc(R, json_string_value(json_array_get(cls, (size_t)c)) ? json_string_value(json_array_get(cls, (size_t)c)) : "");
        OUT("</td>");
        num_at(R, "td", i, "downstream", d, jnum(json_array_get(jpath(d, "clean/per_class_recall"), (size_t)c)),
               "clean/per_class_recall/%d", c);
        for (int o = 0; o < O; o++) {
            char p[160];
            snprintf(p, sizeof p, "ops/%d/per_level/%d/per_class_recall/%d", o, worst[o], c);
            num_at(R, "td", i, "downstream", d, jnum(jpath(d, p)), "%s", p);
        }
        OUT("</tr>");
    }
    OUT("</tbody></table></div>");
    free(worst), free(order), free(drop);
}

static void table_imagenet_c(rp *R, int i) {
    json_t *d = R->runs[i].down, *ic = json_object_get(d, "imagenet_c");
    if (!ic) return;
    OUT("<h3>ImageNet-C");
    if (n_eval(R) > 1) {
        OUT(": ");
        esc(R, R->runs[i].label);
    }
    OUT("</h3><p class=\"note\">");
    esc(R, jstr(ic, "note"));
    OUT(".</p><div class=\"scroll\"><table class=\"sortable\"><thead><tr><th class=\"sort\">corruption</th>"
        "<th class=\"sort\">suite</th>");
    for (int s = 1; s <= 5; s++) OUT("<th class=\"sort\">error, severity %d</th>", s);
    OUT("<th class=\"sort\">CE</th></tr></thead><tbody>");
    json_t *list = json_object_get(ic, "corruptions");
    for (size_t k = 0; k < json_array_size(list); k++) {
        OUT("<tr><td><code>");
        esc(R, jstr(json_array_get(list, k), "corruption"));
        OUT("</code></td><td>");
        esc(R, jstr(json_array_get(list, k), "suite"));
        OUT("</td>");
        for (int s = 0; s < 5; s++) num_at(R, "td", i, "downstream", d, -1, "imagenet_c/corruptions/%zu/top1_error/%d", k, s);
        num_at(R, "td", i, "downstream", d, -1, "imagenet_c/corruptions/%zu/CE", k);
        OUT("</tr>");
    }
    OUT("</tbody></table></div><p>mCE ");
    num_at(R, "span", i, "downstream", d, -1, "imagenet_c/mCE");
    OUT(" (over ");
    num_at(R, "span", i, "downstream", d, -1, "imagenet_c/CE_count");
    OUT(" of the 15 standard corruptions); mean top-1 ");
    num_at(R, "span", i, "downstream", d, -1, "imagenet_c/mean_top1");
    OUT(" over ");
    num_at(R, "span", i, "downstream", d, -1, "imagenet_c/mean_top1_pairs");
    OUT(" (corruption, severity) pairs; clean top-1 error ");
    num_at(R, "span", i, "downstream", d, -1, "imagenet_c/clean_top1_error");
    OUT(".</p>");
}

static const char *const GRAN[3] = {"op_level", "op", "image_bins"};
static const char *const GRAN_TEXT[3] = {"one point per (op, level)", "one point per op",
                                         "(image, op) pairs in equal-count bins"};

static int section_downstream(rp *R, const op_key *ops, int n_ops) {
    int any = 0;
    for (int i = 0; i < R->n; i++) any |= R->runs[i].down != NULL;
    if (!any) return WOBBLE_OK;
    OUT("<section id=\"downstream\"><h2>Downstream</h2><table><thead><tr><th>run</th><th>task</th><th>test images"
        "</th><th>clean top-1</th><th>clean top-5</th></tr></thead><tbody>");
    for (int i = 0; i < R->n; i++) {
        json_t *d = R->runs[i].down;
        if (!d) continue;
        OUT("<tr><td><span style=\"color:%s\">&#9632;</span> ", report_plot_color(i));
        esc(R, R->runs[i].label);
        OUT("</td><td>");
        esc(R, jstr(d, "task"));
        OUT("</td>");
        num_at(R, "td", i, "downstream", d, -1, "test/evaluated");
        num_at(R, "td", i, "downstream", d, -1, "clean/top1");
        num_at(R, "td", i, "downstream", d, -1, "clean/top5");
        OUT("</tr>");
    }
    OUT("</tbody></table><h3>Top-1 under each operation</h3><div class=\"scroll\"><table class=\"sortable\" "
        "id=\"top1-table\"><thead><tr><th class=\"sort\" rowspan=\"2\">operation</th>");
    for (int i = 0; i < R->n; i++)
        if (R->runs[i].down) {
            OUT("<th colspan=\"3\">");
            if (n_eval(R) > 1) {
                OUT("<span style=\"color:%s\">&#9632;</span> ", report_plot_color(i));
                esc(R, R->runs[i].label);
            }
            OUT("</th>");
        }
    OUT("</tr><tr>");
    for (int i = 0; i < R->n; i++)
        if (R->runs[i].down)
            OUT("<th class=\"sort\">mean top-1</th><th class=\"sort\">worst top-1</th><th class=\"sort\">mean drop</th>");
    OUT("</tr></thead><tbody>");
    for (int j = 0; j < n_ops; j++) {
        int has = 0;
        for (int i = 0; i < R->n; i++) has |= R->runs[i].down && task_op_index(R->runs[i].down, ops[j].name) >= 0;
        if (!has) continue;
        OUT("<tr><td><code>");
        esc(R, ops[j].name);
        OUT("</code></td>");
        for (int i = 0; i < R->n; i++) {
            json_t *d = R->runs[i].down;
            if (!d) continue;
            const int o = task_op_index(d, ops[j].name);
            if (o < 0) {
                OUT("<td class=\"na\">&ndash;</td><td class=\"na\">&ndash;</td><td class=\"na\">&ndash;</td>");
                continue;
            }
            num_at(R, "td", i, "downstream", d, jnum(jpath(json_array_get(json_object_get(d, "ops"), (size_t)o), "mean_top1")),
                   "ops/%d/mean_top1", o);
            num_at(R, "td", i, "downstream", d, -1, "ops/%d/worst_top1", o);
            num_at(R, "td", i, "downstream", d, -1, "ops/%d/mean_top1_drop", o);
        }
        OUT("</tr>");
    }
    OUT("</tbody></table></div><div class=\"charts\">");
    int rc = WOBBLE_OK;
    for (int j = 0; j < n_ops && !rc; j++) rc = chart_task_levels(R, ops[j].name, &TOP1);
    OUT("</div><h3>Accuracy predicted from robustness</h3><p class=\"note\">Least-squares fits of top-1 accuracy "
        "against each metric (docs/downstream.md); leave-one-op-out: the mean absolute error of predicting each "
        "operation's accuracy from a line fitted without it.</p><div class=\"charts\">");
    for (int m = 0; m < 3 && !rc; m++) rc = chart_task_fit(R, m, &TOP1);
    OUT("</div><div class=\"scroll\"><table class=\"sortable\" id=\"fit-table\"><thead><tr><th class=\"sort\">points"
        "</th><th class=\"sort\">metric</th>");
    for (int i = 0; i < R->n; i++)
        if (R->runs[i].down) {
            const char *cols[] = {"n", "slope", "R²", "Pearson", "Spearman", "leave-one-op-out error"};
            for (int c = 0; c < 6; c++) {
                OUT("<th class=\"sort\">%s", cols[c]);
                if (n_eval(R) > 1) OUT(" <span style=\"color:%s\">&#9632;</span>", report_plot_color(i));
                OUT("</th>");
            }
        }
    OUT("</tr></thead><tbody>");
    for (int g = 0; g < 3; g++)
        for (int m = 0; m < 3; m++) {
            OUT("<tr><td>%s</td><td>%s</td>", GRAN_TEXT[g], METRICS[m]);
            for (int i = 0; i < R->n; i++) {
                json_t *d = R->runs[i].down;
                if (!d) continue;
                const char *f[] = {"n", "slope", "r2", "pearson", "spearman"};
                for (int c = 0; c < 5; c++)
                    num_at(R, "td", i, "downstream", d, -1, "prediction/%s/fits/%s/%s", GRAN[g], METRICS[m], f[c]);
                num_at(R, "td", i, "downstream", d, -1, "prediction/%s/leave_one_op_out/%s/mean_abs_error", GRAN[g],
                       METRICS[m]);
            }
            OUT("</tr>");
        }
    OUT("</tbody></table></div>");
    for (int i = 0; i < R->n; i++)
        if (R->runs[i].down) table_recall(R, i);
    for (int i = 0; i < R->n; i++)
        if (R->runs[i].down) table_imagenet_c(R, i);
    OUT("</section>");
    return rc;
}

/* ------------------------------------------------------------ depth */
static const char *const DMET[7] = {"abs_rel", "rmse", "log10", "silog", "d1", "d2", "d3"};
static const char *const DMET_T[7] = {"AbsRel", "RMSE (m)", "log10", "SiLog", "&delta;1", "&delta;2", "&delta;3"};

static int section_depth(rp *R) {
    int any = 0, rc = WOBBLE_OK;
    for (int i = 0; i < R->n; i++) any |= R->runs[i].depth != NULL;
    if (!any) return WOBBLE_OK;
    OUT("<section id=\"depth\"><h2>Depth</h2><p class=\"note\">A linear depth probe on the frozen patch tokens "
        "(docs/depth.md), trained on clean images; errors are means of the per-image values over the test images. "
        "Baselines: the training set's mean depth map, and the same scaled per image by the ratio of medians.</p>"
        "<div class=\"scroll\"><table id=\"depth-table\"><thead><tr><th>run</th><th>prediction</th>");
    for (int k = 0; k < 7; k++) OUT("<th>%s</th>", DMET_T[k]);
    OUT("</tr></thead><tbody>");
    static const char *const rows[3] = {"clean", "baseline_mean_depth", "baseline_mean_depth_median_scaled"};
    static const char *const rows_t[3] = {"the probe, clean images", "mean depth map", "mean depth map, median-scaled"};
    for (int i = 0; i < R->n; i++) {
        json_t *d = R->runs[i].depth;
        if (!d) continue;
        for (int r = 0; r < 3; r++) {
            if (!json_object_get(d, rows[r])) continue;
            OUT("<tr><td><span style=\"color:%s\">&#9632;</span> ", report_plot_color(i));
            esc(R, R->runs[i].label);
            OUT("</td><td>%s</td>", rows_t[r]);
            for (int k = 0; k < 7; k++) num_at(R, "td", i, "depth", d, -1, "%s/%s", rows[r], DMET[k]);
            OUT("</tr>");
        }
    }
    OUT("</tbody></table></div><h3>Under each operation</h3><div class=\"scroll\"><table class=\"sortable\" "
        "id=\"depth-ops\"><thead><tr><th class=\"sort\">run</th><th class=\"sort\">operation</th><th class=\"sort\">"
        "AbsRel, mean over levels</th><th class=\"sort\">R_cos</th><th class=\"sort\">R_euc</th><th class=\"sort\">"
        "R_div</th></tr></thead><tbody>");
    for (int i = 0; i < R->n; i++) {
        json_t *d = R->runs[i].depth;
        for (size_t o = 0; d && o < json_array_size(json_object_get(d, "ops")); o++) {
            OUT("<tr><td><span style=\"color:%s\">&#9632;</span> ", report_plot_color(i));
            esc(R, R->runs[i].label);
            OUT("</td><td><code>");
            esc(R, jstr(json_array_get(json_object_get(d, "ops"), o), "op"));
            OUT("</code></td>");
            num_at(R, "td", i, "depth", d, -1, "ops/%zu/mean_abs_rel", o);
            num_at(R, "td", i, "depth", d, -1, "ops/%zu/R_cos_mean", o);
            num_at(R, "td", i, "depth", d, -1, "ops/%zu/R_euc_mean", o);
            num_at(R, "td", i, "depth", d, -1, "ops/%zu/R_div_mean", o);
            OUT("</tr>");
        }
    }
    OUT("</tbody></table></div><div class=\"charts\">");
    /* every op of every depth run, in first-seen order */
    for (int i = 0; i < R->n && !rc; i++) {
        json_t *d = R->runs[i].depth;
        for (size_t o = 0; d && o < json_array_size(json_object_get(d, "ops")) && !rc; o++) {
            const char *name = jstr(json_array_get(json_object_get(d, "ops"), o), "op");
            int seen = 0;
            for (int j = 0; j < i; j++) seen |= R->runs[j].depth && task_op_index(R->runs[j].depth, name) >= 0;
            if (!seen) rc = chart_task_levels(R, name, &DEPTH);
        }
    }
    OUT("</div><h3>Depth error predicted from robustness</h3><div class=\"charts\">");
    for (int m = 0; m < 3 && !rc; m++) rc = chart_task_fit(R, m, &DEPTH);
    OUT("</div><div class=\"scroll\"><table id=\"depth-fits\"><thead><tr><th>run</th><th>points</th><th>metric</th>"
        "<th>n</th><th>slope</th><th>R²</th><th>Pearson</th><th>leave-one-op-out error</th></tr></thead><tbody>");
    for (int i = 0; i < R->n; i++) {
        json_t *d = R->runs[i].depth;
        if (!d) continue;
        for (int g = 0; g < 3; g++)
            for (int m = 0; m < 3; m++) {
                OUT("<tr><td><span style=\"color:%s\">&#9632;</span></td><td>%s</td><td>%s</td>", report_plot_color(i),
                    GRAN_TEXT[g], METRICS[m]);
                const char *f[] = {"n", "slope", "r2", "pearson"};
                for (int c = 0; c < 4; c++) num_at(R, "td", i, "depth", d, -1, "prediction/%s/fits/%s/%s", GRAN[g], METRICS[m], f[c]);
                if (g < 2)
                    num_at(R, "td", i, "depth", d, -1, "prediction/%s/leave_one_op_out/%s/mean_abs_error", GRAN[g], METRICS[m]);
                else
                    OUT("<td class=\"na\">&ndash;</td>");
                OUT("</tr>");
            }
    }
    OUT("</tbody></table></div></section>");
    return rc;
}

/* ------------------------------------------------------------ fine-tuning */
static int chart_steps(rp *R, int i, json_t *lines, const char *const *keys, const char *const *labels, int nk,
                       const char *title, const char *ylabel) {
    const int n = (int)json_array_size(lines);
    double *mem = malloc(sizeof(double) * (size_t)(nk + 1) * (n ? n : 1));
    plot_series *ser = calloc((size_t)nk, sizeof *ser);
    int rc = mem && ser ? WOBBLE_OK : WOBBLE_ENOMEM;
    for (int k = 0; k < n && !rc; k++) {
        json_t *l = json_array_get(lines, (size_t)k);
        mem[k] = jnum(json_object_get(l, "step"));
        for (int s = 0; s < nk; s++) mem[(size_t)(s + 1) * n + k] = jnum(jpath(l, keys[s]));
    }
    for (int s = 0; s < nk && !rc; s++)
        ser[s] = (plot_series){PLOT_LINE, labels[s], s + (i > 0 ? 0 : 0), n, mem, mem + (size_t)(s + 1) * n, NULL, 0, NULL};
    if (!rc && n) {
        plot_chart c = report_plot_chart_init();
        char id[48];
        next_id(R, id, sizeof id, "chart");
        c.id = id, c.title = title, c.xlabel = "step", c.ylabel = ylabel, c.series = ser, c.n_series = nk;
        if (report_plot_svg(&R->o, &c)) rc = WOBBLE_ENOMEM;
    }
    free(mem), free(ser);
    return rc ? core_seterr(R->ctx, rc, "report: out of memory") : WOBBLE_OK;
}

static int section_finetune(rp *R) {
    int any = 0, rc = WOBBLE_OK;
    for (int i = 0; i < R->n; i++) any |= R->runs[i].ft != NULL;
    if (!any) return WOBBLE_OK;
    OUT("<section id=\"finetune\"><h2>Fine-tuning</h2><p class=\"note\">Loss = &minus;cos(f'(x), f'(P(x))) &minus; "
        "&lambda;&middot;cos(f(x), f'(x)) with f frozen: L_rob is the first term, L_util the second without &lambda; "
        "(docs/finetuning.md). Validation on held-out images: R_div per operation and the mean cosine between the "
        "original and the fine-tuned model's clean embeddings.</p>");
    for (int i = 0; i < R->n && !rc; i++) {
        rp_run *r = &R->runs[i];
        if (!r->ft) continue;
        OUT("<h3>");
        esc(R, r->label);
        OUT("</h3><table><thead><tr><th></th><th>step</th><th>R_div mean</th><th>cos(f, f') clean</th></tr></thead><tbody>");
        const char *when[2] = {"val_before", "val_after"};
        for (int w = 0; w < 2; w++) {
            OUT("<tr><td>%s</td>", w ? "after" : "before");
            num_at(R, "td", i, "finetune", r->ft, -1, "result/%s/step", when[w]);
            num_at(R, "td", i, "finetune", r->ft, -1, "result/%s/R_div_mean", when[w]);
            num_at(R, "td", i, "finetune", r->ft, -1, "result/%s/cos_clean", when[w]);
            OUT("</tr>");
        }
        OUT("</tbody></table><div class=\"charts\">");
        static const char *const lk[] = {"L_rob", "L_util", "loss"}, *const ll[] = {"L_rob", "L_util", "total loss"};
        rc = chart_steps(R, i, r->train_log, lk, ll, 3, "training losses by step", "loss");
        if (!rc && r->val) {
            json_t *ops = jpath(r->ft, "config/ops");
            const int O = (int)json_array_size(ops);
            char **keys = calloc((size_t)O + 1, sizeof *keys);
            const char **labels = calloc((size_t)O + 1, sizeof *labels);
            if (!keys || !labels) rc = core_seterr(R->ctx, WOBBLE_ENOMEM, "report: out of memory");
            int nk = 0;
            for (int o = 0; o < O && !rc; o++) {
                const char *name = jstr(json_array_get(ops, (size_t)o), "op");
                char p[160];
                snprintf(p, sizeof p, "R_div/%s", name);
                if (!(keys[nk] = strdup(p))) rc = core_seterr(R->ctx, WOBBLE_ENOMEM, "report: out of memory");
                labels[nk++] = name;
            }
            if (!rc && O > 1) {
                if (!(keys[nk] = strdup("R_div_mean"))) rc = core_seterr(R->ctx, WOBBLE_ENOMEM, "report: out of memory");
                labels[nk++] = "mean";
            }
            if (!rc) rc = chart_steps(R, i, r->val, (const char *const *)keys, labels, nk, "validation R_div by step", "R_div");
            static const char *const ck[] = {"cos_clean"}, *const cl[] = {"cos(f(x), f'(x)), clean"};
            if (!rc) rc = chart_steps(R, i, r->val, ck, cl, 1, "validation: utility by step", "cosine");
            for (int k = 0; keys && k < nk; k++) free(keys[k]);
            free(keys), free(labels);
        }
        OUT("</div>");
    }
    OUT("</section>");
    return rc;
}

/* ------------------------------------------------------------ the page */
int wobble_report_write(wobble_ctx *ctx, const char *const *run_dirs, int n_runs, const wobble_report_params *params,
                        const char *out_path) {
    if (!run_dirs || n_runs < 1 || !out_path) return core_seterr(ctx, WOBBLE_EINVAL, "report: no run folders or no output");
    wobble_report_params P = params ? *params : wobble_report_default_params();
    if (P.worst < 0 || P.worst > 100 || P.thumb_size < 16 || P.thumb_size > 1024 || P.thumb_quality < 1 ||
        P.thumb_quality > 100)
        return core_seterr(ctx, WOBBLE_EDOMAIN,
                           "report: worst %d (0-100), thumbnail size %d (16-1024) or quality %d (1-100) out of range",
                           P.worst, P.thumb_size, P.thumb_quality);
    rp R;
    memset(&R, 0, sizeof R);
    R.ctx = ctx, R.P = &P, R.n = n_runs;
    R.runs = calloc((size_t)n_runs, sizeof *R.runs);
    if (!R.runs) return core_seterr(ctx, WOBBLE_ENOMEM, "report: out of memory");
    int rc = WOBBLE_OK, loaded = 0;
    for (; loaded < n_runs && !rc; loaded++) rc = load_run(ctx, run_dirs[loaded], &R.runs[loaded]);
    op_key *ops = NULL;
    int n_ops = 0;
    if (!rc && (n_ops = op_order(&R, &ops)) < 0) rc = core_seterr(ctx, WOBBLE_ENOMEM, "report: out of memory");
    if (!rc) {
        const char *title = P.title ? P.title : "wobble report";
        core_buf *o = &R.o;
        core_buf_printf(o, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" "
                           "content=\"width=device-width,initial-scale=1\"><meta http-equiv=\"Content-Security-Policy\" "
                           "content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src "
                           "'unsafe-inline'\"><meta name=\"generator\" content=\"wobble %s\"><title>",
                        wobble_version());
        report_plot_escape(o, title);
        core_buf_printf(o, "</title><style>%s</style></head><body><header><h1>", CSS);
        report_plot_escape(o, title);
        core_buf_printf(o, "</h1><p class=\"note\">How far the embeddings move under each operation, written by wobble "
                           "%s from %d run folder%s.</p><nav><a href=\"#runs\">runs</a>",
                        wobble_version(), n_runs, n_runs > 1 ? "s" : "");
        int down = 0, ft = 0, dep = 0;
        for (int i = 0; i < n_runs; i++)
            down |= R.runs[i].down != NULL, ft |= R.runs[i].ft != NULL, dep |= R.runs[i].depth != NULL;
        if (n_eval(&R)) core_buf_printf(o, "<a href=\"#robustness\">robustness</a><a href=\"#ops\">per operation</a>");
        if (down) core_buf_printf(o, "<a href=\"#downstream\">downstream</a>");
        if (dep) core_buf_printf(o, "<a href=\"#depth\">depth</a>");
        if (ft) core_buf_printf(o, "<a href=\"#finetune\">fine-tuning</a>");
        core_buf_printf(o, "</nav></header>");
        section_runs(&R);
        if (n_eval(&R)) {
            section_table(&R, ops, n_ops);
            rc = section_ops(&R, ops, n_ops);
        }
        if (!rc) rc = section_downstream(&R, ops, n_ops);
        if (!rc) rc = section_depth(&R);
        if (!rc) rc = section_finetune(&R);
        for (int i = 0; i < n_runs && !rc; i++)
            if (R.runs[i].missing)
                warn(&R, "%s: %d of the images shown could not be read or changed since the eval, shown without "
                         "thumbnails (first: %s)",
                     run_dirs[i], R.runs[i].missing, R.runs[i].first_miss);
        core_buf_printf(o, "<footer><p class=\"note\">wobble %s. Every number on this page is read from the run "
                           "folders' JSON files (each carries its source in a data-j attribute).</p></footer><script>%s"
                           "</script></body></html>\n",
                        wobble_version(), SCRIPT);
        if (!rc && o->failed) rc = core_seterr(ctx, WOBBLE_ENOMEM, "report: out of memory");
        if (!rc) rc = wobble_write_file_atomic(ctx, out_path, o->p, o->len);
    }
    free(ops);
    for (int i = 0; i < loaded && i < n_runs; i++) free_run(&R.runs[i]);
    free(R.runs);
    core_buf_free(&R.o);
    return rc;
}
