#!/usr/bin/python3
"""Generate small encoder test cases with PyTorch (Debian python3-torch).

The reference modules below follow the upstream code line by line (openai/CLIP
model.py VisionTransformer; facebookresearch/dinov2 DinoVisionTransformer with
Attention, LayerScale, Mlp, SwiGLUFFNFused and interpolate_pos_encoding).
Before writing anything, the script loads every shared fixture in
../shared/fixtures/arch into these modules and checks that they reproduce the
upstream embeddings (max-abs <= 1e-5); it refuses to continue otherwise.

It then writes tests/ref/models/<case>/ with a tiny random model (F32, F16,
BF16, sharded, SwiGLU, registers, non-square and non-224 inputs, both
namings), its config and preprocessor config, and expected.npy: the
embeddings of the images listed in cases.json, preprocessed with Pillow and
torchvision exactly as the upstream pipelines do. expected_bf16.npy holds the
same forward pass with wobble's bf16 semantics (--precision bf16): every
F.linear and F.conv2d (patch embedding, qkv, attention projection, MLP) gets
its input and weight rounded to bfloat16 by torch and computes in fp32, and
so do both attention products (Q K^T and P V: torch.matmul in the DINOv2
module, torch.bmm in nn.MultiheadAttention); the scaling of the scores (a
power of two at these head widths), softmax, LayerNorm, residuals and the
CLIP projection stay fp32.

usage: /usr/bin/python3 tests/ref/gen_models.py [SHARED_DIR]
"""
import contextlib
import copy
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "models")
SHARED = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
    "WOBBLE_SHARED", os.path.join(HERE, "..", "..", "..", "shared"))
torch.set_num_threads(1)

# ------------------------------------------------------------ safetensors I/O
DT = {"F32": (np.float32, 4), "F16": (np.float16, 2), "BF16": (None, 2)}


def to_bytes(t, dtype):
    if dtype == "F32":
        return t.detach().float().numpy().astype("<f4").tobytes()
    if dtype == "F16":
        return t.detach().half().numpy().astype("<f2").tobytes()
    if dtype == "BF16":
        return t.detach().bfloat16().view(torch.int16).numpy().astype("<i2").tobytes()
    raise ValueError(dtype)


def save_safetensors(path, tensors, dtype="F32"):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        b = to_bytes(tensors[name], dtype)
        header[name] = {"dtype": dtype, "shape": list(tensors[name].shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in h.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        assert v["dtype"] == "F32"
        out[k] = torch.from_numpy(np.frombuffer(data[a:b], dtype="<f4").reshape(v["shape"]).copy())
    return out


def rounded(sd, dtype):
    """The weights a reader of a dtype checkpoint sees, back in float32."""
    if dtype == "F16":
        return {k: v.half().float() for k, v in sd.items()}
    if dtype == "BF16":
        return {k: v.bfloat16().float() for k, v in sd.items()}
    return sd


# ------------------------------------------------------------ openai/CLIP
class LayerNorm(nn.LayerNorm):
    def forward(self, x):
        return super().forward(x.type(torch.float32)).type(x.dtype)


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, d_model, n_head):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_head)
        self.ln_1 = LayerNorm(d_model)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(d_model, d_model * 4))
        self.mlp.add_module("gelu", QuickGELU())
        self.mlp.add_module("c_proj", nn.Linear(d_model * 4, d_model))
        self.ln_2 = LayerNorm(d_model)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x), self.ln_1(x), self.ln_1(x), need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width, layers, heads):
        super().__init__()
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads) for _ in range(layers)])

    def forward(self, x):
        return self.resblocks(x)


class VisionTransformer(nn.Module):
    def __init__(self, input_resolution, patch_size, width, layers, heads, output_dim):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((input_resolution // patch_size) ** 2 + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def forward(self, x):
        x = self.conv1(x)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        x = torch.cat([self.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype), x], dim=1)
        x = x + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x)
        x = x.permute(1, 0, 2)
        x = self.transformer(x)
        x = x.permute(1, 0, 2)
        x = self.ln_post(x[:, 0, :])
        return x @ self.proj


