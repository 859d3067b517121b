"""PyTorch peers shared by the bench/ scripts.

TorchViT is Hugging Face's ViTModel image path (pre-norm blocks, CLS token
after the final LayerNorm) built from the same modules as
tests/ref/gen_models.py, loaded from a ViTModel state dict. make_vit_b16
writes (once) the random full-size ViT-B/16 that bench/embed_e2e and
bench/embed --large measure.
"""
import json
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
import gen_models as G  # noqa: E402


class ViTBlock(nn.Module):  # Hugging Face ViTLayer, same arithmetic
    def __init__(self, d, heads, eps):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d, eps=eps), nn.LayerNorm(d, eps=eps)
        self.attn = G.Attention(d, heads)
        self.mlp = G.Mlp(d, 4 * d)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TorchViT(nn.Module):
    def __init__(self, sd, d=192, depth=12, heads=3, patch=16, eps=1e-12, tokens=197):
        super().__init__()
        self.patch = nn.Conv2d(3, d, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.zeros(1, tokens, d))
        self.blocks = nn.ModuleList([ViTBlock(d, heads, eps) for _ in range(depth)])
        self.norm = nn.LayerNorm(d, eps=eps)
        with torch.no_grad():
            self.patch.weight.copy_(sd["embeddings.patch_embeddings.projection.weight"])
            self.patch.bias.copy_(sd["embeddings.patch_embeddings.projection.bias"])
            self.cls.copy_(sd["embeddings.cls_token"])
            self.pos.copy_(sd["embeddings.position_embeddings"])
            for i, b in enumerate(self.blocks):
                p = f"encoder.layer.{i}."
                a = p + "attention.attention."
                b.attn.qkv.weight.copy_(torch.cat([sd[a + n + ".weight"] for n in ("query", "key", "value")]))
                b.attn.qkv.bias.copy_(torch.cat([sd[a + n + ".bias"] for n in ("query", "key", "value")]))
                b.attn.proj.weight.copy_(sd[p + "attention.output.dense.weight"])
                b.attn.proj.bias.copy_(sd[p + "attention.output.dense.bias"])
                b.norm1.weight.copy_(sd[p + "layernorm_before.weight"]), b.norm1.bias.copy_(sd[p + "layernorm_before.bias"])
                b.norm2.weight.copy_(sd[p + "layernorm_after.weight"]), b.norm2.bias.copy_(sd[p + "layernorm_after.bias"])
                b.mlp.fc1.weight.copy_(sd[p + "intermediate.dense.weight"]), b.mlp.fc1.bias.copy_(sd[p + "intermediate.dense.bias"])
                b.mlp.fc2.weight.copy_(sd[p + "output.dense.weight"]), b.mlp.fc2.bias.copy_(sd[p + "output.dense.bias"])
            self.norm.weight.copy_(sd["layernorm.weight"]), self.norm.bias.copy_(sd["layernorm.bias"])

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        for b in self.blocks:
            x = b(x)
        return self.norm(x)[:, 0]


D, DEPTH, HEADS = 768, 12, 12


def make_vit_b16(out):
    """A random ViT-B/16 in Hugging Face ViTModel names (std 0.02 as HF's init)."""
    p = os.path.join(out, "vit-b16-hf")
    f = os.path.join(p, "model.safetensors")
    if os.path.exists(f):
        return p, G.load_safetensors(f)
    os.makedirs(p, exist_ok=True)
    g = torch.Generator().manual_seed(0)

    def rnd(*shape):
        return torch.randn(*shape, generator=g) * 0.02

    sd = {"embeddings.cls_token": rnd(1, 1, D), "embeddings.position_embeddings": rnd(1, 197, D),
          "embeddings.patch_embeddings.projection.weight": rnd(D, 3, 16, 16),
          "embeddings.patch_embeddings.projection.bias": torch.zeros(D),
          "layernorm.weight": torch.ones(D), "layernorm.bias": torch.zeros(D)}
    for i in range(DEPTH):
        q = f"encoder.layer.{i}."
        for n, (o, k) in {"attention.attention.query": (D, D), "attention.attention.key": (D, D),
                          "attention.attention.value": (D, D), "attention.output.dense": (D, D),
                          "intermediate.dense": (4 * D, D), "output.dense": (D, 4 * D)}.items():
            sd[q + n + ".weight"], sd[q + n + ".bias"] = rnd(o, k), torch.zeros(o)
        for n in ("layernorm_before", "layernorm_after"):
            sd[q + n + ".weight"], sd[q + n + ".bias"] = torch.ones(D), torch.zeros(D)
    G.save_safetensors(f, sd)
    json.dump({"architectures": ["ViTModel"], "model_type": "vit", "hidden_size": D, "num_hidden_layers": DEPTH,
               "num_attention_heads": HEADS, "intermediate_size": 4 * D, "hidden_act": "gelu",
               "layer_norm_eps": 1e-12, "image_size": 224, "patch_size": 16, "num_channels": 3, "qkv_bias": True},
              open(os.path.join(p, "config.json"), "w"), indent=1)
    json.dump({"image_processor_type": "ViTImageProcessor", "do_resize": True, "size": {"shortest_edge": 256},
               "resample": 2, "do_center_crop": True, "crop_size": {"height": 224, "width": 224}, "do_rescale": True,
               "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5] * 3, "image_std": [0.5] * 3},
              open(os.path.join(p, "preprocessor_config.json"), "w"), indent=1)
    return p, sd
