"""The cache's memory check against every limit a process meets (MemAvailable, the memory
cgroup v1 and v2, ``ulimit -v``), its one-line refusals, and DALI's real import error."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli import command
from vireid.errors import VireidError
from vireid.loader import memory
from vireid.loader.cache import allocate

GiB = 2**30


def fake_proc(tmp_path: Path, cgroup_line: str, available_kb: int = 8 * 2**20,
              vm_kb: int = 2**20) -> Path:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text(f"MemTotal: 16000000 kB\nMemFree: 100 kB\n"
                                  f"MemAvailable: {available_kb} kB\n")
    (proc / "self" / "cgroup").write_text(cgroup_line + "\n")
    (proc / "self" / "status").write_text(f"Name: python\nVmPeak: 9 kB\nVmSize: {vm_kb} kB\n")
    return proc


def write(folder: Path, **files) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name.replace("_", ".", 1)).write_text(text)


def test_cgroup_v2_limit_less_working_set_at_the_tightest_level(tmp_path):
    """A 1.6 GB group using 0.5 GB (0.1 GB of it inactive file pages) leaves 1.2 GB; a
    parent level with a tighter limit wins; levels without a limit ("max") do not count."""
    proc = fake_proc(tmp_path, "0::/user.slice/run.scope")
    cgroup = tmp_path / "cgroup"
    write(cgroup, memory_max="max\n", memory_current="9000000000\n")
    write(cgroup / "user.slice", memory_max="max\n", memory_current="600000000\n")
    write(cgroup / "user.slice" / "run.scope", memory_max="1600000000\n",
          memory_current="500000000\n", memory_stat="anon 1\ninactive_file 100000000\n")
    assert memory.host_memory_limits(proc, cgroup)[memory.CGROUP] == 1_200_000_000
    write(cgroup / "user.slice", memory_max="1000000000\n")
    assert memory.host_memory_limits(proc, cgroup)[memory.CGROUP] == 400_000_000
    assert memory.available_host_memory(proc, cgroup) == 400_000_000


def test_cgroup_v1_and_a_container_that_sees_its_group_as_the_root(tmp_path):
    """v1: limit_in_bytes less usage_in_bytes (less total_inactive_file); the path in
    /proc/self/cgroup names the host's folder, which a container does not see: its mount's
    root is its own group. The "no limit" number of v1 counts as no limit."""
    proc = fake_proc(tmp_path, "4:cpu,cpuacct:/docker/abc\n5:memory:/docker/abc")
    cgroup = tmp_path / "cgroup"
    write(cgroup / "memory", memory_limit_in_bytes="2000000000\n",
          memory_usage_in_bytes="700000000\n", memory_stat="total_inactive_file 200000000\n")
    assert memory.host_memory_limits(proc, cgroup)[memory.CGROUP] == 1_500_000_000
    write(cgroup / "memory", memory_limit_in_bytes="9223372036854771712\n")
    assert memory.CGROUP not in memory.host_memory_limits(proc, cgroup)


def test_without_cgroup_files_memavailable_counts(tmp_path):
    proc = fake_proc(tmp_path, "0::/", available_kb=3 * 2**20)
    limits = memory.host_memory_limits(proc, tmp_path / "no-cgroup")
    assert limits[memory.MEMAVAILABLE] == 3 * GiB and memory.CGROUP not in limits
    assert memory.available_host_memory() > 0  # this machine's own


def test_address_space_left_is_the_limit_less_this_process():
    assert memory.address_space_left(4 * GiB, "VmSize:\t1048576 kB\n") == 3 * GiB
    assert memory.address_space_left(resource.RLIM_INFINITY, "VmSize: 1 kB") is None


def test_a_cgroup_that_cannot_hold_the_cache_is_refused_in_one_line(tmp_path):
    """The issue's case: a 1.6 GB group and a 1.7 GB cache, on a machine with 8 GB free."""
    proc = fake_proc(tmp_path, "0::/")
    write(tmp_path / "cgroup", memory_max="1600000000\n", memory_current="100000000\n")
    limits = memory.host_memory_limits(proc, tmp_path / "cgroup")
    with pytest.raises(VireidError, match=r"^cache: the decoded training set needs 1\.7 GB "
                       r"\(14,000 images × 288×144×3\), but only 1\.5 GB of host memory is "
                       r"available under the memory cgroup's limit \(keeping 1\.0 GB free\): "
                       r"use cache none$"):
        memory.check_host_fits(1_741_824_000, 14_000, (288, 144), limits)


