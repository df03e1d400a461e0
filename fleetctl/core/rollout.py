"""The rollout as a state machine over journal records: ``replay`` builds the state, ``decide`` names the next step.

Pure. The executor journals ``begin`` for an action, carries it out (every action is idempotent, so doing it again
after a crash is safe), journals ``done``, and asks ``decide`` again. Resuming is replaying the journal and going
on: an action begun but not done is simply decided again.

Per host, an upgrade is: drain → replace (stop the old container, keep it renamed, start the new one) → healthy →
undrain. A ring is: pre-pull on all its hosts, its hosts batch by batch, bake, judge. A failed gate rolls back every
host this run touched, newest first: drain → restore (remove the new container, bring the kept one back) →
healthy → undrain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fleetctl.core.metrics import WindowFigures
from fleetctl.core.records import (
    AbortRequested,
    ActionBegin,
    ActionDone,
    ActionFailed,
    ActionKind,
    ActionRef,
    Outcome,
    Record,
    RunFinished,
    RunStarted,
)
from fleetctl.core.rollout_plan import RolloutPlan
from fleetctl.core.timefmt import seconds_between

UPGRADE_STEPS = ("drain", "replace", "healthy", "undrain")
ROLLBACK_STEPS = ("drain", "restore", "healthy", "undrain")


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    ring: str | None = None
    host: str | None = None
    step: str | None = None
    hosts: tuple[str, ...] = ()
    outcome: Outcome | None = None  # for finish: completed | rolled_back | aborted

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", ActionKind(self.kind))

    def key(self) -> str:
        return ":".join(p for p in (self.kind.value, self.ring or "", self.host or "", self.step or "") if p)

    def ref(self) -> ActionRef:
        return ActionRef(self.key(), self.kind, self.ring, self.host, self.step)


@dataclass(frozen=True)
class GateFailed:
    """The run turned around because a ring failed its gate."""

    ring: str | None
    verdict: Mapping[str, Any]  # {"ring": ..., "checks": [...]}

    def failed_checks(self) -> list[Mapping[str, Any]]:
        return [c for c in self.verdict.get("checks", []) if not c.get("passed")]


@dataclass(frozen=True)
class StepFailure:
    """The run turned around because an action failed on a host."""

    action: str  # the action's key
    host: str | None
    reason: str


RunFailure = GateFailed | StepFailure


@dataclass(frozen=True)
class RunState:
    plan: RolloutPlan
    done: frozenset[str] = frozenset()  # keys of actions journaled as done
    touched: tuple[str, ...] = ()  # hosts whose container this run began to replace, in order
    drained: tuple[str, ...] = ()  # hosts this run took out of the router, in order
    failure: RunFailure | None = None  # the failed gate or step that turned the run around
    abort: bool = False
    finished: Outcome | None = None


def replay(plan: RolloutPlan, records: Iterable[Record]) -> RunState:
    state = RunState(plan=plan)
    for record in records:
        state = apply(state, record)
    return state


def apply(state: RunState, record: Record) -> RunState:
    body = record.body
    if isinstance(body, ActionBegin) and body.ref.action is ActionKind.UPGRADE_STEP and body.ref.host:
        host, step = body.ref.host, body.ref.step
        if step == "drain" and host not in state.drained:
            state = replace(state, drained=(*state.drained, host))
        if step == "replace" and host not in state.touched:
            state = replace(state, touched=(*state.touched, host))
    elif isinstance(body, ActionDone):
        state = replace(state, done=state.done | {body.ref.key})
        if body.ref.action is ActionKind.JUDGE and (body.gate is None or not body.gate.passed):
            verdict = body.gate.verdict if body.gate is not None else {}
            state = replace(state, failure=GateFailed(body.ref.ring, verdict))
    elif isinstance(body, ActionFailed):
        state = replace(state, failure=StepFailure(body.ref.key, body.ref.host, body.reason))
    elif isinstance(body, AbortRequested):
        state = replace(state, abort=True)
    elif isinstance(body, RunFinished):
        state = replace(state, finished=body.outcome)
    return state


def decide(state: RunState) -> Action:
    """The next action of the run, from the state alone."""
    if state.finished:
        return Action(ActionKind.FINISH, outcome=state.finished)
    if state.failure is not None or state.abort:
        return _next_rollback(state)
    for ring in state.plan.rings:
        action = _next_in_ring(state, ring.name, ring.hosts, ring.batches)
        if action is not None:
            return action
    return Action(ActionKind.FINISH, outcome=Outcome.COMPLETED)


def _next_in_ring(
    state: RunState, ring: str, hosts: tuple[str, ...], batches: Sequence[tuple[str, ...]]
) -> Action | None:
    pull = Action(ActionKind.PULL, ring=ring, hosts=hosts)
    if pull.key() not in state.done:
        return pull
    for batch in batches:
        for step in UPGRADE_STEPS:  # a batch moves step by step, hosts side by side
            for host in batch:
                action = Action(ActionKind.UPGRADE_STEP, ring=ring, host=host, step=step)
                if action.key() not in state.done:
                    return action
    for kind in (ActionKind.BAKE, ActionKind.JUDGE):
        action = Action(kind, ring=ring, hosts=hosts)
        if action.key() not in state.done:
            return action
    return None


def _next_rollback(state: RunState) -> Action:
    """Every host this run touched gets its old container back, newest first; hosts it only drained go back in."""
    for host in reversed(state.drained):
        steps = ROLLBACK_STEPS if host in state.touched else ("undrain",)
        for step in steps:
            action = Action(ActionKind.ROLLBACK_STEP, host=host, step=step)
            if action.key() not in state.done:
                return action
    return Action(ActionKind.FINISH, outcome=Outcome.ABORTED if state.abort else Outcome.ROLLED_BACK)


def old_version_figures(records: Iterable[Record]) -> WindowFigures | None:
    """What the old version did in this run: the window before the first change (``run_started.reference``) plus
    the baseline hosts' window of every ring judged so far. The last ring, with no baseline host left, is judged
    against this."""
    found: list[Mapping[str, Any]] = []
    for r in records:
        if isinstance(r.body, RunStarted) and r.body.reference:
            found.append(r.body.reference)
        elif isinstance(r.body, ActionDone) and r.body.gate is not None and r.body.gate.baseline:
            found.append(r.body.gate.baseline)
    total = None
    for doc in found:
        figures = WindowFigures.from_dict(dict(doc))
        total = figures if total is None else total.plus(figures)
    return total


def summarize(records: Iterable[Record]) -> list[dict[str, Any]]:
    """Per ring: hosts, start and end times, duration, and the gate's figures, from a run's journal."""
    rings: dict[str, dict[str, Any]] = {}
    for r in records:
        if not isinstance(r.body, ActionBegin | ActionDone) or not r.body.ref.ring:
            continue
        ref = r.body.ref
        row = rings.setdefault(
            ref.ring or "",
            {"ring": ref.ring, "hosts": [], "started": r.at, "ended": r.at, "gate": None, "passed": None},
        )
        row["ended"] = r.at
        if ref.host and ref.host not in row["hosts"]:
            row["hosts"].append(ref.host)
        if isinstance(r.body, ActionDone) and ref.action is ActionKind.JUDGE:
            gate = r.body.gate
            row["passed"] = gate.passed if gate is not None else None
            row["gate"] = gate.verdict.get("checks") if gate is not None else None
            if gate is not None and "synthetic" in gate.verdict:
                row["synthetic"] = gate.verdict["synthetic"]  # requests fleetctl sent itself (journal v1 lacks it)
    for row in rings.values():
        row["duration_s"] = seconds_between(row["started"], row["ended"])
    return list(rings.values())
