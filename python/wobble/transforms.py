"""torchvision-style transforms over wobble's perturbations.

    from torchvision import transforms as T
    from wobble.transforms import Perturb
    aug = T.Compose([Perturb("jpeg", 30), T.ToTensor()])

Perturb(op, level, seed=None) is a callable on a PIL image (returns a PIL
RGB image) or a uint8 [H, W, 3] / [H, W] array (returns an array). The
result is wobble.perturb's: Pillow-exact for the editing operations.

seed: for the random operations (gaussian_noise, imagenet_c.*). With an
integer, every call draws the same noise for the same image and level, as
`wobble perturb --seed` does. With None (the default), each call
draws a fresh seed from Python's `random` module, as a random augmentation
does (seed `random` for reproducible runs).
"""
import random

import numpy as np

from . import perturb as _perturb
from . import _wobble

__all__ = ["Perturb"]


class Perturb:
    def __init__(self, op, level, seed=None):
        self.op = str(op)
        self.level = float(level)
        self.seed = seed
        _wobble.check_level(self.op, self.level)  # unknown op or a level outside its domain: WobbleError now

    def __call__(self, img):
        seed = random.getrandbits(63) if self.seed is None else self.seed
        try:
            from PIL import Image
        except ImportError:  # arrays only
            Image = None
        if Image is not None and isinstance(img, Image.Image):
            out = _perturb(np.asarray(img.convert("RGB")), self.op, self.level, seed=seed)
            return Image.fromarray(out, "RGB")
        return _perturb(img, self.op, self.level, seed=seed)

    def __repr__(self):
        s = "" if self.seed is None else f", seed={self.seed}"
        return f"Perturb({self.op!r}, {self.level:g}{s})"
