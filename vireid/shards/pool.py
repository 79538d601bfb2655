"""The process pool that encodes images for the shard builder, with a visible lifetime.

Results come back in task order. Workers ignore SIGINT and SIGTERM: Ctrl-C and ``kill`` of a
process group reach every process, and a worker killed while it sends a result leaves half a
message in the pool's pipe, on which ``concurrent.futures`` then waits forever. The workers
are forked with both signals held (``signals_held``) and drop any that arrived before they
ignore them, so an interrupt during their start cannot kill one either. The main
process alone reacts (the CLI turns SIGTERM into KeyboardInterrupt); however the block is left,
queued work is cancelled and the workers finish their current chunk and exit, so no process
outlives the build (an early stop waits for at most one chunk per worker).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from vireid.errors import VireidError
from vireid.shards.encode import Encoded, EncodeTask, encode_image
from vireid.shards.signals import INTERRUPTS, signals_held

Encode = Callable[[Iterable[EncodeTask]], Iterator[Encoded]]


@contextlib.contextmanager
def encoder(workers: int, root: Path) -> Iterator[Encode]:
    """``encode(tasks)`` yields results in task order, on ``workers`` processes; a worker that
    dies (killed, out of memory) is a one-line error."""
    if workers == 1:
        yield lambda tasks: map(encode_image, tasks)
        return
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_signals)
    try:
        yield lambda tasks: _submit(pool, tasks)
    except BrokenProcessPool:
        raise VireidError(root, "an image-encoding process died (killed, or out of memory?): "
                          "nothing was kept") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _submit(pool: ProcessPoolExecutor, tasks: Iterable[EncodeTask]) -> Iterator[Encoded]:
    """Every task submitted (the pool forks its workers while it submits) with interrupts
    held; one that came meanwhile is raised as soon as the block ends."""
    with signals_held():
        return pool.map(encode_image, tasks, chunksize=16)


def _worker_signals() -> None:
    """The workers' initializer (see the module docstring)."""
    ignore_interrupts()


def ignore_interrupts() -> None:
    """Leave interrupts to the main process: ignore them, then let through what was held at
    the fork (ignored, so dropped)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, INTERRUPTS)
