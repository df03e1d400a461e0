"""A sync that meets a router its supervisor is restarting waits for it (bounded, on the injected clock); one that
meets a router nobody supervises fails at once. And which mode changes restart a running router."""

from __future__ import annotations

import pytest

from fleetctl.core.router import RouterWorker
from fleetctl.errors import RouterError
from fleetctl.services import router_sync as router
from tests.fake.clock import FakeClock


class Client:
    """Refuses ``down`` times, then holds one worker."""

    mode = "single"
    url = "http://127.0.0.1:9"

    def __init__(self, down: int):
        self.down, self.asked = down, 0

    def list_workers(self):
        self.asked += 1
        if self.asked <= self.down:
            raise RouterError(self.url, "unreachable: connection refused")
        return ["http://10.0.0.1:8000"]


class Fleet:
    router = type("R", (), {"url": "http://127.0.0.1:9"})()


@pytest.fixture
def supervised(monkeypatch):
    def set_to(value):
        monkeypatch.setattr(router, "live_status", lambda fleet: {"phase": "restarting"} if value else None)

    return set_to


def test_a_restarting_router_is_waited_for(supervised):
    supervised(True)
    clock = FakeClock(mono=0.0)
    held = router._held_waiting(Fleet(), Client(down=5), clock)
    assert held == [RouterWorker("http://10.0.0.1:8000")]
    assert len(clock.slept) == 4  # asked once at first, then 5 more times through the poll


def test_a_restart_that_never_ends_is_an_error_after_the_bound(supervised):
    supervised(True)
    clock = FakeClock(mono=0.0)
    with pytest.raises(RouterError, match=r"still not answering after 30s of restart: unreachable"):
        router._held_waiting(Fleet(), Client(down=10**6), clock)
    assert sum(clock.slept) >= router.RESTART_WAIT_S


def test_an_unsupervised_router_that_does_not_answer_fails_at_once(supervised):
    supervised(False)
    clock = FakeClock(mono=0.0)
    with pytest.raises(RouterError, match="unreachable: connection refused"):
        router._held_waiting(Fleet(), Client(down=1), clock)
    assert clock.slept == []


@pytest.mark.parametrize(
    "running, needed, restart",
    [("single", "multi", True), ("multi", "single", False), ("single", "single", False), ("multi", "multi", False)],
)
def test_only_single_to_multi_restarts_a_running_router(running, needed, restart):
    from fleetctl.core.router import needs_restart

    assert needs_restart(running, needed) is restart
