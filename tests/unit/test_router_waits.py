"""The router's two waits, through the shared poll helper: its start (the supervisor's status says ready, or it
exits, or vllm-router's first start fails) and a signalled process going away. A fake clock stands in for time; the processes and the HTTP server are real and
local (127.0.0.1 only)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest

from fleetctl.errors import RouterError
from fleetctl.services import router, router_process
from fleetctl.services.poll import ROUTER_START
from tests.fake.clock import FakeClock


class Proc:
    pid = 2**22 + 1  # no such process: nothing is ever signalled

    def __init__(self, returncode=None):
        self.returncode = returncode

    def poll(self):
        return self.returncode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fleet_in(tmp_path):
    from fleetctl.services.files import load_fleet

    path = tmp_path / "fleet.toml"
    path.write_text(f'[fleet]\nname = "w"\n\n[router]\nurl = "http://127.0.0.1:{free_port()}"\n')
    return load_fleet(str(path))


def write_status(fleet, pid, **fields):
    import json
    import os

    os.makedirs(fleet.state_dir, exist_ok=True)
    doc = {"schema": "fleetctl.router-supervisor/v1", "supervisor_pid": pid, **fields}
    with open(os.path.join(fleet.state_dir, "router-supervisor.json"), "w") as f:
        json.dump(doc, f)


def test_a_supervisor_that_says_ready_has_started(tmp_path):
    fleet = fleet_in(tmp_path)
    write_status(fleet, Proc.pid, phase="ready", mode="single")
    clock = FakeClock(mono=0.0)
    assert router._wait_ready(fleet, Proc(), 0, clock)["phase"] == "ready"
    assert clock.slept == []


def test_a_supervisor_that_exits_while_starting_fails_at_once_with_its_log(tmp_path):
    fleet = fleet_in(tmp_path)
    log = tmp_path / ".fleetctl" / "router.log"
    log.parent.mkdir(exist_ok=True)
    log.write_text("starting\nError: \x1b[31mAddress already in use\x1b[0m\n")
    clock = FakeClock(mono=0.0)
    with pytest.raises(RouterError, match="its supervisor exited with status 3 while starting; its last log") as e:
        router._wait_ready(fleet, Proc(3), 0, clock)
    assert "Address already in use" in e.value.reason and "\x1b" not in e.value.reason
    assert clock.slept == []


def test_a_first_start_that_fails_is_the_error_not_a_wait(tmp_path):
    fleet = fleet_in(tmp_path)
    last = {"at": "2026-01-01T00:00:00Z", "reason": "exited with status 1 while starting"}
    write_status(fleet, Proc.pid, phase="restarting", restarts=1, last_restart=last)
    with pytest.raises(RouterError, match="vllm-router exited with status 1 while starting"):
        router._wait_ready(fleet, Proc(), 0, FakeClock(mono=0.0))


def test_a_supervisor_that_never_gets_ready_times_out(tmp_path):
    fleet = fleet_in(tmp_path)
    write_status(fleet, Proc.pid, phase="starting")
    clock = FakeClock(mono=0.0)
    with pytest.raises(RouterError, match=r"did not answer with its workers registered within 90s"):
        router._wait_ready(fleet, Proc(), 0, clock)
    assert set(clock.slept) == {ROUTER_START.every_s} and sum(clock.slept) >= router.UP_TIMEOUT_S


def child(ignore_term: bool) -> subprocess.Popen[str]:
    code = "import signal, sys, time\n"
    if ignore_term:
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    code += "print('ready', flush=True)\ntime.sleep(60)\n"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


def test_a_signalled_process_that_goes_away_is_gone():
    proc = child(ignore_term=False)
    try:
        ticks = router_process.start_ticks(proc.pid)
        assert router_process._signal_and_wait(proc.pid, ticks, signal.SIGTERM, 30.0) is True
    finally:
        proc.kill()
        proc.wait()


def test_a_process_that_ignores_the_signal_is_still_there_when_time_is_up():
    proc = child(ignore_term=True)
    try:
        clock = FakeClock(mono=0.0)
        ticks = router_process.start_ticks(proc.pid)
        assert router_process._signal_and_wait(proc.pid, ticks, signal.SIGTERM, 5.0, clock) is False
        assert proc.poll() is None and sum(clock.slept) >= 5.0
    finally:
        proc.kill()
        proc.wait()


def test_a_process_already_gone_needs_no_signal():
    assert router_process._signal_and_wait(2**22 + 1, None, signal.SIGTERM, 5.0, FakeClock(mono=0.0)) is True
