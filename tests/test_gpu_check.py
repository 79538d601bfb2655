"""`make gpu-check` on the CPU: the plan without CUDA, the one-line refusal, and the step
runner with fake steps that fail, hang, leave processes behind, or are killed mid-way: the
results folder always holds every earlier step's outcome and the summary."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
CHECK = ROOT / "tools" / "gpu_check.py"
PY = sys.executable


def gpu_check(*arguments, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([PY, str(CHECK), *map(str, arguments)], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_without_cuda_gpu_check_says_so_and_exits_2(tmp_path):
    result = gpu_check("--out", tmp_path / "results")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "gpu-check: no CUDA GPU is visible to PyTorch (run it on a CUDA machine); nothing was "
        "run"]
    assert not (tmp_path / "results").exists()


def test_the_plan_prints_without_cuda_and_fits_eight_minutes():
    from tools.gpu_check import BUDGET, build_plan

    result = gpu_check("--plan", timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == f"total: {BUDGET} s" and BUDGET <= 480
    assert lines[0].split(None, 3)[3].startswith("install:")  # installs count in the budget
    assert "probe:" in lines[1]
    scaled = gpu_check("--plan", "--budget", 240, timeout=60).stdout.strip().splitlines()
    assert scaled[-1] == "total: 240 s" and len(scaled) == len(lines)
    for step in build_plan(Path("bench.jsonl"), 100):
        if step.kind == "tests":  # each test's limit is shorter than its step's time
            limits = [int(a.split("=")[1]) for a in step.command_for(40.0)
                      if a.startswith("--timeout=")]
            assert limits == ([24] if step.per_test else [])
            assert step.command[step.command.index("-m", 2) + 1] == "gpu"


def fake_steps(tmp_path: Path, steps: list[dict]) -> Path:
    path = tmp_path / "steps.json"
    path.write_text(json.dumps(steps))
    return path


def python(code: str) -> list[str]:
    return [PY, "-c", code]


HANG = ("import os, signal, sys, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        "open(sys.argv[1], 'w').write(str(os.getpid())); print('hanging', flush=True); "
        "time.sleep(120)")
ORPHAN = ("import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', "
          "'import time; time.sleep(120)'], start_new_session=True); "
          "open(sys.argv[1], 'w').write(str(p.pid)); print('left one behind')")


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def records(out: Path) -> list[dict]:
    (jsonl,) = out.glob("gpu-*[0-9].jsonl")
    return [json.loads(line) for line in jsonl.read_text().splitlines()]


def summary(out: Path) -> str:
    (md,) = out.glob("gpu-*[0-9].md")
    return md.read_text()


def test_a_failing_a_hanging_and_a_littering_step_do_not_stop_the_run(tmp_path):
    """A step that fails, one that hangs (ignoring SIGINT: killed at its time), one that
    leaves a process in its own session behind (killed, counted), then one that passes; the
    extra step at the end finds no time left. All are recorded with their reasons."""
    plan = [
        {"name": "passes", "command": python("print('fine')"), "budget": 2},
        {"name": "fails", "command": python("print('boom'); raise SystemExit(3)"),
         "budget": 2},
        {"name": "hangs", "command": [*python(HANG), str(tmp_path / "hang.pid")], "budget": 2},
        {"name": "litters", "command": [*python(ORPHAN), str(tmp_path / "orphan.pid")],
         "budget": 2},
        {"name": "passes too", "command": python("print('fine')"), "budget": 2},
        {"name": "extra", "command": python("print('never')"), "budget": 100, "extra": True},
    ]
    out = tmp_path / "results"
    started = time.monotonic()
    result = gpu_check("--steps", fake_steps(tmp_path, plan), "--out", out, "--budget", 10,
                       "--work", tmp_path / "work")
    assert time.monotonic() - started < 60
    assert result.returncode == 1, result.stderr
    rows = {row["step"]: row for row in records(out)}
    assert [row["status"] for row in rows.values()] == [
        "passed", "failed", "out of time", "passed", "passed", "skipped"]
    assert rows["fails"]["returncode"] == 3 and "boom" in rows["fails"]["tail"]
    assert "hanging" in rows["hangs"]["tail"] and rows["hangs"]["reason"].startswith("interrupted")
    assert rows["litters"]["killed"] == 1
    assert rows["extra"]["reason"].startswith("no time left")
    for name in ("hang.pid", "orphan.pid"):
        assert not alive(int((tmp_path / name).read_text()))
    text = summary(out)
    for name, status in [("fails", "failed"), ("hangs", "out of time"), ("extra", "skipped")]:
        assert f"| {name} | {status} |" in text or f"| (if time is left) {name} | {status} |" \
            in text
    assert "boom" in text and "hanging" in text
    log = next(out.glob("gpu-*[0-9].log")).read_text()
    assert "===== passes too" in log and "left one behind" in log


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_run_killed_mid_step_leaves_every_earlier_outcome_and_the_summary(tmp_path, stop):
    """The whole run is killed while a step runs (SIGKILL: the device tool's limit): the
    results hold the steps before it, and the summary shows which step was running and which
    were not reached. SIGTERM stops it cleanly: the running step is killed and recorded."""
    plan = [
        {"name": "passes", "command": python("print('fine')"), "budget": 20},
        {"name": "fails", "command": python("raise SystemExit(1)"), "budget": 20},
        {"name": "long", "command": [*python(HANG), str(tmp_path / "long.pid")],
         "budget": 60},
        {"name": "after", "command": python("print('fine')"), "budget": 20},
    ]
    out = tmp_path / "results"
    runner = subprocess.Popen([PY, str(CHECK), "--steps", fake_steps(tmp_path, plan), "--out",
                               str(out), "--work", str(tmp_path / "work")], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid_file = tmp_path / "long.pid"
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        runner.send_signal(stop)
        assert runner.wait(timeout=30) == (130 if stop == signal.SIGTERM else -signal.SIGKILL)
    finally:
        if runner.poll() is None:
            runner.kill()
        hanging = int(pid_file.read_text()) if pid_file.exists() and pid_file.read_text() else 0
        if stop == signal.SIGTERM and hanging:
            assert not alive(hanging)  # the runner killed its running step
        if hanging and alive(hanging):
            os.killpg(hanging, signal.SIGKILL)  # its own process group
    done = [(r["step"], r["status"]) for r in records(out)]
    assert done[:2] == [("passes", "passed"), ("fails", "failed")]
    text = summary(out)
    assert "| passes | passed |" in text and "| fails | failed |" in text
    assert "| after | not reached |" in text
    if stop == signal.SIGKILL:
        assert len(done) == 2 and "| long | running… |" in text
    else:
        assert done[2] == ("long", "stopped") and "| long | stopped |" in text


def test_jpeg_results_are_marked_when_the_gpu_did_not_decode(tmp_path):
    from tools.gpu_steps import Outcome, Results, Step

    plan = [Step("tests: parity", ("true",), 10, "tests")]
    results = Results(tmp_path, "gpu-test", plan, 10)
    results.probe = {"decode": {"gpu_decoded": False, "libraries": ["libnvimgcodec.so.0"]}}
    results.add(Outcome("tests: parity", "passed", 10, tests={
        "t.py::test_x[jpeg]": "passed", "t.py::test_x[raw]": "passed"}))
    row = json.loads((tmp_path / "gpu-test.jsonl").read_text())
    assert row["tests"] == {"t.py::test_x[jpeg]": "passed (not decoded on the GPU)",
                            "t.py::test_x[raw]": "passed"}
    assert "JPEG decoding on the GPU is not proven" in (tmp_path / "gpu-test.md").read_text()


def test_steps_that_need_a_compiler_are_skipped_with_the_probes_reason():
    from tools.gpu_steps import Step, skip_reason, timeout_for

    compiled = Step("compile", ("true",), 10, needs="compiler", extra=True)
    probe = {"compiler": {"missing": "no C compiler (cc, gcc or clang) on PATH"}}
    assert skip_reason(compiled, probe).endswith("no C compiler (cc, gcc or clang) on PATH")
    assert skip_reason(compiled, {"compiler": {"missing": None}}) == ""
    core = [Step("a", ("true",), 10), Step("b", ("true",), 20), compiled]
    assert timeout_for(0, core, 100, probe) == 80  # keeps b's budget, not the extra's


def fake_wheel() -> bytes:
    """A one-module wheel, as pip builds them."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        wheel.writestr("vireid_demo_mod.py", "VALUE = 42\n")
        info = "vireid_demo-1.0.dist-info"
        wheel.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: vireid-demo\n"
                       "Version: 1.0\n")
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\n"
                       "Root-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", "")
    return buffer.getvalue()


def test_install_joins_the_pieces_in_order_and_installs_offline(tmp_path):
    from tools.gpu_probe import install

    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        data = fake_wheel()
        member = tarfile.TarInfo("vireid_demo-1.0-py3-none-any.whl")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    whole = archive.getvalue()
    for number, piece in enumerate([whole[:7000], whole[7000:]]):
        folder = tmp_path / f".gpuw{number + 1}"
        folder.mkdir()
        (folder / f"part.{number:02d}").write_bytes(piece)
    site = tmp_path / "site"
    install(tmp_path, site)  # its import check of DALI is this machine's business
    assert (site / "vireid_demo_mod.py").read_text() == "VALUE = 42\n"
