#!/usr/bin/python3
"""wobble eval --shard I/N and wobble merge (docs/scaling.md).

usage: test_shard.py WOBBLE REF_DIR

- 3 shards (and 2, given in any order) merged: per_image.jsonl, summary.json,
  summary.csv and config.json byte-identical to one whole run, with an
  unreadable image among the inputs and a random operation;
- a shard re-run takes everything from its cache and writes the same bytes;
  a shard folder refuses another shard;
- merge refuses missing, repeated and foreign shards (other seed, other
  operations, another N, a whole run) with one line, exit 1, nothing written.
Needs no Python package (runs in the sanitizer build too).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import check, finish, runner  # noqa: E402

W, REF = sys.argv[1], sys.argv[2]
M = os.path.join(REF, "models", "clip-f32-openai")

run = runner(W)


def same(a, b, files=("per_image.jsonl", "summary.json", "summary.csv", "config.json")):
    diff = [f for f in files if open(os.path.join(a, f), "rb").read() != open(os.path.join(b, f), "rb").read()]
    return diff


T = tempfile.mkdtemp(prefix="wobble_shard_")
data = os.path.join(T, "data")
os.makedirs(data)
for f in sorted(os.listdir(os.path.join(REF, "data"))):
    if f.endswith(".png"):
        shutil.copy(os.path.join(REF, "data", f), data)
open(os.path.join(data, "broken.png"), "wb").write(b"\x89PNG\r\n")
OPS = ["--op", "jpeg:50,10", "--op", "hue:0.1", "--op", "gaussian_noise:0.05", "--seed", "3", "--no-report"]
d = lambda n: os.path.join(T, n)
r = run("eval", "--model", M, "--data", data, *OPS, "-o", d("one"))
check(r.returncode == 1 and "broken.png" in r.stderr, f"whole run (one unreadable image): {r.returncode} {r.stderr}")

for n in (3, 2):
    for i in range(n):
        r = run("eval", "--model", M, "--data", data, *OPS, "--shard", f"{i}/{n}", "-o", d(f"s{i}of{n}"))
        check(r.returncode in (0, 1) and os.path.exists(d(f"s{i}of{n}/shard.json")), f"shard {i}/{n}: {r.stderr}")
    dirs = [d(f"s{i}of{n}") for i in range(n)][::-1]  # any order
    r = run("merge", *dirs, "--no-report", "-o", d(f"merged{n}"))
    check(r.returncode == 0, f"merge of {n}: {r.stderr}")
    if r.returncode == 0:
        diff = same(d("one"), d(f"merged{n}"))
        check(not diff, f"{n} shards merged differ from one run in {diff}")
        print(f"{n} shards merged: {'byte-identical' if not diff else 'DIFFERENT'} to one run")

# a shard re-run: everything from its cache, the same bytes
before = {f: open(os.path.join(d("s1of3"), f), "rb").read() for f in ("per_image.jsonl", "summary.json", "shard.json")}
r = run("eval", "--model", M, "--data", data, *OPS, "--shard", "1/3", "-o", d("s1of3"))
check(r.returncode in (0, 1) and re.search(r"0 embeddings computed, \d+ images from the cache", r.stderr),
      f"shard re-run uses the cache: {r.stderr}")
check(all(open(os.path.join(d("s1of3"), f), "rb").read() == b for f, b in before.items()), "shard re-run: same bytes")
r = run("eval", "--model", M, "--data", data, *OPS, "--shard", "2/3", "-o", d("s1of3"))
check(r.returncode == 1 and "another shard" in r.stderr, f"a shard folder refuses another shard: {r.stderr}")

# refusals
run("eval", "--model", M, "--data", data, *OPS[:-3], "--seed", "4", "--no-report", "--shard", "2/3", "-o", d("seed4"))
run("eval", "--model", M, "--data", data, "--op", "jpeg:50", "--seed", "3", "--no-report", "--shard", "2/3",
    "-o", d("ops1"))
cases = [
    ("missing", r"1 of the 3 shards are missing \(2\)", [d("s0of3"), d("s1of3")]),
    ("repeated", r"are both shard 0 of 3", [d("s0of3"), d("s0of3"), d("s1of3")]),
    ("other seed", r"seed4 holds a shard of another seed than .* \(seed differs\)", [d("s0of3"), d("s1of3"), d("seed4")]),
    ("other ops", r"ops1 holds a shard of other operations or levels", [d("s0of3"), d("s1of3"), d("ops1")]),
    ("other N", r"is a shard of 2, .* of 3", [d("s0of3"), d("s1of2"), d("s2of3")]),
    ("whole run", r"one: not a shard", [d("s0of3"), d("one")]),
    ("no folder", r"nowhere/config\.json: cannot read", [d("s0of3"), d("nowhere")]),
]
for what, pat, dirs in cases:
    out = d("bad-" + what.replace(" ", "-"))
    r = run("merge", *dirs, "-o", out)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    check(r.returncode == 1 and len(lines) == 1 and re.search(pat, r.stderr) and not os.path.exists(out),
          f"{what}: exit {r.returncode}, {r.stderr!r}")
for args, pat in ((["--shard", "3/3"], r"--shard '3/3' is not I/N"), (["--shard", "x"], r"is not I/N"),
                  (["--shard", "0/2", "--task", "knn", "--train", data], r"--shard is for the robustness run")):
    r = run("eval", "--model", M, "--data", data, "--op", "jpeg:50", *args, "-o", d("usage"))
    check(r.returncode == 2 and re.search(pat, r.stderr), f"{args}: {r.returncode} {r.stderr!r}")
r = run("merge", "-o", d("x"))
check(r.returncode == 2 and "no shard folders" in r.stderr, f"merge without folders: {r.stderr!r}")

shutil.rmtree(T)
finish()
