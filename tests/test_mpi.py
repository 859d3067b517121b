#!/usr/bin/python3
"""mpirun -n 3 wobble eval (docs/scaling.md).

usage: test_mpi.py WOBBLE REF_DIR SHARED_DIR

- 3 ranks on the Kodak photos (or, without ../shared, the test images):
  per_image.jsonl, summary.json, summary.csv and config.json byte-identical
  to one process with the same --threads;
- --task linear with 3 ranks: the downstream files byte-identical too;
- data-parallel fine-tuning: 2 and 3 ranks give the weights of 1 process
  within 1e-6 relative (L2) after 20 steps, and only rank 0 writes;
- a rank killed mid-run ends the job (mpirun reports it, no result files);
  the re-run resumes from the ranks' caches and writes the same bytes;
- without mpirun the MPI build runs as one process (the other tests).
Skips (77) without mpirun.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import check, finish  # noqa: E402

W, REF, SHARED = sys.argv[1], sys.argv[2], sys.argv[3]
MPIRUN = shutil.which("mpirun")
if not MPIRUN:
    print("SKIP: no mpirun (Debian openmpi-bin)")
    sys.exit(77)
M = os.path.join(REF, "models", "clip-f32-openai")
kodak = os.path.join(SHARED, "data", "kodak")
DATA = kodak if os.path.isdir(kodak) else os.path.join(REF, "data")


MPI = [MPIRUN, "--oversubscribe", "--allow-run-as-root", "-n", "3"]
FILES = ("per_image.jsonl", "summary.json", "summary.csv", "config.json")
T = tempfile.mkdtemp(prefix="wobble_mpi_")
OPS = ["--op", "jpeg:50", "--op", "hue:0.1", "--seed", "2", "--threads", "1", "--no-report"]
r = subprocess.run([W, "eval", "--model", M, "--data", DATA, *OPS, "-o", os.path.join(T, "one")],
                   capture_output=True, text=True)
check(r.returncode == 0, f"one process: {r.stderr}")
t0 = time.time()
r = subprocess.run([*MPI, W, "eval", "--model", M, "--data", DATA, *OPS, "-o", os.path.join(T, "mpi")],
                   capture_output=True, text=True)
check(r.returncode == 0 and "3 ranks" in r.stderr, f"mpirun -n 3: {r.returncode} {r.stderr}")
diff = [f for f in FILES if open(os.path.join(T, "one", f), "rb").read() !=
        open(os.path.join(T, "mpi", f), "rb").read()] if r.returncode == 0 else list(FILES)
check(not diff, f"3 ranks differ from one process in {diff}")
print(f"3 ranks on {DATA}: {'byte-identical' if not diff else 'DIFFERENT'} to one process ({time.time() - t0:.1f} s)")

# kill rank 1 once its cache has some images, then resume
OPS2 = ["--op", "jpeg:50,30,10", "--op", "gaussian_blur:1,2,3", "--op", "hue:0.1,0.2", "--seed", "2", "--threads", "1",
        "--no-report"]
out = os.path.join(T, "killed")
r = subprocess.run([W, "eval", "--model", M, "--data", DATA, *OPS2, "-o", os.path.join(T, "one2")],
                   capture_output=True, text=True)
p = subprocess.Popen([*MPI, W, "eval", "--model", M, "--data", DATA, *OPS2, "-o", out], stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True)
cache = os.path.join(out, "shards", "1-of-3", "cache")
killed = None
deadline = time.time() + 120
while time.time() < deadline and p.poll() is None and killed is None:
    if os.path.isdir(cache) and len(os.listdir(cache)) >= 1:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
                cmd = open(f"/proc/{pid}/cmdline", "rb").read()
            except OSError:
                continue
            if b"OMPI_COMM_WORLD_RANK=1" in env and cmd.startswith(W.encode()):
                os.kill(int(pid), 9)
                killed = pid
                break
    time.sleep(0.05)
so, se = p.communicate(timeout=120)
if killed is None:
    print("note: the job finished before a rank could be killed (machine too fast for the test's data)")
else:
    cached = len(os.listdir(cache))
    check(p.returncode != 0 and re.search(r"signal|killed|exited", se, re.I), f"killed rank: exit {p.returncode}, {se[-400:]!r}")
    check(not os.path.exists(os.path.join(out, "per_image.jsonl")), "no result files after the killed run")
    r = subprocess.run([*MPI, W, "eval", "--model", M, "--data", DATA, *OPS2, "-o", out], capture_output=True, text=True)
    check(r.returncode == 0, f"re-run after the kill: {r.stderr}")
    diff = [f for f in FILES if r.returncode != 0 or open(os.path.join(T, "one2", f), "rb").read() !=
            open(os.path.join(out, f), "rb").read()]
    check(not diff, f"resumed run differs from one process in {diff}")
    print(f"rank 1 killed with {cached} images in its cache; the re-run resumed: "
          f"{'byte-identical' if not diff else 'DIFFERENT'} to one process")
# --task linear under mpirun: every rank embeds its shard of both sets into the
# shared caches, rank 0 runs the task on them: the bytes of one process
tree = {"tr/a": ["syn_3x5.png", "syn_33x17.png"], "tr/b": ["photo_96x80.png", "syn_64x48.png"],
        "te/a": ["syn_33x17.png", "tiny_10x7.png"], "te/b": ["photo_96x80.png"]}
for sub, files in tree.items():
    os.makedirs(os.path.join(T, sub))
    for f in files:
        shutil.copy(os.path.join(REF, "data", f), os.path.join(T, sub, f))
TASK = ["--task", "linear", "--model", M, "--train", os.path.join(T, "tr"), "--data", os.path.join(T, "te"), "--op",
        "jpeg:10", "--op", "hue:0.2", "--threads", "1", "--no-report"]
r1 = subprocess.run([W, "eval", *TASK, "-o", os.path.join(T, "task1")], capture_output=True, text=True)
r3 = subprocess.run([*MPI, W, "eval", *TASK, "-o", os.path.join(T, "task3")], capture_output=True, text=True)
check(r1.returncode == 0 and r3.returncode == 0 and "0 embeddings computed" in r3.stderr,
      f"--task linear, 1 process and 3 ranks: {r1.returncode} {r3.returncode} {r3.stderr[-300:]!r}")
TFILES = ("downstream.json", "downstream.csv", "downstream_per_image.jsonl", "per_image.jsonl", "summary.json",
          "summary.csv", "train_embeddings.npy", "test_embeddings.npy")
diff = [f for f in TFILES if r3.returncode or open(os.path.join(T, "task1", f), "rb").read() !=
        open(os.path.join(T, "task3", f), "rb").read()]
check(not diff, f"--task linear with 3 ranks differs from one process in {diff}")
print(f"--task linear with 3 ranks: {'byte-identical' if not diff else 'DIFFERENT'} to one process")

# data-parallel fine-tuning: 2 and 3 ranks against 1 process after 20 steps
def load_st(path):
    import json as js
    import struct
    import numpy as np
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = js.loads(b[8:8 + n])
    return {k: np.frombuffer(b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]], dtype=np.float32)
            for k, v in h.items() if k != "__metadata__"}


ftdata = os.path.join(T, "ftdata")
os.makedirs(ftdata)
for f in os.listdir(os.path.join(REF, "data")):
    if f.endswith(".png"):
        shutil.copy(os.path.join(REF, "data", f), ftdata)
FT = ["finetune", "--model", M, "--data", ftdata, "--op", "jpeg:10-90", "--op", "gaussian_blur:1,2",
      "--steps", "20", "--batch", "6", "--val", "2", "--val-every", "10", "--threads", "1"]
r = subprocess.run([W, *FT, "-o", os.path.join(T, "ft1")], capture_output=True, text=True)
check(r.returncode == 0, f"finetune, 1 process: {r.stderr}")
for n in (2, 3):
    r = subprocess.run([MPIRUN, "--oversubscribe", "--allow-run-as-root", "-n", str(n), W, *FT, "-o",
                        os.path.join(T, f"ft{n}")], capture_output=True, text=True)
    check(r.returncode == 0 and r.stdout.count("fine-tuned ") == 1, f"finetune, {n} ranks: {r.stderr[-300:]!r}")
    if r.returncode:
        continue
    a, b = load_st(os.path.join(T, "ft1", "model.safetensors")), load_st(os.path.join(T, f"ft{n}", "model.safetensors"))
    num = sum(float(((a[k].astype("float64") - b[k]) ** 2).sum()) for k in a)
    den = sum(float((a[k].astype("float64") ** 2).sum()) for k in a)
    rel = (num / den) ** 0.5
    check(a.keys() == b.keys() and rel <= 1e-6, f"finetune, {n} ranks: relative L2 difference {rel:.3e}")
    lines = open(os.path.join(T, f"ft{n}", "train_log.jsonl")).read().splitlines()
    check(len(lines) == 20, f"finetune, {n} ranks: {len(lines)} log lines (only rank 0 writes)")
    print(f"finetune, {n} ranks vs 1 process after 20 steps: weights differ by {rel:.2e} (relative L2)")

# refused under mpirun
r = subprocess.run([*MPI, W, "eval", "--model", M, "--data", DATA, "--op", "jpeg:50", "--shard", "0/2", "-o",
                    os.path.join(T, "x")], capture_output=True, text=True)
check(r.returncode != 0 and "not --shard, --embeddings or --task depth" in r.stderr,
      f"--shard under mpirun: {r.stderr[-300:]!r}")

# the MPI calls live in libwobble_mpi.so, loaded only under mpirun: a missing
# one is a one-line error per rank and a failed job, not a crash
env = dict(os.environ, WOBBLE_MPI_LIB=os.path.join(T, "no-such-libwobble_mpi.so"))
r = subprocess.run([*MPI, W, "eval", "--model", M, "--data", DATA, "--op", "jpeg:50", "-o", os.path.join(T, "y")],
                   capture_output=True, text=True, env=env)
check(r.returncode != 0 and "cannot load wobble's MPI library" in r.stderr and "no-such-libwobble_mpi.so" in r.stderr
      and not os.path.exists(os.path.join(T, "y", "summary.json")), f"missing MPI library: {r.stderr[-300:]!r}")
# and a plain run never loads it
r = subprocess.run([W, "eval", "--model", M, "--data", DATA, "--op", "jpeg:50", "-o", os.path.join(T, "z")],
                   capture_output=True, text=True, env=env)
check(r.returncode == 0, f"without mpirun, WOBBLE_MPI_LIB unused: {r.stderr[-300:]!r}")

shutil.rmtree(T)
finish()
