"""Loader throughput measurement: images/s of batch iterators, one at a time or interleaved.

Interleaving (one repeat of every row, then the next repeat) spreads the machine's noise over
all rows alike, so ratios measured in one run stay meaningful on a shared, noisy machine.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from vireid.loader.settings import Sampling

BATCH_IDS, NUM_POS = Sampling.batch_ids, Sampling.num_pos  # the original's P and K
IMAGES_PER_STEP = 2 * BATCH_IDS * NUM_POS


def endless(make: Callable) -> Callable[[], Iterator]:
    """Iterate a per-epoch loader forever."""
    def batches():
        loader = make()
        while True:
            yield from loader
    return batches


def summary(rates: list[float], steps: int) -> dict:
    rates = sorted(rates)
    return {"images_per_s": rates[len(rates) // 2], "images_per_s_min": rates[0],
            "images_per_s_max": rates[-1], "repeats": len(rates), "steps": steps}


def _rate(iterator: Iterator, steps: int, images: int = IMAGES_PER_STEP) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    synchronize()
    return steps * images / (time.perf_counter() - start)


def synchronize() -> None:
    """Wait for queued GPU work (batches made by asynchronous kernels count when done)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def throughput(batches: Callable[[], Iterator], steps: int, warmup: int, repeats: int,
               images: int = IMAGES_PER_STEP) -> dict:
    """images/s over ``steps`` batches of ``images`` after ``warmup`` batches; median of
    repeats."""
    iterator = iter(batches())
    for _ in range(warmup):
        next(iterator)
    return summary([_rate(iterator, steps, images) for _ in range(repeats)], steps)


def interleaved(rows: dict[str, tuple[Callable, tuple, Callable[[], None] | None]],
                steps: int, warmup: int, repeats: int, settle: float = 1.0,
                images: dict[str, int] | None = None) -> dict[str, dict]:
    """``{name: (factory, arguments, before)}`` → ``{name: summary}``.

    Each row lives in its own process (spawned; ``factory(*arguments)`` gives its batch
    iterator factory), as it would in training: a forked DataLoader worker would otherwise
    make every later write of the measuring process a copy-on-write fault. Rows take turns:
    every row's repeat r runs before any row's repeat r + 1, each after its ``before()`` hook
    (e.g. page-cache state) and ``settle`` seconds of quiet (loaders keep working ahead after
    their last batch, and that work must not land in the next row). ``images``: images per
    step of the rows whose steps are not ``IMAGES_PER_STEP`` (CAJ's 96)."""
    context = multiprocessing.get_context("spawn")
    workers = {}
    try:
        for name, (factory, arguments, _) in rows.items():
            parent, child = context.Pipe()
            process = context.Process(
                target=_serve, name=f"bench-{name}",
                args=(child, factory, arguments, warmup, multiprocessing.get_start_method(),
                      (images or {}).get(name, IMAGES_PER_STEP)))
            process.start()
            workers[name] = (process, parent)
            parent.recv()  # built and warmed up; one at a time, so builds do not compete
        rates: dict[str, list[float]] = {name: [] for name in rows}
        for _ in range(repeats):
            for name, (_, _, before) in rows.items():
                if before is not None:
                    before()
                time.sleep(settle)
                workers[name][1].send(steps)
                rates[name].append(workers[name][1].recv())
    finally:
        for process, connection in workers.values():
            connection.send(None)
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    return {name: summary(values, steps) for name, values in rates.items()}


def _serve(connection, factory: Callable, arguments: tuple, warmup: int,
           start_method: str, images: int = IMAGES_PER_STEP) -> None:
    """A row's process: build, warm up, then measure ``steps`` batches per request. Its own
    children (DataLoader workers) start as the platform's default would start them (fork on
    Linux), not as this spawned process was started."""
    multiprocessing.set_start_method(start_method, force=True)
    batches = iter(factory(*arguments)())
    for _ in range(warmup):
        next(batches)
    connection.send("ready")
    while (steps := connection.recv()) is not None:
        connection.send(_rate(batches, steps, images))


def cache_files(folder: Path, keep: bool) -> None:
    """Load every shard file of ``folder`` into the page cache (``keep``) or drop it from
    there (``posix_fadvise`` DONTNEED: a cold start, as after a reboot or memory pressure)."""
    for path in sorted(folder.glob("*.tar")):
        if keep:
            with open(path, "rb") as handle:
                while handle.read(1 << 24):
                    pass
        elif hasattr(os, "posix_fadvise"):
            descriptor = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(descriptor)
