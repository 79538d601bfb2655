"""Flip averaging at test time: each feature is normalise((f(x) + f(mirrored x)) / 2) of the
model's two L2-normalised outputs, for both the pool and the fc feature (docs/methods.md)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vireid.eval.features import _extract
from vireid.records import Modality


class Lopsided(nn.Module):
    """A tiny model whose features depend on where things are along the width; eval outputs
    are L2-normalised, as AGW's."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8, 6)

    def forward(self, visible=None, infrared=None):
        x = visible if visible is not None else -infrared
        pooled = F.adaptive_avg_pool2d(self.conv(x), (1, 8)).flatten(1)  # keeps the width
        return F.normalize(pooled, dim=1), F.normalize(self.fc(pooled), dim=1)


def extract(model, images, flip, modality=Modality.VISIBLE, channels_last=True):
    into = ([], [], [])
    batches = [{"images": images[:3], "samples": [0, 1, 2]},
               {"images": images[3:], "samples": list(range(3, len(images)))}]
    with torch.no_grad():  # as extract_features runs it
        _extract(model.eval(), batches, torch.device("cpu"), None, channels_last, modality,
                 into, flip)
    return tuple(torch.from_numpy(np.concatenate(part)) for part in into[1:])


def images(n=5, seed=1):
    return torch.rand(n, 3, 16, 8, generator=torch.Generator().manual_seed(seed))


def test_flip_is_the_normalised_mean_of_both_outputs():
    model, x = Lopsided(), images()
    with torch.no_grad():
        plain, mirrored = model(visible=x), model(visible=torch.flip(x, dims=[3]))
    pool, fc = extract(model, x, flip=True)
    for got, a, b in ((pool, plain[0], mirrored[0]), (fc, plain[1], mirrored[1])):
        expected = F.normalize((a + b) / 2, dim=1)
        assert torch.allclose(got, expected, atol=1e-6)
        assert torch.allclose(got.norm(dim=1), torch.ones(len(x)), atol=1e-6)
        assert not torch.allclose(got, a, atol=1e-3)  # the mirror mattered
    assert torch.allclose(extract(model, x, flip=False)[0], plain[0], atol=1e-6)


def test_flip_uses_the_modality_stem_and_any_memory_format():
    model, x = Lopsided(), images()
    with torch.no_grad():
        a, b = model(infrared=x)[1], model(infrared=torch.flip(x, dims=[3]))[1]
    for channels_last in (True, False):
        fc = extract(model, x, True, Modality.INFRARED, channels_last)[1]
        assert torch.allclose(fc, F.normalize(a + b, dim=1), atol=1e-6)


def test_a_mirror_symmetric_image_gives_the_same_features_with_or_without_flip():
    model, half = Lopsided(), images(seed=2)[..., :4]
    symmetric = torch.cat([half, torch.flip(half, dims=[3])], dim=3)
    for flipped, plain in zip(extract(model, symmetric, True), extract(model, symmetric, False)):
        assert torch.allclose(flipped, plain, atol=1e-6)
    model_real = _resnet18()
    for flipped, plain in zip(extract(model_real, _symmetric_photo(), True),
                              extract(model_real, _symmetric_photo(), False)):
        assert torch.allclose(flipped, plain, atol=1e-5)


def _resnet18():
    from vireid.model import build_model

    torch.manual_seed(0)
    return build_model(5, arch="resnet18", non_local=True, pooling="gem", pretrained="none")


def _symmetric_photo():
    half = images(n=4, seed=3).repeat(1, 1, 4, 2)  # 64 × 16, then mirrored to 64 × 32
    return torch.cat([half, torch.flip(half, dims=[3])], dim=3)
