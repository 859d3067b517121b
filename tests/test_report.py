#!/usr/bin/python3
"""wobble report, structure and bad input (docs/report.md).

Makes real runs with the tiny reference models of tests/ref/models: eval on
the 24 Kodak photos at the default grids (which writes report.html itself),
a second model on 8 of them (--no-report), a linear-probe downstream run on
the CIFAR-10 subset with an ImageNet-C corruption, and a short fine-tune;
then `wobble report` over all four. For both reports:

- every element carrying data-j="RUN:FILE:PATH" shows exactly the number at
  PATH in that run's FILE (integers as integers, others as %.4g), and every
  table cell that shows a number carries one;
- the numbers required are there: every op x (R_cos, R_euc, R_div) x (mean,
  median, p90) of every run; clean and per-op accuracy, every fit and
  leave-one-op-out error, the ImageNet-C errors and CE; the fine-tuning
  validation before and after;
- the per-level markers of each op's two distance plots are exactly the
  per-level means of summary.json;
- nothing outside the file: a Content-Security-Policy that forbids the
  network, no external src/href/url(), no <link>, no script file;
- the default report of the 24 Kodak photos is at most 3 MB and shows every
  worst image (54 thumbnails).

Then bad input: a folder without summary.json, a missing folder, truncated
JSON and JSONL, a run from another wobble version, an unwritable output:
one line naming the file, exit 1, and no output file (an existing one is
left as it was); bad command lines exit 2.

usage: test_report.py WOBBLE REF_DIR SHARED_DIR OUT_DIR
Skips (77) when the shared folder's Kodak photos or CIFAR-10 are absent.
"""
import html.parser
import json
import os
import re
import shutil
import subprocess
import sys

W, REF, SHARED, OUT = sys.argv[1:5]
KODAK = os.path.join(SHARED, "data", "kodak")
CIFAR = os.path.join(SHARED, "data", "cifar-10-batches-bin")
if not os.path.isdir(KODAK) or not os.path.exists(os.path.join(CIFAR, "test_batch.bin")):
    print("SKIP: %s or %s not found (set WOBBLE_SHARED)" % (KODAK, CIFAR))
    sys.exit(77)
CLIP = os.path.join(REF, "models", "clip-f32-openai")
DINO = os.path.join(REF, "models", "dinov2-swiglu-reg-hf-bf16")

fails = []
checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        fails.append(what)
        print("FAIL:", what)


def run(args, code=0):
    p = subprocess.run([W] + args, capture_output=True, text=True)
    if code is not None and p.returncode != code:
        print(p.stdout[-2000:], p.stderr[-2000:])
        raise SystemExit("wobble %s: exit %d, expected %d" % (" ".join(args), p.returncode, code))
    return p


shutil.rmtree(OUT, ignore_errors=True)
os.makedirs(OUT)
R = {k: os.path.join(OUT, k) for k in ("kodak", "dino", "down", "ft", "depth")}
ICL = os.path.join(SHARED, "data", "icl-nuim-livingroom1")

p = run(["eval", "--model", CLIP, "--data", KODAK, "--seed", "1", "--threads", "2", "-o", R["kodak"]])
check("report: " + os.path.join(R["kodak"], "report.html") in p.stdout, "eval prints the report's path")
check(os.path.exists(os.path.join(R["kodak"], "report.html")), "eval writes report.html")
run(["eval", "--model", DINO, "--data", KODAK, "--limit", "8", "--op", "jpeg", "--op", "gaussian_blur", "--op", "hue",
     "--seed", "1", "--threads", "2", "--no-report", "-o", R["dino"]])
