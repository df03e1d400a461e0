"""The upgrade commands' rendering: the preflight's report, the plan, live events, the summary, history."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from fleetctl.cli.safe import text

if TYPE_CHECKING:
    from rich.console import Console

    from fleetctl.cli.context import AppContext
    from fleetctl.core.compat.result import CheckReport
    from fleetctl.core.fleet import Fleet
    from fleetctl.core.records import Record
    from fleetctl.core.rollout_plan import RolloutPlan
    from fleetctl.errors import FleetError
    from fleetctl.services.journal import RunJournal
    from fleetctl.services.upgrade import UpgradeRequest
    from fleetctl.services.upgrade_prepare import Prepared


def report_sink(app_ctx: AppContext, quiet: bool) -> Callable[[CheckReport, bool], None]:
    """Shows the preflight's check report when some hosts cannot run the profile (left out quietly with
    ``--json --skip-incompatible``)."""

    def show(report: CheckReport, skipping: bool) -> None:
        from fleetctl.cli.check_render import check_table

        if not quiet or not skipping:
            check_table(app_ctx.err, report)

    return show


def left_out(app_ctx: AppContext, prepared: Prepared) -> None:
    if prepared.incompatible:
        app_ctx.err.print(f"[yellow]--skip-incompatible: leaving out {text(', '.join(prepared.incompatible))}[/yellow]")
    if prepared.not_serving:
        app_ctx.err.print(
            f"[yellow]left out (not serving, or drained): {text(', '.join(prepared.not_serving))}[/yellow]"
        )
    if prepared.up_to_date:
        app_ctx.err.print(f"left out (already on the target): {text(', '.join(prepared.up_to_date))}")


CANCELLED = "cancelled: nothing changed (--yes runs without asking)"


def confirm_or_cancel(yes: bool, question: str) -> None:
    """Ask on stderr unless ``--yes``; a "no" changes nothing and exits 2."""
    import typer

    from fleetctl.errors import ExitCode

    if not yes and not typer.confirm(question, err=True):
        print(CANCELLED, file=sys.stderr)
        raise typer.Exit(int(ExitCode.USAGE))


def abandon(app_ctx: AppContext, fleet: Fleet, reason: str, *, as_json: bool, force_unlock: bool) -> None:
    """``upgrade --abandon``: the unfinished run is journaled finished (``abandoned``), no host is touched."""
    from fleetctl.services.upgrade_runs import abandon_run

    run_id, record = abandon_run(fleet, reason, force_unlock=force_unlock)
    if as_json:
        doc = {"schema": "fleetctl.abandon/v1", "run_id": run_id, "at": record.at, "outcome": "abandoned"}
        print(json.dumps({**doc, "reason": reason}))
        return
    app_ctx.err.print(
        f"run {run_id} marked abandoned; nothing was changed on the hosts (see them with fleetctl status)",
        markup=False,
        highlight=False,
    )


def journal_warnings(app_ctx: AppContext, problems: Sequence[FleetError]) -> None:
    """Journals ``history`` could read only in part: one line each, on stderr."""
    for problem in problems:
        app_ctx.err.print(f"warning: {problem.message} (shown from the lines that read)", markup=False, highlight=False)


def show_plan(
    app_ctx: AppContext, request: UpgradeRequest, plan: RolloutPlan, as_json: bool, to_stderr: bool = False
) -> None:
    image = request.image or request.profile.image
    if as_json:
        print(
            json.dumps(
                {
                    "schema": "fleetctl.plan/v1",
                    "profile": request.profile.name,
                    "image": image,
                    "bake_s": request.bake_s,
                    "gate": request.gate.__dict__,
                    **plan.to_dict(),
                    "steps_per_host": ["drain", "replace", "healthy", "undrain"],
                },
                indent=2,
            )
        )
        return
    console = app_ctx.err if to_stderr else app_ctx.out
    console.print(
        f"upgrade to [bold]{text(request.profile.name)}[/bold] ({text(image)}), {len(plan.hosts)} host(s), "
        f"{plan.batch_size} at a time, bake {request.bake_s:g}s per ring"
    )
    for i, ring in enumerate(plan.rings, 1):
        console.print(
            f"  ring {i} [bold]{text(ring.name)}[/bold]: pre-pull, then "
            + text(" → ".join("+".join(batch) for batch in ring.batches))
            + ", bake, gate"
        )
    console.print("  per host: drain → replace (old container kept) → healthy → back in the router")
    console.print(
        f"  gate: error rate ≤ {request.gate.max_error_rate:.2%}, TTFT p95 ≤ "
        f"×{request.gate.max_ttft_p95_ratio:g} the hosts not yet upgraded; else roll back"
    )
    console.print(
        f"  judged every {request.gate.interval_s:g}s on ≥ {request.gate.min_requests} requests "
        f"(fleetctl sends its own, ≤ {request.gate.smoke_rps:g}/s a host, when clients send fewer); "
        f"{request.gate.failure_limit + 1} failed measurement(s) or an exited host roll back at once"
    )


def synthetic_words(synthetic: dict[str, Any]) -> str:
    """How many of a ring's requests fleetctl sent itself (journal and event field ``synthetic``)."""
    ring, baseline = int(synthetic.get("ring") or 0), int(synthetic.get("baseline") or 0)
    return f"{ring} synthetic request(s) to the ring, {baseline} to the baseline hosts"


