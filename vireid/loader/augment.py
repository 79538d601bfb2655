"""Training augmentation (docs/recipe.md, Augmentation) as explicit per-image parameters.

Every loader (DALI, the decoded cache and the PyTorch reference) applies the SAME parameters,
drawn here from the step's own generator: zero-pad 10 px → crop H×W at (top, left) of the
padded image → optional horizontal flip → normalise → optional erase box set to ``fill`` →
optional channel mixing → float16. Drawing them in one place keeps the loaders comparable
pixel for pixel and makes a resumed run identical.

Channel mixing (CAJ's channel exchange and adaptive gray, docs/methods.md) is one 3×3 matrix
per image acting on the float32 normalised (and erased) channels: output channel c is
``(M[c,0]·x0 + M[c,1]·x1) + M[c,2]·x2``, in that order, rounded once to float16. A copy of
channel k is the row (0,…,1,…,0) in every output channel; CAJ's gray is (0.2989, 0.5870,
0.1140) in every row; ``mix=None`` means the identity for every image (and skips the work).
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
ERASE_FILL = (0.0, 0.0, 0.0)  # AGW: the erased box is 0 after normalisation
CAJ_ERASE_FILL = (0.4914, 0.4822, 0.4465)  # CAJ's ChannelRandomErasing, normalised space
GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)  # CAJ's adaptive gray, on the normalised channels
ADAPTIVE_GRAY_P = 0.5  # CAJ: the gray branch (1 in 4) turns gray with this probability


@dataclass(frozen=True)
class AugmentParams:
    """Per image: crop corner in the padded image, flip flag, erase box (top, left, h, w),
    and the channel-mixing matrix (N×3×3 float32, or None: identity). ``fill``: the erased
    box's normalised value per channel, the same for every image."""

    top: np.ndarray
    left: np.ndarray
    flip: np.ndarray
    erase: np.ndarray
    mix: np.ndarray | None = None
    fill: tuple[float, float, float] = ERASE_FILL

    def __len__(self) -> int:
        return len(self.top)

    def take(self, picked: np.ndarray) -> AugmentParams:
        """The parameters of images ``picked`` (an index array), in that order."""
        return AugmentParams(self.top[picked], self.left[picked], self.flip[picked],
                             self.erase[picked],
                             None if self.mix is None else self.mix[picked], self.fill)

    @staticmethod
    def concatenate(parts: list[AugmentParams]) -> AugmentParams:
        """One set of parameters for the images of ``parts`` (same fill), in order."""
        mixes = [p.mix if p.mix is not None else identity_mix(len(p)) for p in parts]
        mixed = any(p.mix is not None for p in parts)
        return AugmentParams(*(np.concatenate([getattr(p, name) for p in parts])
                               for name in ("top", "left", "flip", "erase")),
                             np.concatenate(mixes) if mixed else None, parts[0].fill)


def identity_mix(count: int) -> np.ndarray:
    return np.repeat(np.eye(3, dtype=np.float32)[None], count, axis=0)


def copy_mix(channels: np.ndarray) -> np.ndarray:
    """Per image, channel ``channels[i]`` copied into all three channels."""
    mix = np.zeros((len(channels), 3, 3), dtype=np.float32)
    mix[np.arange(len(channels)), :, np.asarray(channels)] = 1.0
    return mix


def draw_channel_exchange(rng: np.random.Generator, count: int) -> np.ndarray:
    """CAJ's ChannelExchange(gray=2): R, G or B copied to all channels, 1/3 each; always."""
    return copy_mix(rng.integers(0, 3, count))


def draw_adaptive_gray(rng: np.random.Generator, count: int,
                       probability: float = ADAPTIVE_GRAY_P) -> np.ndarray:
    """CAJ's ChannelAdapGray(0.5): R, G or B copied to all channels (1/4 each); otherwise
    gray when u ≤ probability (1/8), unchanged when u > probability (1/8). Both numbers are
    drawn for every image, so the draws do not depend on the outcomes."""
    choice = rng.integers(0, 4, count)
    u = rng.random(count)
    mix = copy_mix(np.minimum(choice, 2))
    gray = (choice == 3) & (u <= probability)
    mix[gray] = np.asarray(GRAY_WEIGHTS, dtype=np.float32)[None, :]
    mix[(choice == 3) & ~gray] = np.eye(3, dtype=np.float32)
    return mix


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

