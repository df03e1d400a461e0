"""A fake fleet: real ``Fleet`` settings and a real state folder (under a test's tmp_path), with in-memory hosts,
router, traffic and clock behind ``fleetctl.services.rollout_ports.RolloutPorts``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from unittest import mock

import fleetctl.services.router_sync as router_sync
from fleetctl.core.evidence import SmokeRequest
from fleetctl.core.fleet import Fleet, Host, RolloutSettings, RouterSettings
from fleetctl.core.fleetstate import FleetState, ServingRecord, worker_url
from fleetctl.core.metrics import MetricsSample
from fleetctl.core.router import RouterDiff, normalise_url
from fleetctl.core.serve import CONTAINER_NAME
from fleetctl.services.rollout import sample_serving
from fleetctl.services.smoke import SmokeSender
from fleetctl.services.statefile import load_state, save_state, update_state
from tests.fake.clock import FakeClock
from tests.fake.hosts import Behaviour, FakeContainer, FakeHost, FakeHostOps
from tests.fake.router import URL, FakeRouter

MODEL = "lab/tiny-llama"
PORT = 8000
OLD_IMAGE, NEW_IMAGE = "lab/vllm:stable", "lab/vllm:next"
RINGS = ("canary", "early", "main", "main")
PROFILE = """[profile]
name = "{name}"

[image]
ref = "{image}"
cuda = "12.8"
vllm = "0.11.0"

[requires]
gpus = ">=1"

[serve]
model = "{model}"
port = {port}
health_timeout_s = 60
"""


def fleet_file(hosts: tuple[Host, ...], bake_s: float) -> str:
    """The fleet file the fake's ``Fleet`` stands for (so ``fleetctl --fleet`` commands read the same fleet)."""
    rings = ", ".join(f'"{r}"' for r in dict.fromkeys(h.ring for h in hosts))
    lines = ['[fleet]\nname = "fake"\n', f'[router]\nurl = "{URL}"\nmin_serving = 1\n']
    lines.append(f"[rollout]\nrings = [{rings}]\nbake_s = {bake_s:g}\n")
    lines += [f'[[hosts]]\nname = "{h.name}"\naddress = "{h.address}"\nring = "{h.ring}"\n' for h in hosts]
    return "\n".join(lines)


