"""What the rollout executor reports as it goes, one type per event, and their ``--json`` line shapes.

``to_dict`` gives the exact objects ``upgrade --json`` prints (tests/fixtures/journals/*.events.jsonl pin them);
``parse_event`` reads one back, so the live view and a resumed run's history dispatch on types, never guess.
Events that other services send through the same sink (``drained``, ``not_answering``...) stay ``Note``s.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fleetctl.core.records import (
    ActionBegin,
    ActionDone,
    ActionFailed,
    ActionKind,
    ActionRef,
    Outcome,
    Record,
)


class EventKind(StrEnum):
    DONE = "done"
    FAILED = "failed"
    GATE = "gate"
    FINISHED = "finished"
    RESUME = "resume"
    HEALTHY = "healthy"
    RECONNECT = "reconnect"


@dataclass(frozen=True)
class ActionStarted:
    """An action begun: its line is named after the action's kind (``{"event": "pull", "kind": "pull", ...}``)."""

    ref: ActionRef

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.ref.action.value, **_ref_fields(self.ref)}


@dataclass(frozen=True)
class ActionEnded:
    ref: ActionRef

    def to_dict(self) -> dict[str, Any]:
        return {"event": EventKind.DONE.value, **_ref_fields(self.ref)}


@dataclass(frozen=True)
class StepFailed:
    host: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"event": EventKind.FAILED.value, "host": self.host, "reason": self.reason}


@dataclass(frozen=True)
class GateJudged:
    ring: str | None
    passed: bool
    checks: Sequence[Mapping[str, Any]]
    synthetic: Mapping[str, Any] | None = None  # {"ring": n, "baseline": n, "real": n}: requests fleetctl sent
    measurements: Sequence[Mapping[str, Any]] | None = None  # each interval's measurement during the bake

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"event": EventKind.GATE.value, "ring": self.ring, "passed": self.passed}
        doc["checks"] = list(self.checks)
        if self.synthetic is not None:
            doc["synthetic"] = dict(self.synthetic)
        if self.measurements is not None:
            doc["measurements"] = [dict(m) for m in self.measurements]
        return doc


@dataclass(frozen=True)
class RunEnded:
    outcome: Outcome

    def to_dict(self) -> dict[str, Any]:
        return {"event": EventKind.FINISHED.value, "outcome": self.outcome.value}


@dataclass(frozen=True)
class Resumed:
    run_id: str
    records: int

    def to_dict(self) -> dict[str, Any]:
        return {"event": EventKind.RESUME.value, "run_id": self.run_id, "records": self.records}


@dataclass(frozen=True)
class HostHealthy:
    host: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"event": EventKind.HEALTHY.value, "host": self.host, "seconds": self.seconds}


@dataclass(frozen=True)
class Reconnecting:
    """A step's SSH connection dropped; it is opened again and the step repeated (``attempt`` of 3)."""

    host: str
    reason: str
    attempt: int

    def to_dict(self) -> dict[str, Any]:
        return {"event": EventKind.RECONNECT.value, "host": self.host, "reason": self.reason, "attempt": self.attempt}


@dataclass(frozen=True)
class Note:
    """An observation another service sends through the sink (``drained``, ``not_answering``, ...), as sent."""

    event: str
    fields: Mapping[str, Any]

    @property
    def host(self) -> str | None:
        host = self.fields.get("host")
        return host if isinstance(host, str) else None

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.event, **self.fields}


Event = ActionStarted | ActionEnded | StepFailed | GateJudged | RunEnded | Resumed | HostHealthy | Reconnecting | Note


def _ref_fields(ref: ActionRef) -> dict[str, Any]:
    """The action's kind, ring, host and step, those that are set (the key stays in the journal)."""
    named = {"kind": ref.action.value, "ring": ref.ring, "host": ref.host, "step": ref.step}
    return {k: v for k, v in named.items() if v}


def parse_event(doc: Mapping[str, Any]) -> Event:
    """A sink's dict back as its type (an unknown one is a ``Note``)."""
    name = str(doc.get("event"))
    rest = {k: v for k, v in doc.items() if k != "event"}
    if name in ActionKind.__members__.values() and doc.get("kind") == name:
        return ActionStarted(_ref(doc))
    if name == EventKind.DONE and doc.get("kind") in ActionKind.__members__.values():
        return ActionEnded(_ref(doc))
    if name == EventKind.FAILED:
        return StepFailed(doc.get("host"), str(doc.get("reason", "")))
    if name == EventKind.GATE:
        return GateJudged(
            doc.get("ring"),
            bool(doc.get("passed")),
            list(doc.get("checks") or []),
            doc.get("synthetic") if isinstance(doc.get("synthetic"), Mapping) else None,
            list(doc["measurements"]) if isinstance(doc.get("measurements"), list) else None,
        )
    if name == EventKind.FINISHED and doc.get("outcome") in Outcome.__members__.values():
        return RunEnded(Outcome(doc["outcome"]))
    if name == EventKind.RESUME:
        return Resumed(str(doc.get("run_id")), int(doc.get("records") or 0))
    if name == EventKind.HEALTHY and isinstance(doc.get("host"), str):
        return HostHealthy(doc["host"], float(doc.get("seconds") or 0))
    if name == EventKind.RECONNECT and isinstance(doc.get("host"), str):
        return Reconnecting(doc["host"], str(doc.get("reason", "")), int(doc.get("attempt") or 0))
    return Note(name, rest)


def _ref(doc: Mapping[str, Any]) -> ActionRef:
    action = ActionKind(doc["kind"])
    ring, host, step = doc.get("ring"), doc.get("host"), doc.get("step")
    key = ":".join(p for p in (action.value, ring or "", host or "", step or "") if p)
    return ActionRef(key, action, ring, host, step)


def journal_events(records: Iterable[Record]) -> Iterator[Event]:
    """The events a journal's records stand for, so a resumed run's view starts where the run was."""
    for record in records:
        body = record.body
        if isinstance(body, ActionBegin):
            yield ActionStarted(body.ref)
        elif isinstance(body, ActionDone):
            if body.gate is not None:
                verdict = body.gate.verdict
                synthetic, measured = verdict.get("synthetic"), verdict.get("measurements")
                yield GateJudged(body.ref.ring, body.gate.passed, verdict.get("checks", []), synthetic, measured)
            yield ActionEnded(body.ref)
        elif isinstance(body, ActionFailed):
            yield StepFailed(body.ref.host, body.reason)
