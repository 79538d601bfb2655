"""Interrupts held back for the moments a build must not be cut: the swap of the output folder,
and the start of the encoding processes (a worker forked before it ignores interrupts would
die of one, or print a traceback of the main process's handler)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

INTERRUPTS = frozenset({signal.SIGINT, signal.SIGTERM})


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT/SIGTERM wait (pending) until the block ends, in this thread and in processes
    forked inside it."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPTS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
