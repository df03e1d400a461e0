"""``fleetctl upgrade``: plan a rollout, journal it, run it; resume, abort and revert runs from their journals.

A run's first journal record (``run_started``) holds everything needed to rebuild it after a crash: the plan,
the target profile (by path) and image, the revision, each host's serving record before the run, and the old
version's figures over the window from the command's start (before preflight) to the run's start. No time is
spent waiting for them: the window is the preflight's own time, and each ring's baseline hosts add theirs.
Secrets are not in it: ``env:NAME`` values are read again on resume.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any

from fleetctl.core import rollout_decisions as decisions
from fleetctl.core.compat.profile import Profile
from fleetctl.core.events import Note, Resumed
from fleetctl.core.fleet import Fleet, Host, Pool, RolloutSettings
from fleetctl.core.gate import GateSettings
from fleetctl.core.metrics import MetricsSample
from fleetctl.core.records import AbortRequested, Outcome, PoolRun, Record, RunStarted
from fleetctl.core.rollout import GateFailed, RunState, StepFailure
from fleetctl.core.rollout_decisions import serving_now, serving_targets
from fleetctl.core.rollout_plan import PlanError, RolloutPlan, plan_rollout
from fleetctl.errors import RolledBack, UsageError
from fleetctl.services.clock import SYSTEM
from fleetctl.services.journal import Journal, RunJournal, new_run_id
from fleetctl.services.rollout import Executor, Interrupt, RunContext, sample_serving
from fleetctl.services.rollout_ports import FleetPorts, RolloutPorts
from fleetctl.services.serving import spec_for
from fleetctl.services.statefile import load_state
from fleetctl.services.upgrade_runs import salvage_head, unfinished_run
from fleetctl.services.worker_key import fleet_worker_key

Event = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Opening:
    """The old version's metrics when the command began: the start of the run's reference window."""

    samples: dict[str, MetricsSample]
    at: float  # time.monotonic()


def open_window(fleet: Fleet, hosts: tuple[Host, ...]) -> Opening:
    return Opening(sample_serving(fleet, tuple(h.name for h in hosts)), time.monotonic())


def connections(fleet: Fleet, *, accept_new: bool = False):
    """One SSH pool for a whole command (preflight and run share its connections)."""
    from fleetctl.transport.ssh import SshPool

    return SshPool(fleet.ssh, accept_new=accept_new)


@dataclass(frozen=True)
class UpgradeRequest:
    profile: Profile
    image: str | None
    targets: tuple[Host, ...]
    environ: Mapping[str, str]
    gate: GateSettings
    bake_s: float
    opening: Opening | None = None
    pool: PoolRun | None = None  # the run's pool, and the profile it writes into the pool's table at the end


def rollout_settings(fleet: Fleet, profile: Profile) -> RolloutSettings:
    """The fleet's [rollout] with the profile's [rollout] overrides on top."""
    return dataclasses.replace(fleet.rollout, **profile.rollout)


def make_plan(
    fleet: Fleet, targets: tuple[Host, ...], settings: RolloutSettings, pool: Pool | None = None, *, force: bool = False
) -> tuple[RolloutPlan, list[str]]:
    """The plan over the targets that serve now; drained hosts are left alone (named in the second value). Within
    a pool, its own hosts serving and its own ``min_serving`` bound the batches; ``force`` (``upgrade --force``)
    upgrades one host at a time where that would go below it."""
    serving = serving_now(load_state(fleet))
    if pool is not None:
        serving = tuple(h for h in serving if h in pool.members)
    found = serving_targets(targets, serving)
    min_serving = fleet.router.min_serving if pool is None else pool.min_serving
    if force and found.chosen:
        min_serving = min(min_serving, found.serving - 1)
    if pool is not None and found.chosen and found.serving - min_serving < 1:
        raise UsageError(
            f"cannot plan the upgrade: pool {pool.name}: {found.serving} of {len(pool.members)} host(s) serving "
            f"and its min_serving = {min_serving}: upgrading any host would go below it",
            hint="use --force to upgrade one host at a time anyway",
        )
    try:
        plan = plan_rollout(found.chosen, settings, serving=found.serving, min_serving=min_serving)
        return plan, list(found.skipped)
    except PlanError as e:
        raise UsageError(f"cannot plan the upgrade: {e}") from e


def start_run(
    fleet: Fleet,
    request: UpgradeRequest,
    plan: RolloutPlan,
    on_event: Event,
    pool=None,
    ports: RolloutPorts | None = None,
) -> RunState:
    """Journal the run's head and carry it out, over ``ports`` (tests), ``pool`` (the command's SSH pool) or a
    new pool."""
    from fleetctl.services.lock import tag_run

    clock = ports.clock if ports is not None else SYSTEM
    run_id = new_run_id(clock)
    spec = spec_for(request.profile, request.environ, run_id, request.image, worker_key=fleet_worker_key(fleet))
    tag_run(fleet.state_dir, run_id)
    state = ports.load_state() if ports is not None else load_state(fleet)
    previous = {h: {"record": state.serving[h].to_dict(), "model": state.serving[h].model} for h in plan.hosts}
    reference = None
    if request.opening is not None:
        sampled = ports.sample_serving(plan.hosts) if ports is not None else sample_serving(fleet, plan.hosts)
        reference = reference_window(request.opening, sampled, clock.monotonic())
    journal = Journal(fleet.state_dir, run_id, clock)
    head = journal.append(
        RunStarted(
            plan=plan,
            profile=request.profile.name,
            profile_path=request.profile.path,
            image=spec.image,
            revision=run_id,
            previous=previous,
            reference=reference,
            bake_s=request.bake_s,
            gate=request.gate,
            pool=request.pool,
        )
    )
    ctx = _context(fleet, request.profile, spec, plan, previous, request.bake_s, request.gate)
    ctx = _in_pool(ctx, request.pool, on_event)
    with _ports(fleet, pool, ports) as run_ports:
        return _execute(ctx, journal, run_ports, [head], on_event)


@contextmanager
def _ports(fleet: Fleet, pool: Any, ports: RolloutPorts | None) -> Iterator[RolloutPorts]:
    """``ports`` when given; else the real fleet over ``pool`` or over a pool of its own for the run."""
    if ports is not None:
        yield ports
        return
    with nullcontext(pool) if pool is not None else connections(fleet) as shared:
        yield FleetPorts(fleet, shared)


def reference_window(opening: Opening, now: dict[str, MetricsSample], now_at: float) -> dict[str, Any] | None:
    """The old version's figures from the opening samples to ``now`` (journaled), or None without traffic."""
    return decisions.reference_window(opening.samples, opening.at, now, now_at)


