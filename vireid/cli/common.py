"""What every command shares: one-line errors, progress bars, readable numbers."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from vireid.errors import VireidError

stderr = Console(stderr=True)


def new_app(help_text: str) -> typer.Typer:
    return typer.Typer(help=help_text, no_args_is_help=True, add_completion=False,
                       pretty_exceptions_enable=False, rich_markup_mode=None)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn a VireidError into ``error: <file>: <problem>`` on stderr and exit code 1."""
    try:
        yield
    except VireidError as error:
        stderr.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        stderr.print("interrupted: nothing was left half-written", markup=False)
        raise typer.Exit(130) from None


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside the block, SIGTERM (``kill``, a job scheduler) acts like Ctrl-C.

    By default SIGTERM ends the process on the spot, so no cleanup runs: temporary folders
    stay and worker processes are orphaned. As a KeyboardInterrupt it unwinds like Ctrl-C
    (``user_errors`` prints one line). A second SIGTERM is ignored while the cleanup runs.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set signal handlers
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


class RateColumn(ProgressColumn):
    """Items per second, e.g. ``1,234 images/s``."""

    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} {self.unit}/s" if speed else f"- {self.unit}/s")


@contextlib.contextmanager
def progress_bar(description: str, total: int, unit: str = "images") -> Iterator[Callable]:
    """A rich progress bar on stderr; yields ``advance(n)``."""
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TaskProgressColumn(), RateColumn(unit), TimeElapsedColumn(),
               TimeRemainingColumn()]
    with Progress(*columns, console=stderr, disable=not sys.stderr.isatty(),
                  transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


def megabytes(count: int) -> str:
    return f"{count / 1e6:.1f} MB"
