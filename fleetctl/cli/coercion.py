"""Option values that need no validation library: typer's coercion without pydantic at start-up.

typer (0.29 and later) coerces every option value, the defaults included, through a pydantic ``TypeAdapter``
built on first use; importing pydantic and building the adapters is ~0.2 s of every command's start, more than
most commands' own work. fleetctl's options are plain: strings, flags, bounded integers, floats, an Enum, lists
of strings. ``quicken`` gives each such parameter a coercion that answers the values whose result is certain (a
string for a string option, a flag's boolean, an in-range integer, an Enum member or an exact choice, a list of
strings) exactly as typer's adapter would, and hands every other value (a bad one, an out-of-range one, one
typer might read differently) to typer's own coercion, built then, so errors read as typer writes them. With a typer whose
internals differ, ``quicken`` does nothing and typer coerces as it always does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any, get_args, get_origin

import typer
from typer.core import TyperCommand, TyperGroup
from typer.models import DefaultPlaceholder

try:  # typer's private coercion layer (0.29+); absent in older releases, which need no help
    from typer._coercion import RuntimeParam, build_runtime_param
    from typer._param_types import coerce_cli_choice

    QUICK = True
except ImportError:  # pragma: no cover - depends on the installed typer
    QUICK = False

_SLOW = object()  # "not certain here: ask typer"
_INT = re.compile(r"0|[1-9][0-9]{0,17}")
_FLOAT = re.compile(r"(?:0|[1-9][0-9]{0,17})(?:\.[0-9]{1,17})?")


class _Quick:
    """Its options (its ``--help`` too, made on first use) get the quick coercion: a mixin for typer's command and
    group classes."""

    params: list[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        quicken(self.params)

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        quicken([option])
        return option


class QuickCommand(_Quick, TyperCommand):
    """A command whose options get the quick coercion."""


class QuickGroup(_Quick, TyperGroup):
    """A command group whose options get the quick coercion."""


def use_quick_commands(app: typer.Typer) -> None:
    """Every command and group registered in ``app`` (and in the groups added to it) made as QuickCommand or
    QuickGroup, unless it names a class of its own (not typer's plain one). Call after the commands are registered."""
    for command in app.registered_commands:
        if command.cls in (None, TyperCommand):
            command.cls = QuickCommand
    for group in app.registered_groups:
        if group.typer_instance is None:
            continue
        if isinstance(group.cls, DefaultPlaceholder) or group.cls in (None, TyperGroup):
            group.cls = QuickGroup
        use_quick_commands(group.typer_instance)


def quicken(params: Iterable[Any]) -> None:
    """Give each of ``params`` whose typer coercion is not built yet the quick one (where typer has one)."""
    if not QUICK:
        return  # pragma: no cover
    for param in params:
        if getattr(param, "_runtime_param", _SLOW) is None and hasattr(param, "type_descriptor"):
            param._runtime_param = _quick_param(param.type_descriptor)


def _quick_param(descriptor: Any) -> Any:
    info = descriptor.parameter_info
    if descriptor.file_annotation is not None or info.parser is not None or info.clamp:
        return None  # typer builds its own on first use
    return QuickParam(parameter_info=info, annotation=descriptor.annotation, descriptor=descriptor)


if QUICK:

    @dataclass(frozen=True)
    class QuickParam(RuntimeParam):
        """typer's ``RuntimeParam`` contract (``coerce`` handles None and multi-values) with a quick
        ``_coerce_value``; the first value it is not certain of builds typer's own and uses it from then on."""

        descriptor: Any = None

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            done = quick_value(self.annotation, self.parameter_info, value, ctx)
            if done is not _SLOW:
                return done
            real = build_runtime_param(self.descriptor)
            param._runtime_param = real
            return real._coerce_value(value, param=param, ctx=ctx)


def quick_value(annotation: Any, info: Any, value: Any, ctx: Any) -> Any:
    """The coerced value when it is certain without pydantic, else ``_SLOW``."""
    kind = type(value)
    if annotation is str:
        return value if kind is str else _SLOW
    if annotation is bool:
        return value if kind is bool else _SLOW
    if annotation is int:
        number = value if kind is int else int(value) if kind is str and _INT.fullmatch(value) else None
        return number if number is not None and _in_range(number, info) else _SLOW
    if annotation is float:
        if kind is float and info.min is None and info.max is None:
            return value
        return float(value) if kind is str and _FLOAT.fullmatch(value) and _in_range(float(value), info) else _SLOW
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return _choice(annotation, info, value, ctx)
    if get_origin(annotation) is list and get_args(annotation) == (str,):
        ok = kind in (list, tuple) and all(type(item) is str for item in value)
        return list(value) if ok else _SLOW
    return _SLOW


def _in_range(number: float, info: Any) -> bool:
    return (info.min is None or number >= info.min) and (info.max is None or number <= info.max)


def _choice(annotation: type[Enum], info: Any, value: Any, ctx: Any) -> Any:
    if isinstance(value, annotation):
        return value
    if type(value) is not str:
        return _SLOW
    try:
        return coerce_cli_choice(value, choices=tuple(annotation), case_sensitive=info.case_sensitive, ctx=ctx)
    except ValueError:
        return _SLOW
