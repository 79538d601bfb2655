"""Training augmentation (docs/recipe.md, Augmentation) as explicit per-image parameters.

Every loader (DALI, the decoded cache and the PyTorch reference) applies the SAME parameters,
drawn here from the step's own generator: zero-pad 10 px → optional gray (uint8) → crop H×W
at (top, left) of the padded image → optional horizontal flip → normalise → optional erase box
set to ``fill`` → optional channel mixing → float16. Drawing them in one place keeps the
loaders comparable pixel for pixel and makes a resumed run identical.

What differs between methods beyond the views is one ``Augmentation`` per method and dataset
(``MethodSpec.augmentation``): DEEN's random gray, erase area and fill.

Gray (DEEN's RandomGrayscale on the PIL image) is PIL's ``convert('L')``, integer luma
``(19595·R + 38470·G + 7471·B + 32768) >> 16``, copied into all three channels of the uint8
pixels, before normalisation (``gray=None``: no image, and no work). The authors apply it after
Pad(10) and before the crop; the padding is zeros and luma(0, 0, 0) = 0, and the luma is per
pixel, so graying anywhere between decoding and normalisation gives the same pixels.

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
PIL_LUMA = (19595, 38470, 7471)  # PIL's convert('L'): (Σ w·c + PIL_ROUND) >> PIL_SHIFT
PIL_ROUND = 1 << 15
PIL_SHIFT = 16


@dataclass(frozen=True)
class Augmentation:
    """A method's training augmentation on one dataset, beyond what every method draws (pad,
    crop, flip, erasing with the ``erase_prob`` setting): the probability of a gray image (PIL
    luma, per image, both modalities), the erased area's fraction bounds and the erase fill
    in normalised space (None: the views' own: 0, or CAJ's with its channel views). The
    default is AGW's."""

    gray: float = 0.0
    erase_area: tuple[float, float] = ERASE_AREA
    fill: tuple[float, float, float] | None = None

    def __post_init__(self):
        low, high = self.erase_area
        if not 0.0 <= self.gray <= 1.0 or not 0.0 < low <= high <= 1.0:
            raise ValueError(f"gray {self.gray} must be in [0, 1] and the erase area "
                             f"{self.erase_area} in (0, 1], low ≤ high")
        if self.fill is not None and len(self.fill) != 3:
            raise ValueError(f"the erase fill {self.fill} needs one value per channel")


@dataclass(frozen=True)
class AugmentParams:
    """Per image: crop corner in the padded image, flip flag, erase box (top, left, h, w),
    the channel-mixing matrix (N×3×3 float32, or None: identity) and the gray flag (N bool,
    or None: no image gray). ``fill``: the erased box's normalised value per channel, the
    same for every image."""

    top: np.ndarray
    left: np.ndarray
    flip: np.ndarray
    erase: np.ndarray
    mix: np.ndarray | None = None
    fill: tuple[float, float, float] = ERASE_FILL
    gray: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.top)

    def take(self, picked: np.ndarray) -> AugmentParams:
        """The parameters of images ``picked`` (an index array), in that order."""
        return AugmentParams(self.top[picked], self.left[picked], self.flip[picked],
                             self.erase[picked],
                             None if self.mix is None else self.mix[picked], self.fill,
                             None if self.gray is None else self.gray[picked])

    @staticmethod
    def concatenate(parts: list[AugmentParams]) -> AugmentParams:
        """One set of parameters for the images of ``parts`` (same fill), in order."""
        mixes = [p.mix if p.mix is not None else identity_mix(len(p)) for p in parts]
        mixed = any(p.mix is not None for p in parts)
        grays = [p.gray if p.gray is not None else np.zeros(len(p), bool) for p in parts]
        grayed = any(p.gray is not None for p in parts)
        return AugmentParams(*(np.concatenate([getattr(p, name) for p in parts])
                               for name in ("top", "left", "flip", "erase")),
                             np.concatenate(mixes) if mixed else None, parts[0].fill,
                             np.concatenate(grays) if grayed else None)


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
                erase_prob: float = ERASE_P,
                erase_area: tuple[float, float] = ERASE_AREA) -> AugmentParams:
    """Crop corners, flips and erase boxes of ``count`` images. The same random numbers are
    drawn whatever ``erase_prob`` is, so other parameters do not change with it; the erase
    boxes' area is a fraction in ``erase_area`` of the image."""
    top = rng.integers(0, 2 * PAD + 1, count).astype(np.int32)
    left = rng.integers(0, 2 * PAD + 1, count).astype(np.int32)
    flip = rng.random(count) < FLIP_P
    erase = np.array([_erase_box(rng, height, width, erase_prob, erase_area)
                      for _ in range(count)], dtype=np.int32)
    return AugmentParams(top, left, flip, erase.reshape(count, 4))


def draw_gray(rng: np.random.Generator, count: int, probability: float) -> np.ndarray | None:
    """DEEN's RandomGrayscale: each image gray with ``probability`` (None when 0: no draw)."""
    return rng.random(count) < probability if probability > 0 else None


def _erase_box(rng: np.random.Generator, height: int, width: int,
               probability: float = ERASE_P,
               area_bounds: tuple[float, float] = ERASE_AREA) -> tuple[int, int, int, int]:
    """The original's RandomErasing box, or an empty box when it does not fire."""
    if rng.random() >= probability:
        return (0, 0, 0, 0)
    for _ in range(ERASE_ATTEMPTS):
        area = rng.uniform(*area_bounds) * height * width
        aspect = rng.uniform(ERASE_MIN_ASPECT, 1 / ERASE_MIN_ASPECT)
        h = int(round(math.sqrt(area * aspect)))
        w = int(round(math.sqrt(area / aspect)))
        if h < height and w < width:
            return (int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w)
    return (0, 0, 0, 0)

