/*
 * _wobble: the CPython binding of libwobble (the package `wobble` wraps it,
 * python/wobble/__init__.py). Arrays cross as buffers (PEP 3118): inputs are
 * read in place, outputs are written into buffers the Python side allocated
 * with NumPy, so nothing is copied where the library can use the caller's
 * memory. Every call that computes releases the GIL. Each call creates its
 * own wobble_ctx, or uses its Model's, so calls from several threads do not
 * share a context; a Model serialises its own calls with a lock (the library's
 * models own their activation memory and are not thread-safe).
 *
 * Library errors raise wobble.WobbleError (defined in Python and registered
 * with _set_error_class) with the library's one-line message; .status holds
 * the WOBBLE_E* code.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>

#include <stdint.h>
#include <string.h>

#include "wobble.h"

static PyObject *error_class; /* wobble.WobbleError */

static PyObject *raise_status(int status, const char *msg) {
    PyObject *cls = error_class ? error_class : PyExc_RuntimeError;
    PyObject *args = Py_BuildValue("(si)", msg && *msg ? msg : wobble_strerror(status), status);
    if (args) {
        PyErr_SetObject(cls, args);
        Py_DECREF(args);
    }
    return NULL;
}

static PyObject *raise_ctx(const wobble_ctx *ctx, int status) { return raise_status(status, wobble_last_error(ctx)); }

static wobble_ctx *new_ctx(int threads) {
    wobble_ctx_params p = wobble_ctx_default_params();
    p.threads = threads;
    wobble_ctx *c = NULL;
    if (wobble_ctx_create(&p, &c) != WOBBLE_OK) {
        PyErr_NoMemory();
        return NULL;
    }
    return c;
}

/* A contiguous buffer of exactly `bytes` bytes (writable when asked). */
static int get_buffer(PyObject *o, Py_buffer *b, Py_ssize_t bytes, int writable, const char *what) {
    if (PyObject_GetBuffer(o, b, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) != 0) return -1;
    if (b->len != bytes) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, expected %zd", what, b->len, bytes);
        PyBuffer_Release(b);
        return -1;
    }
    return 0;
}

static PyObject *image_result(const wobble_image *img) {
    const int w = wobble_image_width(img), h = wobble_image_height(img);
    PyObject *data = PyByteArray_FromStringAndSize((const char *)wobble_image_data(img), (Py_ssize_t)w * h * 3);
    if (!data) return NULL;
    return Py_BuildValue("(iiN)", h, w, data);
}

/* ------------------------------------------------------------------ module functions */

static PyObject *py_set_error_class(PyObject *self, PyObject *cls) {
    (void)self;
    Py_XDECREF(error_class);
    Py_INCREF(cls);
    error_class = cls;
    Py_RETURN_NONE;
}

static PyObject *py_version(PyObject *self, PyObject *args) {
    (void)self, (void)args;
    return PyUnicode_FromString(wobble_version());
}

static PyObject *py_bf16_supported(PyObject *self, PyObject *args) {
    (void)self, (void)args;
    return PyBool_FromLong(wobble_bf16_supported());
}

static PyObject *py_ops(PyObject *self, PyObject *args) {
    (void)self, (void)args;
    const int n = wobble_op_count();
    PyObject *list = PyList_New(n);
    if (!list) return NULL;
    for (int i = 0; i < n; i++) {
        const wobble_op_info *o = wobble_op_at(i);
        PyObject *grid = PyTuple_New(o->grid_len);
        if (!grid) goto fail;
        for (int j = 0; j < o->grid_len; j++) PyTuple_SET_ITEM(grid, j, PyFloat_FromDouble(o->grid[j]));
        PyObject *d = Py_BuildValue(
            "{s:s, s:s, s:s, s:s, s:d, s:d, s:O, s:O, s:O, s:O, s:d, s:N, s:i, s:z}", "name", o->name, "param",
            o->param, "reference", o->reference, "description", o->description, "min", o->min, "max", o->max,
            "min_open", o->min_open ? Py_True : Py_False, "max_open", o->max_open ? Py_True : Py_False, "integer",
            o->integer ? Py_True : Py_False, "has_identity", o->has_identity ? Py_True : Py_False, "identity",
            o->identity, "grid", grid, "suite", o->suite, "constants", o->constants);
        if (!d) goto fail;
        PyList_SET_ITEM(list, i, d);
    }
    return list;
fail:
    Py_DECREF(list);
    return NULL;
}

