"""``fleetctl inventory``: probe every host over SSH and show what it runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Protocol

import typer

from fleetctl.cli.context import get_context
from fleetctl.cli.options import AcceptNewOpt, ForksOpt, JsonOpt, LimitOpt
from fleetctl.cli.safe import text, visible

if TYPE_CHECKING:
    from fleetctl.core.inventory import Snapshot


class Printer(Protocol):
    """What a note needs of a console (rich's ``Console`` is one)."""

    def print(self, *objects: Any, **kwargs: Any) -> None: ...


OLD_FACTS_SHOWN = 5


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
    """Read every host through NVML over SSH: driver, CUDA, GPUs, health, Docker, toolkit, Fabric Manager.

    The saved snapshot keeps the last facts of hosts this run did not reach (each with its probed_at)."""
    from fleetctl.cli import render
    from fleetctl.core.inventory import diff_since
    from fleetctl.core.selector import select_hosts
    from fleetctl.services import snapshot as snapshot_file
    from fleetctl.services.inventory import collect_inventory, open_pool

    app_ctx = get_context(ctx)
    fleet = app_ctx.load_fleet()
    hosts = select_hosts(fleet.hosts, limit, fleet_name=fleet.name)
    before = snapshot_file.previous_snapshot(fleet)  # read first: a bad file stops the command before any SSH
    with open_pool(fleet, hosts, accept_new_host_keys=accept_new_host_keys) as pool:
        with render.host_progress(app_ctx.err, len(hosts), "probing") as advance:
            snapshot = collect_inventory(
                fleet, hosts, forks=forks, on_host_done=advance, pool=pool, keep_connections=False
            )
    saved, _ = snapshot_file.save_merged(fleet, before, snapshot)
    if diff:
        changes = diff_since(before, snapshot, {h.name for h in fleet.hosts}) if before else None
        render.inventory_diff(app_ctx.out, changes, as_json)
    elif as_json:
        print(snapshot_file.snapshot_text(snapshot), end="")  # one host per line, as saved
    else:
        render.inventory_table(app_ctx.out, snapshot)
    app_ctx.err.print(f"[dim]snapshot saved to {text(saved)}[/dim]")
    render.raise_if_hosts_failed(snapshot.failed, len(snapshot.hosts))


def note_old_facts(console: Printer, snapshot: Snapshot) -> None:
    """One note per host whose facts predate the snapshot's latest run (a few, then a count): not a failure."""
    from fleetctl.core.inventory import describe_age, old_facts

    old = old_facts(snapshot)
    for entry in old[:OLD_FACTS_SHOWN]:
        console.print(
            f"note: {visible(entry.host)}: facts from {visible(entry.probed_at)}, {describe_age(entry.age_s)} before the snapshot's "
            "latest inventory (not reached since)",
            markup=False,
            highlight=False,
            emoji=False,
        )
    if len(old) > OLD_FACTS_SHOWN:
        console.print(f"note: and {len(old) - OLD_FACTS_SHOWN} more hosts with older facts", markup=False)
