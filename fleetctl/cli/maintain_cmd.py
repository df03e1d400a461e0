"""``fleetctl maintain``: driver, CUDA, Fabric Manager and OS updates through the rings, drains and gates."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated

import typer

from fleetctl.cli.context import AppContext, get_context
from fleetctl.cli.options import AcceptNewOpt, JsonOpt, LimitOpt

if TYPE_CHECKING:
    from fleetctl.core.fleet import Fleet, Host, Pool
    from fleetctl.services.maintain import MaintainRequest

ForceUnlockOpt = Annotated[bool, typer.Option("--force-unlock", help="Take over a stale fleet lock.")]


def register(app: typer.Typer) -> None:
    app.command("maintain")(maintain)


@dataclasses.dataclass(frozen=True)
class Flags:
    plan: bool
    yes: bool
    as_json: bool
    accept_new: bool
    force_unlock: bool


def maintain(
    ctx: typer.Context,
    run: Annotated[
        list[str] | None, typer.Option("--run", help="A command to run on each host (repeatable, in order).")
    ] = None,
    pool: Annotated[str | None, typer.Option("--pool", help="Maintain this pool's hosts.")] = None,
    limit: LimitOpt = None,
    sudo: Annotated[bool, typer.Option("--sudo", help="Run the commands (and the reboot) through sudo -n.")] = False,
    reboot: Annotated[bool, typer.Option("--reboot", help="Reboot each host after its commands.")] = False,
    expect: Annotated[
        list[str] | None,
        typer.Option(
            "--expect", help="KEY=VERSION the host must report after (driver, cuda_driver, fabric_manager, toolkit)."
        ),
    ] = None,
    reboot_timeout: Annotated[
        float | None, typer.Option("--reboot-timeout", help="Seconds a host may take to come back (default 900).")
    ] = None,
    command_timeout: Annotated[float, typer.Option("--command-timeout", help="Seconds each command may take.")] = 3600,
    bake_s: Annotated[float | None, typer.Option("--bake-s", help="Override \\[rollout] bake_s.")] = None,
    plan: Annotated[bool, typer.Option("--plan", help="Print the rings, hosts and steps; change nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the maintenance that did not finish.")] = False,
    abort: Annotated[
        bool, typer.Option("--abort", help="End the unfinished maintenance; hosts whose commands ran stay drained.")
    ] = False,
    rerun: Annotated[
        bool, typer.Option("--rerun", help="With --resume: run again a command that began but was not journaled done.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="One host at a time even below a pool's min_serving.")] = False,
    abandon: Annotated[
        bool, typer.Option("--abandon", help="Mark the unfinished run abandoned (changes no host); needs --reason.")
    ] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Why the run is abandoned (journaled).")] = None,
    as_json: JsonOpt = False,
    accept_new_host_keys: AcceptNewOpt = False,
    force_unlock: ForceUnlockOpt = False,
) -> None:
    """Run commands (and a reboot) on hosts ring by ring: drain, stop, run, reboot, verify, start, undrain."""
    from fleetctl.cli import render_maintain as ui

    app_ctx = get_context(ctx)
    fleet = app_ctx.load_fleet()
    flags = Flags(plan, yes, as_json, accept_new_host_keys, force_unlock)
    if abandon:
        _abandon(app_ctx, fleet, reason, flags)
        return
    if resume or abort:
        ui.continue_run(app_ctx, fleet, abort=abort, rerun=rerun, flags=flags)
        return
    if rerun:
        raise typer.BadParameter("--rerun goes with --resume", param_hint="--rerun")
    from fleetctl.services.maintain import MaintainRequest

    _seconds(reboot_timeout=reboot_timeout, command_timeout=command_timeout, bake_s=bake_s)
    chosen, targets = _scope(fleet, pool, limit)
    commands, expected = tuple(run or ()), tuple(expect or ())
    request = MaintainRequest(
        targets, chosen, commands, sudo, reboot, expected, reboot_timeout, bake_s, command_timeout, force
    )
    _new_run(app_ctx, fleet, request, flags)


def _abandon(app_ctx: AppContext, fleet: Fleet, reason: str | None, flags: Flags) -> None:
    """``--abandon``: the unfinished run (a maintenance or an upgrade) is journaled finished; no host is touched."""
    from fleetctl.cli.render_upgrade import abandon

    if not reason:
        raise typer.BadParameter("--abandon needs --reason TEXT (it is journaled)", param_hint="--reason")
    abandon(app_ctx, fleet, reason, as_json=flags.as_json, force_unlock=flags.force_unlock)


def _scope(fleet: Fleet, pool: str | None, limit: str | None) -> tuple[Pool | None, tuple[Host, ...]]:
    """The pool (if named) and the hosts: ``--pool``, ``--limit`` or both (their intersection), never every host
    by default."""
    from fleetctl.core.pools import pool_named
    from fleetctl.core.selector import select_hosts
    from fleetctl.errors import UsageError

    if pool is None and limit is None:
        raise UsageError("say which hosts: --pool NAME or --limit PATTERN (maintenance never defaults to every host)")
    chosen = pool_named(fleet, pool) if pool is not None else None
    hosts = tuple(h for h in fleet.hosts if chosen is None or h.name in chosen.members)
    where = fleet.name if chosen is None else f"{fleet.name}, pool {chosen.name}"
    return chosen, select_hosts(hosts, limit, fleet_name=where)


def _seconds(**values: float | None) -> None:
    """Each given number of seconds is positive (``bake_s`` may be 0: no bake)."""
    for name, value in values.items():
        if value is not None and not (value > 0 or (name == "bake_s" and value == 0)):
            flag = "--" + name.replace("_", "-")
            raise typer.BadParameter(f"must be a positive number of seconds, not {value:g}", param_hint=flag)


def _new_run(app_ctx: AppContext, fleet: Fleet, request: MaintainRequest, flags: Flags) -> None:
    from fleetctl.cli import render_maintain as ui
    from fleetctl.cli.render_upgrade import confirm_or_cancel
    from fleetctl.services.maintain import World, plan_head, start_maintenance
    from fleetctl.services.upgrade import connections
    from fleetctl.services.upgrade_prepare import locked

    head = plan_head(fleet, request)  # a bad request is refused before the lock is taken (exit 2, never 6)
    if flags.plan:  # changes nothing, so it takes no lock
        ui.show_plan(app_ctx, head, flags.as_json)
        return
    with locked(fleet, flags.force_unlock), connections(fleet, accept_new=flags.accept_new) as ssh:
        for host in request.targets:  # every route first: a bad ssh_config stops here, before any drain
            ssh.target(host)
        head = plan_head(fleet, request)  # again, under the lock: what serves now
        ui.show_plan(app_ctx, head, False, to_stderr=True)
        confirm_or_cancel(flags.yes, "Start this maintenance?")
        with ui.event_view(app_ctx, flags.as_json, head) as sink:
            try:
                start_maintenance(fleet, head, sink, world=World.over(fleet, ssh), environ=app_ctx.env)
            finally:
                ui.summary(app_ctx, fleet, flags.as_json)
