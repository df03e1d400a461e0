"""What maintenance does on one host over SSH: run a person's command (its output kept), read the boot id, send
the reboot, wait for the host to come back with a new boot id, and take a fresh inventory to verify it.

Host keys are checked as for every connection: a host that comes back with another key is refused
(``host_key_changed``), never accepted.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from typing import Any, Protocol

from fleetctl.core.fleet import Fleet, Host
from fleetctl.core.inventory import HostReport
from fleetctl.errors import ConfigError, HostError
from fleetctl.services.clock import SYSTEM, Clock
from fleetctl.services.poll import REBOOT_BACK, poll

BOOT_ID = "cat /proc/sys/kernel/random/boot_id"
BOOT_ID_SHAPE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
REBOOT_SEND_S = 20.0  # the reboot command may take the connection down with it: it is not waited on longer
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


def as_root(command: str, sudo: bool) -> str:
    """The command as sent: through ``sudo -n`` (never prompts) when asked."""
    return f"sudo -n -- sh -c {shlex.quote(command)}" if sudo else command


@dataclass(frozen=True)
class CommandOutcome:
    status: int
    log: str  # where its output is kept


class SshHostOps:
    """The real thing, over the command's SSH pool."""

    def __init__(self, fleet: Fleet, pool: Any, clock: Clock = SYSTEM) -> None:
        self.fleet, self.pool, self.clock = fleet, pool, clock

    def run_command(
        self, host: Host, number: int, command: str, *, sudo: bool, timeout_s: float, log_dir: str
    ) -> CommandOutcome:
        """Run a person's command; its output (stdout, then stderr) goes to ``log_dir/<host>/run.<n>.log``. A
        non-zero exit is the host's ``command_failed`` naming the last lines."""
        result = self.pool.run(host, as_root(command, sudo), timeout_s=timeout_s)
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

    def boot_id(self, host: Host) -> str:
        """The host's boot id (``/proc/sys/kernel/random/boot_id``): it changes with every boot."""
        result = self.pool.run(host, BOOT_ID, timeout_s=BACK_ASK_S)
        value = _text(result.stdout).strip()
        if result.rc != 0 or not BOOT_ID_SHAPE.match(value):
            raise HostError(host.name, "bad_answer", f"no boot id from {BOOT_ID!r} (exit {result.rc})")
        return value

    def send_reboot(self, host: Host, command: str, *, sudo: bool, before: str) -> str:
        """Send the reboot command unless the host already booted since ``before``. A connection that drops or a
        host that stops answering is the reboot happening; a command that answers non-zero is the host's failure."""
        try:
            if self.boot_id(host) != before:
                return "already rebooted"
            result = self.pool.run(host, as_root(command, sudo), timeout_s=REBOOT_SEND_S)
        except HostError as e:
            if e.kind in GONE:
                return "going down"
            raise
        finally:
            self.pool.release(host)
        if result.rc != 0:
            detail = _text(result.stderr or result.stdout).strip().splitlines()[-1:] or [""]
            raise HostError(host.name, "reboot_failed", f"{command!r} exited {result.rc}: {detail[0]}")
        return "sent"

    def wait_back(self, host: Host, before: str, timeout_s: float) -> str:
        """Wait until the host answers over SSH with a boot id other than ``before`` (its key checked as always);
        ``reboot_timeout`` after ``timeout_s``. Returns the new boot id."""
        last = ["no answer yet"]

        def ask() -> str | None:
            try:
                now = self.boot_id(host)
                if now != before:
                    return now
                last[0] = "still the boot before the reboot"
            except HostError as e:
                if not _going_or_coming(e):
                    raise  # a changed host key, refused authentication: a person looks
                last[0] = f"{e.kind}: {e.reason}"
            self.pool.release(host)  # the next ask connects afresh
            return None

        back = poll(ask, timeout_s, REBOOT_BACK, self.clock)
        if back is None:
            raise HostError(
                host.name,
                "reboot_timeout",
                f"not back with a new boot id within {timeout_s:g}s (last: {last[0]})",
                hint="see the host's console; --resume waits again, --reboot-timeout sets the wait",
            )
        return back

    def fresh_report(self, host: Host) -> HostReport:
        """A fresh inventory of the host, folded into the fleet's saved snapshot (``inventory.json``)."""
        from fleetctl.services.inventory import collect_inventory
        from fleetctl.services.snapshot import previous_snapshot, save_merged

        snapshot = collect_inventory(self.fleet, (host,), forks=1, pool=self.pool)
        try:
            save_merged(self.fleet, previous_snapshot(self.fleet), snapshot)
        except ConfigError:
            pass  # a saved snapshot that does not read is `fleetctl inventory`'s to report; verified anyway
        return snapshot.hosts[0]


def _going_or_coming(e: HostError) -> bool:
    """A host that reboots drops connections, refuses them, or closes one mid-handshake (sshd stopping)."""
    cut_short = e.kind == "auth" and "transport shut down or saw eof" in e.reason.lower()
    return e.kind in (*GONE, "bad_answer") or cut_short


def _text(data: bytes | str) -> str:
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data
