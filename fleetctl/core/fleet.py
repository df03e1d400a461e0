"""The fleet as the operator declared it: hosts, SSH defaults, router, rollout and maintenance settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from fleetctl.core.door import DoorSettings

HostKeyPolicy = Literal["strict", "accept-new"]


@dataclass(frozen=True)
class SshSettings:
    """SSH defaults from the fleet file's ``[ssh]`` table. ``None`` means "not set here" (ssh_config may set it)."""

    user: str | None = None
    identity_file: str | None = None
    known_hosts: str | None = None
    host_key_policy: HostKeyPolicy = "strict"
    proxy_jump: str | None = None
    connect_timeout_s: float = 10.0


@dataclass(frozen=True)
class RouterSettings:
    url: str = "http://127.0.0.1:30000"
    min_serving: int = 1
    door: DoorSettings | None = None  # the front door (HAProxy) clients use; None: no door declared


@dataclass(frozen=True)
class RolloutSettings:
    rings: tuple[str, ...] = ()
    max_unavailable: int = 1
    bake_s: float = 60.0
    max_error_rate: float = 0.01
    max_ttft_p95_ratio: float = 1.5
    min_requests: int = 20  # requests (real or synthetic) a ring needs to be judged
    interval_s: float = 5.0  # the gate judges this often during the bake
    failure_limit: int = 0  # failed measurements tolerated; one more aborts the bake
    smoke_rps: float = 2.0  # synthetic requests per host per second when clients are quiet
    max_ttft_p95_ms: float | None = None  # optional absolute TTFT p95 ceiling
    smoke_prompts: tuple[str, ...] = ()  # [rollout.smoke] prompts; empty: the built-in set


@dataclass(frozen=True)
class MaintainSettings:
    """``[maintain]``: how ``fleetctl maintain`` reboots a host and how many it works on at once."""

    reboot_command: str = "systemctl reboot"  # run on the host over SSH (through ``sudo -n`` with sudo)
    reboot_timeout_s: float = 900.0  # how long a host may take to come back after its reboot command
    max_parallel: int = 1  # hosts maintained side by side within a ring, still bounded by each pool's min_serving
    sudo: bool = False  # run the commands and the reboot command through ``sudo -n``


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    port: int | None = None
    ring: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    line: int | None = None  # where the host is declared, for error messages


@dataclass(frozen=True)
class Pool:
    """Hosts that serve one model (``[[pools]]``): the profile they should run and how many must keep serving."""

    name: str
    profile: str
    hosts: str  # a --limit pattern
    members: tuple[str, ...]  # the hosts the pattern selects, in fleet order
    min_serving: int = 1
    line: int | None = None  # where the pool's table starts, for error messages


@dataclass(frozen=True)
class Fleet:
    name: str
    path: str
    hosts: tuple[Host, ...]
    ssh: SshSettings = SshSettings()
    router: RouterSettings = RouterSettings()
    rollout: RolloutSettings = RolloutSettings()
    pools: tuple[Pool, ...] = ()  # none declared: one implicit pool of every host (see ``core.pools``)
    maintain: MaintainSettings = MaintainSettings()

    @property
    def state_dir(self) -> str:
        """The state folder: ``.fleetctl/`` beside the fleet file."""
        import os.path

        return os.path.join(os.path.dirname(os.path.abspath(self.path)), ".fleetctl")

    @cached_property
    def _by_name(self) -> dict[str, Host]:
        return {h.name: h for h in self.hosts}

    def host(self, name: str) -> Host | None:
        """The host called ``name`` (a dict lookup: callers ask for every host of a 10,000-host fleet)."""
        return self._by_name.get(name)
