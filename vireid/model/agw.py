"""AGW: two-stream ResNet + (non-local, GeM) + BNNeck head (docs/recipe.md, Model).

Training forward → (pooled feature, logits of the BN feature); evaluation forward →
(L2-normalised pooled feature "pool", L2-normalised BN feature "fc"), both reported by the
original.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vireid.model.backbone import TwoStreamResNet
from vireid.model.layers import AvgPool, GeM

POOLING = {"gem": GeM, "avg": AvgPool}  # GeM p = 3 (AGW); average pooling (base)
HEAD_LR_FACTOR = 1.0
BACKBONE_LR_FACTOR = 0.1


class BNNeckHead(nn.Module):
    """BatchNorm1d with a frozen zero bias, then a bias-free linear classifier."""

    def __init__(self, features: int, num_classes: int):
        super().__init__()
        self.bottleneck = nn.BatchNorm1d(features)
        nn.init.normal_(self.bottleneck.weight, 1.0, 0.01)
        nn.init.zeros_(self.bottleneck.bias)
        self.bottleneck.bias.requires_grad_(False)
        self.classifier = nn.Linear(features, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, 0.0, 0.001)

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature = self.bottleneck(pooled)
        return feature, self.classifier(feature)


class AGW(nn.Module):
    def __init__(self, backbone: TwoStreamResNet, features: int, num_classes: int,
                 pooling: str = "gem"):
        super().__init__()
        self.backbone = backbone
        self.pool = POOLING[pooling]()
        self.head = BNNeckHead(features, num_classes)

    def forward_features(self, visible=None, infrared=None) -> torch.Tensor:
        """Pooled float32 features, visible images first."""
        return self.pool(self.backbone(visible, infrared))

    def forward(self, visible=None, infrared=None):
        pooled = self.forward_features(visible, infrared)
        feature, logits = self.head(pooled)
        if self.training:
            return pooled, logits
        return F.normalize(pooled, dim=1), F.normalize(feature, dim=1)

    def param_groups(self, lr: float) -> list[dict]:
        """The original's SGD groups: trunk, stems and non-local at 0.1·lr; BNNeck, classifier
        at lr."""
        head = {id(p) for p in self.head.parameters()}
        rest = [p for p in self.parameters() if id(p) not in head and p.requires_grad]
        return [
            {"params": rest, "lr": BACKBONE_LR_FACTOR * lr, "name": "backbone"},
            {"params": [p for p in self.head.bottleneck.parameters() if p.requires_grad],
             "lr": HEAD_LR_FACTOR * lr, "name": "bottleneck"},
            {"params": list(self.head.classifier.parameters()), "lr": HEAD_LR_FACTOR * lr,
             "name": "classifier"},
        ]
