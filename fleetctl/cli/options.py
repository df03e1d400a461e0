"""Options shared by several commands, declared once."""

from __future__ import annotations

from typing import Annotated

import typer

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
