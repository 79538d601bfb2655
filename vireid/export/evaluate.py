"""``vireid-test --model DIR``: an export folder scored on the protocols exactly as its
checkpoint is (``vireid.train.checkpoint_eval.evaluate_model``): the same loader, test
images, flip rule, feature rows and vectorised metrics; only the forward pass runs in the
exported graphs (``runtime.ExportedModel``). Every row carries ``"exported"`` (the runtime)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vireid.choices import Amp
from vireid.errors import VireidError
from vireid.export.runtime import ExportedModel, open_runner
from vireid.export.settings import ExportFormat
from vireid.export.sidecar import read_sidecar
from vireid.records import Modality
from vireid.train.checkpoint_eval import (
    EvaluationSettings,
    Scored,
    evaluate_model,
    evaluation_device,
)


def evaluate_export(shards, folder, settings: EvaluationSettings | None = None,
                    on_checkpoint: Callable[[str], None] | None = None,
                    on_rows: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """The rows ``evaluate_checkpoint`` gives for the exported checkpoint, from its graphs
    in ``folder`` (checked first: export.json, each graph's sha256, float32 only)."""
    settings = settings or EvaluationSettings()
    if settings.amp is not Amp.OFF:
        raise VireidError("--amp", f"{settings.amp}: exported graphs are float32 (--amp off)")
    evaluation_device(settings.device)
    folder = Path(folder)
    document = read_sidecar(folder)
    size = document["input"]["image_size"]
    form = ExportFormat(document["runtime"])
    files = {Modality(m): folder / name for m, name in document["files"].items()}

    def build(device, channels_last: bool) -> ExportedModel:
        return ExportedModel({m: open_runner(path, form, device) for m, path in files.items()})

    subject = Scored(folder, document["method"], (document.get("data") or {}).get("view"),
                     (int(size["height"]), int(size["width"])), build,
                     export_line(folder, document), {"exported": str(form)})
    return evaluate_model(shards, subject, settings, on_checkpoint, on_rows)


def export_line(folder: Path, document: dict) -> str:
    """Which export is evaluated, and what it was exported from."""
    checkpoint = document.get("checkpoint", {})
    digest = str(checkpoint.get("sha256", ""))[:12]
    return f"evaluating {document['runtime']} export {folder} ({document['method']} " \
           f"{document.get('arch')}) of {checkpoint.get('path')} (sha256 {digest}…, epoch " \
           f"{checkpoint.get('epoch')}, {checkpoint.get('selected_on')})"

