#!/usr/bin/python3
"""wobble eval --embeddings DIR (docs/embeddings.md).

usage: test_embeddings.py WOBBLE REF_DIR

- embeddings written by `wobble embed` (clean images, and the images
  `wobble perturb` made) into the folder layout give, through
  `eval --embeddings`, the metrics `eval --model --data` computes on the same
  images (within 1e-6: only the forward batches differ);
- --op selects columns (a name alone: all its levels), --limit keeps the
  first rows, the report is written without image thumbnails;
- bad layouts: exit 1 (2 for a bad command line), one stderr line naming the
  file and the problem, no result files.
Needs only NumPy (runs in the sanitizer build too).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import check, finish, runner  # noqa: E402

W, REF = sys.argv[1], sys.argv[2]
M = os.path.join(REF, "models", "clip-f32-openai")
NAMES = ["photo_96x80.png", "syn_64x48.png", "tiny_10x7.png"]
COLS = [("jpeg", 50.0), ("jpeg", 10.0), ("hue", 0.1), ("brightness", 1.0)]  # brightness 1 is the identity

run = runner(W)


T = tempfile.mkdtemp(prefix="wobble_emb_")
imgs = os.path.join(T, "imgs")
os.makedirs(imgs)
for n in NAMES:
    shutil.copy(os.path.join(REF, "data", n), imgs)

# clean and perturbed embeddings with the command line tools
r = run("embed", "--model", M, *[os.path.join(imgs, n) for n in NAMES], "-o", os.path.join(T, "clean.npy"))
check(r.returncode == 0, f"embed clean: {r.stderr}")
pert_files = []
for n in NAMES:
    for op, lv in COLS:
        out = os.path.join(T, "pert", f"{n}__{op}-{lv:g}.png")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        r = run("perturb", "--op", op, "--level", f"{lv:g}", os.path.join(imgs, n), out)
        check(r.returncode == 0, f"perturb {n} {op} {lv}: {r.stderr}")
        pert_files.append(out)
r = run("embed", "--model", M, *pert_files, "-o", os.path.join(T, "pert.npy"))
check(r.returncode == 0, f"embed perturbed: {r.stderr}")
clean = np.load(os.path.join(T, "clean.npy"))
pert = np.load(os.path.join(T, "pert.npy")).reshape(len(NAMES), len(COLS), -1)


def layout(d, clean=clean, pert=pert, cols=None, ids=None, labels=None, classes=None, index_text=None):
    os.makedirs(d, exist_ok=True)
    np.save(os.path.join(d, "clean.npy"), clean)
    np.save(os.path.join(d, "perturbed.npy"), pert)
    cols = [{"op": o, "level": l} for o, l in COLS] if cols is None else cols
    with open(os.path.join(d, "columns.json"), "w") as f:
        f.write(cols if isinstance(cols, str) else json.dumps(cols))
    ids = NAMES if ids is None else ids
    with open(os.path.join(d, "index.jsonl"), "w") as f:
        if index_text is not None:
            f.write(index_text)
        else:
            for k, i in enumerate(ids):
                rec = {"id": i}
                if labels is not None:
                    rec["label"] = labels[k]
                f.write(json.dumps(rec) + "\n")
    if classes is not None:
        with open(os.path.join(d, "classes.json"), "w") as f:
            f.write(json.dumps(classes))
    return d


good = layout(os.path.join(T, "good"), labels=[0, 1, 0], classes=["cat", "dog"])

# 1. the same metrics as eval on the images
r = run("eval", "--model", M, "--data", imgs, "--op", "jpeg:50,10", "--op", "hue:0.1", "--op", "brightness:1",
        "--no-report", "-o", os.path.join(T, "ref"))
check(r.returncode == 0, f"eval on images: {r.stderr}")
r = run("eval", "--embeddings", good, "-o", os.path.join(T, "ext"))
check(r.returncode == 0, f"eval --embeddings: {r.stderr}")
check("could not be read" not in r.stderr and len([l for l in r.stderr.splitlines() if l.strip()]) == 1,
      f"quiet about thumbnails: {r.stderr!r}")
if r.returncode == 0:
    a = [json.loads(l) for l in open(os.path.join(T, "ext", "per_image.jsonl"))]
    b = [json.loads(l) for l in open(os.path.join(T, "ref", "per_image.jsonl"))]
    b.sort(key=lambda x: (NAMES.index(os.path.basename(x["image"])), x["op"]))
    a.sort(key=lambda x: (NAMES.index(x["image"]), x["op"]))
    check(len(a) == len(b) == 9, f"{len(a)} and {len(b)} records")
    worst = max(abs(x[k] - y[k]) for x, y in zip(a, b) for k in ("R_cos", "R_euc", "R_div", "cos_mean", "euc_mean"))
    check(worst <= 1e-6, f"metrics differ by {worst:.2e}")
    print(f"eval --embeddings vs eval on the images: largest metric difference {worst:.2e}")
    check([x["label"] for x in a if x["op"] == "jpeg"] == [0, 1, 0], "labels from index.jsonl")
    s = json.load(open(os.path.join(T, "ext", "summary.json")))
    check(s["dataset"]["kind"] == "embeddings" and s["model"]["source"] == "embeddings"
          and s["model"]["embed_dim"] == clean.shape[1], f"summary source: {s['model']}")
    check([o["op"] for o in s["ops"]] == ["jpeg", "hue", "brightness"] and s["ops"][0]["levels"] == [50.0, 10.0],
          "ops from the columns, in order")
    br = [x for x in a if x["op"] == "brightness"]
    check(all(x["R_div"] == 0 for x in br), "the identity column is the clean embedding")
    html = open(os.path.join(T, "ext", "report.html")).read()
    check("embeddings computed elsewhere" in html and "data:image/jpeg" not in html, "report without thumbnails")
    # a re-run into the same folder is accepted; other embeddings are refused by the lock
    r = run("eval", "--embeddings", good, "--no-report", "-o", os.path.join(T, "ext"))
    check(r.returncode == 0, f"re-run: {r.stderr}")
    other = layout(os.path.join(T, "other"), clean=clean * 2)
    r = run("eval", "--embeddings", other, "--no-report", "-o", os.path.join(T, "ext"))
    check(r.returncode == 1 and "holds results for another model" in r.stderr, f"lock: {r.stderr}")

# 2. --op and --limit
r = run("eval", "--embeddings", good, "--op", "jpeg:10", "--op", "hue", "--limit", "2", "--no-report",
        "-o", os.path.join(T, "sel"))
check(r.returncode == 0, f"--op/--limit: {r.stderr}")
if r.returncode == 0:
    s = json.load(open(os.path.join(T, "sel", "summary.json")))
    check([(o["op"], o["levels"]) for o in s["ops"]] == [("jpeg", [10.0]), ("hue", [0.1])] and
          s["dataset"]["evaluated"] == 2, f"selection: {[(o['op'], o['levels']) for o in s['ops']]}")

# 3. bad layouts and command lines
nanc = clean.copy()
nanc[1, 3] = np.nan
infp = pert.copy()
infp[2, 1, 0] = np.inf
bad = {
    "clean-rows": (1, r"perturbed\.npy: shape \(2, 4, \d+\) does not match clean\.npy", dict(pert=pert[:2])),
    "dim": (1, r"perturbed\.npy: shape .* does not match", dict(pert=pert[:, :, :-1])),
    "2d-perturbed": (1, r"perturbed\.npy: shape \(3, \d+\); expected \[N, K, D\]", dict(pert=pert[:, 0])),
    "nan": (1, r"clean\.npy: row 1 holds NaN", dict(clean=nanc)),
    "inf": (1, r"perturbed\.npy: row 2 holds an infinite value", dict(pert=infp)),
    "int-dtype": (1, r"clean\.npy: dtype is not float32 or float64", dict(clean=(clean * 100).astype(np.int32))),
    "k-columns": (1, r"columns\.json: 3 columns for K = 4", dict(cols=[{"op": o, "level": l} for o, l in COLS[:3]])),
    "unknown-op": (1, r"columns\.json: column 2: unknown operation 'sepia'",
                   dict(cols=[{"op": "jpeg", "level": 50}, {"op": "jpeg", "level": 10}, {"op": "sepia", "level": 1},
                              {"op": "hue", "level": 0.2}])),
    "level-domain": (1, r"columns\.json: column 0: jpeg: quality 0 is outside the domain",
                     dict(cols=[{"op": "jpeg", "level": 0}] + [{"op": o, "level": l} for o, l in COLS[1:]])),
    "dup-column": (1, r"columns\.json: columns 0 and 1 are both jpeg at 50",
                   dict(cols=[{"op": "jpeg", "level": 50}] * 2 + [{"op": o, "level": l} for o, l in COLS[2:]])),
    "columns-not-array": (1, r"columns\.json: not a JSON array", dict(cols="{}")),
    "columns-bad-json": (1, r"columns\.json: .*line", dict(cols="[{\"op\": ")),
    "no-id": (1, r"index\.jsonl: line 2: no \"id\"", dict(index_text='{"id": "a"}\n{"label": 1}\n{"id": "c"}\n')),
    "dup-id": (1, r"index\.jsonl: id 'a' occurs more than once", dict(ids=["a", "b", "a"])),
    "few-ids": (1, r"index\.jsonl: 2 records for the 3 rows", dict(ids=["a", "b"])),
    "many-ids": (1, r"index\.jsonl: more records than the 3 rows of clean\.npy \(line 4\)", dict(ids=["a", "b", "c", "d"])),
    "bad-line": (1, r"index\.jsonl: line 2: ", dict(index_text='{"id": "a"}\n{"id": \n{"id": "c"}\n')),
    "label-type": (1, r"index\.jsonl: line 1: \"label\" must be an integer", dict(labels=["x", 1, 0])),
    "classes-short": (1, r"classes\.json: 1 class names, but index\.jsonl has label 1",
                      dict(labels=[0, 1, 0], classes=["cat"])),
}
for name, (code, pat, kw) in bad.items():
    d = layout(os.path.join(T, "bad", name), **kw)
    out = os.path.join(T, "badout", name)
    r = run("eval", "--embeddings", d, "-o", out)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    left = [f for f in (os.listdir(out) if os.path.isdir(out) else []) if f != "config.json"]
    check(r.returncode == code and len(lines) == 1 and re.search(pat, r.stderr) and name in r.stderr and not left,
          f"{name}: exit {r.returncode}, stderr {r.stderr!r}, left {left}")
os.remove(os.path.join(layout(os.path.join(T, "bad", "no-perturbed")), "perturbed.npy"))
usage = [
    ("missing perturbed.npy", 1, r"no-perturbed/perturbed\.npy: cannot open",
     ["--embeddings", os.path.join(T, "bad", "no-perturbed")]),
    ("not an embedding folder", 1, r"not an embedding folder", ["--embeddings", imgs]),
    ("absent op", 2, r"no column holds gaussian_blur", ["--embeddings", good, "--op", "gaussian_blur"]),
    ("absent level", 1, r"no column holds jpeg at 30", ["--embeddings", good, "--op", "jpeg:30"]),
    ("with --model", 2, r"--embeddings takes no --model", ["--embeddings", good, "--model", M]),
    ("with --task depth", 2, r"--task linear or knn", ["--embeddings", good, "--task", "depth"]),
]
for what, code, pat, args in usage:
    out = os.path.join(T, "usage", what.replace(" ", "-"))
    r = run("eval", *args, "-o", out)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    left = [f for f in (os.listdir(out) if os.path.isdir(out) else []) if f != "config.json"]
    check(r.returncode == code and len(lines) == 1 and re.search(pat, r.stderr) and not left,
          f"{what}: exit {r.returncode}, stderr {r.stderr!r}, left {left}")

# 4. --task linear / knn on embeddings: the accuracy eval --task computes from the images
tree = {"tr/a": ["syn_3x5.png", "syn_33x17.png"], "tr/b": ["photo_96x80.png", "syn_64x48.png"],
        "te/a": ["syn_33x17.png", "tiny_10x7.png"], "te/b": ["photo_96x80.png"]}
for sub, files in tree.items():
    os.makedirs(os.path.join(T, sub), exist_ok=True)
    for f in files:
        shutil.copy(os.path.join(REF, "data", f), os.path.join(T, sub, f))
TCOLS = [("jpeg", 10.0), ("hue", 0.2)]
r = run("eval", "--task", "linear", "--model", M, "--train", os.path.join(T, "tr"), "--data", os.path.join(T, "te"),
        "--op", "jpeg:10", "--op", "hue:0.2", "--no-report", "-o", os.path.join(T, "task_ref"))
check(r.returncode == 0, f"eval --task linear on images: {r.stderr}")
rows, labels, splits, ids = [], [], [], []
for sub in ("tr/a", "tr/b", "te/a", "te/b"):
    for f in tree[sub]:
        rows.append(os.path.join(T, sub, f))
        labels.append(0 if sub.endswith("a") else 1)
        splits.append("train" if sub.startswith("tr") else "test")
        ids.append(sub + "/" + f)
r = run("embed", "--model", M, *rows, "-o", os.path.join(T, "tclean.npy"))
tclean = np.load(os.path.join(T, "tclean.npy"))
pfiles = []
for p in rows:
    for op, lv in TCOLS:
        out = os.path.join(T, "tpert", os.path.basename(os.path.dirname(os.path.dirname(p))) + os.path.basename(
            os.path.dirname(p)) + "_" + os.path.basename(p) + f"_{op}.png")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        run("perturb", "--op", op, "--level", f"{lv:g}", p, out)
        pfiles.append(out)
r = run("embed", "--model", M, *pfiles, "-o", os.path.join(T, "tpert.npy"))
tpert = np.load(os.path.join(T, "tpert.npy")).reshape(len(rows), len(TCOLS), -1)
td = os.path.join(T, "task_emb")
os.makedirs(td)
np.save(os.path.join(td, "clean.npy"), tclean)
np.save(os.path.join(td, "perturbed.npy"), tpert)
json.dump([{"op": o, "level": l} for o, l in TCOLS], open(os.path.join(td, "columns.json"), "w"))
json.dump(["a", "b"], open(os.path.join(td, "classes.json"), "w"))
with open(os.path.join(td, "index.jsonl"), "w") as f:
    for i, l, s in zip(ids, labels, splits):
        f.write(json.dumps({"id": i, "label": l, "split": s}) + "\n")
for task in ("linear", "knn"):
    ref_dir = os.path.join(T, "task_ref") if task == "linear" else os.path.join(T, "task_ref_knn")
    if task == "knn":
        run("eval", "--task", "knn", "--k", "3", "--model", M, "--train", os.path.join(T, "tr"), "--data",
            os.path.join(T, "te"), "--op", "jpeg:10", "--op", "hue:0.2", "--no-report", "-o", ref_dir)
    extra = ["--k", "3"] if task == "knn" else []
    r = run("eval", "--embeddings", td, "--task", task, *extra, "--no-report", "-o", os.path.join(T, "task_" + task))
    check(r.returncode == 0, f"eval --embeddings --task {task}: {r.stderr}")
    if r.returncode == 0:
        a = json.load(open(os.path.join(T, "task_" + task, "downstream.json")))
        b = json.load(open(os.path.join(ref_dir, "downstream.json")))
        check(a["train"]["evaluated"] == 4 and a["test"]["evaluated"] == 3, f"{task}: rows {a['train']}, {a['test']}")
        acc = lambda d: [d["clean"]["top1"]] + [lv["top1"] for o in d["ops"] for lv in o["per_level"]]
        check(acc(a) == acc(b), f"{task}: accuracies {acc(a)} vs {acc(b)} on the images")
        key = lambda r: ("/".join(r["image"].split("/")[-2:]), r["op"])
        pa = sorted((key(r), r["clean_pred"], r["pred"]) for r in map(json.loads, open(os.path.join(
            T, "task_" + task, "downstream_per_image.jsonl"))))
        pb = sorted((key(r), r["clean_pred"], r["pred"]) for r in map(json.loads, open(os.path.join(
            ref_dir, "downstream_per_image.jsonl"))))
        check(pa == pb and len(pa) == 6, f"{task}: per-image predictions differ: {pa} vs {pb}")
        check(a["classifier"].get("l2") == b["classifier"].get("l2"), f"{task}: classifier {a['classifier']}")
        print(f"--task {task}: top-1 {acc(a)} (eval on the images: {acc(b)}), per-image predictions equal")
# a separate training folder of clean embeddings only (no perturbed.npy, no columns.json)
trd = os.path.join(T, "train_only")
os.makedirs(trd)
np.save(os.path.join(trd, "clean.npy"), tclean[:4])
json.dump(["a", "b"], open(os.path.join(trd, "classes.json"), "w"))
with open(os.path.join(trd, "index.jsonl"), "w") as f:
    for i, l in zip(ids[:4], labels[:4]):
        f.write(json.dumps({"id": i, "label": l}) + "\n")
r = run("eval", "--embeddings", td, "--task", "linear", "--train", trd, "--no-report", "-o", os.path.join(T, "task_tr"))
check(r.returncode == 0, f"--train with a clean-only folder: {r.stderr}")
if r.returncode == 0:
    a = json.load(open(os.path.join(T, "task_tr", "downstream.json")))
    b = json.load(open(os.path.join(T, "task_ref", "downstream.json")))
    check(a["clean"]["top1"] == b["clean"]["top1"], "same accuracy with a separate training folder")
for what, code, pat, args in [
        ("clean-only folder evaluated", 1, "clean embeddings only", ["--embeddings", trd]),
        ("zeroshot", 2, "--task linear or knn", ["--embeddings", td, "--task", "zeroshot"]),
        ("no train rows", 1, "no row of index.jsonl is in the train split", ["--embeddings", good, "--task", "linear"]),
        ("--train without --task", 2, "need --task", ["--embeddings", td, "--train", trd])]:
    out = os.path.join(T, "usage2", what.replace(" ", "-"))
    r = run("eval", *args, "-o", out)
    check(r.returncode == code and re.search(pat, r.stderr) and len(r.stderr.strip().splitlines()) == 1
          and not os.path.exists(os.path.join(out, "downstream.json")), f"{what}: exit {r.returncode}, {r.stderr!r}")

KEEP = os.environ.get("KEEP_T")
if not KEEP: shutil.rmtree(T)
finish()
