#!/usr/bin/python3
"""wobble embed --text / --text-file against the upstream CLIP fixtures.

usage: test_text_cli.py WOBBLE REF_DIR SHARED_DIR

- the three texts of fixtures/clip-full through the whole small CLIP (both
  namings) equal upstream encode_text (cosine >= 0.99999, max-abs <= 1e-4);
- the sidecar's token counts and truncation flags equal the upstream
  clip.tokenize ids of fixtures/clip-text (15 texts, one cut to 77);
- --text-file (CRLF, blank lines skipped) gives the rows --text gives;
  --normalize gives unit rows; --precision bf16 stays within 0.999 cosine;
- bad input: exit 1 or 2, one line naming the problem, nothing written.
Skips (77) when SHARED_DIR/fixtures is absent.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

W, REF, SHARED = sys.argv[1], sys.argv[2], sys.argv[3]
FULL = os.path.join(SHARED, "fixtures", "clip-full")
TEXT = os.path.join(SHARED, "fixtures", "clip-text")
if not os.path.isdir(FULL) or not os.path.isdir(TEXT):
    print(f"SKIP: {FULL} not found (set WOBBLE_SHARED)")
    sys.exit(77)

fails = 0
passes = 0


def check(cond, what):
    global fails, passes
    if cond:
        passes += 1
    else:
        fails += 1
        print("FAIL:", what)


def run(*args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([W, "embed", *args], capture_output=True, text=True, env=e)
    return p.returncode, p.stderr


def compare(a, b):
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return float(cos.min()), float(np.abs(a - b).max())


T = tempfile.mkdtemp(prefix="wobble_text_")
texts = json.load(open(os.path.join(FULL, "inputs.json")))["texts"]
ref = np.load(os.path.join(FULL, "text_embedding.npy"))
args = [a for t in texts for a in ("--text", t)]

# 1. upstream encode_text, both namings (the OpenAI folder has no tokenizer files)
for naming, extra in (("hf-naming", []), ("openai-naming", ["--tokenizer", os.path.join(FULL, "hf-naming")])):
    out = os.path.join(T, naming + ".npy")
    rc, err = run("--model", os.path.join(FULL, naming), *extra, *args, "-o", out)
    check(rc == 0, f"{naming}: exit {rc}: {err}")
    if rc == 0:
        e = np.load(out)
        cos, mx = compare(e, ref)
        check(e.shape == ref.shape and e.dtype == np.float32, f"{naming}: shape {e.shape} {e.dtype}")
        check(cos >= 0.99999 and mx <= 1e-4, f"{naming}: cosine {cos:.7f}, max-abs {mx:.2e} vs upstream")
        side = json.load(open(out + ".json"))
        check(side["kind"] == "text" and side["rows"] == 3 and [t["text"] for t in side["texts"]] == texts,
              f"{naming}: sidecar texts {side.get('texts')}")
        print(f"{naming}: cosine {cos:.7f}, max-abs {mx:.2e} against upstream encode_text")
        # the model's own folder finds the tokenizer for hf-naming; openai-naming needs --tokenizer
if True:
    rc, err = run("--model", os.path.join(FULL, "openai-naming"), "--text", "a dog", "-o", os.path.join(T, "x.npy"))
    check(rc == 1 and "give --tokenizer DIR" in err and not os.path.exists(os.path.join(T, "x.npy")),
          f"openai-naming without a tokenizer: exit {rc}: {err}")

# 2. token counts and truncation against upstream clip.tokenize ids
ttexts = json.load(open(os.path.join(TEXT, "texts.json")))
ids = np.load(os.path.join(TEXT, "token_ids.npy"))
out = os.path.join(T, "tok.npy")
rc, err = run("--model", os.path.join(FULL, "hf-naming"), "--tokenizer", TEXT,
              *[a for t in ttexts for a in ("--text", t)], "-o", out)
check(rc == 0, f"15 texts: exit {rc}: {err}")
if rc == 0:
    side = json.load(open(out + ".json"))
    want = [int((r != 0).sum()) for r in ids]
    got = [t["tokens"] for t in side["texts"]]
    check(got == want, f"token counts {got}, upstream {want}")
    cut = [t["truncated"] for t in side["texts"]]
    check(cut == [n == 77 and r[-1] == ids.max() for n, r in zip(want, ids)] and sum(cut) == 1 and side["truncated"] == 1,
          f"truncation flags {cut}")
    check(side["context_length"] == 77 and [t["text"] for t in side["texts"]] == ttexts, "sidecar texts, context")
    check(np.load(out).shape == (15, ref.shape[1]), "15 rows")

# 3. --text-file: CRLF line ends, blank lines skipped, rows as --text gives them
tf = os.path.join(T, "prompts.txt")
with open(tf, "wb") as f:
    f.write(("\r\n".join(texts[:2]) + "\r\n\r\n\n" + texts[2] + "\n").encode())
rc, err = run("--model", os.path.join(FULL, "hf-naming"), "--text-file", tf, "-o", os.path.join(T, "file.npy"))
check(rc == 0, f"--text-file: exit {rc}: {err}")
if rc == 0:
    a, b = np.load(os.path.join(T, "file.npy")), np.load(os.path.join(T, "hf-naming.npy"))
    check(a.shape == b.shape and np.array_equal(a, b), "--text-file rows equal --text rows")
    check([t["text"] for t in json.load(open(os.path.join(T, "file.npy.json")))["texts"]] == texts,
          "--text-file texts in the sidecar")
# --text first, then the file's lines
rc, err = run("--model", os.path.join(FULL, "hf-naming"), "--text", "first", "--text-file", tf,
              "-o", os.path.join(T, "mix.npy"))
check(rc == 0 and [t["text"] for t in json.load(open(os.path.join(T, "mix.npy.json")))["texts"]] == ["first"] + texts,
      f"--text and --text-file together: exit {rc}: {err}")

# 4. --normalize, --batch 1, bf16
rc, err = run("--model", os.path.join(FULL, "hf-naming"), "--normalize", "--batch", "1", *args,
              "-o", os.path.join(T, "n.npy"))
check(rc == 0, f"--normalize: exit {rc}: {err}")
if rc == 0:
    n = np.load(os.path.join(T, "n.npy"))
    check(np.allclose(np.linalg.norm(n, axis=1), 1, atol=1e-5), "--normalize: unit rows")
    cos, _ = compare(n, ref)
    check(cos >= 0.99999, f"--normalize --batch 1: cosine {cos} to upstream")
    check(json.load(open(os.path.join(T, "n.npy.json")))["normalized"] is True, "sidecar normalized")
rc, err = run("--model", os.path.join(FULL, "hf-naming"), "--precision", "bf16", *args, "-o", os.path.join(T, "b.npy"))
if "AVX512_BF16" in err:
    print("bf16: skipped (no AVX512_BF16)")
else:
    check(rc == 0, f"bf16: exit {rc}: {err}")
    if rc == 0:
        cos, mx = compare(np.load(os.path.join(T, "b.npy")), ref)
        check(cos >= 0.999, f"bf16 text: cosine {cos}")
        print(f"bf16: cosine {cos:.6f} to upstream fp32 (max-abs {mx:.2e})")

# 5. bad input: status, one line naming the problem, nothing written
bad_utf8 = os.path.join(T, "bad.txt")
open(bad_utf8, "wb").write(b"a photo of a \xff\xfe dog\n")
blank = os.path.join(T, "blank.txt")
open(blank, "wb").write(b"\n\r\n\n")
nul = os.path.join(T, "nul.txt")
open(nul, "wb").write(b"a\x00b\n")
M = os.path.join(FULL, "hf-naming")
cases = [
    ("no text tower", 1, "has no text tower", ["--model", os.path.join(REF, "models", "clip-f32-openai"), "--text", "x"]),
    ("images and texts", 2, "not both", ["--model", M, "--text", "x", os.path.join(REF, "data", "syn_33x17.png")]),
    ("patch tokens", 2, "--patch-tokens is for images", ["--model", M, "--text", "x", "--patch-tokens",
                                                           os.path.join(T, "p.npy")]),
    ("tokenizer without text", 2, "--tokenizer needs --text", ["--model", M, "--tokenizer", M,
                                                              os.path.join(REF, "data", "syn_33x17.png")]),
    ("missing text file", 1, "nowhere.txt", ["--model", M, "--text-file", os.path.join(T, "nowhere.txt")]),
    ("invalid UTF-8", 1, "bad.txt: line 1: text is not valid UTF-8", ["--model", M, "--text-file", bad_utf8]),
    ("only blank lines", 1, "no text given", ["--model", M, "--text-file", blank]),
    ("NUL byte", 1, "nul.txt: not a text file", ["--model", M, "--text-file", nul]),
    ("missing tokenizer", 1, "nowhere", ["--model", M, "--tokenizer", os.path.join(T, "nowhere"), "--text", "x"]),
]
import re
for what, code, msg, a in cases:
    out = os.path.join(T, "bad.npy")
    rc, err = run(*a, "-o", out)
    lines = [l for l in err.splitlines() if l]
    check(rc == code and len(lines) == 1 and re.search(msg, err) and not os.path.exists(out)
          and not os.path.exists(out + ".json"), f"{what}: exit {rc} (want {code}), stderr {err!r}")
left = [f for f in os.listdir(T) if ".tmp." in f]
check(not left, f"temporary files left: {left}")

subprocess.run(["rm", "-rf", T])
print(f"{passes} passed, {fails} failed")
sys.exit(1 if fails else 0)
