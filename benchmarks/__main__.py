"""The benchmark suite: every runner in one go, a JSON-lines file, a Markdown report, plots.

    python -m benchmarks                 # full sizes (about half an hour on 2 CPU cores)
    python -m benchmarks --quick         # tiny sizes: checks that everything runs
    make bench

Results go to ``benchmarks/results/<machine>-<date>.{jsonl,md}`` and ``…-loader.png`` /
``…-scaling.png``. Figures marked GPU in the report need a GPU to mean anything; on a CPU-only
machine those rows are absent.
"""

from __future__ import annotations

import argparse
import datetime
import platform
from pathlib import Path

from benchmarks import decoder, evaluation, loader, metrics, precision, shard_build, train_step
from benchmarks.report import write_report

RESULTS = Path(__file__).parent / "results"

FULL = {
    "shard_build": ["--ids", "220", "--images-per-camera", "5"],
    "loader": [],
    "train_step": ["--compile"],
    "decoder": [],  # GPU only: one line on a CPU
    "evaluation": [],
    "metrics": [],
    "precision": [],
}
QUICK = {
    "shard_build": ["--ids", "8", "--images-per-camera", "1", "--repeats", "1"],
    "loader": ["--ids", "20", "--images-per-camera", "1", "--steps", "2", "--warmup", "1",
               "--repeats", "1", "--settle", "0", "--startup-ids", "20", "22",
               "--startup-images-per-camera", "1",
               "--probe-steps", "2"],
    # float32 rows only: on CPUs without AVX-512, bf16 steps take a slow generic kernel and
    # run the same code
    "train_step": ["--arch", "resnet18", "--height", "64", "--width", "32", "--steps", "1",
                   "--repeats", "1", "--no-end-to-end", "--rows", "amp off"],
    "decoder": ["--ids", "20", "--images-per-camera", "1", "--steps", "2", "--warmup", "1",
                "--repeats", "1"],
    "evaluation": ["--ids", "8", "--arch", "resnet18", "--repeats", "1"],
    "metrics": ["--queries", "60", "--gallery", "20", "--trials", "2", "--repeats", "1"],
    "precision": ["--seeds", "1", "--queries", "60", "--gallery", "20", "--dim", "64"],
}
RUNNERS = {"shard_build": shard_build, "loader": loader, "train_step": train_step,
           "decoder": decoder, "evaluation": evaluation, "metrics": metrics,
           "precision": precision}


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    parser.add_argument("--only", nargs="*", choices=sorted(RUNNERS), default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--work", type=Path, default=Path("/tmp/vireid-bench"))
    args = parser.parse_args(argv)
    stem = f"{platform.node() or 'machine'}-{datetime.date.today().isoformat()}"
    if args.quick:
        stem += "-quick"
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / f"{stem}.jsonl"
    results.unlink(missing_ok=True)
    sizes = QUICK if args.quick else FULL
    for name in args.only or list(RUNNERS):
        extra = ["--work", str(args.work)] if name not in ("metrics", "shard_build",
                                                           "precision") else []
        RUNNERS[name].main([*sizes[name], *extra, "--results", str(results)])
    return write_report(results, args.out / f"{stem}.md")


if __name__ == "__main__":
    print(main())
