"""PyTorch peers shared by the bench/ scripts.

TorchViT is Hugging Face's ViTModel image path (pre-norm blocks, CLS token
after the final LayerNorm) built from the same modules as
tests/ref/gen_models.py, loaded from a ViTModel state dict.
"""
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
