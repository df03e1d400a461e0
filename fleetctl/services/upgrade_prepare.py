"""Before a run: the profile, the targets, the preflight (a fresh inventory and check), the plan, and the fleet
lock that refuses a new run while one is unfinished. The decisions are in ``fleetctl.core.rollout_decisions``;
the CLI renders what comes back (the check report through ``on_report``, the hosts left out)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fleetctl.core import rollout_decisions as decisions
from fleetctl.core.compat.profile import Profile
from fleetctl.core.compat.result import CheckReport
from fleetctl.core.fleet import Fleet, Host
from fleetctl.core.gate import gate_settings
from fleetctl.core.rollout_plan import RolloutPlan
from fleetctl.errors import UsageError
from fleetctl.services.journal import RunJournal
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


def load_profile(environ: Mapping[str, str], fleet: Fleet, ref: str) -> Profile:
    from fleetctl.services.profiles import load_matrix, profile_dirs
    from fleetctl.services.profiles import load_profile as load

    dirs = profile_dirs(environ, fleet.path)
    return load(ref, dirs, load_matrix(dirs))


def prepare(
    environ: Mapping[str, str],
    fleet: Fleet,
    targets: tuple[Host, ...],
    profile_ref: str,
    options: Preflight,
    on_report: ReportSink,
    *,
    image: str | None = None,
    bake_s: float | None = None,
) -> Prepared:
    """Profile, preflight and plan. For a run (a pool given), the old version's figures are sampled first, so the
    preflight's own time is the start of the run's reference window."""
    profile = load_profile(environ, fleet, profile_ref)
    opening = open_window(fleet, targets) if options.pool is not None else None
    kept = preflight(environ, fleet, profile, targets, options, on_report)
    plan, skipped = make_plan(fleet, kept, rollout_settings(fleet, profile))
    request = build_request(environ, fleet, profile, image, plan, bake_s, opening)
    left_out = tuple(h.name for h in targets if h not in kept)
    return Prepared(request, plan, incompatible=left_out, not_serving=tuple(skipped))


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


def prepare_rollback(environ: Mapping[str, str], fleet: Fleet) -> Prepared:
    """A run back to the profile and image the hosts of the last completed run ran before it."""
    from fleetctl.services.upgrade_runs import last_completed

    head = last_completed(fleet)
    hosts = head.plan.hosts
    present = tuple(h for h in (fleet.host(n) for n in hosts) if h is not None)
    opening = open_window(fleet, present)
    target = decisions.rollback_target(head, hosts)
    profile = load_profile(environ, fleet, target.profile)
    plan, _ = make_plan(fleet, present, rollout_settings(fleet, profile))
    return Prepared(build_request(environ, fleet, profile, target.image, plan, None, opening), plan)


@contextmanager
def locked(fleet: Fleet, force_unlock: bool) -> Iterator[None]:
    """The fleet lock for a new run; refused while an earlier run is unfinished (resume or abort it first)."""
    from fleetctl.services.lock import command_line, fleet_lock
    from fleetctl.services.upgrade_runs import unfinished_run

    with fleet_lock(fleet.state_dir, command_line(), force=force_unlock):
        pending = unfinished_run(fleet)
        refusal = decisions.new_run_refusal(pending.run_id if pending else None)
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
