"""The supervised router: vllm-router comes back by itself after ``kill -9`` with exactly the intended set, a sync
issued meanwhile waits for it, ``router run`` stops vllm-router first on SIGTERM, and a fleet that gains a second
model gets its router restarted in multi-model mode. Behaviour only; the recovery times are scripts/bench-router's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from fleetctl.core.fleetstate import FleetState, ServingRecord
from fleetctl.services.router_process import start_ticks
from fleetctl.services.statefile import save_state
from tests.lab import test_router as base
from tests.lab.test_router import Worker, cli, complete, record_state, upstreams
from tests.lab.test_router_igw import require_router

fleet = base.fleet  # the same fixture: a fleet file with its own router port, `router down` after each test
RECOVERY_S = 120  # a bound for a loaded 2-core machine, not the target (that is the benchmark's)


@pytest.fixture(scope="module")
def workers():
    require_router()
    started = [Worker(f"w{i}") for i in range(1, 4)]
    yield started
    for w in started:
        w.close()


def supervisor_status(fleet) -> dict:
    with open(os.path.join(fleet.state_dir, "router-supervisor.json")) as f:
        return json.load(f)


def wait_for(check, timeout_s: float = RECOVERY_S):
    deadline = time.monotonic() + timeout_s
    while True:
        answer = check()
        if answer:
            return answer
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def serves(fleet) -> bool:
    try:
        r = requests.post(fleet.router.url + "/v1/completions", json={"model": "tiny", "prompt": "x"}, timeout=5)
        return r.status_code == 200
    except requests.RequestException:
        return False


def test_after_kill_9_the_router_comes_back_with_exactly_the_intended_set(fleet, workers):
    w1, w2, w3 = workers
    record_state(fleet, {"a1": w1.url, "a2": w2.url, "a3": w3.url}, drained=("a2",))
    up = cli(fleet, "router", "up")
    assert up.exit_code == 0, up.output
    first = supervisor_status(fleet)["router"]["pid"]
    os.kill(first, signal.SIGKILL)

    wait_for(lambda: serves(fleet) and supervisor_status(fleet)["phase"] == "ready")  # nobody typing
    assert upstreams(fleet) == {w1.url, w3.url}  # the drained host stays out
    assert set(complete(fleet, 8)) == {"w1", "w3"}
    doc = json.loads(cli(fleet, "router", "status", "--json").stdout)
    proc = doc["process"]
    assert proc["router_pid"] not in (None, first) and proc["supervised"] is True
    assert proc["restarts"] == 1 and proc["last_restart"]["reason"] == "killed by SIGKILL"
    table = cli(fleet, "router", "status").stdout
    assert "1 restart(s)" in table and "killed by SIGKILL" in table


def test_a_sync_issued_while_the_router_restarts_waits_for_it(fleet, workers):
    w1, w2, _ = workers
    record_state(fleet, {"a1": w1.url})
    assert cli(fleet, "router", "up").exit_code == 0
    record_state(fleet, {"a1": w1.url, "a2": w2.url})  # a change the dead router will not have heard of
    os.kill(supervisor_status(fleet)["router"]["pid"], signal.SIGKILL)
    sync = cli(fleet, "router", "sync")
    assert sync.exit_code == 0, sync.output
    assert upstreams(fleet) == {w1.url, w2.url}


def test_router_run_stops_vllm_router_first_on_sigterm(fleet, workers):
    record_state(fleet, {"a1": workers[0].url})
    argv = [sys.executable, "-m", "fleetctl", "--fleet", fleet.path, "router", "run"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: os.path.exists(os.path.join(fleet.state_dir, "router-supervisor.json")) and serves(fleet))
        inner = supervisor_status(fleet)["router"]
        again = cli(fleet, "router", "run")  # a second supervisor for the same fleet is refused
        assert again.exit_code == 6 and "a router supervisor already runs for this fleet" in again.stderr
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert start_ticks(inner["pid"]) != inner["start_ticks"]  # vllm-router is gone too
    assert out.index("stopping vllm-router") > out.index("got SIGTERM")
    assert not os.path.exists(os.path.join(fleet.state_dir, "router.json"))


def test_a_fleet_that_gains_a_second_model_gets_its_router_restarted_in_multi_model_mode(fleet, workers):
    w1, w2, _ = workers

    def record(models: dict[str, tuple[str, str]]) -> None:
        state = FleetState()
        for host, (url, model) in models.items():
            state = state.with_serving(ServingRecord(host, url, "p", "img", "r1", "2026-01-01T00:00:00Z", model))
        save_state(fleet, state)

    record({"a1": (w1.url, "tiny")})
    assert "single-model mode" in cli(fleet, "router", "up").stdout
    record({"a1": (w1.url, "tiny"), "a2": (w2.url, "other")})
    up = cli(fleet, "router", "up")
    assert up.exit_code == 0, up.output
    # the supervisor notices within a second on its own; `up` says so when it finds it still in single mode
    assert "multi-model mode" in up.stdout.splitlines()[-1]
    doc = json.loads(cli(fleet, "router", "status", "--json").stdout)
    assert doc["mode"] == "multi" and "multi-model mode" in doc["process"]["last_restart"]["reason"]
    assert {(u["url"], u["model"]) for u in doc["upstreams"]} == {(w1.url, "tiny"), (w2.url, "other")}
