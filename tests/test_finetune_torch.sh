#!/bin/sh
# Plain PyTorch loads what wobble finetune writes and reproduces wobble embed
# on it (tests/ref/check_finetuned.py). Skipped (77) without python3-torch.
# usage: test_finetune_torch.sh WOBBLE_BINARY REF_DIR
W="$1"
REF="$2"
PY=/usr/bin/python3
if ! $PY -c "import torch, torchvision, PIL" 2>/dev/null; then
  echo "SKIP: /usr/bin/python3 has no torch, torchvision and PIL (Debian python3-torch python3-torchvision python3-pil)"
  exit 77
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/wobble_ftt_XXXXXX")
trap 'rm -rf "$T"' EXIT
fail=0
pass=0
IMGS="$REF/data/photo_96x80.png $REF/data/syn_64x48.png $REF/data/tiny_10x7.png"
mkdir -p "$T/imgs"
cp "$REF"/data/*.png "$T/imgs/"
for c in "clip-f32-openai clip-openai" "dinov2-swiglu-reg-fb dinov2-fb" "dinov2-swiglu-reg-hf-bf16 dinov2-hf"; do
  set -- $c
  M="$REF/models/$1"
  "$W" finetune --model "$M" --data "$T/imgs" --op jpeg --op gaussian_noise --steps 4 --batch 4 --lr 1e-3 -o "$T/$1" >/dev/null 2>"$T/err" &&
    "$W" embed --model "$T/$1" $IMGS -o "$T/$1.npy" 2>>"$T/err" &&
    $PY "$REF/check_finetuned.py" "$M" "$T/$1" "$2" $IMGS "$T/$1.npy"
  if [ $? -eq 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1 ($(cat "$T/err"))" >&2; fi
done
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
