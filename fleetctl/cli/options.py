"""Options shared by several commands, declared once."""

from __future__ import annotations

import math
from typing import Annotated, Any

import typer

from fleetctl.errors import UsageError


def seconds(ctx: Any, param: Any, value: float | None) -> float | None:
    """A duration option's value: a finite number of seconds, 0 or more (``nan``, ``inf`` and ``-1`` are refused:
    a wait that never ends, or ends at once, is not what anyone meant)."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        name = param.opts[0] if param is not None and param.opts else "a duration"
        raise UsageError(f"{name} must be a number of seconds, 0 or more, not {value}")
    return value


LimitOpt = Annotated[
    str | None,
    typer.Option(
        "--limit",
        "-l",
        metavar="PATTERN",
        help="Only these hosts: a name glob, ring=NAME or label=KEY=VALUE; comma-separated for a union.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON only on stdout; progress goes to stderr.")]
ForksOpt = Annotated[int, typer.Option("--forks", min=1, max=512, help="Hosts worked on at once.")]
AcceptNewOpt = Annotated[
    bool,
    typer.Option(
        "--accept-new-host-keys", help="Record unknown SSH host keys in known_hosts (changed keys are still refused)."
    ),
]
