"""What maintenance does on one host over SSH: run a person's command (its output kept), read the boot id, send
the reboot, wait for the host to come back with a new boot id, and take a fresh inventory to verify it.

Host keys are checked as for every connection: a host that comes back with another key is refused
(``host_key_changed``), never accepted.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from fleetctl.core.fleet import Fleet, Host
from fleetctl.core.inventory import HostReport
from fleetctl.errors import ConfigError, HostError
from fleetctl.services.clock import SYSTEM, Clock

BOOT_ID = "cat /proc/sys/kernel/random/boot_id"
BOOT_ID_SHAPE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
REBOOT_SEND_S = 20.0  # the reboot command may take the connection down with it: it is not waited on longer
BACK_POLL_S = 2.0  # how often a rebooting host is asked for its boot id
BACK_ASK_S = 10.0  # each ask's own timeout
TAIL_LINES = 5  # the last lines of a failed command's output, in the failure message
GONE = ("disconnected", "unreachable", "timeout")  # a host rebooting answers like this


class MaintainHostOps(Protocol):
    """What a maintenance does on a host beyond serving (``SshHostOps`` over SSH; tests/fake in memory)."""

    def run_command(
        self, host: Host, number: int, command: str, *, sudo: bool, timeout_s: float, log_dir: str
    ) -> CommandOutcome: ...

    def boot_id(self, host: Host) -> str: ...

    def send_reboot(self, host: Host, command: str, *, sudo: bool, before: str) -> str: ...

    def wait_back(self, host: Host, before: str, timeout_s: float) -> str: ...

    def fresh_report(self, host: Host) -> HostReport: ...


class SshHostOps:
    """The real thing, over the command's SSH pool."""

    def __init__(self, fleet: Fleet, pool: Any, clock: Clock = SYSTEM) -> None:
        self.fleet, self.pool, self.clock = fleet, pool, clock

    def run_command(
        self, host: Host, number: int, command: str, *, sudo: bool, timeout_s: float, log_dir: str
    ) -> CommandOutcome:
        return run_command(self.pool, host, number, command, sudo=sudo, timeout_s=timeout_s, log_dir=log_dir)

    def boot_id(self, host: Host) -> str:
        return boot_id(self.pool, host)

    def send_reboot(self, host: Host, command: str, *, sudo: bool, before: str) -> str:
        return send_reboot(self.pool, host, command, sudo=sudo, before=before)

    def wait_back(self, host: Host, before: str, timeout_s: float) -> str:
        return wait_back(self.pool, host, before, timeout_s, self.clock)

    def fresh_report(self, host: Host) -> HostReport:
        return fresh_report(self.fleet, self.pool, host)


def as_root(command: str, sudo: bool) -> str:
    """The command as sent: through ``sudo -n`` (never prompts) when asked."""
    return f"sudo -n -- sh -c {shlex.quote(command)}" if sudo else command


@dataclass(frozen=True)
class CommandOutcome:
    status: int
    log: str  # where its output is kept


def run_command(
    pool: Any, host: Host, number: int, command: str, *, sudo: bool, timeout_s: float, log_dir: str
) -> CommandOutcome:
    """Run a person's command; its output (stdout, then stderr) goes to ``log_dir/<host>/run.<n>.log``. A
    non-zero exit is the host's ``command_failed`` naming the last lines."""
    result = pool.run(host, as_root(command, sudo), timeout_s=timeout_s)
    folder = os.path.join(log_dir, host.name)
    os.makedirs(folder, exist_ok=True)
    log = os.path.join(folder, f"run.{number}.log")
    with open(log, "wb") as f:  # the host's bytes as they came
        f.write(f"# command {number + 1}: {command}\n# exit status: {result.rc}\n".encode())
        f.write(result.stdout)
        if result.stderr:
            f.write(b"\n# stderr\n" + result.stderr)
    if result.rc != 0:
        said = _text(result.stdout) + "\n" + _text(result.stderr)
        tail = [line for line in said.splitlines() if line.strip()][-TAIL_LINES:]
        raise HostError(
            host.name,
            "command_failed",
            f"command {number + 1} exited {result.rc}" + (": " + " | ".join(tail) if tail else ""),
            hint=f"its output: {log}",
        )
    return CommandOutcome(result.rc, log)


def boot_id(pool: Any, host: Host, timeout_s: float = BACK_ASK_S) -> str:
    """The host's boot id (``/proc/sys/kernel/random/boot_id``): it changes with every boot."""
    result = pool.run(host, BOOT_ID, timeout_s=timeout_s)
    value = _text(result.stdout).strip()
    if result.rc != 0 or not BOOT_ID_SHAPE.match(value):
        raise HostError(host.name, "bad_answer", f"no boot id from {BOOT_ID!r} (exit {result.rc})")
    return value


def send_reboot(pool: Any, host: Host, command: str, *, sudo: bool, before: str) -> str:
    """Send the reboot command unless the host already booted since ``before``. A connection that drops or a host
    that stops answering is the reboot happening; a command that answers non-zero is the host's failure."""
    try:
        if boot_id(pool, host) != before:
            return "already rebooted"
        result = pool.run(host, as_root(command, sudo), timeout_s=REBOOT_SEND_S)
    except HostError as e:
        if e.kind in GONE:
            return "going down"
        raise
    finally:
        pool.release(host)
    if result.rc != 0:
        detail = _text(result.stderr or result.stdout).strip().splitlines()[-1:] or [""]
        raise HostError(host.name, "reboot_failed", f"{command!r} exited {result.rc}: {detail[0]}")
    return "sent"


def wait_back(
    pool: Any,
    host: Host,
    before: str,
    timeout_s: float,
    clock: Clock = SYSTEM,
    on_wait: Callable[[], None] | None = None,
) -> str:
    """Wait until the host answers over SSH with a boot id other than ``before`` (its key checked as always);
    ``reboot_timeout`` after ``timeout_s``. Returns the new boot id."""
    deadline = clock.monotonic() + timeout_s
    last = "no answer yet"
    while True:
        try:
            now = boot_id(pool, host)
            if now != before:
                return now
            last = "still the boot before the reboot"
        except HostError as e:
            if not _going_or_coming(e):
                raise  # a changed host key, refused authentication: a person looks
            last = f"{e.kind}: {e.reason}"
        pool.release(host)
        if clock.monotonic() >= deadline:
            raise HostError(
                host.name,
                "reboot_timeout",
                f"not back with a new boot id within {timeout_s:g}s (last: {last})",
                hint="see the host's console; --resume waits again, --reboot-timeout sets the wait",
            )
        if on_wait is not None:
            on_wait()
        clock.sleep(BACK_POLL_S)


def _going_or_coming(e: HostError) -> bool:
    """A host that reboots drops connections, refuses them, or closes one mid-handshake (sshd stopping)."""
    cut_short = e.kind == "auth" and "transport shut down or saw eof" in e.reason.lower()
    return e.kind in (*GONE, "bad_answer") or cut_short


def _text(data: bytes | str) -> str:
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


def fresh_report(fleet: Fleet, pool: Any, host: Host) -> HostReport:
    """A fresh inventory of the host, folded into the fleet's saved snapshot (``inventory.json``)."""
    from fleetctl.services.inventory import collect_inventory
    from fleetctl.services.snapshot import previous_snapshot, save_merged

    snapshot = collect_inventory(fleet, (host,), forks=1, pool=pool)
    try:
        save_merged(fleet, previous_snapshot(fleet), snapshot)
    except ConfigError:
        pass  # a saved snapshot that does not read is `fleetctl inventory`'s to report; the host is verified anyway
    return snapshot.hosts[0]
