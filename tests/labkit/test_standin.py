"""The vLLM stand-in as a real process on loopback: endpoints and JSON shapes, streams, metrics, behaviours, SIGTERM.

The stand-in runs under ``python3.11 -I -S`` (no site-packages), as in the lab image, so a non-stdlib import fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

SERVER = Path(__file__).resolve().parents[2] / "scripts" / "labkit" / "standin" / "server.py"
PYTHON = shutil.which("python3.11", path="/usr/bin") or sys.executable
MODEL = "lab-model"
FAST = ["--ttft-ms", "5", "--tokens-per-s", "1000"]
TTFT_BOUNDS = [
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
]
ITL_BOUNDS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0]
E2E_BOUNDS = [
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Standin:
    """One stand-in process on a free loopback port."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, model: str = MODEL) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [
            PYTHON,
            "-I",
            "-S",
            str(SERVER),
            model,
            "--served-model-name",
            MODEL,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--disable-uvicorn-access-log",
            *args,
        ]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
        )

    def wait_ready(self, timeout: float = 10.0) -> Standin:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.communicate()
            if self.health() == 200:
                return self
            time.sleep(0.05)
        raise AssertionError("stand-in not ready")

    def health(self) -> int | str:
        try:
            return requests.get(f"{self.url}/health", timeout=2).status_code
        except requests.ConnectionError:
            return "refused"

    def post(self, path: str, body: dict, **kw) -> requests.Response:
        return requests.post(f"{self.url}{path}", json={"model": MODEL, **body}, timeout=30, **kw)

    def metrics(self) -> dict[str, dict]:
        text = requests.get(f"{self.url}/metrics", timeout=5).text
        return {f.name: {"type": f.type, "samples": f.samples} for f in text_string_to_metric_families(text)}

    def value(self, family: str, sample: str | None = None, **labels: str) -> float:
        fam = self.metrics()[family]
        return sum(
            s.value
            for s in fam["samples"]
            if s.name == (sample or family) and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=10)


@pytest.fixture
def standin():
    started: list[Standin] = []

    def start(*args: str, ready: bool = True, **kw) -> Standin:
        s = Standin(*args, **kw)
        started.append(s)
        return s.wait_ready() if ready else s

    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def shared():
    s = Standin(*FAST).wait_ready()
    yield s
    s.stop()


def sse(response: requests.Response) -> list:
    """The events of an SSE body: JSON objects, and the string "[DONE]"."""
    events = []
    for line in response.iter_lines():
        if line.startswith(b"data: "):
            data = line[len(b"data: ") :]
            events.append("[DONE]" if data == b"[DONE]" else json.loads(data))
    return events


# --- endpoints and shapes --------------------------------------------------------------------------------------


def test_health_version_and_models(shared):
    r = requests.get(f"{shared.url}/health", timeout=5)
    assert (r.status_code, r.content, r.headers["server"]) == (200, b"", "uvicorn")
    assert requests.get(f"{shared.url}/ping", timeout=5).status_code == 200
    assert requests.get(f"{shared.url}/version", timeout=5).json() == {"version": "0.32.0"}
    models = requests.get(f"{shared.url}/v1/models", timeout=5).json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == [MODEL]
    card = models["data"][0]
    assert set(card) == {"id", "object", "created", "owned_by", "root", "parent", "max_model_len", "permission"}
    assert (card["owned_by"], card["root"], card["object"]) == ("vllm", MODEL, "model")


def test_unknown_paths_and_methods_answer_like_fastapi(shared):
    r = requests.get(f"{shared.url}/nothing", timeout=5)
    assert (r.status_code, r.json()) == (404, {"detail": "Not Found"})
    r = requests.get(f"{shared.url}/v1/completions", timeout=5)
    assert (r.status_code, r.json()) == (405, {"detail": "Method Not Allowed"})


