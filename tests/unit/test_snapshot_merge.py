"""Saving a run into the snapshot without losing what it did not reach; old facts; like-with-like diffs;
snapshot values no GPU can have."""

from __future__ import annotations

import pytest

from fleetctl.core.facts import GpuFacts, HostFacts
from fleetctl.core.inventory import (
    HostFailure,
    HostReport,
    Snapshot,
    SnapshotError,
    describe_age,
    diff_since,
    merge_snapshots,
    old_facts,
)

T0, T1 = "2026-11-29T10:00:00Z", "2026-11-30T12:00:00Z"


def rep(name: str, at: str, driver: str | None = "570.133.20", kind: str | None = None) -> HostReport:
    facts = None if driver is None else HostFacts(driver_version=driver, gpus=(GpuFacts(index=0, name="H100"),))
    error = None if kind is None else HostFailure(kind, f"{kind} reason")
    return HostReport(name=name, address=name, ring=None, facts=facts, error=error, probed_at=at)


def snap(at: str, *hosts: HostReport) -> Snapshot:
    return Snapshot(taken_at=at, fleet="lab", hosts=hosts)


PREVIOUS = snap(T0, rep("a", T0), rep("b", T0), rep("c", T0, driver=None, kind="auth"), rep("gone", T0))
FLEET = ["a", "b", "c", "new"]


@pytest.mark.parametrize(
    "case, run, expected",
    [
        # (what happened, this run's reports, (name, probed_at, driver, error kind) saved per host)
        (
            "--limit a: the others keep their reports",
            [rep("a", T1, "575.57.08")],
            [("a", T1, "575.57.08", None), ("b", T0, "570.133.20", None), ("c", T0, None, "auth")],
        ),
        (
            "every host unreachable: last good facts kept, their own time with them",
            [rep(n, T1, None, "unreachable") for n in FLEET],
            [("a", T0, "570.133.20", None), ("b", T0, "570.133.20", None), ("c", T1, None, "unreachable")]
            + [("new", T1, None, "unreachable")],
        ),
        (
            "a probe that answered with partial facts is this run's truth",
            [rep("b", T1, "570.133.20", "nvml_driver_not_loaded")],
            [("a", T0, "570.133.20", None), ("b", T1, "570.133.20", "nvml_driver_not_loaded"), ("c", T0, None, "auth")],
        ),
        (
            "a host new to the fleet is added; one gone from the fleet file drops out",
            [rep("new", T1)],
            [("a", T0, "570.133.20", None), ("b", T0, "570.133.20", None), ("c", T0, None, "auth")]
            + [("new", T1, "570.133.20", None)],
        ),
    ],
)
def test_merge(case, run, expected):
    merged = merge_snapshots(PREVIOUS, snap(T1, *run), FLEET)
    got = [
        (h.name, h.probed_at, h.facts.driver_version if h.facts else None, h.error and h.error.kind)
        for h in merged.hosts
    ]
    got = [(n, at, drv, kind or None) for n, at, drv, kind in got]
    assert got == expected, case
    assert merged.taken_at == T1


def test_merge_with_no_previous_snapshot_is_the_run_in_fleet_order():
    merged = merge_snapshots(None, snap(T1, rep("b", T1), rep("a", T1)), ["a", "b"])
    assert [h.name for h in merged.hosts] == ["a", "b"]


def test_old_facts_are_those_from_before_the_latest_run():
    merged = merge_snapshots(PREVIOUS, snap(T1, rep("a", T1)), FLEET)
    assert [(o.host, o.probed_at, o.age_s) for o in old_facts(merged)] == [("b", T0, 93600.0), ("c", T0, 93600.0)]
    assert old_facts(snap(T1, rep("a", T1))) == []


@pytest.mark.parametrize(
    "seconds, text", [(30, "1 min"), (90, "1 min"), (7200, "2 h"), (86400, "1 day"), (2e5, "2 days")]
)
def test_describe_age(seconds, text):
    assert describe_age(seconds) == text


def test_diff_of_a_limited_run_compares_only_what_it_probed_and_names_hosts_gone_from_the_fleet():
    changes = diff_since(PREVIOUS, snap(T1, rep("a", T1, "575.57.08")), set(FLEET))
    assert [(c.host, c.path, c.before, c.after) for c in changes] == [
        ("a", "driver_version", "570.133.20", "575.57.08"),
        ("gone", "host", "present", None),
    ]


def test_diff_of_an_unreachable_host_is_its_error_not_every_fact_vanishing():
    changes = diff_since(PREVIOUS, snap(T1, rep("a", T1, None, "unreachable")), set(FLEET) | {"gone"})
    assert [(c.host, c.path, c.before, c.after) for c in changes] == [("a", "error", None, "unreachable")]


def doc(gpu: dict | None = None, **host) -> dict:
    h = {"name": "gpu1", "address": "gpu1", "ring": None, "ok": True, "error": None}
    h["facts"] = {"gpus": [{"index": 0, **(gpu or {})}]}
    return {"schema": "fleetctl.inventory/v1", "taken_at": T1, "hosts": [{**h, **host}]}


@pytest.mark.parametrize(
    "document, message",
    [
        (
            doc({"compute_capability": "abc"}),
            "gpus[0].compute_capability: expected MAJOR.MINOR like \"9.0\", got 'abc'",
        ),
        (doc({"compute_capability": "9"}), "gpus[0].compute_capability: expected MAJOR.MINOR"),
        (doc({"memory_total_mib": -1}), "gpus[0].memory_total_mib: must not be negative, got -1"),
        (doc({"memory_used_mib": -5}), "gpus[0].memory_used_mib: must not be negative"),
        (doc({"index": -1}), "gpus[-1].index: must not be negative"),
        (doc({"power_draw_w": float("nan")}), "gpus[0].power_draw_w: expected watts"),
        (doc({"power_limit_w": float("inf")}), "gpus[0].power_limit_w: expected watts"),
        (doc({"utilization_pct": 101}), "gpus[0].utilization_pct: expected 0 to 100"),
        (doc(probed_at="yesterday"), "host gpu1: probed_at: expected a UTC timestamp"),
        (doc(probed_at=5), "host gpu1: probed_at: expected a UTC timestamp"),
        ({**doc(), "taken_at": "soon"}, "taken_at: expected a UTC timestamp"),
    ],
)
def test_values_no_gpu_can_have_are_refused(document, message):
    with pytest.raises(SnapshotError) as e:
        Snapshot.from_dict(document)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_snapshot_written_before_probed_at_reads_its_taken_at_for_each_host():
    assert Snapshot.from_dict(doc()).hosts[0].probed_at == T1
