"""Canary upgrades on the lab under steady load: complete, roll back by themselves, survive SIGKILL, lock out a
second run. Real sshd, dockerd and vllm-router; the vLLM stand-in images carry the behaviours."""

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
    "hosts": [
        {"name": f"gpu-0{i}", "ring": ring, **TOOLKIT} for i, ring in enumerate(("canary", "early", "main", "main"), 1)
    ]
}
ROLLOUT = '\n[rollout]\nrings = ["canary", "early", "main"]\nbake_s = 3\n'


@pytest.fixture(scope="module")
def fleet(lab_factory):
    f = Fleet(lab_factory(SPEC, "upgrade"))
    f.info.fleet_file.write_text(f.info.fleet_file.read_text() + ROLLOUT)
    f.cli("router", "up")
    f.cli("deploy", "--profile", "stable")
    yield f
    f.cli("router", "down", ok=False)


def images(fleet) -> dict[str, str]:
    doc = json.loads(fleet.cli("status", "--json").stdout)
    assert all(h["healthy"] and h["in_router"] and not h["drained"] for h in doc["hosts"]), doc["hosts"]
    return {h["name"]: h["image"] for h in doc["hosts"]}


def everyone(fleet) -> set[str]:
    return {fleet.url(h["name"]) for h in SPEC["hosts"]}


def upgrade(fleet, profile, load, ok=True):
    load.wait_for_progress(16)
    return fleet.cli("upgrade", "--profile", profile, "--yes", "--json", ok=ok)


def replaced(result) -> list[str]:
    """The hosts whose container the run replaced, in order, from its JSON event stream."""
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return [e["host"] for e in events if e.get("event") == "upgrade_step" and e.get("step") == "replace"]


def test_a_healthy_upgrade_completes_ring_by_ring_with_no_failed_request(fleet):
    with LoadGenerator(fleet.router, MODEL, clients=8) as load:
        result = upgrade(fleet, "next", load)
        load.wait_for_progress(16)
    load.stop().assert_no_failures()
    assert set(images(fleet).values()) == {"lab/vllm:next"}
    assert fleet.workers() == everyone(fleet)
    assert replaced(result) == ["gpu-01", "gpu-02", "gpu-03", "gpu-04"]  # canary, early, main
    the_last_ring_was_judged_against_the_old_version(journal_records(fleet))


def the_last_ring_was_judged_against_the_old_version(records) -> None:
    """Measured without waiting: the preflight's window before the run, then each earlier ring's baseline hosts."""
    head = records[0]
    assert head["reference"]["finished"] > 0 and head["reference"]["seconds"] > 0, head["reference"]
    judges = [r for r in records if r["event"] == "action_done" and r["kind"] == "judge"]
    assert [r["ring"] for r in judges] == ["canary", "early", "main"]
    assert all(r["baseline"]["finished"] > 0 for r in judges[:-1]) and "baseline" not in judges[-1]
    ttft = next(c for c in judges[-1]["verdict"]["checks"] if c["metric"] == "ttft_p95_ratio")
    assert ttft["value"] is not None and "old version's figures recorded in this run" in ttft["detail"], ttft


def only_the_canarys_own_failures(report) -> None:
    """Every failed request is one the bad version itself answered badly (HTTP 500, finish reason error):
    nothing failed because of how fleetctl moved traffic (refused, cut short, no worker)."""
    assert set(report.reasons) <= {"status", "error"}, report.summary()
    statuses = [f for f in report.failures if ": status: " in f]
    assert all("500" in f for f in statuses), statuses


@pytest.mark.parametrize(
    "profile, metric", [("failing", "error_rate"), ("slow", "ttft_p95_ratio"), ("crash", "gpu-01")]
)
def test_a_bad_version_halts_at_the_canary_and_rolls_back_by_itself(fleet, profile, metric):
    before = images(fleet)
    with LoadGenerator(fleet.router, MODEL, clients=8) as load:
        result = upgrade(fleet, profile, load, ok=False)
        load.wait_for_progress(16)
    assert result.exit_code == 5, result.stderr
    assert "rolled back" in result.stderr and metric in result.stderr
    assert images(fleet) == before  # back on the old image everywhere
    assert fleet.workers() == everyone(fleet)  # router set as before
    assert replaced(result) == ["gpu-01"]  # it never left the canary ring
    if profile == "failing":
        only_the_canarys_own_failures(load.stop())
    else:
        load.stop().assert_no_failures()


