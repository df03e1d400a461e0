"""The fleet lock: a live holder blocks (exit 6, named), a dead one leaves a stale record that needs consent."""

import json
import subprocess
import sys
import time

import pytest

from fleetctl.errors import ExitCode, LockHeld
from fleetctl.services.lock import fleet_lock

HOLD = """
import sys, time
from fleetctl.services.lock import fleet_lock
with fleet_lock(sys.argv[1], "fleetctl upgrade --profile next", run_id="run-1"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold_in_subprocess(state_dir, seconds):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(state_dir), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_holder_is_refused_with_the_holder_named(tmp_path):
    proc = hold_in_subprocess(tmp_path, 30)
    try:
        with pytest.raises(LockHeld) as e:
            with fleet_lock(str(tmp_path), "fleetctl drain gpu-01"):
                pass
        assert e.value.exit_code == ExitCode.LOCKED == 6
        assert f"pid {proc.pid}" in e.value.message and "fleetctl upgrade --profile next" in e.value.message
        with pytest.raises(LockHeld):  # --force-unlock never steals from a live holder
            with fleet_lock(str(tmp_path), "fleetctl drain gpu-01", force=True):
                pass
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_holder_leaves_a_stale_lock_that_needs_force(tmp_path):
    proc = hold_in_subprocess(tmp_path, 30)
    proc.kill()
    proc.wait()
    with pytest.raises(LockHeld, match="stale fleet lock"):
        with fleet_lock(str(tmp_path), "fleetctl drain gpu-01"):
            pass
    assert json.loads((tmp_path / "lock.json").read_text())["pid"] == proc.pid
    with fleet_lock(str(tmp_path), "fleetctl drain gpu-01", force=True) as held:
        assert json.loads((tmp_path / "lock.json").read_text()) == held and held["command"] == "fleetctl drain gpu-01"
    assert not (tmp_path / "lock.json").exists()


def test_resume_of_the_same_run_takes_over_its_own_stale_lock(tmp_path):
    proc = hold_in_subprocess(tmp_path, 30)
    proc.kill()
    proc.wait()
    with fleet_lock(str(tmp_path), "fleetctl upgrade --resume", run_id="run-1") as held:
        assert held["run_id"] == "run-1"
        assert json.loads((tmp_path / "lock.json").read_text())["command"] == "fleetctl upgrade --resume"


def test_released_cleanly_after_use(tmp_path):
    with fleet_lock(str(tmp_path), "a"):
        pass
    start = time.monotonic()
    with fleet_lock(str(tmp_path), "b"):
        pass
    assert time.monotonic() - start < 1


def test_a_run_tags_its_lock_so_resume_can_take_it_over(tmp_path):
    from fleetctl.services.lock import read_holder, tag_run

    with fleet_lock(str(tmp_path), "fleetctl upgrade --profile next"):
        tag_run(str(tmp_path), "run-7")
        assert read_holder(str(tmp_path))["run_id"] == "run-7"
