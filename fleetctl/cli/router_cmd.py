"""``fleetctl router up|down|status|sync``: the local vllm-router and its upstreams."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fleetctl.cli.context import get_context
from fleetctl.cli.options import JsonOpt
from fleetctl.cli.safe import text

if TYPE_CHECKING:
    from rich.console import Console

    from fleetctl.core.router import RouterDiff

router_app = typer.Typer(
    help="The local vllm-router: start, stop, inspect, and sync its upstreams.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(router_app, name="router")


@router_app.command("up")
def up(ctx: typer.Context) -> None:
    """Start vllm-router at the fleet file's router url with the serving, not drained, hosts; idempotent."""
    from fleetctl.services.fleetstate import load_state
    from fleetctl.services.router import router_up

    app_ctx = get_context(ctx)
    fleet = app_ctx.load_fleet()
    proc = router_up(fleet, load_state(fleet))
    if proc.stale_cleaned:
        app_ctx.err.print("[dim]removed the record of a router that is no longer running[/dim]")
    verb = "started" if proc.started else "already running"
    app_ctx.out.print(f"router {verb} at {text(proc.url)} (pid {proc.pid}); log: {text(proc.log)}")


@router_app.command("down")
def down(ctx: typer.Context) -> None:
    """Stop the router that fleetctl started (SIGTERM, SIGKILL after 10 s); nothing to do if none runs."""
    from fleetctl.services.router import router_down

    app_ctx = get_context(ctx)
    stop = router_down(app_ctx.load_fleet())
    if not stop.was_running:
        app_ctx.out.print(f"no router started by fleetctl is running for {text(stop.url)}")
    else:
        how = "killed after ignoring SIGTERM" if stop.killed else "stopped"
        app_ctx.out.print(f"router at {text(stop.url)} (pid {stop.pid}) {how}")


@router_app.command("status")
def status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Each upstream with its health and load, next to what the fleet intends. Exit 3 if unreachable."""
    from fleetctl.errors import RouterError
    from fleetctl.services.router import router_status

    app_ctx = get_context(ctx)
    fleet = app_ctx.load_fleet()
    doc = router_status(fleet)
    if as_json:
        print(json.dumps(doc, indent=2))
    elif doc["reachable"]:
        status_table(app_ctx.out, doc)
    if not doc["reachable"]:
        raise RouterError(
            fleet.router.url, doc["error"], hint=None if doc["process"] else "start it with: fleetctl router up"
        )


@router_app.command("sync")
def sync(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the change without making it.")] = False,
) -> None:
    """Make the router's upstreams exactly the serving, not drained, hosts: diff, change, verify."""
    from fleetctl.services.fleetstate import load_state
    from fleetctl.services.lock import command_line, fleet_lock
    from fleetctl.services.router import sync_router

    app_ctx = get_context(ctx)
    fleet = app_ctx.load_fleet()
    if dry_run:
        diff = sync_router(fleet, load_state(fleet), apply=False)
    else:
        with fleet_lock(fleet.state_dir, command_line()):
            diff = sync_router(fleet, load_state(fleet))
    show_diff(app_ctx.out, fleet.router.url, diff, dry_run)


def show_diff(console: Console, url: str, diff: RouterDiff, dry_run: bool) -> None:
    if diff.empty:
        console.print(f"router {text(url)} already holds exactly the intended upstreams")
        return
    verbs = ("would add", "would remove") if dry_run else ("added", "removed")
    for verb, urls in zip(verbs, (diff.add, diff.remove)):
        for u in urls:
            console.print(f"{verb} {text(u)}")


def status_table(console: Console, doc: dict[str, Any]) -> None:
    from rich.table import Table

    proc = doc["process"]
    where = f"pid {proc['pid']} since {text(proc['since'])}" if proc else "not started by fleetctl"
    table = Table(
        "upstream", "health", "load", "intended", title=f"router {text(doc['url'])} · {where}", title_justify="left"
    )
    for u in doc["upstreams"]:
        health = "[green]healthy[/green]" if u["healthy"] else "[red]unhealthy[/red]"
        load = "-" if u["load"] is None else text(u["load"])
        table.add_row(text(u["url"]), health, load, "yes" if u["intended"] else "[yellow]no[/yellow]")
    for url in doc["missing"]:
        table.add_row(text(url), "-", "-", "[yellow]yes, missing[/yellow]")
    console.print(table)
    if doc["missing"] or doc["unexpected"]:
        console.print("[yellow]the router differs from the fleet's intended set: run fleetctl router sync[/yellow]")
