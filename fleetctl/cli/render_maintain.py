"""``fleetctl maintain``'s rendering: the plan, the run's events (the upgrade's sinks and live view), the summary."""

from __future__ import annotations

import json
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from fleetctl.cli.safe import text

if TYPE_CHECKING:
    from fleetctl.cli.context import AppContext
    from fleetctl.cli.maintain_cmd import Flags
    from fleetctl.core.fleet import Fleet
    from fleetctl.core.records import MaintainStarted


def steps_words(head: MaintainStarted) -> list[str]:
    """What happens on each host, in order, as the plan says it."""
    words = ["drain", "stop the container"]
    words += [f"run {c!r}" + (" (sudo)" if head.sudo else "") for c in head.commands]
    if head.reboot:
        words.append(f"reboot ({head.reboot_command!r}; back with a new boot id within {head.reboot_timeout_s:g}s)")
    verify = "fresh inventory"
    if head.expect:
        verify += ", expect " + ", ".join(head.expect)
    words += [verify + ", check against the pool's profile", "start the container", "healthy", "back in the router"]
    return words


def show_plan(app_ctx: AppContext, head: MaintainStarted, as_json: bool, to_stderr: bool = False) -> None:
    if as_json:
        doc = {"schema": "fleetctl.maintain-plan/v1", **head.fields(), "steps_per_host": steps_words(head)}
        print(json.dumps(doc, indent=2))
        return
    console = app_ctx.err if to_stderr else app_ctx.out
    pool = f" in pool {text(head.pool)}" if head.pool else ""
    console.print(
        f"maintain {len(head.plan.hosts)} host(s){pool}, up to {head.plan.batch_size} at a time, "
        f"bake {head.bake_s:g}s per ring where hosts serve"
    )
    for i, ring in enumerate(head.plan.rings, 1):
        console.print(
            f"  ring {i} [bold]{text(ring.name)}[/bold]: " + text(" → ".join("+".join(b) for b in ring.batches))
        )
    console.print("  per host: " + text(" → ".join(steps_words(head))))
    drained = [h for h, v in head.hosts.items() if v.get("drained")]
    if drained:
        console.print(f"  already drained, kept drained after: {text(', '.join(drained))}")
    console.print(
        "  a failed step or gate halts the run: the host stays drained for a person (exit 7); no driver is undone"
    )


def event_view(app_ctx: AppContext, as_json: bool, head: MaintainStarted, history: Any = ()):
    """The upgrade's event sink: the live view on a terminal, else JSON lines or one line per event."""
    from fleetctl.cli.render_upgrade import event_sink

    if not app_ctx.err.is_terminal:
        return nullcontext(event_sink(app_ctx, as_json))
    from fleetctl.cli.live_upgrade import live_sink

    also = event_sink(app_ctx, True) if as_json else None
    return live_sink(app_ctx.err, head.plan, head.bake_s, history=history, also=also, title="maintain")


def continue_run(app_ctx: AppContext, fleet: Fleet, *, abort: bool, rerun: bool, flags: Flags) -> None:
    from fleetctl.core.records import MaintainStarted
    from fleetctl.services.maintain import resume_maintenance
    from fleetctl.services.upgrade_prepare import continuing
    from fleetctl.services.upgrade_runs import require_kind

    with continuing(fleet, flags.force_unlock, abort=abort) as pending:
        if pending is not None:  # an upgrade run is upgrade's to continue: say so before anything else
            require_kind(pending, "maintain")
        head = pending.records[0].body if pending is not None and pending.records else None
        view = (
            event_view(app_ctx, flags.as_json, head, pending.records if pending else ())
            if isinstance(head, MaintainStarted)
            else nullcontext(_plain(app_ctx, flags.as_json))
        )
        with view as sink:
            try:
                resume_maintenance(fleet, sink, environ=app_ctx.env, abort=abort, rerun=rerun)
            finally:
                if pending is not None:
                    summary(app_ctx, fleet, flags.as_json)


def _plain(app_ctx: AppContext, as_json: bool):
    from fleetctl.cli.render_upgrade import event_sink

    return event_sink(app_ctx, as_json)


def summary(app_ctx: AppContext, fleet: Fleet, as_json: bool) -> None:
    """Per host of the newest run: how far it got (``--json``: one ``summary`` line)."""
    from fleetctl.core.maintain import progress
    from fleetctl.services.journal import list_runs

    latest = next(iter(list_runs(fleet.state_dir)), None)
    if latest is None or not latest.records:
        return
    rows = progress(latest.records)
    if rows is None:
        return
    if as_json:
        print(json.dumps({"event": "summary", "run_id": latest.run_id, "hosts": rows}))
        return
    from rich.table import Table

    table = Table(
        "host", "ring", "last step", "state", title=f"maintenance {text(latest.run_id)}", title_justify="left"
    )
    for row in rows:
        table.add_row(text(row["host"]), text(row["ring"]), text(row["step"] or "-"), text(row["state"]))
    app_ctx.err.print(table)
