"""Steady load on a vLLM-shaped endpoint (vllm-router or one server), so lab tests can prove zero failed requests.

    with LoadGenerator("http://127.0.0.1:30000", "lab/tiny-llama") as load:
        load.wait_for_progress(16)          # load is flowing
        ...                                 # drain, upgrade, remove a worker
    load.stop().assert_no_failures()

Each client thread loops over chat and plain completions, streaming and not, and judges every answer strictly.
A request fails on a connection error or timeout, a status other than 200, invalid JSON, an ``error`` object
in the body or the stream, a stream that ends without ``data: [DONE]``, or a last ``finish_reason`` other than
stop or length (abort and error included). Threads are daemons and stop by themselves after ``max_s``.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

GOOD_FINISH = ("stop", "length")
KINDS = ("chat", "chat+stream", "completions", "completions+stream")
LAB_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
EXCERPT_CHARS = 200
KEEP_FAILURES = 20  # descriptions kept in a report; every failure is still counted by reason
STOP_GRACE_S = 5.0  # beyond timeout_s, how long stop() waits for a client to finish its request

Verdict = tuple[str, str] | None  # (reason, detail) of a failed request; None when it is fine


def check_lab_url(url: str) -> str:
    """``url`` without its trailing slash; ValueError unless it is http:// to loopback or a private lab address."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "http" or not host:
        raise ValueError(f"load goes to a plain http:// URL with a host, not {url!r}")
    if host == "localhost":
        return url.rstrip("/")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"load goes to loopback or lab IP addresses only, not to the name {host!r}") from None
    if not (ip.is_loopback or any(ip in net for net in LAB_NETWORKS)):
        raise ValueError(f"load goes to loopback or lab addresses only, not {ip}")
    return url.rstrip("/")


@dataclass(frozen=True)
class Failure:
    at_s: float  # seconds after start() when the request ended
    kind: str  # one of KINDS
    reason: str  # connection | timeout | status | json | error | finish | cut
    detail: str
    served_by: str | None = None  # the answer's system_fingerprint (vLLM version and model), when one came
    request_id: str | None = None  # the router's x-request-id header

    def describe(self) -> str:
        extra = [
            f"served by {self.served_by}" if self.served_by else "",
            f"request {self.request_id}" if self.request_id else "",
        ]
        where = ", ".join(x for x in extra if x)
        return f"{self.at_s:.2f}s {self.kind}: {self.reason}: {self.detail}" + (f" ({where})" if where else "")


@dataclass(frozen=True)
class LoadReport:
    total: int
    ok: int
    failed: int
    failures: tuple[str, ...]  # descriptions of the first KEEP_FAILURES failures
    reasons: dict[str, int]  # every failure, counted by reason
    by_kind: dict[str, int]  # completed requests per kind (chat, chat+stream, ...)
    per_second: tuple[tuple[int, int], ...]  # (ok, failed) completed in each second after start()
    duration_s: float

    def summary(self) -> str:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.reasons.items()))
        return f"{self.total} requests in {self.duration_s:.1f}s: {self.ok} ok, {self.failed} failed" + (
            f" ({reasons})" if reasons else ""
        )

    def assert_no_failures(self) -> None:
        """AssertionError naming the failures; also when no request completed (that would prove nothing)."""
        if self.total == 0:
            raise AssertionError("no request completed: the load never flowed")
        if self.failed:
            raise AssertionError(self.summary() + "; first ones:\n  " + "\n  ".join(self.failures))


# -- judging answers (pure) ---------------------------------------------------------------------------------------


