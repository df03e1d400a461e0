"""Drain's wait for in-flight requests: a vLLM that is gone has nothing in flight; one too busy to answer
/metrics in time may still be serving, so the wait goes on (and times out saying so)."""

import pytest

import fleetctl.services.serving as serving
from fleetctl.errors import HostError
from tests.fake.clock import FakeClock


class Ops:
    """``HostOps`` as quiesce uses it: ``in_flight`` answers from a script (the last answer repeats)."""

    def __init__(self, script, clock=None):
        self.host, self.script = type("H", (), {"name": "gpu-01"})(), list(script)
        self.clock = clock or FakeClock(mono=0.0)

    def in_flight(self, port):
        answer = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(answer, str):
            raise HostError("gpu-01", answer, f"GET /metrics: {answer}")
        return answer


def test_a_slow_answer_is_asked_again_until_nothing_is_in_flight():
    events = []
    ops = Ops(["vllm_slow", (2.0, 0.0), "vllm_slow", (0.0, 0.0)])
    assert serving.quiesce(ops, 8000, 60, False, events.append) == "drained"
    assert [e["event"] for e in events] == ["slow_metrics", "slow_metrics", "drained"]
    assert ops.script == [(0.0, 0.0)]  # every scripted answer was asked for


def test_a_vllm_that_is_gone_has_nothing_in_flight():
    events = []
    assert serving.quiesce(Ops(["vllm_unreachable"]), 8000, 60, False, events.append) == "drained"
    assert [e["event"] for e in events] == ["not_answering", "drained"]


def test_a_vllm_that_stays_too_busy_times_out_and_says_so():
    with pytest.raises(HostError, match="too busy to answer /metrics after 30s; the host stays out") as e:
        serving.quiesce(Ops(["vllm_slow"], FakeClock(mono=0.0, step=10)), 8000, 30, False, lambda e: None)
    assert e.value.kind == "drain_timeout"


def test_requests_still_in_flight_at_the_timeout_are_counted_in_the_error():
    with pytest.raises(HostError, match="still 3 running and 1 waiting requests after 5s"):
        serving.quiesce(Ops([(3.0, 1.0)]), 8000, 5, False, lambda e: None)


def test_a_long_drain_asks_less_and_less_often():
    ops = Ops([(1.0, 0.0)] * 25 + [(0.0, 0.0)])
    assert serving.quiesce(ops, 8000, 60, False, lambda e: None) == "drained"
    # every 0.1 s for the first 2 s (a short drain is seen at once), then less often, never more than 0.5 s late
    assert ops.clock.slept == [0.1] * 20 + [0.2, 0.4, 0.5, 0.5, 0.5]
