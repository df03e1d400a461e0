"""Serving on the lab: deploy, router, drain and undrain under load, status. Real sshd, dockerd, vllm-router."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest
import requests
from typer.testing import CliRunner

from fleetctl.cli.app import app
from tests.support.env import free_port
from tests.support.load import LoadGenerator

TOOLKIT = {"nvidia_container_toolkit": "1.17.8"}
SPEC = {
    "hosts": [
        {"name": "gpu-01", "ring": "canary", **TOOLKIT},
        {"name": "gpu-02", "ring": "early", **TOOLKIT},
        {"name": "gpu-03", "ring": "main", **TOOLKIT},
        {"name": "gpu-04", "ring": "main", **TOOLKIT},
        {"name": "gpu-notk"},
        {"name": "gpu-slowstart", **TOOLKIT},
    ]
}
FOUR = "gpu-01,gpu-02,gpu-03,gpu-04"
MODEL = "lab/tiny-llama"


class Fleet:
    """The lab's fleet file with a router on a free port, and a CLI runner bound to it."""

    def __init__(self, info):
        self.info = info
        self.router_port = free_port()
        text = info.fleet_file.read_text().replace("127.0.0.1:30000", f"127.0.0.1:{self.router_port}")
        info.fleet_file.write_text(text)
        self.router = f"http://127.0.0.1:{self.router_port}"

    def cli(self, *args, ok=True):
        result = CliRunner().invoke(app, ["--fleet", str(self.info.fleet_file), *args])
        if ok:
            assert result.exit_code == 0, f"{args}: exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
        return result

    def workers(self) -> set[str]:
        return set(requests.get(f"{self.router}/list_workers", timeout=5).json()["urls"])

    def url(self, host: str) -> str:
        return f"http://{self.info.host(host).address}:8000"

    def docker(self, host: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.info.ssh_command(host, "docker", *args), capture_output=True, text=True, timeout=60)

    def served(self, host: str) -> float:
        text = requests.get(f"{self.url(host)}/metrics", timeout=5).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("vllm:request_success_total{")
        )


@pytest.fixture(scope="module")
def fleet(lab_factory):
    f = Fleet(lab_factory(SPEC, "serving"))
    f.cli("router", "up")
    f.cli("deploy", "--profile", "stable", "--limit", FOUR)
    yield f
    f.cli("router", "down", ok=False)


def test_deploy_puts_four_healthy_hosts_behind_the_router(fleet):
    assert fleet.workers() == {fleet.url(h) for h in FOUR.split(",")}
    before = {h: fleet.served(h) for h in FOUR.split(",")}
    for _ in range(12):
        r = requests.post(
            f"{fleet.router}/v1/completions", json={"model": MODEL, "prompt": "hi", "max_tokens": 2}, timeout=30
        )
        assert r.status_code == 200
    assert all(fleet.served(h) > before[h] for h in before)  # round robin reached every host
    doc = json.loads(fleet.cli("status", "--json", "--limit", FOUR).stdout)
    assert doc["schema"] == "fleetctl.status/v1" and doc["router"]["reachable"]
    assert all(
        h["healthy"]
        and h["in_router"]
        and h["image"] == "lab/vllm:stable"
        and h["profile"] == "stable"
        and h["requests_running"] == 0
        for h in doc["hosts"]
    )


def test_deploy_refuses_a_host_that_already_serves(fleet):
    result = fleet.cli("deploy", "--profile", "stable", "--limit", "gpu-01", ok=False)
    assert result.exit_code == 3 and "already_serving" in result.stderr and "Traceback" not in result.stderr


def test_drain_and_undrain_under_load_fail_no_request(fleet):
    with LoadGenerator(fleet.router, MODEL, clients=8) as load:
        load.wait_for_progress(20)
        fleet.cli("drain", "gpu-02", "--reason", "test")
        assert fleet.workers() == {fleet.url(h) for h in ("gpu-01", "gpu-03", "gpu-04")}
        load.wait_for_progress(20)
        served = fleet.served("gpu-02")
        load.wait_for_progress(20)
        assert fleet.served("gpu-02") == served  # no new requests reach a drained host
        fleet.cli("undrain", "gpu-02")
        assert fleet.workers() == {fleet.url(h) for h in FOUR.split(",")}
        load.wait_for_progress(20)
    report = load.stop()
    report.assert_no_failures()
    assert report.ok >= 80


