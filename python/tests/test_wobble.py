"""Tests of the Python package (pytest; CTest `python`, docs/python.md).

References are the real implementations, run here (Pillow, torchvision,
SciPy), the goldens of tests/ref written by their generators from PyTorch,
NumPy and SciPy, the upstream fixtures of ../shared, and the `wobble`
command for the claims "the same as the CLI". Environment: PYTHONPATH holds
the built package; WOBBLE_TEST_REF (tests/ref), WOBBLE_SHARED (../shared;
tests that need it skip without it), WOBBLE_BIN (the wobble executable).
"""
import gc
import json
import os
import subprocess
import tempfile
import threading

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

import wobble
from wobble.transforms import Perturb

HERE = os.path.dirname(os.path.abspath(__file__))
REF = os.environ.get("WOBBLE_TEST_REF", os.path.join(HERE, "..", "..", "tests", "ref"))
SHARED = os.environ.get("WOBBLE_SHARED", os.path.join(HERE, "..", "..", "..", "shared"))
BIN = os.environ.get("WOBBLE_BIN")
TINY_CLIP = os.path.join(REF, "models", "clip-f32-openai")


def load(name):
    return np.asarray(Image.open(os.path.join(REF, "data", name)).convert("RGB"))


IMAGES = ["photo_96x80.png", "syn_33x17.png", "syn_1x1.png"]


def need_shared(*parts):
    p = os.path.join(SHARED, *parts)
    if not os.path.exists(p):
        pytest.skip(f"{p} not found (set WOBBLE_SHARED)")
    return p


def cli(*args):
    if not BIN:
        pytest.skip("WOBBLE_BIN not set")
    return subprocess.run([BIN, *args], capture_output=True, text=True)


# ------------------------------------------------------------------ registry

def test_ops_registry():
    ops = {o["name"]: o for o in wobble.ops()}
    for name in ("jpeg", "brightness", "contrast", "saturation", "sharpness", "hue", "gaussian_blur",
                 "gaussian_noise", "rescale"):
        assert name in ops and len(ops[name]["grid"]) == 5 and ops[name]["suite"] == 0
    assert ops["jpeg"]["integer"] and ops["jpeg"]["min"] == 1 and ops["jpeg"]["max"] == 100
    assert sum(o["suite"] == 1 for o in ops.values()) == 15  # the ImageNet-C corruptions
    assert wobble.version().count(".") == 2


# ------------------------------------------------------------------ perturbations against Pillow / torchvision

def pillow_ref(img, op, k):
    im = Image.fromarray(img, "RGB")
    if op == "jpeg":
        import io
        b = io.BytesIO()
        im.save(b, format="JPEG", quality=int(k))
        return np.asarray(Image.open(io.BytesIO(b.getvalue())).convert("RGB"))
    if op in ("brightness", "contrast", "saturation", "sharpness"):
        E = {"brightness": ImageEnhance.Brightness, "contrast": ImageEnhance.Contrast,
             "saturation": ImageEnhance.Color, "sharpness": ImageEnhance.Sharpness}[op]
        return np.asarray(E(im).enhance(k))
    if op == "hue":
        from torchvision.transforms import functional as TF
        return np.asarray(TF.adjust_hue(im, k))
    if op == "gaussian_blur":
        return np.asarray(im.filter(ImageFilter.GaussianBlur(radius=k)))
    if op == "rescale":
        w, h = im.size
        sw, sh = max(1, int(np.floor(w * k + 0.5))), max(1, int(np.floor(h * k + 0.5)))
        return np.asarray(im.resize((sw, sh), Image.BICUBIC).resize((w, h), Image.BICUBIC))
    raise KeyError(op)


EDIT_OPS = ["jpeg", "brightness", "contrast", "saturation", "sharpness", "hue", "gaussian_blur", "rescale"]


