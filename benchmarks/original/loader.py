"""The original AGW training loader, rebuilt faithfully as the benchmarks' baseline.

What the original does (``data_loader.SYSUData`` + ``utils.IdentitySampler`` + ``train.py``):
every training image is held in RAM as a uint8 H×W×3 array (SYSU from a pre-built ``.npy``,
RegDB/LLCM decoded and resized at start-up), each sample is augmented per image with
PIL/torchvision transforms, a ``torch.utils.data.DataLoader`` with worker processes collates
P·K visible and P·K infrared images, and the identity sampler draws with the GLOBAL NumPy RNG.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class OriginalRandomErasing:
    """The re-id RandomErasing the original uses (p=0.5, area 0.02-0.4, aspect 0.3, value 0)."""

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if random.uniform(0, 1) > 0.5:
            return img
        for _ in range(100):
            area = img.size(1) * img.size(2) * random.uniform(0.02, 0.4)
            aspect = random.uniform(0.3, 1 / 0.3)
            h = int(round(math.sqrt(area * aspect)))
            w = int(round(math.sqrt(area / aspect)))
            if w < img.size(2) and h < img.size(1):
                x1 = random.randint(0, img.size(1) - h)
                y1 = random.randint(0, img.size(2) - w)
                img[:, x1:x1 + h, y1:y1 + w] = 0
                return img
        return img


def original_transform(height: int, width: int):
    return T.Compose([T.ToPILImage(), T.Pad(10), T.RandomCrop((height, width)),
                      T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD),
                      OriginalRandomErasing()])


def load_all(paths, height: int, width: int) -> np.ndarray:
    """The original's start-up: decode and resize every image into one uint8 array."""
    return np.stack([np.asarray(Image.open(p).convert("RGB").resize((width, height),
                                                                    Image.LANCZOS))
                     for p in paths])


class OriginalDataset(Dataset):
    def __init__(self, vis_images, vis_labels, ir_images, ir_labels, transform):
        self.vis_images, self.vis_labels = vis_images, vis_labels
        self.ir_images, self.ir_labels = ir_images, ir_labels
        self.transform = transform
        self.vis_index = self.ir_index = None

    def __getitem__(self, index):
        v, i = self.vis_index[index], self.ir_index[index]
        return (self.transform(self.vis_images[v]), self.transform(self.ir_images[i]),
                self.vis_labels[v], self.ir_labels[i])

    def __len__(self):
        return len(self.vis_labels)


class OriginalIdentitySampler(Sampler):
    """Global-RNG identity sampler: N // (P·K) + 1 steps of P ids × K images per modality."""

    def __init__(self, vis_labels, ir_labels, num_pos: int, batch_ids: int):
        classes = np.unique(vis_labels)
        vis_pos = [np.flatnonzero(vis_labels == c) for c in classes]
        ir_pos = [np.flatnonzero(ir_labels == c) for c in classes]
        steps = int(max(len(vis_labels), len(ir_labels)) / (batch_ids * num_pos)) + 1
        vis_index, ir_index = [], []
        for _ in range(steps):
            ids = np.random.choice(classes, batch_ids, replace=False)
            for c in ids:
                vis_index.extend(np.random.choice(vis_pos[c], num_pos))
                ir_index.extend(np.random.choice(ir_pos[c], num_pos))
        self.vis_index, self.ir_index = np.array(vis_index), np.array(ir_index)
        self.N = len(self.vis_index)

    def __iter__(self):
        return iter(np.arange(self.N))

    def __len__(self):
        return self.N


def original_loader(vis_images, vis_labels, ir_images, ir_labels, *, batch_ids=8, num_pos=4,
                    workers=2) -> DataLoader:
    height, width = vis_images.shape[1:3]
    dataset = OriginalDataset(vis_images, vis_labels, ir_images, ir_labels,
                              original_transform(height, width))
    sampler = OriginalIdentitySampler(vis_labels, ir_labels, num_pos, batch_ids)
    dataset.vis_index, dataset.ir_index = sampler.vis_index, sampler.ir_index
    return DataLoader(dataset, batch_size=batch_ids * num_pos, sampler=sampler,
                      num_workers=workers, drop_last=True)
