#!/bin/bash
# The GPU checks of issue 17 in one run, for a machine with an NVIDIA GPU
# (the device tool: run from the repository root; results under $OUT):
#   1. build with CUDA (Release; the toolkit under /usr/local/cuda or on PATH);
#   2. tests/test_cuda.py: parity with the CPU backend on every fixture of
#      ../shared/fixtures/arch (or shared/ in the tree) and the real ViT-Ti/16,
#      fp32 / bf16 / TF32, and eval on the GPU against the CPU;
#   3. tests/test_cuda_grad.c: fine-tuning gradients on the GPU against the
#      CPU backward pass (every fixture and ViT-Ti/16; relative error <= 1e-3);
#   4. speed: full-size CLIP ViT-B/16, ViT-L/14 and DINOv2 ViT-L/14
#      (bench/gpu/weights.py; pattern weights) at batch 64 and 256, bf16 and
#      fp32: images/s, GFLOP/s, the GPU's busy share.
# usage: bash bench/gpu/check.sh [SHARED_DIR]
set -u
OUT=${OUT:-$(mktemp -d)}
SHARED=${1:-${WOBBLE_SHARED:-$(pwd)/../shared}}
log() { echo "== $*" | tee -a "$OUT/check.log"; }
log "$(date -u) $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1)"
export PATH=$PATH:/usr/local/cuda/bin
cmake -S . -B build/gpu -DCMAKE_BUILD_TYPE=Release -DWOBBLE_PYTHON=OFF > "$OUT/cmake.log" 2>&1 &&
  cmake --build build/gpu -j"$(nproc)" --target wobble_cli bench_embed test_cuda_grad >> "$OUT/cmake.log" 2>&1 ||
  { log "build failed"; tail -30 "$OUT/cmake.log"; exit 1; }
grep "CUDA backend" "$OUT/cmake.log" | tee -a "$OUT/check.log"
log "parity (tests/test_cuda.py)"
WOBBLE_SHARED=$SHARED WOBBLE_TEST_REF=$(pwd)/tests/ref python3 tests/test_cuda.py build/gpu/wobble 2>&1 | tee -a "$OUT/check.log"
log "fine-tuning gradients (tests/test_cuda_grad.c)"
WOBBLE_SHARED=$SHARED build/gpu/tests/test_cuda_grad 2>&1 | tail -40 | tee -a "$OUT/check.log"
log "speed"
MODELS=$(mktemp -d)
python3 bench/gpu/weights.py "$MODELS" > /dev/null
for m in clip-vit-b16 clip-vit-l14 dinov2-vit-l14; do
  for b in 64 256; do
    for p in bf16 fp32; do
      r=$(build/gpu/bench_embed --model "$MODELS/$m" --batch $b --device cuda --precision $p --seconds 5 2>&1)
      echo "$m batch $b $p: $r" | tee -a "$OUT/check.log"
    done
  done
done
log "eval: 500 ImageNet images, the nine editing ops at their grids, CLIP ViT-B/16 bf16 on the GPU"
( time build/gpu/wobble eval --model "$MODELS/clip-vit-b16" --data "$SHARED/data/imagenet-sample" --device cuda \
    --precision bf16 --batch 64 --no-report -o "$OUT/eval" ) 2>&1 | tail -4 | tee -a "$OUT/check.log"
python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['seconds']; print('eval seconds:', s, 'GPU busy share %.2f' % (s.get('gpu', 0) / s['total']))" "$OUT/eval/run.json" 2>&1 |
  tee -a "$OUT/check.log"
log "embed: the same 500 images, pipelined (seconds.gpu / seconds.embed is the GPU's busy share)"
build/gpu/wobble embed --model "$MODELS/clip-vit-b16" --device cuda --precision bf16 --batch 64 \
  "$SHARED/data/imagenet-sample" -o "$OUT/emb.npy" > /dev/null 2>&1
python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['seconds']; print('embed seconds:', s, 'GPU busy share %.2f' % (s.get('gpu', 0) / s['embed']))" \
  "$OUT/emb.npy.json" 2>&1 | tee -a "$OUT/check.log"
log "fine-tuning speed: CLIP ViT-B/16, batch 32, 5 steps, jpeg (GPU)"
mkdir -p "$OUT/ft"
( time build/gpu/wobble finetune --model "$MODELS/clip-vit-b16" --data "$SHARED/data/imagenet-sample" --limit 160 \
    --op jpeg:10,90 --steps 5 --batch 32 --warmup 0 --device cuda -o "$OUT/ft/run" ) 2>&1 | tail -5 | tee -a "$OUT/check.log"
log "done"
