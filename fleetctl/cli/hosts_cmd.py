"""``fleetctl hosts``: the hosts the fleet file declares, with rings and labels; nothing is contacted."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import typer

from fleetctl.cli.context import get_context
from fleetctl.cli.options import JsonOpt, LimitOpt

if TYPE_CHECKING:
    from rich.console import Console

    from fleetctl.core.fleet import Host

SCHEMA = "fleetctl.hosts/v1"


def register(app: typer.Typer) -> None:
    app.command("hosts")(hosts)


def hosts(ctx: typer.Context, limit: LimitOpt = None, as_json: JsonOpt = False) -> None:
    """List the fleet's hosts (name, address, port, ring, labels) without connecting to them."""
    from fleetctl.core.selector import select_hosts

    app_ctx = get_context(ctx)
    fleet = app_ctx.load_fleet()
    chosen = select_hosts(fleet.hosts, limit, fleet_name=fleet.name)
    if as_json:
        print(json.dumps(hosts_document(fleet.name, chosen), indent=2))
    else:
        hosts_table(app_ctx.out, fleet.name, chosen)


def host_dict(host: Host) -> dict[str, Any]:
    return {
        "name": host.name,
        "address": host.address,
        "port": host.port,
        "ring": host.ring,
        "labels": dict(host.labels),
    }


def hosts_document(fleet_name: str, chosen: Sequence[Host]) -> dict[str, Any]:
    return {"schema": SCHEMA, "fleet": fleet_name, "hosts": [host_dict(h) for h in chosen]}


def hosts_table(console: Console, fleet_name: str, chosen: Sequence[Host]) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"fleet {escape(fleet_name)} · {len(chosen)} host(s)", title_justify="left")
    for column in ("host", "address", "port", "ring", "labels"):
        table.add_column(column, overflow="fold")
    for h in chosen:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(h.labels.items()))
        table.add_row(*(escape(str(x)) for x in (h.name, h.address, h.port or "-", h.ring or "-", labels or "-")))
    console.print(table)
