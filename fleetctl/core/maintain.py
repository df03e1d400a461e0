"""Host maintenance as a state machine over journal records: ``replay`` builds the state, ``decide`` names the
next step. Pure; the executor is ``fleetctl.services.maintain``.

Per host, in ring order, batch by batch (a batch moves step by step, its hosts side by side)::

    drain → stop → run.0 … run.N → boot_id → reboot → back → verify → start → healthy → undrain

``stop``/``start``/``healthy`` only where the host runs a container of ours; ``boot_id``/``reboot``/``back`` only
with ``--reboot`` (``reboot`` sends the command, ``back`` waits for the new boot id, so a batch reboots side by
side); ``undrain`` only where the host was not drained before the run (a person's drain is kept). A ring whose
hosts serve is baked and judged as an upgrade's is.

There is no undo of a driver: a failed step or gate halts the run, the run stays unfinished and the host stays
drained for a person (exit 7). ``--resume`` tries the failed step again; a command that began and was not
journaled as done is never run again without ``--rerun`` (it may have run). ``--abort`` puts back into service
the hosts drained before any of their commands began, and names the others, which stay drained.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from fleetctl.core.fleet import Host, Pool
from fleetctl.core.records import (
    AbortRequested,
    ActionBegin,
    ActionDone,
    ActionFailed,
    ActionKind,
    MaintainStarted,
    Outcome,
    Record,
    RunFinished,
)
from fleetctl.core.rollout import Action
from fleetctl.core.rollout_plan import PlanError, Ring, RolloutPlan, default_groups, group_by_label

#: steps that may have changed the host itself: once one began, ``--abort`` leaves the host drained for a person
HOST_CHANGING = ("run.", "boot_id", "reboot", "back")


@dataclass(frozen=True)
class HostBefore:
    """A host as the run found it (the head's ``hosts`` entry)."""

    record: Mapping[str, Any] | None  # its serving record (state.json), None where it runs nothing of ours
    drained: bool  # drained before the run: the run keeps it drained
    profile: str | None  # the profile its pool serves, checked after its maintenance (None: nothing to check)

    @property
    def serves(self) -> bool:
        return self.record is not None and not self.drained

    def to_dict(self) -> dict[str, Any]:
        return {
            "record": None if self.record is None else dict(self.record),
            "drained": self.drained,
            "profile": self.profile,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> HostBefore:
        record = doc.get("record")
        profile = doc.get("profile")
        return cls(
            record if isinstance(record, dict) else None,
            doc.get("drained") is True,
            profile if isinstance(profile, str) else None,
        )


def host_steps(head: MaintainStarted, before: HostBefore) -> tuple[str, ...]:
    """The host's steps in order (module docstring)."""
    ours = before.record is not None
    steps = ["drain", *(["stop"] if ours else [])]
    steps += [f"run.{i}" for i in range(len(head.commands))]
    steps += ["boot_id", "reboot", "back"] if head.reboot else []
    steps += ["verify", *(["start", "healthy"] if ours else []), *([] if before.drained else ["undrain"])]
    return tuple(steps)


def restore_steps(before: HostBefore) -> tuple[str, ...]:
    """What ``--abort`` does to a host drained before any of its commands began: back into service as it was."""
    ours = before.record is not None
    return (*(["start", "healthy"] if ours else []), *([] if before.drained else ["undrain"]))


@dataclass(frozen=True)
class Halt:
    """The run stops here for a person: the host stays drained (exit 7)."""

    host: str | None
    step: str | None
    reason: str


@dataclass(frozen=True)
class MaintainState:
    head: MaintainStarted
    done: frozenset[str] = frozenset()
    begun: frozenset[str] = frozenset()
    drained: tuple[str, ...] = ()  # hosts this run drained, in order
    touched: tuple[str, ...] = ()  # hosts whose maintenance (past the drain) began: not the gate's baseline
    changed: frozenset[str] = frozenset()  # hosts on which a step that may change the host began (HOST_CHANGING)
    boot_ids: Mapping[str, str] = field(default_factory=dict)  # host → boot id before its reboot
    failure: Halt | None = None  # the last step that failed (cleared when a step begins again)
    gated: tuple[str, ...] = ()  # rings that failed their gate: the executor drained their hosts (min_serving allowing)
    abort: bool = False
    finished: Outcome | None = None

    def before(self, host: str) -> HostBefore:
        return HostBefore.from_dict(self.head.hosts.get(host, {}))


def replay(head: MaintainStarted, records: Iterable[Record]) -> MaintainState:
    state = MaintainState(head=head)
    for record in records:
        state = apply(state, record)
    return state


def apply(state: MaintainState, record: Record) -> MaintainState:
    body = record.body
    if isinstance(body, ActionBegin):
        ref = body.ref
        state = replace(state, begun=state.begun | {ref.key}, failure=None)
        if ref.action is ActionKind.MAINTAIN_STEP and ref.host:
            if ref.step == "drain" and ref.host not in state.drained:
                state = replace(state, drained=(*state.drained, ref.host))
            elif ref.step != "drain" and ref.host not in state.touched:
                state = replace(state, touched=(*state.touched, ref.host))
            if (ref.step or "").startswith(HOST_CHANGING):
                state = replace(state, changed=state.changed | {ref.host})
    elif isinstance(body, ActionDone):
        state = replace(state, done=state.done | {body.ref.key})
        if body.detail and "boot_id" in body.detail and body.ref.host:
            state = replace(state, boot_ids={**state.boot_ids, body.ref.host: body.detail["boot_id"]})
    elif isinstance(body, ActionFailed):
        step = body.ref.step or f"gate of ring {body.ref.ring}"
        state = replace(state, failure=Halt(body.ref.host, step, body.reason))
        if body.ref.action is ActionKind.JUDGE and body.ref.ring and body.ref.ring not in state.gated:
            state = replace(state, gated=(*state.gated, body.ref.ring))
    elif isinstance(body, AbortRequested):
        state = replace(state, abort=True)
    elif isinstance(body, RunFinished):
        state = replace(state, finished=body.outcome)
    return state


def decide(state: MaintainState, *, rerun: bool = False) -> Action | Halt:
    """The next action, or why the run halts for a person."""
    if state.finished:
        return Action(ActionKind.FINISH, outcome=state.finished)
    if state.abort:
        return _next_restore(state)
    if state.failure is not None:
        return state.failure
    for ring in state.head.plan.rings:
        action = _next_in_ring(state, ring)
        if action is not None:
            return _unless_blind_rerun(state, action, rerun)
    return Action(ActionKind.FINISH, outcome=Outcome.COMPLETED)


def _next_in_ring(state: MaintainState, ring: Ring) -> Action | None:
    for batch in ring.batches:
        steps = {h: host_steps(state.head, state.before(h)) for h in batch}
        every = host_steps(state.head, HostBefore(record={}, drained=False, profile=None))  # the full order
        for step in every:
            for host in batch:
                if step not in steps[host]:
                    continue
                action = Action(ActionKind.MAINTAIN_STEP, ring=ring.name, host=host, step=step)
                if action.key() not in state.done:
                    return action
    judged = tuple(h for h in ring.hosts if state.before(h).serves)  # a person's drain and a spare serve nothing
    if not judged:
        return None  # a ring with no host serving has nothing to judge
    for kind in (ActionKind.BAKE, ActionKind.JUDGE):
        action = Action(kind, ring=ring.name, hosts=judged)
        if action.key() not in state.done:
            return action
    return None


def _unless_blind_rerun(state: MaintainState, action: Action, rerun: bool) -> Action | Halt:
    """A command that began and was not journaled as done may have run: it is not run again without ``--rerun``."""
    step = action.step or ""
    if step.startswith("run.") and action.key() in state.begun and not rerun:
        number = int(step.removeprefix("run.")) + 1
        return Halt(
            action.host,
            step,
            f"command {number} ({state.head.commands[number - 1]!r}) began and was not journaled as finished: "
            "it may have run; the host stays drained (--resume --rerun runs it again)",
        )
    return action


def _next_restore(state: MaintainState) -> Action:
    """``--abort``: newest first, every host this run drained before any host-changing step began goes back."""
    for host in reversed(state.drained):
        if changed_host(state, host) or host_finished(state, host):
            continue
        for step in restore_steps(state.before(host)):
            action = Action(ActionKind.RESTORE_STEP, host=host, step=step)
            if action.key() not in state.done:
                return action
    return Action(ActionKind.FINISH, outcome=Outcome.ABORTED)


def changed_host(state: MaintainState, host: str) -> bool:
    """Whether a step that may have changed the host (a command, a reboot) began on it."""
    return host in state.changed


def host_finished(state: MaintainState, host: str) -> bool:
    """Every step of the host's maintenance is done."""
    ring = next((r.name for r in state.head.plan.rings if host in r.hosts), None)
    steps = host_steps(state.head, state.before(host))
    return all(Action(ActionKind.MAINTAIN_STEP, ring=ring, host=host, step=s).key() in state.done for s in steps)


def left_drained(state: MaintainState) -> tuple[str, ...]:
    """Hosts this run drained that it has not put back and will not by itself: a person looks at them. A host of a
    ring that failed its gate is one (its maintenance finished, then the gate took it out of service)."""
    gated = {h for r in state.head.plan.rings if r.name in state.gated for h in r.hosts if state.before(h).serves}
    return tuple(h for h in state.drained if changed_host(state, h) and (not host_finished(state, h) or h in gated))


# -- planning --------------------------------------------------------------------------------------------------


def plan_maintenance(
    targets: tuple[Host, ...],
    rings: tuple[str, ...],
    max_parallel: int,
    serving: Iterable[str],
    pools: Iterable[Pool],
    *,
    force: bool = False,
) -> RolloutPlan:
    """Rings as an upgrade's (``[rollout] rings``, else canary / 25% / rest); within a ring, batches of up to
    ``max_parallel`` hosts that never take a pool below its ``min_serving`` (hosts not serving take nothing from
    it). ``force``: a pool with no room is maintained one host at a time anyway."""
    if not targets:
        raise PlanError("no hosts to maintain")
    serving = set(serving)
    pools = tuple(pools)
    pool_of = {name: pool for pool in pools for name in pool.members}
    counts = {p.name: sum(1 for h in p.members if h in serving) for p in pools}
    room = {p.name: counts[p.name] - p.min_serving for p in pools}
    if force:
        room = {name: max(1, value) for name, value in room.items()}
    for host in targets:
        found = pool_of.get(host.name)
        if host.name in serving and found is not None and room[found.name] < 1:
            label = f"pool {found.name}" if found.name else "the fleet"
            raise PlanError(
                f"{label}: {counts[found.name]} host(s) serving and min_serving = {found.min_serving}: "
                f"taking {host.name} out would go below it (--force: one host at a time)"
            )
    groups = group_by_label(targets, rings) if rings else default_groups(targets)
    planned = tuple(Ring(name, _batches(hosts, max_parallel, serving, pool_of, room)) for name, hosts in groups)
    return RolloutPlan(rings=planned, batch_size=max(1, max_parallel))


def _batches(
    hosts: list[str], size: int, serving: set[str], pool_of: Mapping[str, Pool], room: Mapping[str, int]
) -> tuple[tuple[str, ...], ...]:
    batches: list[list[str]] = []
    taken: dict[str, int] = {}
    for host in hosts:
        pool = pool_of.get(host)
        counts = host in serving and pool is not None
        full = not batches or len(batches[-1]) >= max(1, size)
        no_room = counts and pool is not None and taken.get(pool.name, 0) >= room[pool.name]
        if full or no_room:
            batches.append([])
            taken = {}
        batches[-1].append(host)
        if counts and pool is not None:
            taken[pool.name] = taken.get(pool.name, 0) + 1
    return tuple(tuple(b) for b in batches)


def progress(records: list[Record]) -> list[dict[str, Any]] | None:
    """Per host of a maintenance run: its ring, the last step begun and where it stands (None: not a maintenance)."""
    if not records or not isinstance(records[0].body, MaintainStarted):
        return None
    state = replay(records[0].body, records)
    last: dict[str, str] = {}
    for record in records:
        if isinstance(record.body, ActionBegin) and record.body.ref.host:
            last[record.body.ref.host] = record.body.ref.step or ""
    rows = []
    for ring in state.head.plan.rings:
        for host in ring.hosts:
            rows.append({"host": host, "ring": ring.name, "step": last.get(host), "state": _standing(state, host)})
    return rows


def _standing(state: MaintainState, host: str) -> str:
    ring = next((r.name for r in state.head.plan.rings if host in r.hosts), None)
    if ring in state.gated and state.before(host).serves:
        return "maintained; its ring failed its gate (drained unless min_serving kept it)"
    if host_finished(state, host):
        return "done" + (" (kept drained, as before the run)" if state.before(host).drained else "")
    if state.failure is not None and state.failure.host == host:
        return f"failed: {state.failure.reason}"
    if host in left_drained(state):
        return "drained: its commands ran"
    if host in state.drained:
        restored = Action(ActionKind.RESTORE_STEP, host=host, step="undrain").key() in state.done
        return "put back (aborted before its commands)" if restored else "drained"
    return "not touched"
