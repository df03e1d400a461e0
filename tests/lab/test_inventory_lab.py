"""`fleetctl inventory` against the lab: real sshd per host, real pynvml over SSH, the fake GPU library."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fleetctl.cli.app import app

HEALTHY = {
    "name": "gpu-ok",
    "ring": "canary",
    "gpu": "NVIDIA H100 80GB HBM3",
    "gpu_count": 2,
    "compute_capability": "9.0",
    "memory_mib": 81559,
    "driver": "570.133.20",
    "cuda": "12.8",
    "nvidia_container_toolkit": "1.17.8",
    "fabric_manager": "570.133.20",
}
MIXED = {
    "lab": {"docker": False},
    "hosts": [
        HEALTHY,
        {"name": "gpu-nodrv", "nvml": "driver-not-loaded"},
        {"name": "gpu-nolib", "nvml": "library-missing"},
        {"name": "gpu-lost", "gpu": "NVIDIA H200", "gpu_count": 2, "memory_mib": 143771, "nvml": "gpu-lost:1"},
        {"name": "gpu-nopy", "python3": False},
        {"name": "gpu-rekeyed"},
        {"name": "gpu-down"},
    ],
}
BEHIND_BASTION = {
    "lab": {"bastion": True, "docker": False},
    "hosts": [{"name": "gpu-b1", "gpu": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0"}, {"name": "gpu-b2"}],
}


def inventory(fleet_file, *args):
    result = CliRunner().invoke(app, ["--fleet", str(fleet_file), "inventory", "--json", *args])
    doc = json.loads(result.stdout) if result.stdout.strip().startswith("{") else None
    return result, doc


@pytest.fixture(scope="module")
def mixed(lab_factory):
    return lab_factory(MIXED, "inventory-mixed")


def host(doc, name):
    return next(h for h in doc["hosts"] if h["name"] == name)


def test_healthy_host_reports_every_fact(mixed):
    result, doc = inventory(mixed.fleet_file, "--limit", "gpu-ok")
    assert result.exit_code == 0, result.stderr
    assert doc["schema"] == "fleetctl.inventory/v1" and doc["taken_at"]
    h = host(doc, "gpu-ok")
    assert h["ok"] and h["error"] is None and h["ring"] == "canary" and h["address"] == mixed.host("gpu-ok").address
    f = h["facts"]
    assert (f["hostname"], f["driver_version"], f["cuda_driver_version"]) == ("gpu-ok", "570.133.20", "12.8")
    assert f["nvml_version"].endswith("570.133.20") and f["kernel"] and f["os"]
    assert (f["nvidia_container_toolkit_version"], f["fabric_manager_version"]) == ("1.17.8", "570.133.20")
    assert [g["index"] for g in f["gpus"]] == [0, 1]
    g = f["gpus"][0]
    assert (g["name"], g["memory_total_mib"], g["compute_capability"], g["lost"]) == (
        "NVIDIA H100 80GB HBM3",
        81559,
        "9.0",
        False,
    )
    assert g["uuid"].startswith("GPU-") and g["pci_bus_id"].startswith("00000000:")
    assert f["gpus"][0]["uuid"] != f["gpus"][1]["uuid"]
    for key in (
        "temperature_c",
        "power_draw_w",
        "power_limit_w",
        "utilization_pct",
        "ecc_uncorrected_volatile",
        "remapped_rows_pending",
        "throttle_reasons",
        "persistence_mode",
        "mig_mode",
        "memory_used_mib",
    ):
        assert g[key] is not None, key


@pytest.mark.parametrize(
    "name, kind",
    [("gpu-nodrv", "nvml_driver_not_loaded"), ("gpu-nolib", "nvml_library_missing"), ("gpu-nopy", "no_python")],
)
def test_hosts_that_cannot_answer_nvml_get_their_error_kind(mixed, name, kind):
    result, doc = inventory(mixed.fleet_file, "--limit", name)
    assert result.exit_code == 3
    h = host(doc, name)
    assert not h["ok"] and h["error"]["kind"] == kind and h["error"]["message"]
    assert f"{name} ({kind})" in result.stderr and "Traceback" not in result.stderr


def test_a_lost_gpu_marks_that_gpu_not_the_host(mixed):
    result, doc = inventory(mixed.fleet_file, "--limit", "gpu-lost")
    assert result.exit_code == 0
    gpus = host(doc, "gpu-lost")["facts"]["gpus"]
    assert [g["lost"] for g in gpus] == [False, True] and gpus[0]["name"] == "NVIDIA H200"


def test_changed_host_key_is_refused(mixed):
    mixed.lab().restart_sshd("gpu-rekeyed", new_host_key=True)
    result, doc = inventory(mixed.fleet_file, "--limit", "gpu-rekeyed")
    assert result.exit_code == 3
    assert host(doc, "gpu-rekeyed")["error"]["kind"] == "host_key_changed"


def test_unreachable_host_does_not_hide_the_others(mixed):
    mixed.lab().stop_sshd("gpu-down")
    result, doc = inventory(mixed.fleet_file, "--limit", "gpu-down,gpu-ok")
    assert result.exit_code == 3
    assert host(doc, "gpu-down")["error"]["kind"] == "unreachable"
    assert host(doc, "gpu-ok")["ok"]


def test_snapshot_is_saved_merged_and_diff_shows_changes(mixed):
    path = mixed.fleet_file.parent / ".fleetctl" / "inventory.json"
    path.unlink(missing_ok=True)
    inventory(mixed.fleet_file, "--limit", "gpu-ok")
    saved = json.loads(path.read_text())
    assert saved["schema"] == "fleetctl.inventory/v1" and [h["name"] for h in saved["hosts"]] == ["gpu-ok"]
    result, doc = inventory(mixed.fleet_file, "--limit", "gpu-ok,gpu-nodrv", "--diff")
    assert doc["schema"] == "fleetctl.inventory-diff/v1"
    assert {"host": "gpu-nodrv", "path": "host", "before": None, "after": "present"} in doc["changes"]
    both = {h["name"]: h for h in json.loads(path.read_text())["hosts"]}
    inventory(mixed.fleet_file, "--limit", "gpu-ok")  # a limited run keeps the other host's last report
    after = {h["name"]: h for h in json.loads(path.read_text())["hosts"]}
    assert after["gpu-nodrv"] == both["gpu-nodrv"] and after["gpu-ok"]["probed_at"] >= both["gpu-ok"]["probed_at"]


def test_proxy_jump_through_the_lab_bastion(lab_factory):
    lab = lab_factory(BEHIND_BASTION, "inventory-bastion")
    assert lab.bastion and "proxy_jump" in lab.fleet_file.read_text()
    result, doc = inventory(lab.fleet_file)
    assert result.exit_code == 0, result.stderr
    assert [h["facts"]["gpus"][0]["name"] for h in doc["hosts"]] == ["NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3"]
