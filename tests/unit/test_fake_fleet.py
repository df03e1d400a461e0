"""The fake fleet itself behaves as the real one does where the executor depends on it."""

import pytest

from fleetctl.core.serve import CONTAINER_NAME
from fleetctl.errors import HostError, RouterError
from tests.fake import FakeFleet
from tests.fake.drive import Events, upgrade


def test_a_healthy_run_through_the_fake_moves_every_host_and_keeps_the_router_whole(tmp_path):
    fake, events = FakeFleet(tmp_path), Events()
    state = upgrade(fake, events)
    assert state.finished == "completed"
    assert set(fake.images().values()) == {"lab/vllm:next"}
    assert fake.in_router() == set(fake.hosts)
    assert [e["host"] for e in events if e.get("step") == "replace" and e["event"] == "upgrade_step"] == [
        "gpu-01",
        "gpu-02",
        "gpu-03",
        "gpu-04",
    ]


def test_counters_start_again_when_a_container_restarts(tmp_path):
    fake = FakeFleet(tmp_path)
    fake.clock.sleep(5)
    container = fake.hosts["gpu-01"].containers[CONTAINER_NAME]
    assert container.finished["stop"] == 50
    container.status = "exited"
    fake.hosts["gpu-01"].restore()  # nothing kept: the current container is started again
    assert container.running and container.finished == {}


def test_a_dropped_connection_kills_every_handle_opened_before_it(tmp_path):
    fake = FakeFleet(tmp_path)
    ports = fake.ports()
    handle = ports.host("gpu-01")
    fake.hosts["gpu-01"].drop("current")
    for _ in range(2):
        with pytest.raises(HostError) as e:
            handle.runtime.current()
        assert e.value.kind == "disconnected"
    assert ports.host("gpu-01").runtime.current().running  # a new connection works


def test_the_router_refuses_as_told_and_sync_adds_nothing_it_then_removes(tmp_path):
    fake = FakeFleet(tmp_path)
    fake.router.held.remove(fake.url("gpu-02"))
    fake.router.refuse_add = True
    with pytest.raises(RouterError, match="refused to add"):
        fake.ports().sync_router()
    assert ("add", fake.url("gpu-02")) in fake.router.calls
