"""The stand-in's pretend engine: a queue with vLLM's slots, token timing, finish reasons, failures and aborts.

Every request is counted exactly once in vllm:request_success_total, under one lock, however it ends.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

try:
    from . import metrics as m
except ImportError:  # run as a script: server.py's folder is on sys.path
    import metrics as m  # type: ignore[no-redef]

BEHAVIOURS = ("healthy", "slow", "failing", "crash", "never-ready")
SLOW_FACTOR = 5.0
FAILING_RATE = 0.3
FAIL_MODES = ("mixed", "500", "error")
WORDS = (
    "the fleet serves tokens from every host while the router spreads requests and drains the sick "
    "ones without dropping a stream"
).split()


@dataclass(frozen=True)
class Settings:
    behaviour: str = "healthy"
    ttft_s: float = 0.02
    token_s: float = 0.01  # time between two tokens of one request
    fail_rate: float = 0.0
    fail_mode: str = "mixed"
    reply_tokens: int = 16  # a reply's natural length (then "stop") unless ignore_eos
    max_num_seqs: int = 256
    kv_cache_tokens: int = 65536
    seed: int | None = None

    @property
    def first_token_s(self) -> float:
        return self.ttft_s * (SLOW_FACTOR if self.behaviour == "slow" else 1.0)


class Closed(Exception):
    """The engine is shutting down and takes no new request."""


class Rejected(Exception):
    """The request fails before it reaches the engine (answered HTTP 500, not counted by the engine)."""


@dataclass
class Job:
    prompt_tokens: int
    max_tokens: int
    ignore_eos: bool
    fails: bool = False  # finishes with reason "error" halfway
    arrived: float = 0.0
    state: str = "new"  # new | waiting | running | done
    generated: int = 0
    finish_reason: str | None = None


class Engine:
    def __init__(self, settings: Settings, metrics: m.Metrics) -> None:
        self.settings = settings
        self._metrics = metrics
        self._cond = threading.Condition()
        self._running = self._waiting = self._kv_tokens = 0
        self._accepting = True
        self._abort = threading.Event()
        self._rng = random.Random(settings.seed)

    def submit(self, prompt_tokens: int, max_tokens: int, ignore_eos: bool) -> Job:
        """A new job; raises Closed while shutting down and Rejected for a drawn HTTP-500 failure."""
        with self._cond:
            if not self._accepting:
                raise Closed("cannot schedule new futures after shutdown")
            failure = self._draw_failure()
        if failure == "500":
            raise Rejected("Internal server error")
        return Job(prompt_tokens, max_tokens, ignore_eos, fails=failure == "error", arrived=time.monotonic())

    def run(self, job: Job) -> Iterator[tuple[str, bool]]:
        """Yield (token text, is last); the job is finished and counted however iteration ends.

        Closing the iterator early (a client gone) finishes the job as "abort", as vLLM does.
        """
        try:
            yield from self._generate(job)
        finally:
            self._finish(job)

    def close(self) -> None:
        """Take no new job (vLLM's drain: in-flight ones go on)."""
        with self._cond:
            self._accepting = False

    def abort_all(self) -> None:
        """End every waiting and running job now with reason "abort"."""
        self.close()
        self._abort.set()
        with self._cond:
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job waits or runs; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._running + self._waiting == 0, timeout)

    def in_flight(self) -> tuple[int, int]:
        with self._cond:
            return self._running, self._waiting

    def _draw_failure(self) -> str | None:
        rate = self.settings.fail_rate
        if rate <= 0 or self._rng.random() >= rate:
            return None
        mode = self.settings.fail_mode
        return self._rng.choice(("500", "error")) if mode == "mixed" else mode

    def _generate(self, job: Job) -> Iterator[tuple[str, bool]]:
        if not self._start(job) or self._abort.wait(self.settings.first_token_s):
            return
        count, reason = self._plan(job)
        last_at = time.monotonic()
        self._metrics.observe(m.TTFT, last_at - job.arrived)
        for i in range(count):
            if i and self._abort.wait(self.settings.token_s):
                return
            now = time.monotonic()
            if i:
                self._metrics.observe(m.ITL, now - last_at)
            last_at = now
            self._add_token(job)
            if i == count - 1:
                job.finish_reason = reason
            yield f" {WORDS[(job.prompt_tokens + i) % len(WORDS)]}", i == count - 1

    def _plan(self, job: Job) -> tuple[int, str]:
        if job.fails:
            return max(1, min(job.max_tokens, self.settings.reply_tokens) // 2), "error"
        if not job.ignore_eos and self.settings.reply_tokens <= job.max_tokens:
            return self.settings.reply_tokens, "stop"
        return job.max_tokens, "length"

    def _start(self, job: Job) -> bool:
        """Queue the job until a slot is free (vLLM's max_num_seqs); False if aborted meanwhile."""
        with self._cond:
            job.state = "waiting"
            self._waiting += 1
            self._publish()
            self._cond.wait_for(lambda: self._abort.is_set() or self._running < self.settings.max_num_seqs)
            if self._abort.is_set():
                return False
            self._waiting -= 1
            self._running += 1
            self._kv_tokens += job.prompt_tokens
            job.state = "running"
            self._publish()
            return True

    def _add_token(self, job: Job) -> None:
        with self._cond:
            job.generated += 1
            self._kv_tokens += 1
            self._publish()

    def _finish(self, job: Job) -> None:
        with self._cond:
            if job.state == "done":
                return
            if job.state == "waiting":
                self._waiting -= 1
            elif job.state == "running":
                self._running -= 1
                self._kv_tokens -= job.prompt_tokens + job.generated
            reason = job.finish_reason or "abort"
            job.finish_reason, started, job.state = reason, job.state == "running", "done"
            self._count(job, reason, started)
            self._publish()
            self._cond.notify_all()

    def _count(self, job: Job, reason: str, started: bool) -> None:
        metrics = self._metrics
        metrics.inc(m.SUCCESS, labels=(reason,))
        if started:
            metrics.inc(m.PROMPT_TOKENS, job.prompt_tokens)
        metrics.inc(m.GENERATION_TOKENS, job.generated)
        metrics.observe(m.E2E, time.monotonic() - job.arrived)

    def _publish(self) -> None:
        """Gauges from the counts (caller holds the lock)."""
        self._metrics.set(m.RUNNING, self._running)
        self._metrics.set(m.WAITING, self._waiting)
        self._metrics.set(m.KV_CACHE, min(1.0, self._kv_tokens / max(1, self.settings.kv_cache_tokens)))
