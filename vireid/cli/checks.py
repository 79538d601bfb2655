"""Option checks that typer's ``min``/``max`` cannot express, run while parsing: a bad value
is refused before any work starts, with the rule in the message."""

from __future__ import annotations

import typer


def trial_choice(value: str | None) -> int | str | None:
    """A trial number ≥ 1, or ``all``."""
    if value is None or value == "all":
        return value
    if not value.isdigit() or int(value) < 1:
        raise typer.BadParameter(f"must be a trial number ≥ 1 or 'all' (got {value})")
    return int(value)
