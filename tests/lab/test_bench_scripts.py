"""scripts/bench-drain and scripts/bench-upgrade, run small on their own labs: they finish, clean up, and what
they report is consistent with itself."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_lab
from tests.support.env import require

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def run_bench(name: str, *args: str) -> dict:
    require_lab()
    folder = Path(f"/tmp/fleetctl-{name}")
    require(not folder.exists(), f"{folder} exists: another {name} is running or was kept (--keep)")
    done = subprocess.run([str(SCRIPTS / name), *args, "--json"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not folder.exists()  # the lab was taken down
    return json.loads(done.stdout)


def test_bench_drain_on_two_hosts():
    s = run_bench("bench-drain", "--hosts", "2", "--runs", "2")
    d = s["drain"]
    assert s["hosts"] == 2 and s["runs"] == 2 and d["hosts"] == ["gpu-01", "gpu-02"]
    assert 0 < d["router_gone_s"]["min"] and d["out_s"]["median"] >= d["router_gone_s"]["median"]
    assert d["out_s"]["max"] < d["command_s"]["max"] + d["poll_s"]["max"]  # out before drain returns
    assert d["poll_s"]["median"] < 0.1
    assert s["status_s"]["fleetctl"]["median"] > 0 and s["status_s"]["baseline"]["median"] > 0
    assert s["load"]["failed"] == 0 and s["load"]["ok"] > 50
    assert {t["result"] for t in s["targets"].values()} <= {"PASS", "MISS"}
    assert s["targets"]["failed_requests"]["result"] == "PASS"


def test_bench_upgrade_on_two_hosts():
    # 5 s: each ring's gate needs min_requests (20) of evidence; a 0.5 s bake on a busy machine has too few
    s = run_bench("bench-upgrade", "--hosts", "2", "--runs", "2", "--bake-s", "5")
    assert [(r["from"], r["to"]) for r in s["runs"]] == [("stable", "next"), ("next", "stable")]
    for run in s["runs"]:
        assert set(run["hosts"]) == {"gpu-01", "gpu-02"}
        assert run["bake_sum_s"] == pytest.approx(5 * 2, abs=1.0)  # two rings: one host, then the other
        assert sum(run["phases_s"].values()) == pytest.approx(run["overhead_s"], abs=0.01)
        for host in run["hosts"].values():
            assert host["start_to_healthy_s"] >= host["replace_s"] + host["healthy_s"] - 0.01
            assert 0 <= host["slack_s"] < host["out_of_router_s"]
            # the router's own view of the time out agrees with the journal's within a poll or two
            assert host["router_saw_out_s"] == pytest.approx(host["out_of_router_s"], abs=0.3)
    assert s["targets"]["failed_requests"]["result"] == "PASS"


def test_bench_drain_with_two_pools():
    s = run_bench("bench-drain", "--hosts", "4", "--runs", "1", "--pools", "2")
    d = s["drain"]
    assert s["pools"] == 2 and s["hosts"] == 4 and s["serving"] == 2  # chat: gpu-01/02; other: gpu-03/04
    assert d["hosts"] == ["gpu-01"] and 0 < d["router_gone_s"]["min"]
    assert s["load"]["failed"] == 0 and s["load"]["ok"] > 20
    assert s["other_load"]["failed"] == 0 and s["other_load"]["ok"] > 10
    assert {t["result"] for t in s["targets"].values()} <= {"PASS", "MISS"}
    assert s["targets"]["failed_requests"]["result"] == "PASS"
    assert s["targets"]["other_pool_failed_requests"]["result"] == "PASS"


def test_bench_upgrade_with_two_pools():
    s = run_bench("bench-upgrade", "--hosts", "2", "--runs", "1", "--bake-s", "5", "--pools", "2")
    # a bake long enough for the gate's min_requests on a busy machine: a 2 s bake was rolled back at load 24
    assert s["pools"] == 2 and s["hosts"] == 2
    [run] = s["runs"]
    assert (run["from"], run["to"]) == ("stable", "next")
    assert set(run["hosts"]) == {"gpu-01", "gpu-02"}  # the chat pool only: gpu-03/04 are pool other
    assert sum(run["phases_s"].values()) == pytest.approx(run["overhead_s"], abs=0.01)
    assert s["other_load"]["failed"] == 0 and s["other_load"]["ok"] > 10
    assert s["targets"]["failed_requests"]["result"] == "PASS"
    assert s["targets"]["other_pool_failed_requests"]["result"] == "PASS"