@pytest.mark.parametrize("op", EDIT_OPS)
def test_perturb_equals_pillow(op):
    grid = {o["name"]: o["grid"] for o in wobble.ops()}[op]
    n = 0
    for name in IMAGES:
        img = load(name)
        for k in grid:
            got = wobble.perturb(img, op, k)
            want = pillow_ref(img, op, k)
            assert got.shape == want.shape and got.dtype == np.uint8
            assert np.array_equal(got, want), f"{op}({k}) on {name}: {np.abs(got.astype(int) - want).max()} off"
            n += 1
    assert n == 5 * len(IMAGES)


def test_perturb_kodak_photo():
    img = np.asarray(Image.open(need_shared("data", "kodak", "kodim23.png")).convert("RGB"))
    for op, k in (("jpeg", 30), ("hue", 0.1), ("gaussian_blur", 2.5), ("rescale", 0.35), ("sharpness", 3.0)):
        assert np.array_equal(wobble.perturb(img, op, k), pillow_ref(img, op, k)), op


def test_perturb_noise_equals_cli_and_seed():
    img = load("photo_96x80.png")
    a = wobble.perturb(img, "gaussian_noise", 0.04, seed=7)
    assert np.array_equal(a, wobble.perturb(img, "gaussian_noise", 0.04, seed=7))
    assert not np.array_equal(a, wobble.perturb(img, "gaussian_noise", 0.04, seed=8))
    d = a.astype(float) - img
    inner = (img > 40) & (img < 215)  # away from the clipping
    assert abs(d[inner].mean()) < 1.0 and abs(d[inner].std() - 0.04 * 255) < 1.0
    with tempfile.TemporaryDirectory() as t:
        out = os.path.join(t, "n.png")
        r = cli("perturb", "--op", "gaussian_noise", "--level", "0.04", "--seed", "7",
                os.path.join(REF, "data", "photo_96x80.png"), out)
        assert r.returncode == 0, r.stderr
        assert np.array_equal(a, np.asarray(Image.open(out).convert("RGB")))


def test_perturb_inputs():
    img = load("photo_96x80.png")
    # a non-contiguous view and a gray image are accepted; the input is not modified
    view = img[:, ::-1]
    before = view.copy()
    assert np.array_equal(wobble.perturb(view, "brightness", 0.5), pillow_ref(np.ascontiguousarray(view), "brightness", 0.5))
    assert np.array_equal(view, before)
    gray = img[:, :, 0]
    assert np.array_equal(wobble.perturb(gray, "contrast", 0.6), pillow_ref(np.repeat(gray[:, :, None], 3, 2), "contrast", 0.6))
    with pytest.raises(TypeError):
        wobble.perturb(img.astype(np.float32), "jpeg", 50)
    with pytest.raises(ValueError):
        wobble.perturb(np.zeros((4, 4, 4), np.uint8), "jpeg", 50)


def test_transform_perturb():
    img = load("photo_96x80.png")
    t = Perturb("jpeg", 30)
    pil = t(Image.fromarray(img))
    assert isinstance(pil, Image.Image) and pil.mode == "RGB"
    assert np.array_equal(np.asarray(pil), pillow_ref(img, "jpeg", 30))
    assert np.array_equal(t(img), pillow_ref(img, "jpeg", 30))
    # seed=None: a fresh seed per call (random augmentation); a fixed seed: the same noise
    n = Perturb("gaussian_noise", 0.08)
    assert not np.array_equal(n(img), n(img))
    f = Perturb("gaussian_noise", 0.08, seed=3)
    assert np.array_equal(f(img), wobble.perturb(img, "gaussian_noise", 0.08, seed=3))
    with pytest.raises(wobble.WobbleError, match="outside the domain"):
        Perturb("jpeg", 101)
    with pytest.raises(wobble.WobbleError, match="unknown operation 'sepia'"):
        Perturb("sepia", 1)
    from torchvision import transforms as T
    x = T.Compose([Perturb("hue", 0.1), T.ToTensor()])(Image.fromarray(img))
    assert tuple(x.shape) == (3, 80, 96)


# ------------------------------------------------------------------ encoders

def model_cases():
    d = os.path.join(REF, "models")
    return sorted(c for c in os.listdir(d) if os.path.exists(os.path.join(d, c, "case.json")))


