"""The one wait helper: what it asks, when it sleeps and when it gives up, on a fake clock (no real waiting)."""

import pytest

from fleetctl.services.poll import DRAIN, Cadence, poll
from tests.fake.clock import FakeClock


def answers(*script):
    """An ``ask`` that answers from ``script`` in order and records when it was called."""
    calls = []

    def ask():
        calls.append(clock.now)
        return script[len(calls) - 1]

    clock = FakeClock(mono=0.0)
    return ask, calls, clock


def test_the_drain_cadence_is_pinned():
    """Every 0.1 s for the first 2 s, then doubling up to 0.5 s: the drain and upgrade benchmarks depend on it."""
    ask, calls, clock = answers(*([None] * 25), "done")
    assert poll(ask, 60, DRAIN, clock) == "done"
    assert clock.slept == [0.1] * 20 + [0.2, 0.4, 0.5, 0.5, 0.5]
    assert len(calls) == 26


def test_the_drain_cadence_as_data():
    assert (DRAIN.every_s, DRAIN.steady_s, DRAIN.factor, DRAIN.max_s) == (0.1, 2.0, 2.0, 0.5)
    assert DRAIN.next_delay(0.1, 1.99) == 0.1
    assert DRAIN.next_delay(0.1, 2.0) == 0.2
    assert DRAIN.next_delay(0.4, 3.0) == 0.5


def test_a_first_answer_returns_without_sleeping():
    ask, calls, clock = answers("here")
    assert poll(ask, 5, Cadence(1.0), clock) == "here"
    assert clock.slept == [] and calls == [0.0]


def test_false_and_zero_are_answers_only_none_means_not_yet():
    ask, _, clock = answers(None, False)
    assert poll(ask, 5, Cadence(1.0), clock) is False
    ask, _, clock = answers(None, 0)
    assert poll(ask, 5, Cadence(1.0), clock) == 0


def test_time_up_is_none_after_one_last_ask():
    ask, calls, clock = answers(*([None] * 10))
    assert poll(ask, 3, Cadence(1.0), clock) is None
    assert calls == [0.0, 1.0, 2.0, 3.0]  # the answer that arrives as time runs out still counts
    assert clock.slept == [1.0, 1.0, 1.0]


def test_a_fixed_cadence_never_backs_off():
    ask, _, clock = answers(*([None] * 50), 1)
    assert poll(ask, 60, Cadence(0.2), clock) == 1
    assert set(clock.slept) == {0.2}


def test_ask_may_end_the_wait_by_raising():
    def ask():
        raise RuntimeError("container exited")

    with pytest.raises(RuntimeError, match="container exited"):
        poll(ask, 60, DRAIN, FakeClock(mono=0.0))
