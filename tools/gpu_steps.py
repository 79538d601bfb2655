"""The step runner behind ``make gpu-check``: every step in its own process group under its
own time budget, every outcome written the moment it is known.

A step that fails or runs out of time is recorded with its last lines and the next step
runs. When a step's time is up its process group gets SIGINT (pytest then prints where it
was), then SIGKILL together with every process it left anywhere below the runner (torchrun's
workers start their own sessions; ``main`` makes the runner their subreaper so they cannot
escape). Files in ``out``, rewritten or appended after every step, so a run killed at any
moment leaves what it had: ``<stem>.jsonl`` (one JSON line per step), ``<stem>.md`` (the
summary, with the step that was running and those not reached) and ``<stem>.log`` (every
step's output, as it came).

Budgets: a step may use its own budget plus whatever earlier steps left unused, but never
the budgets of the core steps after it; the "if time is left" steps at the end share what
remains and are skipped, with that reason, when too little does.
"""

from __future__ import annotations

import ctypes
import datetime
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tools.gpu_summary import markdown

GRACE = 3.0  # seconds between SIGINT and SIGKILL at the end of a step's time
MIN_STEP = 10.0  # a step is not started with less than this (or half its budget) left
TAIL = 25  # last lines kept for a step that did not pass
LOG_LIMIT = 12 << 20  # the log is cut to its last half beyond this (16 MiB come back)
TEST_LINE = re.compile(r"^(\S+::\S+?)\s+(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b(.*)$")
JPEG_NOTE = "not decoded on the GPU"


@dataclass(frozen=True)
class Step:
    """One thing to run: ``command`` (argv) from the repository root, for at most ``budget``
    seconds (plus what earlier steps left). ``kind``: install, probe, tests or bench;
    ``needs``: "compiler" skips the step when the probe found no C compiler or Python.h;
    ``extra``: runs only if time is left."""

    name: str
    command: tuple[str, ...]
    budget: float
    kind: str = "run"
    needs: str = ""
    extra: bool = False
    per_test: float = 0.0  # pytest steps: each test's limit, a fraction of the step's time

    def command_for(self, timeout: float) -> list[str]:
        """The command for a run of ``timeout`` seconds: pytest gets ``--timeout`` (of
        pytest-timeout) at ``per_test`` of it, so one hung test fails alone."""
        command = list(self.command)
        if self.per_test and "pytest" in command:
            limit = max(1, int(timeout * self.per_test))
            command.insert(command.index("pytest") + 1, f"--timeout={limit}")
        return command


@dataclass
class Outcome:
    step: str
    status: str  # passed, failed, out of time, skipped, no tests, stopped
    budget: float
    seconds: float = 0.0
    returncode: int | None = None
    reason: str = ""
    killed: int = 0  # processes still running when the step ended, killed
    tests: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    tail: list[str] = field(default_factory=list)
    probe: dict | None = None


def subreaper() -> None:
    """Orphans of the steps become this process's children (Linux PR_SET_CHILD_SUBREAPER),
    so that ``descendants`` still finds them; nothing elsewhere."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def descendants(root: int) -> list[int]:
    """Every live process below ``root`` (children, theirs, …), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


def _signal(pids, group: int, number: int) -> None:
    for kill, target in [(os.killpg, group)] + [(os.kill, pid) for pid in pids]:
        try:
            kill(target, number)
        except (ProcessLookupError, PermissionError):
            pass


