"""The upgrade's decisions around the state machine (``fleetctl.core.rollout``), pure and tested row by row:
which targets a plan takes, which preflight failures are left out, whether a new run may start, what a rollback
goes back to, and what the canary gate compares a ring with.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fleetctl.core.fleet import Host
from fleetctl.core.fleetstate import FleetState
from fleetctl.core.fleetstate import url_port as fleetstate_url_port
from fleetctl.core.metrics import MetricsSample, WindowFigures, window
from fleetctl.core.records import Outcome, Record, RecordKind, RunFinished, RunStarted
from fleetctl.errors import CheckFailed, HostsFailed, UsageError

BASELINE_HOSTS = "baseline hosts"
OLD_FIGURES = "old version's figures recorded in this run"
REBAKE_MAX_S = 10.0  # a run resumed between bake and judge bakes again, this long at most

Records = Sequence[Record]


# -- targets and preflight -------------------------------------------------------------------------------------


def serving_now(state: FleetState) -> tuple[str, ...]:
    """Hosts serving now: recorded as serving and not drained."""
    return tuple(h for h in state.serving if not state.is_drained(h))


@dataclass(frozen=True)
class Targets:
    chosen: tuple[Host, ...]  # the targets that serve now, in their order
    skipped: tuple[str, ...]  # targets not serving now (never deployed, or drained): left alone
    serving: int  # hosts serving now, targets or not


def serving_targets(targets: Iterable[Host], serving: Iterable[str]) -> Targets:
    now = set(serving)
    targets = tuple(targets)
    return Targets(
        chosen=tuple(h for h in targets if h.name in now),
        skipped=tuple(h.name for h in targets if h.name not in now),
        serving=len(now),
    )


def after_preflight(
    targets: tuple[Host, ...], bad: Iterable[str], *, skip_incompatible: bool, check_failed: bool, profile: str
) -> tuple[Host, ...]:
    """The targets the run keeps after the preflight found ``bad`` hosts: all of them when none is bad; without
    the bad ones with ``skip_incompatible``; else CheckFailed (a rule failed) or HostsFailed (hosts unprobed)."""
    bad = set(bad)
    if not bad:
        return targets
    if not skip_incompatible:
        error = CheckFailed if check_failed else HostsFailed
        raise error(
            f"preflight: {', '.join(sorted(bad))} cannot run profile {profile}; nothing was changed",
            hint="fix them, or leave them out with --skip-incompatible",
        )
    kept = tuple(h for h in targets if h.name not in bad)
    if not kept:
        raise CheckFailed("preflight: no target host can run the profile")
    return kept


# -- runs: unfinished, new, rollback ---------------------------------------------------------------------------


HEADS = {"upgrade": RecordKind.RUN_STARTED, "maintain": RecordKind.MAINTAIN_STARTED}


def run_kind(records: Records) -> str | None:
    """``upgrade`` or ``maintain``, from the run's head (None: no head that reads)."""
    first = records[0].kind if records else None
    return next((kind for kind, head in HEADS.items() if head is first), None)


def is_unfinished(records: Records, kind: str | None = None) -> bool:
    """Started (as a run of ``kind``, when given) and not finished."""
    started = run_kind(records) is not None and (kind is None or run_kind(records) == kind)
    return started and not any(r.kind is RecordKind.RUN_FINISHED for r in records)


def unfinished(runs: Iterable[tuple[str, Records]]) -> tuple[str, Records] | None:
    """The newest run that started and did not finish, if any (``runs`` newest first)."""
    return next(((run_id, records) for run_id, records in runs if is_unfinished(records)), None)


def head(records: Records) -> RunStarted | None:
    """The run's first record, when it is its ``run_started``."""
    return records[0].body if records and isinstance(records[0].body, RunStarted) else None


def outcome(records: Records) -> Outcome | None:
    """How the run finished (its last ``run_finished``), or None while unfinished."""
    found = [r.body.outcome for r in records if isinstance(r.body, RunFinished)]
    return found[-1] if found else None


def new_run_refusal(pending_run_id: str | None, kind: str | None = "upgrade") -> str | None:
    """Why a new run may not start: an earlier one is unfinished (resume, abort or abandon it first)."""
    if pending_run_id is None:
        return None
    if kind == "maintain":
        return (
            f"maintenance {pending_run_id} did not finish: continue it with fleetctl maintain --resume, "
            "or end it with fleetctl maintain --abort"
        )
    return (
        f"run {pending_run_id} did not finish: continue it with fleetctl upgrade --resume, "
        "or roll back what it changed with --abort"
    )


