"""How far the stored pixels are from the exact ones: the manifest's ``pixels`` entry.

The builder resizes each image once (uint8, Lanczos), encodes it, decodes the bytes it just
wrote with PIL and compares the two, in the worker that holds both (``encode.encode_image``).
The totals are integers (the sum of |Δ| over every channel value, the largest |Δ|), so the mean
depends neither on the order of the images nor on the number of workers, and a build stays
byte-reproducible. Example: 555 JPEG images at 144×288 whose |Δ| add up to 41,430,000 →
mean |Δ| = 41,430,000 / (555 × 288 × 144 × 3) ≈ 0.60 grey levels.
"""

from __future__ import annotations

from dataclasses import dataclass

import PIL
from PIL import features

from vireid.shards.encode import Encoded, Encoding


@dataclass(frozen=True)
class PixelStats:
    """|stored − exact resized| over every channel value of the ``images`` stored images."""

    decoder: str  # what decoded the stored bytes, e.g. "PIL 13.0.0 (libjpeg-turbo 3.2.0)"
    images: int
    mean_abs: float
    max_abs: int


@dataclass
class PixelTally:
    """Running totals of ``Encoded.abs_sum`` / ``max_abs`` over the images a build keeps."""

    values_per_image: int  # height × width × 3
    images: int = 0
    abs_sum: int = 0
    max_abs: int = 0

    def add(self, encoded: Encoded) -> None:
        self.images += 1
        self.abs_sum += encoded.abs_sum
        self.max_abs = max(self.max_abs, encoded.max_abs)

    def stats(self, encoding: Encoding) -> PixelStats:
        values = self.images * self.values_per_image
        return PixelStats(decoder_name(encoding), self.images,
                          self.abs_sum / values if values else 0.0, self.max_abs)


def decoder_name(encoding: Encoding) -> str:
    """The decoder the stats were measured with: Pillow and the codec library it wraps."""
    if encoding is Encoding.RAW:
        return "none (raw uint8 bytes)"
    if encoding is Encoding.PNG:
        return f"PIL {PIL.__version__} (zlib {features.version('zlib')})"
    if features.check_feature("libjpeg_turbo"):
        return f"PIL {PIL.__version__} (libjpeg-turbo {features.version_feature('libjpeg_turbo')})"
    return f"PIL {PIL.__version__} (libjpeg {features.version('jpg')})"
