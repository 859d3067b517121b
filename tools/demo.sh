#!/bin/sh
# The demo: the operations, then the main job: how far each everyday edit
# moves the embeddings of the real ViT-Ti/16 on the 24 Kodak photos; then
# what that costs a linear probe on a slice of the CIFAR-10 subset.
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
CIFAR="$SHARED/data/cifar-10-batches-bin"
if [ -e "$CIFAR/data_batch_1.bin" ]; then
  echo "Downstream cost: linear probe on 500 CIFAR-10 training images, 100 test images"
  "$W" eval --task linear --model "$MODEL" --train "$CIFAR/data_batch_1.bin" --train-limit 500 \
    --data "$CIFAR/test_batch.bin" --limit 100 --seed 1 \
    --op jpeg:30,10 --op gaussian_blur:1,2 --op saturation:0.5,0 --op gaussian_noise:0.04,0.16 \
    -o "$OUT/downstream-cifar10"
  echo
fi
echo "Perturbed examples of kodim23 at every default level: $OUT/examples/"
for op in $("$W" ops --json | sed -n 's/.*"name": "\(.*\)".*/\1/p' | grep -v '^imagenet_c\.'); do
  "$W" perturb --op "$op" --seed 1 "$KODAK/kodim23.png" "$OUT/examples"
done
echo "The 19 ImageNet-C corruptions of kodim23 at severity 3 (ImageNet-C layout): $OUT/examples/imagenet-c/"
"$W" perturb --suite imagenet-c-all --levels 3 --seed 1 "$KODAK/kodim23.png" "$OUT/examples/imagenet-c"
echo
# one page with both runs: robustness on Kodak, the probe's cost on CIFAR-10
RUNS="$OUT/eval-kodak"
[ -e "$OUT/downstream-cifar10/downstream.json" ] && RUNS="$RUNS $OUT/downstream-cifar10"
"$W" report $RUNS -o "$OUT/report.html"
echo "The report (open it in a browser): $OUT/report.html"
