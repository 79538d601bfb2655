"""The training augmentation as batched tensor operations, on whatever device the images are:
the ``tensor`` member of the augmenter family (``augmenters.py``).

The decoded cache (``cache.py``) gathers a step's uint8 images where they live (the GPU's
memory on CUDA) and augments them here: pad 10 → crop → flip as one gather with per-image row
and column maps → DEEN's gray (PIL's integer luma on the uint8 values, int32 arithmetic) →
normalise → erase box set to ``fill`` → channel mixing → float16, with the
arithmetic of ``vireid.loader.fused`` (docs/recipe.md, Augmentation; ``AugmentParams``):
``x·scale + bias`` as two float32 operations (no fused multiply-add), padding pixels equal to
``bias``, output channel c = ``(M[c,0]·x0 + M[c,1]·x1) + M[c,2]·x2``, one rounding to float16.
So on the CPU this gives the fused kernel's bits, and on a GPU the same bits again (every
step is a correctly rounded IEEE operation).

A step's parameters reach the device in ONE copy (``upload``): every array packed into one
int32 host buffer, pinned on CUDA, copied with ``non_blocking=True`` (``transfer.py``). A copy
from pageable memory (``torch.as_tensor(..., device="cuda")``) synchronises the stream, so the
host would wait for the previous step's backward pass once per array; a step issues no
synchronisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vireid.loader.augment import PAD, PIL_LUMA, PIL_ROUND, PIL_SHIFT, AugmentParams
from vireid.loader.fused import NormaliseTables
from vireid.loader.transfer import to_device


@dataclass(frozen=True)
class StepTensors:
    """A step's ``AugmentParams`` as tensors on the device (views of one copied buffer):
    int32 ``top``/``left``/``flip`` (N) and ``erase`` (N×4), float32 ``fill`` (3) and ``mix``
    (N×3×3, or None), the int32 cache ``rows`` to gather when given to ``upload``, and the
    bool ``gray`` flags (N, or None)."""

    top: torch.Tensor
    left: torch.Tensor
    flip: torch.Tensor
    erase: torch.Tensor
    fill: torch.Tensor
    mix: torch.Tensor | None = None
    rows: torch.Tensor | None = None
    gray: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.top)


def _bits(values) -> np.ndarray:
    """float32 values as their int32 bit patterns (flat)."""
    return np.ascontiguousarray(values, np.float32).reshape(-1).view(np.int32)


def _packed(params: AugmentParams, rows: np.ndarray | None) -> list[np.ndarray]:
    """The step's arrays as flat int32 pieces (float32 ones by their bits), in the order of
    ``StepTensors``' fields."""
    pieces = [params.top, params.left, np.asarray(params.flip, np.int32), params.erase,
              _bits(params.fill), _bits(params.mix if params.mix is not None else []),
              rows if rows is not None else [],
              np.asarray(params.gray if params.gray is not None else [], np.int32)]
    return [np.asarray(piece).astype(np.int32, copy=False).reshape(-1) for piece in pieces]


def upload(params: AugmentParams, device: torch.device | str,
           rows: np.ndarray | None = None) -> StepTensors:
    """``params`` (and the cache ``rows`` to gather) on ``device``: packed into one int32
    buffer, ONE ``to_device`` copy, then views."""
    pieces = _packed(params, rows)
    on = to_device(np.concatenate(pieces), device)
    top, left, flip, erase, fill, mix, picked, gray = on.split([len(p) for p in pieces])
    count = len(params)
    return StepTensors(top, left, flip.bool(), erase.view(count, 4), fill.view(torch.float32),
                       mix.view(torch.float32).view(count, 3, 3) if params.mix is not None
                       else None, picked if rows is not None else None,
                       gray.bool() if params.gray is not None else None)


def normalisation(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The fused kernel's per-channel float32 scale and bias, on ``device`` (made once per
    run by the caller and passed to ``augment_tensor``)."""
    tables = NormaliseTables.build(1)
    return (torch.from_numpy(tables.scale).to(device), torch.from_numpy(tables.bias).to(device))


def _source_maps(step: StepTensors, height: int, width: int, device: torch.device):
    """Per image, the source row of every output row and the source column of every output
    column (N×H and N×W, int64), and whether each falls inside the image (not padding)."""
    rows = step.top[:, None] - PAD + torch.arange(height, device=device)
    columns = torch.arange(width, device=device).expand(len(step), width)
    columns = torch.where(step.flip[:, None], width - 1 - columns, columns) \
        + step.left[:, None] - PAD
    inside_rows = (rows >= 0) & (rows < height)
    inside_columns = (columns >= 0) & (columns < width)
    return rows.clamp(0, height - 1), columns.clamp(0, width - 1), inside_rows, inside_columns


def _box_mask(box: torch.Tensor, height: int, width: int):
    """N×H×W×1 bool: inside each image's erase box (top, left, h, w); empty boxes: nowhere."""
    y = torch.arange(height, device=box.device)
    x = torch.arange(width, device=box.device)
    in_rows = (y >= box[:, :1]) & (y < box[:, :1] + box[:, 2:3])
    in_columns = (x >= box[:, 1:2]) & (x < box[:, 1:2] + box[:, 3:4])
    return (in_rows[:, :, None] & in_columns[:, None, :])[..., None]


