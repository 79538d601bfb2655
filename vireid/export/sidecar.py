"""``export.json``: what the exported graphs expect and return, where they came from, and the
parity check they passed. ``describe`` writes it; ``read_sidecar`` reads it back for
``vireid-test --model`` (every field it needs checked, and each graph's sha256).

The layout, per method (``vireid.train.methods``): AGW, base and CAJ give ``pool`` and ``fc``
(C each, L2-normalised) and are scored on both; DEEN gives ``pool`` and ``fc`` of 3C each,
its three branches [x | e1 | e2] each L2-normalised (six parts in all), and is scored on
``all`` ([pool | fc]: the six similarities summed, the authors' distmat7) and ``weighted``
([√0.1·pool | √0.9·fc]: 0.1·pool + 0.9·fc similarities, distmat8). Distances are −dot
products. Flip averaging is left to the caller, by the method's rule.
"""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path

import vireid
from vireid.choices import FlipRule
from vireid.constants import IMAGENET_MEAN, IMAGENET_STD
from vireid.errors import VireidError
from vireid.eval.features import COMBINED
from vireid.export.graph import INPUT, OUTPUTS
from vireid.export.settings import SUFFIXES, ExportFormat
from vireid.records import Modality
from vireid.train.checkpoint_eval import trained_view
from vireid.train.methods import get_method

SIDECAR = "export.json"
SIDECAR_FORMAT = "vireid.export/1"
PACKAGES = ("torch", "torchvision", "numpy", "onnx", "onnxruntime")
FLIP_HOW = {
    FlipRule.MEAN: "run the image and its horizontal mirror (width axis, dimension 3); "
    "feature = L2-normalise((pool(x) + pool(mirror)) / 2), the same for fc (CAJ's test "
    "script)",
    FlipRule.SUM: "run the image and its horizontal mirror (width axis, dimension 3); "
    "feature = pool(x) + pool(mirror) without normalising again, the same for fc (DEEN's "
    "test.py)",
}


def graph_files(form: ExportFormat) -> dict[Modality, str]:
    """The file of each modality's graph: visible.onnx / infrared.onnx (or .pt)."""
    return {m: f"{m.value}{SUFFIXES[ExportFormat(form)]}" for m in Modality}


def describe(*, form: ExportFormat, opset: int | None, state: dict, checkpoint: dict,
             size: tuple[int, int], size_from: str, features: dict[str, int],
             files: dict[Modality, str], digests: dict[str, str], parity: dict) -> dict:
    """The whole of ``export.json`` (``features``: output name → its width; ``digests``:
    file name → sha256)."""
    method = get_method(state["method"])
    return {
        "format": SIDECAR_FORMAT, "runtime": str(form), "opset": opset,
        "method": str(method.name), "arch": state["arch"],
        "model_options": dict(state.get("model_options", {})),
        "num_classes": int(state["num_classes"]), "files": {m.value: f for m, f in files.items()},
        "sha256": digests,
        "input": _input(size, size_from), "outputs": _outputs(method, features),
        "scoring": _scoring(method), "flip": _flip(method), "checkpoint": checkpoint,
        "data": {"view": trained_view(state), "dataset": state.get("data", {}).get("dataset")},
        "parity": parity, "versions": versions(),
    }


def _input(size: tuple[int, int], size_from: str) -> dict:
    """export.json's ``input``: what a graph takes."""
    height, width = size
    return {
        "name": INPUT, "dtype": "float32", "layout": "NCHW", "shape": ["batch", 3, height,
                                                                       width],
        "image_size": {"height": height, "width": width, "from": size_from},
        "channel_order": "RGB", "value_range": [0.0, 1.0],
        "normalisation_inside_graph": True, "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "note": "feed pixel / 255 (RGB, not BGR), resized to height x width; the graph "
        "computes (x - mean) / std itself: do not normalise again",
    }


def _outputs(method, features: dict[str, int]) -> list[dict]:
    """export.json's ``outputs``: each output's shape and normalisation."""
    branches = method.branches
    parts = ["x", "e1", "e2"][:branches] if branches > 1 else None
    rows = []
    for name in OUTPUTS:
        what = "GeM/average-pooled feature" if name == "pool" else "BNNeck (batch-norm) feature"
        row = {"name": name, "shape": ["batch", features[name]], "dtype": "float32",
               "what": what, "l2_normalised": True}
        if parts:
            width = features[name] // branches
            row["l2_normalised"] = "per branch"
            row["parts"] = [{"branch": p, "columns": [i * width, (i + 1) * width]}
                            for i, p in enumerate(parts)]
        rows.append(row)
    return rows


def _scoring(method) -> dict:
    """export.json's ``scoring``: the rows the method is scored on, and how."""
    kinds = {"pool": "pool output", "fc": "fc output"}
    for kind, (pool, fc) in COMBINED.items():
        kinds[kind] = f"concatenate [sqrt({pool:g}) * pool | sqrt({fc:g}) * fc]"
    return {"rows": list(method.features), "select": method.select,
            "distance": "-(query @ gallery.T) on the row's features",
            "how": {kind: kinds[kind] for kind in method.features}}


def _flip(method) -> dict:
    """export.json's ``flip``: left to the caller, by the method's rule."""
    return {"in_graph": False, "default": method.flip, "rule": str(method.flip_rule),
            "how": FLIP_HOW[FlipRule(method.flip_rule)]}


def versions() -> dict:
    """The versions this export was made with."""
    found = {"vireid": vireid.__version__, "python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def write_sidecar(folder: Path, document: dict) -> None:
    """Write ``document`` as ``folder/export.json`` (the folder is still the temporary one)."""
    (Path(folder) / SIDECAR).write_text(json.dumps(document, indent=2) + "\n")


def read_sidecar(folder) -> dict:
    """``folder``'s export.json, checked: its format tag, a registered method, the image size,
    and each graph file present with the sha256 it was written with."""
    from vireid.shards.tario import sha256_file

    folder = Path(folder)
    path = folder / SIDECAR
    if not folder.is_dir() or not path.is_file():
        raise VireidError(folder, f"not a vireid-export folder (no {SIDECAR})")
    try:
        document = json.loads(path.read_text())
        if document.get("format") != SIDECAR_FORMAT:
            raise VireidError(path, f"is not a {SIDECAR_FORMAT} file")
        get_method(document["method"])
        ExportFormat(document["runtime"])
        size = document["input"]["image_size"]
        int(size["height"]), int(size["width"])
        files = {Modality(m): str(f) for m, f in document["files"].items()}
        digests = dict(document["sha256"])
    except VireidError as error:
        raise VireidError(path, error.problem) from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise VireidError(path, f"unreadable or incomplete ({type(error).__name__}: "
                          f"{error})") from None
    for modality in Modality:
        name = files.get(modality)
        if not name or Path(name).name != name or not (folder / name).is_file():
            raise VireidError(folder, f"lacks the {modality.value} graph named in {SIDECAR}")
        if sha256_file(folder / name) != digests.get(name):
            raise VireidError(folder / name, f"does not match the sha256 in {SIDECAR} "
                              "(changed or damaged since the export)")
    return document
