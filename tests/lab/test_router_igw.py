"""Contract: what fleetctl relies on in vllm-router 0.1.17's multi-model mode (``--enable-igw``), tried against the
lab's vLLM stand-in (two stand-ins, two model names), then the same through ``fleetctl router``.

Each stand-in serves one model name and answers 404 for any other, so a request answered 200 was routed to a
worker of its model.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from typer.testing import CliRunner

from fleetctl.cli.app import app
from fleetctl.core.fleetstate import FleetState, ServingRecord
from fleetctl.errors import UsageError
from fleetctl.services.files import load_fleet
from fleetctl.services.router import find_executable
from fleetctl.services.statefile import save_state
from fleetctl.transport.router import RouterClient
from tests.support.env import free_port, require

STANDIN = Path(__file__).resolve().parents[2] / "scripts" / "labkit" / "standin" / "server.py"
START_S = 120  # vllm-router imports slowly on a loaded machine


def require_router() -> str:
    try:
        return find_executable()
    except UsageError:
        require(False, "vllm-router is not installed (pip install 'fleetctl[router]')")
        raise


class Standin:
    """The lab's vLLM stand-in on loopback, serving one model name."""

    def __init__(self, model: str, tokens_per_s: int = 200, *extra: str) -> None:
        self.model, port = model, free_port()
        argv = [sys.executable, str(STANDIN), model, "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--tokens-per-s", str(tokens_per_s), *extra]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        wait_for(lambda: answers(self.url + "/health"))

    def completions(self) -> int:
        """Successful completions it answered, from its own metrics."""
        text = requests.get(self.url + "/metrics", timeout=10).text
        return int(sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if _success_line(ln)))

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


