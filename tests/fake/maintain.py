"""In-memory hosts for ``fleetctl maintain``: per host a boot id, the installed and the loaded driver, the Fabric
Manager, and a log of every command run, behind an SSH pool that answers as a real host would (the boot id file,
the probe, the reboot command, a person's commands by rule). fleetctl's own ``SshHostOps`` runs over it, so the
fast tier exercises the real command log, boot-id parsing, "already rebooted" and the wait for the new boot id.

A reboot stops the host as a real one does: its containers exit, open connections drop, it stops answering, and
after ``reboot_s`` of the fake clock (None: never) it answers again with a new boot id and the installed driver
loaded. A driver installed and not yet loaded probes as a driver/library version mismatch.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetctl.core.fleet import Host
from fleetctl.errors import HostError
from fleetctl.probe import PROBE_COMMAND
from fleetctl.services.maintain_host import BOOT_ID, SshHostOps
from fleetctl.transport.ssh import RunResult
from tests.fake.fleet import FakeFleet

PROBE = Path(__file__).resolve().parents[1] / "fixtures" / "probe" / "healthy-h100x2.json"
DRIVER = "570.133.20"  # what every fake host runs at first (the recorded H100 probe's driver)
NEWER, TOO_OLD = "575.57.08", "560.35.05"
REBOOT_S = 30.0
REBOOT_COMMANDS = ("systemctl reboot",)


@dataclass(frozen=True)
class Command:
    """What a person's command does on a fake host: its exit status and output; on success it installs
    ``driver`` (loaded at the next boot) and ``fabric_manager``, and calls ``effect(host)``. ``drops``: the SSH
    connection drops once it took effect (fleetctl never learns its exit status)."""

    status: int = 0
    output: str = ""
    driver: str | None = None
    fabric_manager: str | None = None
    effect: Callable[[str], None] | None = None
    drops: bool = False


def driver_update(version: str, **kw: Any) -> Command:
    """A driver package with its Fabric Manager, as an HGX host needs both."""
    return Command(output=f"installed driver {version}\n", driver=version, fabric_manager=version, **kw)


@dataclass
class Machine:
    """One host below its containers: what fleetctl maintain changes."""

    name: str
    index: int
    driver_installed: str = DRIVER
    driver_loaded: str = DRIVER
    fabric_manager: str = DRIVER
    boots: int = 1
    up: bool = True
    reboot_s: float | None = REBOOT_S  # None: it never comes back
    commands: list[str] = field(default_factory=list)  # a person's commands as run (sudo unwrapped)
    sudo: list[bool] = field(default_factory=list)  # whether each came through sudo -n
    reboots: int = 0

    @property
    def boot_id(self) -> str:
        return f"{self.boots:08x}-{self.index:04x}-4000-8000-{self.boots * 7919:012x}"

    def runs(self, command: str) -> int:
        return self.commands.count(command)


class FakeMaintenance:
    """The maintenance side of a ``FakeFleet``: ``rules`` (command → Command; ``host_rules`` per host first),
    ``machines`` per host, ``log`` of (time, host, what) for commands, reboots and comings back."""

    def __init__(self, fake: FakeFleet, *, reboot_s: float | None = REBOOT_S) -> None:
        self.fake = fake
        self.machines = {n: Machine(n, i, reboot_s=reboot_s) for i, n in enumerate(fake.hosts, 1)}
        self.rules: dict[str, Command] = {}
        self.host_rules: dict[tuple[str, str], Command] = {}
        self.log: list[tuple[float, str, str]] = []
        self._probe = json.loads(PROBE.read_text())

    def ops(self) -> SshHostOps:
        """fleetctl's own host operations over this fake's SSH."""
        return SshHostOps(self.fake.fleet, FakeSsh(self), self.fake.clock)

    def steps(self, what: str) -> list[str]:
        """Hosts in the order ``what`` (``run``, ``reboot``, ``back``) happened to them."""
        return [host for _, host, w in self.log if w == what]

    # -- what a host answers ------------------------------------------------------------------------------

    def answer(self, host: str, command: str) -> RunResult:
        machine = self.machines[host]
        if not machine.up:
            raise HostError(host, "unreachable", "connect: no route to host")
        if command == BOOT_ID:
            return RunResult(0, f"{machine.boot_id}\n".encode(), b"")
        if command == PROBE_COMMAND:
            return RunResult(0, json.dumps(self.probe(machine)).encode(), b"")
        plain, sudo = unwrap(command)
        if plain in (*REBOOT_COMMANDS, self.fake.fleet.maintain.reboot_command):
            self.reboot(machine)
            raise HostError(host, "disconnected", "SSH connection closed by remote host")
        return self.run(machine, plain, sudo)

    def run(self, machine: Machine, command: str, sudo: bool) -> RunResult:
        machine.commands.append(command)
        machine.sudo.append(sudo)
        self.log.append((self.fake.clock.now, machine.name, "run"))
        rule = self.host_rules.get((machine.name, command)) or self.rules.get(command)
        if rule is None:
            return RunResult(127, b"", f"sh: 1: {command.split(' ')[0]}: not found\n".encode())
        if rule.status == 0:
            machine.driver_installed = rule.driver or machine.driver_installed
            machine.fabric_manager = rule.fabric_manager or machine.fabric_manager
            if rule.effect is not None:
                rule.effect(machine.name)
        if rule.drops:
            raise HostError(machine.name, "disconnected", "SSH connection dropped")
        return RunResult(rule.status, rule.output.encode(), b"")

    def reboot(self, machine: Machine) -> None:
        """The host goes down: containers exit, connections drop; it comes back after ``reboot_s`` (if ever)."""
        machine.up, machine.reboots = False, machine.reboots + 1
        self.log.append((self.fake.clock.now, machine.name, "reboot"))
        host = self.fake.hosts[machine.name]
        host.down, host.generation = True, host.generation + 1
        for container in host.containers.values():
            container.status = "exited"
        if machine.reboot_s is not None:
            self.fake.clock.after(machine.reboot_s, lambda: self.come_back(machine))

    def come_back(self, machine: Machine) -> None:
        machine.up, machine.boots, machine.driver_loaded = True, machine.boots + 1, machine.driver_installed
        self.fake.hosts[machine.name].down = False
        self.log.append((self.fake.clock.now, machine.name, "back"))

    def probe(self, machine: Machine) -> dict[str, Any]:
        """The recorded H100 probe, as this host answers it now (a version mismatch until a new driver loads)."""
        doc = json.loads(json.dumps(self._probe))
        facts, tools = doc["facts"], doc["tools"]
        facts["hostname"] = machine.name
        tools["fabric_manager"]["out"] = f"Fabric Manager version is : {machine.fabric_manager}\n"
        if machine.driver_installed != machine.driver_loaded:
            facts.update(driver_version=None, cuda_driver_version=None, nvml_version=None, gpus=[])
            doc["error"] = {
                "kind": "nvml_version_mismatch",
                "message": "NVIDIA driver/library version mismatch: the installed driver takes effect at the next reboot",
            }
            return doc
        facts.update(driver_version=machine.driver_loaded, nvml_version=f"12.{machine.driver_loaded}")
        return doc


def unwrap(command: str) -> tuple[str, bool]:
    """A person's command as they gave it, and whether it came through ``sudo -n -- sh -c``."""
    words = shlex.split(command) if command.startswith("sudo -n -- sh -c ") else []
    if len(words) == 6 and words[:5] == ["sudo", "-n", "--", "sh", "-c"]:
        return words[5], True
    return command, False


class FakeSsh:
    """The part of ``fleetctl.transport.ssh.SshPool`` that maintenance uses, answered by ``FakeMaintenance``."""

    def __init__(self, hosts: FakeMaintenance) -> None:
        self.hosts = hosts
        self.released: list[str] = []

    def target(self, host: Host) -> Host:
        return host

    def run(self, host: Host, command: str, *, stdin: bytes | None = None, timeout_s: float = 120) -> RunResult:
        return self.hosts.answer(host.name, command)

    def release(self, host: Host) -> None:
        self.released.append(host.name)
