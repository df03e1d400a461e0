"""core.evidence: the bake's measurements and decision, row by row, and the synthetic requests' pacing."""

from __future__ import annotations

import pytest

from fleetctl.core.evidence import (
    Measurement,
    Next,
    Synthetic,
    classify,
    decide_bake,
    evidence_grace_s,
    rebake_with_evidence,
    short_of_evidence,
    smoke_due,
    smoke_requests,
)
from fleetctl.core.fleet import RolloutSettings
from fleetctl.core.gate import GateCheck, GateSettings, Verdict, gate_settings, judge_ring
from fleetctl.core.metrics import Histogram, WindowFigures

P, F, N, U = Measurement.PASSED, Measurement.FAILED, Measurement.INCONCLUSIVE, Measurement.UNHEALTHY


def check(metric: str, passed: bool) -> GateCheck:
    return GateCheck(metric, passed, None, None, ("gpu-01",), "")


@pytest.mark.parametrize(
    ("failed", "expected"),
    [
        ((), P),
        (("error_rate",), F),
        (("ttft_p95_ratio",), F),
        (("ttft_p95_ms",), F),
        (("requests",), N),
        (("health",), U),
        (("health", "requests"), U),
    ],
)
def test_a_verdict_is_one_measurement(failed, expected):
    metrics = ("health", "requests", "error_rate", "ttft_p95_ratio", "ttft_p95_ms")
    verdict = Verdict(tuple(check(m, m not in failed) for m in metrics))
    assert classify(verdict) is expected


@pytest.mark.parametrize(
    ("measurements", "limit", "over", "expected"),
    [
        ((), 0, False, Next.CONTINUE),
        ((N,), 0, False, Next.CONTINUE),  # not enough evidence yet: neither pass nor fail
        ((P,), 0, False, Next.CONTINUE),  # a passing measurement does not end the bake
        ((F,), 0, False, Next.ABORT),  # failure_limit 0: the first failure aborts
        ((P, F), 0, False, Next.ABORT),
        ((F,), 1, False, Next.CONTINUE),  # one failure tolerated
        ((F, P, F), 1, False, Next.ABORT),  # strictly greater: the second failure aborts
        ((F, F, F), 3, False, Next.CONTINUE),
        ((F, F, F, F), 3, False, Next.ABORT),  # failureLimit 3 aborts on the 4th
        ((U,), 5, False, Next.ABORT),  # an exited or unhealthy host aborts at once, whatever the limit
        ((P, U), 0, True, Next.ABORT),
        ((P,), 0, True, Next.PASS),  # passes only when the bake is over
        ((N, N, P), 0, True, Next.PASS),
        ((N,), 0, True, Next.ABORT),  # the bake ended without evidence: no pass
        ((P, N), 0, True, Next.ABORT),
        ((F, P), 1, True, Next.PASS),
        ((F, F), 1, True, Next.ABORT),
        ((), 0, True, Next.ABORT),
    ],
)
def test_the_bake_continues_aborts_or_passes(measurements, limit, over, expected):
    assert decide_bake(measurements, limit, over).next is expected


@pytest.mark.parametrize(
    ("elapsed", "rps", "sent", "due"),
    [
        (0.0, 2.0, 0, 1),  # the first goes at once
        (0.0, 2.0, 1, 0),
        (0.5, 2.0, 1, 1),
        (1.0, 2.0, 2, 1),
        (10.0, 2.0, 21, 0),  # never more than rps a second
        (10.0, 2.0, 0, 21),  # a late tick catches up, bounded by the rate since the start
        (3.0, 0.0, 0, 0),  # rate 0: none
        (-1.0, 2.0, 0, 0),
    ],
)
def test_synthetic_requests_are_paced(elapsed, rps, sent, due):
    assert smoke_due(elapsed, rps, sent) == due


@pytest.mark.parametrize(
    ("requests", "elapsed", "minimum", "horizon", "short"),
    [
        (0, 1.0, 20, 5.0, True),  # quiet clients
        (10, 1.0, 20, 5.0, False),  # ahead of the pace to 20 by the first measurement
        (3, 1.0, 20, 5.0, True),  # behind it
        (19, 5.0, 20, 5.0, True),
        (20, 5.0, 20, 5.0, False),  # enough: never more synthetic
        (25, 0.5, 20, 5.0, False),
        (0, 0.0, 20, 5.0, False),  # at the very start nothing is behind yet
        (0, 0.0, 20, 0.0, True),
    ],
)
def test_synthetic_requests_only_while_evidence_is_short(requests, elapsed, minimum, horizon, short):
    assert short_of_evidence(requests, elapsed, minimum, horizon) is short


