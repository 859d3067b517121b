#!/bin/sh
# wobble finetune end to end on tiny random models: outputs, reloading,
# reproducibility, a run killed with SIGKILL at a random step then resumed
# (bit-identical weights), and bad input (one-line error, exit 1, nothing
# half-written).
# usage: test_finetune.sh WOBBLE_BINARY REF_DIR
W="$1"
REF="$2"
T=$(mktemp -d "${TMPDIR:-/tmp}/wobble_ft_XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }

CLIP="$REF/models/clip-f32-openai"
DINO="$REF/models/dinov2-swiglu-reg-hf-bf16"
mkdir -p "$T/imgs" "$T/empty"
cp "$REF"/data/*.png "$T/imgs/"
N=$(ls "$T/imgs" | wc -l)

"$W" finetune --help >"$T/h"; check '[ $? -eq 0 ] && grep -q -- "--resume" "$T/h"' "finetune --help"

# --- a short run: the files, the log, reloading
"$W" finetune --model "$CLIP" --data "$T/imgs" --op jpeg:10-90 --op gaussian_blur:1,2 --steps 5 --batch 4 \
  --val 2 --val-every 2 --save-every 2 --threads 2 -o "$T/a" >"$T/a.out" 2>"$T/a.err"
check '[ $? -eq 0 ]' "short run exit 0 ($(cat "$T/a.err"))"
for f in model.safetensors config.json preprocessor_config.json finetune.json train_log.jsonl val.jsonl state/state.bin state/targets.npy; do
  check '[ -s "$T/a/$f" ]' "output $f"
done
check '[ $(wc -l <"$T/a/train_log.jsonl") -eq 5 ]' "5 log lines"
check 'grep -q "\"L_rob\"" "$T/a/train_log.jsonl" && grep -q "\"L_util\"" "$T/a/train_log.jsonl" && grep -q "\"grad_norm\"" "$T/a/train_log.jsonl" && grep -q "\"images_per_s\"" "$T/a/train_log.jsonl"' "log fields"
check '[ $(wc -l <"$T/a/val.jsonl") -eq 4 ]' "val lines at steps 0, 2, 4, 5"
check 'grep -q "\"jpeg\"" "$T/a/val.jsonl" && grep -q "\"gaussian_blur\"" "$T/a/val.jsonl"' "val per op"
check '! ls "$T/a" "$T/a/state" | grep -q "\.tmp\."' "no temp files left"
check 'cmp -s "$CLIP/config.json" "$T/a/config.json"' "config copied unchanged"
check 'grep -q "images/s" "$T/a.out"' "summary printed"
cpu=$(sed -n 's/.*"cpu_seconds_total": *\([0-9.e+-]*\).*/\1/p' "$T/a/finetune.json")
wall=$(sed -n 's/.*"seconds_total": *\([0-9.e+-]*\).*/\1/p' "$T/a/finetune.json")
check 'awk -v c="$cpu" -v w="$wall" "BEGIN { exit !(c > 0 && w > 0 && c < 3 * w) }"' "CPU time recorded (cpu $cpu s, wall $wall s, 2 threads)"
check 'grep -q "s of CPU over 2 threads" "$T/a.out"' "CPU time printed"
check '[ ! -s "$T/a.err" ]' "quiet when stderr is not a terminal"
"$W" info --model "$T/a" >"$T/info" 2>&1; check '[ $? -eq 0 ] && grep -q "openai" "$T/info"' "the result loads (openai naming)"
"$W" embed --model "$T/a" "$T/imgs" -o "$T/a_emb.npy" 2>/dev/null; check '[ $? -eq 0 ] && [ -s "$T/a_emb.npy" ]' "embed with the result"
"$W" embed --model "$CLIP" "$T/imgs" -o "$T/o_emb.npy" 2>/dev/null
check '! cmp -s "$T/a_emb.npy" "$T/o_emb.npy"' "the weights changed"

# same seed and threads: same bits; another seed: other bits
"$W" finetune --model "$CLIP" --data "$T/imgs" --op jpeg:10-90 --op gaussian_blur:1,2 --steps 5 --batch 4 \
  --val 2 --val-every 2 --save-every 2 --threads 2 -o "$T/a2" >/dev/null 2>&1
check 'cmp -s "$T/a/model.safetensors" "$T/a2/model.safetensors"' "reproducible: same weights"
"$W" finetune --model "$CLIP" --data "$T/imgs" --op jpeg:10-90 --op gaussian_blur:1,2 --steps 5 --batch 4 \
  --val 2 --val-every 2 --save-every 2 --threads 2 --seed 9 -o "$T/a3" >/dev/null 2>&1
check '! cmp -s "$T/a/model.safetensors" "$T/a3/model.safetensors"' "another seed: other weights"

# BF16 Hugging Face DINOv2 with registers: dtype and names kept
"$W" finetune --model "$DINO" --data "$T/imgs" --op jpeg --steps 2 --batch 2 --scope last:1 -o "$T/d" >/dev/null 2>&1
check '[ $? -eq 0 ] && [ $(stat -c %s "$T/d/model.safetensors") -eq $(stat -c %s "$DINO/model.safetensors") ]' "BF16 result has the input's size"
check 'head -c 4000 "$T/d/model.safetensors" | grep -q "BF16" && ! head -c 4000 "$T/d/model.safetensors" | grep -q "F32"' "BF16 kept"
"$W" finetune --model "$DINO" --data "$T/imgs" --op jpeg --steps 2 --batch 2 --scope norms --recompute -o "$T/dn" >/dev/null 2>&1
check '[ $? -eq 0 ]' "norms scope with recomputation"

# --- augmentation: K views per image (the image, then seeded crops), each with its frozen target
"$W" finetune --model "$CLIP" --data "$T/imgs" --op jpeg --steps 3 --batch 4 --views 3 --threads 2 -o "$T/v" >/dev/null 2>"$T/v.err"
check '[ $? -eq 0 ]' "--views 3 run exit 0 ($(cat "$T/v.err"))"
check 'grep -q "\"views\": 3" "$T/v/finetune.json"' "views recorded in the configuration"
"$W" embed --model "$CLIP" "$T/imgs" -o "$T/v_emb.npy" 2>/dev/null
/usr/bin/python3 - "$T/v/state/targets.npy" "$T/v_emb.npy" 3 "$T/imgs" >"$T/v.py" 2>&1 <<'PY'
import os
import sys
import numpy as np
from PIL import Image
t, e, K = np.load(sys.argv[1]), np.load(sys.argv[2]), int(sys.argv[3])
# a crop of a tiny image can be the whole image; views must differ on the others
big = np.array([min(Image.open(os.path.join(sys.argv[4], f)).size) >= 16 for f in sorted(os.listdir(sys.argv[4]))])
assert big.sum() >= 3, big
assert t.shape == (K * e.shape[0], e.shape[1]), (t.shape, e.shape)
d0 = float(np.abs(t[0::K] - e).max())
assert d0 < 1e-4, f"view 0 is not the image itself: {d0}"
u = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
for v in range(1, K):
    c = (u(t[v::K]) * u(e)).sum(1)[big]
    assert c.max() < 1 - 1e-6, f"view {v} equals the image for some image: {c}"
print("ok", d0)
PY
check 'grep -q "^ok" "$T/v.py"' "targets: n x views rows, view 0 = f(image), other views differ ($(cat "$T/v.py"))"
"$W" finetune --model "$CLIP" --data "$T/imgs" --op jpeg --views 0 -o "$T/v0" >/dev/null 2>"$T/e"; rc=$?
check '[ $rc -eq 2 ] && grep -q -- "--views" "$T/e" && [ ! -e "$T/v0" ]' "--views 0: a command-line error (exit $rc, '$(cat "$T/e")')"
"$W" finetune --resume "$T/v" --views 2 >/dev/null 2>"$T/e"; rc=$?
check '[ $rc -eq 1 ] && [ $(wc -l <"$T/e") -eq 1 ]' "resume with other views refused ($(cat "$T/e"))"

# --- killed with SIGKILL at a random step, then resumed: the same weights as uninterrupted
RUN="--model $DINO --data $T/imgs --op jpeg:5-95 --op hue --steps 30 --batch 8 --views 3 --save-every 1 --threads 2 --seed 3"
"$W" finetune $RUN -o "$T/full" >/dev/null 2>&1
R=$(( $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 20 + 3 ))
"$W" finetune $RUN -o "$T/k" >/dev/null 2>&1 &
PID=$!
i=0
while [ $i -lt 2000 ]; do
  n=$(cat "$T/k/train_log.jsonl" 2>/dev/null | wc -l)
  [ "$n" -ge "$R" ] && break
  kill -0 $PID 2>/dev/null || break
  sleep 0.01
  i=$((i + 1))
done
kill -9 $PID 2>/dev/null
wait $PID 2>/dev/null
killed_at=$(wc -l <"$T/k/train_log.jsonl")
echo "SIGKILL at step $killed_at of 30 (aimed at $R)"
check '[ ! -f "$T/k/model.safetensors" ]' "killed before the end (at step $killed_at, aimed at $R)"
"$W" finetune --resume "$T/k" --threads 2 >"$T/k.out" 2>"$T/k.err"
check '[ $? -eq 0 ]' "resume exit 0 ($(cat "$T/k.err"))"
check 'cmp -s "$T/full/model.safetensors" "$T/k/model.safetensors"' "killed at step $killed_at and resumed: bit-identical weights"
check '[ $(wc -l <"$T/k/train_log.jsonl") -eq 30 ]' "resumed log has 30 lines"
cut -d, -f1-6 "$T/full/train_log.jsonl" >"$T/l1"; cut -d, -f1-6 "$T/k/train_log.jsonl" >"$T/l2"
check 'cmp -s "$T/l1" "$T/l2"' "resumed log: same losses"

# --- bad input: one line, exit 1, nothing written
one_line() { # name, expected text, args...
  name=$1; want=$2; shift 2
  rm -rf "$T/bad"
  "$W" finetune "$@" >"$T/o" 2>"$T/e"; rc=$?
  check '[ $rc -eq 1 ] && [ $(wc -l <"$T/e") -eq 1 ] && grep -q "$want" "$T/e"' "$name: exit $rc, '$(cat "$T/e")'"
  check '[ ! -f "$T/bad/model.safetensors" ] && ! ls "$T/bad" 2>/dev/null | grep -q "\.tmp\."' "$name: nothing written"
}
H='{"foo.weight":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
printf "\\$(printf %03o ${#H})\\000\\000\\000\\000\\000\\000\\000%s\\000\\000\\000\\000" "$H" >"$T/notower.safetensors"
one_line "no image tower" "unknown architecture" --model "$T/notower.safetensors" --data "$T/imgs" --op jpeg -o "$T/bad"
one_line "not a checkpoint" "$T/imgs/syn_3x5.png" --model "$T/imgs/syn_3x5.png" --data "$T/imgs" --op jpeg -o "$T/bad"
one_line "empty dataset" "empty" --model "$CLIP" --data "$T/empty" --op jpeg -o "$T/bad"
one_line "lr 0" "learning rate" --model "$CLIP" --data "$T/imgs" --op jpeg --lr 0 -o "$T/bad"
one_line "lr -1" "learning rate" --model "$CLIP" --data "$T/imgs" --op jpeg --lr -1 -o "$T/bad"
one_line "steps 0" "steps 0" --model "$CLIP" --data "$T/imgs" --op jpeg --steps 0 -o "$T/bad"
one_line "batch 0" "batch 0" --model "$CLIP" --data "$T/imgs" --op jpeg --batch 0 -o "$T/bad"
one_line "lambda -1" "lambda" --model "$CLIP" --data "$T/imgs" --op jpeg --lambda -1 -o "$T/bad"
one_line "scope last:99" "has 2 blocks" --model "$CLIP" --data "$T/imgs" --op jpeg --scope last:99 -o "$T/bad"
"$W" finetune --model "$CLIP" --data "$T/imgs" --op jpeg --scope most -o "$T/bad" >"$T/o" 2>"$T/e"; rc=$?
check '[ $rc -eq 2 ] && [ $(wc -l <"$T/e") -eq 1 ] && grep -q "scope" "$T/e" && [ ! -e "$T/bad" ]' "scope bogus: a command-line error (exit 2), exit $rc, '$(cat "$T/e")'"
one_line "level outside the domain" "jpeg" --model "$CLIP" --data "$T/imgs" --op jpeg:0-200 -o "$T/bad"
one_line "val takes everything" "val $N" --model "$CLIP" --data "$T/imgs" --op jpeg --val "$N" -o "$T/bad"
one_line "resume nothing" "no fine-tuning run" --resume "$T/empty"
# a folder holding a run: refused without --resume, and for another model or setting
cp -r "$T/a" "$T/held"
for args in "--model $CLIP --data $T/imgs --op jpeg -o $T/held" "--resume $T/held --model $DINO" "--resume $T/held --seed 5" "--resume $T/held --lr 1e-3"; do
  "$W" finetune $args >"$T/o" 2>"$T/e"; rc=$?
  check '[ $rc -eq 1 ] && [ $(wc -l <"$T/e") -eq 1 ]' "refused: $args ($(cat "$T/e"))"
done
check 'cmp -s "$T/a/model.safetensors" "$T/held/model.safetensors" && cmp -s "$T/a/state/state.bin" "$T/held/state/state.bin"' "a refused run leaves the folder as it was"
"$W" finetune --resume "$T/held" >/dev/null 2>&1
check '[ $? -eq 0 ] && cmp -s "$T/a/model.safetensors" "$T/held/model.safetensors"' "resuming a finished run changes nothing"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
