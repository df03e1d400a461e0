"""The router's two waits, through the shared poll helper: its start (/health, or the process exiting) and a
signalled process going away. A fake clock stands in for time; the processes and the HTTP server are real and
local (127.0.0.1 only)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fleetctl.errors import RouterError
from fleetctl.services import router
from fleetctl.services.poll import ROUTER_START


class FakeClock:
    def __init__(self):
        self.now, self.slept = 0.0, []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


class Proc:
    def __init__(self, returncode=None):
        self.returncode = returncode

    def poll(self):
        return self.returncode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args):
        pass


def test_a_router_that_answers_health_has_started(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        clock = FakeClock()
        router._wait_healthy(f"http://127.0.0.1:{server.server_port}", Proc(), str(tmp_path / "log"), 0, clock)
        assert clock.slept == []
    finally:
        server.shutdown()
        server.server_close()


def test_a_router_that_exits_while_starting_fails_at_once_with_its_log(tmp_path):
    log = tmp_path / "router.log"
    log.write_text("starting\nError: \x1b[31mAddress already in use\x1b[0m\n")
    clock = FakeClock()
    with pytest.raises(RouterError, match="exited with status 3 while starting; its last log lines") as e:
        router._wait_healthy(f"http://127.0.0.1:{free_port()}", Proc(3), str(log), 0, clock)
    assert "Address already in use" in e.value.reason and "\x1b" not in e.value.reason
    assert clock.slept == []


def test_a_router_that_never_answers_times_out(tmp_path):
    clock = FakeClock()
    with pytest.raises(RouterError, match=r"did not answer /health within 15s"):
        router._wait_healthy(f"http://127.0.0.1:{free_port()}", Proc(), str(tmp_path / "log"), 0, clock)
    assert set(clock.slept) == {ROUTER_START.every_s} and sum(clock.slept) >= router.START_TIMEOUT_S


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
        ticks = router._start_ticks(proc.pid)
        assert router._signal_and_wait(proc.pid, ticks, signal.SIGTERM, 30.0) is True
    finally:
        proc.kill()
        proc.wait()


def test_a_process_that_ignores_the_signal_is_still_there_when_time_is_up():
    proc = child(ignore_term=True)
    try:
        clock = FakeClock()
        ticks = router._start_ticks(proc.pid)
        assert router._signal_and_wait(proc.pid, ticks, signal.SIGTERM, 5.0, clock) is False
        assert proc.poll() is None and sum(clock.slept) >= 5.0
    finally:
        proc.kill()
        proc.wait()


def test_a_process_already_gone_needs_no_signal():
    assert router._signal_and_wait(2**22 + 1, None, signal.SIGTERM, 5.0, FakeClock()) is True
