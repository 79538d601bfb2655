"""Two-stream ResNet: a stem per modality, a shared trunk with optional non-local blocks.

Stems (conv1, bn1, relu, maxpool) are separate small modules: the original keeps a whole
unused ResNet-50 inside each stem (71,365,839 parameters in all); only what the forward pass
uses is built here. The last stage has stride 1.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from vireid.model.layers import NonLocal


@dataclass(frozen=True)
class ArchSpec:
    builder: str  # torchvision constructor
    features: int  # channels after layer4
    nonlocal_after: tuple[tuple[int, ...], ...]  # per layer1..4: blocks followed by a NL block


ARCHS = {
    # The original's layers [3, 4, 6, 3] with non_layers [0, 2, 3, 0].
    "resnet50": ArchSpec("resnet50", 2048, ((), (2, 3), (3, 4, 5), ())),
    # resnet18 (layers [2, 2, 2, 2]): one block after the last block of layer2 and layer3.
    "resnet18": ArchSpec("resnet18", 512, ((), (1,), (1,), ())),
}


def stem(resnet) -> nn.Sequential:
    return nn.Sequential(copy.deepcopy(resnet.conv1), copy.deepcopy(resnet.bn1),
                         nn.ReLU(inplace=True), copy.deepcopy(resnet.maxpool))


def last_stage_stride_one(resnet) -> None:
    first = resnet.layer4[0]
    conv = first.conv2 if hasattr(first, "conv3") else first.conv1  # Bottleneck / BasicBlock
    conv.stride = (1, 1)
    first.downsample[0].stride = (1, 1)


class TwoStreamResNet(nn.Module):
    """visible/infrared stems → concatenation along the batch → shared layer1..layer4."""

    def __init__(self, resnet, spec: ArchSpec, non_local: bool):
        super().__init__()
        last_stage_stride_one(resnet)
        self.visible_stem = stem(resnet)
        self.infrared_stem = stem(resnet)
        layers = []
        for layer, after in zip((resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4),
                                spec.nonlocal_after):
            blocks = []
            for index, block in enumerate(layer):
                blocks.append(block)
                if non_local and index in after:
                    blocks.append(NonLocal(_channels(block)))
            layers.append(nn.Sequential(*blocks))
        self.trunk = nn.Sequential(*layers)

    def forward(self, visible=None, infrared=None):
        parts = []
        if visible is not None:
            parts.append(self.visible_stem(visible))
        if infrared is not None:
            parts.append(self.infrared_stem(infrared))
        if not parts:
            raise ValueError("give visible and/or infrared images")
        x = parts[0] if len(parts) == 1 else torch.cat(parts)
        return self.trunk(x)


def _channels(block) -> int:
    last_bn = block.bn3 if hasattr(block, "bn3") else block.bn2
    return last_bn.num_features
