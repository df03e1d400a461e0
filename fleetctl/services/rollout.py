"""The rollout executor: ask ``decide`` for the next action, journal it, carry it out, journal the outcome.

Every rule lives in ``fleetctl.core.rollout`` (what comes next) and ``fleetctl.core.gate`` (is the ring good);
this module only acts and observes. Each action is idempotent, so ``--resume`` after a crash replays the journal
and does the unfinished action again.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from fleetctl.core.events import (
    ActionEnded,
    ActionStarted,
    Event,
    HostHealthy,
    Reconnecting,
    RunEnded,
    StepFailed,
)
from fleetctl.core.fleet import Fleet, Host
from fleetctl.core.fleetstate import DrainRecord, ServingRecord
from fleetctl.core.gate import GateSettings
from fleetctl.core.metrics import MetricsSample, parse_metrics
from fleetctl.core.records import (
    ActionBegin,
    ActionDone,
    ActionFailed,
    ActionKind,
    GateOutcome,
    Outcome,
    Record,
    RunFinished,
)
from fleetctl.core.rollout import Action, RunState, apply, decide, old_version_figures, replay
from fleetctl.core.rollout_decisions import url_port
from fleetctl.core.rollout_plan import RolloutPlan
from fleetctl.core.serve import ContainerSpec
from fleetctl.errors import HostError, UsageError
from fleetctl.services.fanout import fan_out
from fleetctl.services.journal import Journal
from fleetctl.services.ring_gate import RingGate
from fleetctl.services.rollout_ports import HostPort, RolloutPorts
from fleetctl.services.serving import DrainOptions, DrainTarget, drain_hosts, now, undrain_hosts
from fleetctl.services.statefile import load_state

Sink = Callable[[dict[str, Any]], None]  # the executor's events as their JSON objects (fleetctl.core.events)
DRAIN_TIMEOUT_S = 300
RESTORE_STOP_S = 40
RECONNECT_TRIES = 3  # a step whose SSH connection dropped is repeated over a new one, this many times in all


@dataclass
class RunContext:
    """Everything a run needs that is not in the journal's state machine."""

    fleet: Fleet
    plan: RolloutPlan
    spec: ContainerSpec | None  # None: the journal lost the target (a salvaged --abort only rolls back)
    model: str
    port: int  # the new version's port (0: unknown, see ``port_after``)
    health_timeout_s: float
    bake_s: float
    gate: GateSettings
    previous: dict[str, dict[str, Any]]  # host → {"record": serving record before the run, "model": ...}
    peers: frozenset[str] | None = None  # a run within a pool: the pool's hosts (the gate's baseline comes from them)
    finish: Callable[[], None] | None = None  # the completed run's last step before run_finished (a pool's profile)

    def model_before(self, host: str) -> str:
        return self.previous.get(host, {}).get("model") or self.model

    def port_after(self, host: str) -> int:
        """The port the new version serves on, for a rollback's drain; the old one's when the journal lost it."""
        return self.port or self.port_before(host)

    def target(self) -> ContainerSpec:
        if self.spec is None:
            raise UsageError("this run's journal does not say what it upgraded to: it can only be aborted")
        return self.spec

    def port_before(self, host: str) -> int:
        url = self.previous.get(host, {}).get("record", {}).get("url")
        return url_port(url, self.port) if url else self.port