def clip_to_hf(sd):
    """openai visual.* names -> Hugging Face CLIPModel names."""
    out = {}
    for k, v in sd.items():
        if k == "conv1.weight":
            out["vision_model.embeddings.patch_embedding.weight"] = v
        elif k == "class_embedding":
            out["vision_model.embeddings.class_embedding"] = v
        elif k == "positional_embedding":
            out["vision_model.embeddings.position_embedding.weight"] = v
        elif k.startswith("ln_pre."):
            out["vision_model.pre_layrnorm." + k[7:]] = v
        elif k.startswith("ln_post."):
            out["vision_model.post_layernorm." + k[8:]] = v
        elif k == "proj":
            out["visual_projection.weight"] = v.t().contiguous()
        elif k.startswith("transformer.resblocks."):
            i, rest = k[len("transformer.resblocks."):].split(".", 1)
            p = f"vision_model.encoder.layers.{i}."
            if rest == "attn.in_proj_weight":
                q, kk, vv = v.chunk(3, 0)
                out[p + "self_attn.q_proj.weight"], out[p + "self_attn.k_proj.weight"], out[p + "self_attn.v_proj.weight"] = q, kk, vv
            elif rest == "attn.in_proj_bias":
                q, kk, vv = v.chunk(3, 0)
                out[p + "self_attn.q_proj.bias"], out[p + "self_attn.k_proj.bias"], out[p + "self_attn.v_proj.bias"] = q, kk, vv
            else:
                m = {"attn.out_proj.": "self_attn.out_proj.", "ln_1.": "layer_norm1.", "ln_2.": "layer_norm2.",
                     "mlp.c_fc.": "mlp.fc1.", "mlp.c_proj.": "mlp.fc2."}
                for a, b in m.items():
                    if rest.startswith(a):
                        out[p + b + rest[len(a):]] = v
                        break
                else:
                    raise KeyError(k)
        else:
            raise KeyError(k)
    return {k: v.contiguous() for k, v in out.items()}


