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

from dataclasses import dataclass, replace
from typing import Any

from fleetctl.core.metrics import WindowFigures
from fleetctl.core.rollout_plan import RolloutPlan
from fleetctl.core.timefmt import seconds_between

UPGRADE_STEPS = ("drain", "replace", "healthy", "undrain")
ROLLBACK_STEPS = ("drain", "restore", "healthy", "undrain")


@dataclass(frozen=True)
class Action:
    kind: str  # pull | upgrade_step | bake | judge | rollback_step | finish
    ring: str | None = None
    host: str | None = None
    step: str | None = None
    hosts: tuple[str, ...] = ()
    outcome: str | None = None  # for finish: completed | rolled_back | aborted

    def key(self) -> str:
        return ":".join(p for p in (self.kind, self.ring or "", self.host or "", self.step or "") if p)


@dataclass(frozen=True)
class RunState:
    plan: RolloutPlan
    done: frozenset[str] = frozenset()  # keys of actions journaled as done
    touched: tuple[str, ...] = ()  # hosts whose container this run began to replace, in order
    drained: tuple[str, ...] = ()  # hosts this run took out of the router, in order
    failure: dict[str, Any] | None = None  # the failed gate or step that turned the run around
    abort: bool = False
    finished: str | None = None


def replay(plan: RolloutPlan, records: list[dict[str, Any]]) -> RunState:
    state = RunState(plan=plan)
    for record in records:
        state = apply(state, record)
    return state


def apply(state: RunState, record: dict[str, Any]) -> RunState:
    event = record.get("event")
    if event == "action_begin" and record.get("kind") == "upgrade_step":
        host, step = record["host"], record.get("step")
        if step == "drain" and host not in state.drained:
            state = replace(state, drained=(*state.drained, host))
        if step == "replace" and host not in state.touched:
            state = replace(state, touched=(*state.touched, host))
    elif event == "action_done":
        state = replace(state, done=state.done | {record["key"]})
        if record.get("kind") == "judge" and not record.get("passed", False):
            state = replace(state, failure={"ring": record.get("ring"), "verdict": record.get("verdict")})
    elif event == "action_failed":
        state = replace(
            state, failure={"action": record["key"], "host": record.get("host"), "reason": record.get("reason")}
        )
    elif event == "abort_requested":
        state = replace(state, abort=True)
    elif event == "run_finished":
        state = replace(state, finished=record.get("outcome"))
    return state


def decide(state: RunState) -> Action:
    """The next action of the run, from the state alone."""
    if state.finished:
        return Action("finish", outcome=state.finished)
    if state.failure is not None or state.abort:
        return _next_rollback(state)
    for ring in state.plan.rings:
        action = _next_in_ring(state, ring.name, ring.hosts, ring.batches)
        if action is not None:
            return action
    return Action("finish", outcome="completed")


def _next_in_ring(state: RunState, ring: str, hosts: tuple[str, ...], batches) -> Action | None:
    pull = Action("pull", ring=ring, hosts=hosts)
    if pull.key() not in state.done:
        return pull
    for batch in batches:
        for step in UPGRADE_STEPS:  # a batch moves step by step, hosts side by side
            for host in batch:
                action = Action("upgrade_step", ring=ring, host=host, step=step)
                if action.key() not in state.done:
                    return action
    for kind in ("bake", "judge"):
        action = Action(kind, ring=ring, hosts=hosts)
        if action.key() not in state.done:
            return action
    return None


def _next_rollback(state: RunState) -> Action:
    """Every host this run touched gets its old container back, newest first; hosts it only drained go back in."""
    for host in reversed(state.drained):
        steps = ROLLBACK_STEPS if host in state.touched else ("undrain",)
        for step in steps:
            action = Action("rollback_step", host=host, step=step)
            if action.key() not in state.done:
                return action
    return Action("finish", outcome="aborted" if state.abort else "rolled_back")


def old_version_figures(records: list[dict[str, Any]]) -> WindowFigures | None:
    """What the old version did in this run: the window before the first change (``run_started.reference``) plus
    the baseline hosts' window of every ring judged so far. The last ring, with no baseline host left, is judged
    against this."""
    found = [r["reference"] for r in records if r.get("event") == "run_started" and r.get("reference")]
    found += [
        r["baseline"]
        for r in records
        if r.get("event") == "action_done" and r.get("kind") == "judge" and r.get("baseline")
    ]
    total = None
    for doc in found:
        figures = WindowFigures.from_dict(doc)
        total = figures if total is None else total.plus(figures)
    return total


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per ring: hosts, start and end times, duration, and the gate's figures, from a run's journal."""
    rings: dict[str, dict[str, Any]] = {}
    for r in records:
        ring = r.get("ring")
        if not ring or r.get("event") not in ("action_begin", "action_done"):
            continue
        row = rings.setdefault(
            ring,
            {"ring": ring, "hosts": [], "started": r.get("at"), "ended": r.get("at"), "gate": None, "passed": None},
        )
        row["ended"] = r.get("at")
        if r.get("host") and r["host"] not in row["hosts"]:
            row["hosts"].append(r["host"])
        if r.get("event") == "action_done" and r.get("kind") == "judge":
            row["passed"] = r.get("passed")
            row["gate"] = (r.get("verdict") or {}).get("checks")
    for row in rings.values():
        row["duration_s"] = seconds_between(row["started"], row["ended"])
    return list(rings.values())