static PyObject *py_check_level(PyObject *self, PyObject *args) {
    (void)self;
    const char *op;
    double level;
    if (!PyArg_ParseTuple(args, "sd", &op, &level)) return NULL;
    const wobble_op_info *o = wobble_op_find(op);
    if (!o) {
        PyObject *msg = PyUnicode_FromFormat("unknown operation '%s' (see wobble.ops())", op);
        if (msg) {
            raise_status(WOBBLE_ENOTFOUND, PyUnicode_AsUTF8(msg));
            Py_DECREF(msg);
        }
        return NULL;
    }
    wobble_ctx *c = new_ctx(1);
    if (!c) return NULL;
    int rc = wobble_op_check_level(c, o, level);
    PyObject *r = rc == WOBBLE_OK ? (Py_INCREF(Py_None), Py_None) : raise_ctx(c, rc);
    wobble_ctx_free(c);
    return r;
}

/* perturb(rgb, h, w, op, level, seed, image_id or None, exact_seed, threads) -> (h, w, bytearray);
 * image_id None: the image's content hash, as wobble perturb and wobble eval use */
static PyObject *py_perturb(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *src, *ido;
    int h, w, exact, threads;
    const char *op;
    double level;
    unsigned long long seed, image_id = 0;
    if (!PyArg_ParseTuple(args, "OiisdKOii", &src, &h, &w, &op, &level, &seed, &ido, &exact, &threads))
        return NULL;
    if (ido != Py_None) {
        image_id = PyLong_AsUnsignedLongLong(ido);
        if (PyErr_Occurred()) return NULL;
    }
    if (h < 1 || w < 1) return PyErr_Format(PyExc_ValueError, "image size %dx%d", w, h);
    Py_buffer b;
    if (get_buffer(src, &b, (Py_ssize_t)h * w * 3, 0, "image") != 0) return NULL;
    wobble_ctx *c = new_ctx(threads);
    if (!c) {
        PyBuffer_Release(&b);
        return NULL;
    }
    wobble_perturb_params pp = wobble_perturb_default_params();
    pp.seed = seed;
    pp.image_id = image_id;
    pp.exact_seed = exact;
    wobble_image *in = NULL, *out = NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = wobble_image_from_rgb(c, w, h, b.buf, &in);
    if (rc == WOBBLE_OK && ido == Py_None) pp.image_id = wobble_image_hash(in);
    if (rc == WOBBLE_OK) rc = wobble_perturb(c, op, in, level, &pp, &out);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&b);
    PyObject *r = rc == WOBBLE_OK ? image_result(out) : raise_ctx(c, rc);
    wobble_image_free(in);
    wobble_image_free(out);
    wobble_ctx_free(c);
    return r;
}

/* robustness(clean f32 [d], perturbed f32 [K, d], K, d, level_cos f64 [K] out, level_euc f64 [K] out) -> dict */
static PyObject *py_robustness(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *co, *po, *lco, *leo;
    int K, d;
    if (!PyArg_ParseTuple(args, "OOiiOO", &co, &po, &K, &d, &lco, &leo)) return NULL;
    if (K < 1 || d < 1) return PyErr_Format(PyExc_ValueError, "K = %d, d = %d", K, d);
    Py_buffer cb, pb, lc, le;
    if (get_buffer(co, &cb, (Py_ssize_t)d * 4, 0, "clean") != 0) return NULL;
    if (get_buffer(po, &pb, (Py_ssize_t)K * d * 4, 0, "perturbed") != 0) {
        PyBuffer_Release(&cb);
        return NULL;
    }
    if (get_buffer(lco, &lc, (Py_ssize_t)K * 8, 1, "level_cos") != 0) {
        PyBuffer_Release(&cb), PyBuffer_Release(&pb);
        return NULL;
    }
    if (get_buffer(leo, &le, (Py_ssize_t)K * 8, 1, "level_euc") != 0) {
        PyBuffer_Release(&cb), PyBuffer_Release(&pb), PyBuffer_Release(&lc);
        return NULL;
    }
    wobble_ctx *c = new_ctx(1);
    PyObject *r = NULL;
    if (c) {
        wobble_robustness rb;
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = wobble_robustness_compute(c, cb.buf, pb.buf, K, d, lc.buf, le.buf, &rb);
        Py_END_ALLOW_THREADS
        r = rc == WOBBLE_OK ? Py_BuildValue("{s:d, s:d, s:d, s:d, s:d}", "R_cos", rb.cos_max, "R_euc", rb.euc_max,
                                            "R_div", rb.div_radius, "R_cos_mean", rb.cos_mean, "R_euc_mean",
                                            rb.euc_mean)
                            : raise_ctx(c, rc);
        wobble_ctx_free(c);
    }
    PyBuffer_Release(&cb), PyBuffer_Release(&pb), PyBuffer_Release(&lc), PyBuffer_Release(&le);
    return r;
}

