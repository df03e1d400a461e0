"""The fleet as the operator declared it: hosts, SSH defaults, router and rollout settings."""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    port: int | None = None
    ring: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    line: int | None = None  # where the host is declared, for error messages


@dataclass(frozen=True)
class Fleet:
    name: str
    path: str
    hosts: tuple[Host, ...]
    ssh: SshSettings = SshSettings()
    router: RouterSettings = RouterSettings()
    rollout: RolloutSettings = RolloutSettings()

    @property
    def state_dir(self) -> str:
        """The state folder: ``.fleetctl/`` beside the fleet file."""
        import os.path

        return os.path.join(os.path.dirname(os.path.abspath(self.path)), ".fleetctl")

    def host(self, name: str) -> Host | None:
        return next((h for h in self.hosts if h.name == name), None)