check(not os.path.exists(os.path.join(R["dino"], "report.html")), "--no-report writes no report.html")
check(os.path.exists(os.path.join(R["dino"], "run.json")), "eval writes run.json")
run(["eval", "--task", "linear", "--model", CLIP, "--train", os.path.join(CIFAR, "data_batch_1.bin"),
     "--train-limit", "200", "--data", os.path.join(CIFAR, "test_batch.bin"), "--limit", "60", "--seed", "1",
     "--op", "jpeg:30,10", "--op", "gaussian_noise:0.04,0.16", "--op", "imagenet_c.contrast:1,2,3,4,5",
     "--threads", "2", "-o", R["down"]])
imgs = os.path.join(OUT, "ft-images")
os.makedirs(imgs)
for f in sorted(os.listdir(KODAK))[:6]:
    shutil.copy(os.path.join(KODAK, f), imgs)
run(["finetune", "--model", CLIP, "--data", imgs, "--op", "jpeg:10-90", "--op", "gaussian_blur:1,2", "--steps", "6",
     "--batch", "2", "--val", "2", "--val-every", "2", "--threads", "2", "-o", R["ft"]])
runs = [R["kodak"], R["dino"], R["down"], R["ft"]]
if os.path.isdir(os.path.join(ICL, "image")):
    run(["eval", "--task", "depth", "--model", DINO, "--train", ICL, "--train-frames", "0-7", "--data", ICL,
         "--frames", "200-202", "--op", "jpeg:30,10", "--op", "gaussian_blur:2", "--steps", "10", "--threads", "2",
         "-o", R["depth"]])
    runs.append(R["depth"])
multi = os.path.join(OUT, "multi.html")
run(["report"] + runs + ["-o", multi])


