"""CAJ's training loader as its authors wrote it, rebuilt as the benchmarks' CAJ baseline.

From the recipe's description (``ICCV21_CAJ/data_loader.py`` and ``ChannelAug.py``): per-image
torchvision transforms in DataLoader workers on uint8 arrays held in RAM. Each sampled pair
gives three images: visible view 0 (standard + channel random erasing), visible view 1 (the
same visible image augmented independently, then ChannelExchange(gray=2)) and the infrared
image (standard + erasing + ChannelAdapGray(0.5)); a step of 8 × 4 pairs is 96 images. The
channel operations and the erasing act on normalised tensors; randomness is Python's
``random`` module, as in the original.
"""

from __future__ import annotations

import math
import random

import torch
import torchvision.transforms as T
from torch.utils.data import DataLoader, Dataset

from benchmarks.original.loader import MEAN, STD, OriginalIdentitySampler

ERASE_FILL = (0.4914, 0.4822, 0.4465)  # CAJ's erasing values, in normalised space
GRAY = (0.2989, 0.5870, 0.1140)


class ChannelRandomErasing:
    """Zhong et al.'s random erasing with CAJ's per-channel fill: p 0.5, area 0.02-0.4 of the
    image, aspect ratio uniform in (0.3, 1/0.3), up to 100 attempts."""

    def __init__(self, probability: float = 0.5):
        self.probability = probability

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if random.uniform(0, 1) > self.probability:
            return img
        height, width = img.shape[1:]
        for _ in range(100):
            target = random.uniform(0.02, 0.4) * height * width
            aspect = random.uniform(0.3, 1 / 0.3)
            h = int(round(math.sqrt(target * aspect)))
            w = int(round(math.sqrt(target / aspect)))
            if w < width and h < height:
                top, left = random.randint(0, height - h), random.randint(0, width - w)
                for channel, value in enumerate(ERASE_FILL):
                    img[channel, top:top + h, left:left + w] = value
                return img
        return img


class ChannelExchange:
    """gray=2: one of R, G, B (uniformly) copied into all three channels; always fires."""

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        chosen = random.randint(0, 2)
        return img[chosen:chosen + 1].expand(3, -1, -1).clone()


class ChannelAdapGray:
    """R, G or B copied to all channels (1/4 each), else gray with probability 0.5."""

    def __init__(self, probability: float = 0.5):
        self.probability = probability

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        chosen = random.randint(0, 3)
        if chosen < 3:
            return img[chosen:chosen + 1].expand(3, -1, -1).clone()
        if random.uniform(0, 1) > self.probability:
            return img
        gray = GRAY[0] * img[0] + GRAY[1] * img[1] + GRAY[2] * img[2]
        return gray.expand(3, -1, -1).clone()


def caj_transforms(height: int, width: int) -> tuple:
    """(visible view 0, visible view 1, infrared) pipelines."""
    def standard(*extra):
        return T.Compose([T.ToPILImage(), T.Pad(10), T.RandomCrop((height, width)),
                          T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD),
                          ChannelRandomErasing(0.5), *extra])
    return standard(), standard(ChannelExchange()), standard(ChannelAdapGray(0.5))


class CajDataset(Dataset):
    """``(visible view 0, visible view 1, infrared, visible label, infrared label)``."""

    def __init__(self, vis_images, vis_labels, ir_images, ir_labels, vis_index, ir_index):
        self.vis_images, self.vis_labels = vis_images, vis_labels
        self.ir_images, self.ir_labels = ir_images, ir_labels
        self.vis_index, self.ir_index = vis_index, ir_index
        self.color, self.color1, self.thermal = caj_transforms(*vis_images.shape[1:3])

    def __getitem__(self, index):
        v, i = self.vis_index[index], self.ir_index[index]
        visible = self.vis_images[v]
        return (self.color(visible), self.color1(visible), self.thermal(self.ir_images[i]),
                self.vis_labels[v], self.ir_labels[i])

    def __len__(self):
        return len(self.vis_labels)


def caj_loader(vis_images, vis_labels, ir_images, ir_labels, *, batch_ids=8, num_pos=4,
               workers=2) -> DataLoader:
    """Batches of P·K samples (3·P·K images), the AGW identity sampler unchanged."""
    sampler = OriginalIdentitySampler(vis_labels, ir_labels, num_pos, batch_ids)
    dataset = CajDataset(vis_images, vis_labels, ir_images, ir_labels, sampler.vis_index,
                         sampler.ir_index)
    return DataLoader(dataset, batch_size=batch_ids * num_pos, sampler=sampler,
                      num_workers=workers, drop_last=True)
