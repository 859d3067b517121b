#!/usr/bin/env python3
"""Bad inputs for tests/test_badinput.sh, made from the tests' own good
ones: truncated, corrupt or empty images, checkpoints, configs and datasets,
wrong shapes, NaN and Inf weights. usage: make_inputs.py REF_DIR OUT_DIR"""
import json, os, shutil, struct, sys

ref, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
P = lambda *a: os.path.join(out, *a)
W = lambda path, data: open(path, "wb").write(data)
good_png = open(os.path.join(ref, "data", "syn_33x17.png"), "rb").read()
good_model = os.path.join(ref, "models", "clip-f32-openai")

# ---- images
W(P("truncated.png"), good_png[:60])
W(P("empty.png"), b"")
W(P("text.png"), b"this is not an image\n")
W(P("garbage.jpg"), bytes((i * 97 + 13) % 256 for i in range(4000)))
jpg = open(os.path.join(ref, "data", "io", "gray.jpg"), "rb").read()
W(P("truncated.jpg"), jpg[: len(jpg) // 3])
W(P("noeoi.jpg"), jpg[:20])
shutil.copy(os.path.join(ref, "data", "io", "bad_huge.png"), P("huge.png"))
W(P("notes.txt"), b"text\n")

# ---- checkpoints: folders like the good tiny CLIP with one thing broken
st = open(os.path.join(good_model, "model.safetensors"), "rb").read()
hlen = struct.unpack("<Q", st[:8])[0]
header = json.loads(st[8 : 8 + hlen])
body = st[8 + hlen :]

def model(name, data=None, header_obj=None, cfg=None, pre=None, raw_header=None):
    d = P(name)
    os.makedirs(d, exist_ok=True)
    for f in ("config.json", "preprocessor_config.json"):
        shutil.copy(os.path.join(good_model, f), os.path.join(d, f))
    if cfg is not None:
        open(os.path.join(d, "config.json"), "w").write(cfg)
    if pre is not None:
        open(os.path.join(d, "preprocessor_config.json"), "w").write(pre)
    if data is None:
        h = raw_header if raw_header is not None else json.dumps(header_obj if header_obj is not None else header).encode()
        data = struct.pack("<Q", len(h)) + h + body
    W(os.path.join(d, "model.safetensors"), data)

def with_value(tensor, value):
    b = bytearray(body)
    off = header[tensor]["data_offsets"][0]
    b[off : off + 4] = struct.pack("<f", value)
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + bytes(b)

model("m-truncated", data=st[: len(st) // 2])
model("m-empty-file", data=b"")
model("m-header-garbage", raw_header=b"this is not json")
model("m-header-len", data=struct.pack("<Q", 1 << 40) + st[8:])
model("m-nan", data=with_value("visual.conv1.weight", float("nan")))
model("m-inf", data=with_value("visual.ln_pre.weight", float("inf")))
h = json.loads(json.dumps(header)); h["visual.conv1.weight"]["shape"] = list(reversed(h["visual.conv1.weight"]["shape"]))
model("m-shape", header_obj=h)
h = json.loads(json.dumps(header)); del h["visual.class_embedding"]
model("m-missing", header_obj=h)
h = json.loads(json.dumps(header)); h["visual.proj"]["dtype"] = "Q4"
model("m-dtype", header_obj=h)
h = json.loads(json.dumps(header)); a, b2 = h["visual.ln_pre.bias"]["data_offsets"]; h["visual.ln_pre.weight"]["data_offsets"] = [a, b2]
model("m-overlap", header_obj=h)
model("m-config-json", cfg="{\n \"model_type\": \"clip\",\n")
cfg = json.load(open(os.path.join(good_model, "config.json")))
cfg["vision"]["heads"] = 3
model("m-heads", cfg=json.dumps(cfg))
model("m-eps", cfg=json.dumps({"model_type": "clip", "naming": "openai", "layer_norm_eps": -1.0,
                               "vision": dict(cfg["vision"], heads=2, layer_norm_eps=-1.0)}))
pre = json.load(open(os.path.join(good_model, "preprocessor_config.json")))
model("m-std", pre=json.dumps(dict(pre, image_std=[0.0, 0.26, 0.27])))
model("m-size", pre=json.dumps(dict(pre, crop_size={"height": 0, "width": 64})))
model("m-resample", pre=json.dumps(dict(pre, resample=9)))
os.makedirs(P("m-nothing"), exist_ok=True)  # a folder without weights

# ---- datasets
os.makedirs(P("ds-empty"), exist_ok=True)
os.makedirs(P("ds-broken"), exist_ok=True)
W(P("ds-broken", "a.png"), good_png[:50])
W(P("ds-broken", "b.jpg"), b"\xff\xd8\xff")
W(P("cifar-short.bin"), bytes(3073 * 2 - 1))
W(P("images-idx3-ubyte"), struct.pack(">IIII", 0x801, 2, 2, 2) + bytes(8))  # wrong magic (a label file's)
W(P("cnt-images-idx3-ubyte"), struct.pack(">IIII", 0x803, 3, 2, 2) + bytes(12))
W(P("cnt-labels-idx1-ubyte"), struct.pack(">II", 0x801, 2) + bytes(2))
W(P("sz-images-idx3-ubyte"), struct.pack(">IIII", 0x803, 3, 2, 2) + bytes(11))
W(P("sz-labels-idx1-ubyte"), struct.pack(">II", 0x801, 3) + bytes(3))
# a labelled tree with a class the training tree lacks
for cls in ("a", "b"):
    os.makedirs(P("tree-train", cls), exist_ok=True)
    for i in range(3):
        shutil.copy(os.path.join(ref, "data", "syn_33x17.png"), P("tree-train", cls, f"{i}.png"))
for cls in ("a", "z"):
    os.makedirs(P("tree-test", cls), exist_ok=True)
    shutil.copy(os.path.join(ref, "data", "syn_64x48.png"), P("tree-test", cls, "0.png"))
# a regular file where a folder is needed
W(P("plainfile"), b"x")
# a templates file without {} and an empty class-names file
W(P("templates.txt"), b"a photo\n")
W(P("empty.txt"), b"")
