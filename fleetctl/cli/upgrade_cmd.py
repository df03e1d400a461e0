"""``fleetctl upgrade``, ``rollback`` and ``history``."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Annotated

import typer

from fleetctl.cli.context import AppContext, get_context
from fleetctl.cli.options import AcceptNewOpt, ForksOpt, JsonOpt, LimitOpt

if TYPE_CHECKING:
    from fleetctl.core.fleet import Fleet
    from fleetctl.services.upgrade_prepare import Scope

ForceUnlockOpt = Annotated[bool, typer.Option("--force-unlock", help="Take over a stale fleet lock.")]
PoolOpt = Annotated[str | None, typer.Option("--pool", help="The pool to act on (required on a fleet with pools).")]


def register(app: typer.Typer) -> None:
    app.command("upgrade")(upgrade)
    app.command("rollback")(rollback)
    app.command("history")(history)


def upgrade(
    ctx: typer.Context,
    profile: Annotated[str | None, typer.Option("--profile", "-p", help="Target profile (name or path).")] = None,
    image: Annotated[str | None, typer.Option("--image", help="Image to run instead of the profile's.")] = None,
    limit: LimitOpt = None,
    plan: Annotated[bool, typer.Option("--plan", help="Print the rings, hosts and steps; change nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run that did not finish.")] = False,
    abort: Annotated[bool, typer.Option("--abort", help="Roll back what the unfinished run changed.")] = False,
    skip_incompatible: Annotated[
        bool, typer.Option("--skip-incompatible", help="Leave out hosts that fail the check.")
    ] = False,
    bake_s: Annotated[float | None, typer.Option("--bake-s", help="Override \\[rollout] bake_s.")] = None,
    as_json: JsonOpt = False,
    forks: ForksOpt = 32,
    accept_new_host_keys: AcceptNewOpt = False,
    force_unlock: ForceUnlockOpt = False,
    abandon: Annotated[
        bool, typer.Option("--abandon", help="Mark the unfinished run abandoned (changes no host); needs --reason.")
    ] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Why the run is abandoned (journaled).")] = None,
    pool: PoolOpt = None,
    rename: Annotated[
        bool, typer.Option("--rename", help="Allow a profile that serves another model name than the pool's.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Upgrade one host at a time even below min_serving.")] = False,
) -> None:
    """Move vLLM to a new profile or image ring by ring, judge each ring on vLLM's metrics, roll back by itself."""
    from fleetctl.cli import render_upgrade as ui

    app_ctx = get_context(ctx)
    fleet = app_ctx.load_fleet()
    if abandon:
        if not reason:
            raise typer.BadParameter("--abandon needs --reason TEXT (it is journaled)", param_hint="--reason")
        ui.abandon(app_ctx, fleet, reason, as_json=as_json, force_unlock=force_unlock)
        return
    if resume or abort:
        ui.continue_run(app_ctx, fleet, abort=abort, as_json=as_json, force_unlock=force_unlock)
        return
    if profile is None and pool is None:
        raise typer.BadParameter("--profile is required (or --resume / --abort / --abandon)", param_hint="--profile")
    from fleetctl.services.upgrade_prepare import scope

    where = scope(fleet, pool, profile, limit, rename, force)
    args = NewRun(where, image, plan, yes, skip_incompatible, bake_s, as_json, forks, accept_new_host_keys)
    _new_run(app_ctx, fleet, args, force_unlock)


@dataclasses.dataclass(frozen=True)
class NewRun:
    where: Scope
    image: str | None
    plan_only: bool
    yes: bool
    skip_incompatible: bool
    bake_s: float | None
    as_json: bool
    forks: int
    accept_new: bool


def _new_run(app_ctx: AppContext, fleet: Fleet, args: NewRun, force_unlock: bool) -> None:
    from fleetctl.cli import render_upgrade as ui
    from fleetctl.services import upgrade_prepare as prep
    from fleetctl.services.upgrade import connections

    on_report = ui.report_sink(app_ctx, args.as_json)

    def prepare(options: prep.Preflight) -> prep.Prepared:
        found = prep.prepare(app_ctx.env, fleet, args.where, options, on_report, image=args.image, bake_s=args.bake_s)
        ui.left_out(app_ctx, found)
        return found

    options = prep.Preflight(args.skip_incompatible, args.forks, args.accept_new)
    if args.plan_only:  # changes nothing, so it takes no lock
        found = prepare(options)
        ui.show_plan(app_ctx, found.request, found.plan, args.as_json)
        return
    with prep.locked(fleet, force_unlock), connections(fleet, accept_new=args.accept_new) as pool:
        found = prepare(dataclasses.replace(options, pool=pool))
        ui.show_plan(app_ctx, found.request, found.plan, False, to_stderr=True)
        ui.confirm_or_cancel(args.yes, "Start this rollout?")
        ui.run(app_ctx, fleet, found.request, found.plan, as_json=args.as_json, pool=pool)


def rollback(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("--yes", "-y")] = False,
    as_json: JsonOpt = False,
    force_unlock: ForceUnlockOpt = False,
    pool: PoolOpt = None,
) -> None:
    """Revert the last completed upgrade: a rollout back to the profile and image the hosts ran before it."""
    from fleetctl.cli import render_upgrade as ui
    from fleetctl.services import upgrade_prepare as prep

    app_ctx = get_context(ctx)
    fleet = app_ctx.load_fleet()
    with prep.locked(fleet, force_unlock):
        found = prep.prepare_rollback(app_ctx.env, fleet, pool)
        ui.show_plan(app_ctx, found.request, found.plan, False, to_stderr=True)
        ui.confirm_or_cancel(yes, "Roll back?")
        ui.run(app_ctx, fleet, found.request, found.plan, as_json=as_json)


def history(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Upgrade runs of this fleet, newest first, with their outcome."""
    from fleetctl.cli import render_upgrade as ui
    from fleetctl.services.upgrade_runs import history as runs
    from fleetctl.services.upgrade_runs import journal_problems

    app_ctx = get_context(ctx)
    fleet = app_ctx.load_fleet()
    rows = runs(fleet)
    ui.journal_warnings(app_ctx, journal_problems(fleet))
    if as_json:
        print(json.dumps({"schema": "fleetctl.history/v1", "runs": rows}, indent=2))
    else:
        ui.history_table(app_ctx.out, rows)