def _context(fleet, profile, spec, plan, previous, bake_s, gate) -> RunContext:
    serve = profile.serve
    return RunContext(
        fleet=fleet,
        plan=plan,
        spec=spec,
        model=serve.served_name,
        port=serve.port,
        health_timeout_s=serve.health_timeout_s,
        bake_s=bake_s,
        gate=gate,
        previous=previous,
    )


def _in_pool(ctx: RunContext, pool: PoolRun | None, on_event: Event) -> RunContext:
    """A run within a pool: its gate's baseline is the pool's own hosts, and a run that writes the pool's profile
    does so as its last step before ``run_finished`` (so ``--resume`` finishes it)."""
    if pool is None:
        return ctx
    declared = next((p for p in ctx.fleet.pools if p.name == pool.name), None)
    peers = frozenset(declared.members) if declared is not None else frozenset(ctx.plan.hosts)
    finish = None
    if pool.write_profile is not None:
        finish = partial(_write_pool_profile, ctx.fleet.path, pool, on_event)
    return dataclasses.replace(ctx, peers=peers, finish=finish)


def _write_pool_profile(path: str, pool: PoolRun, on_event: Event) -> None:
    from fleetctl.services.pool_file import write_pool_profile

    assert pool.write_profile is not None
    result = write_pool_profile(path, pool.name, pool.write_profile, pool.fleet_sha256)
    on_event(Note("fleet_file", {"pool": pool.name, "written": result.written, "detail": result.detail}).to_dict())


