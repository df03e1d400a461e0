"""``fleetctl inventory``: probe every host over SSH and show what it runs."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from fleetctl.cli.context import get_context
from fleetctl.cli.options import AcceptNewOpt, ForksOpt, JsonOpt, LimitOpt


def register(app: typer.Typer) -> None:
    app.command("inventory")(inventory)


def inventory(
    ctx: typer.Context,
    limit: LimitOpt = None,
    as_json: JsonOpt = False,
    forks: ForksOpt = 32,
    accept_new_host_keys: AcceptNewOpt = False,
    diff: Annotated[bool, typer.Option("--diff", help="Show what changed since the last saved inventory.")] = False,
) -> None:
    """Read every host through NVML over SSH: driver, CUDA, GPUs, health, Docker, toolkit, Fabric Manager."""
    from fleetctl.cli import render
    from fleetctl.core.inventory import diff_snapshots
    from fleetctl.core.selector import select_hosts
    from fleetctl.services import state
    from fleetctl.services.inventory import collect_inventory

    app_ctx = get_context(ctx)
    fleet = app_ctx.load_fleet()
    hosts = select_hosts(fleet.hosts, limit, fleet_name=fleet.name)
    before = state.previous_snapshot(fleet) if diff else None
    with render.host_progress(app_ctx.err, len(hosts), "probing") as advance:
        snapshot = collect_inventory(
            fleet, hosts, forks=forks, accept_new_host_keys=accept_new_host_keys, on_host_done=advance
        )
    saved = state.save_snapshot(fleet, snapshot)
    if diff:
        render.inventory_diff(app_ctx.out, diff_snapshots(before, snapshot) if before else None, as_json)
    elif as_json:
        print(json.dumps(snapshot.to_dict(), indent=2))
    else:
        render.inventory_table(app_ctx.out, snapshot)
    app_ctx.err.print(f"[dim]snapshot saved to {saved}[/dim]")
    render.raise_if_hosts_failed(snapshot.failed, len(snapshot.hosts))
