"""`scripts/lab down` stops the router fleetctl started for the lab, and only that process."""

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from labkit.lab import stop_fleetctl_router


def ticks(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def test_the_recorded_router_is_stopped(tmp_path):
    proc = subprocess.Popen(["sleep", "60"])
    (tmp_path / "router.json").write_text(json.dumps({"pid": proc.pid, "start_ticks": ticks(proc.pid)}))
    stop_fleetctl_router(tmp_path)
    assert proc.wait(timeout=5) == -15


def test_a_reused_pid_is_left_alone(tmp_path):
    proc = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / "router.json").write_text(json.dumps({"pid": proc.pid, "start_ticks": ticks(proc.pid) - 1}))
        stop_fleetctl_router(tmp_path)
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_no_record_is_fine(tmp_path):
    stop_fleetctl_router(tmp_path / "missing")
