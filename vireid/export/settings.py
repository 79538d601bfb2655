"""What ``vireid-export`` can be asked: the format, the ONNX opset, the image size where the
checkpoint does not record it, how many images the parity check runs, and whether an earlier
export may be replaced. Each is a settings field (``vireid.fields.setting``), so the command's
options, their help and their bounds come from here, and a library caller meets the same
checks."""

from __future__ import annotations

from dataclasses import dataclass

from vireid.choices import Choice
from vireid.constants import MAX_SIDE, MIN_SIDE
from vireid.errors import VireidError
from vireid.fields import check_fields, setting

# What torch.onnx's TorchScript-based exporter writes for every method: from 13 (DEEN's
# unflatten) to 20 (its newest in torch 2.14). 17, the default: the newest TensorRT 8.6
# reads (TensorRT 10, OpenVINO and onnxruntime read it too).
OPSET_MIN, OPSET_MAX, OPSET_DEFAULT = 13, 20, 17
# the parity check: |exported - PyTorch| <= ATOL + RTOL * |PyTorch|, element by element
RTOL, ATOL = 1e-3, 1e-5


class ExportFormat(Choice):
    """What ``vireid-export`` writes: one file per modality."""

    ONNX = "onnx"  # visible.onnx, infrared.onnx (onnxruntime, TensorRT, OpenVINO)
    TORCHSCRIPT = "torchscript"  # visible.pt, infrared.pt (torch.jit.load, no vireid needed)


SUFFIXES = {ExportFormat.ONNX: ".onnx", ExportFormat.TORCHSCRIPT: ".pt"}


@dataclass(frozen=True)
class ExportSettings:
    """How ``vireid-export`` exports; the command's options are made from these fields."""

    format: ExportFormat = setting(
        ExportFormat.ONNX,
        help="onnx (visible.onnx and infrared.onnx, checked with onnxruntime on the CPU) or "
        "torchscript (visible.pt and infrared.pt, checked with torch.jit.load).")
    opset: int | None = setting(
        None, min=OPSET_MIN, max=OPSET_MAX,
        help=f"ONNX operator set (onnx only; default {OPSET_DEFAULT}, which TensorRT 8.6 and "
        "later, OpenVINO and onnxruntime read).")
    height: int | None = setting(
        None, min=MIN_SIDE, max=MAX_SIDE,
        help="Image height the graphs take, for a checkpoint that does not record the size it "
        "was trained at (the original code's). Default: the recorded size, else the --shards' "
        "size, else 288 (the original's).")
    width: int | None = setting(
        None, min=MIN_SIDE, max=MAX_SIDE,
        help="Image width, as --height (default: recorded, else the --shards', else 144).")
    parity_images: int = setting(
        8, min=2, max=256,
        help="Images per modality the parity check runs through the exported file and "
        "PyTorch (test images from --shards; random without).")
    overwrite: bool = setting(
        False, flag="--overwrite",
        help="Replace --out when it holds an earlier export (a folder with vireid's "
        "export.json, nothing else is replaced); by default --out must be new or empty.")

    def __post_init__(self):
        check_fields(self)
        if self.opset is not None and self.format is not ExportFormat.ONNX:
            raise VireidError("opset", f"is an ONNX setting; --format {self.format} has none")

    @property
    def operator_set(self) -> int | None:
        """The opset to write: as asked, else the default (None for TorchScript)."""
        if self.format is not ExportFormat.ONNX:
            return None
        return self.opset or OPSET_DEFAULT
