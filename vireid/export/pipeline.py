"""``export_checkpoint``: a checkpoint (vireid's, or the original AGW/CAJ/DEEN code's) out to
one graph per modality plus ``export.json``, checked against PyTorch before it is kept.

Order: everything that can be refused is refused before any work (the runtime's packages,
``--out`` against the inputs, the shards, the checkpoint and its weights, the image size);
then both graphs are written into a temporary folder beside ``--out``, each run by its
runtime on the parity images and compared with PyTorch, the sidecar written last, and the
folder renamed into place. A failure at any step keeps nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from vireid.constants import IMAGE_HEIGHT, IMAGE_WIDTH
from vireid.errors import VireidError
from vireid.export.folder import check_out, staged
from vireid.export.graph import StemGraph, write_onnx, write_torchscript
from vireid.export.parity import Parity, check_parity, parity_images
from vireid.export.runtime import open_runner, require
from vireid.export.settings import ATOL, RTOL, ExportFormat, ExportSettings
from vireid.export.sidecar import describe, graph_files, write_sidecar
from vireid.shards.tario import sha256_file
from vireid.train.checkpoint_eval import check_weights, checkpoint_model
from vireid.train.imported import read_model_checkpoint

ONNX_PACKAGES = ("onnx", "onnxruntime")  # the files and the parity check
CPU = torch.device("cpu")


def export_checkpoint(checkpoint, out, settings: ExportSettings | None = None, shards=None,
                      progress: Callable[[str], None] | None = None) -> dict:
    """Export ``checkpoint`` into the folder ``out``; returns what ``export.json`` holds.
    ``shards``: take the parity images (and, where the checkpoint lacks it, the image size)
    from this shard folder. ``progress`` is called with one line per step."""
    settings = settings or ExportSettings()
    say = progress or (lambda line: None)
    checkpoint, out = Path(checkpoint), Path(out)
    if settings.format is ExportFormat.ONNX:
        for package in ONNX_PACKAGES:
            require(package)
    check_out(out, {checkpoint: "the checkpoint"},
              {Path(shards): "the shard folder"} if shards else {}, settings.overwrite)
    manifest = _manifest(shards)
    state = read_model_checkpoint(checkpoint)
    check_weights(state, checkpoint)
    size, size_from = image_size(state, settings, manifest)
    model = checkpoint_model(state, checkpoint, CPU, channels_last=False).eval()
    say(f"exporting {_kind(state)}{checkpoint}: {state['method']} {state['arch']}, "
        f"{state['num_classes']} classes, epoch {int(state['epoch']) + 1}; images of height "
        f"{size[0]} and width {size[1]} ({size_from})")
    images = parity_images(shards, size, settings.parity_images)
    digest = sha256_file(checkpoint)
    with staged(out, settings.overwrite) as folder:
        files = graph_files(settings.format)
        checks = {}
        for modality, name in files.items():
            say(f"writing {name} ({_runtime_words(settings)})")
            checks[name] = _write_and_check(StemGraph(model, modality), folder / name,
                                            images[modality], size, settings, out / name)
        document = describe(
            form=settings.format, opset=settings.operator_set, state=state,
            checkpoint=_checkpoint_record(checkpoint, state, digest), size=size,
            size_from=size_from, features=next(iter(checks.values())).widths, files=files,
            digests={name: sha256_file(folder / name) for name in files.values()},
            parity=_parity_record(checks, settings, shards))
        write_sidecar(folder, document)
    say(parity_line(document["parity"]))
    return document


def _manifest(shards):
    """The shards' manifest (checked), or None without shards."""
    if shards is None:
        return None
    from vireid.shards.manifest import load_manifest

    return load_manifest(shards)


def image_size(state: dict, settings: ExportSettings, manifest) -> tuple[tuple[int, int], str]:
    """(height, width) the graphs take, and where it comes from: the size the checkpoint was
    trained at; without one (the original code's), --height/--width, else the shards', else
    the original's 288×144."""
    trained = tuple(state.get("data", {}).get("image_size") or ())
    asked = (settings.height, settings.width)
    if trained:
        for option, given, recorded in zip(("--height", "--width"), asked, trained,
                                           strict=True):
            if given is not None and given != recorded:
                raise VireidError(option, f"{given}: the checkpoint was trained on images of "
                                  f"height {trained[0]} and width {trained[1]}, and its "
                                  "graphs take that size (leave the option out)")
        return (int(trained[0]), int(trained[1])), "the checkpoint's training images"
    if manifest is not None:
        fallback, where = (manifest.height, manifest.width), "the shards"
    else:
        fallback, where = (IMAGE_HEIGHT, IMAGE_WIDTH), "the original's size"
    size = (settings.height or fallback[0], settings.width or fallback[1])
    if asked == (None, None):
        return size, where
    return size, "as asked" if None not in asked else f"as asked, and {where}"


def _write_and_check(graph: StemGraph, path: Path, images: torch.Tensor,
                     size: tuple[int, int], settings: ExportSettings, final: Path) -> Parity:
    """Write ``graph`` to ``path`` and check it against PyTorch; a refusal names the file
    where it would have been (``final``)."""
    try:
        if settings.format is ExportFormat.ONNX:
            write_onnx(graph, path, size, settings.operator_set)
        else:
            write_torchscript(graph, path, size)
        return check_parity(graph, open_runner(path, settings.format, CPU), images, path)
    except VireidError as error:
        raise VireidError(final, error.problem) from None


def _kind(state: dict) -> str:
    """The words naming the original code's checkpoints ("original AGW checkpoint ")."""
    form = str(state.get("format"))
    return f"{form} checkpoint " if form.startswith("original ") else ""


def _runtime_words(settings: ExportSettings) -> str:
    """What the file is and what checks it, for the progress line."""
    if settings.format is ExportFormat.ONNX:
        return f"ONNX opset {settings.operator_set}, checked with onnxruntime on the CPU"
    return "TorchScript, checked with torch.jit.load"


def _checkpoint_record(path: Path, state: dict, digest: str) -> dict:
    """export.json's ``checkpoint``: where the graphs come from."""
    return {"path": os.path.abspath(path), "sha256": digest, "format": str(state.get("format")),
            "epoch": int(state["epoch"]) + 1, "selected_on": state.get("selected_on")
            or "the last epoch written"}


def _parity_record(checks: dict[str, Parity], settings: ExportSettings, shards) -> dict:
    """export.json's ``parity``: on what, how close, per file."""
    count = min(check.images for check in checks.values())
    if shards is not None:
        images = f"{count} test images per modality from {shards} (its default protocol)"
    else:
        images = f"{count} random images per modality (uniform [0, 1], seed 0)"
    runtime = "onnxruntime (CPUExecutionProvider)" if settings.format is ExportFormat.ONNX \
        else "torch.jit.load (CPU)"
    return {"runtime": runtime, "images": images, "also_batch_of_one": True,
            "rtol": RTOL, "atol": ATOL,
            "max_abs_diff": max(check.max_abs_diff for check in checks.values()),
            "files": [check.row() for check in checks.values()]}


def parity_line(parity: dict) -> str:
    """One line: the worst difference against PyTorch, and on what."""
    files = ", ".join(row["file"] for row in parity["files"])
    return f"parity: {files} match PyTorch on {parity['images']}: worst |difference| " \
           f"{parity['max_abs_diff']:.2g} (rtol {parity['rtol']:g}, atol {parity['atol']:g})"
