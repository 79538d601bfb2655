"""A test oracle: the authors' DEEN ``embed_net`` (ZYK100/LLCM, ``DEEN/model.py``), rebuilt
here from its description (the repository has no licence; nothing is copied), with the
authors' attribute names so that its ``state_dict()`` has their checkpoints' keys and shapes,
and a forward pass that transcribes theirs operation for operation: ``view`` where they view,
the same order of products, the same divisor, the DEE's dropout after the concatenation, the
orthogonality term from a triangular Gram matrix.

The ResNet holders (a whole ResNet-50 in each stem module and in the trunk module, last
stride 1, no fc) are the AGW oracle's: the authors' ``resnet.py`` is the same file in both.
Used only by tests.
"""

from __future__ import annotations

import torch
from torch import nn

from tests.model.original_oracle import base_resnet, l2norm, thermal_module, visible_module


class CNL(nn.Module):
    """model.py L124-156: θ(x_h)·φ(x_l)ᵀ, a low×low affinity divided by its width."""

    def __init__(self, high_dim, low_dim, flag=0):
        super().__init__()
        self.high_dim, self.low_dim = high_dim, low_dim
        stride = 1 if flag == 0 else 2
        self.g = nn.Conv2d(low_dim, low_dim, 1, 1, 0)
        self.theta = nn.Conv2d(high_dim, low_dim, 1, 1, 0)
        self.phi = nn.Conv2d(low_dim, low_dim, 1, stride, 0)
        self.W = nn.Sequential(nn.Conv2d(low_dim, high_dim, 1, stride, 0),
                               nn.BatchNorm2d(high_dim))
        nn.init.constant_(self.W[1].weight, 0.0)
        nn.init.constant_(self.W[1].bias, 0.0)

    def forward(self, x_h, x_l):
        n = x_h.size(0)
        value = self.g(x_l).view(n, self.low_dim, -1)
        query = self.theta(x_h).view(n, self.low_dim, -1)
        key = self.phi(x_l).view(n, self.low_dim, -1).permute(0, 2, 1)
        affinity = torch.matmul(query, key)
        weights = affinity / affinity.size(-1)
        mixed = torch.matmul(weights, value).view(n, self.low_dim, *x_l.size()[2:])
        return self.W(mixed) + x_h


