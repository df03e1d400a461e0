"""`fleetctl router` against a real vllm-router on loopback, with small stdlib HTTP workers as its upstreams."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from typer.testing import CliRunner

from fleetctl.cli.app import app
from fleetctl.core.fleet import Fleet
from fleetctl.core.fleetstate import DrainRecord, FleetState, ServingRecord, worker_url
from fleetctl.errors import UsageError
from fleetctl.services.files import load_fleet
from fleetctl.services.router import _read_record, find_executable
from fleetctl.services.statefile import save_state
from fleetctl.transport.router import RouterClient
from tests.support.env import free_port as _free_port
from tests.support.env import require


def _require_router() -> None:
    """Skip without vllm-router; under CI=true fail instead (the same rule as the lab tier)."""
    try:
        find_executable()
    except UsageError:
        require(False, "vllm-router is not installed (pip install 'fleetctl[router]')")


class Worker:
    """A vLLM-shaped upstream: /health, /v1/models, /v1/completions; it counts the completions it served."""

    def __init__(self, name: str) -> None:
        self.name, self.served = name, 0
        worker = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _send(self, code: int, doc: dict) -> None:
                body = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/health":
                    self._send(200, {})
                elif self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": "tiny", "object": "model"}]})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/v1/completions":
                    return self._send(404, {"error": "not found"})
                worker.served += 1
                self._send(
                    200,
                    {
                        "object": "text_completion",
                        "model": "tiny",
                        "choices": [{"index": 0, "text": worker.name, "finish_reason": "stop"}],
                    },
                )

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = worker_url("127.0.0.1", self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def workers():
    _require_router()
    started = [Worker(f"w{i}") for i in range(1, 4)]
    yield started
    for w in started:
        w.close()


@pytest.fixture
def fleet(tmp_path):
    _require_router()
    path = tmp_path / "fleet.toml"
    path.write_text(f'[fleet]\nname = "routerlab"\n\n[router]\nurl = "http://127.0.0.1:{_free_port()}"\n')
    fleet = load_fleet(str(path))
    yield fleet
    cli(fleet, "router", "down")


def cli(fleet: Fleet, *args: str):
    return CliRunner().invoke(app, ["--fleet", fleet.path, *args])


def record_state(fleet: Fleet, serving: dict[str, str], drained: tuple[str, ...] = ()) -> FleetState:
    state = FleetState()
    for host, url in serving.items():
        state = state.with_serving(
            ServingRecord(
                host=host,
                url=url,
                profile="stable",
                image="lab/vllm:stable",
                revision="r1",
                since="2026-01-01T00:00:00Z",
            )
        )
    for host in drained:
        state = state.with_drained(DrainRecord(host=host, reason="test", by="pytest", at="2026-01-01T00:00:00Z"))
    save_state(fleet, state)
    return state


def upstreams(fleet: Fleet) -> set[str]:
    with RouterClient(fleet.router.url) as client:
        return set(client.list_workers())


def complete(fleet: Fleet, n: int) -> Counter:
    """Send n completions through the router; the worker names that answered."""
    answers = Counter()
    for _ in range(n):
        r = requests.post(fleet.router.url + "/v1/completions", json={"model": "tiny", "prompt": "x"}, timeout=10)
        assert r.status_code == 200, r.text
        answers[r.json()["choices"][0]["text"]] += 1
    return answers


def log_events(fleet: Fleet) -> list[str]:
    with open(os.path.join(fleet.state_dir, "router.log"), encoding="utf-8", errors="replace") as f:
        text = re.sub(r"\x1b\[[0-9;]*m", "", f.read())
    return re.findall(r"(Added worker|Removed worker): (\S+)", text)


def test_up_is_idempotent_and_starts_with_the_intended_set(fleet, workers):
    w1, w2, w3 = workers
    record_state(fleet, {"a1": w1.url, "a2": w2.url, "a3": w3.url}, drained=("a3",))
    first = cli(fleet, "router", "up")
    assert first.exit_code == 0, first.output
    assert "router started at" in first.stdout
    pid = _read_record(fleet)["pid"]
    assert upstreams(fleet) == {w1.url, w2.url}
    assert set(complete(fleet, 6)) == {"w1", "w2"}
    again = cli(fleet, "router", "up")
    assert again.exit_code == 0, again.output
    assert f"already running at {fleet.router.url} (pid {pid})" in again.stdout
    assert _read_record(fleet)["pid"] == pid and upstreams(fleet) == {w1.url, w2.url}


def test_sync_changes_exactly_the_diff_verifies_and_a_removed_worker_gets_no_new_requests(fleet, workers):
    w1, w2, w3 = workers
    record_state(fleet, {"a1": w1.url, "a2": w2.url, "a3": w3.url}, drained=("a3",))
    assert cli(fleet, "router", "up").exit_code == 0
    record_state(fleet, {"a1": w1.url, "a2": w2.url, "a3": w3.url}, drained=("a2",))  # a2 out, a3 back
    before = log_events(fleet)

    dry = cli(fleet, "router", "sync", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.splitlines() == [f"would add {w3.url}", f"would remove {w2.url}"]
    assert upstreams(fleet) == {w1.url, w2.url}

    done = cli(fleet, "router", "sync")
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines() == [f"added {w3.url}", f"removed {w2.url}"]
    assert upstreams(fleet) == {w1.url, w3.url}
    assert log_events(fleet)[len(before) :] == [("Added worker", w3.url), ("Removed worker", w2.url)]

    served_by_w2 = w2.served
    assert set(complete(fleet, 12)) == {"w1", "w3"}
    assert w2.served == served_by_w2

    again = cli(fleet, "router", "sync")
    assert again.exit_code == 0 and "already holds exactly the intended upstreams" in again.stdout
    assert len(log_events(fleet)) == len(before) + 2


def test_status_json_shape(fleet, workers):
    w1, w2, w3 = workers
    record_state(fleet, {"a1": w1.url, "a2": w2.url, "a3": w3.url}, drained=("a3",))
    assert cli(fleet, "router", "up").exit_code == 0
    with RouterClient(fleet.router.url) as client:
        client.remove_worker(w2.url)
        client.add_worker(w3.url)  # by hand: the router now differs from the intended set
    result = cli(fleet, "router", "status", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {
        "schema",
        "url",
        "reachable",
        "error",
        "mode",
        "process",
        "upstreams",
        "intended",
        "missing",
        "unexpected",
        "open_circuits",
        "metrics_error",
    }
    assert (doc["schema"], doc["url"], doc["reachable"], doc["error"]) == (
        "fleetctl.router-status/v1",
        fleet.router.url,
        True,
        None,
    )
    assert doc["process"]["pid"] == _read_record(fleet)["pid"]
    assert doc["intended"] == sorted([w1.url, w2.url])
    assert (doc["missing"], doc["unexpected"]) == ([w2.url], [w3.url])
    rows = {u["url"]: u for u in doc["upstreams"]}
    assert set(rows) == {w1.url, w3.url}
    keys = {"url", "model", "healthy", "load", "intended", "processed", "circuit"}
    assert all(set(u) == keys for u in rows.values())
    assert rows[w1.url]["healthy"] is True and rows[w1.url]["intended"] is True
    assert rows[w3.url]["intended"] is False
    assert all(u["load"] is None or isinstance(u["load"], int) for u in rows.values())
    table = cli(fleet, "router", "status")
    assert table.exit_code == 0 and w1.url in table.stdout and "fleetctl router sync" in table.stdout


def test_down_stops_it_and_is_idempotent_then_unreachable_is_exit_3_with_the_url(fleet, workers):
    record_state(fleet, {"a1": workers[0].url})
    assert cli(fleet, "router", "up").exit_code == 0
    pid = _read_record(fleet)["pid"]
    down = cli(fleet, "router", "down")
    assert down.exit_code == 0 and f"(pid {pid}) stopped" in down.stdout
    assert not os.path.exists(os.path.join(fleet.state_dir, "router.json"))
    assert not _answers(fleet.router.url) and not os.path.exists(f"/proc/{pid}")
    assert "no router started by fleetctl is running" in cli(fleet, "router", "down").stdout

    for args in (("router", "status"), ("router", "sync"), ("router", "sync", "--dry-run")):
        result = cli(fleet, *args)
        assert result.exit_code == 3, (args, result.output)
        assert result.stdout == ""
        errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
        assert errors == [f"error: router {fleet.router.url} unreachable: connection refused"], result.stderr
    as_json = cli(fleet, "router", "status", "--json")
    assert as_json.exit_code == 3
    doc = json.loads(as_json.stdout)
    assert (doc["reachable"], doc["error"], doc["upstreams"]) == (False, "unreachable: connection refused", [])


def test_empty_fleet_starts_an_empty_router_and_sync_fills_it(fleet, workers):
    up = cli(fleet, "router", "up")
    assert up.exit_code == 0, up.output
    assert upstreams(fleet) == set()
    r = requests.post(fleet.router.url + "/v1/completions", json={"model": "tiny", "prompt": "x"}, timeout=10)
    assert r.status_code == 503
    record_state(fleet, {"a1": workers[0].url})
    assert cli(fleet, "router", "sync").stdout.splitlines() == [f"added {workers[0].url}"]
    assert set(complete(fleet, 2)) == {"w1"}


def test_a_stale_record_is_cleaned_and_a_foreign_port_holder_is_refused(fleet, workers):
    os.makedirs(fleet.state_dir, exist_ok=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    with open(os.path.join(fleet.state_dir, "router.json"), "w") as f:
        json.dump(
            {
                "schema": "fleetctl.router/v1",
                "url": fleet.router.url,
                "pid": dead.pid,
                "start_ticks": 1,
                "args": [],
                "since": "2026-01-01T00:00:00Z",
            },
            f,
        )
    up = cli(fleet, "router", "up")
    assert up.exit_code == 0, up.output
    assert "removed the record of a router that is no longer running" in up.stderr
    assert _read_record(fleet)["pid"] != dead.pid
    assert cli(fleet, "router", "down").exit_code == 0

    with socket.socket() as holder:
        # the router just stopped: its side of closed connections may sit in TIME_WAIT on the port
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", int(fleet.router.url.rsplit(":", 1)[1])))
        holder.listen()
        refused = cli(fleet, "router", "up")
    assert refused.exit_code == 3
    assert f"error: router {fleet.router.url} cannot be started: port" in refused.stderr
    assert "already in use by a process fleetctl did not start" in refused.stderr
    assert not os.path.exists(os.path.join(fleet.state_dir, "router.json"))


def test_a_router_that_cannot_start_is_an_error_with_its_last_log_lines(fleet):
    dead_worker = worker_url("127.0.0.1", _free_port())  # nothing listens: no upstream ever healthy
    record_state(fleet, {"a1": dead_worker})
    up = cli(fleet, "router", "up")
    assert up.exit_code == 3, up.output
    # vllm-router gives up on its upstreams after 10 s and exits; its supervisor is stopped with it
    assert f"error: router {fleet.router.url} vllm-router exited with status" in up.stderr, up.stderr
    assert "while starting" in up.stderr
    assert "its last log lines" in up.stderr and "healthy" in up.stderr
    assert "full log:" in up.stderr
    assert _read_record(fleet) is None and not _answers(fleet.router.url)


def _answers(url: str) -> bool:
    try:
        return requests.get(url + "/health", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _wait_for(check, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_sync_is_refused_while_the_fleet_lock_is_held(fleet, workers):
    from fleetctl.services.lock import fleet_lock

    record_state(fleet, {"a1": workers[0].url})
    assert cli(fleet, "router", "up").exit_code == 0
    with fleet_lock(fleet.state_dir, "fleetctl drain a1"):
        held = cli(fleet, "router", "sync")
        assert held.exit_code == 6 and "fleetctl drain a1" in held.stderr
        assert cli(fleet, "router", "sync", "--dry-run").exit_code == 0  # reading needs no lock


class _Stub:
    """A loopback server that answers every request with one canned response, or never answers."""

    def __init__(self, status: int | None, body: bytes = b"") -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.status, self.body, self.held = status, body, []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            if self.status is not None:
                conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                    % (self.status, len(self.body), self.body)
                )

    def close(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


@pytest.mark.parametrize(
    "status, body, call, words",
    [
        (None, b"", "health", "did not answer GET /health within 0.5s"),
        (500, b"boom\nmore", "health", "answered GET /health with 500: boom"),
        (200, b"<html>", "list_workers", "answered /list_workers with something that is not a JSON object"),
        (200, b'{"urls": "x"}', "list_workers", "answered /list_workers without a list of URLs"),
        (200, b'{"workers": [{"no": "url"}]}', "workers", "answered /workers without a list of workers"),
        (400, b"Worker http://x:1 already exists", "add_worker", "answered POST /add_worker with 400: Worker"),
    ],
)
def test_router_client_errors_name_the_router(status, body, call, words):
    from fleetctl.errors import ExitCode, RouterError

    stub = _Stub(status, body)
    try:
        client = RouterClient(stub.url, timeout_s=0.5)
        with pytest.raises(RouterError) as e:
            getattr(client, call)(*(["http://x:1"] if call == "add_worker" else []))
    finally:
        stub.close()
    assert str(e.value).startswith(f"router {stub.url} ") and words in str(e.value)
    assert e.value.exit_code == ExitCode.HOSTS_FAILED and "\n" not in str(e.value)


def test_missing_vllm_router_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr("sys.executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UsageError) as e:
        find_executable()
    assert "vllm-router is not installed" in str(e.value) and e.value.hint == "pip install 'fleetctl[router]'"


def test_two_ups_at_once_start_one_router(fleet, workers):
    import sys

    record_state(fleet, {"a1": workers[0].url})
    argv = [sys.executable, "-m", "fleetctl", "--fleet", fleet.path, "router", "up"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    verbs = sorted("started" if "router started" in out else "running" for out, _ in outs)
    assert verbs == ["running", "started"], outs
    assert upstreams(fleet) == {workers[0].url}
