"""Ring planning, row by row."""

import pytest

from fleetctl.core.fleet import Host, RolloutSettings
from fleetctl.core.rollout_plan import PlanError, plan_rollout


def hosts(*spec):
    return tuple(Host(name, name, ring=ring) for name, ring in spec)


FLEET = hosts(("a", "main"), ("b", "canary"), ("c", None), ("d", "early"), ("e", "main"), ("f", "edge"))


def rings(plan):
    return [(r.name, list(r.hosts)) for r in plan.rings]


def test_rings_follow_the_configured_order_then_unlisted_labels_then_unlabeled():
    plan = plan_rollout(FLEET, RolloutSettings(rings=("canary", "early", "main")), serving=6, min_serving=1)
    assert rings(plan) == [
        ("canary", ["b"]),
        ("early", ["d"]),
        ("main", ["a", "e"]),
        ("edge", ["f"]),
        ("unlabeled", ["c"]),
    ]


def test_default_is_one_host_then_a_quarter_then_the_rest():
    many = hosts(*[(f"h{i:02}", None) for i in range(10)])
    plan = plan_rollout(many, RolloutSettings(), serving=10, min_serving=1)
    assert [(n, len(h)) for n, h in rings(plan)] == [("canary", 1), ("25%", 3), ("rest", 6)]
    assert plan.hosts == tuple(h.name for h in many)


@pytest.mark.parametrize("n, sizes", [(1, [1]), (2, [1, 1]), (3, [1, 1, 1]), (5, [1, 2, 2])])
def test_default_rings_on_small_fleets(n, sizes):
    plan = plan_rollout(hosts(*[(f"h{i}", None) for i in range(n)]), RolloutSettings(), serving=n + 1, min_serving=1)
    assert [len(r.hosts) for r in plan.rings] == sizes


@pytest.mark.parametrize(
    "max_unavailable, serving, min_serving, batch", [(1, 6, 1, 1), (2, 6, 1, 2), (5, 6, 4, 2), (3, 6, 5, 1)]
)
def test_batches_respect_max_unavailable_and_min_serving(max_unavailable, serving, min_serving, batch):
    plan = plan_rollout(
        FLEET,
        RolloutSettings(rings=("main",), max_unavailable=max_unavailable),
        serving=serving,
        min_serving=min_serving,
    )
    assert plan.batch_size == batch
    assert all(len(b) <= batch for r in plan.rings for b in r.batches)


def test_no_room_under_min_serving_is_refused():
    with pytest.raises(PlanError, match="min_serving = 2"):
        plan_rollout(FLEET[:2], RolloutSettings(), serving=2, min_serving=2)


def test_plan_as_data():
    plan = plan_rollout(FLEET[:2], RolloutSettings(rings=("canary",)), serving=2, min_serving=1)
    assert plan.to_dict() == {
        "batch_size": 1,
        "rings": [
            {"name": "canary", "hosts": ["b"], "batches": [["b"]]},
            {"name": "main", "hosts": ["a"], "batches": [["a"]]},
        ],
    }


def test_plan_round_trips_through_the_journal():
    plan = plan_rollout(FLEET, RolloutSettings(rings=("canary", "main"), max_unavailable=2), serving=6, min_serving=1)
    from fleetctl.core.rollout_plan import RolloutPlan

    assert RolloutPlan.from_dict(plan.to_dict()) == plan
