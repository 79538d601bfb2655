"""The graph exported for one modality, and the two writers (ONNX, TorchScript).

``StemGraph`` wraps a model in eval mode for one stem: float32 RGB images in [0, 1], N×3×H×W,
are normalised inside the graph with the ImageNet mean and std (as every vireid loader does
before the model), go through that modality's stem and the shared network, and come out as
the two outputs ``vireid-test`` scores, ``pool`` and ``fc`` (L2-normalised; DEEN: each of its
three branches normalised on its own). The batch axis is dynamic; the height and width are
fixed.

ONNX goes through ``torch.onnx.export``'s TorchScript-based exporter (``dynamo=False``).
Both exporters of torch 2.14 export all four methods (AGW's non-local blocks and GeM, DEEN's
MFA and DEE blocks) with a dynamic batch axis; this one was chosen because it is 5-7× faster
(1-2 s a graph against 4-11 s here), stays within 1.5e-7 of PyTorch (the torch.export-based
default: 2.5e-6 with its graph optimiser on, a quarter of the parity tolerance), writes any
operator set from 13 (DEEN's unflatten) to 20, 17 included (TensorRT 8.6 reads up to 17; the
default exporter starts at 18), and needs no onnxscript. PyTorch has deprecated it: when it
is removed, ``write_onnx`` is the one call to change (``dynamo=True``, ``dynamic_shapes``,
``optimize=False``; the parity check guards the result either way). One file per modality,
weights inside. TorchScript is ``torch.jit.trace`` (deprecated by PyTorch too, kept for
runtimes that load ``.pt`` files). Both exporters' messages are silenced, down to the file
descriptors (the TorchScript-based one prints whole graphs when it fails).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from vireid.constants import IMAGENET_MEAN, IMAGENET_STD
from vireid.errors import VireidError
from vireid.records import Modality

INPUT = "images"
OUTPUTS = ("pool", "fc")
EXAMPLE_BATCH = 2  # the batch traced; any batch runs (the axis is dynamic)


class StemGraph(nn.Module):
    """[0, 1] RGB images → normalise → ``modality``'s stem → (pool, fc)."""

    def __init__(self, model: nn.Module, modality: Modality):
        super().__init__()
        self.model = model.eval()
        self.stem = Modality(modality).value  # the model's keyword: visible / infrared
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pool, fc = self.model(**{self.stem: (images - self.pixel_mean) / self.pixel_std})
        return pool, fc


def example(size: tuple[int, int]) -> torch.Tensor:
    """A batch to trace with (its values do not matter)."""
    return torch.rand(EXAMPLE_BATCH, 3, *size, generator=torch.Generator().manual_seed(0))


def write_onnx(graph: StemGraph, path: Path, size: tuple[int, int], opset: int) -> None:
    """``graph`` as one ONNX file at ``opset`` with a dynamic batch axis named ``batch``."""
    batch = {0: "batch"}
    with _exporting(path, "torch.onnx.export"):
        torch.onnx.export(
            graph, (example(size),), str(path), dynamo=False, opset_version=opset,
            input_names=[INPUT], output_names=list(OUTPUTS),
            dynamic_axes={name: batch for name in (INPUT, *OUTPUTS)})
    written = onnx_opset(path)
    if written != opset:
        raise VireidError(path, f"torch.onnx wrote operator set {written}, not the {opset} "
                          "asked for: choose another --opset")


def onnx_opset(path: Path) -> int | None:
    """The default-domain operator set an ONNX file imports."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((entry.version for entry in model.opset_import
                 if entry.domain in ("", "ai.onnx")), None)


def write_torchscript(graph: StemGraph, path: Path, size: tuple[int, int]) -> None:
    """``graph`` traced into a TorchScript file (any batch size runs)."""
    with _exporting(path, "torch.jit.trace"), torch.no_grad():
        traced = torch.jit.trace(graph, example(size), check_trace=False)
        torch.jit.save(traced, str(path))


@contextlib.contextmanager
def _exporting(path: Path, what: str) -> Iterator[None]:
    """Quiet the exporter (its warnings, its prints, what its C++ side writes to the file
    descriptors) and turn its failure into one line naming the file."""
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()), _silenced_descriptors():
            warnings.simplefilter("ignore")
            yield
    except VireidError:
        raise
    except OSError as error:
        raise VireidError(path, f"cannot write: {error.strerror or error}") from None
    except Exception as error:  # noqa: BLE001 - the exporters raise many types
        first = (str(error).strip().splitlines() or [""])[0][:200]
        raise VireidError(path, f"{what} failed ({type(error).__name__}: {first})") from None


@contextlib.contextmanager
def _silenced_descriptors() -> Iterator[None]:
    """File descriptors 1 and 2 lead to /dev/null inside the block, restored after it."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    sink = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(sink, 1)
        os.dup2(sink, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for descriptor in (*saved, sink):
            os.close(descriptor)
