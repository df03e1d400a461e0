"""Drive fleetctl's own upgrade service (``start_run``, ``resume_run``) over a ``FakeFleet``."""

from __future__ import annotations

import functools
import os
from typing import Any

from fleetctl.core.compat.matrix import Matrix
from fleetctl.core.gate import GateSettings
from fleetctl.core.rollout import RunState
from fleetctl.core.rollout_plan import RolloutPlan
from fleetctl.services.profiles import load_matrix, load_profile, profile_dirs
from fleetctl.services.upgrade import Opening, UpgradeRequest, make_plan, resume_run, rollout_settings, start_run
from tests.fake.fleet import FakeFleet

PREFLIGHT_S = 2.0  # the opening window: the preflight's time, in which the old version serves


class Events(list[dict[str, Any]]):
    """The executor's events, as a sink."""

    def __call__(self, event: dict[str, Any]) -> None:
        self.append(event)

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self if e.get("event") == name]


@functools.cache
def _matrix(dirs: tuple[str, ...]) -> Matrix:
    """The compatibility matrix (the package's own: the fake fleet's profiles folder holds none), read once."""
    return load_matrix(dirs)


def request(
    fake: FakeFleet, profile: str = "next", *, opening: bool = True, gate: GateSettings | None = None
) -> tuple[UpgradeRequest, RolloutPlan]:
    """What ``fleetctl upgrade --profile NAME`` asks for, after its preflight (which takes PREFLIGHT_S). The gate
    is the v1 recordings' (thresholds from the fleet, one request of evidence) unless ``gate`` is given."""
    fleet = fake.fleet
    dirs = profile_dirs({}, fleet.path)
    chosen = load_profile(profile, dirs, _matrix(tuple(d for d in dirs if os.path.isdir(os.path.join(d, "matrix")))))
    settings = rollout_settings(fleet, chosen)
    window = Opening(fake.ports().sample_serving(), fake.clock.monotonic()) if opening else None
    fake.clock.sleep(PREFLIGHT_S)
    plan, _ = make_plan(fleet, fleet.hosts, settings)
    if gate is None:
        gate = GateSettings(max_error_rate=settings.max_error_rate, max_ttft_p95_ratio=settings.max_ttft_p95_ratio)
    targets = tuple(h for h in fleet.hosts if h.name in plan.hosts)
    return UpgradeRequest(chosen, None, targets, {}, gate, settings.bake_s, window), plan


def upgrade(
    fake: FakeFleet, events: Events | None = None, profile: str = "next", *, gate: GateSettings | None = None
) -> RunState:
    req, plan = request(fake, profile, gate=gate)
    return start_run(fake.fleet, req, plan, events if events is not None else Events(), ports=fake.ports())


def resume(fake: FakeFleet, events: Events | None = None, *, abort: bool = False) -> RunState:
    sink = events if events is not None else Events()
    return resume_run(fake.fleet, {}, sink, abort=abort, ports=fake.ports())
