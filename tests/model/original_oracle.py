"""A test oracle: the original AGW ``embed_net`` (resnet50, non-local on, GeM on), rebuilt
from its description with the original's attribute names, so that its ``state_dict()`` has the
original checkpoints' key names and shapes (1025 entries, 71,365,839 parameters), and its
forward pass is a literal transcription of the original's.

Each modality module and the shared module hold a whole ResNet-50 (the original's resnet.py
has no ``fc``); the forward pass uses only the stems' conv1/bn1 and the shared layer1..layer4.
Also the original's losses, transcribed: cross-entropy plus the weighted regularised triplet.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

LAYERS = [3, 4, 6, 3]
NON_LAYERS = [0, 2, 3, 0]
CHANNELS = [256, 512, 1024, 2048]


def resnet50_last_stride_1() -> nn.Module:
    """The original's resnet50(last_conv_stride=1): torchvision's Bottleneck (stride on conv2)."""
    model = torchvision.models.resnet50(weights=None)
    model.layer4[0].conv2.stride = (1, 1)
    model.layer4[0].downsample[0].stride = (1, 1)
    del model.fc, model.avgpool
    return model


class Non_local(nn.Module):  # noqa: N801 - the original's name
    def __init__(self, in_channels, reduc_ratio=2):
        super().__init__()
        self.in_channels = in_channels
        self.inter_channels = reduc_ratio // reduc_ratio
        self.g = nn.Sequential(nn.Conv2d(in_channels, self.inter_channels, 1, 1, 0))
        self.W = nn.Sequential(nn.Conv2d(self.inter_channels, in_channels, 1, 1, 0),
                               nn.BatchNorm2d(in_channels))
        self.theta = nn.Conv2d(in_channels, self.inter_channels, 1, 1, 0)
        self.phi = nn.Conv2d(in_channels, self.inter_channels, 1, 1, 0)

    def forward(self, x):
        batch_size = x.size(0)
        g_x = self.g(x).view(batch_size, self.inter_channels, -1).permute(0, 2, 1)
        theta_x = self.theta(x).view(batch_size, self.inter_channels, -1).permute(0, 2, 1)
        phi_x = self.phi(x).view(batch_size, self.inter_channels, -1)
        f = torch.matmul(theta_x, phi_x)
        f_div_C = f / f.size(-1)  # noqa: N806
        y = torch.matmul(f_div_C, g_x).permute(0, 2, 1).contiguous()
        y = y.view(batch_size, self.inter_channels, *x.size()[2:])
        return self.W(y) + x


class thermal_module(nn.Module):  # noqa: N801
    def __init__(self):
        super().__init__()
        self.thermal = resnet50_last_stride_1()

    def forward(self, x):
        t = self.thermal
        return t.maxpool(t.relu(t.bn1(t.conv1(x))))


class visible_module(nn.Module):  # noqa: N801
    def __init__(self):
        super().__init__()
        self.visible = resnet50_last_stride_1()

    def forward(self, x):
        v = self.visible
        return v.maxpool(v.relu(v.bn1(v.conv1(x))))


class base_resnet(nn.Module):  # noqa: N801
    def __init__(self):
        super().__init__()
        self.base = resnet50_last_stride_1()


def l2norm(x):
    """The original's Normalize(power=2)."""
    return x.div(x.pow(2).sum(1, keepdim=True).pow(1.0 / 2))


