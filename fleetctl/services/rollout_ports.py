"""What the rollout executor needs of the world, as Protocols, and the production implementation over a fleet.

The executor (``fleetctl.services.rollout.Executor``) acts only through a ``RolloutPorts``: one ``HostPort`` per
host (its container runtime and its vLLM), the recorded state and the router, metrics sampling, and the clock.
``FleetPorts`` is what fleetctl runs with (SSH pool, Docker, state.json, vllm-router, real time); the fast test
tier plugs in an in-memory fleet (``tests/fake``) instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from fleetctl.core.evidence import SmokeRequest
from fleetctl.core.fleet import Fleet, Host
from fleetctl.core.fleetstate import FleetState
from fleetctl.core.metrics import MetricsSample
from fleetctl.core.router import RouterDiff
from fleetctl.core.serve import ContainerSpec
from fleetctl.services.clock import SYSTEM, Clock
from fleetctl.services.smoke import SmokeSender


class ContainerState(Protocol):
    @property
    def running(self) -> bool: ...


class RuntimePort(Protocol):
    """The host's container runtime; every operation is idempotent (``fleetctl.services.runtime.HostRuntime``)."""

    def ensure_image(self, image: str) -> Any: ...

    def replace(self, spec: ContainerSpec) -> Any: ...

    def restore(self, stop_timeout_s: int = 40) -> Any: ...

    def current(self) -> ContainerState | None: ...

    def stop(self, timeout_s: int) -> Any: ...

    def start(self) -> Any: ...


class HostPort(Protocol):
    """One host as the executor uses it (``fleetctl.services.serving.HostOps``)."""

    host: Host
    clock: Clock  # the run's clock: drain and health waits sleep on it

    @property
    def runtime(self) -> RuntimePort: ...

    def wait_healthy(self, model: str, port: int, timeout_s: float) -> float: ...

    def in_flight(self, port: int) -> tuple[float, float]: ...


class RolloutPorts(Protocol):
    clock: Clock

    def host(self, name: str) -> HostPort:
        """A fresh handle on the host (a dropped connection is reopened by asking again)."""
        ...

    def load_state(self) -> FleetState: ...

    def update_state(self, change: Callable[[FleetState], FleetState]) -> FleetState: ...

    def sync_router(self) -> RouterDiff:
        """Make the router's upstreams the recorded state's intended set."""
        ...

    def sample_serving(self, names: tuple[str, ...] | None = None) -> dict[str, MetricsSample]: ...

    def follow_capacity(self, on_event: Callable[[dict[str, Any]], None]) -> None:
        """The front door's capacity follows what the router now serves (nothing without a door)."""
        ...

    def smoke(self, requests: tuple[SmokeRequest, ...], rps: float) -> SmokeSender:
        """A sender of synthetic requests straight to hosts (``fleetctl.services.smoke``)."""
        ...


class FleetPorts:
    """The real thing: Docker over the command's SSH pool, ``state.json``, the local vllm-router, real time."""

    def __init__(self, fleet: Fleet, pool: Any, clock: Clock = SYSTEM) -> None:
        from fleetctl.services.worker_key import fleet_worker_key

        self.fleet, self.pool, self.clock = fleet, pool, clock
        self.worker_key = fleet_worker_key(fleet)  # sent on every request fleetctl makes to a vLLM

    def host(self, name: str) -> HostPort:
        from fleetctl.services.serving import HostOps

        host = self.fleet.host(name)
        if host is None:
            raise KeyError(name)
        return HostOps(self.pool, host, self.clock, worker_key=self.worker_key)

    def load_state(self) -> FleetState:
        from fleetctl.services.statefile import load_state

        return load_state(self.fleet)

    def update_state(self, change: Callable[[FleetState], FleetState]) -> FleetState:
        from fleetctl.services.statefile import update_state

        return update_state(self.fleet, change)

    def sync_router(self) -> RouterDiff:
        from fleetctl.services.router import sync_router

        return sync_router(self.fleet, self.load_state())

    def follow_capacity(self, on_event: Callable[[dict[str, Any]], None]) -> None:
        from fleetctl.services.serving import follow_capacity

        follow_capacity(self.fleet, on_event)

    def sample_serving(self, names: tuple[str, ...] | None = None) -> dict[str, MetricsSample]:
        from fleetctl.services.rollout import sample_serving

        return sample_serving(self.fleet, names)

    def smoke(self, requests: tuple[SmokeRequest, ...], rps: float) -> SmokeSender:
        from functools import partial

        from fleetctl.transport.smoke import http_smoke

        return SmokeSender(partial(http_smoke, api_key=self.worker_key), self.clock, requests, rps)
