#!/usr/bin/python3
"""Goldens of the depth probe (tests/test_depth.c) from PyTorch and NumPy,
written the way DINOv2's linear depth head and its losses compute them
(dinov2/eval/depth: BNHead without BatchNorm, depth_pred with UD bins and
the "linear" normalisation, SigLoss, GradientLoss; resize as
F.interpolate(bilinear, align_corners=False)), in float64:

- two images' features (3 x 4 and 2 x 5 tokens, 6 channels) and a head of
  16 bins over [0.5, 5] m with random weights;
- the depth at the ground truth's size (13 x 17 and 11 x 19), unclamped
  and clamped;
- the loss over both (SigLoss pooled over their valid pixels + 0.5 x the
  mean of their gradient losses) and its gradient for the weights and bias
  (autograd);
- the per-image metrics of the clamped prediction (NumPy);
- a 16-bit PNG written by Pillow and its values.

usage: gen_depth.py OUT_DIR (writes case.json and depth16.png)
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(7)
C, K, DMIN, DMAX, EPS = 6, 16, 0.5, 5.0, 1e-3
shapes = [((3, 4), (13, 17)), ((2, 5), (11, 19))]
feats = [rng.normal(size=(gh * gw, C)).astype(np.float32) for (gh, gw), _ in shapes]
gts = []
for _, (H, W) in shapes:
    g = rng.uniform(0.3, 6.0, size=(H, W)).astype(np.float32)
    g[rng.uniform(size=(H, W)) < 0.15] = 0  # invalid
    gts.append(g)
Wt = (rng.normal(size=(C, K)) * 0.5).astype(np.float32)
bt = (rng.normal(size=K) * 0.5).astype(np.float32)

w = torch.tensor(Wt, dtype=torch.float64, requires_grad=True)
b = torch.tensor(bt, dtype=torch.float64, requires_grad=True)
bins = torch.linspace(DMIN, DMAX, K, dtype=torch.float64)


def head(feat, gh, gw, H, W):
    x = torch.tensor(feat, dtype=torch.float64).reshape(gh, gw, C).permute(2, 0, 1)[None]
    x = F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)
    logit = torch.einsum("nchw,ck->nkhw", x, w) + b[None, :, None, None]
    logit = torch.relu(logit) + 0.1
    logit = logit / logit.sum(dim=1, keepdim=True)
    d = torch.einsum("nkhw,k->nhw", logit, bins)[:, None]
    return F.interpolate(d, size=(H, W), mode="bilinear", align_corners=False)[0, 0]


def sigloss(preds, targets):
    p = torch.cat([x.reshape(-1) for x in preds])
    t = torch.cat([torch.tensor(x, dtype=torch.float64).reshape(-1) for x in targets])
    m = (t > 0) & (t <= DMAX)
    g = torch.log(p[m] + EPS) - torch.log(t[m] + EPS)
    return torch.sqrt(torch.var(g) + 0.15 * torch.mean(g) ** 2)


def gradloss(pred, target):
    target = torch.tensor(target, dtype=torch.float64)
    total = 0
    for s in (1, 2, 4, 6):
        p, t = pred[::s, ::s], target[::s, ::s]
        mask = ((t > 0) & (t <= DMAX)).double()
        n = mask.sum()
        d = (torch.log(p + EPS) - torch.log(t + EPS)) * mask
        v = torch.abs(d[:-2, :] - d[2:, :]) * mask[:-2, :] * mask[2:, :]
        h = torch.abs(d[:, :-2] - d[:, 2:]) * mask[:, :-2] * mask[:, 2:]
        total = total + (v.sum() + h.sum()) / n
    return total


preds = [head(f, gh, gw, H, W) for f, ((gh, gw), (H, W)) in zip(feats, shapes)]
loss = sigloss(preds, gts) + 0.5 * (gradloss(preds[0], gts[0]) + gradloss(preds[1], gts[1])) / 2
loss.backward()


def metrics(pred, gt):
    m = (gt > DMIN) & (gt <= DMAX)
    p, t = pred[m].astype(np.float64), gt[m].astype(np.float64)
    r = np.maximum(t / p, p / t)
    e = np.log(p) - np.log(t)
    return {"abs_rel": float(np.mean(np.abs(t - p) / t)), "rmse": float(np.sqrt(np.mean((t - p) ** 2))),
            "log10": float(np.mean(np.abs(np.log10(t) - np.log10(p)))),
            "silog": float(100 * np.sqrt(np.mean(e ** 2) - np.mean(e) ** 2)),
            "d1": float(np.mean(r < 1.25)), "d2": float(np.mean(r < 1.25 ** 2)), "d3": float(np.mean(r < 1.25 ** 3)),
            "valid": int(m.sum())}


case = {"channels": C, "bins": K, "d_min": DMIN, "d_max": DMAX, "W": Wt.ravel().tolist(), "b": bt.tolist(),
        "images": [], "loss": float(loss), "grad_W": w.grad.numpy().ravel().tolist(), "grad_b": b.grad.numpy().tolist()}
for f, ((gh, gw), (H, W)), g, p in zip(feats, shapes, gts, preds):
    pn = p.detach().numpy()
    pc = np.clip(pn, DMIN, DMAX).astype(np.float32)
    case["images"].append({"gh": gh, "gw": gw, "H": H, "W": W, "feat": f.ravel().tolist(), "gt": g.ravel().tolist(),
                           "pred": pn.ravel().tolist(), "pred_clamped": pc.ravel().tolist(),
                           "metrics": metrics(pc, g)})
json.dump(case, open(os.path.join(out, "case.json"), "w"))
d16 = rng.integers(0, 65536, size=(5, 7)).astype(np.uint16)
d16[0, 0], d16[4, 6] = 0, 65535
Image.fromarray(d16, mode="I;16").save(os.path.join(out, "depth16.png"))
json.dump({"values": d16.ravel().tolist(), "w": 7, "h": 5}, open(os.path.join(out, "depth16.json"), "w"))
print("loss %.9g, |grad W| %.6g" % (float(loss), float(w.grad.norm())))
