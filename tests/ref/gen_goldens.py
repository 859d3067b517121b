#!/usr/bin/python3
"""Generate the golden data for wobble's image I/O and perturbation tests.

Run with Debian's python3 (python3-pil 9.4, python3-torchvision 0.14,
python3-numpy):  /usr/bin/python3 tests/ref/gen_goldens.py [SHARED_DIR]

Writes, under tests/ref/:
  data/syn_*.png           small synthetic inputs (odd sizes, once-grayscale)
  data/io/*.png|jpg        decoder edge cases (bit depths, palettes, alpha,
                           interlace, CMYK, progressive) and crafted bad files
  io_goldens.tsv           file, width, height, crc32 of Pillow's
                           Image.open(f).convert("RGB") bytes
  perturb_goldens.tsv      source, op, level, width, height, crc32 of the
                           reference output (Pillow / torchvision)
Everything is deterministic; the outputs are committed.
"""
import io
import math
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter
import torchvision.transforms.functional as TF

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
IO = os.path.join(DATA, "io")
SHARED = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
    "WOBBLE_SHARED", os.path.join(HERE, "..", "..", "..", "shared"))


def crc(im):
    assert im.mode == "RGB"
    return zlib.crc32(im.tobytes()) & 0xFFFFFFFF


# ---------------------------------------------------------------- PNG writer
def png_chunk(tag, data):
    c = zlib.crc32(tag + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", c)


def pack_rows(a, bit_depth, channels):
    """a: uint array [h, w*channels] of samples -> list of raw row bytes."""
    rows = []
    for r in a:
        if bit_depth == 16:
            rows.append(r.astype(">u2").tobytes())
        elif bit_depth == 8:
            rows.append(r.astype(np.uint8).tobytes())
        else:
            per = 8 // bit_depth
            n = len(r)
            pad = (-n) % per
            rr = np.concatenate([r, np.zeros(pad, dtype=r.dtype)]).astype(np.uint8)
            rr = rr.reshape(-1, per)
            b = np.zeros(len(rr), dtype=np.uint8)
            for i in range(per):
                b |= (rr[:, i] << (8 - bit_depth * (i + 1))).astype(np.uint8)
            rows.append(b.tobytes())
    return rows


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def filter_row(row, prev, bpp, ftype):
    """PNG filter `ftype` (1 Sub, 2 Up, 3 Average, 4 Paeth) of one row of
    bytes, as the PNG specification (section 9) defines it."""
    out = bytearray(len(row))
    for i, x in enumerate(row):
        a = row[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        if ftype == 1:
            pred = a
        elif ftype == 2:
            pred = b
        elif ftype == 3:
            pred = (a + b) // 2
        else:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
        out[i] = (x - pred) & 255
    return bytes(out)


def write_png(path, samples, w, h, bit_depth, color_type, channels, palette=None, trns=None, interlace=False,
              filters=False, idat_size=None):
    """samples: uint array [h, w, channels]. filters: row y takes filter type
    y % 5 (else None everywhere); idat_size: split the zlib stream into IDAT
    chunks of that many bytes."""
    raw = b""
    if not interlace:
        prev = None
        bpp = max(1, bit_depth * channels // 8)
        for y, row in enumerate(pack_rows(samples.reshape(h, w * channels), bit_depth, channels)):
            ftype = y % 5 if filters else 0
            raw += bytes([ftype]) + (filter_row(row, prev or bytes(len(row)), bpp, ftype) if ftype else row)
            prev = row
    else:
        for (x0, y0, dx, dy) in ADAM7:
            sub = samples[y0::dy, x0::dx]
            if sub.shape[0] == 0 or sub.shape[1] == 0:
                continue
            sh, sw = sub.shape[0], sub.shape[1]
            for row in pack_rows(sub.reshape(sh, sw * channels), bit_depth, channels):
                raw += b"\x00" + row
    out = b"\x89PNG\r\n\x1a\n"
    out += png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 1 if interlace else 0))
    if palette is not None:
        out += png_chunk(b"PLTE", bytes(palette))
    if trns is not None:
        out += png_chunk(b"tRNS", trns)
    z = zlib.compress(raw, 9)
    step = idat_size or len(z)
    for i in range(0, len(z), step):
        out += png_chunk(b"IDAT", z[i:i + step])
    out += png_chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(out)


def make_synthetic():
    rng = np.random.RandomState(20261127)
    out = {}
    for (w, h) in [(1, 1), (3, 5), (33, 17)]:
        a = rng.randint(0, 256, size=(h, w, 3), dtype=np.uint8)
        Image.fromarray(a, "RGB").save(os.path.join(DATA, f"syn_{w}x{h}.png"))
        out[f"syn_{w}x{h}.png"] = None
    # smooth colour gradients with saturated and dark areas (HSV corner cases)
    yy, xx = np.mgrid[0:48, 0:64]
    a = np.stack([xx * 4, yy * 5, (xx + yy) * 2 % 256], -1).astype(np.uint8)
    a[:4] = 0
    a[-4:, :, :] = 255
    Image.fromarray(a, "RGB").save(os.path.join(DATA, "syn_64x48.png"))
    # an image that was grayscale (stored as L)
    g = rng.randint(0, 256, size=(17, 33), dtype=np.uint8)
    Image.fromarray(g, "L").save(os.path.join(DATA, "syn_gray_33x17.png"))
    return ["syn_1x1.png", "syn_3x5.png", "syn_33x17.png", "syn_64x48.png", "syn_gray_33x17.png"]


def make_io_cases():
    rng = np.random.RandomState(7)
    w, h = 13, 7
    files = []

    def add(name):
        files.append(name)
        return os.path.join(IO, name)

    for bd in (1, 2, 4, 8, 16):
        s = rng.randint(0, 2 ** bd, size=(h, w, 1))
        write_png(add(f"gray{bd}.png"), s, w, h, bd, 0, 1)
    # 16-bit gray with small values (Pillow keeps them: mode I clipped to 255)
    s = rng.randint(0, 300, size=(h, w, 1))
    write_png(add("gray16_low.png"), s, w, h, 16, 0, 1)
    s = rng.randint(0, 256, size=(h, w, 1))
    write_png(add("gray8_trns.png"), s, w, h, 8, 0, 1, trns=struct.pack(">H", int(s[0, 0, 0])))
    for bd in (8, 16):
        s = rng.randint(0, 2 ** bd, size=(h, w, 3))
        write_png(add(f"rgb{bd}.png"), s, w, h, bd, 2, 3)
        s = rng.randint(0, 2 ** bd, size=(h, w, 2))
        write_png(add(f"gray_alpha{bd}.png"), s, w, h, bd, 4, 2)
        s = rng.randint(0, 2 ** bd, size=(h, w, 4))
        write_png(add(f"rgba{bd}.png"), s, w, h, bd, 6, 4)
    s = rng.randint(0, 256, size=(h, w, 3))
    write_png(add("rgb8_trns.png"), s, w, h, 8, 2, 3, trns=struct.pack(">HHH", *[int(v) for v in s[0, 0]]))
    for bd in (1, 2, 4, 8):
        n = 2 ** bd
        pal = rng.randint(0, 256, size=n * 3).tolist()
        s = rng.randint(0, n, size=(h, w, 1))
        write_png(add(f"palette{bd}.png"), s, w, h, bd, 3, 1, palette=pal)
    pal = rng.randint(0, 256, size=16 * 3).tolist()
    s = rng.randint(0, 16, size=(h, w, 1))
    write_png(add("palette8_trns.png"), s, w, h, 8, 3, 1, palette=pal, trns=bytes(rng.randint(0, 256, 16).tolist()))
    s = rng.randint(0, 256, size=(h, w, 3))
    write_png(add("rgb8_interlaced.png"), s, w, h, 8, 2, 3, interlace=True)
    s = rng.randint(0, 4, size=(h, w, 1))
    write_png(add("gray2_interlaced.png"), s, w, h, 2, 0, 1, interlace=True)

    # JPEGs written by Pillow
    base = Image.open(os.path.join(DATA, "syn_64x48.png")).convert("RGB")
    base.save(add("rgb420.jpg"), quality=80)
    base.save(add("rgb444.jpg"), quality=80, subsampling=0)
    base.save(add("rgb422.jpg"), quality=80, subsampling=1)
    base.save(add("progressive.jpg"), quality=70, progressive=True)
    base.convert("L").save(add("gray.jpg"), quality=85)
    base.convert("CMYK").save(add("cmyk.jpg"), quality=90)
    base.crop((0, 0, 61, 45)).save(add("odd_61x45.jpg"), quality=60)

    # 8-bit PNGs with every filter type (row y: type y % 5) and the data in
    # many IDAT chunks: the decoder's fast path (src/image/png.c)
    frng = np.random.RandomState(8)
    fw, fh = 29, 11
    for name, ct, ch in (("gray8", 0, 1), ("gray_alpha8", 4, 2), ("rgb8", 2, 3), ("rgba8", 6, 4)):
        smooth = (np.arange(fw)[None, :, None] * 7 + np.arange(fh)[:, None, None] * 11 + np.arange(ch) * 50) % 256
        s = (smooth + frng.randint(0, 24, size=(fh, fw, ch))) % 256
        write_png(add(f"{name}_filters.png"), s, fw, fh, 8, ct, ch, filters=True, idat_size=37)

    lines = []
    for name in files:
        im = Image.open(os.path.join(IO, name))
        rgb = im.convert("RGB")
        lines.append(f"{name}\t{rgb.size[0]}\t{rgb.size[1]}\t{crc(rgb):08x}\t{im.mode}")
    with open(os.path.join(HERE, "io_goldens.tsv"), "w") as f:
        f.write("# file\twidth\theight\tcrc32_of_rgb\tpillow_mode  (Image.open(f).convert('RGB'), Pillow 9.4)\n")
        f.write("\n".join(lines) + "\n")

    # crafted bad files: valid structure, absurd dimensions
    write_png(os.path.join(IO, "bad_huge.png"), np.zeros((1, 1, 1)), 1, 1, 8, 0, 1)
    data = open(os.path.join(IO, "bad_huge.png"), "rb").read()
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    data = data[:8] + png_chunk(b"IHDR", ihdr) + data[8 + 25:]
    open(os.path.join(IO, "bad_huge.png"), "wb").write(data)
    j = bytearray(open(os.path.join(IO, "gray.jpg"), "rb").read())
    i = j.find(b"\xff\xc0")
    j[i + 5:i + 9] = struct.pack(">HH", 60000, 60000)
    open(os.path.join(IO, "bad_huge.jpg"), "wb").write(bytes(j))
    open(os.path.join(IO, "bad_garbage.png"), "wb").write(b"\x89PNG\r\n\x1a\n" + bytes(rng.randint(0, 256, 200).tolist()))
    open(os.path.join(IO, "bad_notimage.txt"), "wb").write(b"hello, this is not an image\n")


def ref(im, op, k):
    if op == "jpeg":
        b = io.BytesIO()
        im.save(b, format="JPEG", quality=int(k))
        b.seek(0)
        return Image.open(b).convert("RGB")
    if op == "brightness":
        return ImageEnhance.Brightness(im).enhance(k)
    if op == "contrast":
        return ImageEnhance.Contrast(im).enhance(k)
    if op == "saturation":
        return ImageEnhance.Color(im).enhance(k)
    if op == "sharpness":
        return ImageEnhance.Sharpness(im).enhance(k)
    if op == "hue":
        return TF.adjust_hue(im, k)
    if op == "gaussian_blur":
        return im.filter(ImageFilter.GaussianBlur(radius=k))
    if op == "rescale":
        w, h = im.size
        sw, sh = max(1, math.floor(w * k + 0.5)), max(1, math.floor(h * k + 0.5))
        return im.resize((sw, sh), Image.BICUBIC).resize((w, h), Image.BICUBIC)
    raise ValueError(op)


DEFAULT_GRID = {
    "jpeg": [90, 70, 50, 30, 10],
    "brightness": [0.9, 0.75, 0.6, 0.45, 0.3],
    "contrast": [0.9, 0.75, 0.6, 0.45, 0.3],
    "saturation": [0.8, 0.6, 0.4, 0.2, 0.0],
    "sharpness": [1.5, 2.0, 3.0, 4.0, 6.0],
    "hue": [0.02, 0.05, 0.1, 0.2, 0.35],
    "gaussian_blur": [0.5, 1.0, 1.5, 2.5, 4.0],
    "rescale": [0.75, 0.5, 0.35, 0.25, 0.125],
}
# Domain ends, identities (except hue 0: torchvision's round trip through
# 8-bit HSV is not an identity, wobble's documented identity is an exact copy)
# and values beyond the default grid.
EXTENDED = {
    "jpeg": [1, 5, 24, 25, 75, 95, 99, 100],
    "brightness": [0, 0.1, 1, 1.25, 2, 10],
    "contrast": [0, 0.1, 1, 1.25, 2, 10],
    "saturation": [0.1, 1, 1.5, 3, 10],
    "sharpness": [0, 0.5, 1, 10, 50],
    "hue": [-0.5, -0.35, -0.1, -0.01, 0.001, 0.25, 0.5],
    "gaussian_blur": [0, 0.1, 0.3, 0.7, 10, 50],
    "rescale": [1, 0.9, 0.6, 0.33, 0.01],
}


def main():
    os.makedirs(IO, exist_ok=True)
    syn = make_synthetic()
    make_io_cases()
    rows = []

    def emit(src_label, im, op, k):
        out = ref(im, op, k)
        rows.append(f"{src_label}\t{op}\t{k!r}\t{out.size[0]}\t{out.size[1]}\t{crc(out):08x}")

    for name in syn:
        im = Image.open(os.path.join(DATA, name)).convert("RGB")
        for op in DEFAULT_GRID:
            for k in DEFAULT_GRID[op] + EXTENDED[op]:
                emit(name, im, op, k)
    kodak = os.path.join(SHARED, "data", "kodak")
    if not os.path.isdir(kodak):
        sys.exit(f"gen_goldens: {kodak} not found (pass the shared folder as argument)")
    names = sorted(f for f in os.listdir(kodak) if f.endswith(".png"))
    for i, name in enumerate(names):
        im = Image.open(os.path.join(kodak, name)).convert("RGB")
        for op in DEFAULT_GRID:
            ks = DEFAULT_GRID[op] + (EXTENDED[op] if i % 8 == 0 else [])
            for k in ks:
                emit("kodak/" + name, im, op, k)
    with open(os.path.join(HERE, "perturb_goldens.tsv"), "w") as f:
        f.write("# source\top\tlevel\twidth\theight\tcrc32_of_rgb  (Pillow 9.4 / torchvision 0.14 reference)\n")
        f.write("\n".join(rows) + "\n")
    print(f"gen_goldens: {len(rows)} perturbation goldens")


if __name__ == "__main__":
    main()
