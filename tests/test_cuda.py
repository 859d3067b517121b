#!/usr/bin/python3
"""The CUDA backend (--device cuda) through the wobble command.

Everywhere:
  - without CUDA in the build, --device cuda is a one-line command-line
    error (exit 2) naming the missing build, and nothing is written;
  - with CUDA but no usable GPU (or driver), embed and eval fail with one
    line naming the model, the device and CUDA's reason (exit 1), and write
    nothing; so does a backend library that cannot be loaded
    (WOBBLE_CUDA_LIB pointing nowhere);
  - --device and --tf32 are refused where they make no sense (exit 2).
On a machine with an NVIDIA GPU (the checks of issue 17):
  - fp32 (TF32 off) embeddings of every fixture in ../shared/fixtures/arch
    and of the real ViT-Ti/16 against the CPU backend: cos >= 0.99999 and
    max-abs <= 1e-4 (normalised embeddings); bf16: cos >= 0.999; TF32:
    cos >= 0.999;
  - `wobble eval` of the same images on the GPU: every per-image metric
    within 1e-4 of the CPU run's;
  - cuda:N beyond the device count is one line, exit 1.

usage: test_cuda.py WOBBLE_BINARY   (WOBBLE_TEST_REF, WOBBLE_SHARED)
"""
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import check, finish, runner  # noqa: E402