@pytest.mark.parametrize("case", model_cases())
def test_embed_equals_pytorch_goldens(case):
    d = os.path.join(REF, "models", case)
    meta = json.load(open(os.path.join(d, "case.json")))
    want = np.load(os.path.join(d, "expected.npy"))
    m = wobble.Model(d)
    got = m.embed([load(f) for f in meta["images"]], batch=2)
    assert got.shape == want.shape and got.dtype == np.float32
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() >= 0.99999 and np.abs(got - want).max() <= 1e-4, (case, cos.min(), np.abs(got - want).max())
    h, w = m.preprocess(load(meta["images"][0])).shape[:2]
    assert [h, w] == meta["input_hw"]


def test_embed_equals_cli_and_forms():
    imgs = [load(f) for f in ("photo_96x80.png", "syn_64x48.png", "tiny_10x7.png")]
    m = wobble.Model(TINY_CLIP)
    a = m.embed(imgs)
    with tempfile.TemporaryDirectory() as t:
        out = os.path.join(t, "e.npy")
        r = cli("embed", "--model", TINY_CLIP, *[os.path.join(REF, "data", f) for f in
                                                  ("photo_96x80.png", "syn_64x48.png", "tiny_10x7.png")], "-o", out)
        assert r.returncode == 0, r.stderr
        assert np.array_equal(a, np.load(out))
    same = [load("photo_96x80.png")] * 3
    assert np.array_equal(m.embed(np.stack(same)), m.embed(same))
    n = m.embed(imgs, normalize=True, batch=1)
    assert np.allclose(np.linalg.norm(n, axis=1), 1, atol=1e-6)
    assert np.allclose(n, a / np.linalg.norm(a, axis=1, keepdims=True), atol=1e-6)
    assert m.embed([]).shape == (0, m.embed_dim)
    assert m.info["arch"] == "clip" and m.info["embed_dim"] == 24 and m.info["precision"] == "fp32"


def test_embed_upstream_fixture():
    d = need_shared("fixtures", "clip-full")
    meta = json.load(open(os.path.join(d, "inputs.json")))
    imgs = [np.asarray(Image.open(need_shared("data", "kodak", f)).convert("RGB")) for f in meta["images"]]
    want = np.load(os.path.join(d, "image_embedding.npy"))
    got = wobble.Model(os.path.join(d, "openai-naming")).embed(imgs)
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() >= 0.99999 and np.abs(got - want).max() <= 1e-4


def test_encode_text_upstream_fixture():
    d = need_shared("fixtures", "clip-full")
    texts = json.load(open(os.path.join(d, "inputs.json")))["texts"]
    want = np.load(os.path.join(d, "text_embedding.npy"))
    m = wobble.Model(os.path.join(d, "hf-naming"))
    got, toks = m.encode_text(texts, return_tokens=True)
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-4
    ids = np.load(os.path.join(d, "token_ids.npy"))
    assert [t for t, _ in toks] == [int((r != 0).sum()) for r in ids] and not any(c for _, c in toks)
    o = wobble.Model(os.path.join(d, "openai-naming"), tokenizer=os.path.join(d, "hf-naming"))
    assert np.abs(o.encode_text(texts) - want).max() <= 1e-4
    n = m.encode_text(texts[0], normalize=True)
    assert n.shape == (1, want.shape[1]) and abs(np.linalg.norm(n) - 1) < 1e-6
    _, cut = m.encode_text(["word " * 100], return_tokens=True)
    assert cut == [(77, True)]


