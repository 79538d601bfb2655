"""Shared helpers of the benchmark runners: timing, environment description, output."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from vireid.files import available_cores


def environment() -> dict:
    """What a row was measured on: machine, cores, library versions."""
    import numpy
    import PIL

    versions = {"python": platform.python_version(), "numpy": numpy.__version__,
                "pillow": PIL.__version__}
    for name in ("torch", "nvidia.dali", "webdataset"):
        try:
            module = __import__(name, fromlist=["__version__"])
            versions[name.split(".")[-1]] = getattr(module, "__version__", "?")
        except ImportError:
            versions[name.split(".")[-1]] = None
    return {"machine": platform.node(), "cpu": platform.processor() or platform.machine(),
            "cores": available_cores(), "versions": versions}


def repeat(run: Callable[[], float], repeats: int) -> dict:
    """Run ``run`` (returns seconds) ``repeats`` times: median and spread."""
    times = [run() for _ in range(repeats)]
    return {"seconds_median": statistics.median(times), "seconds_min": min(times),
            "seconds_max": max(times), "repeats": repeats}


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


TABLE_COLUMNS = ("benchmark", "name", "device", "threads", "batch", "images", "images_per_s",
                 "ratio_to_original", "seconds_median", "seconds_to_first_batch",
                 "peak_rss_mb")


def emit(rows: list[dict], results: Path | None) -> None:
    """Print rows as JSON lines and a Markdown table; append them to ``results``."""
    for row in rows:
        print(json.dumps(row, sort_keys=True))
    keys = [k for k in TABLE_COLUMNS if any(k in row for row in rows)]
    print("\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(cell(row.get(k)) for k in keys) + " |")
    if results:
        results.parent.mkdir(parents=True, exist_ok=True)
        with open(results, "a") as handle:
            for row in rows:
                handle.write(json.dumps(row, sort_keys=True) + "\n")


def cell(value) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    return "" if value is None else str(value)
