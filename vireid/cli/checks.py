"""Option checks that typer's ``min``/``max`` cannot express, run while parsing: a bad value
is refused before any work starts, with the rule in the message."""

from __future__ import annotations

import math

import typer


def positive(value: float | None) -> float | None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise typer.BadParameter(f"must be a finite number greater than 0 (got {value})")
    return value


def trial_choice(value: str | None) -> int | str | None:
    """A trial number ≥ 1, or ``all``."""
    if value is None or value == "all":
        return value
    if not value.isdigit() or int(value) < 1:
        raise typer.BadParameter(f"must be a trial number ≥ 1 or 'all' (got {value})")
    return int(value)


def increasing_epochs(value: tuple[int, ...]) -> tuple[int, ...]:
    if any(v < 0 for v in value) or list(value) != sorted(set(value)):
        raise typer.BadParameter(f"must be increasing epoch numbers ≥ 0 (got "
                                 f"{' '.join(map(str, value))})")
    return value
