"""Markdown report and PNG plots from a results JSON-lines file."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.common import cell as _cell

SECTIONS = [
    ("train_loader", "Training loader (AGW steps of 2×8×4 = 64 images, CAJ steps of 96 "
                     "with ratios to CAJ's original, at 288×144)"),
    ("loader_scaling", "Loader scaling with threads"),
    ("startup", "Start-up: time to first batch and peak RSS (fresh process each)"),
    ("train_step", "Training step"),
    ("decoder", "CUDA decoder options, one varied at a time from the defaults (GPU only)"),
    ("shard_build", "Shard building"),
    ("evaluation", "Evaluation: feature extraction for the SYSU 10-trial protocol"),
    ("metrics", "Metrics: SYSU 10 trials"),
    ("precision", "Metrics with float32 against float64 distances (same float32 features)"),
]
COLUMNS = {
    "startup": ["name", "dataset_images", "seconds_to_ready", "seconds_to_first_batch",
                "seconds_to_first_batch_with_imports", "rss_after_imports_mb", "rss_mb",
                "data_rss_mb", "peak_rss_mb", "peak_rss_children_mb"],
    "loader_scaling": ["name", "threads", "images_per_s", "images_per_s_per_thread"],
    "train_step": ["name", "device", "images_per_s", "ratio_to_original",
                   "loader_wait_ms_per_step", "loader_wait_fraction", "peak_gpu_memory_mb",
                   "gpu_memory_in_use_mb", "sysu_81_epochs_minutes", "target", "target_met",
                   "sysu_target", "sysu_target_met", "note"],
    "decoder": ["name", "threads", "prefetch", "images_per_s", "ratio_to_default",
                "gpu_memory_in_use_mb"],
    "precision": ["name", "cases", "queries", "gallery", "rank1_mean", "max_rank1_delta",
                  "max_mAP_delta", "max_mINP_delta", "cases_changed"],
}
DEFAULT = ["name", "device", "threads", "batch", "images_per_s", "ratio_to_original",
           "seconds_median", "mean_encoded_kb", "fraction_of_decode_ceiling", "target",
           "target_met", "note"]


def write_report(results: Path, report: Path) -> Path:
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    env = rows[0] if rows else {}
    lines = [f"# vireid benchmarks — {report.stem}", "",
             f"Machine: {env.get('cpu')} with {env.get('cores')} cores; versions: "
             f"{json.dumps(env.get('versions', {}))}. Medians of repeats; ratios are to the "
             "original's approach measured in the same run. GPU rows appear only on a GPU "
             "machine.", ""]
    for key, title in SECTIONS:
        section = [r for r in rows if r.get("benchmark") == key]
        if not section:
            continue
        columns = [c for c in COLUMNS.get(key, DEFAULT) if any(c in r for r in section)]
        lines += [f"## {title}", "", "| " + " | ".join(columns) + " |",
                  "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in section]
        if key == "train_step" and any("sysu_81_epochs_minutes" in r for r in section):
            lines += ["", "sysu_81_epochs_minutes: 81 epochs of 696 steps (SYSU-MM01's 22,258 "
                      "visible and 11,909 infrared training images, as the sampler counts "
                      "steps) at the row's rate, evaluation not included. loader_wait: host "
                      "time blocked waiting for the next batch."]
        lines.append("")
    for png in _plots(rows, report):
        lines += [f"![{png.stem}]({png.name})", ""]
    report.write_text("\n".join(lines))
    return report


def _plots(rows: list[dict], report: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    loaders = [r for r in rows if r.get("benchmark") == "train_loader"]
    if loaders:
        figure, axis = plt.subplots(figsize=(8, 0.5 * len(loaders) + 1.5))
        axis.barh([r["name"] for r in loaders], [r["images_per_s"] for r in loaders])
        axis.invert_yaxis()
        axis.set_xlabel("images / s")
        axis.set_title("training loader throughput")
        written.append(_save(figure, report.with_name(f"{report.stem}-loader.png")))
    scaling = [r for r in rows if r.get("benchmark") == "loader_scaling"]
    if scaling:
        figure, axis = plt.subplots(figsize=(5, 3.5))
        axis.plot([r["threads"] for r in scaling], [r["images_per_s"] for r in scaling], "o-")
        axis.set_xlabel("DALI threads")
        axis.set_ylabel("images / s")
        axis.set_title("loader scaling (JPEG shards, CPU)")
        written.append(_save(figure, report.with_name(f"{report.stem}-scaling.png")))
    return written


def _save(figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