def _execute(
    ctx: RunContext, journal: Journal, ports: RolloutPorts, records: list[Record], on_event: Event
) -> RunState:
    interrupt = Interrupt()
    restore = interrupt.install()
    try:
        state = Executor(ctx, journal, ports, on_event, interrupt).run(records)
    finally:
        restore()
        journal.close()
    if state.finished is Outcome.ROLLED_BACK:
        raise RolledBack(_rollback_message(state), hint=f"the run's journal: {journal.path}")
    return state


def _rollback_message(state: RunState) -> str:
    failure = state.failure
    if isinstance(failure, GateFailed) and failure.failed_checks():
        c = failure.failed_checks()[0]
        return (
            f"rolled back: ring {failure.verdict.get('ring')} failed its gate on {c['metric']}: {c['detail']} "
            f"(hosts {', '.join(c['hosts'])})"
        )
    if isinstance(failure, StepFailure):
        return f"rolled back: {failure.action} failed on {failure.host}: {failure.reason}"
    ring = failure.ring if isinstance(failure, GateFailed) else None
    return f"rolled back: ring {ring} failed its gate"


def resume_run(
    fleet: Fleet,
    environ: Mapping[str, str],
    on_event: Event,
    *,
    abort: bool = False,
    ports: RolloutPorts | None = None,
) -> RunState:
    """Continue (or, with ``abort``, roll back) the run that did not finish."""
    from fleetctl.services.profiles import load_matrix, load_profile, profile_dirs

    found = unfinished_run(fleet, salvage=abort, kind="upgrade")
    if found is None:
        raise UsageError("no unfinished upgrade to " + ("abort" if abort else "resume"))
    records, head = list(found.records), decisions.head(found.records)
    if head is None:  # --abort of a run whose head does not read: from its plan and previous records
        return _abort_salvaged(fleet, found, on_event, ports)
    dirs = profile_dirs(environ, fleet.path)
    profile = load_profile(head.profile_path, dirs, load_matrix(dirs))
    spec = spec_for(profile, environ, head.revision, head.image, worker_key=fleet_worker_key(fleet))
    journal = Journal(fleet.state_dir, found.run_id, ports.clock if ports is not None else SYSTEM)
    if abort:
        records.append(journal.append(AbortRequested()))
    on_event(Resumed(found.run_id, len(records)).to_dict())
    if head.pool is not None:
        on_event(Note("run_pool", {"run_id": found.run_id, "pool": head.pool.name}).to_dict())
    for line in found.torn:
        on_event(Note("torn_record", {"line": line, "path": found.path}).to_dict())
    ctx = _context(fleet, profile, spec, head.plan, dict(head.previous), head.bake_s, head.gate)
    ctx = _in_pool(ctx, head.pool, on_event)
    with _ports(fleet, None, ports) as run_ports:
        return _execute(ctx, journal, run_ports, records, on_event)


def _abort_salvaged(fleet: Fleet, found: RunJournal, on_event: Event, ports: RolloutPorts | None) -> RunState:
    """Roll back a run whose head lost fields the rollback does not need (its profile, image...): the plan and
    each host's serving record before the run are enough to put every touched host back."""
    plan, previous = salvage_head(found.path)
    journal = Journal(fleet.state_dir, found.run_id, ports.clock if ports is not None else SYSTEM)
    records = [*found.records, journal.append(AbortRequested())]
    on_event(Resumed(found.run_id, len(records) + 1).to_dict())
    ctx = RunContext(
        fleet=fleet,
        plan=plan,
        spec=None,  # what it upgraded to is lost: only the rollback steps run, and they need none of it
        model="",  # each host's model is in its previous record
        port=0,  # the new version's port: the old one's is used to drain
        health_timeout_s=900.0,
        bake_s=0.0,
        gate=GateSettings(),
        previous=dict(previous),
    )
    with _ports(fleet, None, ports) as run_ports:
        return _execute(ctx, journal, run_ports, records, on_event)
