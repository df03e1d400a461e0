"""The local vllm-router: start it, stop it, ask it how it is, and make its upstreams the fleet's intended set.

fleetctl starts the router detached (its own session) and keeps ``<state>/router.json`` (pid, the process's
start time, arguments) and ``<state>/router.log``. The pid alone is not trusted: the start time read from
``/proc`` must match, so a pid reused by another process is never taken for our router, and the process's command
line must end with the recorded arguments, so a hand-edited record never gets another process signalled.
vllm-router keeps upstreams in memory only; ``sync_router`` is how a restarted router gets them back.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fleetctl.core.fleet import Fleet
from fleetctl.core.fleetstate import FleetState, intended_upstreams
from fleetctl.core.router import RouterDiff, describe_mismatch, normalise_url, plan_launch, plan_sync, router_address
from fleetctl.errors import ConfigError, RouterError, UsageError
from fleetctl.services.clock import SYSTEM, Clock
from fleetctl.services.files import write_atomic
from fleetctl.services.fleetstate import load_state
from fleetctl.services.lock import open_lock_file
from fleetctl.services.poll import PROCESS_EXIT, ROUTER_START, poll
from fleetctl.transport.router import RouterClient

ROUTER_RECORD = "router.json"
ROUTER_LOG = "router.log"
ROUTER_LOCK = "router.lock"
RECORD_SCHEMA = "fleetctl.router/v1"
STATUS_SCHEMA = "fleetctl.router-status/v1"
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 8
ROUTER_PROGRAM = "vllm-router"
ROUTER_TITLE = "vllm::router"  # vllm_router.launch_router sets this process title, overwriting its argv


@dataclass(frozen=True)
class RouterProcess:
    """A router fleetctl started: ``started`` is False when ``router_up`` found it already running."""

    url: str
    pid: int
    args: tuple[str, ...]
    log: str
    since: str
    started: bool
    stale_cleaned: bool = False


@dataclass(frozen=True)
class RouterStop:
    url: str
    pid: int | None
    was_running: bool  # False: nothing to stop (no record, or a stale one, now removed)
    killed: bool = False  # it ignored SIGTERM for STOP_TIMEOUT_S and got SIGKILL


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _record_path(fleet: Fleet) -> str:
    return os.path.join(fleet.state_dir, ROUTER_RECORD)


def _log_path(fleet: Fleet) -> str:
    return os.path.join(fleet.state_dir, ROUTER_LOG)


# -- the process -------------------------------------------------------------------------------------------------


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22); None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the name in parentheses may hold spaces
    if fields[0] == "Z":
        _reap(pid)
        return None
    return int(fields[19])


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child: init reaps it


def _alive(record: dict[str, Any]) -> bool:
    """The recorded process still runs: the same pid with the same start time."""
    pid, ticks = record.get("pid"), record.get("start_ticks")
    return type(pid) is int and pid > 1 and type(ticks) is int and _start_ticks(pid) == ticks


def _command_line(pid: int) -> list[str] | None:
    """The process's arguments (/proc/PID/cmdline); None when they cannot be read."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return [arg.decode("utf-8", "surrogateescape") for arg in raw.split(b"\0")[:-1]]


def _runs_recorded_args(record: dict[str, Any]) -> bool:
    """The live process runs the command fleetctl started: its command line ends with the recorded argv (a
    script's interpreter comes first when vllm-router is a Python entry point), or, when the recorded program
    is vllm-router, reads as the title vllm-router gives itself once started (it overwrites its argv with
    ``setproctitle("vllm::router")``)."""
    args = record.get("args")
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        return False
    cmdline = _command_line(record["pid"])
    if cmdline is None:
        return False
    if cmdline[-len(args) :] == args:
        return True
    return os.path.basename(args[0]) == ROUTER_PROGRAM and " ".join(cmdline).strip() == ROUTER_TITLE


def _ours(record: dict[str, Any] | None) -> bool:
    """The record names a live process that is the router fleetctl started (pid, start time, command line)."""
    return record is not None and _alive(record) and _runs_recorded_args(record)


