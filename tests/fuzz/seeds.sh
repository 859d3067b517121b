#!/bin/sh
# Seed corpora for the fuzz harnesses, from the tests' own inputs
# (tests/ref) and from real runs of wobble on them.
# usage: tests/fuzz/seeds.sh WOBBLE OUT_DIR
set -eu
W=$1 OUT=$2
HERE=$(cd "$(dirname "$0")" && pwd)
REF=$HERE/../ref
mkdir -p "$OUT"
for h in image safetensors config tokenizer npy dataset opspec cache embeddings merge; do mkdir -p "$OUT/$h"; done
# images: the decoder goldens and the bad-input files of the io tests
for f in "$REF"/data/*.png "$REF"/data/io/* "$REF"/depth/*.png; do
    [ -f "$f" ] && [ "$(wc -c < "$f")" -le 200000 ] && cp "$f" "$OUT/image/"
done
# safetensors: the small reference towers
for d in "$REF"/models/*/; do
    f=$d/model.safetensors
    [ -f "$f" ] && [ "$(wc -c < "$f")" -le 300000 ] && cp "$f" "$OUT/safetensors/$(basename "$d").safetensors"
done
# and small files that keep the fuzzer fast (it runs with -max_len 8192):
# each dtype, empty and scalar shapes, metadata, NaN, unaligned offsets
python3 - "$OUT/safetensors" <<'PY'
import json, os, struct, sys
def write(name, tensors, meta=None, pad=0):
    hdr, blob = {}, b""
    if meta is not None: hdr["__metadata__"] = meta
    for n, dt, shape, data in tensors:
        hdr[n] = {"dtype": dt, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    h = json.dumps(hdr).encode() + b" " * pad
    open(os.path.join(sys.argv[1], name), "wb").write(struct.pack("<Q", len(h)) + h + blob)
f32 = lambda *v: struct.pack("<%df" % len(v), *v)
write("small-f32", [("a.weight", "F32", [2, 3], f32(1, 2, 3, 4, 5, 6)), ("a.bias", "F32", [3], f32(0, -1, 1))])
write("small-f16", [("w", "F16", [2, 2], struct.pack("<4e", 1, -2, 0.5, 65504))], {"format": "pt"})
write("small-bf16", [("w", "BF16", [4], bytes.fromhex("803f0040c0ff807f"))], pad=3)
write("small-mixed", [("s", "F32", [], f32(7)), ("e", "F32", [0, 4], b""), ("n", "F32", [2], f32(float("nan"), 1)),
                      ("i", "I64", [1], struct.pack("<q", 5)), ("u", "U8", [3], b"abc")])
PY
# configs: byte 0 = 0 config.json, 1 preprocessor_config.json
for d in "$REF"/models/*/; do
    n=$(basename "$d")
    [ -f "$d/config.json" ] && { printf '\000'; cat "$d/config.json"; } > "$OUT/config/$n.config"
    [ -f "$d/preprocessor_config.json" ] && { printf '\001'; cat "$d/preprocessor_config.json"; } > "$OUT/config/$n.pre"
done
# tokenizer: byte 0 = 0 vocab.json, 1 merges.txt, 2 tokenizer.json
{ printf '\000'; cat "$HERE/tokenizer/vocab.json"; } > "$OUT/tokenizer/vocab"
{ printf '\001'; cat "$HERE/tokenizer/merges.txt"; } > "$OUT/tokenizer/merges"
python3 - "$HERE/tokenizer" "$OUT/tokenizer/tokenizer_json" <<'PY'
import json, sys
d = sys.argv[1]
vocab = json.load(open(d + "/vocab.json", encoding="utf-8"))
merges = [l.rstrip("\n") for l in open(d + "/merges.txt", encoding="utf-8") if l.strip() and not l.startswith("#")]
with open(sys.argv[2], "wb") as f:
    f.write(b"\x02" + json.dumps({"model": {"type": "BPE", "vocab": vocab, "merges": merges}}, ensure_ascii=False).encode())
PY
# npy: the goldens' arrays
find "$REF" -name '*.npy' -size -64k | head -40 | while read -r f; do cp "$f" "$OUT/npy/$(echo "$f" | tr '/' '_')"; done
# datasets: byte 0 = 0 CIFAR records, 1 IDX (u32 LE image length, images, labels)
python3 - "$OUT/dataset" <<'PY'
import os, struct, sys
o = sys.argv[1]
rec = lambda lab, v: bytes([lab]) + bytes([(v + i) % 256 for i in range(3072)])
open(os.path.join(o, "cifar3"), "wb").write(b"\x00" + rec(0, 1) + rec(9, 2) + rec(3, 3))
imgs = struct.pack(">IIII", 0x803, 2, 4, 3) + bytes(range(24))
labs = struct.pack(">II", 0x801, 2) + bytes([1, 7])
open(os.path.join(o, "idx2"), "wb").write(b"\x01" + struct.pack("<I", len(imgs)) + imgs + labs)
PY
# --op specs from the CLI tests (byte 0: bit 0 allows ranges)
i=0
for s in jpeg jpeg:50 jpeg:90,70,50 jpeg:10-90 hue:-0.2-0.2 brightness:0.5,1.5 gaussian_noise:0.01,0.16 rescale:0.5 \
         contrast:0 saturation:1e-3 sharpness:2.5; do
    i=$((i + 1)); printf '\001%s' "$s" > "$OUT/opspec/$i"
done
# embedding folders: byte 0 picks the file (0 index.jsonl, 1 columns.json,
# 2 classes.json, 3 clean.npy, 4 perturbed.npy); valid variants of each
python3 - "$OUT/embeddings" <<'PY'
import json, os, struct, sys
o = sys.argv[1]
def w(name, k, b):
    open(os.path.join(o, name), "wb").write(bytes([k]) + b)
w("index", 0, b'{"id": "a", "label": 0, "split": "train"}\n{"id": "b", "label": 1, "split": "test"}\n{"id": "c"}\n')
w("index-plain", 0, b'{"id": "x"}\n\n{"id": "y", "label": -1}\r\n{"id": "z", "label": null}\n')
w("columns", 1, json.dumps([{"op": "brightness", "level": 0.5}, {"op": "gaussian_blur", "level": 2}]).encode())
w("classes", 2, json.dumps(["a", "b", "c"]).encode())
def npy(descr, shape, fmt, values):  # NumPy's .npy format 1.0, written by hand (no NumPy needed)
    h = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, "".join("%d, " % d for d in shape))
    h += " " * (63 - (10 + len(h)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() + struct.pack("<%d%s" % (len(values), fmt), *values)
w("clean64", 3, npy("<f8", (3, 4), "d", [float(i) for i in range(12)]))
w("pert", 4, npy("<f4", (3, 2, 4), "f", [1.0] * 24))
PY
# merge: byte 0 picks the file of the two hand-made shards the rest replaces
# (0-3: config.json, shard.json, summary.json, per_image.jsonl of shard 0;
# 4-7: of shard 1); the seeds are the valid files themselves
python3 - "$OUT/merge" <<'PY'
import json, os, sys
o = sys.argv[1]
lock = {"model_hash": "0123456789abcdef", "preprocessing_hash": "fedcba9876543210", "data": "d", "dataset_kind": "folder",
        "seed": 0, "ops": [{"op": "jpeg", "levels": [50.0, 10.0]}, {"op": "hue", "levels": [0.1]}], "shard": [1, 2]}
rec = {"image": "b.png", "image_hash": "00000000000000bb", "label": 2, "op": "hue", "levels": [0.1], "cos": [0.5],
       "euc": [0.6], "R_cos": 0.5, "R_euc": 0.6, "R_div": 0.6, "cos_mean": 0.5, "euc_mean": 0.6}
seeds = {"config": (4, json.dumps(lock)),
         "shard": (1, json.dumps({"shard": 0, "of": 2, "dataset_size": 3, "items": [[0, "a.png"], [2, "c.png"]]})),
         "summary": (2, json.dumps({"model": {"path": "m"}, "dataset": {"failed": [{"image": "c.png", "error": "x"}]}})),
         "records": (7, json.dumps(dict(rec, op="jpeg", levels=[50.0, 10.0], cos=[0.1, 0.2], euc=[0.3, 0.4])) + "\n" +
                     json.dumps(rec) + "\n")}
for name, (k, text) in seeds.items():
    open(os.path.join(o, name), "wb").write(bytes([k]) + text.encode())
PY
# eval cache: the records of a real run on a tiny image
T=$(mktemp -d)
"$W" eval --model "$REF/models/clip-f32-openai" --data "$REF/data/tiny_10x7.png" --op jpeg:50,90 --op hue:0.1 \
    -o "$T/ev" >/dev/null 2>&1 || true
for f in "$T"/ev/cache/*.bin; do [ -f "$f" ] && cp "$f" "$OUT/cache/"; done
rm -rf "$T"
for h in image safetensors config tokenizer npy dataset opspec cache embeddings merge; do
    printf '%-12s %3d seeds\n' "$h" "$(ls "$OUT/$h" | wc -l)"
done
