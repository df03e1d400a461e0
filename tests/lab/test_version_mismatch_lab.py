"""A driver installed without a reboot, live: `lab-driver install` over SSH makes the lab host's NVML answer a
driver/library version mismatch, which `inventory` reports as that host's `nvml_version_mismatch` (tool facts
kept) and `check` fails with rule driver_loaded, saying to reboot; after the reboot the host is whole again."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from typer.testing import CliRunner

from fleetctl.cli.app import app

PROFILE = "llama31-8b-vllm011"  # CUDA 12.8: driver >= 570.26
BASE = {"docker": False, "nvidia_container_toolkit": "1.17.8", "fabric_manager": "570.133.20"}
SPEC = {
    "lab": {"docker": False, "reboot_s": 0.5},
    "hosts": [{**BASE, "name": "mm-1", "ring": "canary"}, {**BASE, "name": "mm-2", "ring": "main"}],
}
FIX = "reboot the host, e.g. `fleetctl maintain --limit mm-1 --reboot`"


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(SPEC, "mismatch")


def fleetctl(lab, *args: str):
    return CliRunner().invoke(app, ["--fleet", str(lab.fleet_file), *args])


def ssh(lab, host: str, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(lab.ssh_command(host, command), capture_output=True, text=True, timeout=60)


def hosts(result) -> dict[str, dict]:
    return {h["name"]: h for h in json.loads(result.stdout)["hosts"]}


def boot_id(lab, host: str) -> str:
    run = ssh(lab, host, "cat /proc/sys/kernel/random/boot_id")
    return run.stdout.strip() if run.returncode == 0 else ""


@pytest.mark.lab
def test_an_installed_driver_not_yet_loaded_is_the_hosts_error_and_fails_check_until_the_reboot(lab):
    install = ssh(lab, "mm-1", "sudo -n lab-driver install 575.57.08 && lab-driver install-fabric-manager 575.57.08")
    assert install.returncode == 0, install.stderr

    inventory = fleetctl(lab, "inventory", "--json")
    assert inventory.exit_code == 3, inventory.stderr  # one host failed: that host's error, not the command's
    found = hosts(inventory)
    assert found["mm-2"]["ok"] and found["mm-2"]["facts"]["driver_version"] == "570.133.20"
    mm1 = found["mm-1"]
    assert mm1["error"]["kind"] == "nvml_version_mismatch", mm1["error"]
    assert "takes effect at the next reboot" in mm1["error"]["message"]
    facts = mm1["facts"]
    assert (facts["nvidia_container_toolkit_version"], facts["fabric_manager_version"]) == ("1.17.8", "575.57.08")
    assert facts["driver_version"] is None and facts["gpus"] == []
    table = fleetctl(lab, "inventory", "--limit", "mm-1")
    assert table.exit_code == 3 and "nvml_version_mismatch" in table.output and "Traceback" not in table.output

    check = fleetctl(lab, "check", "--profile", PROFILE, "--limit", "mm-1", "--format", "json")
    assert check.exit_code == 4, check.stderr  # a failed rule (4), not "could not be probed" (3)
    (host,) = json.loads(check.stdout)["hosts"]
    assert (host["status"], host["error"]) == ("fail", None)
    first = host["results"][0]
    assert (first["rule"], first["status"], first["fix"]) == ("driver_loaded", "fail", FIX)
    human = fleetctl(lab, "check", "--profile", PROFILE, "--limit", "mm-1")
    assert human.exit_code == 4 and f"fix: {FIX}" in human.stdout

    before = boot_id(lab, "mm-1")
    assert ssh(lab, "mm-1", "lab-reboot").returncode in (0, 255)
    deadline = time.monotonic() + 90
    while boot_id(lab, "mm-1") in ("", before):
        assert time.monotonic() < deadline, "mm-1 did not come back from its reboot"
        time.sleep(0.2)
    again = fleetctl(lab, "inventory", "--json", "--limit", "mm-1")
    assert again.exit_code == 0, again.stderr
    assert hosts(again)["mm-1"]["facts"]["driver_version"] == "575.57.08"
