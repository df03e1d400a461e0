"""The run journal: one JSON line per record, flushed and fsynced before the step acts.

``<state>/runs/<run_id>.jsonl``; the records' types and JSON shapes are ``fleetctl.core.records``. A crash can
leave at worst a torn last line. Before appending, a torn line is ended, so it stays a line of its own (read back
and reported as torn by a crash) and the new record is whole. Any other line that does not read as a record is a
problem named by ``FILE:LINE``: acting on such a run is refused (exit 2) until it is resumed from a fixed file or
marked abandoned (``fleetctl upgrade --abandon``).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC

from fleetctl.core.records import SCHEMA, Body, Record, RecordError, RecordKind, parse_record, record_doc
from fleetctl.core.timefmt import utc_iso
from fleetctl.errors import ConfigError
from fleetctl.services.clock import SYSTEM, Clock

__all__ = ["SCHEMA", "Journal", "RunJournal", "list_runs", "new_run_id", "read_journal", "runs_dir"]


def new_run_id(clock: Clock = SYSTEM) -> str:
    return clock.utc_now().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def runs_dir(state_dir: str) -> str:
    return os.path.join(state_dir, "runs")


class Journal:
    def __init__(self, state_dir: str, run_id: str, clock: Clock = SYSTEM) -> None:
        self.run_id, self.clock = run_id, clock
        self.path = os.path.join(runs_dir(state_dir), f"{run_id}.jsonl")
        os.makedirs(runs_dir(state_dir), exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        _fsync_dir(runs_dir(state_dir))
        self._end_torn_line()

    def append(self, body: Body) -> Record:
        record = Record(utc_iso(self.clock.utc_now(), millis=True), self.run_id, body)
        os.write(self._fd, (json.dumps(record_doc(record), sort_keys=True) + "\n").encode())
        os.fsync(self._fd)
        return record

    def close(self) -> None:
        os.close(self._fd)

    def _end_torn_line(self) -> None:
        """A file that does not end in a newline was torn by a crash mid-write: end that line first."""
        size = os.fstat(self._fd).st_size
        if size and os.pread(self._fd, 1, size - 1) != b"\n":
            os.write(self._fd, b"\n")
            os.fsync(self._fd)


@dataclass(frozen=True)
class Problem:
    line: int
    reason: str


@dataclass(frozen=True)
class RunJournal:
    """One run's journal as read: its records in order, lines torn by a crash, and lines that do not read."""

    run_id: str
    path: str
    records: list[Record]
    torn: tuple[int, ...] = ()
    problems: tuple[Problem, ...] = ()
    finished: bool = False  # a run_finished line is there (read leniently: a damaged run can be abandoned)

    def error(self) -> ConfigError | None:
        """The first unreadable line as ``FILE:LINE: reason``, with the way out."""
        if not self.problems:
            return None
        first = self.problems[0]
        return ConfigError(
            first.reason,
            path=self.path,
            line=first.line,
            hint="fix the line, or mark the run abandoned (nothing is changed on the hosts): "
            "fleetctl upgrade --abandon --reason TEXT",
        )


def read_journal(path: str) -> RunJournal:
    """Every record in order; torn lines (a crash mid-write) and unreadable ones are reported, never dropped."""
    records: list[Record] = []
    torn: list[int] = []
    problems: list[Problem] = []
    finished = False
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as e:
                if _torn(line, e):
                    torn.append(number)
                else:
                    problems.append(Problem(number, f"not JSON: {e.msg}"))
                continue
            finished = finished or (isinstance(doc, dict) and doc.get("event") == RecordKind.RUN_FINISHED)
            try:
                records.append(parse_record(doc))
            except RecordError as e:
                problems.append(Problem(number, str(e)))
    run_id = os.path.basename(path).removesuffix(".jsonl")
    return RunJournal(run_id, path, records, tuple(torn), tuple(problems), finished)


def _torn(line: str, error: json.JSONDecodeError) -> bool:
    """A record cut short: JSON that starts as an object and runs out, never JSON that is wrong."""
    text = line.rstrip("\n")
    return text.startswith("{") and (error.pos >= len(text) or error.msg.startswith("Unterminated string"))


def list_runs(state_dir: str) -> Iterator[RunJournal]:
    """Every run's journal, newest first."""
    directory = runs_dir(state_dir)
    if not os.path.isdir(directory):
        return
    for name in sorted(os.listdir(directory), reverse=True):
        if name.endswith(".jsonl"):
            yield read_journal(os.path.join(directory, name))


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
