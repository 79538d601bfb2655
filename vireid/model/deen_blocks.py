"""The blocks DEEN adds to the ResNet (the authors' ``DEEN/model.py`` in ZYK100/LLCM, L91-203):
MFA = CNL then PNL, and DEE, the embedding expansion that triples the batch.

Attribute names are the authors' (``CNL.theta``, ``W.1``, ``DEE.FC12`` …) so their checkpoints
load key for key. Both non-local blocks follow the authors' arithmetic exactly, quirks
included: the affinity is divided by its last dimension instead of softmaxed, and PNL reads
its (B, C/2, N) projections as (B, C, N/2), so its "positions" mix channel halves.

The affinity energies are sums over hundreds to thousands of products (≈1e4 at MFA1 at
initialisation, more with trained or scaled features; float16 ends at 65,504), and the mixed
values that W reads follow them (PNL's reach 1.5e6 in MFA3 with inputs ×10 at
initialisation): each block's attention and its W projection run in float32 with autocast
switched off. W is ≈2% of the network's FLOPs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DEE_DROPOUT = 0.01  # on all three parts of the tripled batch, the original's included
DEE_SQUEEZE = 4  # the dilated convolutions map C → C/4
PNL_REDUCTION = 2  # PNL's projections have C_low/2 channels


def _projection(channels_in: int, channels_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(channels_in, channels_out, kernel_size=1, stride=stride)


def _zero_gain_output(channels_in: int, channels_out: int, stride: int = 1) -> nn.Sequential:
    """W: 1×1 convolution then BatchNorm with weight and bias 0, so a new block is the
    identity."""
    out = nn.Sequential(_projection(channels_in, channels_out, stride),
                        nn.BatchNorm2d(channels_out))
    nn.init.zeros_(out[1].weight)
    nn.init.zeros_(out[1].bias)
    return out


def _float32_attention(device_type: str):
    return torch.autocast(device_type=device_type, enabled=False)


class CNL(nn.Module):
    """Channel non-local: a C_low × C_low affinity between the stage's output (``high``) and
    its input (``low``), z = high + W((θφᵀ / C_low)·g).

    With ``stride`` 2 (a stage that halves the resolution) φ and W are strided: φ meets θ's
    positions, and W brings g's full-resolution result down to ``high``'s size.
    """

    def __init__(self, high_channels: int, low_channels: int, stride: int = 1):
        super().__init__()
        self.g = _projection(low_channels, low_channels)
        self.theta = _projection(high_channels, low_channels)
        self.phi = _projection(low_channels, low_channels, stride)
        self.W = _zero_gain_output(low_channels, high_channels, stride)

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        g = self.g(low).flatten(2)  # (B, C_low, N_low)
        theta = self.theta(high).flatten(2)  # (B, C_low, N_high)
        phi = self.phi(low).flatten(2)  # (B, C_low, N_high)
        with _float32_attention(high.device.type):
            energy = torch.bmm(theta.float(), phi.float().transpose(1, 2))  # (B, C_low, C_low)
            y = torch.bmm(energy / energy.size(-1), g.float())
            return high + self.W(y.reshape(*g.shape[:2], *low.shape[2:]))


def _paired(x: torch.Tensor, channels: int) -> torch.Tensor:
    """(B, C/2, H, W) read as (B, C, H·W/2), as the authors' ``view`` does: row c holds channel
    c // 2, positions (c % 2)·N/2 … of the original tensor."""
    if x.shape[2] * x.shape[3] % 2:
        raise ValueError(f"PNL needs an even number of positions, got {tuple(x.shape[2:])} "
                         "(use an input size whose feature maps have an even H·W)")
    return x.reshape(x.size(0), channels, -1)


class PNL(nn.Module):
    """Pixel non-local: z = high + W((θᵀφ / N')·gᵀ) over "positions" that are the authors'
    channel-mixing reshape of C_low/2-channel projections (``_paired``), N' = N_low / 2."""

    def __init__(self, high_channels: int, low_channels: int):
        super().__init__()
        self.low_channels = low_channels
        inner = low_channels // PNL_REDUCTION
        self.g = _projection(low_channels, inner)
        self.theta = _projection(high_channels, inner)
        self.phi = _projection(low_channels, inner)
        self.W = _zero_gain_output(inner, high_channels)

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        channels = self.low_channels
        g = _paired(self.g(low), channels)  # (B, C_low, N_low/2)
        theta = _paired(self.theta(high), channels)  # (B, C_low, N_high/2)
        phi = _paired(self.phi(low), channels)  # (B, C_low, N_low/2)
        with _float32_attention(high.device.type):
            energy = torch.bmm(theta.float().transpose(1, 2), phi.float())  # (B, N_h/2, N_l/2)
            y = torch.bmm(energy / energy.size(-1), g.float().transpose(1, 2))  # (B, N_h/2, C)
            y = y.transpose(1, 2).reshape(y.size(0), channels // PNL_REDUCTION,
                                          *high.shape[2:])
            return high + self.W(y)


class MFA(nn.Module):
    """Multi-level feature aggregation after a ResNet stage: CNL, then PNL, each reading the
    stage's input ``low``. ``downsample``: the stage halved the resolution."""

    def __init__(self, high_channels: int, low_channels: int, downsample: bool):
        super().__init__()
        self.CNL = CNL(high_channels, low_channels, stride=2 if downsample else 1)
        self.PNL = PNL(high_channels, low_channels)

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        return self.PNL(self.CNL(high, low), low)


class DEE(nn.Module):
    """Diverse embedding expansion: two expansions of x, each the mean of three 3×3
    convolutions (dilation 1, 2, 3; C → C/4, no bias), ReLU, then a 1×1 convolution back to C.
    Returns [x; e1; e2] along the batch (3B rows, branch-major), dropout p = 0.01 on all of it.

    Keys: ``FC{branch}{dilation}`` and ``FC{branch}`` (branch 1, 2), as the authors name them.
    """

    DILATIONS = (1, 2, 3)

    def __init__(self, channels: int, dropout: float = DEE_DROPOUT):
        super().__init__()
        inner = channels // DEE_SQUEEZE
        for branch in (1, 2):
            for dilation in self.DILATIONS:
                setattr(self, f"FC{branch}{dilation}",
                        nn.Conv2d(channels, inner, kernel_size=3, padding=dilation,
                                  dilation=dilation, bias=False))
            setattr(self, f"FC{branch}", nn.Conv2d(inner, channels, kernel_size=1))
        for conv in self.modules():
            if isinstance(conv, nn.Conv2d):  # the authors' weights_init_kaiming: weights only
                nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in")
        self.dropout = nn.Dropout(p=dropout)

    def expansion(self, x: torch.Tensor, branch: int) -> torch.Tensor:
        one, two, three = (getattr(self, f"FC{branch}{d}")(x) for d in self.DILATIONS)
        return getattr(self, f"FC{branch}")(F.relu((one + two + three) / 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(torch.cat((x, self.expansion(x, 1), self.expansion(x, 2))))
