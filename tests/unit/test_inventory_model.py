"""Snapshots: the pure report builder, the JSON schema round trip, and diffs."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from fleetctl.core.fleet import Host
from fleetctl.core.inventory import Snapshot, SnapshotError, diff_snapshots, report_from_probe

FIXTURES = Path(__file__).parent.parent / "fixtures" / "probe"
HOST = Host("gpu-a01", "10.0.1.11", ring="canary")


def healthy_report():
    return report_from_probe(HOST, 0, (FIXTURES / "healthy-h100x2.json").read_text(), "")


def test_report_from_a_healthy_probe():
    r = healthy_report()
    assert (
        r.ok
        and r.facts.driver_version == "570.133.20"
        and (r.name, r.address, r.ring) == ("gpu-a01", "10.0.1.11", "canary")
    )


@pytest.mark.parametrize(
    "rc, stdout, stderr, kind",
    [
        (127, "", "bash: line 1: python3: command not found\n", "no_python"),
        (127, "", "sh: 1: python3: not found\n", "no_python"),
        (1, "", "Traceback...\nMemoryError\n", "probe_failed"),
        (0, "garbage\n", "", "probe_failed"),
    ],
)
def test_failed_probe_runs(rc, stdout, stderr, kind):
    r = report_from_probe(HOST, rc, stdout, stderr)
    assert not r.ok and r.error.kind == kind and r.facts is None


def test_probe_error_kind_is_kept_with_partial_facts():
    r = report_from_probe(HOST, 0, (FIXTURES / "driver-not-loaded.json").read_text(), "")
    assert r.error.kind == "nvml_driver_not_loaded" and r.facts.kernel == "6.1.0-18-amd64"


def test_snapshot_json_schema_and_round_trip():
    report = replace(healthy_report(), probed_at="2026-11-22T08:00:03Z")
    snap = Snapshot(taken_at="2026-11-22T08:00:00Z", fleet="lab", hosts=(report,))
    doc = json.loads(json.dumps(snap.to_dict()))
    assert doc["schema"] == "fleetctl.inventory/v1"
    host = doc["hosts"][0]
    assert set(host) == {"name", "address", "ring", "probed_at", "ok", "error", "facts"}
    assert set(host["facts"]["gpus"][0]) >= {
        "index",
        "name",
        "uuid",
        "pci_bus_id",
        "memory_total_mib",
        "memory_used_mib",
        "compute_capability",
        "temperature_c",
        "power_draw_w",
        "power_limit_w",
        "utilization_pct",
        "ecc_uncorrected_volatile",
        "remapped_rows_pending",
        "throttle_reasons",
        "persistence_mode",
        "mig_mode",
        "lost",
    }
    assert Snapshot.from_dict(doc) == snap


@pytest.mark.parametrize(
    "doc, message",
    [
        ([], "not a fleetctl.inventory/v1"),
        ({"schema": "fleetctl.inventory/v1", "hosts": {}}, "hosts must be a list"),
        ({"schema": "fleetctl.inventory/v1", "hosts": [{"address": "x"}]}, "string name"),
        ({"schema": "fleetctl.inventory/v1", "hosts": [{"name": "a", "error": "boom"}]}, "error must be null"),
        ({"schema": "fleetctl.inventory/v1", "hosts": [{"name": "a", "facts": {"gpus": 3}}]}, "host a: facts.gpus"),
    ],
)
def test_bad_snapshots_are_rejected(doc, message):
    with pytest.raises(SnapshotError, match=message):
        Snapshot.from_dict(doc)


def test_diff_reports_changed_facts_added_and_gone_hosts_but_not_volatile_ones():
    old = healthy_report()
    gpus = list(old.facts.gpus)
    gpus[1] = replace(gpus[1], lost=True, temperature_c=90)
    new = replace(old, facts=replace(old.facts, driver_version="580.82.07", gpus=tuple(gpus)))
    other = replace(old, name="gpu-a02")
    changes = diff_snapshots(Snapshot("t0", (old, other)), Snapshot("t1", (new,)))
    assert [(c.host, c.path, c.before, c.after) for c in changes] == [
        ("gpu-a01", "driver_version", "570.133.20", "580.82.07"),
        ("gpu-a01", "gpus[1].lost", False, True),
        ("gpu-a02", "host", "present", None),
    ]


def test_no_diff_between_equal_snapshots():
    r = healthy_report()
    assert diff_snapshots(Snapshot("a", (r,)), Snapshot("b", (r,))) == []