class Interrupt:
    """Ctrl-C asks the run to stop after the current action; a second Ctrl-C is ignored until then."""

    def __init__(self) -> None:
        self.requested = threading.Event()

    def install(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        old = signal.signal(signal.SIGINT, lambda *_: self.requested.set())

        def restore() -> None:
            signal.signal(signal.SIGINT, old)

        return restore


T = TypeVar("T")


def reconnecting(act: Callable[[], T], ops: dict[str, Any], on_event: Sink) -> T:
    """``act()``; when a host's SSH connection dropped (``disconnected``), its handle in ``ops`` is forgotten (the
    next use opens a new connection) and ``act`` is done again, up to RECONNECT_TRIES times in all. Only for steps
    that are safe to repeat."""
    for attempt in range(1, RECONNECT_TRIES + 1):
        try:
            return act()
        except HostError as e:
            if e.kind != "disconnected":
                raise
            ops.pop(e.host, None)
            if attempt == RECONNECT_TRIES:
                raise
            on_event(Reconnecting(e.host, e.reason, attempt + 1).to_dict())
    raise AssertionError("unreachable")


class Executor:
    def __init__(
        self, ctx: RunContext, journal: Journal, ports: RolloutPorts, on_event: Sink, interrupt: Interrupt
    ) -> None:
        self.ctx, self.journal, self.ports, self.on_event, self.interrupt = ctx, journal, ports, on_event, interrupt
        self.ops: dict[str, HostPort] = {}  # host → its runtime, kept for the whole run (until it drops)
        self.gate = RingGate(ports, ctx.gate, ctx.bake_s, ctx.model, interrupt.requested, on_event, peers=ctx.peers)

    def run(self, records: list[Record]) -> RunState:
        state = replay(self.ctx.plan, records)
        self.gate.old = old_version_figures(records)  # the old version's figures recorded so far
        while True:
            action = decide(state)
            if action.kind is ActionKind.FINISH:
                if not state.finished:
                    outcome = action.outcome or Outcome.COMPLETED
                    if outcome is Outcome.COMPLETED and self.ctx.finish is not None:
                        self.ctx.finish()
                    state = apply(state, self.journal.append(RunFinished(outcome)))
                    self.emit(RunEnded(outcome))
                return state
            if self.interrupt.requested.is_set():
                raise KeyboardInterrupt
            state = self._do(state, action)

    def emit(self, event: Event) -> None:
        self.on_event(event.to_dict())

    def _do(self, state: RunState, action: Action) -> RunState:
        ref = action.ref()
        state = apply(state, self.journal.append(ActionBegin(ref)))
        self.emit(ActionStarted(ref))
        try:
            gate = self._act_reconnecting(state, action)
        except HostError as e:
            reason = f"{e.kind}: {e.reason}"
            self.emit(StepFailed(e.host, reason))
            if action.kind is ActionKind.ROLLBACK_STEP:
                raise  # a failed rollback needs a person
            return apply(state, self.journal.append(ActionFailed(ref, reason)))
        state = apply(state, self.journal.append(ActionDone(ref, gate)))
        self.emit(ActionEnded(ref))
        return state

    def _act_reconnecting(self, state: RunState, action: Action) -> GateOutcome | None:
        """``_act``; a dropped SSH connection is reopened and the step done again (each step is idempotent)."""
        return reconnecting(lambda: self._act(state, action), self.ops, self.on_event)

    def _act(self, state: RunState, action: Action) -> GateOutcome | None:
        handlers: dict[ActionKind, Callable[[RunState, Action], GateOutcome | None]] = {
            ActionKind.PULL: self._pull,
            ActionKind.UPGRADE_STEP: self._upgrade_step,
            ActionKind.BAKE: self._bake,
            ActionKind.JUDGE: self._judge,
            ActionKind.ROLLBACK_STEP: self._rollback_step,
        }
        return handlers[action.kind](state, action)

    # -- actions -------------------------------------------------------------------------------------------------

    def _ops(self, name: str) -> HostPort:
        """One host handle (and so one Docker client over the pool's SSH connection) per host for the run."""
        if name not in self.ops:
            self.ops[name] = self.ports.host(name)
        return self.ops[name]

    def _pull(self, state: RunState, action: Action) -> None:
        failures = [
            r
            for _, r in fan_out(
                self._hosts(action.hosts), lambda h: self._ops(h.name).runtime.ensure_image(self.ctx.target().image)
            )
            if isinstance(r, HostError)
        ]
        if failures:
            raise failures[0]

    def _upgrade_step(self, state: RunState, action: Action) -> None:
        host = action.host or ""  # decide gives every step its host
        ops = self._ops(host)
        if action.step == "drain":
            self._drain(ops, self.ctx.port_before(host))  # it still runs the old version
        elif action.step == "replace":
            ops.runtime.replace(self.ctx.target())
        elif action.step == "healthy":
            seconds = ops.wait_healthy(self.ctx.model, self.ctx.port, self.ctx.health_timeout_s)
            self.emit(HostHealthy(host, round(seconds, 2)))
        elif action.step == "undrain":
            record = ServingRecord(
                host,
                self._url(ops.host),
                self.ctx.target().labels["fleetctl.profile"],
                self.ctx.target().image,
                self.ctx.target().labels["fleetctl.revision"],
                now(),
                model=self.ctx.model,
            )
            self._undrain(host, record)

    def _rollback_step(self, state: RunState, action: Action) -> None:
        host = action.host or ""  # decide gives every step its host
        ops = self._ops(host)
        if action.step == "drain":
            self._drain(ops, self.ctx.port_after(host))  # it runs the new version
        elif action.step == "restore":
            ops.runtime.restore(RESTORE_STOP_S)
        elif action.step == "healthy":
            ops.wait_healthy(self.ctx.model_before(host), self.ctx.port_before(host), self.ctx.health_timeout_s)
        elif action.step == "undrain":
            self._undrain(host, self._previous_record(host))

    def _drain(self, ops: HostPort, port: int) -> None:
        """The drain sequence ``fleetctl drain`` runs (one place: ``services.serving.drain_hosts``), keeping a
        drain record that is already there and not waiting on a container that is not running."""
        record = DrainRecord(ops.host.name, f"upgrade {self.journal.run_id}", "fleetctl", now(self.ports.clock))
        options = DrainOptions(DRAIN_TIMEOUT_S, keep_existing=True, skip_stopped=True, announce_router=False)
        for _, result in drain_hosts(self.ports, [DrainTarget(ops, port, record)], options, self.on_event):
            if isinstance(result, HostError):
                raise result

    def _undrain(self, name: str, record: ServingRecord | None) -> None:
        serving = {name: record} if record is not None else None
        undrain_hosts(self.ports, [name], self.on_event, serving=serving, announce_router=False)

    def _bake(self, state: RunState, action: Action) -> None:
        """Bake the ring, judged every interval (``services.ring_gate``); its result waits for the judge."""
        self.gate.bake(action.ring or "", action.hosts, state.touched)

    def _judge(self, state: RunState, action: Action) -> GateOutcome:
        return self.gate.judge(action.ring, action.hosts, state.touched)

    # -- observation ---------------------------------------------------------------------------------------------

    def _hosts(self, names: Iterable[str]) -> list[Host]:
        return [h for h in (self.ctx.fleet.host(n) for n in names) if h is not None]

    def _url(self, host: Host) -> str:
        from fleetctl.core.fleetstate import worker_url

        return worker_url(host.address, self.ctx.port)

    def _previous_record(self, name: str) -> ServingRecord | None:
        doc = self.ctx.previous.get(name, {}).get("record")
        return None if doc is None else ServingRecord(host=name, **doc)


def sample_serving(
    fleet: Fleet, names: tuple[str, ...] | None = None, fetch: Callable[[Host, str], str] | None = None
) -> dict[str, MetricsSample]:
    """Metrics of every serving host (of ``names``, if given); a host that does not answer is left out.
    ``fetch(host, url)`` reads a host's /metrics text (vLLM over HTTP unless given)."""
    fetch = fetch or _metrics
    state = load_state(fleet)
    urls = {
        h: r.url
        for h, r in state.serving.items()
        if not state.is_drained(h) and (names is None or h in names) and fleet.host(h) is not None
    }
    samples = {}
    hosts = [h for h in (fleet.host(n) for n in urls) if h is not None]
    for host, text in fan_out(hosts, lambda h: fetch(h, urls[h.name])):
        if isinstance(text, str):
            samples[host.name] = parse_metrics(text)
    return samples


def _metrics(host: Host, url: str) -> str:
    from fleetctl.transport.vllm import VllmClient

    client = VllmClient(host.name, url)
    try:
        return client.metrics_text()
    finally:
        client.close()