/* meb(points f64 [n, d], n, d, center f64 [d] out) -> (radius, iterations, polish_steps, support) */
static PyObject *py_meb(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *po, *co;
    int n, d;
    if (!PyArg_ParseTuple(args, "OiiO", &po, &n, &d, &co)) return NULL;
    if (n < 1 || d < 1) return PyErr_Format(PyExc_ValueError, "n = %d, d = %d", n, d);
    Py_buffer pb, cb;
    if (get_buffer(po, &pb, (Py_ssize_t)n * d * 8, 0, "points") != 0) return NULL;
    if (get_buffer(co, &cb, (Py_ssize_t)d * 8, 1, "center") != 0) {
        PyBuffer_Release(&pb);
        return NULL;
    }
    wobble_ctx *c = new_ctx(1);
    PyObject *r = NULL;
    if (c) {
        double radius = 0;
        wobble_meb_info mi;
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = wobble_meb_f64(c, pb.buf, n, d, &radius, cb.buf, &mi);
        Py_END_ALLOW_THREADS
        r = rc == WOBBLE_OK ? Py_BuildValue("(diii)", radius, mi.iterations, mi.polish_steps, mi.support)
                            : raise_ctx(c, rc);
        wobble_ctx_free(c);
    }
    PyBuffer_Release(&pb), PyBuffer_Release(&cb);
    return r;
}

/* fit(x f64 [n], y f64 [n], n) -> dict */
static PyObject *py_fit(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *xo, *yo;
    int n;
    if (!PyArg_ParseTuple(args, "OOi", &xo, &yo, &n)) return NULL;
    if (n < 0) return PyErr_Format(PyExc_ValueError, "n = %d", n);
    Py_buffer xb, yb;
    if (get_buffer(xo, &xb, (Py_ssize_t)n * 8, 0, "x") != 0) return NULL;
    if (get_buffer(yo, &yb, (Py_ssize_t)n * 8, 0, "y") != 0) {
        PyBuffer_Release(&xb);
        return NULL;
    }
    wobble_fit f;
    const int rc = wobble_fit_linear(xb.buf, yb.buf, n, &f);
    PyBuffer_Release(&xb), PyBuffer_Release(&yb);
    if (rc != WOBBLE_OK)
        return raise_status(rc, "fit: needs at least 2 pairs of finite values (x and y of the same length)");
    return Py_BuildValue("{s:i, s:d, s:d, s:d, s:d, s:d, s:d, s:d}", "n", f.n, "slope", f.slope, "intercept",
                         f.intercept, "r2", f.r2, "pearson", f.pearson, "spearman", f.spearman, "mean_x", f.mean_x,
                         "mean_y", f.mean_y);
}

/* ------------------------------------------------------------------ Model */

typedef struct {
    PyObject_HEAD
    wobble_ctx *ctx;
    wobble_model *model;
    wobble_tokenizer *tok;
    PyThread_type_lock lock;
} ModelObject;

