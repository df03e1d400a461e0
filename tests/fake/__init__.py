"""An in-memory fleet for the rollout executor's fast tests: hosts with containers and vLLM metrics, a router,
a clock that moves only when something sleeps, and SSH connections that can drop. No root, no network."""

from tests.fake.clock import FakeClock
from tests.fake.fleet import MODEL, FakeFleet
from tests.fake.hosts import Behaviour, FakeContainer, FakeHost
from tests.fake.router import FakeRouter

__all__ = ["MODEL", "Behaviour", "FakeClock", "FakeContainer", "FakeFleet", "FakeHost", "FakeRouter"]
