"""Before a run: the profile, the targets, the preflight (a fresh inventory and check), the plan, and the fleet
lock that refuses a new run while one is unfinished. The decisions are in ``fleetctl.core.rollout_decisions``;
the CLI renders what comes back (the check report through ``on_report``, the hosts left out)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fleetctl.core import rollout_decisions as decisions
from fleetctl.core.compat.profile import Profile
from fleetctl.core.compat.result import CheckReport
from fleetctl.core.fleet import Fleet, Host, Pool
from fleetctl.core.gate import gate_settings
from fleetctl.core.records import PoolRun
from fleetctl.core.rollout_plan import RolloutPlan
from fleetctl.errors import UsageError
from fleetctl.services.journal import RunJournal
from fleetctl.services.serving import serve_settings
from fleetctl.services.upgrade import Opening, UpgradeRequest, make_plan, open_window, rollout_settings

ReportSink = Callable[[CheckReport, bool], None]  # (the check report, whether the bad hosts are left out)


@dataclass(frozen=True)
class Preflight:
    """How ``prepare`` probes and checks the targets: over ``pool`` (the run's own SSH pool) when given."""

    skip_incompatible: bool = False
    forks: int = 32
    accept_new: bool = False
    pool: Any = None


@dataclass(frozen=True)
class Prepared:
    request: UpgradeRequest
    plan: RolloutPlan
    incompatible: tuple[str, ...] = ()  # left out by --skip-incompatible
    not_serving: tuple[str, ...] = ()  # left out: not serving, or drained
    up_to_date: tuple[str, ...] = ()  # left out: a pool's hosts that already run the target


@dataclass(frozen=True)
class Scope:
    """What a new run acts on: the pool (None on a fleet without pools), its hosts, the profile to roll to, and
    whether the run writes that profile into the pool's table when it completes (``--pool --profile``)."""

    pool: Pool | None
    targets: tuple[Host, ...]
    profile_ref: str
    write_profile: bool = False
    rename: bool = False
    force: bool = False  # batches may go below min_serving (one host at a time)


def scope(
    fleet: Fleet, pool_name: str | None, profile: str | None, limit: str | None, rename: bool, force: bool = False
) -> Scope:
    """``--pool``, ``--profile`` and ``--limit`` as a Scope; UsageError on a fleet with pools without ``--pool``."""
    from fleetctl.core.pools import chosen_pool
    from fleetctl.core.selector import select_hosts

    pool = chosen_pool(fleet, pool_name, "upgrade")
    if pool is None:
        if profile is None:
            raise UsageError("--profile is required (or --resume / --abort / --abandon)")
        return Scope(None, select_hosts(fleet.hosts, limit, fleet_name=fleet.name), profile, rename=rename, force=force)
    members = tuple(h for h in fleet.hosts if h.name in pool.members)
    targets = select_hosts(members, limit, fleet_name=f"{fleet.name}, pool {pool.name}")
    ref = profile or pool.profile
    return Scope(pool, targets, ref, write_profile=ref != pool.profile, rename=rename, force=force)


def refuse_rename(fleet: Fleet, where: Scope, profile: Profile) -> None:
    """UsageError when the profile serves another model name than the pool's hosts (the implicit pool of every
    host on a fleet without pools) serve now, unless ``--rename``."""
    from fleetctl.core.pools import pools_of, rename_refusal, served_names
    from fleetctl.services.statefile import load_state

    if profile.serve is None:
        return
    pool = where.pool or pools_of(fleet)[0]
    now = served_names(pool, load_state(fleet))
    refusal = rename_refusal(pool, now, profile.serve.served_name, rename=where.rename)
    if refusal is not None:
        raise UsageError(refusal)


def _pool_targets(
    fleet: Fleet, where: Scope, profile: Profile, image: str | None
) -> tuple[tuple[Host, ...], tuple[str, ...]]:
    """A pool's targets that do not run the target yet, and those that do (left out)."""
    from fleetctl.services.statefile import load_state

    state = load_state(fleet)
    wanted = image or profile.image

    def current(h: Host) -> bool:
        record = state.serving.get(h.name)
        return record is not None and record.profile == profile.name and record.image == wanted

    return tuple(h for h in where.targets if not current(h)), tuple(h.name for h in where.targets if current(h))


def load_profile(environ: Mapping[str, str], fleet: Fleet, ref: str) -> Profile:
    from fleetctl.services.profiles import load_matrix, profile_dirs
    from fleetctl.services.profiles import load_profile as load

    dirs = profile_dirs(environ, fleet.path)
    return load(ref, dirs, load_matrix(dirs))


def prepare(
    environ: Mapping[str, str],
    fleet: Fleet,
    where: Scope,
    options: Preflight,
    on_report: ReportSink,
    *,
    image: str | None = None,
    bake_s: float | None = None,
) -> Prepared:
    """Profile, preflight and plan. For a run (an SSH pool given), the old version's figures are sampled first, so
    the preflight's own time is the start of the run's reference window."""
    profile = load_profile(environ, fleet, where.profile_ref)
    targets = where.targets
    up_to_date: tuple[str, ...] = ()
    refuse_rename(fleet, where, profile)
    if where.pool is not None:
        serve_settings(profile)
        targets, up_to_date = _pool_targets(fleet, where, profile, image)
        if not targets:
            raise UsageError(f"pool {where.pool.name}: every host already runs {profile.name}: nothing to upgrade")
    opening = open_window(fleet, targets) if options.pool is not None else None
    kept = preflight(environ, fleet, profile, targets, options, on_report)
    plan, skipped = make_plan(fleet, kept, rollout_settings(fleet, profile), where.pool, force=where.force)
    request = build_request(environ, fleet, profile, image, plan, bake_s, opening)
    request = dataclasses.replace(request, pool=pool_run(fleet, where.pool, profile.name, where.write_profile))
    left_out = tuple(h.name for h in targets if h not in kept)
    return Prepared(request, plan, incompatible=left_out, not_serving=tuple(skipped), up_to_date=up_to_date)


def pool_run(fleet: Fleet, pool: Pool | None, profile: str, write: bool) -> PoolRun | None:
    """What the journal's head says about the run's pool (None on a fleet without pools)."""
    if pool is None:
        return None
    from fleetctl.services.pool_file import digest

    return PoolRun(pool.name, profile if write else None, digest(fleet.path) if write else None)


def build_request(
    environ: Mapping[str, str],
    fleet: Fleet,
    profile: Profile,
    image: str | None,
    plan: RolloutPlan,
    bake_s: float | None,
    opening: Opening | None = None,
) -> UpgradeRequest:
    settings = rollout_settings(fleet, profile)
    gate = gate_settings(settings)
    targets = tuple(h for h in (fleet.host(n) for n in plan.hosts) if h is not None)
    return UpgradeRequest(
        profile=profile,
        image=image,
        targets=targets,
        environ=environ,
        gate=gate,
        bake_s=settings.bake_s if bake_s is None else bake_s,
        opening=opening,
    )


def preflight(
    environ: Mapping[str, str],
    fleet: Fleet,
    profile: Profile,
    targets: tuple[Host, ...],
    options: Preflight,
    on_report: ReportSink,
) -> tuple[Host, ...]:
    """A fresh inventory and check of every target; failures stop here (exit 4) unless left out."""
    from fleetctl.core.compat.rules import check_snapshot
    from fleetctl.services.inventory import collect_inventory
    from fleetctl.services.profiles import load_matrix, profile_dirs

    snapshot = collect_inventory(
        fleet, targets, forks=options.forks, accept_new_host_keys=options.accept_new, pool=options.pool
    )
    report = check_snapshot(snapshot, profile, load_matrix(profile_dirs(environ, fleet.path)))
    bad = {h.name for h in report.hosts if not h.ok}
    if bad:
        on_report(report, options.skip_incompatible)
    return decisions.after_preflight(
        targets,
        bad,
        skip_incompatible=options.skip_incompatible,
        check_failed=bool(report.failed),
        profile=profile.name,
    )


def prepare_rollback(environ: Mapping[str, str], fleet: Fleet, pool_name: str | None = None) -> Prepared:
    """A run back to the profile and image the hosts of the last completed run ran before it; within a pool, of
    the pool's last completed run, and the old profile is written back into the pool's table at the end."""
    from fleetctl.core.pools import chosen_pool
    from fleetctl.services.upgrade_runs import last_completed

    pool = chosen_pool(fleet, pool_name, "rollback")
    head = last_completed(fleet, pool.name if pool is not None else None)
    hosts = head.plan.hosts
    present = tuple(h for h in (fleet.host(n) for n in hosts) if h is not None)
    opening = open_window(fleet, present)
    target = decisions.rollback_target(head, hosts)
    profile = load_profile(environ, fleet, target.profile)
    plan, _ = make_plan(fleet, present, rollout_settings(fleet, profile), pool)
    request = build_request(environ, fleet, profile, target.image, plan, None, opening)
    write = pool is not None and pool.profile != target.profile
    return Prepared(dataclasses.replace(request, pool=pool_run(fleet, pool, target.profile, write)), plan)


@contextmanager
def locked(fleet: Fleet, force_unlock: bool) -> Iterator[None]:
    """The fleet lock for a new run; refused while an earlier run is unfinished (resume or abort it first)."""
    from fleetctl.services.lock import command_line, fleet_lock
    from fleetctl.services.upgrade_runs import unfinished_kind, unfinished_run

    with fleet_lock(fleet.state_dir, command_line(), force=force_unlock):
        pending = unfinished_run(fleet)
        refusal = decisions.new_run_refusal(
            pending.run_id if pending else None, unfinished_kind(pending) if pending else None
        )
        if refusal is not None:
            raise UsageError(refusal)
        yield


@contextmanager
def continuing(fleet: Fleet, force_unlock: bool, *, abort: bool = False) -> Iterator[RunJournal | None]:
    """The fleet lock for ``--resume``/``--abort``, tagged with the unfinished run, which it yields (or None).
    An abort may go on from a journal whose head lost fields a rollback does not need."""
    from fleetctl.services.lock import command_line, fleet_lock
    from fleetctl.services.upgrade_runs import unfinished_run

    pending = unfinished_run(fleet, salvage=abort)
    with fleet_lock(fleet.state_dir, command_line(), force=force_unlock, run_id=pending.run_id if pending else None):
        yield pending
