#!/bin/sh
# wobble eval --task depth end to end on ICL-NUIM frames with a tiny
# DINOv2: the three outputs, one per-image record per (image, op), a
# byte-identical rerun, and bad input (one line naming the file, exit
# status 1, or 2 for a bad command line; no output written).
# usage: test_depth_cli.sh WOBBLE_BINARY REF_DIR SHARED_DIR
W="$1"
REF="$2"
ICL="$3/data/icl-nuim-livingroom1"
[ -d "$ICL/image" ] || { echo "SKIP: $ICL not found (set WOBBLE_SHARED)"; exit 77; }
PY=/usr/bin/python3
T=$(mktemp -d "${TMPDIR:-/tmp}/wobble_depth_XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
check() { if eval "$1"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $2" >&2; fi; }
M="$REF/models/dinov2-swiglu-reg-hf-bf16"
run() { "$W" eval --task depth --model "$M" --train "$ICL" --train-frames 0-7 --data "$ICL" --frames 200-202 \
  --op jpeg:30 --op gaussian_blur:2 --steps 15 --threads 2 --seed 3 "$@"; }

run -o "$T/a" >"$T/a.out" 2>"$T/a.err"
check '[ $? -eq 0 ]' "depth run exit 0 ($(cat "$T/a.err"))"
for f in depth.json depth.csv depth_per_image.jsonl run.json; do check '[ -s "$T/a/$f" ]' "output $f"; done
check '[ "$(wc -l <"$T/a/depth_per_image.jsonl")" -eq 6 ]' "one record per (image, op): $(wc -l <"$T/a/depth_per_image.jsonl")"
check 'grep -q "\"baseline_mean_depth_median_scaled\"" "$T/a/depth.json"' "baselines in depth.json"
check 'grep -q "\"leave_one_op_out\"" "$T/a/depth.json"' "leave-one-op-out in depth.json"
check 'grep -q "^gaussian_blur,2,abs_rel," "$T/a/depth.csv"' "depth.csv rows"
check 'grep -q "clean: AbsRel" "$T/a.out"' "summary printed"
run -o "$T/b" >/dev/null 2>&1
check 'cmp -s "$T/a/depth.json" "$T/b/depth.json" && cmp -s "$T/a/depth_per_image.jsonl" "$T/b/depth_per_image.jsonl"' \
  "a rerun writes the same bytes"

# resume: a rerun reads everything back; a run missing one test image's
# state computes only that one; both write the same bytes; another setting
# in the same folder is refused
cp "$T/a/depth.json" "$T/a.json"
run -o "$T/a" >"$T/r.out" 2>&1
check 'grep -q "resumed from .*: the trained head, 3 of 3 test images" "$T/r.out" && cmp -s "$T/a/depth.json" "$T/a.json"' \
  "a finished run resumes whole ($(cat "$T/r.out" | tail -1))"
cp -r "$T/a" "$T/c"
rm "$T/c/depth.json" "$T/c/depth_per_image.jsonl" "$T/c/depth-state/test-00001.bin"
run -o "$T/c" >"$T/c.out" 2>&1
check 'grep -q "the trained head, 2 of 3 test images" "$T/c.out" && cmp -s "$T/c/depth.json" "$T/a.json" && cmp -s "$T/c/depth_per_image.jsonl" "$T/a/depth_per_image.jsonl"' \
  "an interrupted run resumes to the same bytes ($(tail -1 "$T/c.out"))"
run --steps 16 -o "$T/a" >/dev/null 2>"$T/x.err"
check '[ $? -eq 1 ] && grep -q "holds a depth run of another model, data or probe setting" "$T/x.err"' \
  "another setting in the folder refused ($(cat "$T/x.err"))"

# --layers 4 on the real ViT-Ti/16 (12 blocks): blocks 2, 5, 8, 11
VIT="$3/models/vit-tiny-patch16-224-tin"
if [ -d "$VIT" ]; then
  "$W" eval --task depth --model "$VIT" --train "$ICL" --train-frames 0-3 --data "$ICL" --frames 200-201 --op jpeg:30 \
    --steps 5 --layers 4 --threads 2 --no-report -o "$T/l4" >/dev/null 2>"$T/l4.err"
  check '[ $? -eq 0 ]' "--layers 4 run ($(cat "$T/l4.err"))"
  check 'tr -d " \n" <"$T/l4/depth.json" | grep -q "\"blocks\":\[2,5,8,11\]"' "--layers 4 reads blocks 2, 5, 8, 11"
  check 'tr -d " \n" <"$T/l4/depth.json" | grep -q "\"feature_channels\":1536"' "--layers 4: 8 x 192 channels"
fi

# bad input
mk() { # mk NAME: a depth folder with one good pair
  mkdir -p "$T/$1/image" "$T/$1/depth"
  cp "$ICL/image/00000.jpg" "$T/$1/image/a.jpg"
  cp "$ICL/depth/00000.png" "$T/$1/depth/a.png"
}
bad() { # bad LABEL CODE PATTERN ARGS...: one line with PATTERN, exit CODE, no output
  label=$1 code=$2 pat=$3
  shift 3
  rm -rf "$T/out"
  "$W" eval --task depth --model "$M" --steps 2 "$@" -o "$T/out" >/dev/null 2>"$T/err"
  rc=$?
  check '[ $rc -eq $code ]' "$label: exit $rc, expected $code ($(cat "$T/err"))"
  check '[ "$(wc -l <"$T/err")" -eq 1 ] && grep -q -- "$pat" "$T/err"' "$label: one line with '$pat': $(cat "$T/err")"
  check '[ ! -e "$T/out/depth.json" ] && [ ! -e "$T/out/depth_per_image.jsonl" ]' "$label: no output"
}
mk missing
cp "$ICL/image/00001.jpg" "$T/missing/image/b.jpg"
bad "missing depth map" 1 "$T/missing/depth/b.png: missing (the depth map of" --train "$T/missing" --data "$ICL" --frames 0-1
mk size
cp "$REF/depth/depth16.png" "$T/size/depth/a.png"
bad "depth size differs" 1 "$T/size/depth/a.png: depth map is 7x5, its image" --train "$T/size" --data "$T/size"
mk bits
cp "$REF/data/photo_96x80.png" "$T/bits/depth/a.png"
bad "8-bit depth map" 1 "$T/bits/depth/a.png: not a 16-bit grayscale PNG" --train "$T/bits" --data "$T/bits"
mk zero
$PY -c "import numpy as np; from PIL import Image; Image.fromarray(np.zeros((480, 640), np.uint16), mode='I;16').save('$T/zero/depth/a.png')" 2>/dev/null
bad "no valid depth pixel" 1 "$T/zero/depth/a.png: no valid depth pixel" --train "$T/zero" --data "$T/zero"
bad "d-min above d-max" 2 "--d-min 5 must be below --d-max 1" --train "$ICL" --data "$ICL" --d-min 5 --d-max 1
bad "frames out of range" 1 "frames 300-310 asked, the set has 211" --train "$ICL" --data "$ICL" --frames 300-310
bad "not a depth folder" 1 "$REF/data: not a depth data folder" --train "$REF/data" --data "$ICL"
bad "four blocks of a 2-block model" 1 "4 blocks read out, the model has 2" --train "$ICL" --train-frames 0-1 --data "$ICL" --frames 2-3 --layers 4
bad "layers 3" 2 "--layers '3' is not 1 or 4" --train "$ICL" --data "$ICL" --layers 3
bad "bad frame range" 2 "--frames '9-3' is not a frame range" --train "$ICL" --data "$ICL" --frames 9-3
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