static void model_dealloc(ModelObject *m) {
    wobble_tokenizer_free(m->tok);
    wobble_model_free(m->model);
    wobble_ctx_free(m->ctx);
    if (m->lock) PyThread_free_lock(m->lock);
    Py_TYPE(m)->tp_free((PyObject *)m);
}

/* Model(path, precision="fp32", max_batch=16, threads=0, device="cpu") */
static int model_init(ModelObject *m, PyObject *args, PyObject *kw) {
    static char *kws[] = {"path", "precision", "max_batch", "threads", "device", NULL};
    const char *path, *prec = "fp32", *device = "cpu";
    int batch = wobble_model_default_params().max_batch, threads = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|siis", kws, &path, &prec, &batch, &threads, &device)) return -1;
    wobble_device dev = WOBBLE_DEVICE_CPU;
    int dev_index = 0;
    if (!strncmp(device, "cuda", 4) && (device[4] == 0 || device[4] == ':')) {
        char *end = NULL;
        const long ix = device[4] == ':' ? strtol(device + 5, &end, 10) : 0;
        if (device[4] == ':' && (end == device + 5 || *end || ix < 0 || ix > 1023)) {
            PyErr_Format(PyExc_ValueError, "device '%s' is not cpu, cuda or cuda:N", device);
            return -1;
        }
        dev = WOBBLE_DEVICE_CUDA;
        dev_index = (int)ix;
    } else if (strcmp(device, "cpu") != 0) {
        PyErr_Format(PyExc_ValueError, "device '%s' is not cpu, cuda or cuda:N", device);
        return -1;
    }
    if (m->model) {
        PyErr_SetString(PyExc_RuntimeError, "Model is already initialised");
        return -1;
    }
    const int p = wobble_precision_parse(prec);
    if (p < 0) {
        PyErr_Format(PyExc_ValueError, "precision '%s' is neither fp32 nor bf16", prec);
        return -1;
    }
    if (p == WOBBLE_PRECISION_BF16 && dev == WOBBLE_DEVICE_CPU && !wobble_bf16_supported()) {
        raise_status(WOBBLE_EINVAL, "precision bf16 needs a CPU with AVX512_BF16, which this one lacks; use fp32");
        return -1;
    }
    if (batch < 1 || threads < 0) {
        PyErr_Format(PyExc_ValueError, "max_batch %d, threads %d", batch, threads);
        return -1;
    }
    m->lock = PyThread_allocate_lock();
    m->ctx = new_ctx(threads);
    if (!m->lock || !m->ctx) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        return -1;
    }
    wobble_model_params mp = wobble_model_default_params();
    mp.max_batch = batch;
    mp.precision = (wobble_precision)p;
    mp.device = dev;
    mp.device_index = dev_index;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = wobble_model_load(m->ctx, path, &mp, &m->model);
    Py_END_ALLOW_THREADS
    if (rc != WOBBLE_OK) {
        raise_ctx(m->ctx, rc);
        return -1;
    }
    return 0;
}

static int model_ready(ModelObject *m) {
    if (!m->model) {
        PyErr_SetString(PyExc_RuntimeError, "Model is not initialised");
        return 0;
    }
    return 1;
}

#define LOCKED_CALL(m, stmt)                                                                                          \
    do {                                                                                                              \
        Py_BEGIN_ALLOW_THREADS PyThread_acquire_lock((m)->lock, WAIT_LOCK);                                          \
        stmt;                                                                                                         \
        PyThread_release_lock((m)->lock);                                                                            \
        Py_END_ALLOW_THREADS                                                                                          \
    } while (0)

static const char *filter_names[] = {"box", "bilinear", "hamming", "bicubic", "lanczos"};

