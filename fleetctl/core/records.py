"""The run journal's records, one type per kind, and the one place that turns them into JSON and back.

On disk (``fleetctl.journal/v1``) each record is one JSON object with sorted keys::

    {"at": ..., "event": KIND, "run_id": ..., "schema": "fleetctl.journal/v1", ...fields of the kind}

``record_doc`` writes exactly the documents the first v1 code wrote (tests/fixtures/journals pins them);
``parse_record`` reads one back, or says in one line what is wrong with it (``RecordError``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from fleetctl.core.gate import GateSettings
from fleetctl.core.rollout_plan import RolloutPlan
from fleetctl.core.timefmt import parse_utc

SCHEMA = "fleetctl.journal/v1"
E = TypeVar("E", bound=StrEnum)


class RecordError(ValueError):
    """A journal line that is not a record this version reads: the message says what is wrong."""


class RecordKind(StrEnum):
    RUN_STARTED = "run_started"
    MAINTAIN_STARTED = "maintain_started"  # the head of a maintenance run (``fleetctl maintain``)
    ACTION_BEGIN = "action_begin"
    ACTION_DONE = "action_done"
    ACTION_FAILED = "action_failed"
    ABORT_REQUESTED = "abort_requested"
    RUN_FINISHED = "run_finished"


class ActionKind(StrEnum):
    PULL = "pull"
    UPGRADE_STEP = "upgrade_step"
    BAKE = "bake"
    JUDGE = "judge"
    ROLLBACK_STEP = "rollback_step"
    MAINTAIN_STEP = "maintain_step"  # one step of one host's maintenance (fleetctl.core.maintain)
    RESTORE_STEP = "restore_step"  # an aborted maintenance puts a host back into service
    FINISH = "finish"


class Outcome(StrEnum):
    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"
    ABANDONED = "abandoned"  # a person marked the run finished without acting (``upgrade --abandon``)


@dataclass(frozen=True)
class RunStarted:
    """The run's head: everything needed to rebuild it after a crash."""

    plan: RolloutPlan
    profile: str
    profile_path: str
    image: str
    revision: str
    previous: Mapping[str, Any]  # host → {"record": its serving record before the run, "model": ...}
    reference: Mapping[str, Any] | None  # the old version's figures before the first change (WindowFigures + seconds)
    bake_s: float
    gate: GateSettings
    pool: PoolRun | None = None  # the run's pool (a fleet with [[pools]]); absent from v1 journals
    kind: RecordKind = field(default=RecordKind.RUN_STARTED, init=False)

    def fields(self) -> dict[str, Any]:
        pool = {} if self.pool is None else {"pool": self.pool.fields()}
        return {
            "plan": self.plan.to_dict(),
            "profile": self.profile,
            "profile_path": self.profile_path,
            "image": self.image,
            "revision": self.revision,
            "previous": dict(self.previous),
            "reference": None if self.reference is None else dict(self.reference),
            "bake_s": self.bake_s,
            "gate": dict(self.gate.__dict__),
            **pool,
        }


@dataclass(frozen=True)
class PoolRun:
    """A run within a pool: its name and, for ``upgrade --pool --profile`` and a pool's rollback, the profile the
    run writes into the pool's table once it completes, and the fleet file's digest when the run started."""

    name: str
    write_profile: str | None = None
    fleet_sha256: str | None = None

    def fields(self) -> dict[str, Any]:
        return {"name": self.name, "write_profile": self.write_profile, "fleet_sha256": self.fleet_sha256}

    @classmethod
    def parse(cls, doc: Any) -> PoolRun | None:
        if doc is None:
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
            raise RecordError("pool is neither a pool run nor absent")
        write, digest = doc.get("write_profile"), doc.get("fleet_sha256")
        if not isinstance(write, str | None) or not isinstance(digest, str | None):
            raise RecordError("pool.write_profile and pool.fleet_sha256 must be strings or null")
        return cls(doc["name"], write, digest)


