"""Training augmentation (docs/recipe.md, Augmentation) as explicit per-image parameters.

Both loaders (DALI and the PyTorch reference) apply the SAME parameters, drawn here from the
step's own generator: zero-pad 10 px → crop H×W at (top, left) of the padded image → optional
horizontal flip → normalise → optional erase box set to 0. Drawing them in one place keeps the
two loaders comparable pixel for pixel and makes a resumed run identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PAD = 10
FLIP_P = 0.5
ERASE_P = 0.5
ERASE_ATTEMPTS = 100
ERASE_AREA = (0.02, 0.4)
ERASE_MIN_ASPECT = 0.3


@dataclass(frozen=True)
class AugmentParams:
    """Per image: crop corner in the padded image, flip flag, erase box (top, left, h, w)."""

    top: np.ndarray
    left: np.ndarray
    flip: np.ndarray
    erase: np.ndarray

    def __len__(self) -> int:
        return len(self.top)


def identity_params(count: int) -> AugmentParams:
    """Augmentation off: the crop at (PAD, PAD) of the padded image is the image itself."""
    zeros = np.zeros(count, dtype=np.int32)
    return AugmentParams(zeros + PAD, zeros + PAD, zeros.astype(bool),
                         np.zeros((count, 4), dtype=np.int32))


def draw_params(rng: np.random.Generator, count: int, height: int, width: int,
                erase_prob: float = ERASE_P) -> AugmentParams:
    """Crop corners, flips and erase boxes of ``count`` images. The same random numbers are
    drawn whatever ``erase_prob`` is, so other parameters do not change with it."""
    top = rng.integers(0, 2 * PAD + 1, count).astype(np.int32)
    left = rng.integers(0, 2 * PAD + 1, count).astype(np.int32)
    flip = rng.random(count) < FLIP_P
    erase = np.array([_erase_box(rng, height, width, erase_prob) for _ in range(count)],
                     dtype=np.int32)
    return AugmentParams(top, left, flip, erase.reshape(count, 4))


def _erase_box(rng: np.random.Generator, height: int, width: int,
               probability: float = ERASE_P) -> tuple[int, int, int, int]:
    """The original's RandomErasing box (mean 0), or an empty box when it does not fire."""
    if rng.random() >= probability:
        return (0, 0, 0, 0)
    for _ in range(ERASE_ATTEMPTS):
        area = rng.uniform(*ERASE_AREA) * height * width
        aspect = rng.uniform(ERASE_MIN_ASPECT, 1 / ERASE_MIN_ASPECT)
        h = int(round(math.sqrt(area * aspect)))
        w = int(round(math.sqrt(area / aspect)))
        if h < height and w < width:
            return (int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w)
    return (0, 0, 0, 0)

