"""wait_healthy: every condition must hold; a dead container fails at once; the timeout names what was missing."""

import pytest

from fleetctl.errors import HostError
from fleetctl.services.health import wait_healthy
from fleetctl.services.poll import HEALTH
from tests.fake.clock import FakeClock


class FakeVllm:
    """Each poll starts with health(), which moves to the next scripted state (the last one repeats)."""

    def __init__(self, script):
        self.host, self.script, self.state = "gpu-01", list(script), None

    def health(self):
        self.state = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if self.state == "refused":
            raise HostError("gpu-01", "vllm_unreachable", "connection refused")
        return self.state != "loading"

    def models(self):
        return ["m"] if self.state in ("ready", "bad-completion") else []

    def complete(self, model):
        if self.state == "bad-completion":
            raise HostError("gpu-01", "unhealthy", "completion answered 500")


def wait(vllm, timeout=10, still_running=None):
    clock = FakeClock(mono=0.0)
    return wait_healthy(vllm, "m", timeout, still_running=still_running, clock=clock)


def test_healthy_after_loading():
    assert wait(FakeVllm(["refused", "loading", "no-model", "ready"])) == pytest.approx(3 * HEALTH.every_s)  # 3 polls


def test_timeout_names_the_last_problem():
    with pytest.raises(HostError, match=r"not healthy after 3s: /v1/models does not list m"):
        wait(FakeVllm(["no-model"]), timeout=3)


def test_a_failing_completion_is_not_healthy():
    with pytest.raises(HostError, match="completion answered 500"):
        wait(FakeVllm(["bad-completion"]), timeout=2)


def test_a_container_that_exits_fails_at_once():
    with pytest.raises(HostError, match="exited before it was healthy") as e:
        wait(FakeVllm(["refused"]), timeout=600, still_running=lambda: False)
    assert e.value.kind == "unhealthy"
