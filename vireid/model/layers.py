"""Layers of AGW: the non-local block and generalised-mean pooling."""

from __future__ import annotations

import torch
from torch import nn

# The original computes its inter-channels as ``reduc_ratio // reduc_ratio``, which is 1 for
# any ratio: every non-local block squeezes to ONE channel. Kept for parity with published
# numbers (and the parameter count 24,359,311).
NONLOCAL_INTER_CHANNELS = 1
GEM_P = 3.0
GEM_EPS = 1e-12


class NonLocal(nn.Module):
    """Non-local block: z = x + BN(W · (θᵀφ / N) · g), BN initialised to zero (identity).

    f = θᵀφ is (H·W)×(H·W); the product is evaluated as θᵀ(φ·gᵀ)/N instead — the same
    maths by associativity, with O(H·W) memory — in float32 even under autocast.
    """

    def __init__(self, channels: int, inter_channels: int = NONLOCAL_INTER_CHANNELS):
        super().__init__()
        self.theta = nn.Conv2d(channels, inter_channels, 1)
        self.phi = nn.Conv2d(channels, inter_channels, 1)
        self.g = nn.Conv2d(channels, inter_channels, 1)
        self.out = nn.Sequential(nn.Conv2d(inter_channels, channels, 1), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.out[1].weight)
        nn.init.zeros_(self.out[1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        theta, phi, g = (conv(x).flatten(2) for conv in (self.theta, self.phi, self.g))
        with torch.autocast(device_type=x.device.type, enabled=False):
            context = torch.bmm(phi.float(), g.float().transpose(1, 2)) / (height * width)
            y = torch.bmm(theta.float().transpose(1, 2), context)  # (B, N, inter)
        y = y.transpose(1, 2).reshape(batch, -1, height, width)
        return x + self.out(y)


class GeM(nn.Module):
    """Generalised-mean pooling with fixed p = 3: (mean(x³) + 1e-12)^(1/3) over H·W.

    Always float32: x³ overflows float16. Like the original it does not clamp (inputs follow
    a ReLU).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return (x.float().pow(GEM_P).mean(dim=(2, 3)) + GEM_EPS).pow(1.0 / GEM_P)


class AvgPool(nn.Module):
    """Global average pooling (method base), in float32 like GeM."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return x.float().mean(dim=(2, 3))
