"""Drive fleetctl's own maintenance service (``plan_head``, ``start_maintenance``, ``resume_maintenance``) over a
``FakeFleet`` and its ``FakeMaintenance``."""

from __future__ import annotations

import dataclasses

from fleetctl.core.fleet import MaintainSettings
from fleetctl.core.maintain import MaintainState
from fleetctl.services import maintain as service
from fleetctl.services.maintain import MaintainRequest, World
from tests.fake.drive import Events
from tests.fake.fleet import FakeFleet
from tests.fake.maintain import FakeMaintenance

UPDATE = "install-driver"  # the command the tests' runs give, unless they say otherwise


def settings(fake: FakeFleet, **changes: object) -> None:
    """Change the fake fleet's ``[maintain]`` (e.g. ``max_parallel=2``)."""
    chosen: MaintainSettings = dataclasses.replace(fake.fleet.maintain, **changes)  # type: ignore[arg-type]
    fake.fleet = dataclasses.replace(fake.fleet, maintain=chosen)


def world(fake: FakeFleet, hosts: FakeMaintenance) -> World:
    return World(fake.ports(), hosts.ops())


def maintain(
    fake: FakeFleet,
    hosts: FakeMaintenance,
    events: Events | None = None,
    *,
    commands: tuple[str, ...] = (UPDATE,),
    reboot: bool = True,
    expect: tuple[str, ...] = (),
    limit: tuple[str, ...] | None = None,
    sudo: bool = False,
) -> MaintainState:
    """``fleetctl maintain --limit HOSTS --run CMD... [--reboot] [--expect ...] --yes`` (every host by default)."""
    targets = tuple(h for h in fake.fleet.hosts if limit is None or h.name in limit)
    request = MaintainRequest(targets, None, commands, sudo=sudo, reboot=reboot, expect=expect)
    head = service.plan_head(fake.fleet, request)
    sink = events if events is not None else Events()
    return service.start_maintenance(fake.fleet, head, sink, world=world(fake, hosts), environ={})


def resume(
    fake: FakeFleet, hosts: FakeMaintenance, events: Events | None = None, *, abort: bool = False, rerun: bool = False
) -> MaintainState:
    """``fleetctl maintain --resume [--rerun]`` or ``--abort``."""
    sink = events if events is not None else Events()
    return service.resume_maintenance(fake.fleet, sink, environ={}, abort=abort, rerun=rerun, world=world(fake, hosts))
