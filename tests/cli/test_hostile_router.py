"""``router down`` signals only the vllm-router fleetctl started: pid, start time and command line must all match."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from fleetctl.cli.app import app

FLEET = """\
[fleet]
name = "lab"

[router]
url = "http://127.0.0.1:9"

[[hosts]]
name = "gpu1"
address = "127.0.0.1"
"""
SLEEPER = "import time; time.sleep(60)"


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", SLEEPER])
    yield proc
    proc.kill()
    proc.wait()


def start_ticks(pid):
    stat = open(f"/proc/{pid}/stat").read()
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def write_record(tmp_path, proc, args):
    (tmp_path / "fleet.toml").write_text(FLEET)
    state = tmp_path / ".fleetctl"
    state.mkdir(exist_ok=True)
    record = {
        "schema": "fleetctl.router/v1",
        "url": "http://127.0.0.1:9",
        "pid": proc.pid,
        "start_ticks": start_ticks(proc.pid),
        "args": args,
        "since": "2026-01-01T00:00:00Z",
    }
    (state / "router.json").write_text(json.dumps(record))
    return state / "router.json"


def router_down(tmp_path):
    return CliRunner().invoke(app, ["--fleet", str(tmp_path / "fleet.toml"), "router", "down"])


@pytest.mark.parametrize(
    "args",
    [
        ["/opt/venv/bin/vllm-router", "--host", "127.0.0.1", "--port", "9"],  # another program under that pid
        [sys.executable, "-c", SLEEPER, "--port", "9"],  # more arguments than it runs with
        [],
        "python",
    ],
)
def test_a_record_naming_another_command_is_refused_and_the_process_left_alone(tmp_path, sleeper, args):
    record = write_record(tmp_path, sleeper, args)
    result = router_down(tmp_path)
    assert result.exit_code == 2, result.output
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"error: {record}: pid {sleeper.pid} runs '{sys.executable} -c {SLEEPER}', not the vllm")
    assert first.endswith("it was left alone")
    assert sleeper.poll() is None and record.exists()


def test_the_router_fleetctl_started_is_stopped(tmp_path, sleeper):
    record = write_record(tmp_path, sleeper, [sys.executable, "-c", SLEEPER])
    result = router_down(tmp_path)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"router at http://127.0.0.1:9 (pid {sleeper.pid}) stopped"
    assert sleeper.wait(timeout=5) is not None and not record.exists()


def test_a_record_whose_start_time_differs_is_stale_and_nothing_is_signalled(tmp_path, sleeper):
    record = write_record(tmp_path, sleeper, [sys.executable, "-c", SLEEPER])
    doc = json.loads(record.read_text())
    record.write_text(json.dumps({**doc, "start_ticks": doc["start_ticks"] - 1}))
    result = router_down(tmp_path)
    assert result.exit_code == 0 and "no router started by fleetctl is running" in result.stdout
    assert sleeper.poll() is None and not record.exists()


TITLED = (
    "import setproctitle, sys, time; setproctitle.setproctitle('vllm::router'); print('ok', flush=True); time.sleep(60)"
)


@pytest.fixture
def titled():
    """A process that renames itself as vllm-router does once started (its argv then reads 'vllm::router')."""
    pytest.importorskip("setproctitle")
    proc = subprocess.Popen([sys.executable, "-c", TITLED], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ok"
    yield proc
    proc.kill()
    proc.wait()


def test_vllm_routers_own_process_title_counts_as_the_recorded_router(tmp_path, titled):
    record = write_record(tmp_path, titled, ["/opt/venv/bin/vllm-router", "--port", "9"])
    result = router_down(tmp_path)
    assert result.exit_code == 0, result.output
    assert titled.wait(timeout=5) is not None and not record.exists()


def test_the_title_does_not_vouch_for_a_record_of_another_program(tmp_path, titled):
    record = write_record(tmp_path, titled, ["/usr/sbin/sshd", "-D"])
    result = router_down(tmp_path)
    assert result.exit_code == 2 and "runs 'vllm::router', not the vllm-router fleetctl started" in result.stderr
    assert titled.poll() is None and record.exists()
