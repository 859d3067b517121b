#!/usr/bin/python3
"""Write bench/gpu/models.json: the tensor names and shapes of the full-size
models the GPU speed check uses (issue 17: CLIP ViT-B/16 and ViT-L/14 in
OpenAI names, DINOv2 ViT-L/14 in facebookresearch names), taken from the
upstream-equivalent modules of tests/ref/gen_models.py. The GPU machine then
writes the checkpoints with bench/gpu/weights.py (no PyTorch needed there).

usage: bench/gpu/make_manifest.py
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "ref"))
import gen_models as G  # noqa: E402

SPECS = [("clip-vit-b16", lambda: G.VisionTransformer(224, 16, 768, 12, 12, 512), "visual."),
         ("clip-vit-l14", lambda: G.VisionTransformer(224, 14, 1024, 24, 16, 768), "visual."),
         ("dinov2-vit-l14", lambda: G.DinoVisionTransformer(518, 14, 1024, 24, 16), "")]

out = {}
for name, build, prefix in SPECS:
    sd = build().state_dict()
    out[name] = [[prefix + k, list(v.shape)] for k, v in sd.items()]
with open(os.path.join(HERE, "models.json"), "w") as f:
    json.dump(out, f, indent=0)
print("wrote", os.path.join(HERE, "models.json"), {k: len(v) for k, v in out.items()})
