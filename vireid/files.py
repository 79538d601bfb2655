"""Files written whole or not at all, and what this machine offers to write them with.

Every output vireid writes (checkpoints, JSON rows, saved features, PNG sheets, a job's
config) goes through ``replaced_atomically``: the bytes land in a temporary file beside the
target (its name carries the process id, so two writers never rename each other's half
file into place) and are renamed over the target only once complete; any failure removes
the temporary file. A reader therefore sees the old file or the new one, never half of one.

Example::

    with replaced_atomically(Path("rows.json")) as partial:
        partial.write_text(text)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replaced_atomically(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (ending in ``suffix``, for writers that add
    one, e.g. ``.npz``); it replaces ``path`` when the block ends without an exception."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}{suffix}")
    try:
        yield partial
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, which a container or
    ``taskset`` narrows), else the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
