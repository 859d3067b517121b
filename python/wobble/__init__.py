"""wobble: how far image embeddings move under everyday edits (Python binding).

The same library as the `wobble` command (libwobble, C), called in process:

    import numpy as np, wobble
    img = np.asarray(PIL.Image.open("photo.png").convert("RGB"))   # H x W x 3 uint8
    q30 = wobble.perturb(img, "jpeg", 30)                          # Pillow-exact
    m = wobble.Model("clip-vit-b32/")                              # Hugging Face folder or .safetensors
    e = m.embed([img, q30])                                        # float32 [2, D]
    r = wobble.robustness(e[0], e[1:])                             # R_cos, R_euc, R_div
    t = m.encode_text(["a photo of a dog."])                       # CLIP text tower

Arrays: images are uint8 [H, W, 3] (or [H, W] gray, replicated to RGB),
C-contiguous ones are read in place; results are new NumPy arrays the
library writes into directly. Every computing call releases the GIL. A
library error raises WobbleError carrying the library's one-line message
(and .status, the WOBBLE_E* code). Docs: docs/python.md.
"""
import json
import os
import shutil
import subprocess

import numpy as np

from . import _wobble

__all__ = ["WobbleError", "ops", "perturb", "Model", "robustness", "meb", "fit", "eval", "save_embeddings",
           "version", "bf16_supported"]


class WobbleError(Exception):
    """A library error: str(e) is its one-line message, e.status its WOBBLE_E* code (negative)."""

    def __init__(self, message, status=-1):
        super().__init__(message)
        self.status = status


_wobble._set_error_class(WobbleError)

DEFAULT_SEED = 0  # wobble_perturb_default_params().seed, the CLI's default


def version():
    """libwobble's version string."""
    return _wobble.version()


def bf16_supported():
    """True when this CPU runs precision='bf16' (AVX512_BF16)."""
    return bool(_wobble.bf16_supported())


def ops():
    """The perturbation registry: a list of dicts (name, param, reference, description,
    min, max, min_open, max_open, integer, has_identity, identity, grid, suite, constants)."""
    return _wobble.ops()


def _image(img, what="image"):
    """uint8 [H, W, 3] C-contiguous view (no copy when it already is one)."""
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise TypeError(f"{what}: dtype {a.dtype}, expected uint8 (H x W x 3 RGB)")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{what}: shape {a.shape}, expected (H, W, 3) or (H, W)")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{what}: empty image {a.shape}")
    return np.ascontiguousarray(a)


def _from_result(h, w, data):
    return np.frombuffer(data, dtype=np.uint8).reshape(h, w, 3)


def perturb(img, op, level, seed=None, image_id=None, exact_seed=False, threads=0):
    """P(img, level) for a registry operation (wobble.ops()), as `wobble perturb` does.

    img: uint8 [H, W, 3] (or [H, W]). seed: for the random operations
    (gaussian_noise, imagenet_c.*); None means the library's default (0), so
    the same call gives the same bytes. image_id: with seed and level, fixes
    the noise of one image; None means the image's content hash, as
    `wobble perturb` and `wobble eval` use, so the same pixels get the same
    noise in Python and on the command line. exact_seed:
    imagenet_c.* seeded as np.random.seed(seed) would seed imagecorruptions.
    Returns a new uint8 [H', W', 3] array (rescale changes the size).
    """
    a = _image(img)
    s = DEFAULT_SEED if seed is None else int(seed)
    if s < 0 or s >= 1 << 64:
        raise ValueError(f"seed {s} is outside [0, 2^64)")
    iid = None if image_id is None else int(image_id)
    if iid is not None and not 0 <= iid < 1 << 64:
        raise ValueError(f"image_id {iid} is outside [0, 2^64)")
    return _from_result(*_wobble.perturb(a, a.shape[0], a.shape[1], str(op), float(level), s, iid,
                                         int(bool(exact_seed)), int(threads)))


def robustness(clean, perturbed):
    """Per-image robustness of one operation (docs/metrics.md).

    clean: [D] embedding of the image; perturbed: [K, D] embeddings of its K
    perturbed versions (any norm: normalised here). Returns a dict with R_cos,
    R_euc, R_div, R_cos_mean, R_euc_mean and the per-level values level_cos,
    level_euc (NumPy arrays of K).
    """
    c = np.ascontiguousarray(clean, dtype=np.float32)
    p = np.ascontiguousarray(perturbed, dtype=np.float32)
    if p.ndim == 1:
        p = p[None, :]
    if c.ndim != 1 or p.ndim != 2 or p.shape[1] != c.shape[0] or c.shape[0] < 1 or p.shape[0] < 1:
        raise ValueError(f"clean {c.shape} and perturbed {p.shape}: expected [D] and [K, D]")
    K, d = p.shape
    lc, le = np.empty(K), np.empty(K)
    r = _wobble.robustness(c, p, K, d, lc, le)
    r["level_cos"], r["level_euc"] = lc, le
    return r


