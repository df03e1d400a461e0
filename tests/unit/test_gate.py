"""The canary gate, row by row, from hand-built window figures."""

import pytest

from fleetctl.core.gate import GateSettings, judge_ring
from fleetctl.core.metrics import Histogram, WindowFigures

INF = float("inf")


def figures(finished, errors=0, fast=None):
    """``fast`` requests had TTFT ≤ 0.1 s, the rest ≤ 1 s."""
    fast = finished if fast is None else fast
    return WindowFigures(finished, errors, Histogram(((0.1, fast), (1.0, finished), (INF, finished)), finished, 1.0))


BASE = figures(100)  # p95 = 0.095 s
SETTINGS = GateSettings(max_error_rate=0.05, max_ttft_p95_ratio=2.0)


def metrics_of(verdict):
    return {c.metric: c.passed for c in verdict.checks}


def test_healthy_ring_passes():
    v = judge_ring({"a": figures(50), "b": figures(50)}, BASE, (), SETTINGS)
    assert v.passed and metrics_of(v) == {"health": True, "requests": True, "error_rate": True, "ttft_p95_ratio": True}


@pytest.mark.parametrize("errors, passed", [(5, True), (6, False)])
def test_error_rate_boundary(errors, passed):
    v = judge_ring({"a": figures(100, errors)}, BASE, (), SETTINGS)
    assert metrics_of(v)["error_rate"] is passed
    if not passed:
        check = v.failures[0]
        assert (check.metric, check.value, check.threshold, check.hosts) == ("error_rate", 0.06, 0.05, ("a",))


def test_slow_ring_fails_on_ttft_ratio():
    v = judge_ring({"a": figures(100, fast=0)}, BASE, (), SETTINGS)  # every first token after 0.1 s
    assert not v.passed and v.failures[0].metric == "ttft_p95_ratio" and v.failures[0].value > 2.0
    assert "TTFT p95" in v.failures[0].detail


def test_unhealthy_host_fails_the_gate():
    v = judge_ring({"a": figures(100), "b": figures(100)}, BASE, ("b",), SETTINGS)
    assert [c.metric for c in v.failures] == ["health"] and v.failures[0].hosts == ("b",)


def test_no_traffic_is_not_a_pass():
    v = judge_ring({"a": WindowFigures()}, BASE, (), SETTINGS)
    assert not v.passed and v.failures[0].metric == "requests"


def test_without_baseline_figures_ttft_is_not_compared_but_the_rest_is_judged():
    v = judge_ring({"a": figures(100, errors=50)}, None, (), SETTINGS)
    assert metrics_of(v) == {"health": True, "requests": True, "error_rate": False, "ttft_p95_ratio": True}
    assert "not compared" in [c for c in v.checks if c.metric == "ttft_p95_ratio"][0].detail


def test_answers_rejected_before_the_engine_fail_the_gate():
    rejected = WindowFigures(finished=70, errors=0, ttft=BASE.ttft, answers=100, answers_5xx=30)
    v = judge_ring({"a": rejected}, BASE, (), SETTINGS)
    assert [c.metric for c in v.failures] == ["error_rate"] and v.failures[0].value == pytest.approx(0.3)
    assert "30 of 100 answers 5xx" in v.failures[0].detail
