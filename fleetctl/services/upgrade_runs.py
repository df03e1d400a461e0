"""Runs as their journals tell them: the unfinished one, history, the last completed, and the ways out of a
journal that does not read (``--abandon``, ``--abort`` from what the journal does record)."""

from __future__ import annotations

import json
from typing import Any

from fleetctl.core import rollout_decisions as decisions
from fleetctl.core.fleet import Fleet
from fleetctl.core.records import (
    MaintainStarted,
    Outcome,
    Record,
    RecordError,
    RecordKind,
    RunFinished,
    RunStarted,
    salvage,
)
from fleetctl.core.rollout_plan import RolloutPlan
from fleetctl.errors import ConfigError, UsageError
from fleetctl.services.clock import SYSTEM, Clock
from fleetctl.services.journal import Journal, RunJournal, list_runs


def unfinished_run(fleet: Fleet, *, salvage: bool = False, kind: str | None = None) -> RunJournal | None:
    """The run that did not finish, if any; ConfigError (``FILE:LINE``) when its journal does not read. With
    ``salvage`` (for ``--abort``), a run whose only unreadable line is its head is returned without it when the
    head still holds the plan and the hosts' records from before the run. With ``kind`` (``upgrade`` or
    ``maintain``: the command that continues it), an unfinished run of the other kind is a UsageError naming the
    command that does."""
    found = _unfinished(fleet, salvage)
    if found is not None and kind is not None:
        require_kind(found, kind)
    return found


def require_kind(run: RunJournal, kind: str) -> None:
    """UsageError naming the command that continues ``run`` when it is not of ``kind`` (``upgrade``/``maintain``)."""
    other = unfinished_kind(run)
    if other != kind:
        what = "a maintenance" if other == "maintain" else "an upgrade"
        raise UsageError(
            f"the unfinished run {run.run_id} is {what}: continue it with fleetctl {other} --resume, "
            f"or end it with fleetctl {other} --abort"
        )


def unfinished_kind(run: RunJournal) -> str:
    return "maintain" if decisions.run_kind(run.records) == "maintain" else "upgrade"


def _unfinished(fleet: Fleet, salvage: bool) -> RunJournal | None:
    for run in list_runs(fleet.state_dir):
        if run.finished:
            continue
        error = run.error()
        if error is not None and not (salvage and _salvageable(run)):
            raise error
        if error is not None or decisions.is_unfinished(run.records):
            return run
    return None


def _salvageable(run: RunJournal) -> bool:
    if [p.line for p in run.problems] != [1]:
        return False
    try:
        salvage_head(run.path)
    except (ConfigError, RecordError):
        return False
    return True


def salvage_head(path: str) -> tuple[RolloutPlan, dict[str, Any]]:
    """The plan and previous serving records from a journal's first line, however damaged the rest of it is."""
    with open(path, encoding="utf-8", errors="replace") as f:
        first = f.readline()
    try:
        doc = json.loads(first)
    except json.JSONDecodeError as e:
        raise ConfigError(f"not JSON: {e.msg}", path=path, line=1) from e
    try:
        return salvage(doc)
    except RecordError as e:
        raise ConfigError(str(e), path=path, line=1) from e


def journal_problems(fleet: Fleet) -> list[ConfigError]:
    """The first unreadable line of every run's journal (``history`` shows the rest and says so)."""
    return [e for e in (run.error() for run in list_runs(fleet.state_dir)) if e is not None]


def history(fleet: Fleet) -> list[dict[str, Any]]:
    """One row per run, newest first (``history --json``); a journal that does not read shows what does."""
    rows = []
    for run in list_runs(fleet.state_dir):
        if not run.records:
            continue
        head, finished = decisions.head(run.records), decisions.outcome(run.records)
        maintenance = run.records[0].body if isinstance(run.records[0].body, MaintainStarted) else None
        ended = next((r.at for r in reversed(run.records) if r.kind is RecordKind.RUN_FINISHED), run.records[-1].at)
        rows.append(
            {
                "run_id": run.run_id,
                "started": run.records[0].at,
                "profile": head.profile if head else None,
                "image": head.image if head else None,
                "hosts": len(head.plan.hosts) if head else None,
                "outcome": finished.value if finished else "unfinished",
                "ended": ended,
                **({"pool": head.pool.name} if head and head.pool else {}),  # v1 rows stay as they were
                **(_maintenance_row(maintenance) if maintenance is not None else {}),
            }
        )
    return rows


def _maintenance_row(head: MaintainStarted) -> dict[str, Any]:
    """A maintenance run's history fields (an upgrade's row has no ``kind``: v1 rows stay as they were)."""
    what = [f"run {c}" for c in head.commands] + (["reboot"] if head.reboot else [])
    return {
        "kind": "maintain",
        "hosts": len(head.plan.hosts),
        "profile": None,
        "image": None,
        "maintenance": "; ".join(what),
        **({"pool": head.pool} if head.pool else {}),
    }


def last_completed(fleet: Fleet, pool: str | None = None) -> RunStarted:
    """The head of the newest completed run (of ``pool``, when given)."""
    runs = ((run.run_id, run.records) for run in list_runs(fleet.state_dir))
    return decisions.last_completed(runs, pool)


def abandon_run(fleet: Fleet, reason: str, *, force_unlock: bool = False, clock: Clock = SYSTEM) -> tuple[str, Record]:
    """Mark the unfinished run abandoned (``run_finished``, outcome ``abandoned``, the reason), under the fleet
    lock: nothing is done on the hosts, new runs are allowed again. Works on a journal that does not read, and
    appends only, so nothing in it is lost."""
    from fleetctl.services.lock import command_line, fleet_lock

    pending = next((run for run in list_runs(fleet.state_dir) if not run.finished), None)
    if pending is None or (not pending.problems and not decisions.is_unfinished(pending.records)):
        raise UsageError("no unfinished run to abandon")
    with fleet_lock(fleet.state_dir, command_line(), force=force_unlock, run_id=pending.run_id):
        journal = Journal(fleet.state_dir, pending.run_id, clock)
        try:
            return pending.run_id, journal.append(RunFinished(Outcome.ABANDONED, reason))
        finally:
            journal.close()
