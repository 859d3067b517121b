#!/usr/bin/python3
"""Write the full-size models of bench/gpu/models.json as safetensors files
(DIR/<name>/model.safetensors), with the Python standard library only: the
GPU machine has no PyTorch. The values are a fixed pattern of 61 small
floats (cycled; LayerNorm gains 1, biases 0 are not needed: speed does not
depend on the values). For speed measurements only, never for accuracy.

usage: bench/gpu/weights.py OUT_DIR [NAME...]
"""
import array
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def write(path, tensors):
    pattern = array.array("f", [((i * 37) % 61 - 30) / 600.0 for i in range(61)]).tobytes()
    header, offset = {}, 0
    for name, shape in tensors:
        n = 1
        for s in shape:
            n *= s
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + 4 * n]}
        offset += 4 * n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for name, shape in tensors:
            n = 4
            for s in shape:
                n *= s
            block = pattern * (n // len(pattern) + 1)
            f.write(block[:n])
    os.replace(tmp, path)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__.split("usage: ")[1])
    models = json.load(open(os.path.join(HERE, "models.json")))
    names = sys.argv[2:] or list(models)
    for name in names:
        d = os.path.join(sys.argv[1], name)
        os.makedirs(d, exist_ok=True)
        f = os.path.join(d, "model.safetensors")
        if not os.path.exists(f):
            write(f, models[name])
        print(f)


if __name__ == "__main__":
    main()
