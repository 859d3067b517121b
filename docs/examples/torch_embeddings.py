#!/usr/bin/python3
"""Robustness of a model wobble does not run: a torchvision ResNet.

Perturb each image with wobble (Pillow-exact), embed clean and perturbed
images with the PyTorch model, write the embedding folder, and evaluate it
with `wobble eval --embeddings` (docs/embeddings.md).

usage: PYTHONPATH=build/release/python /usr/bin/python3 docs/examples/torch_embeddings.py \\
           IMAGES_DIR OUT_DIR [--weights DEFAULT] [--op jpeg:90,50,10 ...] [--limit N]

--weights DEFAULT loads torchvision's pretrained ResNet-50 (a download);
without it the network has random weights (enough to try the pipeline).
"""
import argparse
import os

import numpy as np
import torch
from PIL import Image
from torchvision import models
from torchvision import transforms as T

import wobble

ap = argparse.ArgumentParser()
ap.add_argument("images")
ap.add_argument("out")
ap.add_argument("--weights", default=None, help="torchvision weights name, e.g. DEFAULT")
ap.add_argument("--op", action="append", default=None, help="NAME:L1,L2,... (default jpeg:90,50,10 and gaussian_blur:1,2)")
ap.add_argument("--limit", type=int, default=0)
args = ap.parse_args()

columns = []
for spec in args.op or ["jpeg:90,50,10", "gaussian_blur:1,2"]:
    name, levels = spec.split(":")
    columns += [(name, float(x)) for x in levels.split(",")]

files = sorted(f for f in os.listdir(args.images) if f.lower().endswith((".png", ".jpg", ".jpeg")))
if args.limit:
    files = files[:args.limit]

torch.manual_seed(0)
net = models.resnet50(weights=args.weights)
net.fc = torch.nn.Identity()  # the embedding: the pooled 2048-d features
net.eval()
pre = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                 T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])


def embed(arrays):
    with torch.no_grad():
        x = torch.stack([pre(Image.fromarray(a)) for a in arrays])
        return net(x).numpy()


clean, perturbed = [], []
for f in files:
    img = np.asarray(Image.open(os.path.join(args.images, f)).convert("RGB"))
    clean.append(embed([img])[0])
    perturbed.append(embed([wobble.perturb(img, op, level) for op, level in columns]))

emb_dir = os.path.join(args.out, "embeddings")
wobble.save_embeddings(emb_dir, np.stack(clean), np.stack(perturbed), columns, ids=files)
summary = wobble.eval(embeddings=emb_dir, out=os.path.join(args.out, "eval"))
for op in summary["ops"]:
    m = op["metrics"]
    print(f"{op['op']:<16} levels {op['levels']}: R_cos {m['R_cos']['mean']:.5f}  R_euc {m['R_euc']['mean']:.5f}  "
          f"R_div {m['R_div']['mean']:.5f}")
print("report:", os.path.join(args.out, "eval", "report.html"))
