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


def write_streams():
    """tests/ref/imagenet_c_streams.npy: NumPy's own values for the pieces
    wobble reproduces, one float64 row each (see test_imagenet_c.c):
    np.exp of 512 arguments (the Gaussian and motion-blur kernels' and
    random ones in [-60, 0]) and np.sum of their growing prefixes, then for
    seeds 0, 1 and 2**32 - 1 the first 512 draws of random_sample, normal,
    uniform(-45, 45), poisson at lam 0.5 / 12 / 60, randint(-3, 3), and
    default_rng(seed).random()."""
    rs = np.random.RandomState(12345)
    args = [-0.5 / (s * s) * k * k for s in (0.7, 0.9, 1, 1.1, 1.5, 2, 3, 4, 6, 2.24) for k in range(25)]
    args += [-(k * k) / (2.0 * s * s) for s in (3, 4, 5, 8, 12, 15) for k in range(41)]
    args = np.array(args + list(rs.uniform(-60, 0, 512)))[:512]
    rows = [args, np.exp(args)]
    sums = np.array([args[:n].sum() for n in range(1, 513)])
    rows.append(sums)
    for seed in (0, 1, 2 ** 32 - 1):
        for f in (lambda: np.random.random_sample(512), lambda: np.random.normal(size=512),
                  lambda: np.random.uniform(-45, 45, 512), lambda: np.random.poisson(0.5, 512),
                  lambda: np.random.poisson(12.0, 512), lambda: np.random.poisson(60.0, 512),
                  lambda: np.random.randint(-3, 3, 512)):
            np.random.seed(seed)
            rows.append(np.asarray(f(), dtype=np.float64))
        rows.append(np.random.default_rng(seed).random(512))
    np.save(os.path.join(HERE, "imagenet_c_streams.npy"), np.array(rows, dtype=np.float64))


def main():
    write_streams()
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
