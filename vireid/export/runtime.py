"""The exported files run outside PyTorch's eager mode: ONNX with onnxruntime (its CPU
provider, or CUDA where onnxruntime has it), TorchScript with ``torch.jit.load``.

``open_runner(path, format, device)`` gives one modality's graph as a function of a float32
[0, 1] image batch (a torch tensor) to its (pool, fc) tensors. ``ExportedModel`` puts the two
behind the call ``vireid.eval.features`` makes of a model, ``model(visible=x)`` or
``model(infrared=x)`` with images normalised as the loaders give them, so exported graphs are
scored by the same extraction loop, flip rule and metric code as a checkpoint.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from vireid.constants import IMAGENET_MEAN, IMAGENET_STD
from vireid.errors import VireidError
from vireid.export.graph import INPUT
from vireid.export.settings import ExportFormat
from vireid.records import Modality

Runner = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
INSTALL = "pip install 'vireid[export]'"


def require(module: str):
    """Import ``module`` (onnx, onnxruntime), or say in one line how to get it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise VireidError(module, f"cannot be imported ({error}): {INSTALL}") from None


def open_runner(path: Path, form: ExportFormat, device: torch.device) -> Runner:
    """A function running the exported graph in ``path`` on ``device``."""
    if ExportFormat(form) is ExportFormat.ONNX:
        return _onnx_runner(path, device)
    return _torchscript_runner(path, device)


def onnx_providers(device: torch.device) -> list[str]:
    """onnxruntime's execution providers for ``device``: the CPU's, or CUDA's (refused in
    one line where this onnxruntime lacks it)."""
    ort = require("onnxruntime")
    if device.type != "cuda":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise VireidError("onnxruntime", "has no CUDA provider here (install onnxruntime-gpu, "
                          "or evaluate with --device cpu)")
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def _onnx_runner(path: Path, device: torch.device) -> Runner:
    """An onnxruntime session of ``path`` as a ``Runner``."""
    ort = require("onnxruntime")
    try:
        session = ort.InferenceSession(str(path), providers=onnx_providers(device))
    except VireidError:
        raise
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own types
        first = (str(error).strip().splitlines() or [""])[0][:200]
        raise VireidError(path, f"onnxruntime cannot load it ({first})") from None
    names = [output.name for output in session.get_outputs()]

    def run(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = images.detach().float().cpu().contiguous().numpy()
        pool, fc = session.run(names, {INPUT: pixels})
        return torch.from_numpy(pool).to(images.device), torch.from_numpy(fc).to(images.device)

    return run


def _torchscript_runner(path: Path, device: torch.device) -> Runner:
    """``torch.jit.load`` of ``path`` as a ``Runner``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit's deprecation notice
            module = torch.jit.load(str(path), map_location=device).eval()
    except Exception as error:  # noqa: BLE001 - torch.jit raises many types for bad files
        first = (str(error).strip().splitlines() or [""])[0][:200]
        raise VireidError(path, f"torch.jit.load cannot load it ({first})") from None

    @torch.no_grad()
    def run(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pool, fc = module(images.float().contiguous())
        return pool, fc

    return run


class ExportedModel:
    """The visible and infrared graphs as one model for ``vireid.eval.features``: it takes
    normalised images (the loaders'), gives the graphs [0, 1] pixels, which they normalise
    again (float32 rounding apart, the same input)."""

    def __init__(self, runners: dict[Modality, Runner]):
        self.runners = runners
        self.mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def eval(self) -> ExportedModel:
        """Exported graphs are always in evaluation mode."""
        return self

    def __call__(self, visible=None, infrared=None) -> tuple[torch.Tensor, torch.Tensor]:
        if (visible is None) == (infrared is None):
            raise ValueError("give the images of one modality: visible or infrared")
        modality, images = (Modality.VISIBLE, visible) if visible is not None else \
            (Modality.INFRARED, infrared)
        images = images.float()
        pixels = images * self.std.to(images.device) + self.mean.to(images.device)
        return self.runners[modality](pixels)
