"""``fleetctl deploy``, ``drain``, ``undrain`` and ``status``."""

from __future__ import annotations

import getpass
import json
from typing import Annotated

import typer

from fleetctl.cli.context import get_context
from fleetctl.cli.options import ForksOpt, JsonOpt, LimitOpt, seconds

HostsArg = Annotated[list[str], typer.Argument(metavar="HOST...", help="Host names from the fleet file.")]
ForceUnlockOpt = Annotated[bool, typer.Option("--force-unlock", help="Take over a stale fleet lock.")]


def register(app: typer.Typer) -> None:
    app.command("deploy")(deploy)
    app.command("drain")(drain)
    app.command("undrain")(undrain)
    app.command("status")(status)


def deploy(
    ctx: typer.Context,
    profile: Annotated[str | None, typer.Option("--profile", "-p", help="Profile name or path.")] = None,
    limit: LimitOpt = None,
    forks: ForksOpt = 32,
    force_unlock: ForceUnlockOpt = False,
    pool: Annotated[str | None, typer.Option("--pool", help="Deploy the pool's declared profile.")] = None,
) -> None:
    """Bring a profile up on hosts that run nothing yet: pull, start, wait healthy, add to the router. On a fleet
    with pools: --pool NAME, the pool's declared profile on its hosts that run nothing yet."""
    from fleetctl.cli import render_serve
    from fleetctl.services import serving
    from fleetctl.services.lock import command_line, fleet_lock
    from fleetctl.services.pools import deploy_scope

    app_ctx = get_context(ctx)
    fleet = app_ctx.load_fleet()
    with fleet_lock(fleet.state_dir, command_line(), force=force_unlock):
        where = deploy_scope(app_ctx.env, fleet, pool, profile, limit)
        render_serve.left_alone(app_ctx.err, where.already)
        outcomes = serving.deploy(
            fleet,
            where.profile,
            where.hosts,
            environ=app_ctx.env,
            forks=forks,
            on_event=render_serve.event_printer(app_ctx.err),
        )
    render_serve.outcomes(app_ctx.out, "deploy", outcomes)
    serving.raise_if_failed(outcomes, "deploy")


def drain(
    ctx: typer.Context,
    hosts: HostsArg,
    timeout: Annotated[
        float, typer.Option("--timeout", callback=seconds, help="Seconds to wait for in-flight requests.")
    ] = 300,
    stop: Annotated[bool, typer.Option("--stop", help="Stop the container once drained.")] = False,
    reason: Annotated[str, typer.Option("--reason", help="Why; kept with the drain record.")] = "",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would happen; change nothing.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Drain even below min_serving (the pool's, or \\[router]'s).")
    ] = False,
    force_unlock: ForceUnlockOpt = False,
) -> None:
    """Take hosts out of service without failing a request: out of the router, then wait until idle."""
    from fleetctl.cli import render_serve
    from fleetctl.services import serving
    from fleetctl.services.lock import command_line, fleet_lock

    app_ctx = get_context(ctx)
    fleet = app_ctx.load_fleet()
    chosen = render_serve.named_hosts(fleet, hosts)
    if dry_run:
        render_serve.drain_plan(app_ctx.out, fleet, chosen, timeout, stop, force)
        return
    with fleet_lock(fleet.state_dir, command_line(), force=force_unlock):
        outcomes = serving.drain(
            fleet,
            chosen,
            reason=reason or "drained by hand",
            by=getpass.getuser(),
            timeout_s=timeout,
            stop=stop,
            force=force,
            on_event=render_serve.event_printer(app_ctx.err),
        )
    render_serve.outcomes(app_ctx.out, "drain", outcomes)
    serving.raise_if_failed(outcomes, "drain")


def undrain(
    ctx: typer.Context,
    hosts: HostsArg,
    timeout: Annotated[float, typer.Option("--timeout", callback=seconds, help="Seconds to wait for health.")] = 900,
    force_unlock: ForceUnlockOpt = False,
) -> None:
    """Put drained hosts back: start the container if stopped, wait healthy, add to the router."""
    from fleetctl.cli import render_serve
    from fleetctl.services import serving
    from fleetctl.services.lock import command_line, fleet_lock

    app_ctx = get_context(ctx)
    fleet = app_ctx.load_fleet()
    chosen = render_serve.named_hosts(fleet, hosts)
    with fleet_lock(fleet.state_dir, command_line(), force=force_unlock):
        outcomes = serving.undrain(fleet, chosen, timeout_s=timeout, on_event=render_serve.event_printer(app_ctx.err))
    render_serve.outcomes(app_ctx.out, "undrain", outcomes)
    serving.raise_if_failed(outcomes, "undrain")


def status(ctx: typer.Context, limit: LimitOpt = None, as_json: JsonOpt = False, forks: ForksOpt = 32) -> None:
    """Every host: ring, drained, image and profile, health, in the router, requests, KV cache; and the router.

    Exit 3 when the fleet is not as intended: a host that should serve is down, unreachable, unhealthy or out of
    the router, a drained host is still in it, or the router does not answer."""
    from fleetctl.cli import render_serve
    from fleetctl.core.selector import select_hosts
    from fleetctl.services.status import fleet_status

    app_ctx = get_context(ctx)
    fleet = app_ctx.load_fleet()
    doc = fleet_status(fleet, select_hosts(fleet.hosts, limit, fleet_name=fleet.name), forks=forks)
    if as_json:
        print(json.dumps(doc, indent=2))
    else:
        render_serve.status_table(app_ctx.out, doc)
    render_serve.raise_if_not_as_intended(doc)
