"""The live view of ``fleetctl upgrade`` on stderr: rings, hosts and steps, updated as the executor's events arrive.

``RunView`` is a plain model (no rich) that folds events into per-ring and per-host rows; ``render`` draws it as a
table; ``live_sink`` shows it with ``rich.live.Live`` and leaves the final table on the screen however the run ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fleetctl.cli.safe import visible
from fleetctl.core.events import (
    ActionEnded,
    ActionStarted,
    Event,
    GateJudged,
    HostHealthy,
    Note,
    Resumed,
    RunEnded,
    StepFailed,
    journal_events,
    parse_event,
)
from fleetctl.core.records import ActionKind, ActionRef, Outcome, Record

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from fleetctl.core.rollout_plan import RolloutPlan

UPGRADE_LABELS = {
    "drain": "draining",
    "replace": "replacing",
    "healthy": "waiting healthy",
    "undrain": "back in router",
    # fleetctl maintain's steps (run.N reads "running command N+1")
    "stop": "stopping",
    "boot_id": "reading boot id",
    "reboot": "rebooting",
    "back": "waiting for the new boot",
    "verify": "verifying",
    "start": "starting",
}
RING_LABELS = {
    "pull": "pre-pull",
    "upgrade_step": "upgrading",
    "maintain_step": "maintaining",
    "bake": "baking",
    "judge": "judging",
}
HOST_STEPS = (ActionKind.UPGRADE_STEP, ActionKind.ROLLBACK_STEP, ActionKind.MAINTAIN_STEP, ActionKind.RESTORE_STEP)
TURNING_BACK = (ActionKind.ROLLBACK_STEP, ActionKind.RESTORE_STEP)
NOTES = {
    "healthy": lambda e: f"healthy after {e.get('seconds')}s",
    "drained": lambda e: "no requests in flight",
    "not_answering": lambda e: f"not answering: {e.get('detail')}",
}
SETTLED = (
    "waiting",
    "done",
    "rolled back",
    "put back",
    "not upgraded",
    "pending",
    "skipped",
    "gate passed",
    "gate FAILED",
)


@dataclass
class HostRow:
    name: str
    ring: str
    state: str = "waiting"
    step: str = ""  # the step begun last: drain, replace, healthy, undrain, restore
    since: float | None = None  # when the current step began
    ended: float | None = None  # when it was done (the clock stops)
    note: str = ""  # the latest observation: healthy after, drained, not answering
    error: str = ""  # why an action on this host failed; kept to the end


@dataclass
class RingRow:
    name: str
    state: str = "pending"
    since: float | None = None
    detail: str = ""


class RunView:
    """What the run looks like after the events so far. ``at`` is a monotonic clock reading."""

    def __init__(self, plan: RolloutPlan, bake_s: float, title: str = "upgrade") -> None:
        self.title = title
        self.bake_s = float(bake_s or 0)
        self.rings = {r.name: RingRow(r.name) for r in plan.rings}
        self.hosts = {h: HostRow(h, r.name) for r in plan.rings for h in r.hosts}
        self.outcome: str | None = None
        self.run_id: str | None = None
        self.rolling_back = False
        self.failure: str | None = None
        self.current_ring: str | None = None

    def apply(self, event: Event | Mapping[str, Any], at: float) -> None:
        """Fold one event (a typed one, or a sink's JSON object) into the rows."""
        typed = parse_event(event) if isinstance(event, Mapping) else event
        if isinstance(typed, ActionStarted):
            self._begin(typed.ref, at)
        elif isinstance(typed, ActionEnded):
            self._done(typed.ref, at)
        elif isinstance(typed, StepFailed):
            self._failed(typed, at)
        elif isinstance(typed, GateJudged):
            self._gate(typed, at)
        elif isinstance(typed, RunEnded):
            self._finished(typed.outcome)
        elif isinstance(typed, Resumed):
            self.run_id = typed.run_id
        elif isinstance(typed, HostHealthy | Note) and typed.to_dict()["event"] in NOTES:
            self._note(typed.to_dict())

    def _begin(self, ref: ActionRef, at: float) -> None:
        ring, host = self.rings.get(ref.ring or ""), self.hosts.get(ref.host or "")
        rollback = ref.action in TURNING_BACK
        if ring is not None and ref.action.value in RING_LABELS:
            self.current_ring = ring.name
            if ring.state != RING_LABELS[ref.action.value]:
                ring.state, ring.since = RING_LABELS[ref.action.value], at
        if host is not None:
            host.step = step = ref.step or ""
            host.state = f"rolling back: {step}" if rollback else _label(step)
            host.since, host.ended, host.note = at, None, ""
        self.rolling_back = self.rolling_back or rollback

    def _done(self, ref: ActionRef, at: float) -> None:
        ring, host = self.rings.get(ref.ring or ""), self.hosts.get(ref.host or "")
        if host is not None and ref.action in HOST_STEPS:
            host.ended = at
            if ref.step == "undrain":
                turned = {ActionKind.ROLLBACK_STEP: "rolled back", ActionKind.RESTORE_STEP: "put back"}
                host.state = turned.get(ref.action, "done")
        if ring is not None and ref.action is ActionKind.PULL and ring.state == "pre-pull":
            ring.state, ring.since = "upgrading", at

    def _failed(self, event: StepFailed, at: float) -> None:
        host, reason = self.hosts.get(event.host or ""), event.reason
        self.failure = f"{event.host or '?'}: {reason}"
        if host is not None:
            host.state, host.error, host.ended = f"failed: {reason}", reason, at
        ring = self.rings.get(self.current_ring or "")
        if ring is not None and not self.rolling_back:
            ring.state, ring.detail = "failed", self.failure

    def _gate(self, event: GateJudged, at: float) -> None:
        ring = self.rings.get(event.ring or "")
        if ring is None:
            return
        failed = [c for c in event.checks if not c.get("passed")]
        ring.state, ring.since = ("gate passed" if event.passed else "gate FAILED"), at
        ring.detail = "; ".join(f"{c.get('metric')}: {c.get('detail')}" for c in failed)

    def _note(self, event: dict[str, Any]) -> None:
        host = self.hosts.get(event.get("host") or "")
        if host is not None:
            host.note = NOTES[event["event"]](event)

    def _finished(self, outcome: Outcome) -> None:
        self.outcome = outcome.value
        if outcome is Outcome.COMPLETED:
            return
        for ring in self.rings.values():
            ring.state = "skipped" if ring.state == "pending" else ring.state
        for host in self.hosts.values():
            host.state = "not upgraded" if host.state == "waiting" else host.state

    def elapsed(self, row: HostRow | RingRow, now: float) -> float | None:
        """Seconds in the current step (a host) or state (a ring); for a ring that bakes, the seconds left."""
        if row.since is None or row.state in SETTLED or row.state.startswith("failed"):
            return None
        end = row.ended if isinstance(row, HostRow) and row.ended is not None else now
        if isinstance(row, RingRow) and row.state == "baking":
            return max(0.0, self.bake_s - (now - row.since))
        return max(0.0, end - row.since)

    def status(self) -> str:
        if self.outcome:
            return self.outcome.replace("_", " ")
        return "rolling back" if self.rolling_back else "running"


STYLES = {
    "done": "green",
    "gate passed": "green",
    "rolled back": "yellow",
    "gate FAILED": "bold red",
    "failed": "bold red",
    "waiting": "dim",
    "pending": "dim",
    "skipped": "dim",
    "not upgraded": "dim",
    "baking": "magenta",
    "completed": "bold green",
    "aborted": "bold yellow",
}


def _label(step: str) -> str:
    if step.startswith("run.") and step.removeprefix("run.").isdigit():
        return f"running command {int(step.removeprefix('run.')) + 1}"
    return UPGRADE_LABELS.get(step, step)


def render(view: RunView, now: float) -> Table:
    """One table: a header row per ring (its state, the bake countdown, the gate), then its hosts."""
    from rich.table import Table
    from rich.text import Text

    title = Text.assemble(
        view.title, f" {visible(view.run_id)}" if view.run_id else "", ": ", (view.status(), _style(view.status()))
    )
    table = Table("ring", "host", "state", "time", "detail", title=title, title_justify="left")
    for ring in view.rings.values():
        seconds = view.elapsed(ring, now)
        clock = "" if seconds is None else f"{seconds:.0f}s left" if ring.state == "baking" else _secs(seconds)
        table.add_row(
            Text(visible(ring.name), "bold"),
            "",
            Text(visible(ring.state), _style(ring.state)),
            clock,
            Text(visible(ring.detail), "red" if ring.state in ("gate FAILED", "failed") else ""),
        )
        for host in (h for h in view.hosts.values() if h.ring == ring.name):
            seconds = view.elapsed(host, now)
            shown = host.error and not host.state.startswith("failed")  # else the state says it already
            detail = Text(f"failed: {visible(host.error)}", "red") if shown else Text(visible(host.note), "dim")
            state = Text(visible(host.state), _style(host.state))
            table.add_row("", Text(visible(host.name)), state, "" if seconds is None else _secs(seconds), detail)
        table.add_section()
    return table


def _style(state: str) -> str:
    if state.startswith("failed"):
        return "bold red"
    return STYLES.get(state, "yellow" if state.startswith("rolling back") else "cyan")


def _secs(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"


@contextmanager
def live_sink(
    console: Console,
    plan: RolloutPlan,
    bake_s: float,
    *,
    history: Iterable[Record] = (),
    also: Callable[[dict[str, Any]], None] | None = None,
    title: str = "upgrade",
) -> Iterator[Callable[[dict[str, Any]], None]]:
    """A sink for the executor's events that keeps ``render(view)`` live on ``console``; ``history`` (a resumed
    run's journal) is applied first, ``also`` gets every event too (the JSON lines of ``--json``)."""
    import threading
    import time

    from rich.live import Live

    view, lock = RunView(plan, bake_s, title), threading.Lock()
    for event in journal_events(history):
        view.apply(event, time.monotonic())

    def sink(event: dict[str, Any]) -> None:
        if also is not None:
            also(event)
        with lock:
            view.apply(event, time.monotonic())

    def current() -> Table:
        with lock:
            return render(view, time.monotonic())

    with Live(console=console, transient=False, refresh_per_second=4, get_renderable=current, redirect_stdout=False):
        yield sink