# ------------------------------------------------------------ facebookresearch/dinov2
class PatchEmbed(nn.Module):
    def __init__(self, patch, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.num_heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = torch.matmul(q, k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj(torch.matmul(attn, v).transpose(1, 2).reshape(B, N, C))


class LayerScale(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class SwiGLUFFNFused(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
        self.w12, self.w3 = nn.Linear(dim, 2 * hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)


class Block(nn.Module):
    def __init__(self, dim, heads, swiglu):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = SwiGLUFFNFused(dim, 4 * dim) if swiglu else Mlp(dim, 4 * dim)
        self.ls2 = LayerScale(dim)

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoVisionTransformer(nn.Module):
    def __init__(self, img_size, patch, dim, depth, heads, regs=0, swiglu=False, offset=0.1, antialias=False):
        super().__init__()
        self.patch_size = patch
        self.patch_embed = PatchEmbed(patch, dim)
        n = (img_size // patch) ** 2
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        self.num_register_tokens = regs
        self.register_tokens = nn.Parameter(torch.randn(1, regs, dim) * 0.02) if regs else None
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.blocks = nn.ModuleList([Block(dim, heads, swiglu) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.interpolate_offset, self.interpolate_antialias = offset, antialias

    def interpolate_pos_encoding(self, x, w, h):
        npatch = x.shape[1] - 1
        N = self.pos_embed.shape[1] - 1
        if npatch == N and w == h:
            return self.pos_embed
        pos_embed = self.pos_embed.float()
        class_pos_embed, patch_pos_embed = pos_embed[:, 0], pos_embed[:, 1:]
        dim = x.shape[-1]
        w0, h0 = w // self.patch_size, h // self.patch_size
        M = int(math.sqrt(N))
        kwargs = {}
        if self.interpolate_offset:
            kwargs["scale_factor"] = (float(w0 + self.interpolate_offset) / M, float(h0 + self.interpolate_offset) / M)
        else:
            kwargs["size"] = (w0, h0)
        patch_pos_embed = F.interpolate(patch_pos_embed.reshape(1, M, M, dim).permute(0, 3, 1, 2), mode="bicubic",
                                        antialias=self.interpolate_antialias, **kwargs)
        assert (w0, h0) == patch_pos_embed.shape[-2:]
        patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)
        return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1)

    def forward(self, x):
        B, nc, w, h = x.shape
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = x + self.interpolate_pos_encoding(x, w, h)
        if self.register_tokens is not None:
            x = torch.cat((x[:, :1], self.register_tokens.expand(x.shape[0], -1, -1), x[:, 1:]), dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)[:, 0]


def dino_to_hf(sd):
    out = {}
    for k, v in sd.items():
        if k == "cls_token":
            out["embeddings.cls_token"] = v
        elif k == "pos_embed":
            out["embeddings.position_embeddings"] = v
        elif k == "mask_token":
            out["embeddings.mask_token"] = v
        elif k == "register_tokens":
            out["embeddings.register_tokens"] = v
        elif k.startswith("patch_embed.proj."):
            out["embeddings.patch_embeddings.projection." + k[len("patch_embed.proj."):]] = v
        elif k.startswith("norm."):
            out["layernorm." + k[5:]] = v
        elif k.startswith("blocks."):
            i, rest = k[7:].split(".", 1)
            p = f"encoder.layer.{i}."
            if rest.startswith("attn.qkv."):
                suf = rest[len("attn.qkv."):]
                q, kk, vv = v.chunk(3, 0)
                out[p + "attention.attention.query." + suf] = q
                out[p + "attention.attention.key." + suf] = kk
                out[p + "attention.attention.value." + suf] = vv
            else:
                m = {"attn.proj.": "attention.output.dense.", "ls1.gamma": "layer_scale1.lambda1",
                     "ls2.gamma": "layer_scale2.lambda1", "norm1.": "norm1.", "norm2.": "norm2.",
                     "mlp.fc1.": "mlp.fc1.", "mlp.fc2.": "mlp.fc2.", "mlp.w12.": "mlp.weights_in.",
                     "mlp.w3.": "mlp.weights_out."}
                for a, b in m.items():
                    if rest.startswith(a):
                        out[p + b + rest[len(a):]] = v
                        break
                else:
                    raise KeyError(k)
        else:
            raise KeyError(k)
    return {k: v.contiguous() for k, v in out.items()}


# ------------------------------------------------------------ preprocessing (upstream pipelines)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
IMNET_MEAN, IMNET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def pipeline(resize, crop, mean, std):
    ops = []
    if resize is not None:
        ops.append(T.Resize(resize, interpolation=T.InterpolationMode.BICUBIC))
    if crop is not None:
        ops.append(T.CenterCrop(crop))
    ops += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(ops)


def randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "ln_" in name or name.endswith("gamma"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g) if name.endswith(("weight", "gamma"))
                        else 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (0.5 / math.sqrt(max(1, p.shape[-1]))))
    return model


# ------------------------------------------------------------ 1. check against the upstream fixtures
def check_upstream():
    arch = os.path.join(SHARED, "fixtures", "arch")
    if not os.path.isdir(arch):
        sys.exit(f"gen_models: {arch} not found; the reference modules must be checked against it first")
    worst = 0.0
    for case in sorted(os.listdir(arch)):
        d = os.path.join(arch, case)
        cfg = json.load(open(os.path.join(d, "config.json")))
        sd = load_safetensors(os.path.join(d, "model.safetensors"))
        px = torch.from_numpy(np.load(os.path.join(d, "pixel_values.npy")))
        ref = np.load(os.path.join(d, "embedding.npy"))
        if case == "clip-openai-naming":
            v = cfg["vision"]
            m = VisionTransformer(v["image_size"], v["patch_size"], v["width"], v["layers"], v["heads"], v["output_dim"])
            m.load_state_dict({k[len("visual."):]: t for k, t in sd.items()})
        elif case.startswith("dinov2") and "facebookresearch" in case:
            m = DinoVisionTransformer(cfg["image_size"], cfg["patch_size"], cfg["hidden_size"], cfg["num_hidden_layers"],
                                      cfg["num_attention_heads"], cfg["num_register_tokens"], False,
                                      cfg["interpolate_offset"], cfg["interpolate_antialias"])
            m.load_state_dict(sd)
        else:
            continue
        with torch.no_grad():
            out = m.eval()(px).numpy()
        err = float(np.abs(out - ref).max())
        worst = max(worst, err)
        print(f"gen_models: reference module reproduces {case}: max-abs {err:.2e}")
        if err > 1e-5:
            sys.exit(f"gen_models: {case} differs from upstream by {err}; refusing to generate")
    # the Kodak preprocessing too
    for case, pipe in [("clip-openai-naming", pipeline(224, 224, CLIP_MEAN, CLIP_STD)),
                       ("dinov2-facebookresearch-naming", pipeline(256, 224, IMNET_MEAN, IMNET_STD))]:
        px = np.load(os.path.join(arch, case, "pixel_values.npy"))
        for i, name in enumerate(["kodim23.png", "kodim04.png"]):
            ours = pipe(Image.open(os.path.join(SHARED, "data", "kodak", name)).convert("RGB")).numpy()
            err = float(np.abs(ours - px[i]).max())
            if err > 1e-6:
                sys.exit(f"gen_models: preprocessing of {name} differs from {case} by {err}")
    return worst


# ------------------------------------------------------------ 2. cases
def images():
    d = os.path.join(HERE, "data")
    rng = np.random.RandomState(11)
    yy, xx = np.mgrid[0:80, 0:96]
    a = np.stack([128 + 100 * np.sin(xx / 9.0), 128 + 90 * np.cos(yy / 7.0 + xx / 20.0), (xx * 2 + yy) % 256], -1)
    a = np.clip(a + rng.normal(0, 12, a.shape), 0, 255).astype(np.uint8)
    Image.fromarray(a, "RGB").save(os.path.join(d, "photo_96x80.png"))
    Image.fromarray(rng.randint(0, 256, (7, 10, 3), dtype=np.uint8), "RGB").save(os.path.join(d, "tiny_10x7.png"))
    return ["photo_96x80.png", "syn_64x48.png", "tiny_10x7.png", "syn_1x1.png", "syn_gray_33x17.png"]


@contextlib.contextmanager
def bf16_linears():
    """F.linear / F.conv2d on bfloat16-rounded inputs and weights, fp32 arithmetic
    (nn.Linear, nn.Conv2d and nn.MultiheadAttention's projections all call these),
    and the attention products (torch.matmul, torch.bmm) on rounded operands."""
    lin, conv, mm, bmm = F.linear, F.conv2d, torch.matmul, torch.bmm

    def r(t):
        return t.to(torch.bfloat16).float()

    F.linear = lambda x, w, b=None: lin(r(x), r(w), b)
    F.conv2d = lambda x, w, b=None, *a, **k: conv(r(x), r(w), b, *a, **k)
    torch.matmul = lambda a, b: mm(r(a), r(b))
    torch.bmm = lambda a, b: bmm(r(a), r(b))
    try:
        yield
    finally:
        F.linear, F.conv2d, torch.matmul, torch.bmm = lin, conv, mm, bmm


def write_case(name, files, config, pre, model, pipe, imgs, note):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))
    for fname, (tensors, dtype) in files.items():
        save_safetensors(os.path.join(d, fname), tensors, dtype)
    if len(files) > 1:
        wm = {k: f for f, (t, _) in files.items() for k in t}
        json.dump({"metadata": {"total_size": 0}, "weight_map": dict(sorted(wm.items()))},
                  open(os.path.join(d, "model.safetensors.index.json"), "w"), indent=1)
    json.dump(config, open(os.path.join(d, "config.json"), "w"), indent=1)
    json.dump(pre, open(os.path.join(d, "preprocessor_config.json"), "w"), indent=1)
    x = torch.stack([pipe(Image.open(os.path.join(HERE, "data", f)).convert("RGB")) for f in imgs])
    with torch.no_grad():
        e = model.eval()(x).numpy().astype(np.float32)
    np.save(os.path.join(d, "expected.npy"), e)
    with torch.no_grad(), bf16_linears():
        eb = model.eval()(x).numpy().astype(np.float32)
    np.save(os.path.join(d, "expected_bf16.npy"), eb)
    json.dump({"images": imgs, "input_hw": list(x.shape[2:]), "note": note},
              open(os.path.join(d, "case.json"), "w"), indent=1)
    print(f"gen_models: {name}: {e.shape} from input {tuple(x.shape[2:])}; bf16 moves it by max-abs "
          f"{np.abs(eb - e).max():.2e}")


def clip_case(name, sd32, dtype, naming, shards, imgs):
    m = VisionTransformer(64, 16, 32, 2, 2, 24)
    m.load_state_dict(rounded(sd32, dtype))
    sd = sd32 if naming == "openai" else clip_to_hf(sd32)
    if naming == "openai":
        sd = {"visual." + k: v for k, v in sd.items()}
    keys = sorted(sd)
    if shards == 1:
        files = {"model.safetensors": (sd, dtype)}
    else:
        files = {f"model-{i + 1:05d}-of-{shards:05d}.safetensors": ({k: sd[k] for k in keys[i::shards]}, dtype)
                 for i in range(shards)}
    cfg = ({"model_type": "clip", "naming": "openai", "vision": {"image_size": 64, "patch_size": 16, "width": 32,
                                                                  "layers": 2, "heads": 2, "output_dim": 24}}
           if naming == "openai" else
           {"architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": 24,
            "vision_config": {"hidden_size": 32, "image_size": 64, "patch_size": 16, "num_hidden_layers": 2,
                              "num_attention_heads": 2, "intermediate_size": 128, "hidden_act": "quick_gelu",
                              "layer_norm_eps": 1e-5, "projection_dim": 24}})
    pre = {"do_resize": True, "size": {"shortest_edge": 64}, "resample": 3, "do_center_crop": True,
           "crop_size": {"height": 64, "width": 64}, "do_rescale": True, "rescale_factor": 1 / 255,
           "do_normalize": True, "image_mean": list(CLIP_MEAN), "image_std": list(CLIP_STD)}
    write_case(name, files, cfg, pre, m, pipeline(64, 64, CLIP_MEAN, CLIP_STD), imgs,
               f"openai/CLIP VisionTransformer(64, 16, 32, 2, 2, 24), {dtype}, {naming} names, {shards} file(s)")


def dino_case(name, model, sd, naming, dtype, resize, crop, imgs, note, hw=None):
    """sd: the float32 weights; the file stores them in `dtype` and the expected
    embeddings come from a copy of `model` holding exactly those weights."""
    model = copy.deepcopy(model)
    model.load_state_dict(rounded(sd, dtype))
    sd = {k: v for k, v in sd.items()}
    if naming == "hf":
        sd = dino_to_hf(sd)
    cfg = {"model_type": "dinov2", "hidden_size": 32, "num_attention_heads": 2, "layer_norm_eps": 1e-6,
           "interpolate_offset": model.interpolate_offset, "interpolate_antialias": model.interpolate_antialias}
    if hw:  # resize to an exact (non-square) size, no crop
        pre = {"do_resize": True, "size": {"height": hw[0], "width": hw[1]}, "resample": 3, "do_center_crop": False,
               "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": list(IMNET_MEAN),
               "image_std": list(IMNET_STD)}
        pipe = T.Compose([T.Resize(hw, interpolation=T.InterpolationMode.BICUBIC), T.ToTensor(),
                          T.Normalize(IMNET_MEAN, IMNET_STD)])
    else:
        pre = {"do_resize": True, "size": {"shortest_edge": resize}, "resample": 3, "do_center_crop": True,
               "crop_size": {"height": crop, "width": crop}, "do_rescale": True, "rescale_factor": 1 / 255,
               "do_normalize": True, "image_mean": list(IMNET_MEAN), "image_std": list(IMNET_STD)}
        pipe = pipeline(resize, crop, IMNET_MEAN, IMNET_STD)
    write_case(name, {"model.safetensors": (sd, dtype)}, cfg, pre, model, pipe, imgs, note)


def main():
    worst = check_upstream()
    print(f"gen_models: reference modules match upstream (worst max-abs {worst:.2e})")
    os.makedirs(OUT, exist_ok=True)
    imgs = images()
    torch.manual_seed(0)
    clip = randomise(VisionTransformer(64, 16, 32, 2, 2, 24), 1)
    sd = {k: v.detach().clone() for k, v in clip.state_dict().items()}
    clip_case("clip-f32-openai", sd, "F32", "openai", 1, imgs)
    clip_case("clip-f16-openai", sd, "F16", "openai", 1, imgs)
    clip_case("clip-bf16-hf", sd, "BF16", "hf", 1, imgs)
    clip_case("clip-sharded-hf", sd, "F32", "hf", 3, imgs)

    # DINOv2 with SwiGLU (as ViT-g/14), 2 registers, native grid 7 (98 px): inputs are upsampled grids
    sw = randomise(DinoVisionTransformer(98, 14, 32, 2, 2, regs=2, swiglu=True, offset=0.0, antialias=True), 2)
    sdsw = {k: v.detach().clone() for k, v in sw.state_dict().items()}
    dino_case("dinov2-swiglu-reg-fb", sw, sdsw, "fb", "F32", 128, 112, imgs,
              "DINOv2 SwiGLUFFNFused, 2 registers, antialiased interpolation 7x7 -> 8x8")
    dino_case("dinov2-swiglu-reg-hf-bf16", sw, sdsw, "hf", "BF16", 128, 112, imgs,
              "same, Hugging Face names, BF16")
    # plain DINOv2, offset 0.1: non-square input (154 x 210 -> 11 x 15 grid) and 280 px (20 x 20 grid)
    pl = randomise(DinoVisionTransformer(98, 14, 32, 2, 2, regs=0, swiglu=False, offset=0.1, antialias=False), 3)
    sdpl = {k: v.detach().clone() for k, v in pl.state_dict().items()}
    dino_case("dinov2-nonsquare-fb", pl, sdpl, "fb", "F32", None, None, imgs,
              "DINOv2, offset-0.1 bicubic interpolation 7x7 -> 11x15, non-square input", hw=(154, 210))
    dino_case("dinov2-280-hf-f16", pl, sdpl, "hf", "F16", 320, 280, imgs,
              "DINOv2, interpolation 7x7 -> 20x20, 280 px input, F16, Hugging Face names")


if __name__ == "__main__":
    main()
