"""Pixels of fake pedestrians whose identity shows in BOTH modalities, and the file writers.

Each identity has a code drawn from its own generator (seeded by the pid alone, so a pid looks
the same in every tree): per horizontal band of the body an intensity level, a colour and up to
two dark vertical stripes. The visible rendering paints each band in its colour scaled by its
level; the infrared rendering paints the same levels in grey (3 equal channels) through a
different curve. Example: levels (3, 0, ...) give a bright top band over a dark one in both
modalities, although the visible top band may be red and the infrared one light grey.

Per image, a shift of a few pixels, a brightness jitter, a fine diagonal texture and Gaussian
noise make every file different and make the crops compress like real ones (about 14 KB as JPEG
at 144×288, quality 95).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

BANDS = 8
LEVELS = 4
MAX_STRIPES = 2
STRIPE_HALF_WIDTH = 0.07  # fraction of the image width
CODE_STREAM = 9_871  # identity codes come from their own seed stream, independent of trees
JPEG_QUALITY = 90
WIDTHS = (60, 160)
HEIGHTS = (140, 320)
NOISE_SIGMA = 4.0  # grey levels
TEXTURE_AMPLITUDE = 0.05  # fraction of full scale


@dataclass(frozen=True)
class IdentityCode:
    """What identifies a fake person, in both modalities."""

    levels: np.ndarray  # (BANDS,) integers in 0..LEVELS-1
    colours: np.ndarray  # (BANDS, 3) in [0, 1]
    stripes: np.ndarray  # (BANDS, MAX_STRIPES) stripe centres as width fractions; NaN = none


def identity_code(pid: int) -> IdentityCode:
    """The fixed code of ``pid``, from a generator seeded by the pid alone."""
    rng = np.random.default_rng([CODE_STREAM, pid])
    levels = rng.integers(0, LEVELS, BANDS)
    colours = rng.random((BANDS, 3))
    centres = rng.uniform(0.15, 0.85, (BANDS, MAX_STRIPES))
    present = rng.random((BANDS, MAX_STRIPES)) < 0.35
    return IdentityCode(levels, colours, np.where(present, centres, np.nan))


def render(pid: int, infrared: bool, size: tuple[int, int],
           rng: np.random.Generator) -> Image.Image:
    """A ``size`` = (width, height) RGB image of identity ``pid`` in one modality."""
    width, height = size
    code = identity_code(pid)
    dy, dx = (int(v) for v in rng.integers(-4, 5, 2))
    rows = np.clip((np.arange(height) - dy) * BANDS // height, 0, BANDS - 1)
    image = band_table(code, infrared, width, dx)[rows]  # (H, W, 3)
    image = image * np.float32(rng.uniform(0.8, 1.15)) + texture(height, width, rng)[..., None]
    channels = 1 if infrared else 3
    noisy = image[..., :channels] * 255 + rng.standard_normal(
        (height, width, channels), dtype=np.float32) * NOISE_SIGMA
    pixels = np.clip(noisy, 0, 255).astype(np.uint8)
    return Image.fromarray(np.repeat(pixels, 3, axis=2) if infrared else pixels)


def band_table(code: IdentityCode, infrared: bool, width: int, dx: int) -> np.ndarray:
    """(BANDS, W, 3) float32 in [0, 1]: one row of every band, stripes shifted by ``dx``.

    Visible: the band colour scaled by its level. Infrared: grey, level through a curve.
    """
    level = code.levels.astype(np.float32) / (LEVELS - 1)
    if infrared:
        base = np.repeat((0.18 + 0.72 * level ** 0.8)[:, None], 3, axis=1)
    else:
        base = (0.3 + 0.7 * level[:, None]) * (0.35 + 0.65 * code.colours)
    columns = (np.arange(width, dtype=np.float32) - dx) / width
    distance = np.abs(columns[None, :, None] - code.stripes[:, None, :])  # NaN → no stripe
    dark = np.where((distance < STRIPE_HALF_WIDTH).any(axis=2), 0.4, 1.0)  # (BANDS, W)
    return (base[:, None, :] * dark[..., None]).astype(np.float32)


def texture(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A fine diagonal weave with a random period and phase: clothing-like detail."""
    fy, fx = rng.uniform(0.3, 0.9, 2).astype(np.float32)
    phase = np.float32(rng.uniform(0, 2 * np.pi))
    ys = np.arange(height, dtype=np.float32) * fy
    xs = np.arange(width, dtype=np.float32) * fx
    return TEXTURE_AMPLITUDE * np.sin(np.add.outer(ys, xs) + phase)


def random_size(rng: np.random.Generator) -> tuple[int, int]:
    """Varied (width, height) with roughly the aspect of pedestrian crops."""
    height = int(rng.integers(HEIGHTS[0], HEIGHTS[1] + 1))
    width = int(np.clip(round(height * rng.uniform(0.3, 0.6)), *WIDTHS))
    return width, height


def save(image: Image.Image, path: Path) -> None:
    """Write JPEG for ``.jpg`` (quality 90, like camera crops), BMP for ``.bmp``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jpg":
        image.save(path, format="JPEG", quality=JPEG_QUALITY)
    elif path.suffix == ".bmp":
        image.save(path, format="BMP")
    else:
        raise ValueError(f"no image format for {path.name}")


def write_lines(path: Path, lines: Iterable[str]) -> None:
    """A text file of ``lines``, each ended by a newline (UTF-8, '\\n' on every platform)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(f"{line}\n" for line in lines).encode("utf-8"))
