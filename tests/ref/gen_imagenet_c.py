#!/usr/bin/python3
"""Goldens for wobble's ImageNet-C corruptions: imagecorruptions 1.1.2 itself.

Run with Debian's python3 (python3-numpy 1.24, -scipy 1.10, -skimage 0.19,
-opencv 4.6, -numba, -pil 9.4) from the repository root:

    /usr/bin/python3 tests/ref/gen_imagenet_c.py [SHARED_DIR]

For every corruption, severity 1-5 and Kodak crop in CROPS it runs

    np.random.seed(seed); imagecorruptions.corrupt(x, severity, name)

(the seed contract of `wobble perturb --op imagenet_c.NAME --level S
--seed N`), with two documented adjustments: impulse_noise passes the seed to
skimage.util.random_noise (which then draws from np.random.default_rng(seed);
imagecorruptions passes none, so its own output is not reproducible), and
glass_blur runs with NUMBA_DISABLE_JIT=1 so that its pixel shuffle draws from
NumPy's global RandomState. Writes tests/ref/imagenet_c_goldens.tsv: crop,
corruption, severity, seed, crc32 of the uint8 output, and the sum of its
values (a check that also localises near-misses).

The reference's source is read from SHARED_DIR/reference/imagecorruptions-1.1.2
(default ../shared, or $WOBBLE_SHARED); the crops from SHARED_DIR/data/kodak.
"""
import os
import sys
import zlib

os.environ["NUMBA_DISABLE_JIT"] = "1"  # before numba is imported

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
    "WOBBLE_SHARED", os.path.join(HERE, "..", "..", "..", "shared"))
sys.path.insert(0, os.path.join(SHARED, "reference", "imagecorruptions-1.1.2"))

import imagecorruptions  # noqa: E402
from imagecorruptions import corruptions as C  # noqa: E402

REAL_NOISE = C.sk.util.random_noise

# kodak file, left, top, width, height: the minimum, odd and non-square
# sizes, and the 224 x 224 of the ImageNet pipeline
CROPS = [
    ("kodim01.png", 100, 100, 32, 32),
    ("kodim05.png", 300, 200, 57, 41),
    ("kodim13.png", 200, 150, 67, 100),
    ("kodim23.png", 240, 120, 224, 224),
]

# all 19, in imagecorruptions' order (15 standard, then 4 validation)
NAMES = imagecorruptions.get_corruption_names("all")


def crop(spec):
    f, x, y, w, h = spec
    im = Image.open(os.path.join(SHARED, "data", "kodak", f)).convert("RGB")
    return np.array(im.crop((x, y, x + w, y + h)))


def seeded_random_noise(seed):
    real = REAL_NOISE

    def f(image, **kw):
        return real(image, seed=seed, **kw)
    return f


def main():
    real_noise = C.sk.util.random_noise
    rows = ["# crop\tcorruption\tseverity\tseed\tcrc32\tsum  (imagecorruptions 1.1.2; numpy %s)" % np.__version__]
    for ci, spec in enumerate(CROPS):
        x = crop(spec)
        for name in NAMES:
            for sev in range(1, 6):
                seed = 1000 * ci + 10 * sev + NAMES.index(name)
                C.sk.util.random_noise = seeded_random_noise(seed)
                np.random.seed(seed)
                y = imagecorruptions.corrupt(x, severity=sev, corruption_name=name)
                C.sk.util.random_noise = real_noise
                assert y.dtype == np.uint8 and y.shape == x.shape
                tag = "%s:%d,%d,%dx%d" % spec
                rows.append("%s\t%s\t%d\t%d\t%08x\t%d" % (tag, name, sev, seed,
                                                         zlib.crc32(y.tobytes()) & 0xFFFFFFFF, int(y.sum())))
    with open(os.path.join(HERE, "imagenet_c_goldens.tsv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    print("wrote %d goldens" % (len(rows) - 1))


if __name__ == "__main__":
    main()
