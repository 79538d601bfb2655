"""The plain PyTorch loaders: PIL decoding and torchvision transforms, no DALI.

The oracle of the tests and the fallback where DALI is not installed (e.g. macOS). Training
applies docs/recipe.md, Augmentation, with torchvision's functional ops and the SAME
parameters the DALI loader uses (``plan.py``), so both give the same pixels from the same
shards. ``ReferenceAugmenter`` is the oracle of the augmenter family (``augmenters.py``).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from vireid.choices import LoaderKind
from vireid.constants import IMAGENET_MEAN, IMAGENET_STD
from vireid.loader.augment import GRAY_WEIGHTS, PAD, AugmentParams
from vireid.loader.augmenters import gathered, make_augmenter
from vireid.loader.plan import eval_share
from vireid.loader.settings import EVAL_BATCH_SIZE
from vireid.loader.source import ShardBytes, UsesShards, decode_problem, open_source
from vireid.loader.train_base import TrainLoaderBase
from vireid.shards.encode import Encoding


def decode_pil(data: np.ndarray, encoding: Encoding, height: int, width: int) -> Image.Image:
    if encoding is Encoding.RAW:
        return Image.fromarray(data.reshape(height, width, 3))
    return Image.open(io.BytesIO(data.tobytes())).convert("RGB")


def read_image(source: ShardBytes, sample: int) -> Image.Image:
    """Sample ``sample`` decoded by PIL; a damaged image is one line naming its tar and key."""
    manifest = source.manifest
    (data,) = source.read_images([sample])
    try:
        return decode_pil(data, manifest.encoding, manifest.height, manifest.width)
    except Exception:  # noqa: BLE001 - PIL raises many types for bad bytes
        raise source.damaged(sample, decode_problem(data.tobytes()) or "unreadable") from None


def to_normalised(image: Image.Image) -> torch.Tensor:
    return TF.normalize(TF.to_tensor(image), IMAGENET_MEAN, IMAGENET_STD)


def augment_one(image: Image.Image, params: AugmentParams, i: int) -> torch.Tensor:
    """Pad 10 (→ DEEN's gray) → crop → flip → to [0,1] → normalise → erase (→ CAJ's channel
    operation), as the original's transforms."""
    width, height = image.size
    padded = TF.pad(image, PAD)
    if params.gray is not None and params.gray[i]:
        # torchvision's RandomGrayscale on a PIL image: convert('L') copied to 3 channels
        padded = TF.rgb_to_grayscale(padded, num_output_channels=3)
    image = TF.crop(padded, int(params.top[i]), int(params.left[i]), height, width)
    if params.flip[i]:
        image = TF.hflip(image)
    tensor = to_normalised(image)
    top, left, h, w = (int(v) for v in params.erase[i])
    for channel, value in enumerate(params.fill):
        tensor[channel, top:top + h, left:left + w] = value
    if params.mix is not None:
        channel_operation(tensor, params.mix[i])
    return tensor


def channel_operation(tensor: torch.Tensor, mix: np.ndarray) -> torch.Tensor:
    """CAJ's channel operations as its code writes them (in place on a 3×H×W tensor), told
    apart by the mixing matrix the plan drew: identity (nothing), copy of channel k into the
    others (ChannelExchange, ChannelAdapGray's R/G/B branches), or gray."""
    if np.array_equal(mix, np.eye(3, dtype=np.float32)):
        return tensor
    for k in range(3):
        if np.array_equal(mix, np.eye(3, dtype=np.float32)[[k, k, k]]):
            for other in {0, 1, 2} - {k}:
                tensor[other, :, :] = tensor[k, :, :]
            return tensor
    if np.array_equal(mix, np.tile(np.asarray(GRAY_WEIGHTS, np.float32), (3, 1))):
        gray = 0.2989 * tensor[0, :, :] + 0.5870 * tensor[1, :, :] + 0.1140 * tensor[2, :, :]
        tensor[0, :, :], tensor[1, :, :], tensor[2, :, :] = gray, gray, gray
        return tensor
    raise ValueError(f"not one of CAJ's channel operations: {mix.tolist()}")


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    batch = torch.stack(tensors).to(torch.float16)
    return batch.contiguous(memory_format=torch.channels_last)


class ReferenceAugmenter:
    """The ``reference`` member of the augmenter family (``augmenters.py``), the oracle of
    the others: each image through ``augment_one``, as the original's transforms."""

    def __init__(self, *, device: str = "cpu", device_id: int = 0, threads: int = 1):
        """The CPU, one thread: the arguments are the family's common signature."""

    def __call__(self, images, params: AugmentParams,
                 rows: np.ndarray | None = None) -> torch.Tensor:
        pixels = gathered(images, rows)
        tensors = [augment_one(Image.fromarray(image), params, i)
                   for i, image in enumerate(pixels)]
        return _stack(tensors).permute(0, 2, 3, 1)  # N×H×W×3, contiguous

    def close(self) -> None:
        """Nothing to release."""


class ReferenceTrainLoader(TrainLoaderBase):
    """Same batches as the DALI ``TrainLoader``, computed in Python on the CPU: PIL decodes,
    the reference augmenter augments (its route has no other choice)."""

    kind = LoaderKind.REFERENCE

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.augmenter = make_augmenter(self.route.augmenter)

    def _epoch_batches(self):
        for step in range(self.step, self.sampler.steps_per_epoch):
            plan = self.plan(self.epoch, step)
            pixels = np.stack([np.asarray(read_image(self.source, int(s)))
                               for s in plan.samples])
            yield self.split(self.augmenter(pixels, plan.params))


class ReferenceEvalLoader(UsesShards):
    """In-order evaluation batches: resize (a no-op on pre-resized shards) and normalise."""

    def __init__(self, shards: ShardBytes | Path | str, samples, *,
                 batch_size: int = EVAL_BATCH_SIZE, size: tuple[int, int] | None = None,
                 shard_id: int = 0, num_shards: int = 1):
        self.source, self._owns_source = open_source(shards)
        manifest = self.source.manifest
        self.samples = eval_share(samples, shard_id, num_shards)
        self.batch_size = batch_size
        self.size = size or (manifest.height, manifest.width)

    def __len__(self) -> int:
        return -(-len(self.samples) // self.batch_size)


    def __iter__(self):
        for start in range(0, len(self.samples), self.batch_size):
            chosen = self.samples[start:start + self.batch_size]
            images = []
            for s in chosen:
                image = read_image(self.source, int(s))
                if (image.height, image.width) != tuple(self.size):
                    image = TF.resize(image, list(self.size))
                images.append(to_normalised(image))
            yield {"images": _stack(images), "samples": chosen}