def _grayed(pixels: torch.Tensor, gray: torch.Tensor) -> torch.Tensor:
    """uint8 N×H×W×3 with the images flagged in ``gray`` replaced by PIL's convert('L')
    (integer luma, exact in int32) in all three channels; padding stays black."""
    wide = pixels.to(torch.int32)
    r, g, b = PIL_LUMA
    luma = (r * wide[..., 0:1] + g * wide[..., 1:2] + b * wide[..., 2:3] + PIL_ROUND) \
        >> PIL_SHIFT
    return torch.where(gray[:, None, None, None], luma.to(torch.uint8), pixels)


def _mixed(values: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    """Per image, output channel c = (M[c,0]·x0 + M[c,1]·x1) + M[c,2]·x2 in float32."""
    m = mix[:, None, None]
    x0, x1, x2 = values[..., 0:1], values[..., 1:2], values[..., 2:3]
    return (m[..., 0] * x0 + m[..., 1] * x1) + m[..., 2] * x2  # N×1×1×3 · N×H×W×1


def augment_tensor(images: torch.Tensor, params: AugmentParams | StepTensors,
                   out: torch.Tensor | None = None,
                   normalise: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """uint8 N×H×W×3 ``images`` → float16 N×H×W×3 on the images' device (into ``out``, a
    float16 tensor of that shape, when given). ``params``: ``AugmentParams`` (uploaded here)
    or ``upload``'s tensors already on the device. ``normalise``: ``normalisation(device)``,
    made here when not given."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[3] != 3:
        raise ValueError(f"images must be uint8 N×H×W×3, not {tuple(images.shape)} "
                         f"{images.dtype}")
    count, height, width, _ = images.shape
    if len(params) != count:
        raise ValueError(f"{len(params)} parameter rows for {count} images")
    device = images.device
    step = upload(params, device) if isinstance(params, AugmentParams) else params
    rows, columns, inside_rows, inside_columns = _source_maps(step, height, width, device)
    index = torch.arange(count, device=device)[:, None, None]
    pixels = images[index, rows[:, :, None], columns[:, None, :]]  # N×H×W×3 crop + flip
    if step.gray is not None:
        pixels = _grayed(pixels, step.gray)
    scale, bias = normalise or normalisation(device)
    values = pixels.float() * scale  # two roundings, as the kernel: never a fused multiply-add
    values = values + bias
    inside = (inside_rows[:, :, None] & inside_columns[:, None, :])[..., None]
    values = torch.where(inside, values, bias)  # zero padding, normalised
    values = torch.where(_box_mask(step.erase, height, width), step.fill, values)
    if step.mix is not None:
        values = _mixed(values, step.mix)
    if out is None:
        return values.half()
    out.copy_(values)  # float32 → float16: round to nearest even, as ``.half()``
    return out


class TensorAugmenter:
    """The ``tensor`` member (``augmenters.Augmenter``) on ``device``: ``augment_tensor``
    with the normalisation made once. Without host synchronisation: with ``rows``, images
    already on the device are gathered there (the rows travel with the parameters in one
    pinned, non-blocking copy), host images are gathered into pinned memory and copied
    without waiting too."""

    def __init__(self, *, device: str | torch.device = "cpu", device_id: int = 0,
                 threads: int = 1):
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", device_id)
        self.device = device
        self._normalise = None  # scale and bias on the device, made at the first batch

    def __call__(self, images, params: AugmentParams,
                 rows: np.ndarray | None = None) -> torch.Tensor:
        if self._normalise is None:
            self._normalise = normalisation(self.device)
        images = images if torch.is_tensor(images) else torch.from_numpy(np.asarray(images))
        if rows is not None and images.device.type == self.device.type:
            step = upload(params, self.device, rows)
            return augment_tensor(images.index_select(0, step.rows), step,
                                  normalise=self._normalise)
        if rows is not None:
            images = _staged(images, rows, pinned=self.device.type == "cuda")
        return augment_tensor(images.to(self.device, non_blocking=True),
                              upload(params, self.device), normalise=self._normalise)

    def close(self) -> None:
        """Nothing to release."""


def _staged(images: torch.Tensor, rows: np.ndarray, pinned: bool) -> torch.Tensor:
    """``images[rows]`` gathered into a new (pinned) host tensor. PyTorch's caching host
    allocator does not reuse a pinned buffer before the copy that reads it has run."""
    staging = torch.empty((len(rows), *images.shape[1:]), dtype=torch.uint8, pin_memory=pinned)
    torch.index_select(images, 0, torch.from_numpy(np.asarray(rows, np.int64)), out=staging)
    return staging
