#!/usr/bin/python3
"""Reference values for `wobble eval`, computed by an independent Python
pipeline: Pillow / torchvision perturbations (as tests/ref/gen_goldens.py),
the PyTorch CLIP module of tests/ref/gen_models.py with Pillow/torchvision
preprocessing, and the metrics in NumPy (MEB by brute force over support
sets). Writes tests/ref/eval_expected.json for the tiny model
tests/ref/models/clip-f32-openai and the images in tests/ref/data.

usage: /usr/bin/python3 tests/ref/gen_eval.py
"""
import json
import os
import sys

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_goldens as GG  # noqa: E402
import gen_meb  # noqa: E402
import gen_models as GM  # noqa: E402

IMAGES = ["photo_96x80.png", "syn_64x48.png", "syn_33x17.png"]
OPS = [("jpeg", [50.0, 10.0]), ("gaussian_blur", [1.0, 3.0]), ("hue", [0.1, -0.3]), ("rescale", [0.5]),
       ("contrast", [1.0, 0.4])]


def main():
    d = os.path.join(HERE, "models", "clip-f32-openai")
    sd = GM.load_safetensors(os.path.join(d, "model.safetensors"))
    m = GM.VisionTransformer(64, 16, 32, 2, 2, 24)
    m.load_state_dict({k[7:]: v for k, v in sd.items()})
    m.eval()
    pipe = GM.pipeline(64, 64, GM.CLIP_MEAN, GM.CLIP_STD)

    def emb(im):
        with torch.no_grad():
            return m(pipe(im).unsqueeze(0))[0].double().numpy()

    out = {"model": "models/clip-f32-openai", "ops": [{"op": o, "levels": l} for o, l in OPS], "images": []}
    for name in IMAGES:
        im = Image.open(os.path.join(HERE, "data", name)).convert("RGB")
        e0 = emb(im)
        u0 = e0 / np.linalg.norm(e0)
        rec = {"image": name, "ops": {}}
        for op, levels in OPS:
            U = [u0]
            cs, es = [], []
            for k in levels:
                e = emb(GG.ref(im, op, k))
                cs.append(float((1 - e0 @ e / (np.linalg.norm(e0) * np.linalg.norm(e))) / 2))
                u = e / np.linalg.norm(e)
                es.append(float(np.linalg.norm(u0 - u) / 2))
                U.append(u)
            rec["ops"][op] = {"cos": cs, "euc": es, "R_cos": max(cs), "R_euc": max(es),
                              "R_div": float(gen_meb.brute(np.array(U))), "cos_mean": float(np.mean(cs)),
                              "euc_mean": float(np.mean(es))}
        out["images"].append(rec)
    with open(os.path.join(HERE, "eval_expected.json"), "w") as f:
        json.dump(out, f, indent=1)
    print("gen_eval: wrote eval_expected.json")


if __name__ == "__main__":
    main()
