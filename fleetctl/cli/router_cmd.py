"""``fleetctl router up|down|run|unit|status|sync``: the local vllm-router, its supervisor and its upstreams."""

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
    """Start vllm-router under fleetctl's supervisor (in the background) with the serving, not drained, hosts
    registered; it is restarted when it dies. Idempotent; restarts it in multi-model mode when the fleet needs it."""
    from fleetctl.services.router import router_up
    from fleetctl.services.statefile import load_state

    app_ctx = get_context(ctx)
    fleet = app_ctx.load_fleet()
    proc = router_up(fleet, load_state(fleet))
    if proc.stale_cleaned:
        app_ctx.err.print("[dim]removed the record of a router that is no longer running[/dim]")
    if proc.mode_change:
        app_ctx.out.print(f"router {text(proc.mode_change)}")
    verb = "started" if proc.started else "already running"
    inner = f"; vllm-router pid {proc.router_pid}" if proc.router_pid else ""
    app_ctx.out.print(
        f"router {verb} at {text(proc.url)} (pid {proc.pid}){inner}; {text(proc.mode)}-model mode; log: {text(proc.log)}"
    )


@router_app.command("run")
def run(ctx: typer.Context) -> None:
    """Run vllm-router in the foreground under fleetctl's supervisor (for systemd: see `router unit`): register
    the intended set at every start, restart it when it dies (with backoff), stop it first on SIGTERM."""
    from fleetctl.services.router import find_executable
    from fleetctl.services.supervisor import supervise

    app_ctx = get_context(ctx)
    fleet = app_ctx.load_fleet()
    supervise(fleet, find_executable(), _say)


def _say(line: str) -> None:
    from fleetctl.cli.safe import visible
    from fleetctl.core.timefmt import utc_iso
    from fleetctl.services.clock import SYSTEM

    print(f"{utc_iso(SYSTEM.utc_now())} fleetctl router: {visible(line)}", flush=True)


@router_app.command("unit")
def unit(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option("--user", help="The user the service runs as (default: you).")] = None,
) -> None:
    """Print a systemd unit that runs `fleetctl router run` for this fleet (Restart=always)."""
    import getpass
    import os
    import sys

    from fleetctl.core.supervision import UnitSpec, systemd_unit
    from fleetctl.errors import UsageError

    app_ctx = get_context(ctx)
    fleet = app_ctx.load_fleet()
    spec = UnitSpec(sys.executable, os.path.abspath(fleet.path), user or getpass.getuser(), fleet.name)
    try:
        sys.stdout.write(systemd_unit(spec))
    except ValueError as e:
        raise UsageError(str(e), hint="move the fleet file (or this virtualenv) to a plain path") from e


@router_app.command("down")
def down(ctx: typer.Context) -> None:
    """Stop the router that fleetctl started: its supervisor, which stops vllm-router first; nothing to do if none
    runs."""
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
    """Each upstream with its health, load and circuit, next to what the fleet intends; the supervisor, its
    restarts and the last one's reason. Exit 3 if unreachable."""
    from fleetctl.errors import RouterError
    from fleetctl.services.router_status import router_status

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
    from fleetctl.services.lock import command_line, fleet_lock
    from fleetctl.services.router import sync_router
    from fleetctl.services.statefile import load_state

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
    from fleetctl.core.router import sync_steps

    verbs = {"add": "would add", "remove": "would remove"} if dry_run else {"add": "added", "remove": "removed"}
    for verb, url in sync_steps(diff):  # the order it is applied in: a changed model's remove comes first
        model = diff.model_of(url) if verb == "add" else ""
        console.print(f"{verbs[verb]} {text(url)}" + (f" (model {text(model)})" if model else ""))


def _where(proc: dict[str, Any] | None) -> str:
    if not proc:
        return "not started by fleetctl"
    inner = f", vllm-router pid {proc['router_pid']}" if proc.get("router_pid") else ", vllm-router not running"
    where = f"supervisor pid {proc['pid']}{inner} since {text(proc['since'])}"
    if proc.get("restarts"):
        last = proc.get("last_restart") or {}
        where += f" · {proc['restarts']} restart(s), last {text(last.get('at'))}: {text(last.get('reason'))}"
    return where


def status_table(console: Console, doc: dict[str, Any]) -> None:
    from rich.table import Table

    title = f"router {text(doc['url'])} · {text(doc.get('mode', 'single'))}-model mode · {_where(doc['process'])}"
    table = Table("upstream", "model", "health", "circuit", "load", "processed", "intended", title=title)
    table.title_justify = "left"
    for u in doc["upstreams"]:
        health = "[green]healthy[/green]" if u["healthy"] else "[red]unhealthy[/red]"
        circuit = "-" if u.get("circuit") is None else text(u["circuit"])
        circuit = f"[red]{circuit}[/red]" if u.get("circuit") == "open" else circuit
        cells = [text(u["url"]), text(u.get("model") or "-"), health, circuit]
        cells += ["-" if u.get(k) is None else text(u[k]) for k in ("load", "processed")]
        table.add_row(*cells, "yes" if u["intended"] else "[yellow]no[/yellow]")
    for url in doc["missing"]:
        table.add_row(text(url), "-", "-", "-", "-", "-", "[yellow]yes, missing[/yellow]")
    console.print(table)
    if doc["missing"] or doc["unexpected"]:
        console.print("[yellow]the router differs from the fleet's intended set: run fleetctl router sync[/yellow]")
    for url in doc.get("open_circuits", []):
        console.print(f"[red]circuit open for {text(url)}: the router sends it nothing for now[/red]")
