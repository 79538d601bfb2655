"""The training augmentation as batched tensor operations, on whatever device the images are.

The decoded cache (``cache.py``) gathers a step's uint8 images where they live (the GPU's
memory on CUDA) and augments them here: pad 10 → crop → flip as one gather with per-image row
and column maps → normalise → erase box set to ``fill`` → channel mixing → float16, with the
arithmetic of ``vireid.loader.fused`` (docs/recipe.md, Augmentation; ``AugmentParams``):
``x·scale + bias`` as two float32 operations (no fused multiply-add), padding pixels equal to
``bias``, output channel c = ``(M[c,0]·x0 + M[c,1]·x1) + M[c,2]·x2``, one rounding to float16.
So on the CPU this gives the fused kernel's bits, and on a GPU the same bits again (every
step is a correctly rounded IEEE operation).
"""

from __future__ import annotations

import numpy as np
import torch

from vireid.loader.augment import PAD, AugmentParams
from vireid.loader.fused import NormaliseTables


def normalisation(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The fused kernel's per-channel float32 scale and bias, on ``device`` (made once per
    run by the caller and passed to ``augment_tensor``)."""
    tables = NormaliseTables.build(1)
    return (torch.from_numpy(tables.scale).to(device), torch.from_numpy(tables.bias).to(device))


def _source_maps(params: AugmentParams, height: int, width: int, device: torch.device):
    """Per image, the source row of every output row and the source column of every output
    column (N×H and N×W, int64), and whether each falls inside the image (not padding)."""
    top = torch.as_tensor(np.asarray(params.top, np.int64), device=device)
    left = torch.as_tensor(np.asarray(params.left, np.int64), device=device)
    flip = torch.as_tensor(np.asarray(params.flip, bool), device=device)
    rows = top[:, None] - PAD + torch.arange(height, device=device)
    columns = torch.arange(width, device=device).expand(len(top), width)
    columns = torch.where(flip[:, None], width - 1 - columns, columns) + left[:, None] - PAD
    inside_rows = (rows >= 0) & (rows < height)
    inside_columns = (columns >= 0) & (columns < width)
    return rows.clamp(0, height - 1), columns.clamp(0, width - 1), inside_rows, inside_columns


def _box_mask(erase: np.ndarray, height: int, width: int, device: torch.device):
    """N×H×W×1 bool: inside each image's erase box (top, left, h, w); empty boxes: nowhere."""
    box = torch.as_tensor(np.asarray(erase, np.int64), device=device)
    y, x = torch.arange(height, device=device), torch.arange(width, device=device)
    in_rows = (y >= box[:, :1]) & (y < box[:, :1] + box[:, 2:3])
    in_columns = (x >= box[:, 1:2]) & (x < box[:, 1:2] + box[:, 3:4])
    return (in_rows[:, :, None] & in_columns[:, None, :])[..., None]


def _mixed(values: torch.Tensor, mix: np.ndarray) -> torch.Tensor:
    """Per image, output channel c = (M[c,0]·x0 + M[c,1]·x1) + M[c,2]·x2 in float32."""
    m = torch.as_tensor(np.asarray(mix, np.float32), device=values.device)[:, None, None]
    x0, x1, x2 = values[..., 0:1], values[..., 1:2], values[..., 2:3]
    return (m[..., 0] * x0 + m[..., 1] * x1) + m[..., 2] * x2  # N×1×1×3 · N×H×W×1


def augment_tensor(images: torch.Tensor, params: AugmentParams,
                   out: torch.Tensor | None = None,
                   normalise: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """uint8 N×H×W×3 ``images`` → float16 N×H×W×3 on the images' device (into ``out``, a
    float16 tensor of that shape, when given). ``normalise``: ``normalisation(device)``,
    made here when not given."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[3] != 3:
        raise ValueError(f"images must be uint8 N×H×W×3, not {tuple(images.shape)} "
                         f"{images.dtype}")
    count, height, width, _ = images.shape
    if len(params) != count:
        raise ValueError(f"{len(params)} parameter rows for {count} images")
    device = images.device
    rows, columns, inside_rows, inside_columns = _source_maps(params, height, width, device)
    index = torch.arange(count, device=device)[:, None, None]
    pixels = images[index, rows[:, :, None], columns[:, None, :]]  # N×H×W×3 crop + flip
    scale, bias = normalise or normalisation(device)
    values = pixels.float() * scale  # two roundings, as the kernel: never a fused multiply-add
    values = values + bias
    inside = (inside_rows[:, :, None] & inside_columns[:, None, :])[..., None]
    values = torch.where(inside, values, bias)  # zero padding, normalised
    fill = torch.tensor(params.fill, dtype=torch.float32, device=device)
    values = torch.where(_box_mask(params.erase, height, width, device), fill, values)
    if params.mix is not None:
        values = _mixed(values, params.mix)
    if out is None:
        return values.half()
    out.copy_(values)  # float32 → float16: round to nearest even, as ``.half()``
    return out
