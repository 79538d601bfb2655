"""Command-line options made from settings fields (``vireid.fields.setting``).

A command declares the options that are not settings itself (``--config``, ``--nproc``)
and takes the rest, one per field, from its settings groups: the flag is ``--flat-name``
(or the field's ``flag``), the help, bounds and metavar are the field's, and the value is
checked while parsing by the same function that checks a config file's
(``vireid.fields.check_value``), so a bad value is refused with the same words from
everywhere (typer's own range types are not used: their messages differ).
``--help`` lists the options in one panel per settings group.

Example::

    def train(ctx: typer.Context, **settings) -> None: ...
    with_settings(train, {"Run": RunSettings}, skip={"trial"})
    app.command(cls=PanelCommand)(train)
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing

import typer
from typer.core import TyperCommand

from vireid.errors import VireidError
from vireid.fields import check_value, flat_name, type_hint


class PanelCommand(TyperCommand):
    """Plain-text help with one section per panel (``typer.Option(rich_help_panel=…)``)."""

    def format_options(self, ctx: typer.Context, formatter) -> None:
        panels: dict[str, list] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                panel = getattr(param, "rich_help_panel", None) or "Options"
                panels.setdefault(panel, []).append(record)
        for title, records in panels.items():
            with formatter.section(title):
                formatter.write_dl(records)


def with_settings(function, panels: dict[str, type], skip=(), required=(),
                  more_help: dict[str, str] | None = None):
    """Give ``function`` (whose last parameter is ``**settings``) one keyword option per
    field of each settings group (``panels``: panel title → dataclass), except ``skip``;
    ``required`` options must be given; ``more_help`` appends to a field's help."""
    own = [p for p in inspect.signature(function).parameters.values()
           if p.kind is not inspect.Parameter.VAR_KEYWORD]
    generated = []
    for panel, cls in panels.items():
        for field in dataclasses.fields(cls):
            name = flat_name(field)
            if name in skip:
                continue
            option = _option(cls, field, panel, name in required,
                             (more_help or {}).get(name))
            generated.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                               default=option,
                                               annotation=_cli_type(type_hint(cls, field.name))))
    function.__signature__ = inspect.Signature([*own, *generated])
    return function


def _option(cls: type, field: dataclasses.Field, panel: str, required: bool,
            more: str | None):
    meta = field.metadata
    default = field.default if field.default is not dataclasses.MISSING else None
    help_text = " ".join(part for part in (meta.get("help"), more, _range(meta)) if part)
    return typer.Option(... if required else default,
                        *([meta["flag"]] if meta.get("flag") else []),
                        help=help_text, metavar=meta.get("metavar"), rich_help_panel=panel,
                        callback=_checked(cls, field))


def _range(meta) -> str:
    """The bounds as help text, e.g. ``[range: 1 ≤ x ≤ 64]`` or ``[range: x ≥ 0]`` (the
    field's check enforces them, with the same words from every way in)."""
    low = (f"{meta['min']:g}", "≤", "≥") if meta.get("min") is not None else \
        (f"{meta['above']:g}", "<", ">") if meta.get("above") is not None else None
    high = f"{meta['max']:g}" if meta.get("max") is not None else None
    if low and high:
        return f"[range: {low[0]} {low[1]} x ≤ {high}]"
    if low:
        return f"[range: x {low[2]} {low[0]}]"
    return f"[range: x ≤ {high}]" if high else ""


def _checked(cls: type, field: dataclasses.Field):
    """A typer callback: the field's own checks, while parsing (exit code 2 with usage)."""

    def check(value):
        if value is not None:
            try:
                check_value(cls, field, value)
            except VireidError as error:
                raise typer.BadParameter(error.problem) from None
        return value

    return check


def _cli_type(hint):
    """The type typer parses: ``X | None`` → ``X``; ``tuple[X, ...]`` → ``list[X]`` (a
    repeated option)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(kind for kind in typing.get_args(hint) if kind is not type(None))
    if typing.get_origin(hint) is tuple and typing.get_args(hint)[1:] == (Ellipsis,):
        return list[typing.get_args(hint)[0]]
    return hint