def meb(points):
    """Exact minimum enclosing ball of points [n, d] (float64): dict radius,
    center (array of d), iterations, polish_steps, support."""
    p = np.ascontiguousarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] < 1:
        raise ValueError(f"points {p.shape}: expected [n, d]")
    c = np.empty(p.shape[1])
    radius, it, pol, sup = _wobble.meb(p, p.shape[0], p.shape[1], c)
    return {"radius": radius, "center": c, "iterations": it, "polish_steps": pol, "support": sup}


def fit(x, y):
    """Least-squares line y = slope x + intercept, with r2, Pearson and Spearman
    (average ranks for ties): a dict, as the downstream fits of `wobble eval`."""
    xa = np.ascontiguousarray(x, dtype=np.float64).ravel()
    ya = np.ascontiguousarray(y, dtype=np.float64).ravel()
    if xa.shape != ya.shape:
        raise ValueError(f"x has {xa.size} values, y {ya.size}")
    return _wobble.fit(xa, ya, xa.size)


class Model:
    """An image encoder (and, for a whole CLIP checkpoint, its text tower).

    Model(path, precision="fp32", max_batch=16, threads=0, device="cpu"): path
    is a Hugging Face folder or a .safetensors file (OpenAI CLIP, DINOv2, ViT in
    any of their namings, docs/models.md); device "cuda" or "cuda:N" runs the
    image tower on an NVIDIA GPU (a build with CUDA; docs/models.md). One Model runs one call at a time (calls
    from other threads wait); use one Model per thread to run in parallel.
    """

    def __init__(self, path, precision="fp32", max_batch=16, threads=0, tokenizer=None, device="cpu"):
        self.path = os.fspath(path)
        self._m = _wobble.Model(self.path, precision, int(max_batch), int(threads), str(device))
        self.info = self._m.info()
        self.embed_dim = self._m.embed_dim
        self.tokenizer = tokenizer

    def __repr__(self):
        i = self.info
        return f"wobble.Model({self.path!r}, {i['preset']}, {i['arch']}, {i['precision']})"

    def preprocess(self, img):
        """The model's 8-bit preprocessing (Pillow-exact resize, centre crop): uint8 [h, w, 3]."""
        a = _image(img)
        return _from_result(*self._m.preprocess(a, a.shape[0], a.shape[1]))

    def embed(self, images, batch=16, normalize=False):
        """Embeddings of images: a list of uint8 [H, W, 3] arrays (any sizes) or one
        array [N, H, W, 3]. Returns float32 [N, D] (L2-normalised rows with normalize)."""
        if isinstance(images, np.ndarray) and images.ndim == 4:
            imgs = [_image(images[i], f"images[{i}]") for i in range(images.shape[0])]
        elif isinstance(images, np.ndarray) and images.ndim in (2, 3):
            raise ValueError("embed takes a list of images or an [N, H, W, 3] array; for one image use [img]")
        else:
            imgs = [_image(im, f"images[{i}]") for i, im in enumerate(images)]
        if not imgs:
            return np.empty((0, self.embed_dim), dtype=np.float32)
        if int(batch) < 1:
            raise ValueError(f"batch {batch}")
        out = np.empty((len(imgs), self.embed_dim), dtype=np.float32)
        b = int(batch)
        for s in range(0, len(imgs), b):
            part = imgs[s:s + b]
            self._m.embed([(a, a.shape[0], a.shape[1]) for a in part], bool(normalize), out[s:s + len(part)])
        return out

    def encode_text(self, texts, normalize=False, return_tokens=False):
        """CLIP text embeddings (clip.tokenize, then encode_text): float32 [N, D].
        The tokenizer files come from the model's folder, or Model(..., tokenizer=DIR).
        With return_tokens, also a list of (token count, truncated) per text."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            return np.empty((0, self.embed_dim), dtype=np.float32)
        tdir = self.tokenizer or (self.path if os.path.isdir(self.path) else os.path.dirname(self.path) or ".")
        out = np.empty((len(texts), self.embed_dim), dtype=np.float32)
        toks = self._m.encode_text(texts, bool(normalize), os.fspath(tdir), out)
        return (out, toks) if return_tokens else out


def save_embeddings(path, clean, perturbed, columns, ids, labels=None, classes=None, splits=None):
    """Write an embedding folder for `wobble eval --embeddings PATH` (docs/embeddings.md).

    clean: [N, D]; perturbed: [N, K, D] (float32, or float64 converted);
    columns: K pairs (op, level) or dicts {"op", "level"} naming column k
    (registry names, wobble.ops()); ids: N unique strings; labels: N ints
    (-1: none) or None; classes: the class names of the labels, or None;
    splits: N of "train" / "test" (for `--task linear|knn`) or None.
    perturbed=None and columns=None write clean embeddings only (a training
    set for `--train`). The files are written to temporary names, then renamed.
    """
    c = np.ascontiguousarray(clean, dtype=np.float32)
    if (perturbed is None) != (columns is None):
        raise ValueError("give perturbed and columns together (or neither, for clean embeddings only)")
    p = None if perturbed is None else np.ascontiguousarray(perturbed, dtype=np.float32)
    if c.ndim != 2 or (p is not None and (p.ndim != 3 or p.shape[0] != c.shape[0] or p.shape[2] != c.shape[1])):
        raise ValueError(f"clean {c.shape} and perturbed {None if p is None else p.shape}: expected [N, D] and [N, K, D]")
    if not (np.isfinite(c).all() and (p is None or np.isfinite(p).all())):
        raise ValueError("the embeddings hold NaN or infinite values")
    cols = None if columns is None else [dict(op=str(x["op"]), level=float(x["level"])) if isinstance(x, dict)
                                         else dict(op=str(x[0]), level=float(x[1])) for x in columns]
    if p is not None and len(cols) != p.shape[1]:
        raise ValueError(f"{len(cols)} columns for K = {p.shape[1]}")
    ids = [str(i) for i in ids]
    if len(ids) != c.shape[0] or len(set(ids)) != len(ids) or not all(ids):
        raise ValueError(f"ids: {len(ids)} for N = {c.shape[0]}; they must be unique, non-empty strings")
    if labels is not None:
        labels = [int(x) for x in labels]
        if len(labels) != len(ids):
            raise ValueError(f"{len(labels)} labels for N = {len(ids)}")
    if splits is not None:
        splits = [str(x) for x in splits]
        if len(splits) != len(ids) or any(x not in ("train", "test") for x in splits):
            raise ValueError("splits: one of 'train' or 'test' per row")
    os.makedirs(path, exist_ok=True)
    files = {}
    for name, arr in (("clean.npy", c), ("perturbed.npy", p)):
        if arr is None:
            continue
        t = os.path.join(path, name + ".tmp")
        with open(t, "wb") as f:
            np.save(f, arr)
        files[name] = t
    def rec(n, i):
        r = {"id": i}
        if labels is not None:
            r["label"] = labels[n]
        if splits is not None:
            r["split"] = splits[n]
        return json.dumps(r) + "\n"
    texts = {"index.jsonl": "".join(rec(n, i) for n, i in enumerate(ids))}
    if cols is not None:
        texts["columns.json"] = json.dumps(cols, indent=1) + "\n"
    if classes is not None:
        texts["classes.json"] = json.dumps([str(x) for x in classes], indent=1) + "\n"
    for name, text in texts.items():
        t = os.path.join(path, name + ".tmp")
        with open(t, "w") as f:
            f.write(text)
        files[name] = t
    for name, t in files.items():
        os.replace(t, os.path.join(path, name))


def _binary():
    """The `wobble` executable: $WOBBLE_BIN, the build tree this package was built in, or PATH."""
    b = os.environ.get("WOBBLE_BIN")
    if b:
        return b
    here = os.path.dirname(os.path.abspath(__file__))
    cand = os.path.join(here, "..", "..", "wobble")  # build/<type>/python/wobble -> build/<type>/wobble
    if os.path.isfile(cand) and os.access(cand, os.X_OK):
        return os.path.normpath(cand)
    found = shutil.which("wobble")
    if found:
        return found
    raise WobbleError("eval: the wobble executable was not found (set WOBBLE_BIN)", -8)


def eval(model=None, data=None, out=None, **options):
    """Run `wobble eval` with the same options (docs/cli.md) and return its summary.json.

    Keyword names are the CLI's long options with '_' for '-': op=["jpeg:90,50",
    "hue"] (a list repeats the option), task="linear", train=..., seed=1,
    no_report=True (a flag), threads=2. Returns the parsed OUT/summary.json
    (and OUT/downstream.json as ["downstream"] with a task). Raises
    WobbleError with the command's one-line message when it fails.
    """
    if out is None:
        raise ValueError("eval: out= (the output folder) is required")
    argv = [_binary(), "eval", "-o", os.fspath(out)]
    if model is not None:
        argv += ["--model", os.fspath(model)]
    if data is not None:
        argv += ["--data", os.fspath(data)]
    for k, v in options.items():
        opt = "--" + k.replace("_", "-")
        if v is None or v is False:
            continue
        if v is True:
            argv.append(opt)
        elif isinstance(v, (list, tuple)):
            for x in v:
                argv += [opt, os.fspath(x) if isinstance(x, os.PathLike) else str(x)]
        else:
            argv += [opt, os.fspath(v) if isinstance(v, os.PathLike) else str(v)]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        lines = [l[len("wobble: "):] if l.startswith("wobble: ") else l for l in p.stderr.splitlines() if l.strip()]
        raise WobbleError(lines[0] if lines else f"wobble eval exited with status {p.returncode}",
                          -1 if p.returncode == 2 else -3)
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    ds = os.path.join(out, "downstream.json")
    if options.get("task") and os.path.exists(ds):
        with open(ds) as f:
            summary["downstream"] = json.load(f)
    return summary


from . import transforms  # noqa: E402,F401  (wobble.transforms.Perturb)
