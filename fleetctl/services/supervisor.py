"""``fleetctl router run``: vllm-router in the foreground, restarted when it dies, its intended set registered at
every start.

vllm-router keeps its workers in memory only, so every start (a crash, ``kill -9``, an OOM kill, a change of
mode) is followed by registering the intended set as soon as it answers. The supervisor writes two files in the
state folder: ``router.json`` (its own pid, start time and command line: what ``router down`` signals) and
``router-supervisor.json`` (vllm-router's pid, the mode, the restarts and the last one's reason: what ``router
status`` shows and what ``drain``/``router sync`` look at to wait while a restart is under way). On SIGTERM or
SIGINT it stops vllm-router first, then removes both files and returns.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fleetctl.core.fleet import Fleet
from fleetctl.core.router import Mode, needed_mode, plan_launch, router_address
from fleetctl.core.supervision import death_reason, restart_delay
from fleetctl.core.timefmt import utc_iso
from fleetctl.errors import FleetError, LockHeld, RouterError, UsageError
from fleetctl.services.clock import SYSTEM, Clock
from fleetctl.services.files import write_atomic
from fleetctl.services.lock import open_lock_file
from fleetctl.services.router_process import command_line, ours, start_ticks, terminate
from fleetctl.services.statefile import load_state

RECORD = "router.json"
STATUS = "router-supervisor.json"
LOCK = "router-supervisor.lock"
LOG = "router.log"
RECORD_SCHEMA = "fleetctl.router/v1"
STATUS_SCHEMA = "fleetctl.router-supervisor/v1"
ANSWER_TIMEOUT_S = 60.0  # for vllm-router to answer after its start (a loaded machine imports it slowly)
WATCH_S = 0.1  # how often the supervisor looks at vllm-router
MODE_CHECK_S = 1.0  # how often it reads state.json for the mode the fleet needs
ROUTER_STOP_S = 5.0  # vllm-router's graceful shutdown after SIGTERM can take 10 s; then SIGKILL

Say = Callable[[str], None]


def record_path(fleet: Fleet) -> str:
    return os.path.join(fleet.state_dir, RECORD)


def status_path(fleet: Fleet) -> str:
    return os.path.join(fleet.state_dir, STATUS)


def read_json(path: str, schema: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("schema") == schema else None


def live_status(fleet: Fleet) -> dict[str, Any] | None:
    """The supervisor's status when the supervisor that wrote it still runs (pid, start time, command line)."""
    doc = read_json(status_path(fleet), STATUS_SCHEMA)
    record = read_json(record_path(fleet), RECORD_SCHEMA)
    if doc is None or record is None or record.get("pid") != doc.get("supervisor_pid") or not ours(record):
        return None
    return doc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Supervisor:
    """One supervised router for one fleet. ``say`` gets one plain line per event (start, death, restart)."""

    fleet: Fleet
    executable: str
    say: Say
    clock: Clock = SYSTEM
    stop: threading.Event = field(default_factory=threading.Event)
    restarts: int = 0
    last_restart: dict[str, str] | None = None
    failures: int = 0  # deaths in a row before a stable run
    sync_error: str | None = None
    _proc: subprocess.Popen[bytes] | None = None
    _router: dict[str, Any] | None = None
    _mode: Mode = "single"
    _phase: str = "starting"
    _door: Any = None  # the front door's DoorProcess, when the fleet declares one ([router] listen)

    def run(self) -> None:
        """Supervise until ``stop`` is set (SIGTERM, SIGINT); RouterError/LockHeld when another supervises.
        With a front door declared, HAProxy is started first, kept running, and stopped first."""
        fd = self._take_lock()
        try:
            self._write_record()
            self._keep_door()
            while not self.stop.is_set():
                reason = self._one_life()
                if reason is None:
                    break
                self._note_restart(reason)
        finally:
            self._phase = "stopping"
            self._stop_door()
            self._stop_router()
            for path in (status_path(self.fleet), record_path(self.fleet)):
                _unlink(path)
            os.close(fd)

    # -- one vllm-router, from its start to its death ------------------------------------------------------------

    def _one_life(self) -> str | None:
        """Start vllm-router, register, watch; the reason it must be started again, or None when stopping."""
        state = load_state(self.fleet)
        self._mode = needed_mode(self.fleet, state)
        started = self.clock.monotonic()
        self._start_router(state)
        answered = self._wait_answering()
        if answered:
            self._register()
        reason = self._watch() if answered else None
        proc = self._proc
        if self.stop.is_set():
            return None
        if reason is not None:  # a mode change: this one stops on purpose
            self._stop_router()
            return reason
        assert proc is not None
        code = proc.wait()
        self.failures = 0 if self.clock.monotonic() - started >= 10 else self.failures + 1
        why = death_reason(code, answered)
        self.say(f"vllm-router (pid {proc.pid}) {why}")
        delay = restart_delay(self.clock.monotonic() - started, max(self.failures, 1))
        if delay:
            self.say(f"waiting {delay:g}s before starting it again ({self.failures} failed starts in a row)")
            self._phase = "backoff"
            self._write_status()
            self.stop.wait(delay)
        return why

    def _start_router(self, state: Any) -> None:
        from fleetctl.core.fleetstate import intended_upstreams

        metrics_port = _free_port()
        launch = plan_launch(self.fleet.router.url, intended_upstreams(state), metrics_port, self._mode)
        argv = [self.executable, *launch.args]
        os.makedirs(self.fleet.state_dir, exist_ok=True)
        with open(os.path.join(self.fleet.state_dir, LOG), "ab") as log:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True
            )
        pid = self._proc.pid
        self._router = {"pid": pid, "start_ticks": start_ticks(pid), "args": argv, "since": self._now()}
        self._router["metrics_port"] = metrics_port
        self._phase = "starting"
        self._write_status()
        self.say(f"started vllm-router (pid {pid}) in {self._mode}-model mode at {self.fleet.router.url}")

    def _wait_answering(self) -> bool:
        """True once vllm-router answers /health; False when it died first, or we are stopping."""
        from fleetctl.transport.router import RouterClient

        assert self._proc is not None
        deadline = self.clock.monotonic() + ANSWER_TIMEOUT_S
        with RouterClient(self.fleet.router.url, timeout_s=1) as client:
            while not self.stop.is_set() and self._proc.poll() is None:
                try:
                    client.health()
                    return True
                except RouterError:
                    pass
                if self.clock.monotonic() >= deadline:
                    self.say(f"vllm-router did not answer within {ANSWER_TIMEOUT_S:g}s: stopping it")
                    self._stop_router()
                    return False
                self.stop.wait(0.05)
        return False

    def _register(self) -> None:
        from fleetctl.services.router import sync_router

        try:
            diff = sync_router(self.fleet, load_state(self.fleet), mode=self._mode, wait=False)
            self.sync_error = None
            self.say(f"registered {len(diff.add)} worker(s); removed {len(diff.remove)}")
        except FleetError as e:
            self.sync_error = str(e)
            self.say(f"could not register the intended set: {e}")
        self._phase = "ready"
        self._write_status()

    def _watch(self) -> str | None:
        """Wait for vllm-router's death (None) or a change of the mode the fleet needs (the reason to restart)."""
        assert self._proc is not None
        next_check = self.clock.monotonic() + MODE_CHECK_S
        while not self.stop.is_set():
            try:
                self._proc.wait(timeout=WATCH_S)
                return None
            except subprocess.TimeoutExpired:
                pass
            if self.clock.monotonic() >= next_check:
                next_check = self.clock.monotonic() + MODE_CHECK_S
                self._keep_door()
                needed = self._needed_mode()
                if needed is not None and needed != self._mode:
                    why = f"the fleet needs {needed}-model mode now (it runs in {self._mode}-model mode)"
                    self.say(f"restarting vllm-router: {why}")
                    return why
        return None

    def _needed_mode(self) -> Mode | None:
        try:
            return needed_mode(self.fleet, load_state(self.fleet))
        except FleetError:
            return None  # a state file being rewritten or broken: judge again at the next look

    def _keep_door(self) -> None:
        """Start the front door (HAProxy) if the fleet declares one and it does not run; a door that cannot
        start is said and tried again at the next look, never the router's death."""
        if self.fleet.router.door is None or (self._door is not None and self._door.alive()):
            return
        from fleetctl.services.door import door_start

        try:
            self._door, info = door_start(self.fleet, load_state(self.fleet), os.environ)
            verb = "started" if info.started else "adopted"
            self.say(f"{verb} the front door (pid {info.pid}) on {info.scheme}://{info.listen}")
        except (FleetError, OSError) as e:
            self.say(f"could not start the front door: {e}")

    def _stop_door(self) -> None:
        if self._door is not None and self._door.alive():
            self.say("stopping the front door (requests in flight finish first)")
            self._door.stop()

    def _stop_router(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        self.say(f"stopping vllm-router (pid {proc.pid})")
        terminate(proc.pid, (self._router or {}).get("start_ticks"), ROUTER_STOP_S)
        proc.poll()

    # -- records ------------------------------------------------------------------------------------------------

    def _note_restart(self, reason: str) -> None:
        self.restarts += 1
        self.last_restart = {"at": self._now(), "reason": reason}
        self._phase = "restarting"
        self._write_status()

    def _take_lock(self) -> int:
        fd = open_lock_file(os.path.join(self.fleet.state_dir, LOCK))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            doc = read_json(status_path(self.fleet), STATUS_SCHEMA) or {}
            raise LockHeld(
                f"a router supervisor already runs for this fleet (pid {doc.get('supervisor_pid', 'unknown')})",
                hint="fleetctl router status; fleetctl router down stops it",
            ) from None
        return fd

    def _write_record(self) -> None:
        pid = os.getpid()
        record = {
            "schema": RECORD_SCHEMA,
            "url": self.fleet.router.url,
            "pid": pid,
            "start_ticks": start_ticks(pid),
            "args": command_line(pid) or [],
            "since": self._now(),
            "log": os.path.join(self.fleet.state_dir, LOG),
            "supervisor": True,
        }
        write_atomic(record_path(self.fleet), (json.dumps(record, indent=2) + "\n").encode())

    def _write_status(self) -> None:
        doc = {
            "schema": STATUS_SCHEMA,
            "supervisor_pid": os.getpid(),
            "url": self.fleet.router.url,
            "phase": self._phase,
            "mode": self._mode,
            "router": self._router,
            "restarts": self.restarts,
            "last_restart": self.last_restart,
            "sync_error": self.sync_error,
        }
        write_atomic(status_path(self.fleet), (json.dumps(doc, indent=2) + "\n").encode())

    def _now(self) -> str:
        return utc_iso(self.clock.utc_now())


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def supervise(fleet: Fleet, executable: str, say: Say) -> None:
    """``router run``: supervise until SIGTERM/SIGINT, which stop vllm-router first. UsageError (exit 2) when
    fleetctl cannot start a router at the fleet's URL."""
    try:
        router_address(fleet.router.url)
    except ValueError as e:
        raise UsageError(str(e), hint="set [router] url in the fleet file") from e
    sup = Supervisor(fleet=fleet, executable=executable, say=say)

    def on_signal(signum: int, _frame: object) -> None:
        say(f"got {signal.Signals(signum).name}: stopping")
        sup.stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        sup.run()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
