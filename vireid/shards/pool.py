"""The processes that encode images for the shard builder, with a visible lifetime.

Each worker is forked with a pipe of its own; chunks of tasks go to the workers in turn and
their results are read back in the same turn, so they come in task order. How a worker ends:

- it dies (``kill -9``, the OOM killer): its pipe closes, and the build stops with one line
  naming the signal (``concurrent.futures`` saw the death too, then sent the other workers a
  SIGTERM they ignore and waited for them forever, at 100% CPU);
- the build process dies, even by SIGKILL: the kernel kills the worker too (Linux
  ``PR_SET_PDEATHSIG``; elsewhere a thread watching the parent's pid), so no orphan runs on;
- the build ends any other way (done, an error, Ctrl-C, SIGTERM): ``encoder`` kills and reaps
  every worker before it returns.

Workers ignore SIGINT and SIGTERM: Ctrl-C and ``kill`` of a process group reach every process,
and only the main process reacts (the CLI turns SIGTERM into KeyboardInterrupt), so the user
sees "interrupted", not a dead worker. They are forked with both signals held
(``signals_held``) and drop any that arrived before they ignore them, so an interrupt during
their start cannot kill one either.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path

from vireid.errors import VireidError
from vireid.shards.encode import Encoded, EncodeTask, encode_image
from vireid.shards.signals import INTERRUPTS, signals_held

Encode = Callable[[Iterable[EncodeTask]], Iterator[Encoded]]
CHUNK = 16  # tasks per message
AHEAD = 2  # chunks queued per worker, so that none waits for the main process
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


@contextlib.contextmanager
def encoder(workers: int, root: Path) -> Iterator[Encode]:
    """``encode(tasks)`` yields results in task order, on ``workers`` processes started here;
    a worker that dies (killed, out of memory) is a one-line error about ``root``."""
    if workers == 1:
        yield lambda tasks: map(encode_image, tasks)
        return
    pool = _start(workers, root)
    try:
        yield lambda tasks: _ordered(pool, tasks, root)
    finally:
        _stop(pool)


class _Worker:
    """One encoding process and the main process's end of its pipe."""

    def __init__(self, inherited: list[Connection]):
        self.connection, theirs = multiprocessing.Pipe()
        self.process = multiprocessing.get_context("fork").Process(
            target=_serve, args=(theirs, os.getpid(), inherited), name="vireid-encode")
        try:
            self.process.start()
        except BaseException:
            self.connection.close()
            raise
        finally:
            theirs.close()  # the worker's end is the worker's alone: its death closes the pipe

    def send(self, chunk: list[EncodeTask], root: Path) -> None:
        try:
            self.connection.send(chunk)
        except OSError:
            raise self.death(root) from None

    def receive(self, root: Path) -> list[Encoded]:
        try:
            results = self.connection.recv()
        except (EOFError, OSError):
            raise self.death(root) from None
        if isinstance(results, BaseException):
            raise results  # a bug in the encoding: raised again here
        return results

    def death(self, root: Path) -> VireidError:
        self.process.join(timeout=10)  # its pipe is closed: the process has ended (or ends)
        return VireidError(root, f"an image-encoding process died ({_cause(self.process)}): "
                           "nothing was kept")

    def stop(self) -> None:
        self.process.kill()
        self.process.join()
        self.connection.close()


def _start(workers: int, root: Path) -> list[_Worker]:
    pool: list[_Worker] = []
    try:
        with signals_held():
            for _ in range(workers):
                pool.append(_Worker([worker.connection for worker in pool]))
    except OSError as error:
        _stop(pool)
        raise VireidError(root, f"cannot start {workers} image-encoding processes "
                          f"({error.strerror or error})") from None
    except BaseException:
        _stop(pool)
        raise
    return pool


def _stop(pool: list[_Worker]) -> None:
    with signals_held():  # a second Ctrl-C cannot leave a worker running
        for worker in pool:
            worker.stop()


def _ordered(pool: list[_Worker], tasks: Iterable[EncodeTask], root: Path
             ) -> Iterator[Encoded]:
    """Chunk k goes to worker k mod len(pool), and results are read in that order."""
    chunks = _chunks(tasks)
    turn: deque[_Worker] = deque()
    for worker, chunk in zip(pool * AHEAD, chunks):
        worker.send(chunk, root)
        turn.append(worker)
    while turn:
        worker = turn.popleft()
        results = worker.receive(root)
        if (chunk := next(chunks, None)) is not None:
            worker.send(chunk, root)
            turn.append(worker)
        yield from results


def _chunks(tasks: Iterable[EncodeTask]) -> Iterator[list[EncodeTask]]:
    tasks = iter(tasks)
    while chunk := list(itertools.islice(tasks, CHUNK)):
        yield chunk


def _cause(process: multiprocessing.Process) -> str:
    code = process.exitcode
    if code is None:
        return "its pipe closed"
    if code < 0:
        return f"killed by signal {-code}" + (": out of memory?" if -code == signal.SIGKILL
                                               else "")
    return f"exit code {code}"


def _serve(connection: Connection, parent: int, inherited: list[Connection]) -> None:
    """A worker's life: encode each chunk received and send back the results (or the
    exception that stopped it), until the main process closes the pipe."""
    _die_with(parent)
    _worker_signals()
    for other in inherited:  # other workers' pipes, copied by the fork
        other.close()
    while True:
        try:
            chunk = connection.recv()
        except EOFError:
            return
        try:
            results = [encode_image(task) for task in chunk]
        except Exception as error:  # noqa: BLE001 - re-raised in the main process
            results = error
        connection.send(results)


def _die_with(parent: int) -> None:
    """Be killed when the build process dies, however it dies."""
    if not _kernel_kills_orphan():
        threading.Thread(target=_watch, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # it died before that
        os._exit(1)


def _kernel_kills_orphan() -> bool:
    """Linux: SIGKILL this process when its parent ends (``prctl(PR_SET_PDEATHSIG)``)."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


def _worker_signals() -> None:
    """How a worker starts on signals (see the module docstring)."""
    ignore_interrupts()


def ignore_interrupts() -> None:
    """Leave interrupts to the main process: ignore them, then let through what was held at
    the fork (ignored, so dropped)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, INTERRUPTS)
