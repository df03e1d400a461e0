"""The upgrade's pure decisions, row by row with hand-built inputs."""

import pytest

from fleetctl.core import rollout_decisions as d
from fleetctl.core.fleet import Host
from fleetctl.core.fleetstate import DrainRecord, FleetState, ServingRecord
from fleetctl.core.gate import GateSettings
from fleetctl.core.metrics import SUCCESS, TTFT, Histogram, MetricsSample, WindowFigures
from fleetctl.core.records import AbortRequested, Outcome, Record, RunFinished, RunStarted
from fleetctl.core.rollout_plan import Ring, RolloutPlan
from fleetctl.errors import CheckFailed, HostsFailed, UsageError

A, B, C = Host("a", "10.0.0.1"), Host("b", "10.0.0.2"), Host("c", "10.0.0.3")


def sample(finished: float, errors: float = 0.0, ttft_count: float | None = None) -> MetricsSample:
    n = finished if ttft_count is None else ttft_count
    return MetricsSample(
        counters={(SUCCESS, "stop"): finished - errors, (SUCCESS, "error"): errors},
        histograms={TTFT: Histogram(((0.1, n), (float("inf"), n)), n, n * 0.05)},
    )


def serving(*names, drained=()):
    state = FleetState()
    for n in names:
        state = state.with_serving(ServingRecord(n, f"http://{n}:8000", "p", "i", "r", "t"))
    for n in drained:
        state = state.with_drained(DrainRecord(n, "why", "me", "t"))
    return state


@pytest.mark.parametrize(
    ("state", "targets", "chosen", "skipped", "count"),
    [
        (serving("a", "b", "c"), (A, B, C), ("a", "b", "c"), (), 3),
        (serving("a", "b", "c", drained=("b",)), (A, B, C), ("a", "c"), ("b",), 2),
        (serving("a"), (A, B), ("a",), ("b",), 1),  # b never deployed
        (serving("a", "b", "c"), (C,), ("c",), (), 3),  # others count as serving, not as targets
        (serving(), (A,), (), ("a",), 0),
    ],
)
def test_a_plan_takes_the_targets_that_serve_now(state, targets, chosen, skipped, count):
    found = d.serving_targets(targets, d.serving_now(state))
    assert (tuple(h.name for h in found.chosen), found.skipped, found.serving) == (chosen, skipped, count)


@pytest.mark.parametrize(
    ("bad", "skip", "check_failed", "kept", "error"),
    [
        (set(), False, False, ("a", "b"), None),
        ({"b"}, True, True, ("a",), None),
        ({"b"}, False, True, None, CheckFailed),  # a rule failed: exit 4
        ({"b"}, False, False, None, HostsFailed),  # b could not be probed: exit 3
        ({"a", "b"}, True, True, None, CheckFailed),  # nothing left to upgrade
    ],
)
def test_the_preflight_keeps_or_leaves_out_hosts_that_cannot_run_the_profile(bad, skip, check_failed, kept, error):
    run = lambda: d.after_preflight((A, B), bad, skip_incompatible=skip, check_failed=check_failed, profile="p")  # noqa: E731
    if error is not None:
        with pytest.raises(error):
            run()
    else:
        assert tuple(h.name for h in run()) == kept


def record(body):
    return Record("2026-11-30T08:00:00.000Z", "r", body)


def head_record(previous=None, profile="next"):
    plan = RolloutPlan((Ring("canary", (("h0",), ("h1",))),), 1)
    return record(RunStarted(plan, profile, "next.toml", "img:2", "r", previous or {}, None, 3.0, GateSettings()))


STARTED = head_record()
FINISHED = record(RunFinished(Outcome.COMPLETED))


@pytest.mark.parametrize(
    ("runs", "found"),
    [
        ([], None),
        ([("r2", [STARTED, FINISHED]), ("r1", [STARTED])], "r1"),
        ([("r2", [STARTED]), ("r1", [STARTED])], "r2"),  # the newest
        ([("r1", [])], None),  # an empty file is not a run
        ([("r1", [record(AbortRequested())])], None),  # no head: not a run fleetctl started
    ],
)
def test_the_unfinished_run_is_the_newest_started_and_not_finished(runs, found):
    pending = d.unfinished(runs)
    assert (pending[0] if pending else None) == found