def end_step(process: subprocess.Popen) -> int:
    """SIGKILL the step's process group and every process left below this runner; reap
    them. → how many there were, the step's own process not counted."""
    left = [pid for pid in descendants(os.getpid()) if pid != process.pid]
    _signal(left, process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 5
    while set(left) & set(descendants(os.getpid())) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in left:  # orphans handed to this (subreaper) process: reap them
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    return len(left)


def run_one(step: Step, timeout: float, log: Path, env: dict) -> Outcome:
    """Run ``step`` with its output appended to ``log``; SIGINT at ``timeout`` − GRACE,
    SIGKILL at ``timeout``."""
    _trim(log)
    with open(log, "ab") as handle:
        handle.write(f"\n===== {step.name} ({timeout:.0f} s) =====\n".encode())
        handle.flush()
        start, offset = time.monotonic(), handle.tell()
        outcome = Outcome(step.name, "passed", round(step.budget))
        try:
            process = subprocess.Popen(step.command_for(timeout), stdout=handle,
                                       stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, env=env, process_group=0)
        except OSError as error:  # no such program, …
            outcome.status, outcome.reason = "failed", f"could not start: {error}"
            return outcome
        try:
            _wait(process, timeout, outcome)
        except BaseException:  # the run itself is stopped: never leave the step running
            end_step(process)
            raise
        outcome.killed = end_step(process)
    outcome.seconds = round(time.monotonic() - start, 1)
    outcome.returncode = process.returncode
    if outcome.status == "passed" and process.returncode != 0:
        outcome.status = "no tests" if step.kind == "tests" and process.returncode == 5 \
            else "failed"
    _read_output(outcome, log, offset, step.kind == "tests")
    return outcome


def _wait(process: subprocess.Popen, timeout: float, outcome: Outcome) -> None:
    try:
        process.wait(timeout=max(1.0, timeout - GRACE))
    except subprocess.TimeoutExpired:
        _signal(descendants(process.pid), process.pid, signal.SIGINT)
        try:
            process.wait(timeout=GRACE)
        except subprocess.TimeoutExpired:
            pass
        outcome.status = "out of time"
        outcome.reason = f"interrupted at {timeout - GRACE:.0f} s of its {timeout:.0f} s " \
            "(SIGINT, then SIGKILL)"


def _trim(log: Path) -> None:
    if log.exists() and log.stat().st_size > LOG_LIMIT:
        data = log.read_bytes()[-LOG_LIMIT // 2:]
        log.write_bytes(b"[... earlier output cut ...]\n" + data)


def _read_output(outcome: Outcome, log: Path, offset: int, tests: bool) -> None:
    """The step's tests and counts (pytest -v lines and summary) and its last lines."""
    with open(log, "rb") as handle:
        handle.seek(offset)
        lines = handle.read().decode(errors="replace").splitlines()
    if tests:
        for line in lines:
            found = TEST_LINE.match(line.strip())
            if found:
                outcome.tests[found[1]] = found[2].lower()
        for result in outcome.tests.values():
            outcome.counts[result] = outcome.counts.get(result, 0) + 1
    if outcome.status != "passed" or any(r in ("failed", "error") for r in outcome.tests.values()):
        outcome.tail = lines[-TAIL:]


def skip_reason(step: Step, probe: dict | None) -> str:
    if step.needs == "compiler" and probe and probe.get("compiler", {}).get("missing"):
        return f"torch.compile cannot build kernels here: {probe['compiler']['missing']}"
    return ""


def timeout_for(index: int, plan: list[Step], left: float, probe: dict | None) -> float:
    """What step ``index`` may use: the time left less the budgets kept for later steps
    (core steps keep the later core steps' budgets; an extra one the later extras')."""
    step = plan[index]
    kept = sum(s.budget for s in plan[index + 1:]
               if s.extra == step.extra and not skip_reason(s, probe))
    return left - kept


class Results:
    """``<stem>.jsonl`` (appended), ``<stem>.md`` (rewritten) and ``<stem>.log`` in ``out``."""

    def __init__(self, out: Path, stem: str, plan: list[Step], budget: float,
                 start: float | None = None):
        out.mkdir(parents=True, exist_ok=True)
        self.jsonl, self.md = out / f"{stem}.jsonl", out / f"{stem}.md"
        self.log, self.plan, self.budget, self.stem = out / f"{stem}.log", plan, budget, stem
        self.outcomes: list[Outcome] = []
        self.started = datetime.datetime.now().isoformat(timespec="seconds")
        self.start = time.monotonic() if start is None else start  # the budget's clock
        self.probe: dict | None = None
        self.jsonl.write_text("")  # a run of the same day before this one is replaced
        self.log.write_bytes(b"")
        self.summary(None)

    def add(self, outcome: Outcome) -> None:
        if self.probe and self.probe.get("decode", {}).get("gpu_decoded") is not True:
            for test, result in outcome.tests.items():  # JPEG parity proves nothing then
                if "jpeg" in test.lower():
                    outcome.tests[test] = f"{result} ({JPEG_NOTE})"
        self.outcomes.append(outcome)
        with open(self.jsonl, "a") as handle:
            handle.write(json.dumps({k: v for k, v in asdict(outcome).items()
                                     if v not in (None, "", [], {})}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.summary(None)

    def summary(self, running: Step | None) -> None:
        text = markdown(self, running)
        temporary = self.md.with_name(f"{self.md.name}.tmp")
        temporary.write_text(text)
        os.replace(temporary, self.md)


def run_plan(plan: list[Step], results: Results, env: dict,
             after: Callable[[Step, Outcome], None] | None = None) -> list[Outcome]:
    """Every step of ``plan`` in order, within ``results.budget`` seconds in all."""
    for index, step in enumerate(plan):
        left = results.budget - (time.monotonic() - results.start)
        timeout = timeout_for(index, plan, left, results.probe)
        reason = skip_reason(step, results.probe)
        if not reason and timeout < min(step.budget / 2, MIN_STEP):
            reason = f"no time left ({max(timeout, 0):.0f} s for a {step.budget:.0f} s step)"
        if reason:
            results.add(Outcome(step.name, "skipped", round(step.budget), reason=reason))
            continue
        results.summary(step)
        try:
            outcome = run_one(step, timeout, results.log, env)
            if after:
                after(step, outcome)
        except KeyboardInterrupt:  # SIGINT, or SIGTERM (see ``stop_on_sigterm``)
            results.add(Outcome(step.name, "stopped", round(step.budget),
                                reason="the whole run was stopped during this step"))
            raise
        except Exception as error:  # noqa: BLE001 (the runner's own trouble: the next step)
            outcome = Outcome(step.name, "failed", round(step.budget),
                              reason=f"runner: {type(error).__name__}: {error}")
        results.add(outcome)
    return results.outcomes


def stop_on_sigterm() -> None:
    """SIGTERM (a job's time limit) stops the run like Ctrl-C: the running step is killed
    and recorded as stopped, and the summary is written, before the runner exits."""
    def stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