class FakeFleet:
    """Hosts gpu-01.. in rings canary, early, main, main, all serving ``lab/vllm:stable`` through the router,
    each taking ``rate`` requests a second while the router holds it and its container runs."""

    def __init__(self, root: Path, rings: tuple[str, ...] = RINGS, *, bake_s: float = 3.0, rate: float = 10.0) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root, self.rate, self.clock = root, rate, FakeClock()
        hosts = tuple(Host(f"gpu-{i:02d}", f"10.9.0.{i}", ring=r) for i, r in enumerate(rings, 1))
        self.fleet = Fleet(
            name="fake",
            path=str(root / "fleet.toml"),
            hosts=hosts,
            router=RouterSettings(url=URL, min_serving=1),
            rollout=RolloutSettings(rings=tuple(dict.fromkeys(rings)), bake_s=bake_s),
        )
        (root / "fleet.toml").write_text(fleet_file(hosts, bake_s))
        self.behaviours: dict[str, Behaviour] = {OLD_IMAGE: Behaviour(ttft_s=0.05), NEW_IMAGE: Behaviour(ttft_s=0.05)}
        self.host_behaviours: dict[tuple[str, str], Behaviour] = {}  # (host, image) → behaviour there only
        self.hosts = {h.name: FakeHost(h, self) for h in hosts}
        self.router = FakeRouter([self.url(h.name) for h in hosts])
        self._carry: dict[str, float] = {}
        self.timeline: list[tuple[float, str, str]] = []  # (time, what, host): synthetic requests and drains
        self.clock.on_advance.append(self._age)
        self.clock.on_advance.append(self._traffic)
        self.write_profile("stable", OLD_IMAGE)
        self.write_profile("next", NEW_IMAGE)
        state = FleetState()
        for h in hosts:
            self.hosts[h.name].images.add(OLD_IMAGE)
            self.hosts[h.name].containers[CONTAINER_NAME] = FakeContainer(
                CONTAINER_NAME, OLD_IMAGE, None, "r0", "stable"
            )
            state = state.with_serving(
                ServingRecord(h.name, self.url(h.name), "stable", OLD_IMAGE, "r0", "2026-11-30T07:00:00Z", MODEL)
            )
        save_state(self.fleet, state)

    def write_profile(self, name: str, image: str) -> Path:
        folder = self.root / "profiles"
        folder.mkdir(exist_ok=True)
        path = folder / f"{name}.toml"
        path.write_text(PROFILE.format(name=name, image=image, model=MODEL, port=PORT))
        return path

    def url(self, name: str) -> str:
        return worker_url(self.fleet.host(name).address, PORT)  # type: ignore[union-attr]

    def behaviour(self, image: str, host: str | None = None) -> Behaviour:
        return self.host_behaviours.get((host or "", image)) or self.behaviours.get(image, Behaviour())

    def images(self) -> dict[str, str | None]:
        """Host → image of its running container (None when none runs)."""
        return {n: (c.image if (c := h.current()) is not None and c.running else None) for n, h in self.hosts.items()}

    def in_router(self) -> set[str]:
        return {n for n in self.hosts if self.router.holds(self.url(n))}

    def state(self) -> FleetState:
        return load_state(self.fleet)

    def ports(self) -> FakePorts:
        return FakePorts(self)

    def smoke(self, url: str, request: SmokeRequest) -> int:
        """A synthetic request straight to a host (``fleetctl.services.smoke.SmokeTransport``)."""
        name = next((n for n in self.hosts if normalise_url(self.url(n)) == normalise_url(url)), None)
        assert name is not None, f"synthetic request to {url}: not a fake host"
        assert url != self.router.url, "synthetic requests never go through the router"
        self.timeline.append((self.clock.now, "smoke", name))
        current = self.hosts[name].current()
        if current is None or not current.running:
            raise ConnectionError(f"{url}: connection refused")
        return 200 if current.serve_one(self.behaviour(current.image, name)) else 500

    def smoke_sent(self, host: str | None = None) -> int:
        return sum(1 for _, what, h in self.timeline if what == "smoke" and host in (None, h))

    def _age(self, dt: float) -> None:
        """Running containers grow older; one whose behaviour says so exits (``crash_after_s``)."""
        for name, host in self.hosts.items():
            current = host.current()
            if current is None or not current.running:
                continue
            current.up_s += dt
            limit = self.behaviour(current.image, name).crash_after_s
            if limit is not None and current.up_s >= limit:
                current.status = "exited"

    def _traffic(self, dt: float) -> None:
        """Every host the router holds whose container runs takes ``rate * dt`` requests."""
        for name, host in self.hosts.items():
            current = host.current()
            if not self.router.holds(self.url(name)) or current is None or not current.running:
                continue
            due = self._carry.get(name, 0.0) + self.rate * dt
            whole = int(due)
            self._carry[name] = due - whole
            if whole:
                current.serve(whole, self.behaviour(current.image, name))


class FakePorts:
    """``RolloutPorts`` over a ``FakeFleet``: the state is the real state.json under tmp_path; the router sync is
    fleetctl's own ``sync_router`` talking to the in-memory router."""

    def __init__(self, fake: FakeFleet) -> None:
        self.fake, self.clock = fake, fake.clock
        self.opened: list[str] = []  # host handles opened, in order (a reconnect opens another)

    def host(self, name: str) -> FakeHostOps:
        self.opened.append(name)
        return FakeHostOps(self.fake.hosts[name])

    def load_state(self) -> FleetState:
        return load_state(self.fake.fleet)

    def update_state(self, change: Callable[[FleetState], FleetState]) -> FleetState:
        return update_state(self.fake.fleet, change)

    def sync_router(self) -> RouterDiff:
        with mock.patch.object(router_sync, "RouterClient", self.fake.router.client):
            return router_sync.sync_router(self.fake.fleet, self.load_state())

    def follow_capacity(self, on_event: object) -> None:
        return None  # the fake fleet has no front door

    def sample_serving(self, names: tuple[str, ...] | None = None) -> dict[str, MetricsSample]:
        def fetch(host: Host, url: str) -> str:
            fake = self.fake.hosts[host.name]
            assert normalise_url(url) == normalise_url(self.fake.url(host.name))
            return fake.metrics_text(MODEL)

        return sample_serving(self.fake.fleet, names, fetch=fetch)

    def smoke(self, requests: tuple[SmokeRequest, ...], rps: float) -> SmokeSender:
        """Synthetic requests answered by the fake hosts, sent in line (no threads: the clock is the test's)."""
        return SmokeSender(self.fake.smoke, self.clock, requests, rps, background=False)
