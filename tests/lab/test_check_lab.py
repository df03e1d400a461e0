"""`fleetctl check` live against the lab: real sshd per host, the probe over SSH, the fake GPU library, and a
spec that mixes compatible and incompatible hosts."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from typer.testing import CliRunner

from fleetctl.cli.app import app

PROFILE = "llama31-8b-vllm011"  # vLLM 0.11 image, CUDA 12.8: driver >= 570.26, >= 40000 MiB, CC >= 8.0
BASE = {"gpu_count": 2, "nvidia_container_toolkit": "1.17.8", "docker": False}
SPEC = {
    "lab": {"docker": False},
    "hosts": [
        {**BASE, "name": "gpu-ok", "ring": "canary", "fabric_manager": "570.133.20", "docker": True},
        {
            **BASE,
            "name": "gpu-fwd",
            "gpu": "NVIDIA A100-SXM4-80GB",
            "compute_capability": "8.0",
            "memory_mib": 81920,
            "driver": "535.230.02",
            "cuda": "12.2",
            "docker": True,
        },
        {
            **BASE,
            "name": "gpu-old",
            "gpu": "NVIDIA L40S",
            "compute_capability": "8.9",
            "memory_mib": 46068,
            "driver": "550.54.15",
            "cuda": "12.4",
        },
        {**BASE, "name": "gpu-fm", "gpu": "NVIDIA H200", "memory_mib": 143771, "fabric_manager": "570.124.06"},
        {**BASE, "name": "gpu-lost", "nvml": "gpu-lost:1"},
        {**BASE, "name": "gpu-nodrv", "nvml": "driver-not-loaded"},
    ],
}


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(SPEC, "check-mixed")


def check(lab, *args):
    return CliRunner().invoke(app, ["--fleet", str(lab.fleet_file), "check", "--profile", PROFILE, *args])


def by_rule(host: dict) -> dict[str, dict]:
    return {r["rule"]: r for r in host["results"]}


def test_live_check_catches_each_incompatible_host_with_the_right_rule(lab):
    result = check(lab, "--format", "json")
    assert result.exit_code == 4, result.stderr
    hosts = {h["name"]: h for h in json.loads(result.stdout)["hosts"]}
    assert {n: h["status"] for n, h in hosts.items()} == {
        "gpu-ok": "pass",
        "gpu-fwd": "warn",
        "gpu-old": "fail",
        "gpu-fm": "fail",
        "gpu-lost": "fail",
        "gpu-nodrv": "unprobed",
    }
    assert by_rule(hosts["gpu-fwd"])["driver_for_cuda"]["status"] == "warn"
    old = by_rule(hosts["gpu-old"])
    assert old["driver_for_cuda"]["fix"] == "upgrade the driver to ≥ 570.26, or use a CUDA ≤ 12.4 image"
    assert old["docker"]["status"] == "fail"  # this host runs no dockerd
    fm = by_rule(hosts["gpu-fm"])["fabric_manager"]
    assert (fm["status"], fm["expected"], fm["actual"]) == ("fail", "== 570.133.20", "570.124.06")
    assert by_rule(hosts["gpu-lost"])["gpu_health"]["message"] == "GPU 1 is lost (fallen off the bus)"
    assert hosts["gpu-nodrv"]["error"]["kind"] == "nvml_driver_not_loaded" and hosts["gpu-nodrv"]["results"] == []


def test_live_check_exit_codes_follow_the_selected_hosts(lab, tmp_path):
    target = tmp_path / "check.xml"
    passing = check(lab, "--limit", "gpu-ok,gpu-fwd", "--format", "junit", "--output", str(target))
    assert passing.exit_code == 0, passing.stderr
    suites = [s.get("name") for s in ET.parse(target).getroot().iter("testsuite")]
    assert suites == ["gpu-ok", "gpu-fwd"]
    unprobed = check(lab, "--limit", "gpu-ok,gpu-nodrv")
    assert unprobed.exit_code == 3 and "could not be probed: gpu-nodrv" in unprobed.stderr