def excerpt(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[:EXCERPT_CHARS] + "..."


def finish_reason(doc: dict) -> str | None:
    """The first finish_reason set in a response or chunk's choices."""
    choices = doc.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        if isinstance(choice, dict) and choice.get("finish_reason"):
            return str(choice["finish_reason"])
    return None


def judge_body(status: int, text: str) -> tuple[Verdict, str | None]:
    """A non-streaming answer: (verdict, system_fingerprint)."""
    if status != 200:
        return ("status", f"HTTP {status}: {excerpt(text)}"), None
    try:
        doc = json.loads(text)
    except ValueError:
        return ("json", f"invalid JSON: {excerpt(text)}"), None
    if not isinstance(doc, dict):
        return ("json", f"not a JSON object: {excerpt(text)}"), None
    fingerprint = doc.get("system_fingerprint")
    if "error" in doc:
        return ("error", f"error object: {excerpt(json.dumps(doc['error']))}"), fingerprint
    if not isinstance(doc.get("choices"), list) or not doc["choices"]:
        return ("json", f"no choices: {excerpt(text)}"), fingerprint
    reason = finish_reason(doc)
    if reason not in GOOD_FINISH:
        return ("finish", f"finish_reason {reason}"), fingerprint
    return None, fingerprint


def sse_data(line: bytes) -> bytes | None:
    """The payload of an SSE ``data:`` line; None for other lines (comments, event names, blanks)."""
    if not line.startswith(b"data:"):
        return None
    return line[5:].strip()


def judge_stream(lines: Iterable[bytes], deadline: float = float("inf")) -> tuple[Verdict, str | None]:
    """A streamed answer, line by line: (verdict, system_fingerprint). Stops reading at the first fault."""
    last, done, fingerprint, count = None, False, None, 0
    for line in lines:
        if time.monotonic() > deadline:
            return ("timeout", f"stream still open at the deadline after {count} events"), fingerprint
        data = sse_data(line)
        if data is None:
            continue
        if done:
            return ("json", f"data after [DONE]: {excerpt(data)}"), fingerprint
        count += 1
        if data == b"[DONE]":
            done = True
            continue
        try:
            doc = json.loads(data)
        except ValueError:
            return ("json", f"invalid JSON chunk: {excerpt(data)}"), fingerprint
        if not isinstance(doc, dict):
            return ("json", f"chunk is not a JSON object: {excerpt(data)}"), fingerprint
        if "error" in doc:
            return ("error", f"error event: {excerpt(json.dumps(doc['error']))}"), fingerprint
        fingerprint = doc.get("system_fingerprint") or fingerprint
        last = finish_reason(doc) or last
    if not done:
        return (
            "cut",
            f"stream ended without data: [DONE] after {count} events (last finish_reason {last})",
        ), fingerprint
    if last not in GOOD_FINISH:
        return ("finish", f"stream finished with finish_reason {last}"), fingerprint
    return None, fingerprint


def plan_request(n: int, stream_share: float) -> tuple[str, bool]:
    """The n-th request of a client: (path, stream). Chat and completions alternate in pairs; streaming is
    spread evenly so that exactly ``stream_share`` of every run of requests streams."""
    path = "/v1/chat/completions" if (n // 2) % 2 == 0 else "/v1/completions"
    stream = int((n + 1) * stream_share) > int(n * stream_share)
    return path, stream


def kind_of(path: str, stream: bool) -> str:
    return ("chat" if "chat" in path else "completions") + ("+stream" if stream else "")


# -- counting ------------------------------------------------------------------------------------------------------


class _Tally:
    """Counts shared by the client threads; notifies waiters on every completed request."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.started = time.monotonic()
        self.ended: float | None = None
        self.total = self.ok = 0
        self.failures: list[Failure] = []
        self.reasons: Counter[str] = Counter()
        self.by_kind: Counter[str] = Counter()
        self.seconds: list[list[int]] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def record(self, kind: str, failure: Failure | None) -> None:
        with self.cond:
            second = int(self.elapsed())
            while len(self.seconds) <= second:
                self.seconds.append([0, 0])
            self.total += 1
            self.by_kind[kind] += 1
            self.seconds[second][failure is not None] += 1
            if failure is None:
                self.ok += 1
            else:
                self.reasons[failure.reason] += 1
                if len(self.failures) < KEEP_FAILURES:
                    self.failures.append(failure)
            self.cond.notify_all()

    def report(self) -> LoadReport:
        with self.cond:
            end = self.ended if self.ended is not None else time.monotonic()
            return LoadReport(
                total=self.total,
                ok=self.ok,
                failed=self.total - self.ok,
                failures=tuple(f.describe() for f in self.failures),
                reasons=dict(self.reasons),
                by_kind=dict(self.by_kind),
                per_second=tuple((a, b) for a, b in self.seconds),
                duration_s=round(end - self.started, 3),
            )


# -- the generator -------------------------------------------------------------------------------------------------


class LoadGenerator:
    """``clients`` threads sending requests through ``base_url`` until stop(), or ``max_s`` after start().

    A request taking longer than ``timeout_s`` (to connect, between two reads, or for a whole stream) fails.
    Each client waits ``pause_s`` after each of its requests (0: back to back, the server never idles).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        clients: int = 8,
        stream_share: float = 0.5,
        max_tokens: int = 16,
        timeout_s: float = 30,
        max_s: float = 600,
        pause_s: float = 0,
    ) -> None:
        if clients < 1 or max_tokens < 1 or timeout_s <= 0 or max_s <= 0 or pause_s < 0 or not 0 <= stream_share <= 1:
            raise ValueError(
                "need clients >= 1, max_tokens >= 1, timeout_s > 0, max_s > 0, pause_s >= 0, 0 <= stream_share <= 1"
            )
        self.base_url, self.model = check_lab_url(base_url), model
        self.clients, self.stream_share, self.max_tokens = clients, stream_share, max_tokens
        self.timeout_s, self.max_s, self.pause_s = timeout_s, max_s, pause_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._tally = _Tally()
        self._deadline = float("inf")
        self._final: LoadReport | None = None

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LoadGenerator:
        if self._threads:
            raise RuntimeError("this LoadGenerator was already started")
        self._tally = _Tally()
        self._deadline = self._tally.started + self.max_s
        self._threads = [
            threading.Thread(target=self._client, args=(i,), name=f"load-client-{i}", daemon=True)
            for i in range(self.clients)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> LoadReport:
        """Let every client finish the request it is in, then the final report (the same on later calls)."""
        if self._final is not None:
            return self._final
        self._stop.set()
        until = time.monotonic() + self.timeout_s + STOP_GRACE_S
        for thread in self._threads:
            thread.join(max(0.0, until - time.monotonic()))
        for thread in self._threads:
            if thread.is_alive():  # its request outlived its own deadline: count it, do not wait more
                self._tally.record(
                    "unknown",
                    Failure(
                        round(self._tally.elapsed(), 2),
                        "unknown",
                        "timeout",
                        f"{thread.name} still in a request when stopped",
                    ),
                )
        with self._tally.cond:
            self._tally.ended = min(time.monotonic(), self._deadline)
        self._final = self._tally.report()
        return self._final

    def report(self) -> LoadReport:
        """The counts so far (the final report once stopped)."""
        return self._final or self._tally.report()

    def wait_for_progress(self, n: int, timeout_s: float | None = None) -> int:
        """Block until ``n`` more requests completed (ok or not); the total then. TimeoutError if they do not
        within ``timeout_s`` (default: the request timeout plus 10 s), RuntimeError once the load has stopped."""
        wait = self.timeout_s + 10 if timeout_s is None else timeout_s
        give_up = time.monotonic() + wait
        with self._tally.cond:
            target = self._tally.total + n
            # polled: nobody notifies when max_s passes or the last client ends
            while self._tally.total < target and not self._halted() and time.monotonic() < give_up:
                self._tally.cond.wait(0.2)
            total = self._tally.total
        if total >= target:
            return total
        if self._halted():
            raise RuntimeError(f"load stopped before {n} more requests completed: {self.report().summary()}")
        raise TimeoutError(f"fewer than {n} requests completed in {wait:.0f}s: {self.report().summary()}")

    def _halted(self) -> bool:
        return self._stop.is_set() or time.monotonic() >= self._deadline or not any(t.is_alive() for t in self._threads)

    def _client(self, index: int) -> None:
        session, n = requests.Session(), index  # starting at its index puts each client in another phase
        try:
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                path, stream = plan_request(n, self.stream_share)
                failure = self._send(session, path, stream)
                self._tally.record(kind_of(path, stream), failure)
                if failure is not None:  # a broken connection must not fail the next request too
                    session.close()
                    session = requests.Session()
                n += 1
                if self.pause_s:
                    self._stop.wait(min(self.pause_s, max(0.0, self._deadline - time.monotonic())))
        finally:
            session.close()

    def _body(self, path: str, stream: bool) -> dict:
        body = {"model": self.model, "max_tokens": self.max_tokens, "stream": stream}
        if "chat" in path:
            body["messages"] = [{"role": "user", "content": "Say something about the fleet."}]
        else:
            body["prompt"] = "The fleet"
        return body

    def _send(self, session: requests.Session, path: str, stream: bool) -> Failure | None:
        deadline = time.monotonic() + self.timeout_s
        request_id, verdict, fingerprint = None, None, None
        try:
            with session.post(
                self.base_url + path, json=self._body(path, stream), stream=stream, timeout=self.timeout_s
            ) as resp:
                request_id = resp.headers.get("x-request-id")
                if stream and resp.status_code == 200:
                    verdict, fingerprint = judge_stream(resp.iter_lines(), deadline)
                else:
                    verdict, fingerprint = judge_body(resp.status_code, resp.text)
        except requests.RequestException as e:
            verdict = _exception_verdict(e)
        if verdict is None:
            return None
        return Failure(
            round(self._tally.elapsed(), 2), kind_of(path, stream), verdict[0], verdict[1], fingerprint, request_id
        )


def _exception_verdict(e: requests.RequestException) -> tuple[str, str]:
    text = excerpt(f"{type(e).__name__}: {e}")
    if isinstance(e, requests.Timeout) or "timed out" in str(e).lower():
        return "timeout", text
    if isinstance(e, requests.exceptions.ChunkedEncodingError):  # the body broke off after the status line
        return "cut", text
    return "connection", text


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.support.load --url URL --model M``: load until SIGINT or --seconds; report as JSON."""
    import argparse
    import json
    import signal
    import threading

    p = argparse.ArgumentParser(prog="python -m tests.support.load", description=main.__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=600)
    p.add_argument("--report", help="write the report here as JSON (else stdout)")
    args = p.parse_args(argv)
    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    load = LoadGenerator(args.url, args.model, clients=args.clients, max_s=args.seconds).start()
    done.wait(args.seconds)
    report = load.stop()
    doc = json.dumps(
        {
            "total": report.total,
            "ok": report.ok,
            "failed": report.failed,
            "failures": list(report.failures),
            "reasons": dict(report.reasons),
        }
    )
    if args.report:
        with open(args.report, "w") as f:
            f.write(doc + "\n")
    else:
        print(doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