def test_device():
    """device="cpu" is the default; a bad name is a ValueError; "cuda" either
    runs (a GPU and a CUDA build) or raises WobbleError with one line naming
    the model and why (no CUDA in the build, no GPU or driver)."""
    assert wobble.Model(TINY_CLIP).info["device"] == "cpu"
    assert wobble.Model(TINY_CLIP, device="cpu").info["device"] == "cpu"
    for bad in ("gpu", "cuda:x", "cuda:-1", "cuda0"):
        with pytest.raises(ValueError, match="not cpu, cuda or cuda:N"):
            wobble.Model(TINY_CLIP, device=bad)
    imgs = [load("photo_96x80.png"), load("syn_64x48.png")]
    try:
        g = wobble.Model(TINY_CLIP, device="cuda")
    except wobble.WobbleError as e:
        msg = str(e)
        assert "\n" not in msg and TINY_CLIP in msg and ("without CUDA" in msg or "cuda:0" in msg), msg
        return
    assert g.info["device"] == "cuda:0"
    a, b = wobble.Model(TINY_CLIP).embed(imgs), g.embed(imgs)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() >= 0.99999


def test_bf16_model():
    if not wobble.bf16_supported():
        with pytest.raises(wobble.WobbleError, match="AVX512_BF16"):
            wobble.Model(TINY_CLIP, precision="bf16")
        return
    imgs = [load("photo_96x80.png"), load("syn_64x48.png")]
    a = wobble.Model(TINY_CLIP).embed(imgs)
    b = wobble.Model(TINY_CLIP, precision="bf16").embed(imgs)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() >= 0.999 and not np.array_equal(a, b)


# ------------------------------------------------------------------ metrics against the references

def test_robustness_equals_reference_pipeline():
    """tests/ref/eval_expected.json: the robustness values of the Python
    reference pipeline (Pillow + PyTorch + SciPy's MEB) on the tiny CLIP."""
    exp = json.load(open(os.path.join(REF, "eval_expected.json")))
    m = wobble.Model(os.path.join(REF, exp["model"]))
    n = 0
    for im in exp["images"]:
        img = load(im["image"])
        clean = m.embed([img])[0]
        for spec in exp["ops"]:
            op, levels = spec["op"], spec["levels"]
            pert = m.embed([wobble.perturb(img, op, k) for k in levels])
            r = wobble.robustness(clean, pert)
            want = im["ops"][op]
            for key, mine in (("R_cos", "R_cos"), ("R_euc", "R_euc"), ("R_div", "R_div"), ("cos_mean", "R_cos_mean"),
                              ("euc_mean", "R_euc_mean")):
                assert abs(r[mine] - want[key]) <= 1e-4, (im["image"], op, key, r[mine], want[key])
            assert np.allclose(r["level_cos"], want["cos"], atol=1e-4)
            assert np.allclose(r["level_euc"], want["euc"], atol=1e-4)
            n += 1
    assert n == len(exp["images"]) * len(exp["ops"])


def test_robustness_definitions():
    rng = np.random.default_rng(0)
    c = rng.normal(size=16).astype(np.float32)
    p = (c + rng.normal(scale=0.3, size=(4, 16))).astype(np.float32)
    r = wobble.robustness(c, p)
    cn = c / np.linalg.norm(c)
    pn = p / np.linalg.norm(p, axis=1, keepdims=True)
    cos = (1 - pn @ cn) / 2
    euc = np.linalg.norm(pn - cn, axis=1) / 2
    assert np.allclose(r["level_cos"], cos, atol=1e-6) and np.allclose(r["level_euc"], euc, atol=1e-6)
    assert abs(r["R_cos"] - cos.max()) < 1e-6 and abs(r["R_euc"] - euc.max()) < 1e-6
    assert r["R_euc"] - 1e-9 <= r["R_div"] <= 2 * r["R_euc"] + 1e-9
    ball = wobble.meb(np.vstack([cn, pn]).astype(np.float64))
    assert abs(ball["radius"] - r["R_div"]) < 1e-6
    with pytest.raises(wobble.WobbleError, match="zero norm"):
        wobble.robustness(np.zeros(16, np.float32), p)
    with pytest.raises(ValueError):
        wobble.robustness(c, p[:, :8])