static PyObject *model_info(ModelObject *m, PyObject *args) {
    (void)args;
    if (!model_ready(m)) return NULL;
    wobble_model_info i;
    wobble_model_get_info(m->model, &i);
    const char *filter = (unsigned)i.filter < sizeof filter_names / sizeof *filter_names ? filter_names[i.filter] : "?";
    return Py_BuildValue(
        "{s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:d, s:O, s:O, s:{s:i, s:i, s:i, s:s, "
        "s:i, s:i, s:d, s:(ddd), s:(ddd)}, s:K, s:K, s:s, s:s, s:O, s:i, s:i, s:d}",
        "arch", i.arch, "naming", i.naming, "activation", i.activation, "preset", i.preset, "path", i.path, "width",
        i.width, "depth", i.depth, "heads", i.heads, "mlp_hidden", i.mlp_hidden, "patch", i.patch, "native_grid",
        i.native_grid, "registers", i.registers, "embed_dim", i.embed_dim, "layer_norm_eps", (double)i.layer_norm_eps,
        "layerscale", i.layerscale ? Py_True : Py_False, "projection", i.has_projection ? Py_True : Py_False,
        "preprocessing", "resize_short", i.resize_short, "resize_h", i.resize_h, "resize_w", i.resize_w, "filter",
        filter, "crop_h", i.crop_h, "crop_w", i.crop_w, "rescale", i.rescale, "mean", (double)i.mean[0],
        (double)i.mean[1], (double)i.mean[2], "std", (double)i.std[0], (double)i.std[1], (double)i.std[2],
        "parameters", (unsigned long long)i.n_params, "weight_bytes", (unsigned long long)i.weight_bytes, "precision",
        i.precision, "device", i.device, "has_text", i.has_text ? Py_True : Py_False, "text_context", i.text_context, "text_width",
        i.text_width, "logit_scale", i.logit_scale);
}

/* preprocess(rgb, h, w) -> (h, w, bytearray): the 8-bit stage (resize, crop) */
static PyObject *model_preprocess(ModelObject *m, PyObject *args) {
    PyObject *src;
    int h, w;
    if (!model_ready(m) || !PyArg_ParseTuple(args, "Oii", &src, &h, &w)) return NULL;
    if (h < 1 || w < 1) return PyErr_Format(PyExc_ValueError, "image size %dx%d", w, h);
    Py_buffer b;
    if (get_buffer(src, &b, (Py_ssize_t)h * w * 3, 0, "image") != 0) return NULL;
    wobble_image *in = NULL, *out = NULL;
    int rc;
    LOCKED_CALL(m, {
        rc = wobble_image_from_rgb(m->ctx, w, h, b.buf, &in);
        if (rc == WOBBLE_OK) rc = wobble_model_preprocess_u8(m->ctx, m->model, in, &out);
    });
    PyBuffer_Release(&b);
    PyObject *r = rc == WOBBLE_OK ? image_result(out) : raise_ctx(m->ctx, rc);
    wobble_image_free(in);
    wobble_image_free(out);
    return r;
}

/* embed([(rgb, h, w), ...], normalize, out f32 [n, D]) */
static PyObject *model_embed(ModelObject *m, PyObject *args) {
    PyObject *list, *outo;
    int normalize;
    if (!model_ready(m) || !PyArg_ParseTuple(args, "O!pO", &PyList_Type, &list, &normalize, &outo)) return NULL;
    const Py_ssize_t n = PyList_GET_SIZE(list);
    if (n < 1 || n > INT32_MAX) return PyErr_Format(PyExc_ValueError, "%zd images", n);
    const int D = wobble_model_embed_dim(m->model);
    Py_buffer ob;
    if (get_buffer(outo, &ob, n * D * 4, 1, "out") != 0) return NULL;
    Py_buffer *bufs = PyMem_Calloc((size_t)n, sizeof *bufs);
    int *hw = PyMem_Calloc((size_t)n * 2, sizeof *hw);
    wobble_image **imgs = PyMem_Calloc((size_t)n, sizeof *imgs);
    Py_ssize_t got = 0;
    PyObject *r = NULL;
    if (!bufs || !hw || !imgs) {
        PyErr_NoMemory();
        goto done;
    }
    for (; got < n; got++) {
        PyObject *it = PyList_GET_ITEM(list, got), *src;
        if (!PyArg_ParseTuple(it, "Oii", &src, &hw[2 * got], &hw[2 * got + 1])) goto done;
        if (hw[2 * got] < 1 || hw[2 * got + 1] < 1) {
            PyErr_Format(PyExc_ValueError, "image %zd: size %dx%d", got, hw[2 * got + 1], hw[2 * got]);
            goto done;
        }
        if (get_buffer(src, &bufs[got], (Py_ssize_t)hw[2 * got] * hw[2 * got + 1] * 3, 0, "image") != 0) goto done;
    }
    int rc = WOBBLE_OK;
    wobble_embed_params ep = wobble_embed_default_params();
    ep.normalize = normalize;
    LOCKED_CALL(m, {
        for (Py_ssize_t i = 0; i < n && rc == WOBBLE_OK; i++)
            rc = wobble_image_from_rgb(m->ctx, hw[2 * i + 1], hw[2 * i], bufs[i].buf, &imgs[i]);
        if (rc == WOBBLE_OK)
            rc = wobble_model_embed(m->ctx, m->model, (const wobble_image *const *)imgs, (int)n, &ep, ob.buf);
    });
    r = rc == WOBBLE_OK ? (Py_INCREF(Py_None), Py_None) : raise_ctx(m->ctx, rc);
done:
    for (Py_ssize_t i = 0; i < got; i++) PyBuffer_Release(&bufs[i]);
    if (imgs)
        for (Py_ssize_t i = 0; i < n; i++) wobble_image_free(imgs[i]);
    PyMem_Free(bufs), PyMem_Free(hw), PyMem_Free(imgs);
    PyBuffer_Release(&ob);
    return r;
}

