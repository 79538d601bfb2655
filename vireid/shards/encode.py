"""Per-image work of the shard builder: decode, resize once with Lanczos, encode, and measure
what the encoding changed (the stored bytes decoded again with PIL against the exact resized
uint8 pixels, while the worker holds both).

Runs in worker processes, so everything here is a top-level function of plain values.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from enum import Enum

import numpy as np
from PIL import Image, UnidentifiedImageError

from vireid.choices import Choice
from vireid.constants import MAX_SIDE, MIN_SIDE


class Encoding(str, Enum):
    JPEG = "jpeg"
    PNG = "png"
    RAW = "raw"

    @property
    def extension(self) -> str:
        """Tar member extension of the image (``raw``: H×W×3 uint8 bytes, row-major)."""
        return {"jpeg": "jpg", "png": "png", "raw": "raw"}[self.value]

    @property
    def signature(self) -> bytes:
        """The bytes every stored image of this encoding starts with (raw: none)."""
        return {"jpeg": b"\xff\xd8\xff", "png": b"\x89PNG\r\n\x1a\n", "raw": b""}[self.value]


class Chroma(Choice):
    """JPEG chroma sampling. 4:4:4 keeps a colour per pixel; 4:2:0 (Pillow's own default) keeps
    one per 2×2 pixels: smaller files, colour edges blurred over 2 pixels."""

    YUV444 = "444"
    YUV420 = "420"

    @property
    def subsampling(self) -> int:
        """Pillow's ``subsampling`` value (also what ``JpegImagePlugin.get_sampling`` reads)."""
        return {"444": 0, "420": 2}[self.value]

    @property
    def label(self) -> str:
        return ":".join(self.value)  # "4:4:4"


@dataclass(frozen=True)
class EncodeTask:
    source: str
    width: int
    height: int
    encoding: Encoding
    quality: int
    chroma: Chroma = Chroma.YUV444


@dataclass(frozen=True)
class Encoded:
    """The stored bytes and the source's original (width, height); ``error`` when unreadable.

    ``abs_sum`` and ``max_abs``: sum and largest |stored − exact| over the image's channel
    values, the stored bytes decoded with PIL against the exact resized pixels (0 for png/raw).
    """

    data: bytes = b""
    source_size: tuple[int, int] = (0, 0)
    error: str = ""
    abs_sum: int = 0
    max_abs: int = 0


def size_problem(width: int, height: int) -> str:
    """Why ``width`` × ``height`` cannot be a stored image size ("" when it can)."""
    if MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE:
        return ""
    return f"image size {width}x{height} is out of range ({MIN_SIDE} to {MAX_SIDE} pixels per side)"


def resize_rgb(image: Image.Image, width: int, height: int) -> Image.Image:
    """The one resize of the project: RGB, Lanczos (the original's ``Image.ANTIALIAS``)."""
    return image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)


def encode_image(task: EncodeTask) -> Encoded:
    try:
        with Image.open(task.source) as image:
            image.load()
            size = image.size
            resized = resize_rgb(image, task.width, task.height)
    except UnidentifiedImageError:
        return Encoded(error="not an image file (cannot identify its format)")
    except FileNotFoundError:
        return Encoded(error="file disappeared while building")
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for corrupt data
        return Encoded(error=f"corrupt or unreadable image ({error})")
    exact = np.asarray(resized, dtype=np.uint8)
    data = _encode(resized, task)
    stored = decode_stored(data, task.encoding, task.width, task.height)
    return Encoded(data, size, "", *pixel_difference(stored, exact))


def _encode(image: Image.Image, task: EncodeTask) -> bytes:
    if task.encoding is Encoding.RAW:
        return np.asarray(image, dtype=np.uint8).tobytes()
    buffer = io.BytesIO()
    if task.encoding is Encoding.JPEG:
        image.save(buffer, format="JPEG", quality=task.quality,
                   subsampling=task.chroma.subsampling)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def pixel_difference(stored: np.ndarray, exact: np.ndarray) -> tuple[int, int]:
    """(sum, max) of |stored − exact| over every channel value: integers, so totals over
    many images do not depend on the order they are added in."""
    difference = np.abs(stored.astype(np.int16) - exact.astype(np.int16))
    return int(difference.sum(dtype=np.int64)), int(difference.max(initial=0))


def decode_stored(data: bytes, encoding: Encoding, width: int, height: int) -> np.ndarray:
    """Stored bytes → H×W×3 uint8 array; raises ValueError when they do not decode to that."""
    if encoding is Encoding.RAW:
        if len(data) != width * height * 3:
            raise ValueError(f"{len(data)} raw bytes, expected {width * height * 3}")
        return np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            array = np.asarray(image.convert("RGB"))
    except Exception as error:  # noqa: BLE001
        raise ValueError(f"does not decode ({error})") from None
    if array.shape != (height, width, 3):
        raise ValueError(f"decodes to {array.shape[1]}x{array.shape[0]}, expected {width}x{height}")
    return array