def test_meb_equals_reference():
    d = os.path.join(REF, "meb")
    rows = [l.split("\t") for l in open(os.path.join(d, "cases.tsv")) if not l.startswith("#")]
    assert len(rows) >= 10
    for name, n, dim, radius, method in rows:
        pts = np.load(os.path.join(d, name + ".npy"))
        b = wobble.meb(pts)
        assert pts.shape == (int(n), int(dim))
        assert abs(b["radius"] - float(radius)) <= 1e-7 * max(1.0, float(radius)), (name, b["radius"], radius)
        dist = np.linalg.norm(pts - b["center"], axis=1)
        assert dist.max() <= b["radius"] * (1 + 1e-9) + 1e-12


def test_fit_equals_scipy():
    from scipy import stats
    rng = np.random.default_rng(1)
    x = rng.normal(size=40)
    y = 0.7 * x + rng.normal(scale=0.5, size=40)
    y[3] = y[4]  # a tie for Spearman
    f = wobble.fit(x, y)
    lr = stats.linregress(x, y)
    assert abs(f["slope"] - lr.slope) < 1e-12 and abs(f["intercept"] - lr.intercept) < 1e-12
    assert abs(f["pearson"] - lr.rvalue) < 1e-12 and abs(f["r2"] - lr.rvalue ** 2) < 1e-12
    assert abs(f["spearman"] - stats.spearmanr(x, y).correlation) < 1e-12
    with pytest.raises(wobble.WobbleError, match="at least 2"):
        wobble.fit([1.0], [2.0])


# ------------------------------------------------------------------ errors, eval, leaks, threads

def test_errors_carry_the_message():
    img = load("photo_96x80.png")
    with pytest.raises(wobble.WobbleError) as e:
        wobble.perturb(img, "jpeg", 0)
    assert str(e.value) == "jpeg: quality 0 is outside the domain [1, 100] (integer)" and e.value.status == -7
    with pytest.raises(wobble.WobbleError, match="nowhere"):
        wobble.Model(os.path.join(REF, "nowhere"))
    with pytest.raises(wobble.WobbleError, match="has no text tower"):
        wobble.Model(TINY_CLIP).encode_text(["a dog"])
    with pytest.raises(wobble.WobbleError, match="unknown operation"):
        wobble.perturb(img, "sepia", 1)


def test_eval_mirrors_the_cli():
    if not BIN:
        pytest.skip("WOBBLE_BIN not set")
    os.environ.setdefault("WOBBLE_BIN", BIN)
    with tempfile.TemporaryDirectory() as t:
        data = os.path.join(t, "data")
        os.makedirs(data)
        for f in ("photo_96x80.png", "syn_64x48.png"):
            Image.open(os.path.join(REF, "data", f)).save(os.path.join(data, f))
        s = wobble.eval(model=TINY_CLIP, data=data, out=os.path.join(t, "out"), op=["jpeg:50,10", "hue:0.1"],
                        seed=1, no_report=True, threads=1)
        assert s["dataset"]["evaluated"] == 2 and [o["op"] for o in s["ops"]] == ["jpeg", "hue"]
        assert not os.path.exists(os.path.join(t, "out", "report.html"))
        # the same numbers in process: Model + perturb + robustness reproduce per_image.jsonl
        m = wobble.Model(TINY_CLIP)
        recs = [json.loads(l) for l in open(os.path.join(t, "out", "per_image.jsonl"))]
        assert len(recs) == 4
        for r in recs:
            img = np.asarray(Image.open(r["image"] if os.path.isabs(r["image"]) else os.path.join(data, os.path.basename(r["image"]))).convert("RGB"))
            pert = m.embed([wobble.perturb(img, r["op"], k, seed=1) for k in r["levels"]])
            mine = wobble.robustness(m.embed([img])[0], pert)
            for key in ("R_cos", "R_euc", "R_div"):
                assert abs(mine[key] - r[key]) <= 1e-6, (r["image"], r["op"], key, mine[key], r[key])
        with pytest.raises(wobble.WobbleError, match="quality 0 is outside the domain"):
            wobble.eval(model=TINY_CLIP, data=data, out=os.path.join(t, "bad"), op="jpeg:0")