/* encode_text([str, ...], normalize, tokenizer_dir, out f32 [n, D]) -> [(tokens, truncated), ...] */
static PyObject *model_encode_text(ModelObject *m, PyObject *args) {
    PyObject *list, *outo;
    int normalize;
    const char *tdir;
    if (!model_ready(m) || !PyArg_ParseTuple(args, "O!psO", &PyList_Type, &list, &normalize, &tdir, &outo))
        return NULL;
    /* a tuple of the texts keeps every str (and its UTF-8) alive while the GIL is released */
    PyObject *held = PyList_AsTuple(list);
    if (!held) return NULL;
    PyObject *r = NULL;
    const char **texts = NULL;
    int32_t *ids = NULL;
    int *cut = NULL;
    Py_buffer ob = {0};
    if (!wobble_model_has_text(m->model)) {
        wobble_model_info i;
        wobble_model_get_info(m->model, &i);
        PyObject *msg = PyUnicode_FromFormat("%s: has no text tower (encode_text needs a whole CLIP checkpoint)", i.path);
        if (!msg) goto done;
        raise_status(WOBBLE_EINVAL, PyUnicode_AsUTF8(msg));
        Py_DECREF(msg);
        goto done;
    }
    const Py_ssize_t n = PyTuple_GET_SIZE(held);
    const int L = wobble_model_context_length(m->model), D = wobble_model_embed_dim(m->model);
    if (n < 1 || n > INT32_MAX / L) {
        PyErr_Format(PyExc_ValueError, "%zd texts", n);
        goto done;
    }
    if (get_buffer(outo, &ob, n * D * 4, 1, "out") != 0) {
        ob.obj = NULL;
        goto done;
    }
    texts = PyMem_Calloc((size_t)n, sizeof *texts);
    ids = PyMem_Calloc((size_t)n * L, sizeof *ids);
    cut = PyMem_Calloc((size_t)n, sizeof *cut);
    if (!texts || !ids || !cut) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PyTuple_GET_ITEM(held, i);
        if (!PyUnicode_Check(t)) {
            PyErr_Format(PyExc_TypeError, "text %zd is not a str", i);
            goto done;
        }
        if (!(texts[i] = PyUnicode_AsUTF8(t))) goto done;
    }
    int rc = WOBBLE_OK;
    Py_ssize_t bad = -1;
    wobble_embed_params ep = wobble_embed_default_params();
    ep.normalize = normalize;
    LOCKED_CALL(m, {
        if (!m->tok) rc = wobble_tokenizer_load(m->ctx, tdir, &m->tok);
        for (Py_ssize_t i = 0; i < n && rc == WOBBLE_OK; i++) {
            rc = wobble_tokenize(m->ctx, m->tok, texts[i], L, ids + (size_t)i * L, &cut[i]);
            if (rc != WOBBLE_OK) bad = i;
        }
        if (rc == WOBBLE_OK) rc = wobble_model_encode_text(m->ctx, m->model, ids, (int)n, L, &ep, ob.buf);
    });
    if (rc != WOBBLE_OK) {
        if (bad >= 0) {
            PyObject *msg = PyUnicode_FromFormat("text %zd: %s", bad, wobble_last_error(m->ctx));
            if (msg) {
                raise_status(rc, PyUnicode_AsUTF8(msg));
                Py_DECREF(msg);
            }
        } else {
            raise_ctx(m->ctx, rc);
        }
        goto done;
    }
    r = PyList_New(n);
    for (Py_ssize_t i = 0; r && i < n; i++) {
        int c = 0;
        while (c < L && ids[(size_t)i * L + c] != 0) c++;
        PyObject *t = Py_BuildValue("(iO)", c, cut[i] ? Py_True : Py_False);
        if (!t) {
            Py_CLEAR(r);
            break;
        }
        PyList_SET_ITEM(r, i, t);
    }
