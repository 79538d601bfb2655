"""Human-facing views of a manifest: the ``inspect`` summary and one protocol trial's lists."""

from __future__ import annotations

from collections import Counter

from vireid.records import MODALITIES
from vireid.shards.encode import Encoding
from vireid.shards.manifest import Manifest


def summarize(manifest: Manifest) -> dict:
    """Counts a user wants before training: ids and images per split, modality and camera."""
    samples = manifest.samples
    per_camera = Counter((s.modality.value, s.cam) for s in samples)
    views = {}
    for view in manifest.train_views:
        views[view.name] = {
            "classes": view.num_classes,
            "visible": len(view.visible.samples),
            "infrared": len(view.infrared.samples),
        }
    protocols = {}
    for protocol in manifest.protocols:
        first = protocol.trials[0]
        protocols[protocol.name] = {
            "metric": protocol.metric,
            "trials": [t.trial for t in protocol.trials],
            "query": len(first.query), "query_ids": len(set(first.query_pids)),
            "gallery": len(first.gallery), "gallery_ids": len(set(first.gallery_pids)),
        }
    widths = [s.width for s in samples]
    heights = [s.height for s in samples]
    return {
        "dataset": manifest.dataset,
        "source": manifest.source,
        "stored_size": f"{manifest.width}x{manifest.height}",
        "encoding": manifest.encoding.value,
        "chroma": manifest.chroma.value if manifest.chroma else None,
        "pixels": pixel_summary(manifest),
        "shards": len(manifest.shards),
        "bytes": sum(s.bytes for s in manifest.shards),
        "images": len(samples),
        "ids": len({s.pid for s in samples}),
        "modalities": {m.value: {"images": sum(s.modality is m for s in samples),
                                 "ids": len({s.pid for s in samples if s.modality is m})}
                       for m in MODALITIES},
        "cameras": {f"{m} cam{c}": n for (m, c), n in sorted(per_camera.items())},
        "original_width": [min(widths), max(widths)],
        "original_height": [min(heights), max(heights)],
        "train_views": views,
        "protocols": protocols,
        "default_protocol": manifest.default_protocol,
        "skipped": [{"path": s.path, "reason": s.reason} for s in manifest.skipped],
    }


def storage_label(manifest: Manifest) -> str:
    """How the pixels are stored, in words: ``JPEG q95 4:4:4``, ``PNG``, ``raw``."""
    if manifest.encoding is not Encoding.JPEG:
        return manifest.encoding.value.upper() if manifest.encoding is Encoding.PNG else "raw"
    chroma = f" {manifest.chroma.label}" if manifest.chroma else ""
    return f"JPEG q{manifest.quality}{chroma}"


def pixel_summary(manifest: Manifest) -> dict | None:
    """The manifest's pixel differences and what was measured (None: not recorded)."""
    if manifest.pixels is None:
        return None
    return {"storage": storage_label(manifest), **manifest.pixels.__dict__}


def protocol_lists(manifest: Manifest, name: str, trial: int) -> dict:
    """Query (distance-matrix rows) and gallery (columns) of one trial, in the original's order."""
    chosen = manifest.trial(name, trial)

    def entries(refs, pids):
        return [{"key": manifest.samples[r].key, "path": manifest.samples[r].path,
                 "pid": pid, "cam": manifest.samples[r].cam} for r, pid in zip(refs, pids)]

    return {"protocol": name, "trial": trial,
            "query": entries(chosen.query, chosen.query_pids),
            "gallery": entries(chosen.gallery, chosen.gallery_pids)}