def test_save_embeddings_round_trip():
    """Embeddings made in Python, written with save_embeddings, evaluated by
    `wobble eval --embeddings`: the metrics wobble.robustness gives."""
    if not BIN:
        pytest.skip("WOBBLE_BIN not set")
    m = wobble.Model(TINY_CLIP)
    imgs = [load(f) for f in ("photo_96x80.png", "syn_64x48.png")]
    cols = [("jpeg", 50), ("jpeg", 10), ("gaussian_blur", 1.5)]
    clean = m.embed(imgs)
    pert = np.stack([m.embed([wobble.perturb(im, op, lv) for op, lv in cols]) for im in imgs])
    with tempfile.TemporaryDirectory() as t:
        d = os.path.join(t, "emb")
        wobble.save_embeddings(d, clean, pert, cols, ids=["a.png", "b.png"], labels=[1, 0], classes=["x", "y"])
        assert sorted(os.listdir(d)) == ["classes.json", "clean.npy", "columns.json", "index.jsonl", "perturbed.npy"]
        s = wobble.eval(embeddings=d, out=os.path.join(t, "out"), no_report=True)
        assert s["dataset"]["kind"] == "embeddings" and [o["op"] for o in s["ops"]] == ["jpeg", "gaussian_blur"]
        recs = [json.loads(l) for l in open(os.path.join(t, "out", "per_image.jsonl"))]
        for r in recs:
            i = ["a.png", "b.png"].index(r["image"])
            ks = [k for k, (op, _) in enumerate(cols) if op == r["op"]]
            mine = wobble.robustness(clean[i], pert[i, ks])
            assert abs(mine["R_div"] - r["R_div"]) <= 1e-9 and r["label"] == [1, 0][i]
        with pytest.raises(ValueError, match="unique"):
            wobble.save_embeddings(d, clean, pert, cols, ids=["a", "a"])
        with pytest.raises(ValueError, match="NaN"):
            wobble.save_embeddings(d, clean * np.nan, pert, cols, ids=["a", "b"])


def rss_kb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def test_no_leak_over_10k_calls():
    img = load("syn_33x17.png")
    m = wobble.Model(TINY_CLIP, max_batch=1, threads=1)
    c = np.ones(24, np.float32)
    p = np.ones((3, 24), np.float32) + np.arange(3, dtype=np.float32)[:, None] * 0.1

    def burst(k):
        for i in range(k):
            wobble.perturb(img, "jpeg", 50)
            wobble.perturb(img, "gaussian_noise", 0.1, seed=i)
            wobble.robustness(c, p)
            if i % 10 == 0:
                m.embed([img])
            try:
                wobble.perturb(img, "jpeg", 0)
            except wobble.WobbleError:
                pass
    burst(1000)  # warm up allocators and caches
    gc.collect()
    before = rss_kb()
    burst(10000)
    gc.collect()
    grown = rss_kb() - before
    print(f"RSS after 10^4 calls of each: {grown:+d} kB")
    assert grown < 4096, f"RSS grew by {grown} kB over 10^4 calls"


def test_threads_one_model_each():
    imgs = [load(f) for f in ("photo_96x80.png", "syn_64x48.png")]
    want = wobble.Model(TINY_CLIP, threads=1).embed(imgs)
    want_p = [wobble.perturb(im, "gaussian_blur", 1.5) for im in imgs]
    errors, done = [], []

    def work():
        try:
            m = wobble.Model(TINY_CLIP, threads=1)
            for _ in range(20):
                assert np.array_equal(m.embed(imgs), want)
                assert all(np.array_equal(wobble.perturb(im, "gaussian_blur", 1.5, threads=1), w)
                           for im, w in zip(imgs, want_p))
            done.append(1)
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors and len(done) == 4


def test_threads_shared_model():
    """One Model from several threads: its lock serialises the calls."""
    imgs = [load("photo_96x80.png")]
    m = wobble.Model(TINY_CLIP, threads=1)
    want = m.embed(imgs)
    out = []
    ts = [threading.Thread(target=lambda: out.append(all(np.array_equal(m.embed(imgs), want) for _ in range(20))))
          for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert out == [True] * 3
