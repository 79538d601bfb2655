"""The process pool that encodes images for the shard builder, with a visible lifetime.

Results come back in task order. Workers ignore SIGINT and SIGTERM: Ctrl-C and ``kill`` of a
process group reach every process, and a worker killed while it sends a result leaves half a
message in the pool's pipe, on which ``concurrent.futures`` then waits forever. The main
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
        yield lambda tasks: pool.map(encode_image, tasks, chunksize=16)
    except BrokenProcessPool:
        raise VireidError(root, "an image-encoding process died (killed, or out of memory?): "
                          "nothing was kept") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _worker_signals() -> None:
    """Leave interrupts to the main process (see the module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