def test_a_new_run_is_refused_while_one_is_unfinished():
    assert d.new_run_refusal(None) is None
    assert "run r1 did not finish" in d.new_run_refusal("r1")


def head(*versions):
    previous = {f"h{i}": {"record": {"profile": p, "image": img}} for i, (p, img) in enumerate(versions)}
    return head_record(previous).body


def test_a_rollback_goes_back_to_the_one_version_the_hosts_ran_before():
    target = d.rollback_target(head(("old", "img:1"), ("old", "img:1")), ("h0", "h1"))
    assert (target.profile, target.image, target.hosts) == ("old", "img:1", ("h0", "h1"))
    with pytest.raises(UsageError, match="different versions"):
        d.rollback_target(head(("old", "img:1"), ("other", "img:2")), ("h0", "h1"))


def test_the_last_completed_run_is_the_rollback_source():
    runs = [("r3", [head_record(profile="three")]), ("r2", [head_record(profile="two"), FINISHED])]
    assert d.last_completed(runs).profile == "two"
    with pytest.raises(UsageError):
        d.last_completed([("r1", [STARTED, record(RunFinished(Outcome.ROLLED_BACK))])])


def test_the_ring_is_judged_against_the_serving_hosts_it_did_not_upgrade():
    before = {"a": sample(10), "b": sample(10), "c": sample(10)}
    after = {"a": sample(30, 2), "b": sample(40), "c": sample(20)}
    got = d.judge_inputs(("a",), before, after, upgraded=("a",), serving=("a", "b"), old=None)
    assert got.ring["a"].finished == 20 and got.ring["a"].errors == 2
    assert got.baseline_hosts == ("b",)  # c is not serving (drained): not a baseline
    assert got.baseline.finished == 30 and got.compare_with is got.baseline and got.source == d.BASELINE_HOSTS


def test_with_no_baseline_host_left_the_ring_is_judged_against_the_old_version_figures():
    old = WindowFigures(finished=100)
    before, after = {"a": sample(0), "b": sample(0)}, {"a": sample(5), "b": sample(5)}
    got = d.judge_inputs(("a", "b"), before, after, upgraded=("a", "b"), serving=("a", "b"), old=old)
    assert got.baseline is None and got.compare_with is old and got.source == d.OLD_FIGURES


def test_a_ring_host_missing_after_the_bake_is_unhealthy():
    got = d.judge_inputs(("a", "b"), {"a": sample(0), "b": sample(0)}, {"a": sample(5)}, ("a", "b"), ("a",), None)
    assert got.unhealthy == ("b",) and set(got.ring) == {"a"}


def test_the_old_version_figures_add_every_baseline():
    assert d.with_baseline(None, None) is None
    first = d.with_baseline(None, WindowFigures(finished=3))
    assert first.finished == 3 and d.with_baseline(first, WindowFigures(finished=4)).finished == 7
    assert d.with_baseline(first, None) is first


@pytest.mark.parametrize(("bake_s", "rebake"), [(3, 3), (10, 10), (60, 10)])
def test_a_resumed_judge_bakes_again_briefly(bake_s, rebake):
    assert d.rebake_s(bake_s) == rebake


def test_the_reference_window_is_the_old_version_traffic_since_the_opening():
    doc = d.reference_window({"a": sample(10), "b": sample(5)}, 100.0, {"a": sample(20), "c": sample(9)}, 102.5)
    assert doc["finished"] == 10 and doc["seconds"] == 2.5
    assert d.reference_window({"a": sample(10)}, 100.0, {"a": sample(10)}, 101.0) is None  # no traffic


@pytest.mark.parametrize(
    ("url", "port"),
    [
        ("http://10.0.0.1:8000", 8000),
        ("http://10.0.0.1:8000/", 8000),
        ("http://[fd00::1]:9000", 9000),
        ("http://gpu-a01", 80),  # no port: the scheme's
        ("https://gpu-a01", 443),
        ("gpu-a01", 8000),  # not a URL: the profile's port
        ("http://gpu-a01:99999", 8000),  # out of range: the profile's port, never a crash
        ("http://gpu-a01:abc", 8000),
    ],
)
def test_a_serving_url_port(url, port):
    assert d.url_port(url, 8000) == port