def test_completion_honours_max_tokens_and_ignore_eos(shared):
    r = shared.post("/v1/completions", {"prompt": "one two three", "max_tokens": 7, "ignore_eos": True})
    body = r.json()
    assert r.status_code == 200 and body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    choice = body["choices"][0]
    assert choice["finish_reason"] == "length" and len(choice["text"].split()) == 7
    assert body["usage"]["prompt_tokens"] == 3 and body["usage"]["completion_tokens"] == 7
    assert body["usage"]["total_tokens"] == 10
    assert body["system_fingerprint"].startswith("vllm-0.32.0-")
    default = shared.post("/v1/completions", {"prompt": "x", "ignore_eos": True}).json()
    assert default["usage"]["completion_tokens"] == 16  # vLLM's completions default


def test_reply_stops_on_its_own_when_max_tokens_allows(standin):
    s = standin(*FAST, "--reply-tokens", "4")
    body = s.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}).json()
    assert body["choices"][0]["finish_reason"] == "stop" and body["usage"]["completion_tokens"] == 4
    message = body["choices"][0]["message"]
    assert set(message) == {"role", "content", "refusal", "annotations", "audio", "function_call", "reasoning"}
    assert message["role"] == "assistant" and len(message["content"].split()) == 4


def test_chat_completion_shape(shared):
    body = shared.post(
        "/v1/chat/completions", {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 3}
    ).json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert set(body) == {
        "id",
        "object",
        "created",
        "model",
        "choices",
        "service_tier",
        "system_fingerprint",
        "usage",
        "prompt_logprobs",
        "prompt_token_ids",
        "prompt_text",
        "kv_transfer_params",
        "ec_transfer_params",
        "metrics",
    }
    assert body["choices"][0]["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize("chat", [False, True])
@pytest.mark.parametrize("include_usage", [False, True])
def test_stream_chunks(shared, chat, include_usage):
    path, ask = (
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "a b"}]})
        if chat
        else ("/v1/completions", {"prompt": "a b"})
    )
    body = {**ask, "max_tokens": 5, "ignore_eos": True, "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    r = shared.post(path, body, stream=True)
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse(r)
    assert events[-1] == "[DONE]"
    chunks = [e for e in events[:-1] if e["choices"]]
    if chat:
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        chunks = chunks[1:]
    assert len(chunks) == 5 and {c["object"] for c in chunks} == {
        "chat.completion.chunk" if chat else "text_completion"
    }
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * 4 + ["length"]
    assert len({c["id"] for c in events[:-1]}) == 1
    usage = [e for e in events[:-1] if not e["choices"]]
    if include_usage:
        assert len(usage) == 1 and usage[0]["usage"]["completion_tokens"] == 5
        assert set(usage[0]["usage"]) == {"prompt_tokens", "total_tokens", "completion_tokens"}
        assert "system_fingerprint" not in chunks[-1]
    else:
        assert usage == [] and "system_fingerprint" in chunks[-1]


@pytest.mark.parametrize(
    "body,status,kind,param",
    [
        ({"model": "other", "prompt": "x"}, 404, "NotFoundError", "model"),
        ({"prompt": ""}, 400, "BadRequestError", "prompt"),
        ({"prompt": "x", "max_tokens": 0}, 400, "BadRequestError", "max_tokens"),
        ({"prompt": "x", "max_tokens": 100000}, 400, "BadRequestError", "max_tokens"),
    ],
)
def test_bad_requests_use_vllms_error_shape(shared, body, status, kind, param):
    r = shared.post("/v1/completions", body)
    error = r.json()["error"]
    assert (r.status_code, error["type"], error["param"], error["code"]) == (status, kind, param, status)
    assert set(r.json()) == {"error"} and set(error) == {"message", "type", "param", "code"}


def test_invalid_json_and_missing_messages(shared):
    r = requests.post(
        f"{shared.url}/v1/completions", data=b"not json", timeout=5, headers={"content-type": "application/json"}
    )
    assert (r.status_code, r.json()["error"]["type"]) == (400, "Bad Request")
    r = shared.post("/v1/chat/completions", {})
    assert (r.status_code, r.json()["error"]["param"]) == (400, "body.messages")


def test_vllm_command_line_forms_are_accepted(standin):
    s = standin(
        *FAST,
        "--tensor-parallel-size",
        "2",
        "--gpu-memory-utilization",
        "0.9",
        "--enforce-eager",
        "--version-string",
        "0.32.1",
    )
    assert requests.get(f"{s.url}/version", timeout=5).json() == {"version": "0.32.1"}
    env = standin(*FAST, env={"FLEETCTL_STANDIN_VERSION": "0.33.0"})
    assert requests.get(f"{env.url}/version", timeout=5).json() == {"version": "0.33.0"}


# --- metrics ---------------------------------------------------------------------------------------------------


def test_metrics_names_types_labels_and_buckets(shared):
    fams = shared.metrics()
    kinds = {name: fams[name]["type"] for name in fams}
    assert {
        k: kinds[k] for k in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc")
    } == dict.fromkeys(("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"), "gauge")
    for counter in ("vllm:request_success", "vllm:prompt_tokens", "vllm:generation_tokens"):
        assert kinds[counter] == "counter"
    for hist in (
        "vllm:time_to_first_token_seconds",
        "vllm:inter_token_latency_seconds",
        "vllm:e2e_request_latency_seconds",
    ):
        assert kinds[hist] == "histogram"
    running = fams["vllm:num_requests_running"]["samples"][0]
    assert running.labels == {"model_name": MODEL, "engine": "0"}
    reasons = {
        s.labels["finished_reason"]
        for s in fams["vllm:request_success"]["samples"]
        if s.name == "vllm:request_success_total"
    }
    assert reasons == {"stop", "length", "abort", "error", "repetition"}
    for name, bounds in (
        ("vllm:time_to_first_token_seconds", TTFT_BOUNDS),
        ("vllm:inter_token_latency_seconds", ITL_BOUNDS),
        ("vllm:e2e_request_latency_seconds", E2E_BOUNDS),
    ):
        les = [s.labels["le"] for s in fams[name]["samples"] if s.name.endswith("_bucket")]
        assert les == [str(b) for b in bounds] + ["+Inf"]


def test_counters_are_exact_under_concurrency(standin):
    s = standin(*FAST)
    n, tokens = 24, 6
    results: list[dict] = []

    def one(i: int) -> None:
        path = "/v1/completions" if i % 2 else "/v1/chat/completions"
        ask = {"prompt": "w " * (i + 1)} if i % 2 else {"messages": [{"role": "user", "content": "w " * (i + 1)}]}
        results.append(s.post(path, {**ask, "max_tokens": tokens, "ignore_eos": True}).json())

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == n
    assert s.value("vllm:request_success", "vllm:request_success_total", finished_reason="length") == n
    assert s.value("vllm:request_success", "vllm:request_success_total") == n
    assert s.value("vllm:generation_tokens", "vllm:generation_tokens_total") == n * tokens
    assert s.value("vllm:prompt_tokens", "vllm:prompt_tokens_total") == sum(
        r["usage"]["prompt_tokens"] for r in results
    )
    assert s.value("vllm:e2e_request_latency_seconds", "vllm:e2e_request_latency_seconds_count") == n
    assert s.value("vllm:time_to_first_token_seconds", "vllm:time_to_first_token_seconds_count") == n
    assert s.value("vllm:inter_token_latency_seconds", "vllm:inter_token_latency_seconds_count") == n * (tokens - 1)
    assert s.value("http_requests", "http_requests_total", status="2xx") == n
    assert s.value("vllm:num_requests_running") == 0 and s.value("vllm:kv_cache_usage_perc") == 0


def test_running_waiting_and_kv_gauges_follow_the_load(standin):
    s = standin("--ttft-ms", "5", "--tokens-per-s", "20", "--max-num-seqs", "2")
    done: list[int] = []
    threads = [
        threading.Thread(
            target=lambda: done.append(
                s.post("/v1/completions", {"prompt": "a b c", "max_tokens": 30, "ignore_eos": True}).status_code
            )
        )
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    time.sleep(0.5)
    assert (s.value("vllm:num_requests_running"), s.value("vllm:num_requests_waiting")) == (2, 2)
    assert 0 < s.value("vllm:kv_cache_usage_perc") < 1
    for t in threads:
        t.join()
    assert done == [200] * 4
    assert (s.value("vllm:num_requests_running"), s.value("vllm:num_requests_waiting")) == (0, 0)


def test_client_that_goes_away_counts_as_abort(standin):
    s = standin("--ttft-ms", "5", "--tokens-per-s", "50")
    with s.post(
        "/v1/completions", {"prompt": "x", "max_tokens": 200, "ignore_eos": True, "stream": True}, stream=True
    ) as r:
        next(r.iter_lines())
    deadline = time.monotonic() + 5
    while s.value("vllm:request_success", "vllm:request_success_total", finished_reason="abort") < 1:
        assert time.monotonic() < deadline, "abort not counted"
        time.sleep(0.1)
    assert s.value("vllm:num_requests_running") == 0


# --- behaviours ------------------------------------------------------------------------------------------------


def test_loading_refuses_connections_then_turns_healthy(standin):
    s = standin(*FAST, "--startup-s", "1.5", ready=False)
    time.sleep(0.5)
    assert s.health() == "refused" and s.proc.poll() is None
    s.wait_ready(5)


def test_never_ready_runs_but_never_answers_and_stops_on_sigterm(standin):
    s = standin(env={"FLEETCTL_STANDIN_BEHAVIOUR": "never-ready"}, ready=False)
    for _ in range(4):
        time.sleep(0.5)
        assert s.health() == "refused" and s.proc.poll() is None
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(5) == 0


def test_crash_exits_non_zero_before_ready(standin):
    s = standin("--behaviour", "crash", ready=False)
    start = time.monotonic()
    code = s.proc.wait(10)
    assert code != 0 and 0.8 <= time.monotonic() - start < 5
    assert "Engine core initialization failed" in s.proc.stderr.read()


def first_token_s(s: Standin) -> float:
    start = time.monotonic()
    with s.post("/v1/completions", {"prompt": "x", "max_tokens": 2, "stream": True}, stream=True) as r:
        next(line for line in r.iter_lines() if line)
        return time.monotonic() - start


def test_slow_has_several_times_the_time_to_first_token(standin):
    healthy = standin("--ttft-ms", "100")
    slow = standin("--ttft-ms", "100", env={"FLEETCTL_STANDIN_BEHAVIOUR": "slow"})
    fast_s, slow_s = first_token_s(healthy), first_token_s(slow)
    assert fast_s < 0.3 and slow_s >= 0.5 and slow_s > 3 * fast_s
    assert slow.value("vllm:time_to_first_token_seconds", "vllm:time_to_first_token_seconds_sum") >= 0.5


def test_failing_answers_500_or_finishes_with_error_and_counts_them(standin):
    s = standin(*FAST, "--behaviour", "failing", "--seed", "7")
    statuses, bodies = [], []
    for _ in range(60):
        r = s.post("/v1/completions", {"prompt": "x", "max_tokens": 4})
        statuses.append(r.status_code)
        bodies.append(r.json())
    failed = statuses.count(500)
    assert set(statuses) == {200, 500} and 8 <= failed <= 32  # 30 % of 60, loosely
    assert all(b["error"]["type"] == "InternalServerError" for b in bodies if "error" in b)
    errors = s.value("vllm:request_success", "vllm:request_success_total", finished_reason="error")
    assert 0 < errors < failed  # the rest never reached the engine
    assert s.value("vllm:request_success", "vllm:request_success_total") == statuses.count(200) + errors
    assert s.value("http_requests", "http_requests_total", status="5xx") == failed


def test_engine_error_in_a_stream_is_an_error_event(standin):
    s = standin(*FAST, "--fail-rate", "1", "--fail-mode", "error")
    events = sse(s.post("/v1/completions", {"prompt": "x", "max_tokens": 8, "stream": True}, stream=True))
    assert events[-1] == "[DONE]" and events[-2]["error"]["code"] == 500
    assert all(e["choices"][0]["finish_reason"] is None for e in events[:-2])
    assert s.value("vllm:request_success", "vllm:request_success_total", finished_reason="error") == 1


# --- SIGTERM ---------------------------------------------------------------------------------------------------


def stream_in_background(s: Standin, max_tokens: int) -> tuple[threading.Thread, list]:
    out: list = []

    def run() -> None:
        with s.post(
            "/v1/chat/completions",
            {
                "messages": [{"role": "user", "content": "x"}],
                "ignore_eos": True,
                "max_tokens": max_tokens,
                "stream": True,
                "stream_options": {"include_usage": True},
            },
            stream=True,
        ) as r:
            out.extend(sse(r))

    t = threading.Thread(target=run)
    t.start()
    return t, out


def test_sigterm_default_aborts_in_flight_streams_and_exits(standin):
    s = standin("--ttft-ms", "5", "--tokens-per-s", "50")
    t, events = stream_in_background(s, 500)
    time.sleep(1.0)
    start = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    t.join(10)
    assert s.proc.wait(10) == 0 and time.monotonic() - start < 3
    assert events[-1] == "[DONE]"
    reasons = [e["choices"][0]["finish_reason"] for e in events[:-1] if e["choices"]]
    assert reasons[-1] == "abort" and reasons.count("abort") == 1 and 10 < len(reasons) < 200
    assert events[-2]["usage"]["completion_tokens"] < 500
    assert s.health() == "refused"


def test_sigterm_with_timeout_lets_in_flight_finish_and_refuses_new(standin):
    s = standin("--ttft-ms", "5", "--tokens-per-s", "50", "--shutdown-timeout", "20")
    t, events = stream_in_background(s, 100)  # about 2 s
    time.sleep(0.5)
    start = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    r = s.post("/v1/completions", {"prompt": "x", "max_tokens": 2})
    assert r.status_code == 500 and "after shutdown" in r.json()["error"]["message"]
    assert s.health() == 200  # vLLM keeps answering /health while draining
    t.join(10)
    assert s.proc.wait(10) == 0 and time.monotonic() - start < 5
    reasons = [e["choices"][0]["finish_reason"] for e in events[:-1] if e["choices"]]
    assert reasons[-1] == "length" and events[-2]["usage"]["completion_tokens"] == 100


def test_sigterm_drain_gives_up_after_the_timeout(standin):
    s = standin("--ttft-ms", "5", "--tokens-per-s", "50", "--shutdown-timeout", "1")
    t, events = stream_in_background(s, 500)
    time.sleep(0.5)
    start = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    t.join(10)
    assert s.proc.wait(10) == 0 and 1.0 <= time.monotonic() - start < 4
    assert [e["choices"][0]["finish_reason"] for e in events[:-1] if e["choices"]][-1] == "abort"


# --- --api-key, as vLLM 0.32's AuthenticationMiddleware ------------------------------------------------------


@pytest.mark.parametrize("how", ["flag", "env"])
def test_api_key_guards_v1_and_leaves_health_and_metrics_open(standin, how):
    s = standin(*FAST, "--api-key", "wk-1") if how == "flag" else standin(*FAST, env={"VLLM_API_KEY": "wk-1"})
    for path in ("/v1/models", "/v1/nothing"):
        r = requests.get(f"{s.url}{path}", timeout=5)
        assert (r.status_code, r.json()) == (401, {"error": "Unauthorized"})
    r = s.post("/v1/completions", {"prompt": "x", "max_tokens": 2}, headers={"Authorization": "Bearer other"})
    assert (r.status_code, r.json()) == (401, {"error": "Unauthorized"})
    r = s.post("/v1/completions", {"prompt": "x", "max_tokens": 2}, headers={"Authorization": "bearer wk-1"})
    assert r.status_code == 200  # the scheme is case-insensitive, as in vLLM
    assert requests.get(f"{s.url}/v1/models", headers={"Authorization": "Bearer wk-1"}, timeout=5).status_code == 200
    for path in ("/health", "/metrics", "/version"):
        assert requests.get(f"{s.url}{path}", timeout=5).status_code == 200


def test_the_flag_wins_over_the_environment_and_several_keys_work(standin):
    s = standin(*FAST, "--api-key", "a", "b", env={"VLLM_API_KEY": "c"})
    answers = {
        k: requests.get(f"{s.url}/v1/models", headers={"Authorization": f"Bearer {k}"}, timeout=5).status_code
        for k in "abc"
    }
    assert answers == {"a": 200, "b": 200, "c": 401}