class Page(html.parser.HTMLParser):
    """data-j elements with their text, numeric table cells, circle titles
    per (section, svg), and everything that could reach outside the file."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack = []          # open elements: (tag, attrs)
        self.dj = []             # (data-j, text)
        self.cells = []          # (text, has data-j) of every td
        self.titles = {}         # (op section id, svg index in it) -> [title text]
        self.external = []
        self.csp = None
        self.imgs = 0
        self.section = None
        self.svg_n = 0
        self.text = ""

    VOID = {"meta", "img", "br", "hr", "input", "link", "area", "base", "col", "wbr", "source"}

    def handle_starttag(self, tag, attrs):
        self._start(tag, attrs)
        if tag not in self.VOID:
            self.stack.append((tag, dict(attrs), ""))

    def handle_startendtag(self, tag, attrs):  # <rect .../>: nothing inside
        self._start(tag, attrs)

    def _start(self, tag, attrs):
        a = dict(attrs)
        if tag == "meta" and a.get("http-equiv", "").lower() == "content-security-policy":
            self.csp = a.get("content")
        for k in ("src", "href"):
            v = a.get(k)
            if v and not (v.startswith("#") or v.startswith("data:")):
                self.external.append("%s %s=%s" % (tag, k, v[:80]))
        if tag in ("link", "iframe", "object", "embed") or (tag == "script" and "src" in a):
            self.external.append(tag)
        if "url(" in (a.get("style") or "") and "url(data:" not in a.get("style"):
            self.external.append("style url(")
        if tag == "img":
            self.imgs += 1
        if tag == "section" and (a.get("id") or "").startswith("op-"):
            self.section, self.svg_n = a["id"], 0
        if tag == "svg":
            self.svg_n += 1

    def handle_endtag(self, tag):
        while self.stack:
            t, a, text = self.stack.pop()
            if self.stack:  # text bubbles up to the parent
                pt, pa, ptext = self.stack[-1]
                self.stack[-1] = (pt, pa, ptext + text)
            if "data-j" in a:
                self.dj.append((a["data-j"], text.strip()))
            if t == "td":
                self.cells.append((text.strip(), "data-j" in a))
            if t == "title" and self.section and len(self.stack) >= 2 and self.stack[-1][0] == "circle":
                self.titles.setdefault((self.section, self.svg_n), []).append(text.strip())
            if t == tag:
                break

    def handle_data(self, data):
        if self.stack:
            t, a, text = self.stack[-1]
            self.stack[-1] = (t, a, text + data)


def load_page(path):
    p = Page()
    with open(path, encoding="utf-8") as f:
        p.feed(f.read())
    return p


def files_of(run_dir):
    out = {}
    for name, key in (("summary.json", "summary"), ("downstream.json", "downstream"), ("run.json", "run"),
                      ("finetune.json", "finetune"), ("depth.json", "depth")):
        q = os.path.join(run_dir, name)
        if os.path.exists(q):
            out[key] = json.load(open(q))
    q = os.path.join(run_dir, "per_image.jsonl")
    if os.path.exists(q):
        out["per_image"] = [json.loads(line) for line in open(q)]
    return out


def resolve(root, path):
    v = root
    for t in path.split("/"):
        v = v[int(t)] if isinstance(v, list) else v[t]
    return v


def expect_text(v):
    if isinstance(v, bool):
        raise TypeError
    return str(v) if isinstance(v, int) else "%.4g" % v


def structure(report, run_dirs, want_thumbs=None):
    page = load_page(report)
    files = [files_of(d) for d in run_dirs]
    name = os.path.basename(report)
    seen = set()
    bad = 0
    for dj, text in page.dj:
        r, f, path = dj.split(":", 2)
        try:
            v = resolve(files[int(r)][f], path)
            ok = expect_text(v) == text
        except (KeyError, IndexError, ValueError, TypeError):
            ok, v = False, "(no such value)"
        if not ok:
            bad += 1
            if bad <= 5:
                print("  %s: %s shows %r, the JSON has %r" % (name, dj, text, v))
        seen.add(dj)
    check(bad == 0, "%s: %d of %d numbers differ from the JSON" % (name, bad, len(page.dj)))
    num = re.compile(r"^-?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$")
    loose = [t for t, has in page.cells if num.match(t) and not has]
    check(not loose, "%s: table cells with numbers but no source: %s" % (name, loose[:5]))
    # required numbers
    missing = []
    for i, fl in enumerate(files):
        s = fl.get("summary")
        for o, op in enumerate(s["ops"] if s else []):
            for m in ("R_cos", "R_euc", "R_div"):
                for st in ("mean", "median", "p90"):
                    missing.append("%d:summary:ops/%d/metrics/%s/%s" % (i, o, m, st))
        d = fl.get("downstream")
        if d:
            missing += ["%d:downstream:clean/top1" % i, "%d:downstream:clean/top5" % i]
            for o in range(len(d["ops"])):
                missing += ["%d:downstream:ops/%d/%s" % (i, o, k) for k in ("mean_top1", "worst_top1", "mean_top1_drop")]
            for g in ("op_level", "op", "image_bins"):
                for m in ("R_cos", "R_euc", "R_div"):
                    missing += ["%d:downstream:prediction/%s/fits/%s/%s" % (i, g, m, k)
                                for k in ("n", "slope", "r2", "pearson", "spearman")]
                    if g != "image_bins":
                        missing.append("%d:downstream:prediction/%s/leave_one_op_out/%s/mean_abs_error" % (i, g, m))
            ic = d.get("imagenet_c")
            for k, c in enumerate(ic["corruptions"] if ic else []):
                missing += ["%d:downstream:imagenet_c/corruptions/%d/top1_error/%d" % (i, k, sv) for sv in range(5)]
                missing.append("%d:downstream:imagenet_c/corruptions/%d/CE" % (i, k))
        dj = fl.get("depth")
        if dj:
            for row in ("clean", "baseline_mean_depth", "baseline_mean_depth_median_scaled"):
                missing += ["%d:depth:%s/%s" % (i, row, k) for k in ("abs_rel", "rmse", "log10", "silog", "d1", "d2", "d3")]
            for o in range(len(dj["ops"])):
                missing += ["%d:depth:ops/%d/%s" % (i, o, k) for k in ("mean_abs_rel", "R_cos_mean", "R_euc_mean", "R_div_mean")]
            for g in ("op_level", "op", "image_bins"):
                for m in ("R_cos", "R_euc", "R_div"):
                    missing += ["%d:depth:prediction/%s/fits/%s/%s" % (i, g, m, k) for k in ("n", "slope", "r2", "pearson")
                                if dj["prediction"][g]["fits"][m] is not None and dj["prediction"][g]["fits"][m][k] is not None]
        ft = fl.get("finetune")
        if ft:
            missing += ["%d:finetune:result/%s/%s" % (i, w, k) for w in ("val_before", "val_after")
                        for k in ("R_div_mean", "cos_clean")]
    missing = [m for m in missing if m not in seen]
    check(not missing, "%s: numbers not shown: %s" % (name, missing[:6]))
    check(page.csp and "default-src 'none'" in page.csp and "img-src data:" in page.csp,
          "%s: a Content-Security-Policy that forbids the network (%r)" % (name, page.csp))
    check(not page.external, "%s: references outside the file: %s" % (name, page.external[:5]))
    if want_thumbs is not None:
        check(page.imgs == want_thumbs, "%s: %d thumbnails, expected %d" % (name, page.imgs, want_thumbs))
    return page, files


# the eval's own report: one run
page, files = structure(os.path.join(R["kodak"], "report.html"), [R["kodak"]], want_thumbs=9 * 3 * 2)
size = os.path.getsize(os.path.join(R["kodak"], "report.html"))
print("Kodak report: %d bytes, %d numbers with their source, %d thumbnails" % (size, len(page.dj), page.imgs))
check(size <= 3_000_000, "the default report for the 24 Kodak photos is %d bytes (at most 3 MB)" % size)
# the distance plots' markers are summary.json's per-level means
s = files[0]["summary"]
order = sorted(range(len(s["ops"])), key=lambda o: (s["ops"][o]["metrics"]["R_div"]["mean"], s["ops"][o]["op"]))
for j, o in enumerate(order):
    for n_svg, q in ((1, "cos"), (2, "euc")):
        got = page.titles.get(("op-%d" % j, n_svg), [])
        want = ["mean over the images: %.4g, %.4g" % (lv["level"], lv[q]["mean"]) for lv in s["ops"][o]["per_level"]]
        check(got == want, "op %s %s plot: markers %s, summary.json %s" % (s["ops"][o]["op"], q, got[:2], want[:2]))

# the comparison of four runs
page, _ = structure(multi, runs)
print("comparison report: %d bytes, %d numbers with their source" % (os.path.getsize(multi), len(page.dj)))

# ------------------------------------------------------------ bad input
bad_dir = os.path.join(OUT, "bad")
os.makedirs(bad_dir)


def bad_case(label, dirs, want, code=1, out=None):
    out = out or os.path.join(bad_dir, "r.html")
    p = run(["report"] + dirs + ["-o", out], code=None)
    lines = p.stderr.strip().splitlines()
    check(p.returncode == code, "%s: exit %d, expected %d (%s)" % (label, p.returncode, code, p.stderr.strip()))
    check(len(lines) == 1 and want in lines[0], "%s: one line with %r: %r" % (label, want, p.stderr.strip()))
    return lines


def copy_run(src, name):
    d = os.path.join(bad_dir, name)
    shutil.copytree(src, d, ignore=shutil.ignore_patterns("cache", "train"))
    return d


empty = os.path.join(bad_dir, "empty")
os.makedirs(empty)
bad_case("folder without summary.json", [empty], empty + ": neither summary.json nor finetune.json")
bad_case("missing folder", [os.path.join(bad_dir, "nope")], os.path.join(bad_dir, "nope") + ": no such folder")
t = copy_run(R["kodak"], "trunc")
data = open(os.path.join(t, "summary.json"), "rb").read()
open(os.path.join(t, "summary.json"), "wb").write(data[: len(data) // 2])
bad_case("truncated summary.json", [t], os.path.join(t, "summary.json") + ": not valid JSON")
t = copy_run(R["kodak"], "trunc-jsonl")
data = open(os.path.join(t, "per_image.jsonl"), "rb").read()
open(os.path.join(t, "per_image.jsonl"), "wb").write(data[: len(data) // 2])
bad_case("truncated per_image.jsonl", [t], os.path.join(t, "per_image.jsonl") + ": line ")
t = copy_run(R["kodak"], "old")
j = json.load(open(os.path.join(t, "summary.json")))
j["wobble"] = "0.0.1"
json.dump(j, open(os.path.join(t, "summary.json"), "w"))
bad_case("another version", [t], "written by wobble 0.0.1")
t = copy_run(R["down"], "old-down")
j = json.load(open(os.path.join(t, "downstream.json")))
j["wobble"] = "9.9.9"
json.dump(j, open(os.path.join(t, "downstream.json"), "w"))
bad_case("another version (downstream.json)", [t], "written by wobble 9.9.9")
t = copy_run(R["ft"], "old-ft")
j = json.load(open(os.path.join(t, "finetune.json")))
check(j.get("wobble"), "finetune.json records the wobble version")
j["wobble"] = "0.0.2"
json.dump(j, open(os.path.join(t, "finetune.json"), "w"))
bad_case("another version (finetune.json)", [t], "written by wobble 0.0.2")
# a failed report leaves an existing file as it was, and no temporary file
keep = os.path.join(bad_dir, "keep.html")
open(keep, "w").write("keep")
bad_case("failed report over an existing file", [R["kodak"], empty], "neither summary.json", out=keep)
check(open(keep).read() == "keep", "a failed report left the existing file as it was")
check(sorted(f for f in os.listdir(bad_dir) if f.startswith("keep") or f.startswith("r.html")) == ["keep.html"],
      "no temporary or partial output: %s" % os.listdir(bad_dir))
bad_case("unwritable output", [R["kodak"]], os.path.join(bad_dir, "no", "dir", "r.html"),
         out=os.path.join(bad_dir, "no", "dir", "r.html"))
p = run(["report", R["kodak"]], code=None)
check(p.returncode == 2 and "-o REPORT.html is required" in p.stderr, "no -o: exit 2 (%s)" % p.stderr.strip())
p = run(["report", "-o", os.path.join(bad_dir, "x.html")], code=None)
check(p.returncode == 2 and "no run folder" in p.stderr, "no run folder: exit 2 (%s)" % p.stderr.strip())
p = run(["report", "--worst", "-1", R["kodak"], "-o", os.path.join(bad_dir, "x.html")], code=None)
check(p.returncode == 2 and "--worst" in p.stderr, "--worst -1: exit 2 (%s)" % p.stderr.strip())
check(not os.path.exists(os.path.join(bad_dir, "x.html")), "a bad command line writes nothing")
# an image gone since the eval: one warning for the run, the report still written
t = copy_run(R["kodak"], "moved")
rj = json.load(open(os.path.join(t, "run.json")))
per = [json.loads(line) for line in open(os.path.join(t, "per_image.jsonl"))]
for rec in per:
    rec["image"] = "/nonexistent/" + os.path.basename(rec["image"])
open(os.path.join(t, "per_image.jsonl"), "w").write("".join(json.dumps(rec) + "\n" for rec in per))
p = run(["report", t, "-o", os.path.join(bad_dir, "moved.html")], code=0)
check(len(p.stderr.strip().splitlines()) == 1 and "27 of the images shown could not be read" in p.stderr,
      "images gone: one warning line (%r)" % p.stderr.strip())
check(load_page(os.path.join(bad_dir, "moved.html")).imgs == 0, "images gone: no thumbnails")

print("%d checks, %d failed" % (checks, len(fails)))
sys.exit(1 if fails else 0)
