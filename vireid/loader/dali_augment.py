"""The ``graph`` member of the augmenter family (``augmenters.py``): DALI's operators, on
the CPU or a GPU.

``graph_inputs`` turns a step's ``AugmentParams`` into what the operators take per image;
``augment_nodes`` applies them inside a graph: (DEEN's gray: below) → ONE
``crop_mirror_normalize`` that pads the crop window with black, flips, normalises and lays out
HWC in float32 → ``erase`` with the fill → (channel views: each image's 3×3 matrix, as
``coord_transform`` on the innermost, channel, axis) → cast to float16.
``dali_pipes.train_pipeline`` puts them after its decoder; ``GraphAugmenter`` runs them on
given uint8 images.

The random crop of the zero-padded image is split into the part inside the image (decoded
as a region of interest, or sliced from stored pixels) and the padding, which
crop_mirror_normalize adds with ``out_of_bounds_policy="pad"``: ``crop_pos`` 1 puts the
padding before the region (window starting above/left of the image), 0 after it.

Erasing runs on float32 and the cast comes last because DALI's GPU ``erase`` has no float16
kernel; on the CPU the order gives the same bits as erasing float16 (a zero fill and a
round-to-nearest cast commute). ``dali_graph.check_gpu_kernels`` guards this before a build.

DEEN's gray is PIL's integer luma on the uint8 region, before anything else (black padding
stays black): ``coord_transform`` with each image's matrix and T = 32768 gives, in float32,
``19595·R + 38470·G + 7471·B + 32768`` for a gray image and ``65536·v + 32768`` per channel
for the others: integers below 2²⁴, so exact whatever the order of the sums; cast to int32,
integer-divided by 65536 (PIL's ``>> 16`` for these non-negative values) and cast back to
uint8, that is PIL's luma in all three channels, or the image unchanged. DALI's own gray
(``color_space_conversion`` to GRAY) is one level off PIL's on 21,745 of the 2²⁴ colours
(measured, DALI 2.4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vireid.constants import IMAGENET_MEAN, IMAGENET_STD
from vireid.loader.augment import PAD, PIL_LUMA, PIL_ROUND, PIL_SHIFT, AugmentParams
from vireid.loader.augmenters import gathered

# the per-image arguments every graph takes, in the order the callback gives them
PLAIN = ("crop_y", "crop_x", "mirror", "erase_anchor", "erase_shape")


@dataclass(frozen=True)
class GraphInputs:
    """Per image: the crop window's in-image region (``start`` and ``shape``, N×2 (y, x))
    and the operators' arguments by name (``PLAIN``, then ``mix``: the channel matrices,
    and ``gray``: the luma matrices, when the params have them); ``fill``: the erase fill,
    the same for every image. The names and the fill fix the graph; they are the same for
    every step of a loader."""

    start: np.ndarray
    shape: np.ndarray
    arguments: dict[str, np.ndarray]
    fill: tuple[float, float, float]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.arguments)

    def regions(self, images) -> list[np.ndarray]:
        """Each image's region of ``images`` (uint8 H×W×3 each), as contiguous arrays."""
        return [np.ascontiguousarray(image[y:y + h, x:x + w])
                for image, (y, x), (h, w) in zip(images, self.start, self.shape)]


def graph_inputs(params: AugmentParams, height: int, width: int) -> GraphInputs:
    """``params`` as the graph's per-image inputs, for images of ``height`` × ``width``."""
    dy, dx = params.top - PAD, params.left - PAD  # crop window corner in image coordinates
    start = np.stack([np.maximum(dy, 0), np.maximum(dx, 0)], axis=1)
    # none at all where an image is narrower than the padding: the window is all padding
    shape = np.maximum(np.stack([height - np.abs(dy), width - np.abs(dx)], axis=1), 0)
    arguments = {"crop_y": (dy < 0).astype(np.float32), "crop_x": (dx < 0).astype(np.float32),
                 "mirror": params.flip.astype(np.int32),
                 "erase_anchor": params.erase[:, :2].astype(np.float32),
                 "erase_shape": params.erase[:, 2:].astype(np.float32)}
    if params.mix is not None:
        arguments["mix"] = np.ascontiguousarray(params.mix, dtype=np.float32)
    if params.gray is not None:
        arguments["gray"] = luma_matrices(params.gray)
    return GraphInputs(start, shape, arguments, tuple(params.fill))


