"""Models: ``build_model(num_classes, arch, non_local, pooling, pretrained)``;
``list_models()``; ``load_original(path)`` reads a checkpoint of the original AGW or DEEN
code;
``DEEN(num_classes, arch, variant, pretrained)`` (``vireid.model.deen``).
Which head a method uses is the method's business (``vireid.train.methods``).

``pretrained``: "none", "torchvision" (ImageNet weights from the torch hub cache, downloaded
where online) or the PATH of a torchvision-format ResNet state dict (a missing file is an
error). ImageNet weights that cannot be downloaded stop the run before it starts, with the file
to use instead.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import torch
import torchvision

from vireid.errors import VireidError
from vireid.model.agw import AGW, POOLING
from vireid.model.backbone import ARCHS, TwoStreamResNet
from vireid.model.deen import DEEN as DEEN  # re-export
from vireid.model.original import load_original as load_original  # re-export

log = logging.getLogger(__name__)
WEIGHTS = {"resnet50": "ResNet50_Weights", "resnet18": "ResNet18_Weights"}
# what the original AGW code loaded: torchvision's older ImageNet file, the same format
ORIGINAL_FILES = {"resnet50": "resnet50-19c8e357.pth"}


def list_models() -> list[str]:
    return sorted(ARCHS)


def build_model(num_classes: int, arch: str = "resnet50", *, non_local: bool = True,
                pooling: str = "gem", pretrained: str = "torchvision") -> AGW:
    """The two-stream network: AGW's head by default (non-local blocks, GeM)."""
    if arch not in ARCHS:
        raise VireidError("arch", f"unknown architecture {arch!r} ({', '.join(ARCHS)})")
    if pooling not in POOLING:
        raise VireidError("pooling", f"unknown pooling {pooling!r} ({', '.join(POOLING)})")
    spec = ARCHS[str(arch)]
    backbone = TwoStreamResNet(imagenet_resnet(arch, pretrained), spec, non_local=non_local)
    return AGW(backbone, spec.features, num_classes, pooling)


def imagenet_resnet(arch: str, pretrained: str = "torchvision"):
    """torchvision's ResNet ``arch`` with the weights ``pretrained`` names (see above)."""
    if arch not in ARCHS:
        raise VireidError("arch", f"unknown architecture {arch!r} ({', '.join(ARCHS)})")
    resnet = getattr(torchvision.models, ARCHS[str(arch)].builder)(weights=None)
    state = imagenet_state(arch, pretrained)
    if state is not None:
        _load_resnet(resnet, state, pretrained)
    return resnet


def imagenet_state(arch: str, pretrained: str) -> dict | None:
    """ImageNet weights as a state dict, or None for ``pretrained="none"``.

    Weights that were asked for and cannot be had stop the run before it starts: 81 epochs
    from random weights, found out at the end, are never what was meant.
    """
    if pretrained == "none":
        return None
    if pretrained == "torchvision":
        weights = getattr(torchvision.models, WEIGHTS[str(arch)]).IMAGENET1K_V1
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # torch hub's "Downloading" line
                return weights.get_state_dict(progress=False)
        except Exception as error:  # noqa: BLE001 - offline: URLError, OSError, ...
            raise VireidError("pretrained", f"ImageNet weights for {arch} cannot be had "
                              f"({type(error).__name__}: {str(error)[:80]}); give a local file "
                              f"instead: torchvision's {arch} IMAGENET1K_V1 state dict "
                              f"({weights.url.rsplit('/', 1)[-1]}; the original loaded "
                              f"{ORIGINAL_FILES.get(str(arch), 'the same format')}), or "
                              "'none' to train from random weights on purpose") from None
    path = Path(pretrained)
    if not path.is_file():
        raise VireidError(path, "pretrained weights not found (a ResNet state dict file, or "
                          "'torchvision', or 'none')")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001
        raise VireidError(path, f"not a readable state dict ({type(error).__name__})") from None


def _load_resnet(resnet, state: dict, source: str) -> None:
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        missing, unexpected = resnet.load_state_dict(state, strict=False)
    except RuntimeError as error:
        raise VireidError(source, "weights do not fit this architecture "
                          f"({str(error).splitlines()[1].strip()[:120]})") from None
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise VireidError(source, f"weights do not fit this architecture (missing "
                          f"{missing[:2]}, unexpected {unexpected[:2]})")
