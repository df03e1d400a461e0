"""The run journal: one JSON line per step, flushed and fsynced before the step acts.

``<state>/runs/<run_id>.jsonl``. A crash leaves at worst a torn last line, which reading ignores.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from datetime import UTC
from typing import Any

from fleetctl.core.timefmt import utc_iso
from fleetctl.services.clock import SYSTEM, Clock

SCHEMA = "fleetctl.journal/v1"


def new_run_id(clock: Clock = SYSTEM) -> str:
    return clock.utc_now().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def runs_dir(state_dir: str) -> str:
    return os.path.join(state_dir, "runs")


class Journal:
    def __init__(self, state_dir: str, run_id: str, clock: Clock = SYSTEM) -> None:
        self.run_id, self.clock = run_id, clock
        self.path = os.path.join(runs_dir(state_dir), f"{run_id}.jsonl")
        os.makedirs(runs_dir(state_dir), exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        _fsync_dir(runs_dir(state_dir))

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {
            "schema": SCHEMA,
            "at": utc_iso(self.clock.utc_now(), millis=True),
            "run_id": self.run_id,
            "event": event,
            **fields,
        }
        os.write(self._fd, (json.dumps(record, sort_keys=True) + "\n").encode())
        os.fsync(self._fd)
        return record

    def close(self) -> None:
        os.close(self._fd)


def read_journal(path: str) -> list[dict[str, Any]]:
    """Every complete record in order; a torn or garbled last line (a crash mid-write) is dropped."""
    records = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("schema") == SCHEMA:
                records.append(record)
    return records


def list_runs(state_dir: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(run_id, records) for every run, newest first."""
    directory = runs_dir(state_dir)
    if not os.path.isdir(directory):
        return
    for name in sorted(os.listdir(directory), reverse=True):
        if name.endswith(".jsonl"):
            yield name[:-6], read_journal(os.path.join(directory, name))


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