def event_sink(app_ctx: AppContext, as_json: bool) -> Callable[[dict[str, Any]], None]:
    if as_json:

        def emit(event: dict[str, Any]) -> None:
            sys.stdout.write(json.dumps(event) + "\n")
            sys.stdout.flush()

        return emit
    from fleetctl.cli.render_serve import event_printer

    printer = event_printer(app_ctx.err)

    def show(event: dict[str, Any]) -> None:
        if event.get("event") == "done":  # the next step's line says the last one is done
            return
        if event.get("event") == "gate":
            mark = "[green]passed[/green]" if event["passed"] else "[red]FAILED[/red]"
            app_ctx.err.print(f"gate {text(event['ring'])}: {mark}")
            for c in event["checks"]:
                app_ctx.err.print(f"   {'✓' if c['passed'] else '✗'} {text(c['metric'])}: {text(c['detail'])}")
            if event.get("synthetic"):
                app_ctx.err.print(f"   {synthetic_words(event['synthetic'])}")
            return
        printer(event)

    return show


def event_view(
    app_ctx: AppContext, as_json: bool, plan: RolloutPlan, bake_s: float, history: Sequence[Record] | None = None
):
    """The run's event sink, as a context manager: the live view on stderr when stderr is a terminal (and, with
    ``--json``, the JSON lines on stdout as well); otherwise the JSON lines or one line per event."""
    from contextlib import nullcontext

    if not app_ctx.err.is_terminal:
        return nullcontext(event_sink(app_ctx, as_json))
    from fleetctl.cli.live_upgrade import live_sink

    return live_sink(
        app_ctx.err, plan, bake_s, history=history or (), also=event_sink(app_ctx, True) if as_json else None
    )


def _resumed_view(app_ctx: AppContext, as_json: bool, pending: RunJournal | None):
    """``event_view`` for the unfinished run, its plan and bake time from the journal's head."""
    from contextlib import nullcontext

    from fleetctl.core.rollout_decisions import head

    started = None if pending is None else head(pending.records)
    if pending is None or started is None:  # resume_run says there is nothing to resume
        return nullcontext(event_sink(app_ctx, as_json))
    return event_view(app_ctx, as_json, started.plan, started.bake_s or 0, history=pending.records)


def run(
    app_ctx: AppContext, fleet: Fleet, request: UpgradeRequest, plan: RolloutPlan, *, as_json: bool, pool=None
) -> None:
    """Start the run (the caller holds the fleet lock); the per-ring summary is shown however it ends."""
    from fleetctl.services.upgrade import start_run

    said: list[dict[str, Any]] = []
    try:
        with event_view(app_ctx, as_json, plan, request.bake_s) as sink:
            start_run(fleet, request, plan, _pool_notes(sink, said, as_json), pool=pool)
    finally:
        summary(app_ctx, fleet, as_json)
        pool_lines(app_ctx, said)