def test_the_built_in_smoke_set_covers_chat_completion_streaming_short_and_long():
    requests = smoke_requests("m")
    kinds = {(r.path, r.stream, len(str(r.body.get("messages") or r.body.get("prompt"))) > 100) for r in requests}
    assert kinds == {
        (path, stream, long)
        for path in ("/v1/chat/completions", "/v1/completions")
        for stream in (False, True)
        for long in (False, True)
    }
    assert all(r.body["model"] == "m" and r.body["stream"] == r.stream and r.body["max_tokens"] > 0 for r in requests)


def test_given_prompts_replace_the_built_in_ones():
    requests = smoke_requests("m", ("ping",))
    assert len(requests) == 4
    assert {r.body.get("prompt") or r.body["messages"][0]["content"] for r in requests} == {"ping"}


def test_synthetic_counts_say_how_many_requests_were_real():
    assert Synthetic(ring=12, baseline=12).to_dict(30.0) == {"ring": 12, "baseline": 12, "real": 18}
    assert Synthetic(ring=5).to_dict(3.0)["real"] == 0


def test_the_gate_takes_its_settings_from_the_rollout_table():
    rollout = RolloutSettings(min_requests=7, interval_s=2.5, failure_limit=2, smoke_rps=1.0, max_ttft_p95_ms=300.0)
    gate = gate_settings(rollout)
    assert (gate.min_requests, gate.interval_s, gate.failure_limit, gate.smoke_rps, gate.max_ttft_p95_ms) == (
        7,
        2.5,
        2,
        1.0,
        300.0,
    )
    assert gate_settings(RolloutSettings()).min_requests == 20


def figures(requests: float, ttft_s: float) -> WindowFigures:
    histogram = Histogram(
        ((0.1, requests if ttft_s <= 0.1 else 0.0), (1.0, requests), (float("inf"), requests)),
        requests,
        requests * ttft_s,
    )
    return WindowFigures(finished=requests, answers=requests, ttft=histogram)


@pytest.mark.parametrize(("ttft_s", "passed"), [(0.05, True), (0.5, False)])
def test_an_absolute_ttft_ceiling_judges_a_ring_without_a_baseline(ttft_s, passed):
    settings = GateSettings(min_requests=20, max_ttft_p95_ms=200.0)
    verdict = judge_ring({"gpu-01": figures(30, ttft_s)}, None, (), settings)
    absolute = next(c for c in verdict.checks if c.metric == "ttft_p95_ms")
    assert absolute.passed is passed and verdict.passed is passed


@pytest.mark.parametrize(
    ("brief", "bake", "minimum", "rps", "seconds"),
    [
        (10.0, 60.0, 20, 2.0, 12.0),  # 20 requests at 2/s need 10 s, plus margin
        (10.0, 60.0, 4, 2.0, 10.0),  # the brief re-bake is enough
        (3.0, 3.0, 20, 2.0, 3.0),  # never longer than the bake
        (10.0, 60.0, 20, 0.0, 60.0),  # no synthetic requests: the whole bake
    ],
)
def test_a_resumed_judge_bakes_long_enough_for_its_evidence(brief, bake, minimum, rps, seconds):
    assert rebake_with_evidence(brief, bake, minimum, rps) == seconds


@pytest.mark.parametrize(
    ("measurements", "over", "overdue", "expected"),
    [
        # the bake is over but short of evidence: gather more (fleetctl's own requests) until overdue
        ([N], True, False, Next.CONTINUE),
        ([P, N], True, False, Next.CONTINUE),
        ([N], True, True, Next.ABORT),
        # enough evidence once gathered: passes (the bake is over)
        ([N, P], True, False, Next.PASS),
        # a failure or an unhealthy host while gathering still aborts at once
        ([N, F], True, False, Next.ABORT),
        ([N, U], True, False, Next.ABORT),
    ],
)
def test_a_bake_short_of_evidence_gathers_it_until_overdue(measurements, over, overdue, expected):
    assert decide_bake(measurements, 0, over, overdue).next is expected


@pytest.mark.parametrize(
    ("min_requests", "rps", "interval_s", "grace"), [(20, 2.0, 5.0, 15.0), (20, 4.0, 1.0, 6.0), (20, 0.0, 5.0, 0.0)]
)
def test_evidence_grace_is_the_time_synthetic_requests_take_to_supply_the_minimum(min_requests, rps, interval_s, grace):
    assert evidence_grace_s(min_requests, rps, interval_s) == grace
