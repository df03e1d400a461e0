"""``fleetctl upgrade``, ``rollback`` and ``history``."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated

import typer

from fleetctl.cli.context import get_context
from fleetctl.cli.options import AcceptNewOpt, ForksOpt, JsonOpt, LimitOpt

ForceUnlockOpt = Annotated[bool, typer.Option("--force-unlock", help="Take over a stale fleet lock.")]


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
    bake_s: Annotated[float | None, typer.Option("--bake-s", help="Override [rollout] bake_s.")] = None,
    as_json: JsonOpt = False,
    forks: ForksOpt = 32,
    accept_new_host_keys: AcceptNewOpt = False,
    force_unlock: ForceUnlockOpt = False,
) -> None:
    """Move vLLM to a new profile or image ring by ring, judge each ring on vLLM's metrics, roll back by itself."""
    from fleetctl.cli import render_upgrade as ui

    app_ctx = get_context(ctx)
    fleet = app_ctx.load_fleet()
    if resume or abort:
        ui.continue_run(app_ctx, fleet, abort=abort, as_json=as_json, force_unlock=force_unlock)
        return
    if profile is None:
        raise typer.BadParameter("--profile is required (or --resume / --abort)", param_hint="--profile")
    from fleetctl.services.upgrade import connections

    options = ui.Preflight(skip_incompatible, forks, accept_new_host_keys, quiet=as_json)
    if plan:  # changes nothing, so it takes no lock
        ui.show_plan(app_ctx, *ui.prepare(app_ctx, fleet, profile, image, limit, bake_s, options), as_json)
        return
    with ui.locked(fleet, force_unlock), connections(fleet, accept_new=accept_new_host_keys) as pool:
        request, run_plan = ui.prepare(
            app_ctx, fleet, profile, image, limit, bake_s, dataclasses.replace(options, pool=pool)
        )
        ui.show_plan(app_ctx, request, run_plan, False, to_stderr=True)
        if not yes and not typer.confirm("Start this rollout?", err=True):
            raise typer.Exit(1)
        ui.run(app_ctx, fleet, request, run_plan, as_json=as_json, pool=pool)


def rollback(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("--yes", "-y")] = False,
    as_json: JsonOpt = False,
    force_unlock: ForceUnlockOpt = False,
) -> None:
    """Revert the last completed upgrade: a rollout back to the profile and image the hosts ran before it."""
    from fleetctl.cli import render_upgrade as ui

    app_ctx = get_context(ctx)
    fleet = app_ctx.load_fleet()
    with ui.locked(fleet, force_unlock):
        request, run_plan = ui.prepare_rollback(app_ctx, fleet)
        ui.show_plan(app_ctx, request, run_plan, False, to_stderr=True)
        if not yes and not typer.confirm("Roll back?", err=True):
            raise typer.Exit(1)
        ui.run(app_ctx, fleet, request, run_plan, as_json=as_json)


def history(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Upgrade runs of this fleet, newest first, with their outcome."""
    from fleetctl.cli import render_upgrade as ui
    from fleetctl.services.upgrade import history as runs

    app_ctx = get_context(ctx)
    rows = runs(app_ctx.load_fleet())
    if as_json:
        print(json.dumps({"schema": "fleetctl.history/v1", "runs": rows}, indent=2))
    else:
        ui.history_table(app_ctx.out, rows)
