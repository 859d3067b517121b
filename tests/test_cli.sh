#!/bin/sh
# End-to-end tests of the wobble CLI: output files, exit codes, messages.
# usage: test_cli.sh WOBBLE_BINARY REF_DIR
W="$1"
REF="$2"
T=$(mktemp -d /tmp/wobble_cli_XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }

IMG="$REF/data/syn_33x17.png"
GRAY="$REF/data/syn_gray_33x17.png"

"$W" --help >"$T/h" 2>&1; check '[ $? -eq 0 ] && grep -q perturb "$T/h"' "wobble --help"
"$W" bogus >"$T/o" 2>"$T/e"; check '[ $? -eq 2 ] && grep -q "unknown command" "$T/e"' "unknown command -> 2"
"$W" version | grep -q '^wobble [0-9]'; check '[ $? -eq 0 ]' "version"

"$W" ops >"$T/ops"; check '[ $? -eq 0 ]' "ops exit 0"
for op in jpeg brightness contrast saturation sharpness hue gaussian_blur gaussian_noise rescale; do
  check 'grep -q "^$op " "$T/ops"' "ops lists $op"
done
"$W" ops --json >"$T/ops.json"; check '[ $? -eq 0 ] && grep -q "\"name\": \"gaussian_noise\"" "$T/ops.json"' "ops --json"
"$W" ops --help >/dev/null; check '[ $? -eq 0 ]' "ops --help"
"$W" perturb --help >"$T/ph"; check '[ $? -eq 0 ] && grep -q -- "--levels" "$T/ph"' "perturb --help"

