"""The upgrade commands' steps and rendering: preflight, plan, live events, summary."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fleetctl.errors import CheckFailed, HostsFailed, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from fleetctl.cli.context import AppContext
    from fleetctl.core.fleet import Fleet
    from fleetctl.core.rollout_plan import RolloutPlan
    from fleetctl.services.upgrade import UpgradeRequest


@dataclass(frozen=True)
class Preflight:
    """How ``prepare`` probes and checks the targets: over ``pool`` (the run's own SSH pool) when given."""

    skip_incompatible: bool = False
    forks: int = 32
    accept_new: bool = False
    quiet: bool = False
    pool: Any = None


def prepare(
    app_ctx: AppContext,
    fleet: Fleet,
    profile_ref: str,
    image: str | None,
    limit: str | None,
    bake_s: float | None,
    options: Preflight,
) -> tuple[UpgradeRequest, RolloutPlan]:
    """Profile, targets, preflight and plan. For a run (a pool given), the old version's figures are sampled
    first, so the preflight's own time is the start of the run's reference window."""
    from fleetctl.cli.render_serve import load_profile
    from fleetctl.core.selector import select_hosts
    from fleetctl.services.upgrade import make_plan, open_window, rollout_settings

    profile = load_profile(app_ctx, fleet, profile_ref)
    targets = select_hosts(fleet.hosts, limit, fleet_name=fleet.name)
    opening = open_window(fleet, targets) if options.pool is not None else None
    targets = preflight(app_ctx, fleet, profile, targets, options)
    plan, skipped = make_plan(fleet, targets, rollout_settings(fleet, profile))
    if skipped:
        app_ctx.err.print(f"[yellow]left out (not serving, or drained): {', '.join(skipped)}[/yellow]")
    return _request(app_ctx, fleet, profile, image, plan, bake_s, opening), plan


def _request(app_ctx, fleet, profile, image, plan, bake_s, opening=None):
    from fleetctl.core.gate import GateSettings
    from fleetctl.services.upgrade import UpgradeRequest, rollout_settings

    settings = rollout_settings(fleet, profile)
    gate = GateSettings(max_error_rate=settings.max_error_rate, max_ttft_p95_ratio=settings.max_ttft_p95_ratio)
    targets = tuple(fleet.host(h) for h in plan.hosts)
    return UpgradeRequest(
        profile=profile,
        image=image,
        targets=targets,
        environ=app_ctx.env,
        gate=gate,
        bake_s=settings.bake_s if bake_s is None else bake_s,
        opening=opening,
    )


def preflight(app_ctx, fleet, profile, targets, options: Preflight):
    """A fresh inventory and check of every target; failures stop here (exit 4) unless skipped."""
    from fleetctl.cli.check_render import check_table
    from fleetctl.core.compat.rules import check_snapshot
    from fleetctl.services.inventory import collect_inventory
    from fleetctl.services.profiles import load_matrix, profile_dirs

    skip_incompatible, quiet = options.skip_incompatible, options.quiet
    snapshot = collect_inventory(
        fleet, targets, forks=options.forks, accept_new_host_keys=options.accept_new, pool=options.pool
    )
    report = check_snapshot(snapshot, profile, load_matrix(profile_dirs(app_ctx.env, fleet.path)))
    bad = {h.name for h in report.hosts if not h.ok}
    if not bad:
        return targets
    if not quiet or not skip_incompatible:
        check_table(app_ctx.err, report)
    if not skip_incompatible:
        error = CheckFailed if report.failed else HostsFailed
        raise error(
            f"preflight: {', '.join(sorted(bad))} cannot run profile {profile.name}; nothing was changed",
            hint="fix them, or leave them out with --skip-incompatible",
        )
    app_ctx.err.print(f"[yellow]--skip-incompatible: leaving out {', '.join(sorted(bad))}[/yellow]")
    kept = tuple(h for h in targets if h.name not in bad)
    if not kept:
        raise CheckFailed("preflight: no target host can run the profile")
    return kept


def prepare_rollback(app_ctx: AppContext, fleet: Fleet):
    from fleetctl.cli.render_serve import load_profile
    from fleetctl.core.rollout_plan import RolloutPlan
    from fleetctl.services.upgrade import last_completed, make_plan, open_window, rollout_settings

    head = last_completed(fleet)
    hosts = RolloutPlan.from_dict(head["plan"]).hosts
    opening = open_window(fleet, tuple(fleet.host(h) for h in hosts if fleet.host(h) is not None))
    previous = [head["previous"][h]["record"] for h in hosts]
    targets = {(p["profile"], p["image"]) for p in previous}
    if len(targets) != 1:
        raise UsageError(
            "the hosts of the last run ran different versions before it: roll back by hand with "
            "fleetctl upgrade --profile ... --limit ..."
        )
    profile_name, image = targets.pop()
    profile = load_profile(app_ctx, fleet, profile_name)
    plan, _ = make_plan(
        fleet, tuple(fleet.host(h) for h in hosts if fleet.host(h) is not None), rollout_settings(fleet, profile)
    )
    return _request(app_ctx, fleet, profile, image, plan, None, opening), plan


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
        f"upgrade to [bold]{request.profile.name}[/bold] ({image}), {len(plan.hosts)} host(s), "
        f"{plan.batch_size} at a time, bake {request.bake_s:g}s per ring"
    )
    for i, ring in enumerate(plan.rings, 1):
        console.print(
            f"  ring {i} [bold]{ring.name}[/bold]: pre-pull, then "
            + " → ".join("+".join(batch) for batch in ring.batches)
            + ", bake, gate"
        )
    console.print("  per host: drain → replace (old container kept) → healthy → back in the router")
    console.print(
        f"  gate: error rate ≤ {request.gate.max_error_rate:.2%}, TTFT p95 ≤ "
        f"×{request.gate.max_ttft_p95_ratio:g} the hosts not yet upgraded; else roll back"
    )


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
            app_ctx.err.print(f"gate {event['ring']}: {mark}")
            for c in event["checks"]:
                app_ctx.err.print(f"   {'✓' if c['passed'] else '✗'} {c['metric']}: {c['detail']}")
            return
        printer(event)

    return show


