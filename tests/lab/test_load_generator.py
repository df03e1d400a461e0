"""tests/support/load.py: its judges, then the generator against real vLLM stand-ins behind a real vllm-router.

The processes run on free loopback ports and need no root; without vllm-router these skip (fail under CI=true).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from fleetctl.errors import UsageError
from tests.support.env import free_port as _free_port
from tests.support.env import require
from tests.support.load import KINDS, LoadGenerator, check_lab_url, judge_body, judge_stream, plan_request

SERVER = Path(__file__).resolve().parents[2] / "scripts" / "labkit" / "standin" / "server.py"
MODEL = "lab-model"
SUCCESS = "vllm:request_success_total"


def _require_router() -> str:
    """The vllm-router executable; skip without it, and under CI=true fail instead (the lab tier's rule)."""
    from fleetctl.services.router import find_executable

    try:
        return find_executable()
    except UsageError:
        require(False, "vllm-router is not installed (pip install 'fleetctl[router]')")


def _wait_until(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Standin:
    """A vLLM stand-in process; ``name`` becomes its model root, so its system_fingerprint is its own."""

    def __init__(self, proc: subprocess.Popen, port: int, name: str) -> None:
        self.proc, self.url, self.name = proc, f"http://127.0.0.1:{port}", name

    def counter(self, name: str, **labels: str) -> float:
        text = requests.get(f"{self.url}/metrics", timeout=5).text
        return sum(
            s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def completions(self) -> dict[str, float]:
        """vllm:request_success_total by finished_reason."""
        return {r: self.counter(SUCCESS, finished_reason=r) for r in ("stop", "length", "abort", "error")}

    def fingerprint(self) -> str:
        r = requests.post(
            f"{self.url}/v1/completions", json={"model": MODEL, "prompt": "x", "max_tokens": 1}, timeout=10
        )
        return r.json()["system_fingerprint"]


class Procs:
    """Starts stand-ins and routers on free ports; ``close`` ends every one of them."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.started = folder, []

    def _spawn(self, argv: list[str], log_name: str) -> subprocess.Popen:
        with open(self.folder / log_name, "wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.started.append(proc)
        return proc

    def standin(self, name: str, *args: str) -> Standin:
        port = _free_port()
        proc = self._spawn(
            [
                sys.executable,
                str(SERVER),
                f"lab/{name}",
                "--served-model-name",
                MODEL,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--disable-uvicorn-access-log",
                *args,
            ],
            f"{name}.log",
        )
        s = Standin(proc, port, name)
        _wait_until(lambda: _answers(s.url, proc), 15, f"stand-in {name}")
        return s

    def router(self, workers: list[Standin], *args: str) -> str:
        port = _free_port()
        argv = [
            _require_router(),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--policy",
            "round_robin",
            "--prometheus-port",
            str(_free_port()),
            "--log-level",
            "warning",
            "--worker-startup-check-interval",
            "1",
            *args,
            "--worker-urls",
            *[w.url for w in workers],
        ]
        proc = self._spawn(argv, f"router-{port}.log")
        url = f"http://127.0.0.1:{port}"
        _wait_until(lambda: _answers(url, proc), 30, "vllm-router")
        return url

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.started:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _answers(url: str, proc: subprocess.Popen) -> bool:
    assert proc.poll() is None, f"{proc.args[:3]} exited with {proc.returncode}"
    try:
        return requests.get(f"{url}/health", timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def procs(tmp_path):
    _require_router()
    started = Procs(tmp_path)
    try:
        yield started
    finally:
        started.close()


def list_workers(router: str) -> list[str]:
    return requests.get(f"{router}/list_workers", timeout=5).json()["urls"]


# -- the judges, without processes ----------------------------------------------------------------------------


def _sse(*events: str) -> list[bytes]:
    return [line.encode() for e in events for line in (f"data: {e}", "")]


CHUNK = '{"choices":[{"index":0,"text":" x","finish_reason":null}]}'
LAST = '{"choices":[{"index":0,"text":" y","finish_reason":"%s"}],"system_fingerprint":"vllm-0.32.0-ab"}'


@pytest.mark.parametrize(
    "lines, reason, words",
    [
        (_sse(CHUNK, LAST % "stop", "[DONE]"), None, ""),
        (_sse(CHUNK, LAST % "length", '{"choices":[],"usage":{}}', "[DONE]"), None, ""),
        (_sse(CHUNK, LAST % "stop"), "cut", "without data: [DONE] after 2 events (last finish_reason stop)"),
        (_sse(CHUNK, LAST % "abort", "[DONE]"), "finish", "finish_reason abort"),
        (_sse(CHUNK, "[DONE]"), "finish", "finish_reason None"),
        (
            _sse(CHUNK, '{"error": {"message": "Internal server error", "code": 500}}', "[DONE]"),
            "error",
            "Internal server error",
        ),
        (_sse(CHUNK, "{not json", "[DONE]"), "json", "invalid JSON chunk: {not json"),
        (_sse(LAST % "stop", "[DONE]", CHUNK), "json", "data after [DONE]"),
        ([b": keep-alive", b"event: x"] + _sse(LAST % "stop", "[DONE]"), None, ""),
    ],
)
def test_judge_stream(lines, reason, words):
    verdict, _ = judge_stream(lines)
    assert (verdict and verdict[0]) == reason
    assert words in (verdict[1] if verdict else "")


@pytest.mark.parametrize(
    "status, body, reason, words",
    [
        (200, '{"choices":[{"finish_reason":"stop"}],"system_fingerprint":"f"}', None, ""),
        (503, "No available workers", "status", "HTTP 503: No available workers"),
        (200, "<html>", "json", "invalid JSON: <html>"),
        (200, '{"error": {"message": "boom"}}', "error", "boom"),
        (200, '{"choices": []}', "json", "no choices"),
        (200, '{"choices":[{"finish_reason":"error"}]}', "finish", "finish_reason error"),
    ],
)
def test_judge_body(status, body, reason, words):
    verdict, _ = judge_body(status, body)
    assert (verdict and verdict[0]) == reason
    assert words in (verdict[1] if verdict else "")


def test_requests_mix_kinds_and_share_streaming_exactly():
    for share in (0.0, 0.25, 0.5, 1.0):
        plan = [plan_request(n, share) for n in range(40)]
        assert sum(stream for _, stream in plan) == 40 * share
    plan = [plan_request(n, 0.5) for n in range(8)]
    assert {(p, s) for p, s in plan} == {
        (p, s) for p in ("/v1/chat/completions", "/v1/completions") for s in (True, False)
    }


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1:1",
        "http://example.invalid:80",
        "http://8.8.8.8:80",
        "http://[2001:db8::1]:80",
        "ftp://127.0.0.1",
    ],
)
def test_only_loopback_and_lab_addresses(url):
    with pytest.raises(ValueError):
        LoadGenerator(url, MODEL)
    assert check_lab_url("http://10.250.0.5:8000/") == "http://10.250.0.5:8000"


# -- against real processes -------------------------------------------------------------------------------------


def test_two_workers_behind_the_router_serve_every_request(procs):
    w1, w2 = procs.standin("w1"), procs.standin("w2")
    router = procs.router([w1, w2])
    with LoadGenerator(router, MODEL, clients=8) as load:
        load.wait_for_progress(8)
        time.sleep(3)
    report = load.stop()
    report.assert_no_failures()
    assert set(report.by_kind) == set(KINDS) and report.total >= 30
    assert sum(ok for ok, _ in report.per_second) == report.ok and report.duration_s >= 3
    done = [w.completions() for w in (w1, w2)]
    assert all(d["stop"] > 0 for d in done), done  # both workers served
    assert sum(d["stop"] + d["length"] for d in done) == report.ok
    assert all(d["abort"] == d["error"] == 0 for d in done)


def test_removing_a_worker_under_load_fails_nothing_and_it_gets_no_new_requests(procs):
    slow = ("--tokens-per-s", "40")  # streams of ~0.4 s, so some are in flight
    keep, gone = procs.standin("keep", *slow), procs.standin("gone", *slow)
    router = procs.router([keep, gone])
    with LoadGenerator(router, MODEL, clients=8) as load:
        load.wait_for_progress(16)
        _wait_until(lambda: gone.counter("vllm:num_requests_running") > 0, 10, "requests in flight on the worker")
        r = requests.post(f"{router}/remove_worker", params={"url": gone.url}, timeout=10)
        assert r.status_code == 200, r.text
        assert list_workers(router) == [keep.url]
        _wait_until(lambda: gone.counter("vllm:num_requests_running") == 0, 10, "the removed worker to idle")
        served_by_gone = sum(gone.completions().values())
        load.wait_for_progress(24)
    report = load.stop()
    report.assert_no_failures()
    assert sum(gone.completions().values()) == served_by_gone
    assert gone.completions()["abort"] == 0 and keep.completions()["stop"] > 0


def test_failing_worker_failures_are_counted_with_their_reasons(procs):
    # half fail, as HTTP 500 or as an engine error: a 500 for a plain request, an error event in a stream
    bad = procs.standin("bad", "--behaviour", "failing", "--fail-rate", "0.5", "--seed", "7")
    # no retries and no circuit breaker: every failure reaches the client, and only the worker's failures
    router = procs.router([bad], "--disable-retries", "--disable-circuit-breaker")
    with LoadGenerator(router, MODEL, clients=8) as load:
        load.wait_for_progress(100)
    report = load.stop()
    assert report.ok > 0 and report.failed > 0
    assert set(report.reasons) == {"status", "error"}, report.summary()
    assert len(report.failures) == min(report.failed, 20)
    assert all("status: HTTP 500: " in f or "error: error event: " in f for f in report.failures), report.failures
    with pytest.raises(AssertionError, match=rf"{report.failed} failed"):
        report.assert_no_failures()
    done = bad.completions()
    assert done["stop"] + done["length"] == report.ok  # every request that the worker failed was counted
    posts = sum(bad.counter("http_requests_total", handler=h) for h in ("/v1/completions", "/v1/chat/completions"))
    assert posts == report.total


def test_sigterm_and_sigkill_cut_streams_are_counted(procs):
    slow = ("--tokens-per-s", "20", "--reply-tokens", "64")  # max_tokens 40: streams of ~2 s
    healthy = procs.standin("healthy", "--tokens-per-s", "200")
    termed, killed = procs.standin("termed", *slow), procs.standin("killed", *slow)
    prints = {s.name: s.fingerprint() for s in (healthy, termed, killed)}
    router = procs.router([healthy, termed, killed])
    with LoadGenerator(router, MODEL, clients=8, stream_share=1.0, max_tokens=40) as load:
        load.wait_for_progress(4)
        _wait_until(
            lambda: all(s.counter("vllm:num_requests_running") > 0 for s in (termed, killed)),
            10,
            "streams in flight on both workers",
        )
        termed.proc.send_signal(signal.SIGTERM)  # --shutdown-timeout 0: vLLM aborts what runs
        killed.proc.kill()
        assert termed.proc.wait(10) == 0 and killed.proc.wait(10) == -signal.SIGKILL
        load.wait_for_progress(8)
    report = load.stop()
    assert report.reasons.get("finish", 0) >= 1 and report.reasons.get("cut", 0) >= 1, report.summary()
    aborted = [f for f in report.failures if "finish_reason abort" in f]
    assert aborted and all(prints["termed"] in f for f in aborted)
    assert any(": cut: " in f for f in report.failures)
    assert not any(prints["healthy"] in f for f in report.failures)
    assert report.ok > 0


def test_it_stops_by_itself_after_max_s_and_waits_for_progress_no_more(procs):
    w = procs.standin("solo")
    load = LoadGenerator(w.url, MODEL, clients=2, max_s=1.0).start()
    load.wait_for_progress(2)
    time.sleep(1.5)
    settled = load.report().total
    time.sleep(0.5)
    assert load.report().total == settled  # nobody sends any more
    with pytest.raises(RuntimeError, match="load stopped"):
        load.wait_for_progress(1, timeout_s=5)
    report = load.stop()
    report.assert_no_failures()
    assert report.duration_s <= 1.1 and report.total == settled


def test_paced_clients_wait_between_requests_and_stop_at_once(procs):
    w = procs.standin("paced")
    load = LoadGenerator(w.url, MODEL, clients=1, pause_s=0.4, max_s=1.0).start()
    load.wait_for_progress(1)
    time.sleep(1.5)
    report = load.stop()
    report.assert_no_failures()
    assert 1 <= report.total <= 3, report.summary()  # one request, then 0.4 s of quiet, within 1 s
    slow = LoadGenerator(w.url, MODEL, clients=2, pause_s=60).start()
    slow.wait_for_progress(2)
    started = time.monotonic()
    assert slow.stop().total == 2 and time.monotonic() - started < 5  # stop() does not sit out the pause