def _read_record(fleet: Fleet) -> dict[str, Any] | None:
    try:
        with open(_record_path(fleet), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("schema") == RECORD_SCHEMA else None


def _remove_record(fleet: Fleet) -> None:
    try:
        os.unlink(_record_path(fleet))
    except FileNotFoundError:
        pass


def find_executable() -> str:
    """``vllm-router`` beside this Python (the same virtualenv) first, then on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "vllm-router")
    found = beside if os.access(beside, os.X_OK) else shutil.which("vllm-router")
    if not found:
        raise UsageError("vllm-router is not installed", hint="pip install 'fleetctl[router]'")
    return found


def _port_in_use(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _free_metrics_port() -> int:
    """A free port for the router's Prometheus listener, which binds 127.0.0.1. It must get one of its own:
    its default, 29000, makes a second router on the machine die at start ("Address already in use")."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_tail(path: str, offset: int) -> str:
    """The last lines the router wrote since ``offset``, without terminal colours."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    from rich.text import Text

    lines = [Text.from_ansi(ln).plain.rstrip() for ln in text.splitlines() if ln.strip()]
    return "\n".join(lines[-LOG_TAIL_LINES:])


# -- up / down / status ------------------------------------------------------------------------------------------


@contextmanager
def _process_lock(fleet: Fleet) -> Iterator[None]:
    """Two ``router up``/``down`` at once take turns, so neither removes the other's record."""
    fd = open_lock_file(os.path.join(fleet.state_dir, ROUTER_LOCK))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def router_up(fleet: Fleet, state: FleetState) -> RouterProcess:
    """Start the fleet's router with the intended upstreams, or report the one already running; idempotent."""
    with _process_lock(fleet):
        return _up(fleet, state)


def _up(fleet: Fleet, state: FleetState) -> RouterProcess:
    url = fleet.router.url
    record = _read_record(fleet)
    if record is not None and _ours(record):
        return _running(fleet, record)
    stale = os.path.exists(_record_path(fleet))
    _remove_record(fleet)  # a stale record: that process is gone, or its pid is another process's now
    try:
        host, port = router_address(url)
    except ValueError as e:
        raise UsageError(str(e), hint="set [router] url in the fleet file") from e
    if _port_in_use(host, port):
        raise RouterError(
            url,
            f"cannot be started: port {port} on {host} is already in use by a process fleetctl did not start",
            hint="stop that process, or change [router] url",
        )
    launch = plan_launch(url, intended_upstreams(state), metrics_port=_free_metrics_port())
    argv = [find_executable(), *launch.args]
    proc = _spawn(fleet, argv)
    return RouterProcess(
        url=url,
        pid=proc.pid,
        args=tuple(argv),
        log=_log_path(fleet),
        since=_now(),
        started=True,
        stale_cleaned=stale,
    )


def _running(fleet: Fleet, record: dict[str, Any]) -> RouterProcess:
    url, pid = fleet.router.url, record["pid"]
    if normalise_url(record.get("url", "")) != normalise_url(url):
        raise RouterError(
            url,
            f"not started: this fleet's router is running at {record.get('url')} (pid {pid})",
            hint="fleetctl router down, then up again",
        )
    try:
        with RouterClient(url) as client:
            client.health()
    except RouterError as e:
        raise RouterError(
            url,
            f"was started by fleetctl (pid {pid}) but does not answer: {e.reason}",
            hint=f"see {_log_path(fleet)}; fleetctl router down, then up again",
        ) from e
    return RouterProcess(
        url=url,
        pid=pid,
        args=tuple(record.get("args", ())),
        log=_log_path(fleet),
        since=record.get("since", ""),
        started=False,
    )


def _spawn(fleet: Fleet, argv: list[str]) -> subprocess.Popen:
    os.makedirs(fleet.state_dir, exist_ok=True)
    log_path = _log_path(fleet)
    with open(log_path, "ab") as log:
        log.write(f"\n--- fleetctl router up {_now()}: {' '.join(argv)}\n".encode())
        log.flush()
        offset = log.tell()
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True
        )
    ticks = _start_ticks(proc.pid)
    record = {
        "schema": RECORD_SCHEMA,
        "url": fleet.router.url,
        "pid": proc.pid,
        "start_ticks": ticks,
        "args": argv,
        "since": _now(),
        "log": log_path,
    }
    write_atomic(_record_path(fleet), (json.dumps(record, indent=2) + "\n").encode())
    try:
        _wait_healthy(fleet.router.url, proc, log_path, offset)
    except BaseException:
        _terminate(proc.pid, ticks)
        _remove_record(fleet)
        raise
    return proc


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log_path: str, offset: int, clock: Clock = SYSTEM) -> None:
    with RouterClient(url, timeout_s=1) as client:

        def started() -> bool | None:
            """True once it answers /health; False when it exited (no use waiting); None: ask again."""
            if proc.poll() is not None:
                return False
            try:
                client.health()
                return True
            except RouterError:
                return None

        answer = poll(started, START_TIMEOUT_S, ROUTER_START, clock)
    if answer:
        return
    why = (
        f"exited with status {proc.returncode} while starting"
        if answer is False
        else f"did not answer /health within {START_TIMEOUT_S:g}s"
    )
    tail = _log_tail(log_path, offset)
    hint = f"full log: {log_path}"
    if "to become healthy" in tail:
        hint = (
            "vllm-router does not start while none of its upstreams answers /health: check the serving hosts "
            f"(fleetctl status), or drain the dead ones; {hint}"
        )
    raise RouterError(url, why + (f"; its last log lines:\n{tail}" if tail else ""), hint=hint)


