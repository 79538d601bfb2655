"""How much memory a decoded cache may take, and the one-line refusal when it would not fit.

Host memory is the least of what each limit still allows this process: MemAvailable (the
machine), the memory cgroup's limit less its working set (v1 and v2, every level up to the
root; inactive file pages count as free, the kernel reclaims them first) and the
address-space limit (``ulimit -v``, RLIMIT_AS) less this process's size. A host cache is held
once per process on the machine, except against the address-space limit, which is each
process's own. GPU memory is what ``cudaMemGetInfo`` calls free.
"""

from __future__ import annotations

import resource
from pathlib import Path

import numpy as np
import torch

from vireid.errors import VireidError

GB = 1e9
# what must stay free besides the cache: a fraction of what is available, at least so much
HEADROOM = {"host": (0.10, 1.0 * GB), "device": (0.25, 2.0 * GB)}
# the limits on host memory, as named in a refusal ("" for the machine's MemAvailable)
MEMAVAILABLE, CGROUP, ADDRESS_SPACE = "", "the memory cgroup's limit", \
    "the address-space limit (ulimit -v)"
UNLIMITED_V1 = 1 << 60  # cgroup v1 writes "no limit" as a number near 2**63


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _field(text: str | None, name: str, scale: int = 1) -> int | None:
    """The number after ``name`` on its line of a ``key value`` file (meminfo, memory.stat)."""
    for line in (text or "").splitlines():
        parts = line.replace(":", " ").split()
        if len(parts) >= 2 and parts[0] == name:
            return int(parts[1]) * scale
    return None


def _mem_available(proc: Path) -> int:
    """Bytes the OS can give without swapping: MemAvailable, else MemFree."""
    meminfo = _read(proc / "meminfo")
    found = _field(meminfo, "MemAvailable", 1024) or _field(meminfo, "MemFree", 1024)
    return found if found is not None else 0


def _cgroup_dirs(proc: Path, cgroup: Path) -> list[tuple[Path, int]]:
    """(folder, version) of this process's memory cgroup and every level above it, for
    cgroup v2 (``0::/path``) and v1 (``N:…memory…:/path``). A path that is not there (a
    container sees its own cgroup as the root) means the mount's root."""
    found = []
    for line in (_read(proc / "self" / "cgroup") or "").splitlines():
        number, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if number == "0" and controllers == "":
            root, version = cgroup, 2
        elif "memory" in controllers.split(","):
            root, version = cgroup / "memory", 1
        else:
            continue
        folder = root / path.strip().lstrip("/")
        folder = folder if folder.is_dir() else root
        while True:
            found.append((folder, version))
            if folder == root or root not in folder.parents:
                break
            folder = folder.parent
    return found


def _cgroup_left(folder: Path, version: int) -> int | None:
    """A cgroup level's limit less its working set (usage less inactive file pages, which
    the kernel reclaims first); None without a limit."""
    names = ("memory.max", "memory.current", "inactive_file") if version == 2 else \
        ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
    limit, usage = _read(folder / names[0]), _read(folder / names[1])
    if limit is None or usage is None or limit.strip() == "max":
        return None
    if int(limit) >= UNLIMITED_V1:
        return None
    inactive = _field(_read(folder / "memory.stat"), names[2]) or 0
    return int(limit) - max(0, int(usage) - inactive)


def address_space_left(limit: int, status: str | None) -> int | None:
    """``limit`` (RLIMIT_AS, bytes) less this process's size (VmSize in ``status``, the text
    of /proc/self/status); None without a limit."""
    if limit == resource.RLIM_INFINITY or limit < 0:
        return None
    return limit - (_field(status, "VmSize", 1024) or 0)


def host_memory_limits(proc: Path = Path("/proc"),
                       cgroup: Path = Path("/sys/fs/cgroup")) -> dict[str, int]:
    """Bytes this process can still take from each limit on host memory that applies:
    MemAvailable, the memory cgroup (least over its levels) and RLIMIT_AS. ``proc`` and
    ``cgroup``: where procfs and the cgroup mount are."""
    limits = {MEMAVAILABLE: _mem_available(proc)}
    groups = [left for folder, version in _cgroup_dirs(proc, cgroup)
              if (left := _cgroup_left(folder, version)) is not None]
    if groups:
        limits[CGROUP] = min(groups)
    space = address_space_left(resource.getrlimit(resource.RLIMIT_AS)[0],
                               _read(proc / "self" / "status"))
    if space is not None:
        limits[ADDRESS_SPACE] = space
    return limits


def available_host_memory(proc: Path = Path("/proc"),
                          cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """The least of ``host_memory_limits``: bytes this process can take without swapping,
    an OOM kill or a failed allocation."""
    return max(0, min(host_memory_limits(proc, cgroup).values()))


def available_device_memory(device_id: int) -> int:
    return torch.cuda.mem_get_info(device_id)[0]


def _needs(need: int, count: int, shape: tuple[int, int], copies: int) -> str:
    each = f" in each of {copies} processes" if copies > 1 else ""
    return (f"the decoded training set needs {need / GB:.1f} GB{each} ({count:,} images × "
            f"{shape[0]}×{shape[1]}×3)")


def _way_out(where: str) -> str:
    return "cache none" + (" or cache host" if where == "device" else "")


def check_fits(need: int, count: int, shape: tuple[int, int], where: str,
               available: int, processes: int = 1, limit: str = MEMAVAILABLE) -> None:
    """Refuse (one line, numbers in GB, the way out) a cache that would not fit; a host
    cache is held once per process of the run on this machine (``processes``) unless the
    limit is per process (``ADDRESS_SPACE``). ``limit``: which limit ``available`` is."""
    fraction, least = HEADROOM[where]
    keep = max(fraction * available, least)
    copies = processes if where == "host" and limit != ADDRESS_SPACE else 1
    if copies * need + keep > available:
        memory = "host memory" if where == "host" else "GPU memory"
        under = f" under {limit}" if limit else ""
        raise VireidError("cache", f"{_needs(need, count, shape, copies)}, but only "
                          f"{max(available, 0) / GB:.1f} GB of {memory} is available{under} "
                          f"(keeping {keep / GB:.1f} GB free): use {_way_out(where)}")


def check_host_fits(need: int, count: int, shape: tuple[int, int], limits: dict[str, int],
                    processes: int = 1) -> None:
    """``check_fits`` against every limit of ``limits`` (``host_memory_limits()``)."""
    for limit, available in limits.items():
        check_fits(need, count, shape, "host", available, processes, limit)


def refuse_allocation(shape: tuple[int, ...], where: str, error: BaseException) -> VireidError:
    """The refusal for an allocation of ``shape`` bytes in ``where`` that failed."""
    memory = "host memory" if where == "host" else "GPU memory"
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return VireidError("cache", f"{_needs(int(np.prod(shape)), shape[0], shape[1:3], 1)}, "
                       f"but allocating it in {memory} failed ({reason}): use "
                       f"{_way_out(where)}")