def test_drain_stop_waits_for_a_long_stream_to_finish(fleet):
    chunks: list[str] = []

    def long_stream():
        with requests.post(
            f"{fleet.url('gpu-03')}/v1/completions",
            stream=True,
            timeout=60,
            json={"model": MODEL, "prompt": "tell me", "max_tokens": 300, "stream": True, "ignore_eos": True},
        ) as r:
            chunks.extend(line.decode() for line in r.iter_lines() if line)

    reader = threading.Thread(target=long_stream)
    reader.start()
    time.sleep(0.5)
    start = time.monotonic()
    fleet.cli("drain", "gpu-03", "--stop", "--timeout", "60")
    reader.join(30)
    assert chunks and chunks[-1] == "data: [DONE]"
    assert '"finish_reason": "length"' in chunks[-2] or '"finish_reason":"length"' in chunks[-2]
    assert time.monotonic() - start > 1.0  # it waited for the stream
    assert "Exited" in fleet.docker("gpu-03", "ps", "-a", "--format", "{{.Status}}").stdout
    fleet.cli("undrain", "gpu-03")
    assert fleet.url("gpu-03") in fleet.workers()


def test_drain_below_min_serving_is_refused(fleet):
    result = fleet.cli("drain", "gpu-01", "gpu-02", "gpu-03", "gpu-04", ok=False)
    assert result.exit_code == 2 and "min_serving" in result.stderr
    assert fleet.workers() == {fleet.url(h) for h in FOUR.split(",")}


def test_restarted_router_gets_the_intended_set_back_drained_host_still_out(fleet):
    fleet.cli("drain", "gpu-04")
    fleet.cli("router", "down")
    fleet.cli("router", "up")
    fleet.cli("router", "sync")
    assert fleet.workers() == {fleet.url(h) for h in ("gpu-01", "gpu-02", "gpu-03")}
    fleet.cli("undrain", "gpu-04")
    assert fleet.workers() == {fleet.url(h) for h in FOUR.split(",")}


def test_a_host_without_the_container_toolkit_fails_deploy_clearly(fleet):
    result = fleet.cli("deploy", "--profile", "stable", "--limit", "gpu-notk", ok=False)
    assert result.exit_code == 3
    assert "gpu-notk: gpu_runtime_missing" in result.stderr and "Traceback" not in result.stderr
    assert fleet.url("gpu-notk") not in fleet.workers()


def test_never_healthy_container_fails_deploy_and_undrain_and_stays_out(fleet):
    result = fleet.cli("deploy", "--profile", "never-ready", "--limit", "gpu-slowstart", ok=False)
    assert result.exit_code == 3 and "gpu-slowstart: unhealthy" in result.stderr
    assert fleet.url("gpu-slowstart") not in fleet.workers()
    # a drained host whose container turns out never to become healthy again stays out on undrain
    fleet.cli("drain", "gpu-01", "--stop")
    assert fleet.docker("gpu-01", "rm", "-f", "fleetctl-vllm").returncode == 0
    created = fleet.docker(
        "gpu-01",
        "create",
        "--name",
        "fleetctl-vllm",
        "--network",
        "host",
        "--label",
        "fleetctl.managed=true",
        "lab/vllm:never-ready",
        MODEL,
        "--port",
        "8000",
    )
    assert created.returncode == 0, created.stderr
    result = fleet.cli("undrain", "gpu-01", "--timeout", "8", ok=False)
    assert result.exit_code == 3 and "gpu-01" in result.stderr and "not healthy" in result.stderr
    assert fleet.url("gpu-01") not in fleet.workers()
    doc = json.loads(fleet.cli("status", "--json", "--limit", "gpu-01").stdout)
    assert doc["hosts"][0]["drained"]
