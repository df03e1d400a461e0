"""Routing by model as pure decisions: the intended (url, model) set, the mode, the diff on (url, model) and the
order a diff is applied in. Hand-built inputs, one row per case."""

from __future__ import annotations

import pytest

from fleetctl.core.fleetstate import DrainRecord, FleetState, ServingRecord
from fleetctl.core.router import (
    RouterDiff,
    RouterWorker,
    intended_workers,
    plan_launch,
    plan_sync,
    router_mode,
    sync_steps,
)

A, B, C = "http://10.0.0.1:8000", "http://10.0.0.2:8000", "http://10.0.0.3:8000"


def W(url: str, model: str = "") -> RouterWorker:
    return RouterWorker(url, model)


def state(serving: dict[str, tuple[str, str]], drained: tuple[str, ...] = ()) -> FleetState:
    s = FleetState()
    for host, (url, model) in serving.items():
        s = s.with_serving(ServingRecord(host, url, "p", "img", "r1", "2026-01-01T00:00:00Z", model=model))
    for host in drained:
        s = s.with_drained(DrainRecord(host, "test", "pytest", "2026-01-01T00:00:00Z"))
    return s


def test_intended_workers_are_serving_not_drained_each_with_its_records_model():
    s = state({"h1": (A + "/", "m1"), "h2": (B, "m2"), "h3": (C, "m1")}, drained=("h3",))
    assert intended_workers(s) == {W(A, "m1"), W(B, "m2")}


@pytest.mark.parametrize(
    "workers, mode",
    [
        (set(), "single"),
        ({W(A, "m1")}, "single"),
        ({W(A, "m1"), W(B, "m1")}, "single"),
        ({W(A, "m1"), W(B, "m2")}, "multi"),
        ({W(A, ""), W(B, "m2")}, "single"),  # a record that names no model is no second model
        ({W(A, "m1"), W(B, "m2"), W(C, "m3")}, "multi"),
    ],
)
def test_router_mode_rows(workers, mode):
    assert router_mode(workers) == mode


@pytest.mark.parametrize(
    "current, intended, add, remove, models",
    [
        # multi: (url, model) is the key
        ([W(A, "m1")], [W(A, "m1")], (), (), ()),
        ([], [W(A, "m1"), W(B, "m2")], (A, B), (), ((A, "m1"), (B, "m2"))),
        ([W(A, "m1")], [W(A, "m2")], (A,), (A,), ((A, "m2"),)),  # a changed model: delete, then add
        ([W(A + "/", "m1")], [W(A, "m1")], (), (), ()),  # another spelling of the same worker
        ([W(A, "m1"), W(B, "m2")], [W(B, "m2")], (), (A,), ()),
        ([W(A, "")], [W(A, "m1")], (A,), (A,), ((A, "m1"),)),  # filed under no model ("unknown")
        ([W(A, "m1"), W(A, "m1")], [W(A, "m1")], (A,), (A,), ((A, "m1"),)),  # held twice: once again
    ],
)
def test_plan_sync_in_multi_mode_diffs_on_url_and_model(current, intended, add, remove, models):
    diff = plan_sync(current, intended, "multi")
    assert (diff.add, diff.remove, diff.models) == (add, remove, models)


def test_single_mode_ignores_models_a_url_it_holds_is_never_posted_again():
    assert plan_sync([W(A, "unknown")], [W(A, "m1")], "single").empty
    assert plan_sync([A], [W(A, "m1"), W(B, "m2")], "single") == RouterDiff(add=(B,))


def test_a_changed_models_remove_comes_before_the_adds_and_other_removes_after():
    diff = plan_sync([W(A, "m1"), W(C, "m1")], [W(A, "m2"), W(B, "m2")], "multi")
    assert diff.replaced == (A,)
    assert sync_steps(diff) == [("remove", A), ("add", A), ("add", B), ("remove", C)]
    assert diff.model_of(A) == "m2" and diff.model_of(C) == ""


def test_multi_mode_launches_empty_with_igw_and_single_mode_with_its_workers():
    multi = plan_launch("http://127.0.0.1:30000", [A], metrics_port=29001, mode="multi")
    assert "--enable-igw" in multi.args and "--worker-urls" not in multi.args
    single = plan_launch("http://127.0.0.1:30000", [A], metrics_port=29001)
    assert "--enable-igw" not in single.args and single.args[-2:] == ("--worker-urls", A)


def test_a_url_that_does_not_parse_is_kept_as_it_is_and_still_removed():
    odd = "http://a[/b]:1"
    diff = plan_sync([W(odd, "m1")], [], "multi")
    assert diff.remove == (odd,) and sync_steps(diff) == [("remove", odd)]