@dataclass(frozen=True)
class ActionRef:
    """Which action a record is about; ``key`` names it in the state machine."""

    key: str
    action: ActionKind
    ring: str | None = None
    host: str | None = None
    step: str | None = None

    def fields(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.action.value, "ring": self.ring, "host": self.host, "step": self.step}


@dataclass(frozen=True)
class ActionBegin:
    ref: ActionRef
    kind: RecordKind = field(default=RecordKind.ACTION_BEGIN, init=False)

    def fields(self) -> dict[str, Any]:
        return self.ref.fields()


@dataclass(frozen=True)
class GateOutcome:
    """What a judge journals: passed or not, the verdict's report, the baseline hosts' figures (if any)."""

    passed: bool
    verdict: Mapping[str, Any]  # {"ring": ..., "checks": [GateCheck.to_dict(), ...]}
    baseline: Mapping[str, Any] | None = None  # WindowFigures.to_dict()

    def fields(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"passed": self.passed, "verdict": dict(self.verdict)}
        if self.baseline is not None:
            doc["baseline"] = dict(self.baseline)
        return doc


@dataclass(frozen=True)
class ActionDone:
    ref: ActionRef
    gate: GateOutcome | None = None  # for a judge
    detail: Mapping[str, str] | None = None  # what a maintenance step found (a host's boot id before its reboot)
    kind: RecordKind = field(default=RecordKind.ACTION_DONE, init=False)

    def fields(self) -> dict[str, Any]:
        detail = {} if self.detail is None else {"detail": dict(self.detail)}
        return {**self.ref.fields(), **(self.gate.fields() if self.gate is not None else {}), **detail}


@dataclass(frozen=True)
class ActionFailed:
    ref: ActionRef
    reason: str
    kind: RecordKind = field(default=RecordKind.ACTION_FAILED, init=False)

    def fields(self) -> dict[str, Any]:
        return {**self.ref.fields(), "reason": self.reason}


