"""One HAProxy in master-worker mode: start it, check it, reload it without dropping a connection, stop it.

``DoorProcess`` is what a supervisor holds: ``start()`` spawns the master (a child in its own session, its pid in
HAProxy's pidfile), ``alive()`` says whether it still runs, ``reload()`` sends SIGUSR2 (the master re-reads the
configuration and starts new workers; old workers finish their connections, streams included), ``stop()`` asks for
a soft stop (SIGUSR1) and only then SIGTERM. It never signals a process whose command line is not the HAProxy
started on this door's configuration.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field

from fleetctl.core.door_config import WORKER_KEY_ENV, DoorFiles
from fleetctl.errors import UsageError
from fleetctl.services.clock import SYSTEM, Clock
from fleetctl.services.poll import PROCESS_EXIT, ROUTER_START, poll

START_TIMEOUT_S = 10.0
SOFT_STOP_S = 30.0


class DoorError(UsageError):
    """HAProxy refused the configuration, would not start, or its socket does not answer."""


def find_haproxy() -> str:
    found = shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy",) if os.access(p, os.X_OK)), None)
    if not found:
        raise UsageError("haproxy is not installed (the front door runs it)", hint="apt-get install haproxy")
    return found


def haproxy_env(worker_key: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """HAProxy's environment: the worker key travels here, never in its configuration file or argv."""
    env = dict(os.environ if environ is None else environ)
    env[WORKER_KEY_ENV] = worker_key
    return env


def check_config(config_path: str, env: Mapping[str, str]) -> None:
    """``haproxy -c``: DoorError with HAProxy's own first alert when the file would not load."""
    done = subprocess.run(
        [find_haproxy(), "-c", "-q", "-f", config_path], env=dict(env), capture_output=True, text=True, timeout=30
    )
    if done.returncode != 0:
        alerts = [ln for ln in (done.stdout + done.stderr).splitlines() if "ALERT" in ln] or ["(no reason given)"]
        raise DoorError(f"HAProxy refuses the door's configuration: {' '.join(alerts[0].split())[:300]}")


def ask_socket(path: str, command: str, timeout_s: float = 5.0) -> str:
    """One command on HAProxy's stats socket (the runtime API); OSError when nothing answers there."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        s.connect(path)
        s.sendall(command.encode("ascii") + b"\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


@dataclass
class DoorProcess:
    files: DoorFiles
    env: Mapping[str, str] = field(default_factory=dict)
    log_path: str | None = None
    clock: Clock = SYSTEM
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> int:
        """Spawn the master and wait until its socket answers; DoorError (with HAProxy's alert) otherwise."""
        check_config(self.files.config, self.env)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.files.pidfile)
        log = open(self.log_path or os.devnull, "ab")
        try:
            self.proc = subprocess.Popen(
                [find_haproxy(), "-W", "-f", self.files.config, "-p", self.files.pidfile],
                env=dict(self.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        finally:
            log.close()
        if poll(self._ready, START_TIMEOUT_S, ROUTER_START, self.clock) is None:
            self.stop(soft_s=0)
            raise DoorError(f"HAProxy did not start within {START_TIMEOUT_S:g}s (see {self.log_path})")
        return self.proc.pid

    def _ready(self) -> bool | None:
        if self.proc is not None and self.proc.poll() is not None:
            raise DoorError(f"HAProxy exited at start with status {self.proc.returncode} (see {self.log_path})")
        try:
            return True if "Name: HAProxy" in ask_socket(self.files.socket, "show info", 1.0) else None
        except OSError:
            return None

    def pid(self) -> int | None:
        """The master's pid, when the process in the pidfile is this door's HAProxy."""
        if self.proc is not None and self.proc.poll() is None:
            return self.proc.pid
        try:
            with open(self.files.pidfile, encoding="ascii") as f:
                pid = int(f.readline().strip())
        except (OSError, ValueError):
            return None
        # a master that is reloading re-executes itself: its command line is empty for a moment
        answer = poll(lambda: _runs_config(pid, self.files.config), 2.0, PROCESS_EXIT, self.clock)
        return pid if answer else None

    def alive(self) -> bool:
        return self.pid() is not None

    def reload(self) -> None:
        """New workers on the configuration now on disk (check it first); old ones finish their connections.
        Returns once a new worker answers on the stats socket."""
        pid = self.pid()
        if pid is None:
            raise DoorError("the front door is not running", hint="fleetctl door up")
        check_config(self.files.config, self.env)
        before = self._worker()
        os.kill(pid, signal.SIGUSR2)

        def new_worker() -> bool | None:
            now = self._worker()
            return True if now is not None and now != before else None

        if poll(new_worker, START_TIMEOUT_S, ROUTER_START, self.clock) is None:
            raise DoorError(f"HAProxy did not reload within {START_TIMEOUT_S:g}s (see {self.log_path})")

    def _worker(self) -> str | None:
        """The pid of the worker answering on the stats socket now."""
        try:
            info = ask_socket(self.files.socket, "show info", 1.0)
        except OSError:
            return None
        return next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("Pid:")), None)

    def stop(self, soft_s: float = SOFT_STOP_S) -> bool:
        """Soft stop (in-flight requests finish, at most ``soft_s``), then SIGTERM; False when none was running."""
        pid = self.pid()
        if pid is None:
            return False
        for sig, wait_s in ((signal.SIGUSR1, soft_s), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if poll(lambda: True if self._gone(pid) else None, wait_s, PROCESS_EXIT, self.clock):
                break
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.files.pidfile)
        return True

    def _gone(self, pid: int) -> bool:
        if self.proc is not None and self.proc.pid == pid:
            return self.proc.poll() is not None
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return _runs_config(pid, self.files.config) is False


def _runs_config(pid: int, config: str) -> bool | None:
    """True: the process runs HAProxy on ``config``; False: it does not (or is gone); None: cannot tell yet
    (a command line that is empty while the process lives: it is re-executing itself)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        with open(f"/proc/{pid}/stat", "rb") as f:
            zombie = f.read().rsplit(b")", 1)[-1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False
    if zombie:
        return False
    if argv == [b""]:
        return None
    return os.path.basename(argv[0]).startswith(b"haproxy") and config.encode() in argv