def _success_line(line: str) -> bool:
    return line.startswith("vllm:request_success_total{") and 'finished_reason="length"' in line


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def wait_for(check, timeout_s: float = START_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def complete(router_url: str, model: str) -> requests.Response:
    body = {"model": model, "prompt": "x", "max_tokens": 2}
    return requests.post(router_url + "/v1/completions", json=body, timeout=60)


@pytest.fixture(scope="module")
def standins():
    require_router()
    pair = [Standin("lab/model-a"), Standin("lab/model-b")]
    yield pair
    for s in pair:
        s.close()


@pytest.fixture
def igw_router(tmp_path):
    """A bare vllm-router in multi-model mode, started here (not by fleetctl)."""
    port, metrics = free_port(), free_port()
    argv = [require_router(), "--host", "127.0.0.1", "--port", str(port), "--enable-igw"]
    argv += ["--policy", "round_robin", "--prometheus-port", str(metrics)]
    log = open(tmp_path / "router.log", "wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(url + "/health"))
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_multi_model_mode_contract(standins, igw_router):
    a, b = standins
    url = igw_router
    assert requests.get(url + "/health", timeout=5).status_code == 200  # 200 with no worker at all
    with RouterClient(url, mode="multi") as client:
        client.add_worker(a.url, a.model)
        client.add_worker(b.url, b.model)
        held = {(w.url, w.model) for w in client.workers()}
        assert held == {(a.url, a.model), (b.url, b.model)}
        loads = requests.get(url + "/get_loads", timeout=5).json()["workers"]
        assert {row["url"] for row in loads} == {a.url, b.url}  # named `url` in this mode, not `worker`
        assert {w.url: w.load for w in client.workers()} == {a.url: 0, b.url: 0}

        before = (a.completions(), b.completions())
        answers_ = [complete(url, m) for m in [a.model, b.model] * 20]
        assert [r.status_code for r in answers_] == [200] * 40, [r.text for r in answers_ if r.status_code != 200]
        assert (a.completions() - before[0], b.completions() - before[1]) == (20, 20)

        models = requests.get(url + "/v1/models", timeout=5).json()
        assert sorted(models["models"]) == [a.model, b.model]  # not OpenAI's {"object": "list", "data"}

        assert client.remove_worker(b.url) is True
        assert client.remove_worker(b.url) is False  # 400 WORKER_NOT_FOUND: already gone, done
        raw = requests.delete(url + "/workers/" + quote(b.url, safe=""), timeout=5)
        assert raw.status_code == 400 and "WORKER_NOT_FOUND" in raw.text
        assert {w.url for w in client.workers()} == {a.url}

        # registered at once, without a health check: a URL where nothing listens is taken and called healthy,
        # so fleetctl's own health check before the add is what keeps clients off a dead host
        dead = f"http://127.0.0.1:{free_port()}"
        client.add_worker(dead, "lab/model-dead")
        assert {w.url: w.healthy for w in client.workers()}[dead] is True
        assert client.remove_worker(dead) is True


def test_an_in_flight_stream_survives_its_workers_removal(tmp_path, igw_router):
    slow = Standin("lab/model-s", tokens_per_s=20)
    try:
        with RouterClient(igw_router, mode="multi") as client:
            client.add_worker(slow.url, slow.model)
            body = {"model": slow.model, "prompt": "x", "max_tokens": 60, "ignore_eos": True, "stream": True}
            chunks: list[str] = []

            def read() -> None:
                with requests.post(igw_router + "/v1/completions", json=body, stream=True, timeout=120) as r:
                    chunks.extend(ln.decode() for ln in r.iter_lines() if ln)

            reader = threading.Thread(target=read)
            reader.start()
            wait_for(lambda: len(chunks) > 0 or slow.completions() > 0 or _running(slow), 60)
            client.remove_worker(slow.url)
            reader.join(120)
        assert chunks and chunks[-1] == "data: [DONE]"
        finish = [json.loads(c[6:])["choices"][0].get("finish_reason") for c in chunks[:-1] if "choices" in c]
        assert "length" in finish
    finally:
        slow.close()


def _running(s: Standin) -> bool:
    text = requests.get(s.url + "/metrics", timeout=10).text
    return any(ln.startswith("vllm:num_requests_running") and not ln.endswith(" 0.0") for ln in text.splitlines())


def test_fleetctl_runs_a_two_model_fleet_in_multi_mode_and_moves_a_changed_model(tmp_path, standins):
    a, b = standins
    path = tmp_path / "fleet.toml"
    path.write_text(f'[fleet]\nname = "igw"\n\n[router]\nurl = "http://127.0.0.1:{free_port()}"\n')
    fleet = load_fleet(str(path))

    def record(models: dict[str, tuple[str, str]]) -> None:
        state = FleetState()
        for host, (url, model) in models.items():
            state = state.with_serving(ServingRecord(host, url, "p", "img", "r1", "2026-01-01T00:00:00Z", model))
        save_state(fleet, state)

    def cli(*args: str):
        return CliRunner().invoke(app, ["--fleet", fleet.path, *args])

    record({"h1": (a.url, a.model), "h2": (b.url, b.model)})
    try:
        up = cli("router", "up")
        assert up.exit_code == 0, up.output
        assert "multi-model mode" in up.stdout
        answers_ = [complete(fleet.router.url, m) for m in [a.model, b.model] * 5]
        assert [r.status_code for r in answers_] == [200] * 10
        doc = json.loads(cli("router", "status", "--json").stdout)
        assert doc["mode"] == "multi"
        assert {(u["url"], u["model"]) for u in doc["upstreams"]} == {(a.url, a.model), (b.url, b.model)}

        record({"h1": (a.url, a.model), "h2": (b.url, "lab/model-c")})  # h2's record names another model
        sync = cli("router", "sync")
        assert sync.exit_code == 0, sync.output
        assert sync.stdout.splitlines() == [f"removed {b.url}", f"added {b.url} (model lab/model-c)"]
        with RouterClient(fleet.router.url, mode="multi") as client:
            assert {(w.url, w.model) for w in client.workers()} == {(a.url, a.model), (b.url, "lab/model-c")}
        assert cli("router", "sync").stdout.startswith("router ")  # nothing more to do: never posted twice
    finally:
        cli("router", "down")


def test_router_status_shows_a_worker_whose_circuit_breaker_is_open(tmp_path):
    """vllm-router retries a 5xx on another worker, so clients see no error; after 10 in a row the failing
    worker's circuit opens, and only the router's own metrics say so."""
    failing = Standin("lab/m", 200, "--fail-rate", "1.0", "--fail-mode", "500")
    good = Standin("lab/m")
    path = tmp_path / "fleet.toml"
    path.write_text(f'[fleet]\nname = "cb"\n\n[router]\nurl = "http://127.0.0.1:{free_port()}"\n')
    fleet = load_fleet(str(path))
    state = FleetState()
    for host, s in (("bad", failing), ("good", good)):
        state = state.with_serving(ServingRecord(host, s.url, "p", "img", "r1", "2026-01-01T00:00:00Z", "lab/m"))
    save_state(fleet, state)
    runner = CliRunner()
    try:
        assert runner.invoke(app, ["--fleet", fleet.path, "router", "up"]).exit_code == 0
        assert [complete(fleet.router.url, "lab/m").status_code for _ in range(30)] == [200] * 30
        doc = json.loads(runner.invoke(app, ["--fleet", fleet.path, "router", "status", "--json"]).stdout)
        assert doc["open_circuits"] == [failing.url]
        rows = {u["url"]: u for u in doc["upstreams"]}
        assert rows[failing.url]["circuit"] == "open" and rows[good.url]["circuit"] == "closed"
        assert rows[good.url]["processed"] >= 30
        table = runner.invoke(app, ["--fleet", fleet.path, "router", "status"]).stdout
        assert f"circuit open for {failing.url}" in table
    finally:
        runner.invoke(app, ["--fleet", fleet.path, "router", "down"])
        failing.close()
        good.close()