class PNL(nn.Module):
    """model.py L158-191: projections of low_dim/2 channels viewed as (n, low_dim, -1)."""

    def __init__(self, high_dim, low_dim, reduc_ratio=2):
        super().__init__()
        self.high_dim, self.low_dim, self.reduc_ratio = high_dim, low_dim, reduc_ratio
        inner = low_dim // reduc_ratio
        self.g = nn.Conv2d(low_dim, inner, 1, 1, 0)
        self.theta = nn.Conv2d(high_dim, inner, 1, 1, 0)
        self.phi = nn.Conv2d(low_dim, inner, 1, 1, 0)
        self.W = nn.Sequential(nn.Conv2d(inner, high_dim, 1, 1, 0), nn.BatchNorm2d(high_dim))
        nn.init.constant_(self.W[1].weight, 0.0)
        nn.init.constant_(self.W[1].bias, 0.0)

    def forward(self, x_h, x_l):
        n = x_h.size(0)
        value = self.g(x_l).view(n, self.low_dim, -1).permute(0, 2, 1)
        query = self.theta(x_h).view(n, self.low_dim, -1).permute(0, 2, 1)
        key = self.phi(x_l).view(n, self.low_dim, -1)
        affinity = torch.matmul(query, key)
        weights = affinity / affinity.size(-1)
        mixed = torch.matmul(weights, value).permute(0, 2, 1).contiguous()
        mixed = mixed.view(n, self.low_dim // self.reduc_ratio, *x_h.size()[2:])
        return self.W(mixed) + x_h


class MFA_block(nn.Module):  # noqa: N801 - the authors' name
    def __init__(self, high_dim, low_dim, flag):
        super().__init__()
        self.CNL = CNL(high_dim, low_dim, flag)
        self.PNL = PNL(high_dim, low_dim)

    def forward(self, x, x0):
        return self.PNL(self.CNL(x, x0), x0)


class DEE_module(nn.Module):  # noqa: N801
    """model.py L91-121 (``reduction`` is accepted and unused, as there)."""

    def __init__(self, channel, reduction=16):
        super().__init__()
        q = channel // 4

        def dilated(d):
            return nn.Conv2d(channel, q, 3, stride=1, padding=d, bias=False, dilation=d)

        self.FC11, self.FC12, self.FC13 = dilated(1), dilated(2), dilated(3)
        self.FC1 = nn.Conv2d(q, channel, 1)
        self.FC21, self.FC22, self.FC23 = dilated(1), dilated(2), dilated(3)
        self.FC2 = nn.Conv2d(q, channel, 1)
        self.dropout = nn.Dropout(p=0.01)

    def forward(self, x):
        a = (self.FC11(x) + self.FC12(x) + self.FC13(x)) / 3
        a = self.FC1(torch.relu(a))
        b = (self.FC21(x) + self.FC22(x) + self.FC23(x)) / 3
        b = self.FC2(torch.relu(b))
        return self.dropout(torch.cat((x, a, b), 0))


class embed_net(nn.Module):  # noqa: N801
    """model.py L205-272; ``dataset == 'regdb'`` drops MFA3 and layer4 (pool_dim 1024)."""

    def __init__(self, class_num, dataset):
        super().__init__()
        self.thermal_module = thermal_module()
        self.visible_module = visible_module()
        self.base_resnet = base_resnet()
        self.dataset = dataset
        self.MFA1 = MFA_block(256, 64, 0)
        self.MFA2 = MFA_block(512, 256, 1)
        if dataset == "regdb":
            pool_dim = 1024
            self.DEE = DEE_module(512)
        else:
            pool_dim = 2048
            self.DEE = DEE_module(1024)
            self.MFA3 = MFA_block(1024, 512, 1)
        self.bottleneck = nn.BatchNorm1d(pool_dim)
        self.bottleneck.bias.requires_grad_(False)
        self.classifier = nn.Linear(pool_dim, class_num, bias=False)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))

    def forward(self, x1, x2, modal=0):
        if modal == 0:
            x = torch.cat((self.visible_module(x1), self.thermal_module(x2)), 0)
        elif modal == 1:
            x = self.visible_module(x1)
        else:
            x = self.thermal_module(x2)
        base = self.base_resnet.base
        x0 = x
        x0 = self.MFA1(base.layer1(x0), x0)
        x0 = self.MFA2(base.layer2(x0), x0)
        if self.dataset == "regdb":
            x = base.layer3(self.DEE(x0))
        else:
            x0 = self.MFA3(base.layer3(x0), x0)
            x = base.layer4(self.DEE(x0))
        xp = self.avgpool(x)
        x_pool = xp.view(xp.size(0), xp.size(1))
        feat = self.bottleneck(x_pool)
        if not self.training:
            return l2norm(x_pool), l2norm(feat)
        return x_pool, self.classifier(feat), self.loss_ort(xp)

    @staticmethod
    def loss_ort(xp):
        """L265-268: per image, the 2×2 Gram matrix of the two expansions' pooled vectors; its
        strict upper triangle summed over images, divided by xp's rows (3 × images)."""
        rows = xp.view(xp.size(0), xp.size(1), xp.size(2)).permute(0, 2, 1)  # (3n, 1, C)
        _, first, second = torch.chunk(rows, 3, 0)
        pair = torch.cat((first, second), 1)  # (n, 2, C)
        gram = torch.bmm(pair, pair.permute(0, 2, 1))
        return torch.triu(gram, diagonal=1).sum() / xp.size(0)


def unread(name: str, dataset: str) -> bool:
    """Whether the forward above never reads the tensor ``name``: each stem module uses only
    its ResNet's conv1/bn1, the trunk module only its layers (RegDB: not layer4)."""
    holder, _, rest = name.partition(".")
    part = rest.split(".")[1] if holder in ("visible_module", "thermal_module",
                                             "base_resnet") else None
    if holder in ("visible_module", "thermal_module"):
        return part not in ("conv1", "bn1")
    if holder == "base_resnet":
        return part in ("conv1", "bn1") or (dataset == "regdb" and part == "layer4")
    return False


def randomise(model: embed_net, generator: torch.Generator, gain: float = 1.0) -> None:
    """Random weights everywhere the forward reads, BatchNorm running statistics included, and
    the MFA blocks' W-BatchNorm gains set to ``gain`` ± 50% (zero, as initialised, would make
    every MFA block the identity and a parity test vacuous). Unread tensors become zeros: cheap,
    and a network that read one by mistake would not match."""
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if unread(name, model.dataset):
                tensor.zero_()
            else:
                tensor.copy_(_random_like(name, tensor, generator, gain))


def _random_like(name: str, tensor: torch.Tensor, generator, gain: float) -> torch.Tensor:
    def uniform(low, high):
        return low + (high - low) * torch.rand(tensor.shape, generator=generator)

    if name.endswith("num_batches_tracked"):
        return torch.randint(1, 10_000, (), generator=generator)
    if name.endswith("running_var"):
        return uniform(0.5, 2.0)
    in_mfa = name.startswith("MFA")
    if in_mfa and ".W.1.weight" in name:
        return uniform(0.5 * gain, 1.5 * gain)
    if tensor.dim() == 1:  # BN weights, biases and running means, conv biases
        return uniform(0.5, 1.0) if name.endswith("weight") else uniform(-0.1, 0.1)
    fan_in = tensor[0].numel()
    # θ, φ and g meet in a product of three (the affinity is not normalised): small
    scale = 0.1 if in_mfa and ".W." not in name else 2.0 ** 0.5
    return torch.randn(tensor.shape, generator=generator) * scale / fan_in ** 0.5
