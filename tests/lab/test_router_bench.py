"""scripts/bench-router, run small on its own lab: it finishes, cleans up, and what it reports is consistent."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import require_lab
from tests.support.env import require

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def test_bench_router_small():
    require_lab()
    folder = Path("/tmp/fleetctl-bench-router")
    require(not folder.exists(), f"{folder} exists: another bench-router is running or was kept (--keep)")
    argv = [str(SCRIPTS / "bench-router"), "--hosts", "1", "--kills", "2", "--clients", "2", "--json"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not folder.exists()  # the lab was taken down
    s = json.loads(done.stdout)
    assert (s["hosts"], s["kills"], s["clients"]) == (1, 2, 2)
    assert len(s["recovery_s"]["runs"]) == 2 and all(v > 0 for v in s["recovery_s"]["runs"])
    assert len(s["failed_per_kill"]) == 2 and all(n >= 0 for n in s["failed_per_kill"])
    assert s["exact_set_after_every_kill"] is True
    assert {t["result"] for t in s["targets"].values()} <= {"PASS", "MISS"}
