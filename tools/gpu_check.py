"""``make gpu-check``: every GPU test and the GPU benchmark rows, on a CUDA machine, in one go.

Runs from the repository root without vireid being pip-installed (``PYTHONPATH=.``) and without
network: DALI and webdataset must already be importable (on the lent GPU machine: bring the
wheels in pieces, see the README's GPU section). Writes at most six files to ``--out``:
``<stem>-tests.txt`` (pytest's report), ``<stem>-tests.xml`` (JUnit), and the benchmark
``<machine>-<date>.jsonl``, ``.md`` and its plots. Without CUDA: one line, exit code 2.

    python3 tools/gpu_check.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# GPU benchmark rows sized to finish, with the tests, within ten minutes on one H100
BENCHMARKS = {
    # the PyTorch reference loaders (single-threaded PIL, minutes at this size) are CPU rows
    "loader": ["--ids", "100", "--images-per-camera", "10", "--steps", "30", "--repeats", "3",
               "--settle", "0", "--startup-ids", "100", "300", "--skip-rows",
               "reference loader"],
    # float32 / fp16 / bf16 × NCHW / channels-last; compiled: fp16 channels-last, the
    # training default (each compilation takes about a minute)
    "train_step": ["--steps", "10", "--repeats", "3", "--compile",
                   "--compile-channels-last-only", "--compile-amp", "fp16"],
    "decoder": ["--ids", "100", "--images-per-camera", "10", "--steps", "20", "--repeats", "2"],
    "evaluation": ["--repeats", "2"],
}


def missing() -> str | None:
    """Why this machine cannot run the check (None: it can)."""
    try:
        import torch
    except ImportError:
        return "PyTorch is not importable"
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible to PyTorch (run it on a CUDA machine)"
    for module in ("nvidia.dali", "webdataset"):
        try:
            importlib.import_module(module)
        except ImportError:
            return f"{module} is not importable (bring its wheels: README, GPU section)"
    return None


def run_tests(out: Path, stem: str, timeout: int) -> int:
    """``pytest -m gpu``; its report and JUnit XML into ``out``."""
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-rA", "-q", "-p", "no:cacheprovider",
               f"--junitxml={out / f'{stem}-tests.xml'}", "tests"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    (out / f"{stem}-tests.txt").write_text(result.stdout + result.stderr)
    print(result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "no output")
    return result.returncode


def run_benchmarks(out: Path) -> Path:
    """The GPU rows (and their CPU baselines, measured in the same run)."""
    from benchmarks.__main__ import RUNNERS
    from benchmarks.report import write_report

    stem = f"{platform.node() or 'gpu'}-{datetime.date.today().isoformat()}"
    results = out / f"{stem}.jsonl"
    results.unlink(missing_ok=True)
    for name, sizes in BENCHMARKS.items():
        RUNNERS[name].main([*sizes, "--work", "/tmp/vireid-gpu-bench", "--results",
                            str(results)])
    return write_report(results, out / f"{stem}.md")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--test-timeout", type=int, default=420, help="seconds for the tests")
    parser.add_argument("--no-benchmarks", action="store_true", help="the tests only")
    args = parser.parse_args(argv)
    reason = missing()
    if reason:
        print(f"gpu-check: {reason}; nothing was run", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{platform.node() or 'gpu'}-{datetime.date.today().isoformat()}"
    start = time.perf_counter()
    code = run_tests(args.out, stem, args.test_timeout)
    if not args.no_benchmarks:
        print(run_benchmarks(args.out))
    print(f"gpu-check: tests {'passed' if code == 0 else 'FAILED'} in "
          f"{time.perf_counter() - start:.0f} s; results in {args.out}")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