def last_completed(runs: Iterable[tuple[str, Records]], pool: str | None = None) -> RunStarted:
    """The head (``run_started``) of the newest run that completed (within ``pool``, when given)."""
    for _run_id, records in runs:
        first = head(records)
        if first is None or outcome(records) is not Outcome.COMPLETED:
            continue
        if pool is None or (first.pool is not None and first.pool.name == pool):
            return first
    raise UsageError("no completed upgrade to roll back" + (f" in pool {pool}" if pool else ""))


@dataclass(frozen=True)
class RollbackTarget:
    hosts: tuple[str, ...]
    profile: str
    image: str


def rollback_target(started: RunStarted, hosts: tuple[str, ...]) -> RollbackTarget:
    """What ``fleetctl rollback`` goes back to: the one profile and image ``hosts`` ran before the run."""
    previous = [started.previous[h]["record"] for h in hosts]
    versions = {(p["profile"], p["image"]) for p in previous}
    if len(versions) != 1:
        raise UsageError(
            "the hosts of the last run ran different versions before it: roll back by hand with "
            "fleetctl upgrade --profile ... --limit ..."
        )
    profile, image = versions.pop()
    return RollbackTarget(hosts, profile, image)


# -- the gate's inputs -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgeInputs:
    ring: dict[str, WindowFigures]  # the ring's hosts that answered, over the bake window
    unhealthy: tuple[str, ...]  # the ring's hosts that did not answer after the bake
    baseline_hosts: tuple[str, ...]  # serving hosts not upgraded by this run that answered both times
    baseline: WindowFigures | None  # their figures over the window (journaled; adds to the old version's)
    compare_with: WindowFigures | None  # what the ring is judged against: the baseline, else the old figures
    source: str  # what ``compare_with`` is, for the gate's words


def judge_inputs(
    ring_hosts: tuple[str, ...],
    before: Mapping[str, MetricsSample],
    after: Mapping[str, MetricsSample],
    upgraded: Iterable[str],
    serving: Iterable[str],
    old: WindowFigures | None,
) -> JudgeInputs:
    """The ring against the hosts still on the old version over the same window; with none left (the last ring),
    against the old version's figures recorded in this run."""
    upgraded, serving = set(upgraded), set(serving)
    ring = {h: window(before[h], after[h]) for h in ring_hosts if h in before and h in after}
    chosen = tuple(h for h in before if h in after and h not in upgraded and h in serving)
    baseline = sum_figures(window(before[h], after[h]) for h in chosen) if chosen else None
    return JudgeInputs(
        ring=ring,
        unhealthy=tuple(h for h in ring_hosts if h not in after),
        baseline_hosts=chosen,
        baseline=baseline,
        compare_with=baseline if baseline is not None else old,
        source=BASELINE_HOSTS if baseline is not None else OLD_FIGURES,
    )


def with_baseline(old: WindowFigures | None, baseline: WindowFigures | None) -> WindowFigures | None:
    """The old version's figures after a ring judged against ``baseline`` hosts."""
    if baseline is None:
        return old
    return baseline if old is None else old.plus(baseline)


def rebake_s(bake_s: float) -> float:
    """A run resumed between its bake and its judge has no bake-start samples: it bakes again, this long."""
    return min(bake_s, REBAKE_MAX_S)


def sum_figures(figures: Iterable[WindowFigures]) -> WindowFigures:
    total = WindowFigures()
    for f in figures:
        total = total.plus(f)
    return total


def reference_window(
    opening: Mapping[str, MetricsSample], opening_at: float, now: Mapping[str, MetricsSample], now_at: float
) -> dict[str, Any] | None:
    """The old version's figures from the opening samples to ``now`` (journaled), or None without traffic."""
    total = sum_figures(window(opening[name], now[name]) for name in sorted(opening.keys() & now.keys()))
    if total.requests <= 0:
        return None
    return {**total.to_dict(), "seconds": round(now_at - opening_at, 3)}


def url_port(url: str, default: int) -> int:
    """The port of a serving URL as ``core.fleetstate.url_port`` reads it, else ``default``; never a crash."""
    try:
        return fleetstate_url_port(url)
    except ValueError:
        return default
