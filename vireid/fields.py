"""Settings as typed dataclass fields that check themselves.

A setting is declared once, as a field made by ``setting()``: its default, its bounds and the
name it has in flat form (``RUN/config.json``, a ``--config`` file and the command line) where
that differs from the field's. ``check_fields(self)`` in a group's ``__post_init__`` then
holds every way in to the same rules (the CLI, a config file, a resumed run's config.json, a
library caller): a value of the wrong type or outside its bounds is a one-line error naming
the setting, and a choice given as its word becomes its Enum.

Example::

    @dataclass(frozen=True)
    class Evaluation:
        every: int = setting(2, min=1, flat="eval_every")

        def __post_init__(self):
            check_fields(self)

    Evaluation(every=0)  # VireidError: "eval_every: 0 is less than 1"
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import types
import typing
from enum import Enum
from typing import Any

from vireid.errors import VireidError

# what a resumed run may do with a setting (``setting(resume=…)``)
KEEP = "keep"  # keeps the run's value; a different value given explicitly is refused
FREE = "free"  # may change between sessions of one run (its length, the machine, speed)
CHECK = "check"  # kept, and also compared with the checkpoint's (older run folders)


def setting(default: Any = dataclasses.MISSING, *, help: str = "", min: float | None = None,
            max: float | None = None, above: float | None = None, flat: str | None = None,
            flag: str | None = None, resume: str = KEEP, metavar: str | None = None,
            rule: Any = None, default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field that declares a setting once: its default, its ``help`` (the
    command-line help), bounds (``min``/``max`` inclusive, ``above`` exclusive), its flat
    name (config.json, config files; default: the field's name), its command-line ``flag``
    where it differs from ``--flat-name`` (e.g. ``"--compile"`` for a flag without a
    ``--no-`` form), what a resume may do with it, the ``metavar`` of its value, and a
    ``rule``: a function of the (typed) value that returns what is wrong with it, or None."""
    metadata = {"help": help, "min": min, "max": max, "above": above, "flat": flat,
                "flag": flag, "resume": resume, "metavar": metavar, "rule": rule}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def like(cls: type, name: str, **changes) -> Any:
    """Setting ``name`` of ``cls`` declared again in another group (another command's
    settings): the same help, bounds, rule and checks; ``changes`` may give it another
    ``default``, ``flat`` name, ``flag`` or ``help``."""
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    default = changes.pop("default", field.default)
    return dataclasses.field(default=default, metadata={**field.metadata, **changes})


def flat_name(field: dataclasses.Field) -> str:
    return field.metadata.get("flat") or field.name


def flat_fields(groups: dict[str, type]) -> dict[str, tuple[str, dataclasses.Field]]:
    """Flat name → (group, field) over ``groups`` ({group name: dataclass})."""
    return {flat_name(f): (group, f) for group, cls in groups.items()
            for f in dataclasses.fields(cls)}


def type_hint(cls: type, name: str):
    """The resolved annotation of field ``name`` of ``cls``."""
    return _hints(cls)[name]


def check_fields(instance) -> None:
    """Check (and normalise: choices to Enums, sequences to tuples, ints to floats) every
    field of the frozen dataclass ``instance`` against its type and bounds."""
    for field in dataclasses.fields(instance):
        value = check_value(type(instance), field, getattr(instance, field.name))
        object.__setattr__(instance, field.name, value)


def check_value(cls: type, field: dataclasses.Field, value):
    """``value`` for ``field`` of ``cls``, typed, or a one-line error naming the setting
    (its type, bounds and rule: what the CLI checks while parsing, too)."""
    name = flat_name(field)
    value = _typed(name, value, _hints(cls)[field.name])
    _check_bounds(name, value, field.metadata)
    rule = field.metadata.get("rule")
    problem = rule(value) if rule and value is not None else None
    if problem:
        raise VireidError(name, problem)
    return value


@functools.cache
def _hints(cls: type) -> dict:
    return typing.get_type_hints(cls)


def _typed(name: str, value, hint):
    """``value`` as ``hint`` holds it, or a one-line error."""
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise VireidError(name, "must be given (got nothing)")
    errors = []
    for option in (o for o in options if o is not type(None)):
        try:
            return _as(name, value, option)
        except VireidError as error:
            errors.append(error)
    raise errors[0]


def _is_union(hint) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _as(name: str, value, kind):
    if isinstance(kind, type) and issubclass(kind, Enum):
        if isinstance(value, kind):
            return value
        try:
            return kind(value)
        except (ValueError, TypeError):
            choices = ", ".join(str(member.value) for member in kind)
            raise VireidError(name, f"{value!r} is not one of {choices}") from None
    if typing.get_origin(kind) is tuple:
        return _as_tuple(name, value, typing.get_args(kind))
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise VireidError(name, f"{value!r} is not true or false")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise VireidError(name, f"{value!r} is not a whole number")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise VireidError(name, f"{value!r} is not a finite number")
            return float(value)
        raise VireidError(name, f"{value!r} is not a number")
    if kind is str:
        if isinstance(value, (str, os.PathLike)):
            return os.fspath(value)
        raise VireidError(name, f"{value!r} is not text")
    return value


def _as_tuple(name: str, value, items: tuple) -> tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise VireidError(name, f"{value!r} is not a list of values")
    if len(items) == 2 and items[1] is Ellipsis:  # tuple[X, ...]: any number of X
        return tuple(_as(name, v, items[0]) for v in value)
    if len(value) != len(items):
        raise VireidError(name, f"needs {len(items)} values (got {len(value)})")
    return tuple(_as(name, v, kind) for v, kind in zip(value, items, strict=True))


def _check_bounds(name: str, value, metadata) -> None:
    values = value if isinstance(value, tuple) else (value,)
    low, high, above = metadata.get("min"), metadata.get("max"), metadata.get("above")
    for number in values:
        if not isinstance(number, (int, float)) or isinstance(number, bool):
            continue
        if low is not None and number < low:
            raise VireidError(name, f"{_shown(number)} is less than {_shown(low)}")
        if high is not None and number > high:
            raise VireidError(name, f"{_shown(number)} is more than {_shown(high)}")
        if above is not None and not number > above:
            raise VireidError(name, f"{_shown(number)} must be greater than {_shown(above)}")


def _shown(number: float) -> str:
    return f"{number:g}" if isinstance(number, float) else str(number)