class embed_net(nn.Module):  # noqa: N801
    def __init__(self, class_num):
        super().__init__()
        self.thermal_module = thermal_module()
        self.visible_module = visible_module()
        self.base_resnet = base_resnet()
        for n in range(1, 5):  # NL_1 .. NL_4, placed after the last NON_LAYERS blocks
            count = NON_LAYERS[n - 1]
            setattr(self, f"NL_{n}", nn.ModuleList(
                [Non_local(CHANNELS[n - 1]) for _ in range(count)]))
            setattr(self, f"NL_{n}_idx",
                    sorted(LAYERS[n - 1] - (i + 1) for i in range(count)))
        self.bottleneck = nn.BatchNorm1d(2048)
        self.bottleneck.bias.requires_grad_(False)
        self.classifier = nn.Linear(2048, class_num, bias=False)

    def stage(self, n, x):
        layer = getattr(self.base_resnet.base, f"layer{n}")
        blocks, idx = getattr(self, f"NL_{n}"), getattr(self, f"NL_{n}_idx") or [-1]
        counter = 0
        for i in range(len(layer)):
            x = layer[i](x)
            if i == idx[counter]:
                x = blocks[counter](x)
                counter += 1
        return x

    def forward(self, x1, x2, modal=0):
        if modal == 0:
            x = torch.cat((self.visible_module(x1), self.thermal_module(x2)), 0)
        elif modal == 1:
            x = self.visible_module(x1)
        else:
            x = self.thermal_module(x2)
        for n in range(1, 5):
            x = self.stage(n, x)
        b, c, h, w = x.shape
        x_pool = (torch.mean(x.view(b, c, -1) ** 3.0, dim=-1) + 1e-12) ** (1 / 3.0)
        feat = self.bottleneck(x_pool)
        if self.training:
            return x_pool, self.classifier(feat)
        return l2norm(x_pool), l2norm(feat)


def randomise(model: nn.Module, generator: torch.Generator) -> None:
    """Random weights everywhere, BatchNorm running statistics included (non-local BNs get
    non-zero weights, so the blocks are not the identity they are at initialisation)."""
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            tensor.copy_(_random_like(name, tensor, generator))


def _random_like(name: str, tensor: torch.Tensor, generator) -> torch.Tensor:
    def uniform(low, high):
        return low + (high - low) * torch.rand(tensor.shape, generator=generator)

    if name.endswith("num_batches_tracked"):
        return torch.randint(1, 10_000, (), generator=generator)
    if name.endswith("running_var"):
        return uniform(0.5, 2.0)
    if tensor.dim() == 1:  # BN weights, biases and running means, conv biases
        return uniform(0.5, 1.0) if name.endswith("weight") else uniform(-0.1, 0.1)
    fan_in = tensor[0].numel()
    # theta, phi and g enter the non-local output as a product of three: small, or it explodes
    gain = 0.1 if name.startswith("NL_") and ".W." not in name else 2.0 ** 0.5
    return torch.randn(tensor.shape, generator=generator) * gain / fan_in ** 0.5


def pdist_torch(emb1, emb2):
    m, n = emb1.shape[0], emb2.shape[0]
    emb1_pow = torch.pow(emb1, 2).sum(dim=1, keepdim=True).expand(m, n)
    emb2_pow = torch.pow(emb2, 2).sum(dim=1, keepdim=True).expand(n, m).t()
    dist_mtx = (emb1_pow + emb2_pow).addmm_(emb1, emb2.t(), beta=1, alpha=-2)
    return dist_mtx.clamp(min=1e-12).sqrt()


def softmax_weights(dist, mask):
    max_v = torch.max(dist * mask, dim=1, keepdim=True)[0]
    diff = dist - max_v
    Z = torch.sum(torch.exp(diff) * mask, dim=1, keepdim=True) + 1e-6  # noqa: N806
    return torch.exp(diff) * mask / Z


def original_loss(feat, out0, labels):
    """train.py: ``loss = criterion_id(out0, labels) + criterion_tri(feat, labels)[0]``."""
    dist_mat = pdist_torch(feat, feat)
    N = dist_mat.size(0)  # noqa: N806
    is_pos = labels.expand(N, N).eq(labels.expand(N, N).t()).float()
    is_neg = labels.expand(N, N).ne(labels.expand(N, N).t()).float()
    dist_ap, dist_an = dist_mat * is_pos, dist_mat * is_neg
    furthest_positive = torch.sum(dist_ap * softmax_weights(dist_ap, is_pos), dim=1)
    closest_negative = torch.sum(dist_an * softmax_weights(-dist_an, is_neg), dim=1)
    y = torch.ones_like(furthest_positive)
    loss_tri = nn.SoftMarginLoss()(closest_negative - furthest_positive, y)
    return nn.CrossEntropyLoss()(out0, labels) + loss_tri