W = sys.argv[1]
REF = os.environ.get("WOBBLE_TEST_REF", os.path.join(os.path.dirname(__file__), "ref"))
SHARED = os.environ.get("WOBBLE_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
run = runner(W)
tmp = tempfile.mkdtemp(prefix="wobble_cuda_")
MODEL = os.path.join(REF, "models", "clip-f32-openai")
IMGS = [os.path.join(REF, "data", f) for f in ("photo_96x80.png", "syn_64x48.png", "syn_33x17.png")]
check(all(os.path.isfile(f) for f in IMGS), f"test images in {REF}/data")
DATA = os.path.join(tmp, "data")
os.mkdir(DATA)
for f in IMGS:
    os.symlink(f, os.path.join(DATA, os.path.basename(f)))


def one_line(r):
    return r.stderr.strip() and "\n" not in r.stderr.strip()


# refusals that do not depend on the build
r = run("embed", "--model", MODEL, "--device", "gpu", "-o", f"{tmp}/x.npy", *IMGS)
check(r.returncode == 2 and "--device 'gpu' is not cpu, cuda or cuda:N" in r.stderr, f"--device gpu: {r.stderr}")
r = run("embed", "--model", MODEL, "--device", "cuda:x", "-o", f"{tmp}/x.npy", *IMGS)
check(r.returncode == 2 and one_line(r), f"--device cuda:x: {r.returncode} {r.stderr}")
r = run("embed", "--model", MODEL, "--tf32", "-o", f"{tmp}/x.npy", *IMGS)
check(r.returncode == 2 and "--tf32 needs --device cuda" in r.stderr, f"--tf32 on the CPU: {r.stderr}")
r = run("embed", "--model", MODEL, "--device", "cuda", "--text", "a dog", "-o", f"{tmp}/x.npy")
check(r.returncode == 2 and "--device is for images" in r.stderr, f"--device with --text: {r.stderr}")
r = run("eval", "--embeddings", tmp, "--device", "cuda", "-o", f"{tmp}/ev")
check(r.returncode == 2 and "--device" in r.stderr, f"eval --embeddings --device: {r.stderr}")
check(not os.path.exists(f"{tmp}/x.npy"), "nothing written by the refusals")

# the pipelined embed loop (forward of batch i on its own thread while batch
# i + 1 is prepared; on a GPU by default), forced on the CPU: same bytes, same
# failure report, as the serial loop
bad = os.path.join(tmp, "bad.png")
with open(bad, "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n not a png")
seq = [IMGS[0], bad, IMGS[1], IMGS[2], IMGS[0]]
import subprocess  # noqa: E402
outs = []
for env in ({}, {"WOBBLE_PIPELINE": "1"}):
    for b in ("1", "2"):
        rp = subprocess.run([W, "embed", "--model", MODEL, "--batch", b, "-o", f"{tmp}/p{len(outs)}.npy", *seq],
                            capture_output=True, text=True, env={**os.environ, **env})
        check(rp.returncode == 1 and rp.stderr.count("bad.png") == 1, f"embed with a bad file {env} batch {b}: {rp.stderr}")
        outs.append((open(f"{tmp}/p{len(outs)}.npy", "rb").read(),
                     json.load(open(f"{tmp}/p{len(outs)}.npy.json"))["failed"]))
check(all(o == outs[0] for o in outs), "pipelined and serial embed: the same embeddings and failures")
check(np.load(f"{tmp}/p0.npy").shape[0] == 4, "four of five images embedded")

# the pipelined eval loop (image i's forward passes on their own thread while
# image i + 1 is prepared; on a GPU by default), forced on the CPU: the same
# files, messages and cache as the serial loop, with an unreadable image, one
# too small for an ImageNet-C op, a shard, and a rerun from the cache
ED = os.path.join(tmp, "edata")
os.mkdir(ED)
for f in seq[:4]:
    os.symlink(f, os.path.join(ED, os.path.basename(f)))
EOPS = ["--op", "jpeg:30,70", "--op", "brightness:0.7", "--op", "imagenet_c.gaussian_noise:1", "--no-report",
        "--batch", "2"]


def eval_files(d):
    names = ["per_image.jsonl", "summary.json", "summary.csv"] + [os.path.join("cache", c) for c in
                                                                    sorted(os.listdir(os.path.join(d, "cache")))]
    return {n: open(os.path.join(d, n), "rb").read() for n in names}


for extra in ([], ["--shard", "1/2"]):
    res = []
    for env in ({}, {"WOBBLE_PIPELINE": "1"}):
        d = f"{tmp}/e{len(res)}{'s' if extra else ''}"
        for rerun in (0, 1):
            re_ = subprocess.run([W, "eval", "--model", MODEL, "--data", ED, *EOPS, *extra, "-o", d], capture_output=True,
                                 text=True, env={**os.environ, **env})
        res.append((re_.returncode, re_.stderr, eval_files(d)))
    check(res[0][0] == res[1][0] and res[0][1] == res[1][1] and res[0][2] == res[1][2],
          f"pipelined and serial eval {extra}: same files and messages: {res[0][1]} | {res[1][1]}")
    if not extra:
        check("bad.png" in res[0][1] and "33x17" in res[0][1], f"both skips reported: {res[0][1]}")

r = run("embed", "--model", MODEL, "--device", "cuda", "-o", f"{tmp}/g.npy", *IMGS)
if "built without CUDA" in r.stderr:
    check(r.returncode == 2 and one_line(r), f"CPU-only build: {r.returncode} {r.stderr}")
    r = run("eval", "--model", MODEL, "--data", IMGS[0], "--op", "jpeg:50", "--device", "cuda", "-o", f"{tmp}/ev")
    check(r.returncode == 2 and "built without CUDA" in r.stderr and not os.path.exists(f"{tmp}/ev"),
          f"eval, CPU-only build: {r.stderr}")
    r = run("finetune", "--model", MODEL, "--data", DATA, "--op", "jpeg:50", "--steps", "1", "--device", "cuda",
            "-o", f"{tmp}/ft")
    check(r.returncode == 2 and "built without CUDA" in r.stderr and not os.path.exists(f"{tmp}/ft"),
          f"finetune, CPU-only build: {r.stderr}")
    print("this build has no CUDA: the GPU checks are skipped")
    finish()

# a CUDA build: the backend library is loaded on demand; a missing one is one line
rb = subprocess.run([W, "embed", "--model", MODEL, "--device", "cuda", "-o", f"{tmp}/b.npy", *IMGS],
                    capture_output=True, text=True, env={**os.environ, "WOBBLE_CUDA_LIB": f"{tmp}/none.so"})
check(rb.returncode == 1 and one_line(rb) and "cannot load the CUDA backend" in rb.stderr and "none.so" in rb.stderr
      and not os.path.exists(f"{tmp}/b.npy"), f"WOBBLE_CUDA_LIB missing: {rb.returncode} {rb.stderr}")
if r.returncode != 0:
    # a CUDA build on a machine without a usable GPU
    check(r.returncode == 1 and one_line(r) and "cuda:0" in r.stderr and MODEL in r.stderr,
          f"no GPU: one line naming the model and device, exit 1: {r.returncode} {r.stderr}")
    check(not os.path.exists(f"{tmp}/g.npy") and not os.path.exists(f"{tmp}/g.npy.json"), "no GPU: nothing written")
    r = run("eval", "--model", MODEL, "--data", IMGS[0], "--op", "jpeg:50", "--device", "cuda", "-o", f"{tmp}/ev")
    check(r.returncode == 1 and one_line(r) and "cuda:0" in r.stderr, f"eval, no GPU: {r.returncode} {r.stderr}")
    check(not os.path.exists(f"{tmp}/ev/summary.json"), "eval, no GPU: no results")
    r = run("finetune", "--model", MODEL, "--data", DATA, "--op", "jpeg:50", "--steps", "1", "--batch", "2",
            "--device", "cuda", "-o", f"{tmp}/ft")
    check(r.returncode == 1 and one_line(r) and "cuda:0" in r.stderr and not os.path.exists(f"{tmp}/ft/model.safetensors"),
          f"finetune, no GPU: {r.returncode} {r.stderr}")
    print(f"CUDA build, no usable GPU here ({r.stderr.strip()}): the GPU checks are skipped")
    finish()

# ---------------------------------------------------------------- on a GPU
side = json.load(open(f"{tmp}/g.npy.json"))
check(side.get("device") == "cuda:0" and side["seconds"].get("gpu", 0) > 0, f"sidecar device and GPU time: {side}")


def cos_max(a, b):
    c = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return float(c.min()), float(np.abs(a - b).max())


models = [os.path.join(SHARED, "fixtures", "arch", d) for d in sorted(os.listdir(os.path.join(SHARED, "fixtures", "arch")))
          ] if os.path.isdir(os.path.join(SHARED, "fixtures", "arch")) else []
vit = os.path.join(SHARED, "models", "vit-tiny-patch16-224-tin")
if os.path.isdir(vit):
    models.append(vit)
models.append(MODEL)
for m in models:
    name = os.path.basename(m)
    r = run("embed", "--model", m, "--normalize", "-o", f"{tmp}/cpu.npy", *IMGS)
    check(r.returncode == 0, f"{name}: CPU embed: {r.stderr}")
    cpu = np.load(f"{tmp}/cpu.npy")
    for prec, extra, cos_min, abs_max in (("fp32", [], 0.99999, 1e-4), ("bf16", [], 0.999, None),
                                          ("fp32", ["--tf32"], 0.999, None)):
        r = run("embed", "--model", m, "--normalize", "--device", "cuda", "--precision", prec, *extra,
                "-o", f"{tmp}/gpu.npy", *IMGS)
        check(r.returncode == 0, f"{name} {prec} {extra}: GPU embed: {r.stderr}")
        if r.returncode:
            continue
        c, a = cos_max(cpu, np.load(f"{tmp}/gpu.npy"))
        ok = c >= cos_min and (abs_max is None or a <= abs_max)
        print(f"{name:40s} {prec}{' tf32' if extra else '':5s} min cos {c:.7f} max-abs {a:.2e}")
        check(ok, f"{name} {prec} {extra}: min cos {c} (>= {cos_min}), max-abs {a}")

# eval on the GPU against the CPU, per image
for dev in ("cpu", "cuda"):
    r = run("eval", "--model", MODEL, "--data", DATA, "--op", "jpeg:30,70", "--op",
            "brightness:0.7", "--device", dev, "--no-report", "-o", f"{tmp}/ev_{dev}")
    check(r.returncode == 0, f"eval --device {dev}: {r.stderr}")
cfg = json.load(open(f"{tmp}/ev_cuda/config.json"))
check(cfg.get("device") == "cuda", f"config.json records the device: {cfg.get('device')}")
sec = json.load(open(f"{tmp}/ev_cuda/run.json"))["seconds"]
check(0 < sec.get("gpu", 0) <= sec["total"], f"run.json records the GPU's busy time: {sec}")
check("gpu" not in json.load(open(f"{tmp}/ev_cpu/run.json"))["seconds"], "no GPU time on the CPU")


def per_image(d):
    return {(j["image"], j["op"]): j for j in map(json.loads, open(f"{d}/per_image.jsonl"))}


a, b = per_image(f"{tmp}/ev_cpu"), per_image(f"{tmp}/ev_cuda")
check(a.keys() == b.keys(), "same images and ops")
worst = 0.0
for k in a:
    for key in ("R_cos", "R_euc", "R_div"):
        if isinstance(a[k].get(key), float):
            worst = max(worst, abs(a[k][key] - b[k][key]))
print(f"eval, GPU against CPU: largest per-image metric difference {worst:.2e}")
check(worst <= 1e-4, f"eval metrics within 1e-4 ({worst})")
r = run("embed", "--model", MODEL, "--device", "cuda:99", "-o", f"{tmp}/n.npy", *IMGS)
check(r.returncode == 1 and one_line(r) and "cuda:99" in r.stderr, f"cuda:99: {r.stderr}")
finish()