def journal_records(fleet) -> list[dict]:
    runs = sorted((fleet.info.fleet_file.parent / ".fleetctl" / "runs").glob("*.jsonl"))
    return [json.loads(line) for line in runs[-1].read_text().splitlines() if line.strip()] if runs else []


def wait_for(predicate, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def test_sigkill_mid_ring_then_resume_and_a_second_run_is_locked_out(fleet):
    runs_before = len(list((fleet.info.fleet_file.parent / ".fleetctl" / "runs").glob("*.jsonl")))
    with LoadGenerator(fleet.router, MODEL, clients=8) as load:
        load.wait_for_progress(16)
        first = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fleetctl",
                "--fleet",
                str(fleet.info.fleet_file),
                "upgrade",
                "--profile",
                "stable",
                "--yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ},
        )
        try:

            def replacing_in_main_ring():
                runs = list((fleet.info.fleet_file.parent / ".fleetctl" / "runs").glob("*.jsonl"))
                return len(runs) > runs_before and any(
                    r.get("event") == "action_begin" and r.get("step") == "replace" and r.get("ring") == "early"
                    for r in journal_records(fleet)
                )

            wait_for(replacing_in_main_ring)
            second = fleet.cli("upgrade", "--profile", "next", "--yes", ok=False)
            assert second.exit_code == 6 and "locked by" in second.stderr and str(first.pid) in second.stderr
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        records = journal_records(fleet)
        assert not any(r["event"] == "run_finished" for r in records)
        resumed = fleet.cli("upgrade", "--resume")
        assert "resume" in resumed.stderr
        load.wait_for_progress(16)
    load.stop().assert_no_failures()
    assert set(images(fleet).values()) == {"lab/vllm:stable"}
    assert fleet.workers() == everyone(fleet)
    assert journal_records(fleet)[-1]["outcome"] == "completed"


def test_history_lists_every_run_with_its_outcome(fleet):
    doc = json.loads(fleet.cli("history", "--json").stdout)
    outcomes = [r["outcome"] for r in doc["runs"]]
    assert outcomes[0] == "completed" and "rolled_back" in outcomes and len(outcomes) >= 5


def test_plan_changes_nothing(fleet):
    before = images(fleet)
    doc = json.loads(fleet.cli("upgrade", "--profile", "next", "--plan", "--json").stdout)
    assert doc["schema"] == "fleetctl.plan/v1" and [r["name"] for r in doc["rings"]] == ["canary", "early", "main"]
    assert doc["rings"][2]["batches"] == [["gpu-03"], ["gpu-04"]]
    assert images(fleet) == before
    assert Path(fleet.info.fleet_file.parent / ".fleetctl" / "lock.json").exists() is False


def test_ctrl_c_finishes_the_step_exits_130_and_abort_rolls_the_run_back(fleet):
    before = images(fleet)
    with LoadGenerator(fleet.router, MODEL, clients=8) as load:
        load.wait_for_progress(16)
        run = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fleetctl",
                "--fleet",
                str(fleet.info.fleet_file),
                "upgrade",
                "--profile",
                "next",
                "--yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(
            lambda: any(
                r.get("event") == "action_begin"
                and r.get("kind") == "bake"
                and not any(x.get("event") == "run_finished" for x in journal_records(fleet))
                for r in journal_records(fleet)[-3:]
            )
        )
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=60)
        assert run.returncode == 130, err
        assert not any(r["event"] == "run_finished" for r in journal_records(fleet))  # resumable
        fleet.cli("upgrade", "--abort")
        load.wait_for_progress(16)
    load.stop().assert_no_failures()
    assert journal_records(fleet)[-1]["outcome"] == "aborted"
    assert images(fleet) == before and fleet.workers() == everyone(fleet)


def test_rollback_reverts_the_last_completed_run(fleet):
    doc = json.loads(fleet.cli("history", "--json").stdout)
    last = next(r for r in doc["runs"] if r["outcome"] == "completed")
    now = set(images(fleet).values())
    assert now == {last["image"]}
    with LoadGenerator(fleet.router, MODEL, clients=8) as load:  # the gate wants evidence: traffic
        load.wait_for_progress(16)
        fleet.cli("rollback", "--yes")
    load.stop().assert_no_failures()
    after = set(images(fleet).values())
    assert after != now and len(after) == 1
    assert fleet.workers() == everyone(fleet)
