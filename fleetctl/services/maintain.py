"""``fleetctl maintain``: plan a maintenance, journal it, carry it out host by host; resume and abort it.

The rules are in ``fleetctl.core.maintain`` (what comes next, when the run halts for a person); the host-level
operations in ``fleetctl.services.maintain_host``; drains, undrains and the ring's gate are the upgrade's own
(``services.serving``, ``services.ring_gate``). Journal and lock are the upgrade's: a maintenance run's head is a
``maintain_started`` record, so ``upgrade --resume`` and ``rollback`` never pick one up.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fleetctl.core import maintain as rules
from fleetctl.core.compat.matrix import Matrix
from fleetctl.core.compat.profile import Profile
from fleetctl.core.events import ActionEnded, ActionStarted, Note, Resumed, RunEnded, StepFailed
from fleetctl.core.fleet import Fleet, Host, Pool
from fleetctl.core.fleetstate import DrainRecord, ServingRecord
from fleetctl.core.gate import gate_settings
from fleetctl.core.inventory import HostReport
from fleetctl.core.maintain import Halt, HostBefore, MaintainState
from fleetctl.core.records import (
    AbortRequested,
    ActionBegin,
    ActionDone,
    ActionFailed,
    ActionKind,
    GateOutcome,
    MaintainStarted,
    Outcome,
    Record,
    RunFinished,
)
from fleetctl.core.rollout import Action
from fleetctl.core.rollout_plan import PlanError
from fleetctl.errors import FleetError, Halted, HostError, UsageError
from fleetctl.services.clock import SYSTEM
from fleetctl.services.journal import Journal, new_run_id
from fleetctl.services.maintain_host import MaintainHostOps
from fleetctl.services.ring_gate import RingGate
from fleetctl.services.rollout import DRAIN_TIMEOUT_S, Interrupt, reconnecting
from fleetctl.services.rollout_ports import HostPort, RolloutPorts
from fleetctl.services.serving import DrainOptions, DrainTarget, drain_hosts, now, undrain_hosts

Event = Callable[[dict[str, Any]], None]
STOP_S = 40  # the serving container's stop timeout
HEALTH_TIMEOUT_S = 900.0  # a host's vLLM after its maintenance, when its profile does not say


@dataclass(frozen=True)
class MaintainRequest:
    """What ``fleetctl maintain`` was asked to do (``reboot_timeout_s``/``bake_s`` None: the fleet's settings)."""

    targets: tuple[Host, ...]
    pool: Pool | None
    commands: tuple[str, ...]
    sudo: bool = False
    reboot: bool = False
    expect: tuple[str, ...] = ()
    reboot_timeout_s: float | None = None
    bake_s: float | None = None
    command_timeout_s: float = 3600.0
    force: bool = False


def plan_head(fleet: Fleet, request: MaintainRequest) -> MaintainStarted:
    """The run's head: its plan over the targets (each pool kept at its ``min_serving``) and each host as found."""
    from fleetctl.core.expect import ExpectError, parse_expects
    from fleetctl.core.maintain import plan_maintenance
    from fleetctl.core.pools import pool_by_host, pools_of
    from fleetctl.core.rollout_decisions import serving_now
    from fleetctl.services.statefile import load_state

    if not request.commands and not request.reboot:
        raise UsageError("nothing to do: give --run CMD (one or more) and/or --reboot")
    try:
        parse_expects(request.expect)
    except ExpectError as e:
        raise UsageError(f"--expect {e}") from e
    _one_pool(fleet, request)
    state = load_state(fleet)
    pools = pool_by_host(fleet)
    hosts = {}
    for host in request.targets:
        record = state.serving.get(host.name)
        pool = pools.get(host.name)
        profile = (pool.profile or None) if pool is not None and fleet.pools else (record.profile if record else None)
        before = HostBefore(record.to_dict() if record else None, state.is_drained(host.name), profile)
        hosts[host.name] = before.to_dict()
    settings = fleet.maintain
    try:
        plan = plan_maintenance(
            request.targets,
            fleet.rollout.rings,
            settings.max_parallel,
            serving_now(state),
            pools_of(fleet),
            force=request.force,
        )
    except PlanError as e:
        raise UsageError(f"cannot plan the maintenance: {e}") from e
    return MaintainStarted(
        plan=plan,
        commands=request.commands,
        sudo=request.sudo or settings.sudo,
        reboot=request.reboot,
        reboot_command=settings.reboot_command,
        reboot_timeout_s=request.reboot_timeout_s or settings.reboot_timeout_s,
        expect=request.expect,
        hosts=hosts,
        bake_s=fleet.rollout.bake_s if request.bake_s is None else request.bake_s,
        gate=gate_settings(fleet.rollout),
        pool=request.pool.name if request.pool is not None else None,
        command_timeout_s=request.command_timeout_s,
    )


def _one_pool(fleet: Fleet, request: MaintainRequest) -> None:
    """A run's gate compares like with like: its serving hosts are of one pool (spares go with any)."""
    from fleetctl.core.pools import pool_by_host

    if not fleet.pools:
        return
    targets = {t.name for t in request.targets}
    found = sorted({p.name for h, p in pool_by_host(fleet).items() if h in targets})
    if len(found) > 1:
        raise UsageError(f"the hosts are in pools {', '.join(found)}: maintain one pool at a time (--pool NAME)")


# -- running ---------------------------------------------------------------------------------------------------


@dataclass
class Ctx:
    fleet: Fleet
    head: MaintainStarted
    ports: RolloutPorts  # serving: containers, vLLM, state, router (FleetPorts over the command's SSH pool)
    hosts: MaintainHostOps  # commands, boot ids, reboots, inventory (SshHostOps over the same pool)
    environ: Mapping[str, str]
    rerun: bool = False


def log_dir(fleet: Fleet, run_id: str) -> str:
    """Where the commands' output is kept: ``<state>/maintain/<run_id>/<host>/run.<n>.log``."""
    return os.path.join(fleet.state_dir, "maintain", run_id)


class MaintainExecutor:
    def __init__(self, ctx: Ctx, journal: Journal, on_event: Event, interrupt: Interrupt) -> None:
        self.ctx, self.journal, self.on_event, self.interrupt = ctx, journal, on_event, interrupt
        self.ports = ctx.ports
        self.ops: dict[str, HostPort] = {}
        self.profiles: dict[str, tuple[Profile, Matrix]] = {}  # name → (profile, matrix), see ``_profile``
        peers = _peers(ctx.fleet, ctx.head)
        self.gate = RingGate(
            self.ports, ctx.head.gate, ctx.head.bake_s, _model(ctx.head), interrupt.requested, on_event, peers=peers
        )

    def run(self, records: list[Record], *, resume: bool) -> MaintainState:
        state = rules.replay(self.ctx.head, records)
        if resume:
            state = dataclasses.replace(state, failure=None)  # a person resumed: the failed step is tried again
        while True:
            action = rules.decide(state, rerun=self.ctx.rerun)
            if isinstance(action, Halt):
                raise Halted(halt_message(self.journal.run_id, action), hint=_next_steps(self.journal.run_id))
            if action.kind is ActionKind.FINISH:
                if not state.finished:
                    outcome = action.outcome or Outcome.COMPLETED
                    state = rules.apply(state, self.journal.append(RunFinished(outcome)))
                    self.on_event(RunEnded(outcome).to_dict())
                return state
            if self.interrupt.requested.is_set():
                raise KeyboardInterrupt
            state = self._do(state, action)

    def _do(self, state: MaintainState, action: Action) -> MaintainState:
        ref = action.ref()
        state = rules.apply(state, self.journal.append(ActionBegin(ref)))
        self.on_event(ActionStarted(ref).to_dict())
        try:
            detail, gate = self._act_reconnecting(state, action)
        except HostError as e:
            reason = f"{e.kind}: {e.reason}"
            self.on_event(StepFailed(e.host, reason).to_dict())
            return rules.apply(state, self.journal.append(ActionFailed(ref, reason)))
        if gate is not None and not gate.passed:
            reason = self._gate_failed(action, gate)
            return rules.apply(state, self.journal.append(ActionFailed(ref, reason)))
        state = rules.apply(state, self.journal.append(ActionDone(ref, gate, detail)))
        self.on_event(ActionEnded(ref).to_dict())
        return state

    def _act_reconnecting(
        self, state: MaintainState, action: Action
    ) -> tuple[dict[str, str] | None, GateOutcome | None]:
        """A dropped connection is reopened and the step done again, except a person's command (it may have run)."""
        if (action.step or "").startswith("run."):
            return self._act(state, action)
        return reconnecting(lambda: self._act(state, action), self.ops, self.on_event)

    def _act(self, state: MaintainState, action: Action) -> tuple[dict[str, str] | None, GateOutcome | None]:
        if action.kind is ActionKind.BAKE:
            self.gate.bake(action.ring or "", action.hosts, state.touched)
            return None, None
        if action.kind is ActionKind.JUDGE:
            return None, self.gate.judge(action.ring, action.hosts, state.touched)
        host = action.host or ""
        return self._step(state, self.ctx.fleet.host(host) or Host(host, host), action.step or ""), None

    def _step(self, state: MaintainState, host: Host, step: str) -> dict[str, str] | None:
        """One host step (the names are ``core.maintain``'s); a command step is ``run.N``."""
        if step.startswith("run."):
            self._command(host, int(step.removeprefix("run.")))
            return None
        handlers: dict[str, Callable[[MaintainState, Host], dict[str, str] | None]] = {
            "drain": self._drain_step,
            "stop": lambda _, h: _nothing(self._ops(h.name).runtime.stop(STOP_S)),
            "boot_id": lambda _, h: {"boot_id": self.ctx.hosts.boot_id(h)},
            "reboot": self._reboot,
            "back": lambda s, h: {
                "new_boot_id": self.ctx.hosts.wait_back(h, s.boot_ids[h.name], s.head.reboot_timeout_s)
            },
            "verify": lambda s, h: self._verify(h, s.before(h.name)),
            "start": lambda _, h: _nothing(self._ops(h.name).runtime.start()),
            "healthy": self._healthy,
            "undrain": self._undrain_step,
        }
        return handlers[step](state, host)

    def _drain_step(self, state: MaintainState, host: Host) -> None:
        record = _record(host.name, state.before(host.name))
        why = f"maintain {self.journal.run_id}"
        if record is None:  # it serves nothing: recorded drained (nothing puts it into service meanwhile), no wait
            drained = DrainRecord(host.name, why, "fleetctl", now(self.ports.clock))
            self.ports.update_state(lambda s: s if s.is_drained(host.name) else s.with_drained(drained))
            return
        self._drain(host, _port(record), why)

    def _undrain_step(self, state: MaintainState, host: Host) -> None:
        if _record(host.name, state.before(host.name)) is None:
            self.ports.update_state(lambda s: s.without_drained(host.name))
            return
        undrain_hosts(self.ports, [host.name], self.on_event, serving=None, announce_router=False)

    def _command(self, host: Host, number: int) -> None:
        head = self.ctx.head
        log = log_dir(self.ctx.fleet, self.journal.run_id)
        outcome = self.ctx.hosts.run_command(
            host, number, head.commands[number], sudo=head.sudo, timeout_s=head.command_timeout_s, log_dir=log
        )
        self.on_event(Note("command", {"host": host.name, "number": number + 1, "log": outcome.log}).to_dict())

    def _reboot(self, state: MaintainState, host: Host) -> None:
        head = state.head
        said = self.ctx.hosts.send_reboot(host, head.reboot_command, sudo=head.sudo, before=state.boot_ids[host.name])
        self.ops.pop(host.name, None)  # its Docker client rode the connection the reboot took down
        self.on_event(Note("reboot", {"host": host.name, "detail": said}).to_dict())

    def _healthy(self, state: MaintainState, host: Host) -> None:
        before = state.before(host.name)
        record = _record(host.name, before)
        if record is None:
            return
        seconds = self._ops(host.name).wait_healthy(record.model or "", _port(record), self._health_timeout(before))
        self.on_event(Note("healthy", {"host": host.name, "seconds": round(seconds, 2)}).to_dict())

    def _verify(self, host: Host, before: HostBefore) -> None:
        """A fresh inventory: ``--expect`` holds, then the check against the profile the host's pool serves."""
        from fleetctl.core.expect import parse_expects, unmet

        report = self.ctx.hosts.fresh_report(host)
        missing = unmet(parse_expects(self.ctx.head.expect), report)
        if missing:
            raise HostError(host.name, "expectation_unmet", "; ".join(missing))
        if before.profile is None:
            return
        failed = _check(self.ctx.fleet.name, report, *self._profile(before.profile))
        if failed:
            raise HostError(host.name, "check_failed", f"against {before.profile}: {failed}")

    def _health_timeout(self, before: HostBefore) -> float:
        if before.profile is None:
            return HEALTH_TIMEOUT_S
        try:
            profile, _ = self._profile(before.profile)
        except (FleetError, OSError):  # a profile that no longer loads: the default wait
            return HEALTH_TIMEOUT_S
        return profile.serve.health_timeout_s if profile.serve is not None else HEALTH_TIMEOUT_S

    def _profile(self, name: str) -> tuple[Profile, Matrix]:
        """A pool's profile and the compatibility matrix, read once for the run (every host's verify and health
        wait use them)."""
        if name not in self.profiles:
            from fleetctl.services.profiles import load_matrix, load_profile, profile_dirs

            dirs = profile_dirs(self.ctx.environ, self.ctx.fleet.path)
            matrix = load_matrix(dirs)
            self.profiles[name] = (load_profile(name, dirs, matrix), matrix)
        return self.profiles[name]

    def _ops(self, name: str) -> HostPort:
        if name not in self.ops:
            self.ops[name] = self.ports.host(name)
        return self.ops[name]

    def _drain(self, host: Host, port: int, why: str) -> None:
        record = DrainRecord(host.name, why, "fleetctl", now(self.ports.clock))
        options = DrainOptions(DRAIN_TIMEOUT_S, keep_existing=True, skip_stopped=True, announce_router=False)
        target = DrainTarget(self._ops(host.name), port, record)
        for _, result in drain_hosts(self.ports, [target], options, self.on_event):
            if isinstance(result, HostError):
                raise result

    def _gate_failed(self, action: Action, gate: GateOutcome) -> str:
        """A ring that fails its gate is taken out of service where its pool's ``min_serving`` allows."""
        from fleetctl.core.pools import check_pools_min_serving

        failed = [c for c in gate.verdict.get("checks", []) if not c.get("passed")]
        reason = "; ".join(f"{c.get('metric')}: {c.get('detail')}" for c in failed) or "failed its gate"
        out, kept = [], []
        for name in action.hosts:
            state = self.ports.load_state()
            if name not in state.serving or state.is_drained(name):
                continue
            try:
                check_pools_min_serving(self.ctx.fleet, state, [name], force=False)
                host = self.ctx.fleet.host(name)
                if host is not None:
                    self._drain(
                        host, _port(state.serving[name]), f"maintain {self.journal.run_id}: ring failed its gate"
                    )
                    out.append(name)
            except (UsageError, HostError):
                kept.append(name)
        self.on_event(Note("gate_halt", {"ring": action.ring, "drained": out, "still_serving": kept}).to_dict())
        where = f"; drained: {', '.join(out) or 'none'}" + (
            f"; still serving (min_serving): {', '.join(kept)}" if kept else ""
        )
        return f"gate: {reason}{where}"


def _nothing(_: object) -> None:
    return None


def _record(host: str, before: HostBefore) -> ServingRecord | None:
    return ServingRecord(host=host, **before.record) if before.record is not None else None


def _port(record: ServingRecord | None) -> int:
    from fleetctl.core.fleetstate import url_port

    return url_port(record.url) if record is not None else 0


def _model(head: MaintainStarted) -> str:
    models = (HostBefore.from_dict(v).record for v in head.hosts.values())
    return next((str(r.get("model") or "") for r in models if r), "")


def _peers(fleet: Fleet, head: MaintainStarted) -> frozenset[str] | None:
    if head.pool is None:
        return None
    pool = next((p for p in fleet.pools if p.name == head.pool), None)
    return frozenset(pool.members) if pool is not None else None


def _check(fleet_name: str, report: HostReport, profile: Profile, matrix: Matrix) -> str:
    """The failed rules of the host's check against the profile, as one line (empty: it passes)."""
    from fleetctl.core.compat.rules import check_snapshot
    from fleetctl.core.inventory import Snapshot

    checked = check_snapshot(Snapshot(taken_at="", fleet=fleet_name, hosts=(report,)), profile, matrix)
    host = checked.hosts[0]
    if host.error is not None:
        return f"{host.error.kind}: {host.error.message}"
    return "; ".join(
        f"{r.rule}: {r.message}" + (f" (fix: {r.fix})" if r.fix else "") for r in host.results if r.status == "fail"
    )


def halt_message(run_id: str, halt: Halt) -> str:
    if halt.host is None:
        return f"maintenance {run_id} halted at the {halt.step}: {halt.reason}"
    return f"maintenance {run_id} halted at {halt.host}: {halt.step}: {halt.reason}; {halt.host} stays drained"


def _next_steps(run_id: str) -> str:
    return (
        f"look at the host, then fleetctl maintain --resume (tries the step again), --abort (puts back hosts "
        f"whose commands did not run) or --abandon --reason TEXT; the journal: runs/{run_id}.jsonl"
    )


# -- lifecycle -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    """What a run acts through: ``over(fleet, ssh)`` for the real fleet; tests give in-memory ports and hosts."""

    ports: RolloutPorts
    hosts: MaintainHostOps

    @classmethod
    def over(cls, fleet: Fleet, ssh: Any) -> World:
        from fleetctl.services.maintain_host import SshHostOps
        from fleetctl.services.rollout_ports import FleetPorts

        return cls(FleetPorts(fleet, ssh), SshHostOps(fleet, ssh))


def start_maintenance(
    fleet: Fleet, head: MaintainStarted, on_event: Event, *, world: World, environ: Mapping[str, str]
) -> MaintainState:
    from fleetctl.services.lock import tag_run

    clock = world.ports.clock
    run_id = new_run_id(clock)
    tag_run(fleet.state_dir, run_id)
    journal = Journal(fleet.state_dir, run_id, clock)
    first = journal.append(head)
    ctx = Ctx(fleet, head, world.ports, world.hosts, environ)
    return _execute(ctx, journal, [first], on_event, resume=False)


def resume_maintenance(
    fleet: Fleet,
    on_event: Event,
    *,
    environ: Mapping[str, str],
    abort: bool = False,
    rerun: bool = False,
    world: World | None = None,
) -> MaintainState:
    """Continue (``abort``: end) the unfinished maintenance, over ``world`` (tests) or the real fleet."""
    from contextlib import nullcontext

    from fleetctl.services.upgrade import connections
    from fleetctl.services.upgrade_runs import unfinished_run

    found = unfinished_run(fleet, kind="maintain")
    if found is None:
        raise UsageError("no unfinished maintenance to " + ("abort" if abort else "resume"))
    records = list(found.records)
    head = records[0].body
    assert isinstance(head, MaintainStarted)
    journal = Journal(fleet.state_dir, found.run_id, world.ports.clock if world is not None else SYSTEM)
    if abort:
        records.append(journal.append(AbortRequested()))
    on_event(Resumed(found.run_id, len(records)).to_dict())
    for line in found.torn:
        on_event(Note("torn_record", {"line": line, "path": found.path}).to_dict())
    with nullcontext(None) if world is not None else connections(fleet) as ssh:
        chosen = world if world is not None else World.over(fleet, ssh)
        ctx = Ctx(fleet, head, chosen.ports, chosen.hosts, environ, rerun)
        return _execute(ctx, journal, records, on_event, resume=True)


def _execute(ctx: Ctx, journal: Journal, records: list[Record], on_event: Event, *, resume: bool) -> MaintainState:
    interrupt = Interrupt()
    restore = interrupt.install()
    try:
        state = MaintainExecutor(ctx, journal, on_event, interrupt).run(records, resume=resume)
    finally:
        restore()
        journal.close()
    if state.finished is Outcome.ABORTED:
        drained = ctx.ports.load_state()  # a ring that failed its gate keeps the hosts min_serving needs
        left = [h for h in rules.left_drained(state) if drained.is_drained(h)]
        if left:
            raise Halted(
                f"maintenance {journal.run_id} aborted; {', '.join(left)} stay drained: their commands ran",
                hint="look at each, then fleetctl undrain HOST once it serves as it should",
            )
    return state
