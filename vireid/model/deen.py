"""DEEN (Zhang & Wang, CVPR 2023): two stems, a shared ResNet with MFA blocks after its
stages, and DEE, which triples the batch before the last stage (the authors' ``DEEN/model.py``
in ZYK100/LLCM, ``embed_net``).

Variants, chosen by ``variant``:

    full   (SYSU-MM01, LLCM)  layer1 MFA1 layer2 MFA2 layer3 MFA3 DEE layer4, 2048-d
    regdb                     layer1 MFA1 layer2 MFA2 DEE layer3,             1024-d

Widths come from the backbone (``arch``): ResNet-50 gives the authors' MFA1 (256, 64),
MFA2 (512, 256), MFA3 (1024, 512) and DEE(1024); ResNet-18 the same layout at
64/128/256/512, small enough to train on a CPU.

Rows: a forward of B images (visible first, then infrared, as given) gives 3B rows before
pooling, branch-major: [x; e1; e2], each block of B in input order.

Keys are the authors' (``visible_module.visible.conv1.weight``, ``base_resnet.base.layer3.…``,
``MFA2.PNL.W.1.weight``, ``DEE.FC13.weight``, ``bottleneck``, ``classifier``). Their network
also holds parts its forward never uses: a whole ResNet inside each stem module, the trunk
module's own conv1/bn1 and, for RegDB, layer4 (47.0 M of the 89.0 M parameters of the SYSU
network). They are not built here; loading an authors' state dict drops them after checking
their shapes (``unused_copies``), so ``load_state_dict(their['net'])`` works with strict=True.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from vireid.errors import VireidError
from vireid.model.agw import BACKBONE_LR_FACTOR, HEAD_LR_FACTOR, BNNeckHead
from vireid.model.backbone import ARCHS, last_stage_stride_one
from vireid.model.deen_blocks import DEE, MFA
from vireid.model.layers import AvgPool

MFA_STAGES = {"full": 3, "regdb": 2}  # stages followed by an MFA block; DEE, then one more
BRANCHES = 3  # DEE's [x; e1; e2]
# The authors' modules that each hold a whole ResNet (the source of their unused copies).
WHOLE_RESNETS = ("visible_module.visible.", "thermal_module.thermal.", "base_resnet.base.")


class Stem(nn.Module):
    """A ResNet's conv1, bn1, ReLU and max-pool (keys ``conv1.*``, ``bn1.*``)."""

    def __init__(self, resnet):
        super().__init__()
        self.conv1 = copy.deepcopy(resnet.conv1)
        self.bn1 = copy.deepcopy(resnet.bn1)
        self.maxpool = copy.deepcopy(resnet.maxpool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(F.relu(self.bn1(self.conv1(x))))


def stage_widths(resnet) -> tuple[int, ...]:
    """Channels after the stem and after layer1..layer4: (64, 256, 512, 1024, 2048) for
    ResNet-50, (64, 64, 128, 256, 512) for ResNet-18."""
    def out(layer):
        last = layer[-1]
        return (last.conv3 if hasattr(last, "conv3") else last.conv2).out_channels

    return (resnet.conv1.out_channels,
            *(out(getattr(resnet, f"layer{k}")) for k in range(1, 5)))


def orthogonality(pooled: torch.Tensor) -> torch.Tensor:
    """The authors' ``loss_ort``: Σᵢ⟨e1ᵢ, e2ᵢ⟩ over the images, divided by the number of rows
    of ``pooled`` (3 × images), from the branch-major pooled features of a training forward.
    Signed, not squared: its weight (λ2 = 0.01) multiplies this value. Float32."""
    _, first, second = pooled.float().unflatten(0, (BRANCHES, -1))
    return (first * second).sum() / pooled.size(0)


def per_branch_normalised(rows: torch.Tensor) -> torch.Tensor:
    """(3B, C) branch-major → (B, 3C): each image's [x | e1 | e2], each part L2-normalised."""
    parts = F.normalize(rows.unflatten(0, (BRANCHES, -1)), dim=2)
    return parts.transpose(0, 1).flatten(1)


class DEEN(nn.Module):
    """The DEEN network. ``pretrained`` as for ``build_model``: "none", "torchvision" or the
    path of a torchvision ResNet state dict (stems and trunk start from it, as the authors'
    three ResNets all load ImageNet weights)."""

    def __init__(self, num_classes: int, arch: str = "resnet50", variant: str = "full",
                 pretrained: str = "torchvision"):
        super().__init__()
        if variant not in MFA_STAGES:
            raise VireidError("variant", f"unknown DEEN variant {variant!r} "
                              f"({', '.join(MFA_STAGES)})")
        resnet = _resnet(arch, pretrained)
        last_stage_stride_one(resnet)
        self.arch, self.variant = str(arch), variant
        self.stages = stages = MFA_STAGES[variant]
        widths = stage_widths(resnet)
        self.visible_module = nn.ModuleDict({"visible": Stem(resnet)})
        self.thermal_module = nn.ModuleDict({"thermal": Stem(resnet)})
        layers = {f"layer{k}": getattr(resnet, f"layer{k}") for k in range(1, stages + 2)}
        self.base_resnet = nn.ModuleDict({"base": nn.ModuleDict(layers)})
        for k in range(1, stages + 1):
            setattr(self, f"MFA{k}", MFA(widths[k], widths[k - 1], downsample=k > 1))
        self.DEE = DEE(widths[stages])
        self.features = widths[stages + 1]
        head = BNNeckHead(self.features, num_classes)  # the authors' initialisation
        self.bottleneck, self.classifier = head.bottleneck, head.classifier
        self.pool = AvgPool()
        self.register_load_state_dict_pre_hook(_drop_unused_copies)

    def stems(self, visible=None, infrared=None) -> torch.Tensor:
        """Each modality through its own stem, concatenated along the batch, visible first."""
        parts = []
        if visible is not None:
            parts.append(self.visible_module["visible"](visible))
        if infrared is not None:
            parts.append(self.thermal_module["thermal"](infrared))
        if not parts:
            raise ValueError("give visible and/or infrared images")
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Stages with their MFA blocks (each reads the stage's input and output), DEE, and
        the last stage on the tripled batch."""
        layers = self.base_resnet["base"]
        for k in range(1, self.stages + 1):
            x = getattr(self, f"MFA{k}")(layers[f"layer{k}"](x), x)
        return layers[f"layer{self.stages + 1}"](self.DEE(x))

    def forward_features(self, visible=None, infrared=None) -> torch.Tensor:
        """Average-pooled float32 features, (3B, C), branch-major."""
        return self.pool(self.trunk(self.stems(visible, infrared)))

    def forward(self, visible=None, infrared=None):
        """Training: (pooled (3B, C), logits (3B, classes)); the orthogonality term is
        ``orthogonality(pooled)``. Evaluation: (pool, fc), each (B, 3C), per-branch
        L2-normalised (``per_branch_normalised``)."""
        pooled = self.forward_features(visible, infrared)
        feature = self.bottleneck(pooled)
        if self.training:
            return pooled, self.classifier(feature)
        return per_branch_normalised(pooled), per_branch_normalised(feature)

    def param_groups(self, lr: float) -> list[dict]:
        """The authors' SGD groups: bottleneck and classifier at lr; everything else (stems,
        trunk, MFA, DEE) at 0.1·lr."""
        head = {id(p) for m in (self.bottleneck, self.classifier) for p in m.parameters()}
        rest = [p for p in self.parameters() if id(p) not in head and p.requires_grad]
        return [
            {"params": rest, "lr": BACKBONE_LR_FACTOR * lr, "name": "backbone"},
            {"params": [p for p in self.bottleneck.parameters() if p.requires_grad],
             "lr": HEAD_LR_FACTOR * lr, "name": "bottleneck"},
            {"params": list(self.classifier.parameters()), "lr": HEAD_LR_FACTOR * lr,
             "name": "classifier"},
        ]

    def unused_copies(self) -> dict[str, torch.Size]:
        """Keys of the authors' state dict that this network does not build → their shapes."""
        with torch.device("meta"):
            resnet = getattr(torchvision.models, ARCHS[self.arch].builder)(weights=None)
        whole = {k: v.shape for k, v in resnet.state_dict().items() if not k.startswith("fc.")}
        own = set(self.state_dict(keep_vars=True))
        return {prefix + key: shape for prefix in WHOLE_RESNETS for key, shape in whole.items()
                if prefix + key not in own}


def _drop_unused_copies(module: DEEN, state_dict, prefix: str, *_) -> None:
    """Load pre-hook: remove the authors' unused copies whose shapes fit (a misfit stays and
    is reported as an unexpected key)."""
    unused = None
    for key in [k for k in state_dict if k.startswith(prefix)]:
        if not key.removeprefix(prefix).startswith(WHOLE_RESNETS):
            continue
        unused = module.unused_copies() if unused is None else unused
        shape = unused.get(key.removeprefix(prefix))
        value = state_dict[key]
        if shape is not None and isinstance(value, torch.Tensor) and value.shape == shape:
            del state_dict[key]


def _resnet(arch: str, pretrained: str):
    from vireid.model import imagenet_resnet  # lazy: the package imports this module

    return imagenet_resnet(arch, pretrained)
