"""``fleetctl door up|down|reload|status|hash-key``: the front door (HAProxy) clients reach inference through."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import typer

from fleetctl.cli.context import get_context
from fleetctl.cli.options import JsonOpt
from fleetctl.cli.safe import text

if TYPE_CHECKING:
    from rich.console import Console

    from fleetctl.services.door import DoorInfo, DoorStatus

door_app = typer.Typer(
    help="The front door: HAProxy in front of vllm-router, passing only inference.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(door_app, name="door")


@door_app.command("up")
def up(ctx: typer.Context) -> None:
    """Start the door on [router] listen, or reload it (no connection dropped) when it already runs."""
    from fleetctl.services.door import door_up
    from fleetctl.services.statefile import load_state

    app_ctx = get_context(ctx)
    fleet = app_ctx.load_fleet()
    _said(app_ctx.out, door_up(fleet, load_state(fleet), os.environ))


@door_app.command("reload")
def reload(ctx: typer.Context) -> None:
    """Read the keys file and the fleet's capacity again and reload the door without dropping a connection."""
    from fleetctl.services.door import door_reload
    from fleetctl.services.statefile import load_state

    app_ctx = get_context(ctx)
    fleet = app_ctx.load_fleet()
    _said(app_ctx.out, door_reload(fleet, load_state(fleet), os.environ))


@door_app.command("down")
def down(ctx: typer.Context) -> None:
    """Stop the door: requests in flight finish first (up to 30 s)."""
    from fleetctl.services.door import door_down

    app_ctx = get_context(ctx)
    stopped = door_down(app_ctx.load_fleet())
    app_ctx.out.print("front door stopped" if stopped else "no front door is running")


@door_app.command("status")
def status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Listening address, requests per second, queue and refusals by kind (since the last reload)."""
    from fleetctl.errors import UsageError
    from fleetctl.services.door import door_status

    app_ctx = get_context(ctx)
    doc = door_status(app_ctx.load_fleet())
    if as_json:
        print(json.dumps(asdict(doc), indent=2))
    else:
        for line in door_lines(doc):
            app_ctx.out.print(line)
    if doc.declared and doc.pid is None:
        raise UsageError("the front door is not running", hint="fleetctl door up")


@door_app.command("hash-key")
def hash_key() -> None:
    """Read a client key on stdin and print its key_sha256 line for the keys file (the key itself never is)."""
    from fleetctl.core.door import hash_key as digest
    from fleetctl.errors import UsageError

    key = sys.stdin.readline().strip()
    if not key or any(c.isspace() for c in key):
        raise UsageError("give one client key, without spaces, on stdin", hint="openssl rand -hex 32 | tee KEYFILE")
    print(f'key_sha256 = "{digest(key)}"')


def door_lines_of(doc: dict[str, Any]) -> list[str]:
    """``door_lines`` of the door as ``status --json`` holds it."""
    from fleetctl.core.door_config import DoorStats
    from fleetctl.services.door import DoorStatus

    stats = DoorStats(**doc["stats"]) if doc.get("stats") else None
    return door_lines(DoorStatus(**{**doc, "stats": stats}))


def door_lines(doc: DoorStatus) -> list[str]:
    """The door as ``status`` shows it (rich markup, every value escaped); the lead's status view calls this."""
    if not doc.declared:
        return ["door: none declared ([router] listen)"]
    head = f"door: {text(doc.listen)}"
    if doc.pid is None or doc.stats is None:
        return [f"{head} [red]{text(doc.problem or 'not running')}[/red]"]
    s = doc.stats
    refused = ", ".join(f"{kind} {n}" for kind, n in s.refusals.items())
    return [
        f"{head} (pid {doc.pid}): {s.requests_per_s} req/s, {s.requests_total} requests",
        f"  queue {s.queued} (max {s.queued_max}), in flight {s.in_flight} of {s.slots} slots",
        f"  refused: {refused}",
    ]


def _said(out: Console, info: DoorInfo) -> None:
    verb = "started" if info.started else "reloaded"
    keys = "no keys file: every client admitted" if info.clients is None else f"{info.clients} client key(s)"
    out.print(f"front door {verb} on {info.scheme}://{text(info.listen)} (pid {info.pid}); {info.slots} slots; {keys}")