def _terminate(pid: int, ticks: int | None) -> bool:
    """SIGTERM, wait up to STOP_TIMEOUT_S, then SIGKILL; True when it had to be killed."""
    if _signal_and_wait(pid, ticks, signal.SIGTERM, STOP_TIMEOUT_S):
        return False
    _signal_and_wait(pid, ticks, signal.SIGKILL, 5.0)
    return True


def _signal_and_wait(pid: int, ticks: int | None, sig: int, wait_s: float, clock: Clock = SYSTEM) -> bool:
    """True once that process (pid and start time) is gone."""

    def gone() -> bool:
        return ticks is None or _start_ticks(pid) != ticks

    if gone():
        return True
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return True
    return poll(lambda: True if gone() else None, wait_s, PROCESS_EXIT, clock) is not None


def router_down(fleet: Fleet) -> RouterStop:
    """Stop the router fleetctl started for this fleet; nothing to do when none runs (a stale record goes)."""
    with _process_lock(fleet):
        return _down(fleet)


def _down(fleet: Fleet) -> RouterStop:
    record = _read_record(fleet)
    if record is None or not _alive(record):
        _remove_record(fleet)
        return RouterStop(url=fleet.router.url, pid=None, was_running=False)
    if not _runs_recorded_args(record):
        _refuse_foreign(fleet, record)
    killed = _terminate(record["pid"], record["start_ticks"])
    _remove_record(fleet)
    return RouterStop(url=record.get("url", fleet.router.url), pid=record["pid"], was_running=True, killed=killed)


def _refuse_foreign(fleet: Fleet, record: dict[str, Any]) -> None:
    """The record's pid and start time match a live process that does not run the recorded command: leave it."""
    shown = " ".join(" ".join(_command_line(record["pid"]) or ["(unreadable)"]).split())
    raise ConfigError(
        f"pid {record['pid']} runs '{shown[:120]}', not the vllm-router fleetctl started; it was left alone",
        path=_record_path(fleet),
        hint="if no router of this fleet runs any more, remove that file; stop that process by hand if it is one",
    )


def router_status(fleet: Fleet, state: FleetState | None = None) -> dict[str, Any]:
    """What the router holds next to what the fleet intends (the recorded state unless given one).

    An unreachable router is reported (``reachable: false`` and ``error``), not raised."""
    if state is None:
        state = load_state(fleet)
    record = _read_record(fleet)
    this_fleet = record is not None and normalise_url(str(record.get("url"))) == normalise_url(fleet.router.url)
    managed = record if this_fleet and _ours(record) else None
    intended = sorted(normalise_url(u) for u in intended_upstreams(state))
    status: dict[str, Any] = {
        "schema": STATUS_SCHEMA,
        "url": fleet.router.url,
        "reachable": False,
        "error": None,
        "process": None
        if managed is None
        else {"pid": managed["pid"], "since": managed.get("since"), "log": _log_path(fleet)},
        "upstreams": [],
        "intended": intended,
        "missing": [],
        "unexpected": [],
    }
    try:
        with RouterClient(fleet.router.url) as client:
            workers = client.workers()
    except RouterError as e:
        status["error"] = e.reason
        return status
    diff = plan_sync([w.url for w in workers], intended)
    status.update(
        reachable=True,
        missing=list(diff.add),
        unexpected=list(diff.remove),
        upstreams=[
            {"url": w.url, "healthy": w.healthy, "load": w.load, "intended": normalise_url(w.url) in intended}
            for w in workers
        ],
    )
    return status


# -- sync --------------------------------------------------------------------------------------------------------


def sync_router(fleet: Fleet, state: FleetState, *, apply: bool = True) -> RouterDiff:
    """Make the router's upstreams the intended set: diff, nothing if equal, adds before removes, verify.

    An add that fails stops the sync before any removal, so the router never holds less than it should."""
    intended = intended_upstreams(state)
    with RouterClient(fleet.router.url) as client:
        diff = plan_sync(client.list_workers(), intended)
        if diff.empty or not apply:
            return diff
        _apply_adds(client, diff.add)
        for url in diff.remove:
            client.remove_worker(url)
        mismatch = describe_mismatch(client.list_workers(), intended)
    if mismatch:
        raise RouterError(fleet.router.url, f"does not hold the intended upstreams after sync: {mismatch}")
    return diff


def _apply_adds(client: RouterClient, urls: tuple[str, ...]) -> None:
    failed = []
    for url in urls:
        try:
            client.add_worker(url)
        except RouterError as e:
            failed.append(f"{url} ({e.reason})")
    if failed:
        raise RouterError(
            client.url,
            f"refused to add {'; '.join(failed)}; nothing was removed",
            hint="check that the host serves /health (fleetctl status), then sync again",
        )