def event_view(
    app_ctx: AppContext, as_json: bool, plan: RolloutPlan, bake_s: float, history: list[dict[str, Any]] | None = None
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


def _resumed_view(app_ctx: AppContext, as_json: bool, pending: tuple[str, list[dict[str, Any]]] | None):
    """``event_view`` for the unfinished run, its plan and bake time from the journal's head."""
    from contextlib import nullcontext

    from fleetctl.core.rollout_plan import RolloutPlan

    if pending is None:  # resume_run says there is nothing to resume
        return nullcontext(event_sink(app_ctx, as_json))
    head = pending[1][0]
    return event_view(
        app_ctx, as_json, RolloutPlan.from_dict(head["plan"]), head.get("bake_s") or 0, history=pending[1]
    )


def locked(fleet: Fleet, force_unlock: bool):
    """The fleet lock for a new run; refused while an earlier run is unfinished (resume or abort it first)."""
    from contextlib import contextmanager

    from fleetctl.services.lock import command_line, fleet_lock
    from fleetctl.services.upgrade import unfinished_run

    @contextmanager
    def held():
        with fleet_lock(fleet.state_dir, command_line(), force=force_unlock):
            pending = unfinished_run(fleet)
            if pending is not None:
                raise UsageError(
                    f"run {pending[0]} did not finish: continue it with fleetctl upgrade --resume, "
                    "or roll back what it changed with --abort"
                )
            yield

    return held()


def run(
    app_ctx: AppContext, fleet: Fleet, request: UpgradeRequest, plan: RolloutPlan, *, as_json: bool, pool=None
) -> None:
    """Start the run (the caller holds the fleet lock); the per-ring summary is shown however it ends."""
    from fleetctl.services.upgrade import start_run

    try:
        with event_view(app_ctx, as_json, plan, request.bake_s) as sink:
            start_run(fleet, request, plan, sink, pool=pool)
    finally:
        summary(app_ctx, fleet, as_json)


def continue_run(app_ctx: AppContext, fleet: Fleet, *, abort: bool, as_json: bool, force_unlock: bool) -> None:
    from fleetctl.services.lock import command_line, fleet_lock
    from fleetctl.services.upgrade import resume_run, unfinished_run

    pending = unfinished_run(fleet)
    run_id = pending[0] if pending else None
    with fleet_lock(fleet.state_dir, command_line(), force=force_unlock, run_id=run_id):
        try:
            with _resumed_view(app_ctx, as_json, pending) as sink:
                resume_run(fleet, app_ctx.env, sink, abort=abort)
        finally:
            summary(app_ctx, fleet, as_json)


def summary(app_ctx: AppContext, fleet: Fleet, as_json: bool) -> None:
    from fleetctl.core.rollout import summarize
    from fleetctl.services.journal import list_runs

    latest = next(iter(list_runs(fleet.state_dir)), None)
    if latest is None:
        return
    run_id, records = latest
    rings = summarize(records)
    if as_json:
        print(json.dumps({"event": "summary", "run_id": run_id, "rings": rings}))
        return
    from rich.table import Table

    table = Table("ring", "hosts", "duration", "gate", title=f"run {run_id}", title_justify="left")
    for r in rings:
        gate = "-" if r["gate"] is None else "; ".join(c["detail"] for c in r["gate"])
        table.add_row(
            r["ring"],
            ", ".join(r["hosts"]),
            f"{r['duration_s']}s",
            ("passed: " if r["passed"] else "failed: " if r["passed"] is False else "") + gate,
        )
    app_ctx.err.print(table)


def history_table(console: Console, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table("run", "started", "profile", "image", "hosts", "outcome")
    for r in rows:
        table.add_row(
            r["run_id"], r["started"] or "-", r["profile"] or "-", r["image"] or "-", str(r["hosts"]), r["outcome"]
        )
    console.print(table)