def test_the_address_space_limit_is_per_process_the_others_are_shared():
    limits = {memory.MEMAVAILABLE: 10 * 10**9, memory.ADDRESS_SPACE: 4 * 10**9}
    memory.check_host_fits(2 * 10**9, 1, (1, 1), limits, processes=3)  # 6+1 ≤ 10, 2+1 ≤ 4
    with pytest.raises(VireidError, match="in each of 5 processes"):
        memory.check_host_fits(2 * 10**9, 1, (1, 1), limits, processes=5)  # 10+1 > 10


def test_a_failed_allocation_is_the_same_one_line_refusal():
    with pytest.raises(VireidError, match=r"^cache: the decoded training set needs [\d.]+ GB "
                       r"\(1,048,576 images × 1048576×1024×3\), but allocating it in host "
                       r"memory failed \(.+\): use cache none$"):
        allocate((2**20, 2**20, 1024, 3), "host")


def vm_size_after_imports() -> int:
    """VmSize of a fresh Python that imported what vireid-train imports before its cache."""
    code = ("import torch, nvidia.dali, vireid.cli.train, vireid.train.runner, "
            "vireid.loader.dali_loader\n"
            "print(next(l for l in open('/proc/self/status') if l.startswith('VmSize')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "MALLOC_ARENA_MAX": "2"})
    assert result.returncode == 0, result.stderr[-2000:]
    return int(result.stdout.split()[1]) * 1024


@pytest.mark.dali
@pytest.mark.slow
def test_under_ulimit_v_a_host_cache_is_refused_in_one_line(shard_dir, tmp_path):
    """``vireid-train --cache host`` with 0.95 GB of address space beyond its imports (it
    needs ~0.5 GB more before the cache): refused in one line naming ``ulimit -v``, before
    anything is decoded, instead of a traceback or an allocation failure mid-run."""
    shards = shard_dir("sysu", "jpeg", width=32, height=64)
    limit = vm_size_after_imports() + int(0.95 * 10**9)

    def limited():
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(
            resource.RLIMIT_AS)[1]))

    arguments = ["--shards", shards, "--out", tmp_path / "run", "--arch", "resnet18",
                 "--pretrained", "none", "--epochs", "1", "--batch-ids", "4", "--num-pos", "2",
                 "--amp", "off", "--max-steps", "1", "--warmup-epochs", "1", "--milestones",
                 "2", "3", "--device", "cpu", "--cache", "host"]
    result = subprocess.run([command("vireid-train"), *map(str, arguments)],
                            capture_output=True, text=True, timeout=300, preexec_fn=limited,
                            env={**os.environ, "MALLOC_ARENA_MAX": "2", "OMP_NUM_THREADS": "1",
                                 "COLUMNS": "200"})
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: cache: the decoded training set "), \
        result.stderr[-3000:]
    assert "available under the address-space limit (ulimit -v)" in lines[0]
    assert lines[0].endswith("use cache none")
    assert "cache: decoded" not in result.stdout + result.stderr


class _Refusing:
    """A meta-path finder for which ``nvidia.dali`` exists but fails to load (as it does
    when ``ulimit -v`` leaves no room to map its libraries)."""

    def find_spec(self, name, path=None, target=None):
        if name in ("nvidia", "nvidia.dali"):
            raise ImportError("libdali.so: failed to map segment from shared object")
        return None


@pytest.mark.parametrize("finder, message", [
    (_Refusing(), "installed but cannot be imported: ImportError: libdali.so: failed to map "
                  "segment from shared object"),
    (None, "not installed: pip install 'vireid[cuda130]'"),
], ids=["unloadable", "absent"])
def test_dali_import_failures_say_what_happened(monkeypatch, finder, message):
    from vireid.loader.dali_pipes import import_dali

    for name in [n for n in sys.modules if n == "nvidia.dali" or n.startswith("nvidia.dali.")]:
        monkeypatch.delitem(sys.modules, name)
    if "nvidia" in sys.modules:
        monkeypatch.delattr(sys.modules["nvidia"], "dali", raising=False)
    if finder is None:
        monkeypatch.setitem(sys.modules, "nvidia.dali", None)  # ModuleNotFoundError
    else:
        monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    with pytest.raises(VireidError) as raised:
        import_dali()
    assert str(raised.value).startswith(f"nvidia-dali: {message}")