@dataclass(frozen=True)
class AbortRequested:
    kind: RecordKind = field(default=RecordKind.ABORT_REQUESTED, init=False)

    def fields(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class RunFinished:
    outcome: Outcome
    reason: str | None = None  # why a person abandoned it
    kind: RecordKind = field(default=RecordKind.RUN_FINISHED, init=False)

    def fields(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"outcome": self.outcome.value}
        if self.reason is not None:
            doc["reason"] = self.reason
        return doc


@dataclass(frozen=True)
class MaintainStarted:
    """A maintenance run's head: the plan, what runs on each host, and each host's state before the run."""

    plan: RolloutPlan
    commands: tuple[str, ...]  # run over SSH on each host, in order
    sudo: bool
    reboot: bool
    reboot_command: str
    reboot_timeout_s: float
    expect: tuple[str, ...]  # KEY=VERSION, held against the host's inventory after its commands (and reboot)
    hosts: Mapping[str, Any]  # host → {"record": serving record or null, "drained": bool, "profile": name or null}
    bake_s: float
    gate: GateSettings
    pool: str | None = None
    command_timeout_s: float = 3600.0
    kind: RecordKind = field(default=RecordKind.MAINTAIN_STARTED, init=False)

    def fields(self) -> dict[str, Any]:
        return {
            "plan": self.plan.to_dict(),
            "commands": list(self.commands),
            "sudo": self.sudo,
            "reboot": self.reboot,
            "reboot_command": self.reboot_command,
            "reboot_timeout_s": self.reboot_timeout_s,
            "expect": list(self.expect),
            "hosts": dict(self.hosts),
            "bake_s": self.bake_s,
            "gate": dict(self.gate.__dict__),
            "pool": self.pool,
            "command_timeout_s": self.command_timeout_s,
        }


Body = RunStarted | MaintainStarted | ActionBegin | ActionDone | ActionFailed | AbortRequested | RunFinished


@dataclass(frozen=True)
class Record:
    at: str
    run_id: str
    body: Body

    @property
    def kind(self) -> RecordKind:
        return self.body.kind


def record_doc(record: Record) -> dict[str, Any]:
    """The record as the journal's JSON object (the caller dumps it with sorted keys)."""
    return {
        "schema": SCHEMA,
        "at": record.at,
        "run_id": record.run_id,
        "event": record.kind.value,
        **record.body.fields(),
    }


# -- reading -------------------------------------------------------------------------------------------------------


def parse_record(doc: Any) -> Record:
    """One journal object back as a ``Record``; RecordError naming the first thing wrong with it."""
    if not isinstance(doc, dict):
        raise RecordError("not a JSON object")
    if doc.get("schema") != SCHEMA:
        raise RecordError(f"schema is {doc.get('schema')!r}, this version reads {SCHEMA}")
    kind = _enum(RecordKind, doc, "event")
    at = _text(doc, "at")
    try:
        parse_utc(at)
    except ValueError as e:
        raise RecordError(f"at is not a timestamp: {at!r}") from e
    return Record(at, _text(doc, "run_id"), _READERS[kind](doc))


def _gate_settings(gate: Mapping[str, Any]) -> GateSettings:
    """The head's gate settings (a v1 head lacks the bake keys: their defaults read it as recorded)."""
    values = dict(gate)
    prompts = values.get("smoke_prompts", [])
    if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
        raise TypeError("smoke_prompts is not a list of strings")
    if "smoke_prompts" in values:
        values["smoke_prompts"] = tuple(prompts)
    return GateSettings(**values)


def _run_started(doc: Mapping[str, Any]) -> RunStarted:
    plan, gate = _mapping(doc, "plan"), _mapping(doc, "gate")
    try:
        rollout_plan = RolloutPlan.from_dict(dict(plan))
    except (KeyError, TypeError, ValueError) as e:
        raise RecordError(f"plan is not a rollout plan: {e}") from e
    try:
        settings = _gate_settings(gate)
    except TypeError as e:
        raise RecordError(f"gate is not gate settings: {e}") from e
    reference = doc.get("reference")
    if reference is not None and not isinstance(reference, dict):
        raise RecordError("reference is neither figures nor null")
    bake_s = doc.get("bake_s")
    if isinstance(bake_s, bool) or not isinstance(bake_s, int | float):
        raise RecordError(f"bake_s is not a number: {bake_s!r}")
    return RunStarted(
        plan=rollout_plan,
        profile=_text(doc, "profile"),
        profile_path=_text(doc, "profile_path"),
        image=_text(doc, "image"),
        revision=_text(doc, "revision"),
        previous=_mapping(doc, "previous"),
        reference=reference,
        bake_s=bake_s,
        gate=settings,
        pool=PoolRun.parse(doc.get("pool")),
    )


def salvage(doc: Any) -> tuple[RolloutPlan, dict[str, Any]]:
    """From a ``run_started`` that does not read as a whole: its plan and the hosts' records before the run, which
    are all a rollback needs (``upgrade --abort`` of a damaged journal)."""
    if not isinstance(doc, dict) or doc.get("event") != RecordKind.RUN_STARTED:
        raise RecordError("the first line is not a run_started record")
    try:
        plan = RolloutPlan.from_dict(dict(_mapping(doc, "plan")))
    except (KeyError, TypeError, ValueError) as e:
        raise RecordError(f"plan is not a rollout plan: {e}") from e
    previous = dict(_mapping(doc, "previous"))
    for host in plan.hosts:
        entry = previous.get(host)
        if not isinstance(entry, dict) or not isinstance(entry.get("record"), dict):
            raise RecordError(f"previous has no serving record for {host}")
    return plan, previous


def _ref(doc: Mapping[str, Any]) -> ActionRef:
    return ActionRef(
        key=_text(doc, "key"),
        action=_enum(ActionKind, doc, "kind"),
        ring=_optional_text(doc, "ring"),
        host=_optional_text(doc, "host"),
        step=_optional_text(doc, "step"),
    )


def _action_done(doc: Mapping[str, Any]) -> ActionDone:
    ref = _ref(doc)
    detail = doc.get("detail")
    if detail is not None:
        if not isinstance(detail, dict) or not all(isinstance(v, str) for v in detail.values()):
            raise RecordError("detail is not an object of strings")
        return ActionDone(ref, detail=detail)
    if "passed" not in doc:
        return ActionDone(ref)
    baseline = doc.get("baseline")
    if baseline is not None and not isinstance(baseline, dict):
        raise RecordError("baseline is not figures")
    return ActionDone(ref, GateOutcome(bool(doc["passed"]), _mapping(doc, "verdict"), baseline))


def _action_failed(doc: Mapping[str, Any]) -> ActionFailed:
    return ActionFailed(_ref(doc), _text(doc, "reason"))


def _run_finished(doc: Mapping[str, Any]) -> RunFinished:
    return RunFinished(_enum(Outcome, doc, "outcome"), _optional_text(doc, "reason"))


def _maintain_started(doc: Mapping[str, Any]) -> MaintainStarted:
    try:
        plan = RolloutPlan.from_dict(dict(_mapping(doc, "plan")))
        gate = _gate_settings(_mapping(doc, "gate"))
    except (KeyError, TypeError, ValueError) as e:
        raise RecordError(f"plan or gate does not read: {e}") from e
    numbers = {name: doc.get(name) for name in ("reboot_timeout_s", "bake_s", "command_timeout_s")}
    for name, value in numbers.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RecordError(f"{name} is not a number: {_short(value)}")
    hosts = _mapping(doc, "hosts")
    for host in plan.hosts:
        entry = hosts.get(host)
        if not isinstance(entry, dict) or not isinstance(entry.get("record"), dict | None):
            raise RecordError(f"hosts has no entry for {host}")
    return MaintainStarted(
        plan=plan,
        commands=_texts(doc, "commands"),
        sudo=doc.get("sudo") is True,
        reboot=doc.get("reboot") is True,
        reboot_command=_text(doc, "reboot_command"),
        reboot_timeout_s=float(numbers["reboot_timeout_s"]),  # type: ignore[arg-type]
        expect=_texts(doc, "expect"),
        hosts=hosts,
        bake_s=float(numbers["bake_s"]),  # type: ignore[arg-type]
        gate=gate,
        pool=_optional_text(doc, "pool"),
        command_timeout_s=float(numbers["command_timeout_s"]),  # type: ignore[arg-type]
    )


def _texts(doc: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = doc.get(name)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RecordError(f"{name} is not a list of strings")
    return tuple(value)


_READERS: dict[RecordKind, Any] = {
    RecordKind.RUN_STARTED: _run_started,
    RecordKind.MAINTAIN_STARTED: _maintain_started,
    RecordKind.ACTION_BEGIN: lambda doc: ActionBegin(_ref(doc)),
    RecordKind.ACTION_DONE: _action_done,
    RecordKind.ACTION_FAILED: _action_failed,
    RecordKind.ABORT_REQUESTED: lambda doc: AbortRequested(),
    RecordKind.RUN_FINISHED: _run_finished,
}


def _text(doc: Mapping[str, Any], name: str) -> str:
    if name not in doc:
        raise RecordError(f"{doc.get('event', 'record')} without {name}")
    value = doc[name]
    if not isinstance(value, str):
        raise RecordError(f"{name} is not text: {value!r}")
    return value


def _optional_text(doc: Mapping[str, Any], name: str) -> str | None:
    value = doc.get(name)
    if value is not None and not isinstance(value, str):
        raise RecordError(f"{name} is not text: {value!r}")
    return value


def _mapping(doc: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    if name not in doc:
        raise RecordError(f"{doc.get('event', 'record')} without {name}")
    value = doc[name]
    if not isinstance(value, dict):
        raise RecordError(f"{name} is not an object: {_short(value)}")
    return value


def _enum(enum: type[E], doc: Mapping[str, Any], name: str) -> E:
    value = doc.get(name)
    if isinstance(value, str) and value in {m.value for m in enum}:
        return enum(value)
    raise RecordError(f"{name} {_short(value)} is not one of {', '.join(m.value for m in enum)}")


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
