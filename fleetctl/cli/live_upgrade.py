"""The live view of ``fleetctl upgrade`` on stderr: rings, hosts and steps, updated as the executor's events arrive.

``RunView`` is a plain model (no rich) that folds events into per-ring and per-host rows; ``render`` draws it as a
table; ``live_sink`` shows it with ``rich.live.Live`` and leaves the final table on the screen however the run ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from fleetctl.core.rollout_plan import RolloutPlan

UPGRADE_LABELS = {
    "drain": "draining",
    "replace": "replacing",
    "healthy": "waiting healthy",
    "undrain": "back in router",
}
RING_LABELS = {"pull": "pre-pull", "upgrade_step": "upgrading", "bake": "baking", "judge": "judging"}
NOTES = {
    "healthy": lambda e: f"healthy after {e.get('seconds')}s",
    "drained": lambda e: "no requests in flight",
    "not_answering": lambda e: f"not answering: {e.get('detail')}",
}
SETTLED = ("waiting", "done", "rolled back", "not upgraded", "pending", "skipped", "gate passed", "gate FAILED")


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

    def __init__(self, plan: RolloutPlan, bake_s: float) -> None:
        self.bake_s = float(bake_s or 0)
        self.rings = {r.name: RingRow(r.name) for r in plan.rings}
        self.hosts = {h: HostRow(h, r.name) for r in plan.rings for h in r.hosts}
        self.outcome: str | None = None
        self.run_id: str | None = None
        self.rolling_back = False
        self.failure: str | None = None
        self.current_ring: str | None = None

    def apply(self, event: dict[str, Any], at: float) -> None:
        kind = event.get("event")
        if kind in RING_LABELS or kind == "rollback_step":
            self._begin(kind, event, at)
        elif kind in NOTES:
            self._note(event)
        else:
            handlers = {
                "done": self._done,
                "failed": self._failed,
                "gate": self._gate,
                "finished": self._finished,
                "resume": self._resume,
            }
            if kind in handlers:
                handlers[kind](event, at)

    def _begin(self, kind: str, event: dict[str, Any], at: float) -> None:
        ring, host = self.rings.get(event.get("ring")), self.hosts.get(event.get("host"))
        if ring is not None:
            self.current_ring = ring.name
            if ring.state != RING_LABELS[kind]:
                ring.state, ring.since = RING_LABELS[kind], at
        if host is not None:
            host.step = step = event.get("step", "")
            host.state = f"rolling back: {step}" if kind == "rollback_step" else UPGRADE_LABELS.get(step, step)
            host.since, host.ended, host.note = at, None, ""
        self.rolling_back = self.rolling_back or kind == "rollback_step"

    def _done(self, event: dict[str, Any], at: float) -> None:
        ring, host, kind = self.rings.get(event.get("ring")), self.hosts.get(event.get("host")), _kind(event)
        if host is not None and kind in ("upgrade_step", "rollback_step"):
            host.ended = at
            if event.get("step") == "undrain":
                host.state = "done" if kind == "upgrade_step" else "rolled back"
        if ring is not None and kind == "pull" and ring.state == "pre-pull":
            ring.state, ring.since = "upgrading", at

    def _failed(self, event: dict[str, Any], at: float) -> None:
        host, reason = self.hosts.get(event.get("host")), event.get("reason", "")
        self.failure = f"{event.get('host') or '?'}: {reason}"
        if host is not None:
            host.state, host.error, host.ended = f"failed: {reason}", reason, at
        ring = self.rings.get(self.current_ring)
        if ring is not None and not self.rolling_back:
            ring.state, ring.detail = "failed", self.failure

    def _gate(self, event: dict[str, Any], at: float) -> None:
        ring = self.rings.get(event.get("ring"))
        if ring is None:
            return
        failed = [c for c in event.get("checks", []) if not c.get("passed")]
        ring.state, ring.since = ("gate passed" if event.get("passed") else "gate FAILED"), at
        ring.detail = "; ".join(f"{c.get('metric')}: {c.get('detail')}" for c in failed)

    def _note(self, event: dict[str, Any]) -> None:
        host = self.hosts.get(event.get("host"))
        if host is not None:
            host.note = NOTES[event["event"]](event)

    def _finished(self, event: dict[str, Any], at: float) -> None:
        self.outcome = event.get("outcome")
        if self.outcome == "completed":
            return
        for ring in self.rings.values():
            ring.state = "skipped" if ring.state == "pending" else ring.state
        for host in self.hosts.values():
            host.state = "not upgraded" if host.state == "waiting" else host.state

    def _resume(self, event: dict[str, Any], at: float) -> None:
        self.run_id = event.get("run_id")

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


def _kind(event: dict[str, Any]) -> str | None:
    """A ``done`` event's action kind: the executor names it; else a host step with a ring is an upgrade step."""
    if event.get("kind") or not event.get("host"):
        return event.get("kind") or ("pull" if event.get("ring") else None)
    return "upgrade_step" if event.get("ring") else "rollback_step"


def journal_events(records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The events a journal's records stand for, so a resumed run's view starts where the run was."""
    for r in records:
        fields = {k: r[k] for k in ("kind", "ring", "host", "step") if r.get(k)}
        if r.get("event") == "action_begin":
            yield {"event": r.get("kind"), **fields}
        elif r.get("event") == "action_done":
            if r.get("kind") == "judge":
                yield {
                    "event": "gate",
                    "ring": r.get("ring"),
                    "passed": bool(r.get("passed")),
                    "checks": (r.get("verdict") or {}).get("checks", []),
                }
            yield {"event": "done", **fields}
        elif r.get("event") == "action_failed":
            yield {"event": "failed", "host": r.get("host"), "reason": r.get("reason", "")}


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


def render(view: RunView, now: float) -> Table:
    """One table: a header row per ring (its state, the bake countdown, the gate), then its hosts."""
    from rich.table import Table
    from rich.text import Text

    title = Text.assemble(
        "upgrade", f" {view.run_id}" if view.run_id else "", ": ", (view.status(), _style(view.status()))
    )
    table = Table("ring", "host", "state", "time", "detail", title=title, title_justify="left")
    for ring in view.rings.values():
        seconds = view.elapsed(ring, now)
        clock = "" if seconds is None else f"{seconds:.0f}s left" if ring.state == "baking" else _secs(seconds)
        table.add_row(
            Text(ring.name, "bold"),
            "",
            Text(ring.state, _style(ring.state)),
            clock,
            Text(ring.detail, "red" if ring.state in ("gate FAILED", "failed") else ""),
        )
        for host in (h for h in view.hosts.values() if h.ring == ring.name):
            seconds = view.elapsed(host, now)
            shown = host.error and not host.state.startswith("failed")  # else the state says it already
            detail = Text(f"failed: {host.error}", "red") if shown else Text(host.note, "dim")
            table.add_row(
                "", host.name, Text(host.state, _style(host.state)), "" if seconds is None else _secs(seconds), detail
            )
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
    history: Iterable[dict[str, Any]] = (),
    also: Callable[[dict[str, Any]], None] | None = None,
) -> Iterator[Callable[[dict[str, Any]], None]]:
    """A sink for the executor's events that keeps ``render(view)`` live on ``console``; ``history`` (a resumed
    run's journal) is applied first, ``also`` gets every event too (the JSON lines of ``--json``)."""
    import threading
    import time

    from rich.live import Live

    view, lock = RunView(plan, bake_s), threading.Lock()
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
