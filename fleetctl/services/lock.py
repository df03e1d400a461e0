"""The fleet lock: one mutating operation (upgrade, drain, deploy...) per fleet at a time.

An ``flock`` on ``<state>/lock`` is the lock: the kernel drops it when the holder dies, however it dies.
``<state>/lock.json`` says who holds it (user, pid, host, command, since, run id). A record left behind by a
holder that is gone is a stale lock: it is reported, and taken over only when asked (``--force-unlock``) or by
``upgrade --resume`` of the very run that left it. A ``lock.json`` that cannot be read is never taken for "no
holder": with the flock held it is a live lock whose holder is unknown, with the flock free a stale lock.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fleetctl.errors import ConfigError, LockHeld
from fleetctl.services.files import write_atomic

LOCK_SCHEMA = "fleetctl.lock/v1"
LOCK_FILE = "lock"
HOLDER_FILE = "lock.json"


@dataclass(frozen=True)
class Holder:
    """What ``lock.json`` says: the holder's record, or why it cannot be read (hand-edited, emptied by a full
    disk); neither when there is no file. An unreadable record is never "no holder": it names an unknown one."""

    record: dict[str, Any] | None = None
    unreadable: str | None = None

    @property
    def present(self) -> bool:
        return self.record is not None or self.unreadable is not None


def _record(command: str, run_id: str | None) -> dict[str, Any]:
    return {
        "schema": LOCK_SCHEMA,
        "user": getpass.getuser(),
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "run_id": run_id,
        "since": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


def read_lock_record(state_dir: str) -> Holder:
    path = os.path.join(state_dir, HOLDER_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return Holder()
    except (OSError, UnicodeDecodeError) as e:
        return Holder(unreadable=f"{path} cannot be read: {getattr(e, 'strerror', None) or 'not UTF-8 text'}")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return Holder(unreadable=f"{path} is {'empty' if not text.strip() else 'not JSON'}")
    if not isinstance(doc, dict) or doc.get("schema") != LOCK_SCHEMA:
        return Holder(unreadable=f"{path} is not a {LOCK_SCHEMA} record")
    return Holder(record=doc)


def read_holder(state_dir: str) -> dict[str, Any] | None:
    """The holder's record when ``lock.json`` holds a readable one."""
    return read_lock_record(state_dir).record


def describe(holder: Holder) -> str:
    if holder.unreadable is not None:
        return f"an unknown holder ({holder.unreadable})"
    if holder.record is None:
        return "another fleetctl process"
    r = holder.record
    return (
        f"{r.get('user')} (pid {r.get('pid')} on {r.get('host')}) running '{r.get('command')}' since {r.get('since')}"
    )


@contextmanager
def fleet_lock(
    state_dir: str, command: str, *, force: bool = False, run_id: str | None = None
) -> Iterator[dict[str, Any]]:
    """Hold the fleet lock for the ``with`` body (it gets the record written to ``lock.json``), or raise LockHeld
    (exit 6) naming the holder, or saying it is unknown when its record cannot be read."""
    fd = open_lock_file(os.path.join(state_dir, LOCK_FILE))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(
                f"the fleet is locked by {describe(read_lock_record(state_dir))}",
                hint="wait for it to finish; if that process is really gone, use --force-unlock",
            ) from None
        _refuse_stale(read_lock_record(state_dir), force, run_id)
        record = _record(command, run_id)
        _write_record(state_dir, record)
        try:
            yield record
        finally:
            _remove(os.path.join(state_dir, HOLDER_FILE))
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _refuse_stale(stale: Holder, force: bool, run_id: str | None) -> None:
    """A record left by a holder that is gone needs consent; ``--resume`` of the run that left it has it."""
    own_run = run_id is not None and stale.record is not None and stale.record.get("run_id") == run_id
    if stale.present and not force and not own_run:
        raise LockHeld(
            f"stale fleet lock left by {describe(stale)}: that process is gone",
            hint="check what it left half-done (fleetctl status, fleetctl history), "
            "then take the lock over with --force-unlock",
        )


def _write_record(state_dir: str, record: dict[str, Any]) -> None:
    path = os.path.join(state_dir, HOLDER_FILE)
    try:
        write_atomic(path, json.dumps(record).encode())
    except OSError as e:
        raise ConfigError(f"cannot be written: {_why(e)}", path=path) from e


def open_lock_file(path: str) -> int:
    """A descriptor to ``flock``, the state folder made if need be; ConfigError (exit 2) naming the path when
    it cannot be (``lock`` is a folder, the state folder is a file, no permission)."""
    folder = os.path.dirname(path) or "."
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot be used as the state folder: {_why(e)}", path=folder) from e
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise ConfigError(f"cannot be opened as a lock file: {_why(e)}", path=path) from e


@contextmanager
def taking_turns(path: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` for the block, waiting for whoever holds it (short critical
    sections: a router start or stop, one router sync)."""
    fd = open_lock_file(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _why(e: OSError) -> str:
    if isinstance(e, IsADirectoryError):
        return "it is a directory"
    if isinstance(e, FileExistsError | NotADirectoryError):
        return "a file that is not a directory is in the way"
    return e.strerror or type(e).__name__


def tag_run(state_dir: str, run_id: str) -> None:
    """Name the run in the holder record (the caller holds the lock), so ``--resume`` knows the lock is its own."""
    holder = read_holder(state_dir)
    if holder is not None and holder.get("pid") == os.getpid():
        _write_record(state_dir, {**holder, "run_id": run_id})


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def command_line() -> str:
    return " ".join(["fleetctl", *sys.argv[1:]])[:200]
