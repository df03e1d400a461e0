"""The fleet lock: one mutating operation (upgrade, drain, deploy...) per fleet at a time.

An ``flock`` on ``<state>/lock`` is the lock: the kernel drops it when the holder dies, however it dies.
``<state>/lock.json`` says who holds it (user, pid, host, command, since, run id). A record left behind by a
holder that is gone is a stale lock: it is reported, and taken over only when asked (``--force-unlock``) or by
``upgrade --resume`` of the very run that left it.
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
from datetime import UTC, datetime

from fleetctl.errors import ConfigError, LockHeld
from fleetctl.services.files import write_atomic


def _record(command: str, run_id: str | None) -> dict:
    return {
        "schema": "fleetctl.lock/v1",
        "user": getpass.getuser(),
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "run_id": run_id,
        "since": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


def read_holder(state_dir: str) -> dict | None:
    try:
        with open(os.path.join(state_dir, "lock.json"), encoding="utf-8") as f:
            holder = json.load(f)
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def describe(holder: dict | None) -> str:
    if not holder:
        return "another fleetctl process"
    return (
        f"{holder.get('user')} (pid {holder.get('pid')} on {holder.get('host')}) running "
        f"'{holder.get('command')}' since {holder.get('since')}"
    )


@contextmanager
def fleet_lock(state_dir: str, command: str, *, force: bool = False, run_id: str | None = None) -> Iterator[dict]:
    """Hold the fleet lock for the ``with`` body, or raise LockHeld (exit 6) naming the holder."""
    fd = open_lock_file(os.path.join(state_dir, "lock"))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(
                f"the fleet is locked by {describe(read_holder(state_dir))}",
                hint="wait for it to finish; if that process is really gone, use --force-unlock",
            ) from None
        stale = read_holder(state_dir)
        if stale and not force and not (run_id and stale.get("run_id") == run_id):
            raise LockHeld(
                f"stale fleet lock left by {describe(stale)}: that process is gone",
                hint="check what it left half-done (fleetctl status, fleetctl history), "
                "then take the lock over with --force-unlock",
            )
        record = _record(command, run_id)
        write_atomic(os.path.join(state_dir, "lock.json"), json.dumps(record).encode())
        try:
            yield {"record": record, "took_over": stale}
        finally:
            _remove(os.path.join(state_dir, "lock.json"))
    finally:
        os.close(fd)  # closing the descriptor releases the flock


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
        write_atomic(os.path.join(state_dir, "lock.json"), json.dumps({**holder, "run_id": run_id}).encode())


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def command_line() -> str:
    return " ".join(["fleetctl", *sys.argv[1:]])[:200]
