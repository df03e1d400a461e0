"""The local vllm-router: start it (under fleetctl's supervisor), stop it, ask it how it is, and make its workers
the fleet's intended set.

``router up`` starts ``fleetctl router run`` (services/supervisor.py) detached, in its own session; the supervisor
starts vllm-router, registers the intended set at every start and restarts it when it dies. ``router down`` stops
the supervisor, which stops vllm-router first. vllm-router keeps workers in memory only; ``sync_router`` makes
them the intended set, on (url, model) in multi-model mode.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from fleetctl.core.fleet import Fleet
from fleetctl.core.fleetstate import FleetState
from fleetctl.core.router import (
    Mode,
    intended_workers,
    needed_mode,
    needs_restart,
    normalise_url,
    router_address,
)
from fleetctl.errors import ConfigError, RouterError, UsageError
from fleetctl.services.clock import SYSTEM, Clock
from fleetctl.services.lock import taking_turns
from fleetctl.services.poll import ROUTER_START, poll
from fleetctl.services.router_process import alive, command_line, ours, runs_recorded_args, start_ticks, terminate
from fleetctl.services.router_sync import held_workers, running_mode, sync_router
from fleetctl.services.supervisor import (
    LOG,
    RECORD_SCHEMA,
    live_status,
    read_json,
    record_path,
    status_path,
)
from fleetctl.transport.router import RouterClient

ROUTER_LOCK = "router.lock"
STATUS_SCHEMA = "fleetctl.router-status/v1"
UP_TIMEOUT_S = 90.0  # the supervisor's start, vllm-router's (slow on a loaded machine) and the registrations
SUPERVISOR_STOP_S = 25.0  # it stops vllm-router first (up to 10 s, then SIGKILL)
LOG_TAIL_LINES = 8
__all__ = ["find_executable", "held_workers", "router_down", "router_up", "running_mode", "sync_router"]


@dataclass(frozen=True)
class RouterProcess:
    """A router fleetctl started: ``started`` is False when ``router_up`` found it already running."""

    url: str
    pid: int  # the supervisor's
    args: tuple[str, ...]
    log: str
    since: str
    started: bool
    stale_cleaned: bool = False
    router_pid: int | None = None
    mode: str = "single"
    mode_change: str | None = None  # why it was restarted in another mode, when it was


@dataclass(frozen=True)
class RouterStop:
    url: str
    pid: int | None
    was_running: bool  # False: nothing to stop (no record, or a stale one, now removed)
    killed: bool = False  # it ignored SIGTERM and got SIGKILL


def _log_path(fleet: Fleet) -> str:
    return os.path.join(fleet.state_dir, LOG)


def _read_record(fleet: Fleet) -> dict[str, Any] | None:
    return read_json(record_path(fleet), RECORD_SCHEMA)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
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


# -- up / down ---------------------------------------------------------------------------------------------------


def router_up(fleet: Fleet, state: FleetState, clock: Clock = SYSTEM) -> RouterProcess:
    """Start the fleet's supervised router, or report the one already running; idempotent. A running router in
    single-model mode on a fleet that needs multi-model mode is restarted in it (``mode_change`` says why)."""
    with taking_turns(os.path.join(fleet.state_dir, ROUTER_LOCK)):  # up and down take turns
        return _up(fleet, state, clock)


def _up(fleet: Fleet, state: FleetState, clock: Clock) -> RouterProcess:
    url = fleet.router.url
    record = _read_record(fleet)
    if record is not None and ours(record):
        return _running(fleet, record, state, clock)
    stale = os.path.exists(record_path(fleet))
    _remove(record_path(fleet))  # a stale record: that process is gone, or its pid is another process's now
    _remove(status_path(fleet))
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
    find_executable()  # the supervisor would fail on it: say so here, with the hint
    proc, offset = _spawn_supervisor(fleet)
    sup = _wait_ready(fleet, proc, offset, clock)
    return _process(fleet, _read_record(fleet) or {}, sup, started=True, stale=stale)


def _spawn_supervisor(fleet: Fleet) -> tuple[subprocess.Popen[bytes], int]:
    os.makedirs(fleet.state_dir, exist_ok=True)
    argv = [sys.executable, "-m", "fleetctl", "--fleet", os.path.abspath(fleet.path), "router", "run"]
    with open(_log_path(fleet), "ab") as log:
        offset = log.tell()
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True
        )
    return proc, offset


def _wait_ready(fleet: Fleet, proc: subprocess.Popen[bytes], offset: int, clock: Clock) -> dict[str, Any]:
    """The supervisor's status once vllm-router answers with the intended set registered; RouterError (with the
    log's last lines) when the supervisor exits, vllm-router's first start fails, or time runs out."""

    def ready() -> dict[str, Any] | bool | None:
        if proc.poll() is not None:
            return False
        doc = read_json(status_path(fleet), "fleetctl.router-supervisor/v1")
        if doc is None or doc.get("supervisor_pid") != proc.pid:
            return None
        if doc.get("phase") == "ready":
            return doc
        last = doc.get("last_restart") or {}
        return False if str(last.get("reason", "")).endswith("while starting") else None

    answer = poll(ready, UP_TIMEOUT_S, ROUTER_START, clock)
    if isinstance(answer, dict):
        return answer
    doc = read_json(status_path(fleet), "fleetctl.router-supervisor/v1") or {}
    if proc.poll() is None:
        terminate(proc.pid, start_ticks(proc.pid), SUPERVISOR_STOP_S)
    if answer is None:
        why = f"did not answer with its workers registered within {UP_TIMEOUT_S:g}s"
    elif doc.get("last_restart"):
        why = f"vllm-router {doc['last_restart']['reason']}"
    else:
        why = f"its supervisor exited with status {proc.returncode} while starting"
    raise _start_error(fleet, why, offset)


def _start_error(fleet: Fleet, why: str, offset: int) -> RouterError:
    tail = _log_tail(_log_path(fleet), offset)
    hint = f"full log: {_log_path(fleet)}"
    if "to become healthy" in tail:
        hint = (
            "vllm-router does not start while none of its upstreams answers /health: check the serving hosts "
            f"(fleetctl status), or drain the dead ones; {hint}"
        )
    return RouterError(fleet.router.url, why + (f"; its last log lines:\n{tail}" if tail else ""), hint=hint)


def _running(fleet: Fleet, record: dict[str, Any], state: FleetState, clock: Clock) -> RouterProcess:
    url, pid = fleet.router.url, record["pid"]
    if normalise_url(record.get("url", "")) != normalise_url(url):
        raise RouterError(
            url,
            f"not started: this fleet's router is running at {record.get('url')} (pid {pid})",
            hint="fleetctl router down, then up again",
        )
    sup = live_status(fleet)
    needed = needed_mode(fleet, state)
    moving = sup is not None and sup.get("phase") != "ready" and "-model mode now" in str(sup.get("last_restart"))
    if sup is not None and (needs_restart(str(sup.get("mode")), needed) or moving):
        # the supervisor notices on its own within a second; wait until it runs in the mode the fleet needs
        change = f"restarted in {needed}-model mode: the fleet serves {_model_count(state)} models"
        return _process(fleet, record, _wait_mode(fleet, needed, clock), started=False, change=change)
    try:
        with RouterClient(url) as client:
            client.health()
    except RouterError as e:
        if sup is None:
            raise RouterError(
                url,
                f"was started by fleetctl (pid {pid}) but does not answer: {e.reason}",
                hint=f"see {_log_path(fleet)}; fleetctl router down, then up again",
            ) from e
    return _process(fleet, record, sup, started=False)


def _model_count(state: FleetState) -> int:
    return len({w.model for w in intended_workers(state) if w.model})


def _wait_mode(fleet: Fleet, mode: Mode, clock: Clock) -> dict[str, Any] | None:
    def ready() -> dict[str, Any] | None:
        doc = live_status(fleet)
        return doc if doc is not None and doc.get("mode") == mode and doc.get("phase") == "ready" else None

    doc = poll(ready, UP_TIMEOUT_S, ROUTER_START, clock)
    if doc is None:
        raise RouterError(fleet.router.url, f"was not restarted in {mode}-model mode within {UP_TIMEOUT_S:g}s")
    return doc


def _process(
    fleet: Fleet,
    record: dict[str, Any],
    sup: dict[str, Any] | None,
    *,
    started: bool,
    stale: bool = False,
    change: str | None = None,
) -> RouterProcess:
    router = (sup or {}).get("router") or {}
    return RouterProcess(
        url=fleet.router.url,
        pid=int(record.get("pid", 0)),
        args=tuple(record.get("args", ())),
        log=_log_path(fleet),
        since=str(record.get("since", "")),
        started=started,
        stale_cleaned=stale,
        router_pid=router.get("pid"),
        mode=str((sup or {}).get("mode", "single")),
        mode_change=change,
    )


def router_down(fleet: Fleet) -> RouterStop:
    """Stop the supervised router fleetctl started for this fleet (the supervisor stops vllm-router first);
    nothing to do when none runs (a stale record goes)."""
    with taking_turns(os.path.join(fleet.state_dir, ROUTER_LOCK)):  # up and down take turns
        return _down(fleet)


def _down(fleet: Fleet) -> RouterStop:
    record = _read_record(fleet)
    sup = read_json(status_path(fleet), "fleetctl.router-supervisor/v1")
    if record is None or not alive(record):
        _stop_orphan(sup)
        _remove(record_path(fleet))
        _remove(status_path(fleet))
        return RouterStop(url=fleet.router.url, pid=None, was_running=False)
    if not runs_recorded_args(record):
        _refuse_foreign(fleet, record)
    killed = terminate(record["pid"], record["start_ticks"], SUPERVISOR_STOP_S)
    _stop_orphan(sup)  # a supervisor killed before it could stop vllm-router leaves it behind
    _remove(record_path(fleet))
    _remove(status_path(fleet))
    return RouterStop(url=record.get("url", fleet.router.url), pid=record["pid"], was_running=True, killed=killed)


def _stop_orphan(sup: dict[str, Any] | None) -> None:
    router = (sup or {}).get("router")
    if isinstance(router, dict) and ours(router):
        terminate(router["pid"], router["start_ticks"])


def _refuse_foreign(fleet: Fleet, record: dict[str, Any]) -> None:
    """The record's pid and start time match a live process that does not run the recorded command: leave it."""
    shown = " ".join(" ".join(command_line(record["pid"]) or ["(unreadable)"]).split())
    raise ConfigError(
        f"pid {record['pid']} runs '{shown[:120]}', not the vllm-router fleetctl started; it was left alone",
        path=record_path(fleet),
        hint="if no router of this fleet runs any more, remove that file; stop that process by hand if it is one",
    )
