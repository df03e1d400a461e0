"""`fleetctl maintain` on the lab: a driver update with a reboot under load, a driver too old for the pool's
profile halting with the host drained, SIGKILL during a reboot then --resume, and --abort. Real sshd, dockerd,
vllm-router; lab hosts reboot through the lab's power helper and install drivers with `lab-driver`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.lab.test_serving_lab import MODEL, Fleet
from tests.support.load import LoadGenerator

TOOLKIT = {"nvidia_container_toolkit": "1.17.8"}
SPEC = {
    "lab": {"reboot_s": 2},
    "hosts": [
        {"name": "gpu-01", "ring": "canary", **TOOLKIT},
        {"name": "gpu-02", "ring": "main", **TOOLKIT},
        {"name": "gpu-03", "ring": "main", **TOOLKIT},
    ],
}
ROLLOUT = '\n[rollout]\nrings = ["canary", "main"]\nbake_s = 3\n'
NEWER, TOO_OLD, LAB_DEFAULT = "575.57.08", "560.35.05", "570.133.20"


@pytest.fixture(scope="module")
def fleet(lab_factory):
    f = Fleet(lab_factory(SPEC, "maintain"))
    f.info.fleet_file.write_text(f.info.fleet_file.read_text() + ROLLOUT)
    f.cli("router", "up")
    f.cli("deploy", "--profile", "stable")
    yield f
    f.cli("router", "down", ok=False)


def status(fleet) -> dict[str, dict]:
    return {h["name"]: h for h in json.loads(fleet.cli("status", "--json").stdout)["hosts"]}


def driver(fleet, host: str) -> str | None:
    snapshot = json.loads((fleet.info.fleet_file.parent / ".fleetctl" / "inventory.json").read_text())
    report = next(h for h in snapshot["hosts"] if h["name"] == host)
    return (report.get("facts") or {}).get("driver_version")


def container_id(fleet, host: str) -> str:
    return fleet.docker(host, "inspect", "-f", "{{.Id}} {{.State.StartedAt}}", "fleetctl-vllm").stdout.strip()


def runs_dir(fleet) -> Path:
    return fleet.info.fleet_file.parent / ".fleetctl" / "runs"


def journal(fleet) -> list[dict]:
    runs = sorted(runs_dir(fleet).glob("*.jsonl"))
    return [json.loads(line) for line in runs[-1].read_text().splitlines() if line.strip()] if runs else []


def begun(records: list[dict], host: str) -> list[str]:
    return [r["step"] for r in records if r.get("event") == "action_begin" and r.get("host") == host]


def wait_for(predicate, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


def killed_when_begun(fleet, host: str, step: str, *args: str) -> None:
    """Run `fleetctl maintain ARGS --yes` in a process of its own and SIGKILL it once its journal says ``step``
    began on ``host``."""
    runs = len(list(runs_dir(fleet).glob("*.jsonl")))
    argv = [sys.executable, "-m", "fleetctl", "--fleet", str(fleet.info.fleet_file), "maintain", *args, "--yes"]
    first = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})

    def begun_there() -> bool:
        new = len(list(runs_dir(fleet).glob("*.jsonl"))) > runs and journal(fleet)[0]["event"] == "maintain_started"
        return new and step in begun(journal(fleet), host)

    try:
        wait_for(begun_there)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()


@pytest.mark.lab
def test_the_canary_ring_gets_a_newer_driver_with_a_reboot_under_load_and_serves_again(fleet):
    untouched = {h: container_id(fleet, h) for h in ("gpu-02", "gpu-03")}
    with LoadGenerator(fleet.router, MODEL, clients=8) as load:
        load.wait_for_progress(16)
        result = fleet.cli(
            "maintain", "--limit", "ring=canary", "--run", f"lab-driver install {NEWER}", "--sudo", "--reboot",
            "--expect", f"driver={NEWER}", "--yes", "--json",
        )  # fmt: skip
        load.wait_for_progress(16)
    load.stop().assert_no_failures()
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    steps = [e["step"] for e in events if e.get("event") == "maintain_step" and e.get("host") == "gpu-01"]
    assert steps == ["drain", "stop", "run.0", "boot_id", "reboot", "back", "verify", "start", "healthy", "undrain"]
    assert events[-1]["event"] == "summary" and events[-1]["hosts"][0]["state"] == "done"
    assert driver(fleet, "gpu-01") == NEWER
    hosts = status(fleet)
    assert hosts["gpu-01"]["in_router"] and hosts["gpu-01"]["healthy"] and not hosts["gpu-01"]["drained"]
    assert fleet.workers() == {fleet.url(h) for h in ("gpu-01", "gpu-02", "gpu-03")}
    assert {h: container_id(fleet, h) for h in untouched} == untouched  # the rest untouched
    run_id = journal(fleet)[0]["run_id"]
    log = fleet.info.fleet_file.parent / ".fleetctl" / "maintain" / run_id / "gpu-01" / "run.0.log"
    assert f"lab-driver install {NEWER}" in log.read_text() and "# exit status: 0" in log.read_text()
    history = json.loads(fleet.cli("history", "--json").stdout)["runs"][0]
    assert history["kind"] == "maintain" and history["outcome"] == "completed" and history["hosts"] == 1


@pytest.mark.lab
def test_a_driver_too_old_for_the_pools_profile_halts_with_the_host_drained_and_exit_7(fleet):
    untouched = container_id(fleet, "gpu-03")
    result = fleet.cli(
        "maintain", "--limit", "gpu-02", "--run", f"lab-driver install {TOO_OLD}", "--reboot", "--yes", ok=False
    )
    assert result.exit_code == 7, result.stderr
    assert "gpu-02: verify: check_failed" in result.stderr and "stays drained" in result.stderr, result.stderr
    hosts = status(fleet)
    assert hosts["gpu-02"]["drained"] and fleet.url("gpu-02") not in fleet.workers()
    assert container_id(fleet, "gpu-03") == untouched and hosts["gpu-03"]["in_router"]
    assert driver(fleet, "gpu-02") == TOO_OLD
    # the run is unfinished: no other run starts, and upgrade --resume does not pick it up
    refused = fleet.cli("upgrade", "--profile", "next", "--yes", ok=False)
    assert refused.exit_code == 2 and "fleetctl maintain --resume" in refused.stderr
    wrong_kind = fleet.cli("upgrade", "--resume", ok=False)
    assert wrong_kind.exit_code == 2 and "is a maintenance" in wrong_kind.stderr
    aborted = fleet.cli("maintain", "--abort", ok=False)  # its command ran: it stays drained, named
    assert aborted.exit_code == 7 and "gpu-02 stay drained" in aborted.stderr
    assert status(fleet)["gpu-02"]["drained"]
    # a person puts the right driver back, then undrains it (a drain made before a run is kept by the run)
    fleet.cli("maintain", "--limit", "gpu-02", "--run", f"lab-driver install {LAB_DEFAULT}", "--reboot", "--yes")
    assert driver(fleet, "gpu-02") == LAB_DEFAULT and status(fleet)["gpu-02"]["drained"]
    fleet.cli("undrain", "gpu-02")
    assert fleet.workers() == {fleet.url(h) for h in ("gpu-01", "gpu-02", "gpu-03")}


@pytest.mark.lab
def test_sigkill_during_the_reboot_then_resume_finishes_the_host(fleet):
    with LoadGenerator(fleet.router, MODEL, clients=8) as load:
        load.wait_for_progress(16)
        killed_when_begun(fleet, "gpu-03", "back", "--limit", "gpu-03", "--reboot")  # the host reboots meanwhile
        assert not any(r["event"] == "run_finished" for r in journal(fleet))
        resumed = fleet.cli("maintain", "--resume")
        assert "resume" in resumed.stderr
        load.wait_for_progress(16)
    load.stop().assert_no_failures()
    records = journal(fleet)
    assert records[-1]["outcome"] == "completed"
    assert begun(records, "gpu-03").count("reboot") == 1  # not rebooted twice
    assert fleet.workers() == {fleet.url(h) for h in ("gpu-01", "gpu-02", "gpu-03")}


@pytest.mark.lab
def test_abort_puts_back_a_host_whose_commands_had_not_begun_and_names_one_whose_had(fleet):
    with LoadGenerator(fleet.router, MODEL, clients=8) as load:
        load.wait_for_progress(16)
        killed_when_begun(fleet, "gpu-03", "drain", "--limit", "gpu-03", "--run", "sleep 60")
        ran = "run.0" in begun(journal(fleet), "gpu-03")  # killed this late, the command had begun
        aborted = fleet.cli("maintain", "--abort", ok=False)
        load.wait_for_progress(16)
    load.stop().assert_no_failures()
    if ran:
        assert aborted.exit_code == 7 and "gpu-03 stay drained" in aborted.stderr
        fleet.cli("undrain", "gpu-03")
    else:
        assert aborted.exit_code == 0, aborted.stderr
        assert journal(fleet)[-1]["outcome"] == "aborted"
    assert status(fleet)["gpu-03"]["in_router"]
    assert fleet.workers() == {fleet.url(h) for h in ("gpu-01", "gpu-02", "gpu-03")}


@pytest.mark.lab
def test_plan_changes_nothing_and_says_each_step(fleet):
    before = len(list(runs_dir(fleet).glob("*.jsonl")))
    plan = fleet.cli("maintain", "--limit", "gpu-0*", "--run", "true", "--reboot", "--plan", "--json")
    doc = json.loads(plan.stdout)
    assert doc["schema"] == "fleetctl.maintain-plan/v1" and doc["reboot_command"] == "lab-reboot"
    assert [r["name"] for r in doc["plan"]["rings"]] == ["canary", "main"]
    assert len(list(runs_dir(fleet).glob("*.jsonl"))) == before
