#!/usr/bin/python3
"""Gradient goldens for the backward pass, from PyTorch autograd (Debian python3-torch).

For every model in ../shared/fixtures/arch (both CLIP namings, both DINOv2
namings, DINOv2 with registers) the upstream-equivalent modules of
gen_models.py (checked there against the fixtures' upstream outputs, and again
here) compute the fine-tuning loss of docs/finetuning.md

    L = -mean cos(f'(x), f'(xp)) - lambda * mean cos(t, f'(x)),   lambda = 0.7

on x = the fixture's pixel_values.npy (kodim23, kodim04), xp = 0.9 * x
flipped left-right (a perturbation the C test rebuilds exactly) and targets
t = targets.npy (seeded normal vectors), and write its gradient with respect
to every parameter, under the fixture's own tensor names and layout, as
tests/ref/grads/<case>/grads.safetensors, with loss.json.

It also writes tests/ref/grads/vit-random-hf/: a tiny random ViT in the
Hugging Face ViTModel layout (no upstream fixture exists for it) for the
finite-difference test, with its expected embeddings from the reference
module below.

usage: /usr/bin/python3 tests/ref/gen_grads.py [SHARED_DIR]
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_models as G  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "grads")
SHARED = sys.argv[1] if len(sys.argv) > 1 else G.SHARED
LAMBDA = 0.7
torch.set_num_threads(1)


def loss_fn(model, x, xp, t):
    e = model(torch.cat([x, xp]))
    ec, ep = e[: len(x)], e[len(x):]
    cos = nn.functional.cosine_similarity
    rob = -cos(ec, ep, dim=-1).mean()
    util = -cos(t, ec, dim=-1).mean()
    return rob + LAMBDA * util, rob, util


class HFViT(nn.Module):
    """Hugging Face ViTModel image path: patch conv, [CLS] + patches + position
    embeddings, pre-norm blocks (eps 1e-12, erf GELU, no LayerScale), final
    layernorm; the embedding is the normalised CLS token."""

    def __init__(self, img, patch, dim, depth, heads):
        super().__init__()
        self.patch_embed = G.PatchEmbed(patch, dim)
        n = (img // patch) ** 2
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        self.blocks = nn.ModuleList([G.Block(dim, heads, False) for _ in range(depth)])
        for b in self.blocks:
            b.norm1.eps = b.norm2.eps = 1e-12
            b.ls1 = nn.Identity()
            b.ls2 = nn.Identity()
        self.norm = nn.LayerNorm(dim, eps=1e-12)

    def forward(self, x):
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)[:, 0]


def vit_to_hf(sd):
    out = {}
    for k, v in sd.items():
        if k == "cls_token":
            out["embeddings.cls_token"] = v
        elif k == "pos_embed":
            out["embeddings.position_embeddings"] = v
        elif k.startswith("patch_embed.proj."):
            out["embeddings.patch_embeddings.projection." + k[len("patch_embed.proj."):]] = v
        elif k.startswith("norm."):
            out["layernorm." + k[5:]] = v
        else:
            i, rest = k[7:].split(".", 1)
            p = f"encoder.layer.{i}."
            if rest.startswith("attn.qkv."):
                suf = rest[len("attn.qkv."):]
                q, kk, vv = v.chunk(3, 0)
                out[p + "attention.attention.query." + suf] = q
                out[p + "attention.attention.key." + suf] = kk
                out[p + "attention.attention.value." + suf] = vv
            else:
                m = {"attn.proj.": "attention.output.dense.", "norm1.": "layernorm_before.",
                     "norm2.": "layernorm_after.", "mlp.fc1.": "intermediate.dense.", "mlp.fc2.": "output.dense."}
                for a, b in m.items():
                    if rest.startswith(a):
                        out[p + b + rest[len(a):]] = v
                        break
                else:
                    raise KeyError(k)
    return {k: v.contiguous() for k, v in out.items()}


def build(case, d):
    """The fixture's model as a reference module, and a function renaming a
    state dict of the module (weights or gradients) into the fixture's names."""
    cfg = json.load(open(os.path.join(d, "config.json")))
    sd = G.load_safetensors(os.path.join(d, "model.safetensors"))
    if case.startswith("clip"):
        v = cfg.get("vision") or {}
        if case == "clip-openai-naming":
            m = G.VisionTransformer(v["image_size"], v["patch_size"], v["width"], v["layers"], v["heads"],
                                    v["output_dim"])
            m.load_state_dict({k[len("visual."):]: t for k, t in sd.items()})
            return m, lambda s: {"visual." + k: t for k, t in s.items()}
        # HF naming: the same weights as the openai case
        m, _ = build("clip-openai-naming", os.path.join(os.path.dirname(d), "clip-openai-naming"))
        return m, G.clip_to_hf
    if "facebookresearch" not in case:
        base, _ = build("dinov2-facebookresearch-naming",
                        os.path.join(os.path.dirname(d), "dinov2-facebookresearch-naming"))
        return base, G.dino_to_hf
    m = G.DinoVisionTransformer(cfg["image_size"], cfg["patch_size"], cfg["hidden_size"], cfg["num_hidden_layers"],
                                cfg["num_attention_heads"], cfg.get("num_register_tokens", 0), False,
                                cfg["interpolate_offset"], cfg["interpolate_antialias"])
    m.load_state_dict(sd)
    return m, lambda s: s


