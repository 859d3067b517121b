#!/bin/sh
# The demo: the operations, then the main job: how far each everyday edit
# moves the embeddings of the real ViT-Ti/16 on the 24 Kodak photos.
# usage: tools/demo.sh WOBBLE SHARED_DIR OUT_DIR
set -eu
W="$1"; SHARED="$2"; OUT="$3"
KODAK="$SHARED/data/kodak"
MODEL="$SHARED/models/vit-tiny-patch16-224-tin"
for p in "$KODAK" "$MODEL"; do
  if [ ! -e "$p" ]; then
    echo "demo: $p not found; set WOBBLE_SHARED to the shared folder" >&2
    exit 1
  fi
done
"$W" ops | head -10
echo
"$W" info --model "$MODEL"
echo
"$W" eval --model "$MODEL" --data "$KODAK" --seed 1 -o "$OUT/eval-kodak"
echo
echo "Perturbed examples of kodim23 at every default level: $OUT/examples/"
for op in $("$W" ops --json | sed -n 's/.*"name": "\(.*\)".*/\1/p'); do
  "$W" perturb --op "$op" --seed 1 "$KODAK/kodim23.png" "$OUT/examples"
done
