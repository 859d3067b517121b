#!/usr/bin/python3
"""Plain PyTorch loads a model written by `wobble finetune` and reproduces
`wobble embed` on it.

usage: check_finetuned.py ORIGINAL_DIR FINETUNED_DIR KIND IMAGES... EMB.npy
KIND: clip-openai | dinov2-fb | dinov2-hf (the reference modules of
gen_models.py, which reproduce the upstream code; see there).

Checks: the result has exactly the original's tensor names, shapes and
dtypes; its weights load into the reference module (strict, after the
naming's own renaming); its embeddings of the images, preprocessed as the
upstream pipelines do, match EMB.npy (cosine >= 0.99999, max-abs <= 1e-4);
and they differ from the original weights' embeddings (the tuning changed
something). Exit 0 when all hold.
"""
import json
import os
import struct
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_models as G  # noqa: E402


def read_st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        data = f.read()
    meta, out = {}, {}
    for k, v in h.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        raw = data[a:b]
        if v["dtype"] == "F32":
            t = torch.from_numpy(np.frombuffer(raw, "<f4").copy())
        elif v["dtype"] == "F16":
            t = torch.from_numpy(np.frombuffer(raw, "<f2").copy()).float()
        elif v["dtype"] == "BF16":
            t = torch.from_numpy(np.frombuffer(raw, "<i2").copy()).view(torch.bfloat16).float()
        else:
            raise ValueError(v["dtype"])
        out[k] = t.reshape(v["shape"])
        meta[k] = (v["dtype"], tuple(v["shape"]))
    return meta, out


def invert(rename, module_sd, named):
    """State dict of the module from tensors under another naming: each module
    tensor is renamed alone; one name back is a copy (transposed if need be),
    three are q, k, v chunks to concatenate."""
    sd = {}
    for k, v in module_sd.items():
        keys = list(rename({k: v}).keys())
        if len(keys) == 1:
            t = named[keys[0]]
            sd[k] = t if t.shape == v.shape else t.t().contiguous()
        else:
            sd[k] = torch.cat([named[q] for q in keys], 0)
    return sd


def main():
    orig, tuned, kind = sys.argv[1], sys.argv[2], sys.argv[3]
    images, emb_path = sys.argv[4:-1], sys.argv[-1]
    m0, w0 = read_st(os.path.join(orig, "model.safetensors"))
    m1, w1 = read_st(os.path.join(tuned, "model.safetensors"))
    assert m0 == m1, "tensor names, shapes or dtypes differ from the original"
    pre = json.load(open(os.path.join(orig, "preprocessor_config.json")))
    if kind == "clip-openai":
        v = json.load(open(os.path.join(orig, "config.json")))["vision"]
        mk = lambda: G.VisionTransformer(v["image_size"], v["patch_size"], v["width"], v["layers"], v["heads"],
                                         v["output_dim"])
        load = lambda m, w: m.load_state_dict({k[len("visual."):]: t for k, t in w.items()})
        pipe = G.pipeline(pre["size"]["shortest_edge"], pre["crop_size"]["height"], G.CLIP_MEAN, G.CLIP_STD)
    else:
        cfg = json.load(open(os.path.join(orig, "config.json")))
        regs = sum(1 for k in w0 if "register" in k) and w0[[k for k in w0 if "register" in k][0]].shape[1]
        swiglu = any("w12" in k or "weights_in" in k for k in w0)
        grid_n = [t for k, t in w0.items() if "pos_embed" in k or "position_embeddings" in k][0].shape[1] - 1
        patch = [t for k, t in w0.items() if k.endswith("patch_embed.proj.weight") or k.endswith("projection.weight")][0].shape[2]
        img = int(round(grid_n ** 0.5)) * patch
        mk = lambda: G.DinoVisionTransformer(img, patch, cfg["hidden_size"], 2, cfg["num_attention_heads"], regs, swiglu,
                                             cfg["interpolate_offset"], cfg["interpolate_antialias"])
        if kind == "dinov2-fb":
            load = lambda m, w: m.load_state_dict(w)
        else:
            def load(m, w):
                w = dict(w)
                w.setdefault("embeddings.mask_token", torch.zeros(1, cfg["hidden_size"]))
                m.load_state_dict(invert(G.dino_to_hf, m.state_dict(), w))
        pipe = G.pipeline(pre["size"]["shortest_edge"], pre["crop_size"]["height"], G.IMNET_MEAN, G.IMNET_STD)
    x = torch.stack([pipe(Image.open(p).convert("RGB")) for p in images])
    outs = []
    for w in (w0, w1):
        m = mk()
        load(m, w)
        with torch.no_grad():
            outs.append(m.eval()(x).numpy())
    ref = np.load(emb_path)
    e = outs[1]
    cos = (e * ref).sum(1) / np.linalg.norm(e, axis=1) / np.linalg.norm(ref, axis=1)
    err = float(np.abs(e - ref).max())
    moved = float(np.abs(outs[0] - outs[1]).max())
    print(f"check_finetuned {kind}: {len(m1)} tensors, names/shapes/dtypes as the original; PyTorch vs wobble embed: "
          f"min cosine {cos.min():.7f}, max-abs {err:.2e}; moved {moved:.3e} from the original")
    ok = cos.min() >= 0.99999 and err <= 1e-4 and moved > 1e-4
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