def write_grads(name, model, rename, x, xp, t, emb_check=None):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    model.zero_grad()
    L, rob, util = loss_fn(model, x, xp, t)
    L.backward()
    grads = {k: (p.grad if p.grad is not None else torch.zeros_like(p)) for k, p in model.named_parameters()}
    grads = rename({k: v.detach().clone() for k, v in grads.items()})
    grads = {k: v for k, v in grads.items() if "mask_token" not in k}
    G.save_safetensors(os.path.join(d, "grads.safetensors"), grads, "F32")
    np.save(os.path.join(d, "targets.npy"), t.numpy().astype(np.float32))
    json.dump({"lambda": LAMBDA, "loss": L.item(), "rob": rob.item(), "util": util.item(),
               "xp": "0.9 * flip(x, width)", "tensors": len(grads)}, open(os.path.join(d, "loss.json"), "w"), indent=1)
    print(f"gen_grads: {name}: L = {L.item():.6f} (rob {rob.item():.6f}, util {util.item():.6f}), {len(grads)} tensors")


def main():
    G.check_upstream()
    arch = os.path.join(SHARED, "fixtures", "arch")
    g = torch.Generator().manual_seed(5)
    for case in sorted(os.listdir(arch)):
        d = os.path.join(arch, case)
        model, rename = build(case, d)
        x = torch.from_numpy(np.load(os.path.join(d, "pixel_values.npy")))
        xp = 0.9 * torch.flip(x, dims=[3])
        with torch.no_grad():
            e = model.eval()(x)
        ref = np.load(os.path.join(d, "embedding.npy"))
        assert float(np.abs(e.numpy() - ref).max()) < 1e-5, case
        t = torch.randn(e.shape, generator=g)
        write_grads(case, model, rename, x, xp, t)
    # tiny random ViT, Hugging Face names, for the finite-difference test
    torch.manual_seed(7)
    vit = G.randomise(HFViT(32, 8, 24, 2, 2), 4)
    d = os.path.join(OUT, "vit-random-hf")
    os.makedirs(d, exist_ok=True)
    sd = vit_to_hf({k: v.detach().clone() for k, v in vit.state_dict().items()})
    G.save_safetensors(os.path.join(d, "model.safetensors"), sd, "F32")
    json.dump({"model_type": "vit", "hidden_size": 24, "num_hidden_layers": 2, "num_attention_heads": 2,
               "intermediate_size": 96, "hidden_act": "gelu", "layer_norm_eps": 1e-12, "image_size": 32,
               "patch_size": 8}, open(os.path.join(d, "config.json"), "w"), indent=1)
    json.dump({"do_resize": True, "size": {"height": 32, "width": 32}, "resample": 2, "do_rescale": True,
               "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5] * 3, "image_std": [0.5] * 3},
              open(os.path.join(d, "preprocessor_config.json"), "w"), indent=1)
    xs = torch.from_numpy(np.random.RandomState(3).uniform(-1, 1, (2, 3, 32, 32)).astype(np.float32))
    with torch.no_grad():
        np.save(os.path.join(d, "pixel_values.npy"), xs.numpy())
        np.save(os.path.join(d, "embedding.npy"), vit.eval()(xs).numpy().astype(np.float32))
    print("gen_grads: vit-random-hf written")


if __name__ == "__main__":
    main()