# single file
"$W" perturb --op jpeg --level 30 "$IMG" "$T/one.png"; check '[ $? -eq 0 ] && [ -s "$T/one.png" ]' "single output"
check '! ls "$T"/*.tmp.* >/dev/null 2>&1' "no temp files left"
# several levels -> folder, one file per level
"$W" perturb --op brightness --levels 0.5,0.75,1.5 "$IMG" "$T/lv"; check '[ $? -eq 0 ]' "levels exit 0"
check '[ -f "$T/lv/syn_33x17__brightness-0.5.png" ] && [ -f "$T/lv/syn_33x17__brightness-1.5.png" ]' "level files"
check '[ $(ls "$T/lv" | wc -l) -eq 3 ]' "three files"
# wobble's own PNG writer: Pillow (libpng underneath) reads the pixels wobble computed
"$W" perturb --op brightness --level 1 "$IMG" "$T/id.png"
check '/usr/bin/python3 -c "
import sys
from PIL import Image
a = Image.open(sys.argv[1]); b = Image.open(sys.argv[2]).convert(\"RGB\")
a.load()
sys.exit(0 if a.mode == \"RGB\" and a.tobytes() == b.tobytes() else 1)" "$T/id.png" "$IMG"' "Pillow reads wobble PNG"
# --png-level: other bytes, the same pixels (Pillow reads both); outside 0..12 -> 2
for L in 0 1 12; do
  "$W" perturb --op brightness --level 1 --png-level $L "$IMG" "$T/pl$L.png"
  check '[ $? -eq 0 ] && /usr/bin/python3 -c "
import sys
from PIL import Image
a = Image.open(sys.argv[1]); b = Image.open(sys.argv[2])
sys.exit(0 if a.tobytes() == b.tobytes() else 1)" "$T/pl$L.png" "$T/id.png"' "--png-level $L: the same pixels"
done
"$W" perturb --op brightness --level 1 --png-level 0 "$REF/data/syn_64x48.png" "$T/g0.png"
"$W" perturb --op brightness --level 1 --png-level 12 "$REF/data/syn_64x48.png" "$T/g12.png"
check '[ $(stat -c %s "$T/g0.png") -gt $(( 2 * $(stat -c %s "$T/g12.png") )) ]' "--png-level 0 stores, 12 compresses"
"$W" perturb --op brightness --level 1 --png-level 13 "$IMG" "$T/pl13.png" 2>"$T/e"
check '[ $? -eq 2 ] && [ ! -e "$T/pl13.png" ] && grep -q "png-level" "$T/e"' "--png-level 13 -> 2, nothing written"
# default grid
"$W" perturb --op hue "$IMG" "$T/grid"; check '[ $? -eq 0 ] && [ $(ls "$T/grid" | wc -l) -eq 5 ]' "default grid: 5 files"
# several inputs and a folder (recursive, relative paths kept)
mkdir -p "$T/in/sub"
cp "$IMG" "$T/in/a.png"; cp "$GRAY" "$T/in/sub/b.png"; echo text >"$T/in/notes.txt"
"$W" perturb --op rescale --level 0.5 "$T/in" "$T/fo"; check '[ $? -eq 0 ]' "folder exit 0"
check '[ -f "$T/fo/a__rescale-0.5.png" ] && [ -f "$T/fo/sub/b__rescale-0.5.png" ]' "folder outputs"
"$W" perturb --op gaussian_noise --level 0.1 --seed 3 --format jpg "$IMG" "$GRAY" "$T/multi"
check '[ $? -eq 0 ] && [ -f "$T/multi/syn_33x17__gaussian_noise-0.1.jpg" ] && [ -f "$T/multi/syn_gray_33x17__gaussian_noise-0.1.jpg" ]' "two inputs, jpg"
# noise is reproducible from the seed
"$W" perturb --op gaussian_noise --level 0.1 --seed 3 "$IMG" "$T/n1.png"
"$W" perturb --op gaussian_noise --level 0.1 --seed 3 "$IMG" "$T/n2.png"
"$W" perturb --op gaussian_noise --level 0.1 --seed 4 "$IMG" "$T/n3.png"
check 'cmp -s "$T/n1.png" "$T/n2.png"' "same seed, same file"
check '! cmp -s "$T/n1.png" "$T/n3.png"' "other seed, other file"

# usage errors: exit 2, nothing written, a clear message
"$W" perturb --op jpeg --level 0 "$IMG" "$T/x.png" 2>"$T/e"; rc=$?
check '[ $rc -eq 2 ] && [ ! -e "$T/x.png" ]' "bad level -> 2, nothing written"
check 'grep -q "jpeg: quality 0 is outside the domain \[1, 100\]" "$T/e"' "domain message: $(cat "$T/e")"
"$W" perturb --op jpeg --levels 50,abc "$IMG" "$T/x" 2>"$T/e"; check '[ $? -eq 2 ] && grep -q "bad level list" "$T/e"' "bad list"
"$W" perturb --op sepia --level 1 "$IMG" "$T/x.png" 2>"$T/e"; check '[ $? -eq 2 ] && grep -q "unknown operation .sepia." "$T/e"' "unknown op"
"$W" perturb --level 1 "$IMG" "$T/x.png" 2>"$T/e"; check '[ $? -eq 2 ] && grep -q -- "--op is required" "$T/e"' "missing --op"
"$W" perturb --op jpeg --level 50 "$IMG" 2>"$T/e"; check '[ $? -eq 2 ]' "missing OUT"
"$W" perturb --op jpeg --level 50 --threads 0 "$IMG" "$T/x.png" 2>"$T/e"; check '[ $? -eq 2 ]' "bad threads"

"$W" perturb --op jpeg --levels 50,60 "$IMG" "$T/two.png" 2>"$T/e"
check '[ $? -eq 2 ] && grep -q "names an image file but 2 outputs" "$T/e" && [ ! -e "$T/two.png" ]' "file OUT with 2 outputs"

# bad inputs: reported with the file name, the others still written, exit 1
mkdir -p "$T/mixed"
cp "$IMG" "$T/mixed/good.png"
head -c 100 "$IMG" >"$T/mixed/trunc.png"
: >"$T/mixed/empty.jpg"
"$W" perturb --op contrast --level 0.5 "$T/mixed" "$T/missing.png" "$T/mo" 2>"$T/e"; rc=$?
check '[ $rc -eq 1 ]' "bad inputs -> exit 1 (got $rc)"
check '[ -f "$T/mo/good__contrast-0.5.png" ]' "good input still written"
check 'grep -q "trunc.png: truncated PNG" "$T/e"' "truncated reported: $(cat "$T/e")"
check 'grep -q "empty.jpg: empty file" "$T/e"' "empty reported"
check 'grep -q "missing.png: cannot open" "$T/e"' "missing reported"
check '[ $(ls "$T/mo" | wc -l) -eq 1 ]' "no partial outputs"
# pixel limit
"$W" perturb --op jpeg --level 50 --max-pixels 100 "$IMG" "$T/lim.png" 2>"$T/e"
check '[ $? -eq 1 ] && grep -q "over the limit of 100" "$T/e" && [ ! -e "$T/lim.png" ]' "pixel limit"
# unwritable output
"$W" perturb --op jpeg --level 50 "$IMG" "/nonexistent_dir_wobble/x.png" 2>"$T/e"
check '[ $? -eq 1 ] && grep -q "nonexistent_dir_wobble/x.png" "$T/e"' "unwritable output"

# encoders: info and embed
M="$REF/models/clip-f32-openai"
"$W" info --model "$M" >"$T/info"; check '[ $? -eq 0 ] && grep -q "clip image tower (openai tensor names)" "$T/info"' "info"
"$W" info --model "$M" --json | grep -q '"embed_dim": 24'; check '[ $? -eq 0 ]' "info --json"
"$W" info --model "$T/nowhere" 2>"$T/e"; check '[ $? -eq 1 ] && grep -q "nowhere: cannot open" "$T/e"' "info on a missing model"
"$W" info 2>"$T/e"; check '[ $? -eq 2 ]' "info without --model"
"$W" embed --model "$M" "$REF/data/syn_33x17.png" "$REF/data/photo_96x80.png" -o "$T/e.npy"
check '[ $? -eq 0 ] && [ -s "$T/e.npy" ] && grep -q "\"rows\": 2" "$T/e.npy.json"' "embed two images"
check '[ $(head -c 6 "$T/e.npy" | tail -c 5) = "NUMPY" ]' "npy magic"
"$W" embed --model "$M" --normalize --batch 1 "$T/mixed" -o "$T/m.npy" 2>"$T/e"; rc=$?
check '[ $rc -eq 1 ] && grep -q "\"rows\": 1" "$T/m.npy.json" && grep -q "trunc.png" "$T/m.npy.json"' "embed skips bad images (rc $rc)"
"$W" embed --model "$M" "$T/mixed/trunc.png" -o "$T/none.npy" 2>"$T/e"
check '[ $? -eq 1 ] && [ ! -e "$T/none.npy" ] && grep -q "nothing written" "$T/e"' "embed with no readable image"
"$W" embed --model "$M" -o "$T/x.npy" 2>"$T/e"; check '[ $? -eq 2 ]' "embed without inputs"
"$W" embed --model "$M" --patch-tokens "$T/p.npy" "$REF/data/syn_33x17.png" -o "$T/q.npy"
check '[ $? -eq 0 ] && [ -s "$T/p.npy" ]' "patch tokens"
# OpenBLAS is loaded on first use: perturb never needs it; without it an
# encoder run is a one-line error naming the library, and writes nothing
WOBBLE_OPENBLAS_LIB="$T/no-libopenblas.so" "$W" perturb --op jpeg --level 30 "$IMG" "$T/nb.png"
check '[ $? -eq 0 ] && [ -s "$T/nb.png" ]' "perturb without OpenBLAS"
WOBBLE_OPENBLAS_LIB="$T/no-libopenblas.so" "$W" embed --model "$M" "$IMG" -o "$T/nb.npy" 2>"$T/e"
check '[ $? -eq 1 ] && [ ! -e "$T/nb.npy" ] && grep -q "cannot load OpenBLAS: .*no-libopenblas.so" "$T/e" && [ $(wc -l <"$T/e") -le 2 ]' "embed without OpenBLAS: $(cat "$T/e")"

# eval
mkdir -p "$T/evdata" && cp "$IMG" "$REF/data/photo_96x80.png" "$T/evdata/"
"$W" eval --model "$M" --data "$T/evdata" --op jpeg:50,20 --op hue -o "$T/ev" >"$T/evout" 2>"$T/e"
check '[ $? -eq 0 ] && grep -q "^jpeg " "$T/evout" && grep -q "^hue " "$T/evout"' "eval prints a table"
check '[ $(wc -l < "$T/ev/per_image.jsonl") -eq 4 ] && [ -s "$T/ev/summary.csv" ] && [ -s "$T/ev/summary.json" ]' "eval outputs"
"$W" eval --model "$M" --data "$T/evdata" --op jpeg:50,20 --op hue -o "$T/ev" >/dev/null 2>"$T/e"
check 'grep -q "0 embeddings computed, 2 images from the cache" "$T/e"' "eval re-run uses the cache: $(cat "$T/e")"
"$W" eval --model "$M" --data "$T/evdata" --op sepia -o "$T/ev2" 2>"$T/e"; check '[ $? -eq 2 ] && grep -q "unknown operation" "$T/e"' "eval unknown op"
"$W" eval --model "$M" --data "$T/evdata" --op jpeg:50,x -o "$T/ev2" 2>"$T/e"; check '[ $? -eq 2 ] && grep -q "bad level list" "$T/e"' "eval bad levels"
"$W" eval --model "$M" --data "$T/evdata" --op jpeg:0 -o "$T/ev2" 2>"$T/e"; check '[ $? -eq 2 ] && grep -q "outside the domain" "$T/e"' "eval level domain"
"$W" eval --model "$M" --data "$T/evdata" --op jpeg:30 -o "$T/ev" 2>"$T/e"; check '[ $? -eq 1 ] && grep -q "use another output folder" "$T/e"' "eval other config"
# --precision
"$W" embed --model "$M" --precision fp16 "$IMG" -o "$T/pr.npy" 2>"$T/e"; check '[ $? -eq 2 ] && grep -q "neither fp32 nor bf16" "$T/e"' "embed bad precision"
"$W" embed --model "$M" --precision bf16 "$IMG" -o "$T/b16.npy" 2>"$T/e"; rc=$?
WOBBLE_NO_BF16=1 "$W" embed --model "$M" --precision bf16 "$IMG" -o "$T/nb.npy" 2>"$T/e2"
check '[ $? -eq 2 ] && grep -q "needs a CPU with AVX512_BF16, which this one lacks; use fp32" "$T/e2" && [ ! -e "$T/nb.npy" ]' "bf16 on a CPU without AVX512_BF16 (WOBBLE_NO_BF16): one-line usage error"
WOBBLE_NO_BF16=1 "$W" eval --model "$M" --data "$T/evdata" --op jpeg:50 --precision bf16 -o "$T/evnb" 2>"$T/e2"
check '[ $? -eq 2 ] && grep -q "AVX512_BF16" "$T/e2" && [ ! -e "$T/evnb" ]' "eval bf16 without AVX512_BF16: refused before any output"
if [ $rc -eq 2 ] && grep -q "lacks" "$T/e"; then
  echo "bf16 CLI checks skipped: this CPU has no AVX512_BF16"
else
  check '[ $rc -eq 0 ] && grep -q "\"precision\": \"bf16\"" "$T/b16.npy.json"' "embed --precision bf16 (rc $rc)"
  "$W" eval --model "$M" --data "$T/evdata" --op jpeg:50,20 --op hue --precision bf16 -o "$T/ev" 2>"$T/e"
  check '[ $? -eq 1 ] && grep -q "another precision" "$T/e"' "an fp32 eval folder is refused in bf16"
  "$W" eval --model "$M" --data "$T/evdata" --op jpeg:50 --precision bf16 -o "$T/evb" >/dev/null 2>"$T/e"
  check '[ $? -eq 0 ] && grep -q "\"precision\": \"bf16\"" "$T/evb/config.json" && grep -q "\"precision\": \"bf16\"" "$T/evb/summary.json"' "eval --precision bf16 records it"
  "$W" eval --model "$M" --data "$T/evdata" --op jpeg:50 -o "$T/evb" 2>"$T/e"
  check '[ $? -eq 1 ] && grep -q "another precision" "$T/e"' "a bf16 eval folder is refused in fp32"
fi
"$W" eval --model "$M" --data "$T/nothing" -o "$T/ev3" 2>"$T/e"; check '[ $? -eq 1 ] && grep -q "nothing: cannot open" "$T/e"' "eval missing data"
"$W" eval --model "$M" --data "$T/mixed" --op jpeg:50 -o "$T/ev4" >/dev/null 2>"$T/e"; rc=$?
check '[ $rc -eq 1 ] && grep -q "trunc.png: truncated PNG.*(skipped)" "$T/e" && grep -q "\"failed_count\": 2" "$T/ev4/summary.json"' "eval skips and counts bad images (rc $rc)"

# eval --task
mkdir -p "$T/tr/a" "$T/tr/b" "$T/te/a" "$T/te/b" "$T/te3/a" "$T/te3/c"
cp "$IMG" "$T/tr/a/1.png"; cp "$REF/data/syn_33x17.png" "$T/tr/a/2.png"
cp "$REF/data/photo_96x80.png" "$T/tr/b/1.png"; cp "$REF/data/syn_64x48.png" "$T/tr/b/2.png"
cp "$IMG" "$T/te/a/"; cp "$REF/data/photo_96x80.png" "$T/te/b/"; cp "$IMG" "$T/te3/a/"; cp "$IMG" "$T/te3/c/"
"$W" eval --task linear --model "$M" --train "$T/tr" --data "$T/te" --op jpeg:50 --op hue:0.2 -o "$T/dl" >"$T/out" 2>"$T/e"
check '[ $? -eq 0 ] && grep -q "linear task on" "$T/out" && grep -q "^jpeg " "$T/out" && grep -q "R_div: slope" "$T/out"' "eval --task linear prints accuracy and fits: $(cat "$T/e")"
check '[ -s "$T/dl/downstream.json" ] && head -1 "$T/dl/downstream.csv" | grep -q "^section,op,level,metric,value$" && [ $(wc -l < "$T/dl/downstream_per_image.jsonl") -eq 4 ] && [ -s "$T/dl/train/config.json" ]' "eval --task outputs"
"$W" eval --task knn --k 3 --model "$M" --train "$T/tr" --data "$T/te" --op jpeg:50 -o "$T/dk" >/dev/null 2>"$T/e"
check '[ $? -eq 0 ] && grep -q "\"k\": 3" "$T/dk/downstream.json"' "eval --task knn"
"$W" eval --task svm --model "$M" --train "$T/tr" --data "$T/te" -o "$T/dx" 2>"$T/e"; check '[ $? -eq 2 ] && grep -q "not linear, knn, zeroshot or depth" "$T/e"' "unknown task"
"$W" eval --task linear --model "$M" --data "$T/te" -o "$T/dx" 2>"$T/e"; check '[ $? -eq 2 ] && grep -q "needs --train" "$T/e"' "linear without --train"
"$W" eval --model "$M" --train "$T/tr" --data "$T/te" -o "$T/dx" 2>"$T/e"; check '[ $? -eq 2 ] && grep -q "need --task" "$T/e"' "--train without --task"
"$W" eval --task linear --model "$M" --train "$T/tr" --data "$T/te3" --op jpeg:50 -o "$T/dx" 2>"$T/e"; check '[ $? -eq 1 ] && grep -q "test label .c. (1 images) does not occur in the training set" "$T/e" && [ ! -e "$T/dx/downstream.json" ]' "unseen test label: $(cat "$T/e")"
"$W" eval --task zeroshot --model "$M" --data "$T/te" --op jpeg:50 -o "$T/dx" 2>"$T/e"; check '[ $? -eq 1 ] && grep -q "needs a whole CLIP checkpoint" "$T/e"' "zero-shot on an image tower: $(cat "$T/e")"
"$W" eval --task linear --l2 0,1 --model "$M" --train "$T/tr" --data "$T/te" --op jpeg:50 -o "$T/dx" 2>"$T/e"; check '[ $? -eq 1 ] && grep -q "L2 strength 0 is not a positive number" "$T/e"' "bad --l2: $(cat "$T/e")"

# ImageNet-C (docs/imagenet-c.md)
P96="$REF/data/photo_96x80.png"
check 'grep -q "^imagenet_c.glass_blur  *severity" "$T/ops" && grep -q "per severity 1-5: (sigma, d, n)" "$T/ops" && grep -q "^imagenet_c.frost photos: .*frost" "$T/ops"' "ops lists the corruptions, their constants and the frost folder"
check '[ $(grep -c "\"suite\": \"imagenet-c\"" "$T/ops.json") -eq 15 ] && [ $(grep -c "\"suite\": \"imagenet-c-validation\"" "$T/ops.json") -eq 4 ]' "ops --json: 15 standard + 4 validation"
"$W" perturb --op imagenet_c.shot_noise --level 2 --seed 7 "$P96" "$T/ic1.png" && "$W" perturb --op imagenet_c.shot_noise --level 2 --seed 7 "$P96" "$T/ic2.png" && "$W" perturb --op imagenet_c.shot_noise --level 2 --seed 8 "$P96" "$T/ic3.png"
check 'cmp -s "$T/ic1.png" "$T/ic2.png" && ! cmp -s "$T/ic1.png" "$T/ic3.png"' "imagenet_c: the same seed repeats, another differs"
mkdir -p "$T/icin/sub"; cp "$P96" "$T/icin/a.png"; cp "$REF/data/syn_64x48.png" "$T/icin/sub/b.png"
"$W" perturb --suite imagenet-c --levels 1,5 --threads 2 "$T/icin" "$T/icout" 2>"$T/e"
check '[ $? -eq 0 ] && [ $(find "$T/icout" -type f | wc -l) -eq 60 ] && [ -s "$T/icout/frost/5/sub/b.png" ] && [ -s "$T/icout/jpeg_compression/1/a.png" ] && [ ! -e "$T/icout/spatter" ]' "perturb --suite imagenet-c: ImageNet-C layout, 15 x 2 x 2 files: $(cat "$T/e")"
"$W" perturb --suite imagenet-c-all --levels 3 --threads 1 "$T/icin" "$T/icout1" 2>/dev/null
"$W" perturb --suite imagenet-c-all --levels 3 --threads 3 "$T/icin" "$T/icout3" 2>/dev/null
check '[ $(find "$T/icout1" -type f | wc -l) -eq 38 ] && diff -r "$T/icout1" "$T/icout3" >/dev/null' "perturb --suite imagenet-c-all: 19 corruptions, the same files at 1 and 3 threads"
check '! cmp -s "$T/icout1/gaussian_noise/3/a.png" "$T/ic1.png"' "suite mode draws per-image streams"
"$W" perturb --suite imagenet-c --levels 2 --imagenet-pipeline "$P96" "$T/icpipe" 2>"$T/e"
check '[ $? -eq 0 ] && [ -s "$T/icpipe/fog/2/photo_96x80.jpg" ] && [ $(find "$T/icpipe" -name "*.jpg" | wc -l) -eq 15 ]' "perturb --imagenet-pipeline writes JPEGs: $(cat "$T/e")"
mkdir -p "$T/ictr/a" "$T/ictr/b" "$T/icte/a" "$T/icte/b"
cp "$P96" "$T/ictr/a/1.png"; cp "$REF/data/syn_64x48.png" "$T/ictr/b/1.png"; cp "$T/icout/contrast/1/a.png" "$T/ictr/a/2.png"; cp "$T/icout/contrast/1/sub/b.png" "$T/ictr/b/2.png"; cp "$P96" "$T/icte/a/1.png"; cp "$REF/data/syn_64x48.png" "$T/icte/b/1.png"
"$W" eval --task linear --model "$M" --train "$T/ictr" --data "$T/icte" --suite imagenet-c -o "$T/icev" >"$T/out" 2>"$T/e"
check '[ $? -eq 0 ] && grep -q "ImageNet-C: mean top-1 .* over 75 (corruption, severity) pairs; mCE" "$T/out"' "eval --suite imagenet-c prints the mean and mCE: $(cat "$T/e")"
python3 - "$T/icev/downstream.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
ic = d["imagenet_c"]
alex = {"gaussian_noise": .886428, "shot_noise": .894468, "impulse_noise": .922640, "defocus_blur": .819880,
        "glass_blur": .826268, "motion_blur": .785948, "zoom_blur": .798360, "snow": .866816, "frost": .826572,
        "fog": .819324, "brightness": .564592, "contrast": .853204, "elastic_transform": .646056, "pixelate": .717840,
        "jpeg_compression": .606500}
acc = {o["op"][len("imagenet_c."):]: [l["top1"] for l in o["per_level"]] for o in d["ops"]}
ces = []
for c in ic["corruptions"]:
    err = [1 - a for a in acc[c["corruption"]]]
    assert all(abs(e - f) < 1e-12 for e, f in zip(err, c["top1_error"])), c
    ce = sum(err) / (5 * alex[c["corruption"]])
    assert abs(ce - c["CE"]) < 1e-12, (c, ce)
    ces.append(ce)
assert len(ces) == 15 and ic["CE_count"] == 15
assert abs(sum(ces) / 15 - ic["mCE"]) < 1e-12
assert abs(sum(sum(v) for v in acc.values()) / 75 - ic["mean_top1"]) < 1e-12 and ic["mean_top1_pairs"] == 75
PY
check '[ $? -eq 0 ]' "downstream.json: CE = sum of errors / AlexNet's, mCE their mean, the mean over 75 pairs"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