done:
    PyMem_Free(texts), PyMem_Free(ids), PyMem_Free(cut);
    if (ob.obj) PyBuffer_Release(&ob);
    Py_DECREF(held);
    return r;
}

static PyObject *model_embed_dim(ModelObject *m, void *closure) {
    (void)closure;
    return model_ready(m) ? PyLong_FromLong(wobble_model_embed_dim(m->model)) : NULL;
}

static PyObject *model_context_length(ModelObject *m, void *closure) {
    (void)closure;
    return model_ready(m) ? PyLong_FromLong(wobble_model_context_length(m->model)) : NULL;
}

static PyMethodDef model_methods[] = {
    {"info", (PyCFunction)model_info, METH_NOARGS, "model description (dict)"},
    {"preprocess", (PyCFunction)model_preprocess, METH_VARARGS, "8-bit preprocessing: (rgb, h, w) -> (h, w, bytes)"},
    {"embed", (PyCFunction)model_embed, METH_VARARGS, "embed([(rgb, h, w)...], normalize, out)"},
    {"encode_text", (PyCFunction)model_encode_text, METH_VARARGS, "encode_text([str...], normalize, tokdir, out)"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef model_getset[] = {
    {"embed_dim", (getter)model_embed_dim, NULL, "embedding width", NULL},
    {"context_length", (getter)model_context_length, NULL, "text tokens (0 without a text tower)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ModelType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "wobble._wobble.Model",
    .tp_basicsize = sizeof(ModelObject),
    .tp_dealloc = (destructor)model_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Model(path, precision='fp32', max_batch=16, threads=0): a loaded encoder (low level)",
    .tp_methods = model_methods,
    .tp_getset = model_getset,
    .tp_init = (initproc)model_init,
    .tp_new = PyType_GenericNew,
};

static PyMethodDef methods[] = {
    {"_set_error_class", py_set_error_class, METH_O, "register wobble.WobbleError"},
    {"version", py_version, METH_NOARGS, "libwobble's version"},
    {"bf16_supported", py_bf16_supported, METH_NOARGS, "1 when this CPU runs --precision bf16"},
    {"ops", py_ops, METH_NOARGS, "the perturbation registry"},
    {"check_level", py_check_level, METH_VARARGS, "check_level(op, level)"},
    {"perturb", py_perturb, METH_VARARGS, "perturb(rgb, h, w, op, level, seed, image_id, exact_seed, threads)"},
    {"robustness", py_robustness, METH_VARARGS, "robustness(clean, perturbed, K, d, level_cos, level_euc)"},
    {"meb", py_meb, METH_VARARGS, "meb(points, n, d, center)"},
    {"fit", py_fit, METH_VARARGS, "fit(x, y, n)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_wobble", "libwobble binding (use the wobble package)",
                                    -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__wobble(void) {
    if (PyType_Ready(&ModelType) < 0) return NULL;
    PyObject *mod = PyModule_Create(&module);
    if (!mod) return NULL;
    Py_INCREF(&ModelType);
    if (PyModule_AddObject(mod, "Model", (PyObject *)&ModelType) < 0) {
        Py_DECREF(&ModelType);
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
