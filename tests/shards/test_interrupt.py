"""A real ``vireid-shard build`` process, stopped or raced: SIGTERM cleans up like Ctrl-C (one
line, no temporary folder, no worker left), a second build into the same folder is refused
while the first one runs, a killed encoding process ends the build in one line, and a killed
build takes its encoding processes with it. The build is made slow with large stored images."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vireid.cli.shard import app
from vireid.fake import make_fake
from vireid.shards.manifest import load_manifest

SHARD = Path(sys.executable).parent / "vireid-shard"
SLOW = ["--width", "1024", "--height", "2048", "--workers", "2"]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """85 images: a few seconds to build at 1024×2048 on 2 workers."""
    root = tmp_path_factory.mktemp("interrupt") / "SYSU"
    return make_fake("sysu", root, ids=4, images_per_camera=5).root


def start_build(raw, out, signals_to_group=False) -> subprocess.Popen:
    return subprocess.Popen([str(SHARD), "build", "sysu", str(raw), str(out), *SLOW],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=signals_to_group)


def wait_until_encoding(out: Path, process: subprocess.Popen) -> None:
    """Until the first tar file appears in the temporary folder (the workers are running)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if list(out.parent.glob(f".{out.name}.partial-*/*.tar")):
            return
        time.sleep(0.02)
    pytest.fail(f"the build never started encoding: {process.communicate()}")


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def wait_for_workers(out: Path, process: subprocess.Popen) -> list[int]:
    """Until the build holds its temporary folder and has forked its 2 encoding processes
    (children running the build's own command line); their pids."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{process.pid}/cmdline").read_bytes()
            workers = [pid for pid in children(process.pid)
                       if Path(f"/proc/{pid}/cmdline").read_bytes() == command]
            if len(workers) == 2 and list(out.parent.glob(f".{out.name}.partial-*")):
                return workers
        time.sleep(0.02)
    pytest.fail(f"the build never started its workers: {process.communicate()}")


def running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("group", [False, True], ids=["process", "process-group"])
def test_sigterm_mid_build_cleans_up_like_ctrl_c(raw, tmp_path, group):
    out = tmp_path / "out"
    process = start_build(raw, out, group)
    wait_until_encoding(out, process)
    workers = children(process.pid)
    assert workers
    (os.killpg if group else os.kill)(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode not in (0, -signal.SIGTERM)
    assert stderr.strip().splitlines() == ["interrupted: nothing was left half-written"]
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert not [pid for pid in workers if running(pid)]


def test_a_second_build_is_refused_while_the_first_runs(raw, tmp_path):
    out = tmp_path / "out"
    first = start_build(raw, out)
    wait_until_encoding(out, first)
    second = CliRunner().invoke(app, ["build", "sysu", str(raw), str(out), "--workers", "1"])
    assert second.exit_code == 1
    assert second.stderr.strip().splitlines() == [
        f"error: {out}: another build is writing it right now (it holds "
        f"{tmp_path / '.out.lock'}): wait for it to finish"]
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert load_manifest(out).width == 1024  # the first build's folder, complete
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def _interrupted_while_starting() -> None:
    """A worker's initializer that is hit by SIGTERM before it gets to ignore it."""
    from vireid.shards import pool

    os.kill(os.getpid(), signal.SIGTERM)
    pool.ignore_interrupts()


def test_an_interrupt_while_the_workers_start_does_not_reach_them(raw, tmp_path,
                                                                    monkeypatch):
    """Workers are forked with interrupts held: one that arrives before a worker ignores them
    is dropped, not its death (which would end the build as 'an encoding process died')."""
    from vireid.datasets import read_dataset
    from vireid.shards import pool
    from vireid.shards.build import BuildOptions, build_shards

    monkeypatch.setattr(pool, "_worker_signals", _interrupted_while_starting)
    build_shards(read_dataset("sysu", raw), tmp_path / "out",
                 BuildOptions(workers=2, width=32, height=64))
    assert load_manifest(tmp_path / "out").samples


def open_files(pid: int) -> set[str]:
    return {os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()}


def eventually(condition, seconds=30.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def kill_session(process: subprocess.Popen) -> None:
    """SIGKILL whatever is left of a build started in its own session (orphans included)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_a_killed_worker_ends_the_build_in_one_line(raw, tmp_path):
    """``kill -9`` of one encoding process (what the OOM killer does) ends the build at once
    with one line and leaves nothing behind (it used to hang at 100% CPU)."""
    out = tmp_path / "out"
    process = start_build(raw, out, signals_to_group=True)
    try:
        os.kill(wait_for_workers(out, process)[0], signal.SIGKILL)
        _, stderr = process.communicate(timeout=60)
    finally:
        kill_session(process)
    assert process.returncode == 1
    assert stderr.strip().splitlines() == [
        f"error: {raw}: an image-encoding process died (killed by signal 9: out of memory?): "
        "nothing was kept"]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_workers_die_with_a_killed_build_and_leave_the_folder_free(raw, tmp_path):
    """``kill -9`` of the build itself: its encoding processes, which never hold the
    folder's lock, die too instead of running on as orphans that ignore Ctrl-C and SIGTERM,
    and the next build of the folder is not refused (nor left the dead build's leftovers)."""
    out = tmp_path / "out"
    process = start_build(raw, out, signals_to_group=True)
    try:
        workers = wait_for_workers(out, process)
        lock = str((tmp_path / ".out.lock").resolve())
        assert not [pid for pid in workers if lock in open_files(pid)]  # only the build has it
        process.kill()
        process.wait()
        assert eventually(lambda: not any(map(running, workers))), "orphaned workers"
        again = CliRunner().invoke(app, ["build", "sysu", str(raw), str(out), "--width", "32",
                                         "--height", "64", "--workers", "1"])
    finally:
        kill_session(process)
    assert again.exit_code == 0, again.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