def luma_matrices(gray: np.ndarray) -> np.ndarray:
    """Per image (N×3×3 float32): PIL's luma weights in every row where ``gray`` is set,
    2^16 times the identity elsewhere (``augment_nodes`` divides by 2^16)."""
    matrices = np.repeat(np.eye(3, dtype=np.float32)[None] * (1 << PIL_SHIFT), len(gray), 0)
    matrices[np.asarray(gray, bool)] = np.asarray(PIL_LUMA, np.float32)
    return matrices


def gray_nodes(images, matrices, *, fn, types):
    """uint8 HWC → uint8 HWC, PIL's luma in all channels of the images whose ``matrices``
    (``luma_matrices``) say so, exactly (module docstring)."""
    total = fn.coord_transform(images, M=matrices, T=[float(PIL_ROUND)] * 3, dtype=types.FLOAT)
    return fn.cast(fn.cast(total, dtype=types.INT32) // (1 << PIL_SHIFT), dtype=types.UINT8)


def augment_nodes(images, arguments: dict, *, height: int, width: int, fill, fn, types):
    """uint8 HWC regions + the arguments of ``GraphInputs`` (as graph nodes, by name) →
    float16 HWC."""
    black = [-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]  # pixel 0, normalised
    if "gray" in arguments:
        images = gray_nodes(images, arguments["gray"], fn=fn, types=types)
    images = fn.crop_mirror_normalize(
        images, crop=(height, width), crop_pos_y=arguments["crop_y"],
        crop_pos_x=arguments["crop_x"], out_of_bounds_policy="pad", fill_values=black,
        mirror=arguments["mirror"], mean=[255.0 * m for m in IMAGENET_MEAN],
        std=[255.0 * s for s in IMAGENET_STD], dtype=types.FLOAT, output_layout="HWC")
    images = fn.erase(images, anchor=arguments["erase_anchor"],
                      shape=arguments["erase_shape"], axis_names="HW", fill_value=list(fill))
    if "mix" in arguments:
        images = fn.coord_transform(images, M=arguments["mix"], dtype=types.FLOAT)
    return fn.cast(images, dtype=types.FLOAT16)


class GraphAugmenter:
    """The ``graph`` member (``augmenters.Augmenter``): each call builds a graph of
    ``augment_nodes`` for its batch on ``device``, runs it once and stops it."""

    def __init__(self, *, device: str = "cpu", device_id: int = 0, threads: int = 1):
        self.device, self.device_id, self.threads = device, device_id, threads

    def __call__(self, images, params: AugmentParams,
                 rows: np.ndarray | None = None) -> torch.Tensor:
        from vireid.loader.dali_errors import stop_pipeline
        from vireid.loader.handoff import run_pipeline, to_torch

        pixels = gathered(images, rows)
        inputs = graph_inputs(params, pixels.shape[1], pixels.shape[2])
        pipe = self._pipeline(inputs, inputs.regions(pixels), pixels.shape[1:3])
        try:
            pipe.build()
            (output,) = run_pipeline(pipe, self.device)
            return to_torch(output).clone()  # PyTorch's memory: the pipeline stops now
        finally:
            stop_pipeline(pipe)

    def _pipeline(self, inputs: GraphInputs, regions: list, size: tuple[int, int]):
        from vireid.loader.dali_graph import check_gpu_kernels
        from vireid.loader.dali_pipes import _pipeline, import_dali

        _, fn, types = import_dali()
        pipe = _pipeline(len(regions), self.threads, self.device, self.device_id, 1)
        count = len(inputs.names)
        with pipe:
            images, *arguments = fn.external_source(
                source=lambda: (regions, *inputs.arguments.values()), num_outputs=1 + count,
                batch=True, layout=["HWC"] + [None] * count,
                dtype=[types.UINT8] + [None] * count)
            images = images.gpu() if self.device == "cuda" else images
            pipe.set_outputs(augment_nodes(images, dict(zip(inputs.names, arguments)),
                                           height=size[0], width=size[1], fill=inputs.fill,
                                           fn=fn, types=types))
        check_gpu_kernels(pipe)
        return pipe

    def close(self) -> None:
        """Nothing held between calls."""
