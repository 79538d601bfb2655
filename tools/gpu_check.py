"""``make gpu-check``: the first GPU run of vireid, in a plan of steps that always leaves its
results behind (docs/gpu-check.md).

Each step (install, environment probe, each group of GPU tests, each benchmark row) runs in
its own process group with its own time budget; a step that fails or runs out is recorded
with its last lines and the next one runs (``tools/gpu_steps.py``). Results go to ``--out``
as they are produced: ``gpu-<date>.jsonl`` (a line per step), ``gpu-<date>.md`` (summary,
rewritten after every step), ``gpu-<date>.log`` (all output), ``gpu-<date>-bench.jsonl`` /
``.md`` / ``-loader.png`` (benchmark rows and their report): six files, under the device
tool's eight. Without CUDA: one line, exit code 2, nothing run. Needs no network and no
install of vireid; DALI, webdataset and the codecs come as wheels in ``.gpuw1`` … ``.gpuwN``
(``../shared/tools/gpu-wheels`` makes them) and the plan's first step installs them.

On the lent GPU machine (15 minutes of device time in all), the calls, back to back — the
machine keeps the ignored ``.gpuw*`` folders only while it is up (~30 s idle):

    run(command="ls -d .gpuw*", carry=[".gpuw1"], timeout_s=120)     # starts the machine
    run(command="ls -d .gpuw*", carry=[".gpuw2"], timeout_s=60)      # … one piece per call
    run(command="ls -d .gpuw*", carry=[".gpuw5"], timeout_s=60)
    run(command="PYTHONUNBUFFERED=1 python3 tools/gpu_check.py --out $OUT",
        carry=[".gpuw6"], timeout_s=540)                              # the last piece + the run

(``make gpu-check GPU_RESULTS=$OUT`` is the same run where ``make`` exists.) The plan fits
480 s of wall time on one H100, installs included: ``--plan`` prints it, ``--budget``
scales it.

    python3 tools/gpu_check.py --plan              # the steps and budgets; no CUDA needed
    python3 tools/gpu_check.py --out benchmarks/results --budget 480
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.gpu_steps import (  # noqa: E402
    Outcome,
    Results,
    Step,
    run_plan,
    stop_on_sigterm,
    subreaper,
)

BUDGET = 480  # seconds: one H100, installs included
WORK = Path("/tmp/vireid-gpu-check")  # wheels, probe, benchmark data (never in --out)
PER_TEST = 0.6  # a test's pytest-timeout, as a fraction of its step's time
NO_CUDA = "no CUDA GPU is visible to PyTorch (run it on a CUDA machine)"


def _tests(name: str, budget: float, selection: list[str], *, extra: bool = False,
           needs: str = "") -> Step:
    command = (sys.executable, "-m", "pytest", "-m", "gpu", "-v", "-rfEs", "--tb=short",
               "-p", "no:cacheprovider", *selection)
    return Step(f"tests: {name}", command, budget, "tests", needs, extra,
                PER_TEST if _has_timeout_plugin() else 0.0)


def _has_timeout_plugin() -> bool:
    import importlib.util

    return importlib.util.find_spec("pytest_timeout") is not None


def _bench(name: str, budget: float, module: str, arguments: list[str], results: Path, *,
           extra: bool = False, needs: str = "") -> Step:
    command = [sys.executable, "-m", f"benchmarks.{module}", *arguments, "--results",
               str(results)]
    return Step(f"bench: {name}", tuple(command), budget, "bench", needs, extra)


def build_plan(bench: Path, budget: float = BUDGET, work: Path = WORK) -> list[Step]:
    """The steps in order of value, their budgets scaled to ``budget`` seconds in all;
    ``work``: the scratch folder (wheels, probe, benchmark data)."""
    s = budget / BUDGET
    data = ["--ids", "60", "--images-per-camera", "4", "--work", str(work / "bench")]
    loader = ["--parts", "loader", *data, "--steps", "20", "--warmup", "3", "--repeats", "3",
              "--settle", "0"]
    model = ["--arch", "resnet50", "--steps", "10", "--repeats", "3", "--work",
             str(work / "bench")]
    gpu_train = "tests/train/test_gpu_train.py"
    make_data = ("from pathlib import Path; from benchmarks.datasets import fake_sysu, "
                 f"shards_of; w = Path({str(work / 'bench')!r}); root = fake_sysu(w, 60, 4); "
                 "[shards_of(root, e, w) for e in ('jpeg', 'raw', 'png')]")
    return [
        Step("install: DALI, webdataset and codecs from .gpuw* (no network, --no-deps)",
             (sys.executable, __file__, "--install", str(work / "site")), 40 * s, "install"),
        Step("probe: GPU, driver, versions, compiler, JPEG decoded on the GPU",
             (sys.executable, __file__, "--probe", str(work / "probe.json")), 20 * s, "probe"),
        _tests("GPU graph vs CPU graph, JPEG parity, batch lifetime, CAJ views", 60 * s,
               ["tests/loader/test_gpu_loader.py"]),
        _tests("decoded cache parity, augmenters on CUDA, a cached step never waits", 35 * s,
               ["tests/loader/test_gpu_cache.py", "tests/loader/test_augmenters.py"]),
        _tests("CUDA training learns, resume, deterministic scope, GPU features", 70 * s,
               [gpu_train, "-k", "not compiled and not torchrun and not caj"]),
        _tests("torchrun (one GPU process; NCCL and DDP with 2 GPUs)", 30 * s,
               [gpu_train, "-k", "torchrun"]),
        Step("bench data: a fake SYSU set (60 ids) as JPEG, raw and PNG shards",
             (sys.executable, "-c", make_data), 20 * s, "bench"),
        _bench("loader, mixed decoding (with the original and the decode-only ceilings)",
               35 * s, "loader", [*loader, "--rows", "gpu, mixed decoding (jpeg",
                                  "--skip-rows", "CAJ"], bench),
        _bench("loader, device cache", 25 * s, "loader",
               [*loader, "--rows", "gpu, device cache", "--no-baselines"], bench),
        _bench("train step, ResNet-50 fp16/bf16 channels-last vs float32 NCHW", 30 * s,
               "train_step", [*model, "--no-end-to-end", "--rows",
                              "amp fp16, channels-last on", "amp bf16, channels-last on"],
               bench),
        _bench("end to end, mixed loader + ResNet-50 (81-epoch SYSU projection)", 25 * s,
               "train_step", [*model, "--no-model-only", "--e2e-loaders", "decoding"], bench),
        _bench("end to end, device cache + ResNet-50 (host wait per step)", 25 * s,
               "train_step", [*model, "--no-model-only", "--e2e-loaders", "device-cache"],
               bench),
        _tests("decoder placements, CAJ training", 20 * s,
               ["tests/train/test_gpu_decoder.py", gpu_train, "-k",
                "each_decoder or caj"], extra=True),
        _bench("decoder options sweep", 10 * s, "decoder",
               [*data, "--steps", "10", "--warmup", "2", "--repeats", "1"], bench, extra=True),
        _bench("train step, torch.compile fp16 channels-last", 10 * s, "train_step",
               [*model[:4], *model[6:], "--repeats", "2", "--no-end-to-end", "--compile",
                "--compile-channels-last-only", "--compile-amp", "fp16", "--rows",
                "amp fp16, channels-last on, compile"], bench, extra=True, needs="compiler"),
        _tests("compiled training (fp16, bf16)", 10 * s, [gpu_train, "-k", "compiled"],
               extra=True, needs="compiler"),
        _bench("train step, DEEN beside AGW at 384x144 (bf16 channels-last, SYSU hours)",
               15 * s, "train_step", ["--arch", "resnet50", "--height", "384", "--steps", "5",
                                      "--repeats", "1", "--work", str(work / "bench"),
                                      "--no-end-to-end", "--methods", "agw", "deen", "--rows",
                                      "amp bf16, channels-last on"], bench, extra=True),
    ]


def print_plan(plan: list[Step]) -> None:
    for number, step in enumerate(plan, 1):
        extra = "(if time is left) " if step.extra else ""
        print(f"{number:2d}  {step.budget:4.0f} s  {extra}{step.name}")
    print(f"total: {sum(step.budget for step in plan):.0f} s")


def no_cuda() -> str | None:
    try:
        import torch
    except ImportError:
        return "PyTorch is not importable"
    return None if torch.cuda.is_available() else NO_CUDA


def environment(work: Path) -> dict:
    """The steps' environment: the installed wheels and the repository on the path."""
    path = [str(work / "site"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p),
            "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def _after(results: Results, bench: Path, work: Path):
    """After a step: read the probe's findings; rewrite the benchmark report."""
    def after(step: Step, outcome: Outcome) -> None:
        if step.kind == "probe":
            found = work / "probe.json"
            probe = json.loads(found.read_text()) if found.is_file() else {}
            probe.setdefault("decode", {"error": "the probe did not get to its JPEG decode"})
            probe["decode"].setdefault("gpu_decoded", False)  # not proven: not decoded
            outcome.probe = results.probe = probe
        if step.kind == "bench" and bench.is_file() and bench.stat().st_size:
            try:
                from benchmarks.report import write_report

                write_report(bench, bench.with_suffix(".md"))
            except Exception as error:  # noqa: BLE001 (a report must not stop the run)
                outcome.reason = f"report not written: {type(error).__name__}: {error}"
    return after


def load_steps(path: Path) -> list[Step]:
    """A plan of one's own: a JSON list of {"name", "command" (argv), "budget"} and
    optionally "kind", "needs", "extra"."""
    return [Step(item["name"], tuple(item["command"]), float(item["budget"]),
                 item.get("kind", "run"), item.get("needs", ""), bool(item.get("extra")))
            for item in json.loads(path.read_text())]


def main(argv=None) -> int:
    start = time.monotonic()  # the budget counts from here: the CUDA check included
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--budget", type=float, default=BUDGET,
                        help=f"seconds for the whole plan (default {BUDGET}); budgets scale")
    parser.add_argument("--plan", action="store_true", help="print the plan; run nothing")
    parser.add_argument("--steps", type=Path, default=None, metavar="FILE",
                        help="run the steps of FILE (JSON) instead of the built-in plan, "
                        "without the CUDA check")
    parser.add_argument("--work", type=Path, default=WORK,
                        help=f"scratch folder: wheels, probe, benchmark data (default {WORK})")
    parser.add_argument("--install", type=Path, metavar="SITE", help=argparse.SUPPRESS)
    parser.add_argument("--probe", type=Path, metavar="JSON", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.out = args.out.resolve()
    if args.install or args.probe:  # the plan's first two steps, each in its own process
        from tools.gpu_probe import install, probe

        return install(ROOT, args.install) if args.install else probe(args.probe)
    stem = f"gpu-{datetime.date.today().isoformat()}"
    bench = args.out / f"{stem}-bench.jsonl"
    plan = load_steps(args.steps) if args.steps else build_plan(bench, args.budget, args.work)
    if args.plan:
        print_plan(plan)
        return 0
    reason = None if args.steps else no_cuda()
    if reason:
        print(f"gpu-check: {reason}; nothing was run", file=sys.stderr)
        return 2
    subreaper()
    os.chdir(ROOT)  # the steps name their files from the repository root
    args.work.mkdir(parents=True, exist_ok=True)
    for stale in (args.work / "probe.json", bench, bench.with_suffix(".md")):
        stale.unlink(missing_ok=True)
    results = Results(args.out, stem, plan, args.budget, start)
    stop_on_sigterm()
    try:
        outcomes = run_plan(plan, results, environment(args.work),
                            _after(results, bench, args.work))
    except KeyboardInterrupt:
        print(f"gpu-check: stopped; what had run is in {args.out}", file=sys.stderr)
        return 130
    bad = [o for o in outcomes if o.status in ("failed", "out of time")]
    print(f"gpu-check: {len(outcomes) - len(bad)} of {len(plan)} steps passed or skipped, "
          f"{len(bad)} failed or ran out of time; results in {args.out}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
