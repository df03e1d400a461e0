"""Upgrades in a quiet window on the lab: no client sends anything, so fleetctl's own requests (straight to the
hosts) are the gate's evidence. The failing image is caught at the canary and rolled back; a healthy upgrade
completes. Real sshd, dockerd, vllm-router and vLLM stand-ins."""

from __future__ import annotations

import json

import pytest

from tests.lab.test_serving_lab import Fleet
from tests.lab.test_upgrade_lab import TOOLKIT, everyone, images, journal_records, replaced

SPEC = {
    "hosts": [
        {"name": f"gpu-0{i}", "ring": ring, **TOOLKIT} for i, ring in enumerate(("canary", "early", "main", "main"), 1)
    ]
}
ROLLOUT = '\n[rollout]\nrings = ["canary", "early", "main"]\nbake_s = 8\nmin_requests = 10\ninterval_s = 2\n'


@pytest.fixture(scope="module")
def fleet(lab_factory):
    f = Fleet(lab_factory(SPEC, "quiet"))
    f.info.fleet_file.write_text(f.info.fleet_file.read_text() + ROLLOUT)
    f.cli("router", "up")
    f.cli("deploy", "--profile", "stable")
    yield f
    f.cli("router", "down", ok=False)


def gates(result) -> list[dict]:
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return [e for e in events if e.get("event") == "gate"]


def test_the_failing_image_with_no_clients_is_rolled_back_at_the_canary(fleet):
    before = images(fleet)
    result = fleet.cli("upgrade", "--profile", "failing", "--yes", "--json", ok=False)
    assert result.exit_code == 5, result.stderr
    assert "rolled back" in result.stderr and "ring canary failed its gate on error_rate" in result.stderr
    assert images(fleet) == before and fleet.workers() == everyone(fleet)
    assert replaced(result) == ["gpu-01"]
    canary = gates(result)[0]
    assert canary["synthetic"]["ring"] >= 10 and canary["synthetic"]["baseline"] > 0, canary
    assert canary["measurements"][-1]["result"] == "failed"


def test_a_healthy_upgrade_with_no_clients_completes(fleet):
    result = fleet.cli("upgrade", "--profile", "next", "--yes", "--json")
    assert set(images(fleet).values()) == {"lab/vllm:next"}
    assert fleet.workers() == everyone(fleet)
    judged = gates(result)
    assert [g["ring"] for g in judged] == ["canary", "early", "main"] and all(g["passed"] for g in judged)
    assert all(g["synthetic"]["ring"] >= 10 for g in judged), judged
    judges = [r for r in journal_records(fleet) if r["event"] == "action_done" and r["kind"] == "judge"]
    assert [r["verdict"]["synthetic"]["ring"] for r in judges] == [g["synthetic"]["ring"] for g in judged]
