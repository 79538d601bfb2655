"""Pixels of fake pedestrians whose identity is visible in BOTH modalities.

Each identity has a code: per horizontal band of the body an intensity level, a colour and
an optional vertical stripe. The visible rendering paints the bands in their colours scaled by
the level; the infrared rendering paints the same levels in grey (3 equal channels). Shifts,
brightness jitter, a fine texture and noise make every image different, and make the stored
JPEGs about as large as real pedestrian crops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

BANDS = 8
CODE_STREAM = 9_871  # identity codes come from their own seed stream, independent of trees


@dataclass(frozen=True)
class IdentityCode:
    levels: np.ndarray  # (BANDS,) in 0..3
    colours: np.ndarray  # (BANDS, 3) in [0, 1]
    stripes: np.ndarray  # (BANDS,) stripe centre as a fraction of the width, or -1


def identity_code(pid: int) -> IdentityCode:
    rng = np.random.default_rng([CODE_STREAM, pid])
    stripes = np.where(rng.random(BANDS) < 0.4, rng.uniform(0.2, 0.8, BANDS), -1.0)
    return IdentityCode(rng.integers(0, 4, BANDS), rng.random((BANDS, 3)), stripes)


def render(pid: int, infrared: bool, size: tuple[int, int],
           rng: np.random.Generator) -> Image.Image:
    """A ``size`` = (width, height) RGB image of identity ``pid`` in one modality."""
    width, height = size
    code = identity_code(pid)
    shift = rng.uniform(-0.04, 0.04)
    rows = np.clip(((np.arange(height) / height + shift) * BANDS).astype(int), 0, BANDS - 1)
    level = 0.35 + 0.65 * code.levels[rows] / 3.0  # (H,)
    if infrared:
        base = np.repeat((0.15 + 0.75 * level)[:, None], 3, axis=1)
    else:
        base = (0.25 + 0.75 * code.colours[rows]) * level[:, None]
    image = np.repeat(base[:, None, :], width, axis=1)  # (H, W, 3)
    columns = np.arange(width) / width
    stripe = code.stripes[rows]
    inside = (stripe[:, None] >= 0) & (np.abs(columns[None, :] - stripe[:, None]) < 0.08)
    image = np.where(inside[..., None], image * 0.35, image)
    texture = 0.04 * np.sin(np.add.outer(np.arange(height) * rng.uniform(0.3, 0.9),
                                         np.arange(width) * rng.uniform(0.3, 0.9)))
    image = image * rng.uniform(0.8, 1.2) + texture[..., None]
    image = image * 255 + rng.normal(0, 3.0, image.shape)
    if infrared:
        image = np.repeat(image.mean(axis=2, keepdims=True), 3, axis=2)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def random_size(rng: np.random.Generator) -> tuple[int, int]:
    """Varied (width, height), roughly the aspect of pedestrian crops."""
    height = int(rng.integers(140, 321))
    width = int(np.clip(height * rng.uniform(0.35, 0.55), 60, 160))
    return width, height


def save(image: Image.Image, path, jpeg_quality: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jpg":
        image.save(path, format="JPEG", quality=jpeg_quality)
    else:
        image.save(path, format="BMP")
