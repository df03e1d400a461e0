"""scripts/bench-inventory, run small on its own lab: every way (fleetctl, pyinfra, ansible, bare paramiko)
inventories every host, each way's CPU is reported beside its wall time, and the lab is taken down."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_lab
from tests.support.env import require

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench-inventory"
WAYS = {"fleetctl", "pyinfra", "ansible", "bare"}


def test_bench_inventory_on_two_hosts():
    require_lab()
    folder = Path("/tmp/fleetctl-bench-lab")
    require(not folder.exists(), f"{folder} exists: another bench-inventory is running or was kept (--keep)")
    done = subprocess.run(
        [str(SCRIPT), "--hosts", "2", "--runs", "1", "--json"], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert not folder.exists()  # the lab was taken down
    s = json.loads(done.stdout)
    assert s["hosts"] == 2 and s["runs"] == 1
    assert set(s["wall_s"]) == WAYS and set(s["cpu_s"]) == WAYS
    for way in WAYS:
        wall, cpu = s["wall_s"][way], s["cpu_s"][way]
        assert (
            wall["median"] > 0
            and len(wall["runs"]) == 1
            and wall["per_host"] == pytest.approx(wall["median"] / 2, abs=1e-3)
        )
        assert 0 < cpu["median"] and cpu["per_host"] == pytest.approx(cpu["median"] / 2, abs=1e-3)
    t = s["targets"]
    ratio = s["cpu_s"]["fleetctl"]["median"] / s["cpu_s"]["pyinfra"]["median"]
    assert t["fleetctl_cpu_over_pyinfra"]["value"] == pytest.approx(ratio, rel=0.02, abs=0.002)
    assert {v["result"] for v in t.values()} <= {"PASS", "MISS"}