def continue_run(app_ctx: AppContext, fleet: Fleet, *, abort: bool, as_json: bool, force_unlock: bool) -> None:
    from fleetctl.services.upgrade import resume_run
    from fleetctl.services.upgrade_prepare import continuing
    from fleetctl.services.upgrade_runs import require_kind

    with continuing(fleet, force_unlock, abort=abort) as pending:
        if pending is not None:  # a maintenance run is maintain's to continue: say so before anything else
            require_kind(pending, "upgrade")
        said: list[dict[str, Any]] = []
        try:
            with _resumed_view(app_ctx, as_json, pending) as sink:
                resume_run(fleet, app_ctx.env, _pool_notes(sink, said, as_json), abort=abort)
        finally:
            summary(app_ctx, fleet, as_json)
            pool_lines(app_ctx, said)


POOL_NOTES = ("fleet_file", "run_pool")


def _pool_notes(
    sink: Callable[[dict[str, Any]], None], said: list[dict[str, Any]], as_json: bool
) -> Callable[[dict[str, Any]], None]:
    """The run's pool and its fleet-file write are said after the live view (as they come with ``--json``)."""

    def wrapped(event: dict[str, Any]) -> None:
        if not as_json and event.get("event") in POOL_NOTES:
            said.append(event)
            return
        sink(event)

    return wrapped


def pool_lines(app_ctx: AppContext, said: list[dict[str, Any]]) -> None:

    for event in said:
        if event["event"] == "run_pool":
            app_ctx.err.print(f"run {text(event['run_id'])}: pool {text(event['pool'])}")
        elif event["written"]:
            app_ctx.err.print(text(event["detail"]))
        else:
            app_ctx.err.print(f"[yellow]fleet file not updated: {text(event['detail'])}[/yellow]")


def summary(app_ctx: AppContext, fleet: Fleet, as_json: bool) -> None:
    from fleetctl.core.rollout import summarize
    from fleetctl.services.journal import list_runs

    latest = next(iter(list_runs(fleet.state_dir)), None)
    if latest is None:
        return
    rings = summarize(latest.records)
    if as_json:
        print(json.dumps({"event": "summary", "run_id": latest.run_id, "rings": rings}))
        return
    from rich.table import Table

    table = Table("ring", "hosts", "duration", "gate", title=f"run {text(latest.run_id)}", title_justify="left")
    for r in rings:
        gate = "-" if r["gate"] is None else "; ".join(c["detail"] for c in r["gate"])
        if r.get("synthetic"):
            gate += f"; {synthetic_words(r['synthetic'])}"
        table.add_row(
            text(r["ring"]),
            text(", ".join(r["hosts"])),
            f"{r['duration_s']}s",
            ("passed: " if r["passed"] else "failed: " if r["passed"] is False else "") + text(gate),
        )
    app_ctx.err.print(table)


def history_table(console: Console, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    pooled = any(r.get("pool") for r in rows)
    kinds = any(r.get("kind") for r in rows)  # maintenance runs among them: say each run's kind and what it did
    columns = ("run", "started", *(["kind"] if kinds else []), *(["pool"] if pooled else []), "profile", "image")
    table = Table(*columns, "hosts", "outcome")
    for r in rows:
        kind = [r.get("kind") or "upgrade"] if kinds else []
        pool = [r.get("pool") or "-"] if pooled else []
        what = r.get("maintenance") if r.get("kind") == "maintain" else r["profile"]
        table.add_row(
            text(r["run_id"]),
            text(r["started"] or "-"),
            *(text(k) for k in kind),
            *(text(p) for p in pool),
            text(what or "-"),
            text(r["image"] or "-"),
            str(r["hosts"]),
            text(r["outcome"]),
        )
    console.print(table)
