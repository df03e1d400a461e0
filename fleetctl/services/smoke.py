"""Synthetic evidence: fleetctl's own requests, sent straight to hosts (never through the router) at a bounded
rate while a ring's bake has too few real requests, and counted per host.

The transport (``SmokeTransport``: send one request to one serving URL, answer the HTTP status) and the clock are
injected, so the fake fleet counts and answers these requests in tests; ``fleetctl.transport.smoke`` is the real
one. Requests go out on a few worker threads; ``stop`` waits for the ones in flight, so nothing of fleetctl's own
is in flight when a drain, a rollback or any wait for in-flight requests begins.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from fleetctl.core.evidence import SmokeRequest, smoke_due
from fleetctl.services.clock import Clock

WORKERS = 8


class SmokeTransport(Protocol):
    def __call__(self, url: str, request: SmokeRequest) -> int:
        """Send ``request`` to the vLLM at ``url``; the HTTP status (any failure to connect raises)."""
        ...


class SmokeSender:
    """Sends ``requests`` in turn to each target host at ``rps`` a host from ``start`` until ``stop``."""

    def __init__(
        self,
        transport: SmokeTransport,
        clock: Clock,
        requests: Sequence[SmokeRequest],
        rps: float,
        *,
        background: bool = True,
    ) -> None:
        self.transport, self.clock, self.requests, self.rps = transport, clock, tuple(requests), rps
        self.sent: dict[str, int] = {}  # host → requests sent since start
        self.answered: dict[str, dict[int, int]] = {}  # host → status (0: no answer) → count
        self._targets: dict[str, str] = {}
        self._since: float | None = None
        self._base: dict[str, int] = {}  # sent counts when sending (re)started
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="smoke") if background else None
        self._pending: list[Future[None]] = []

    @property
    def active(self) -> bool:
        return self._since is not None

    def start(self, targets: Mapping[str, str]) -> None:
        """Begin (or keep) sending to ``targets`` (host → serving URL)."""
        self._targets = dict(targets)
        if self._since is None:
            self._since = self.clock.monotonic()
            self._base = {h: self.sent.get(h, 0) for h in self._targets}

    def tick(self) -> int:
        """Send what each target is owed by now; the number sent."""
        if self._since is None or not self.requests:
            return 0
        elapsed = self.clock.monotonic() - self._since
        count = 0
        for host, url in self._targets.items():
            owed = smoke_due(elapsed, self.rps, self.sent.get(host, 0) - self._base.get(host, 0))
            for _ in range(owed):
                request = self.requests[self.sent.get(host, 0) % len(self.requests)]
                self.sent[host] = self.sent.get(host, 0) + 1
                self._submit(functools.partial(self._send, host, url, request))
                count += 1
        return count

    def pause(self) -> None:
        """Stop sending new requests (those in flight finish); ``start`` again resumes the same counts."""
        self._since = None

    def stop(self) -> None:
        """No more requests, and wait for those in flight (each is bounded by the transport's timeout)."""
        self._since = None
        for future in self._pending:
            future.exception()
        self._pending = []

    def close(self) -> None:
        self.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def sent_to(self, hosts: Sequence[str]) -> int:
        return sum(self.sent.get(h, 0) for h in hosts)

    def _submit(self, fn: Callable[[], None]) -> None:
        if self._pool is None:
            fn()
        else:
            self._pending = [f for f in self._pending if not f.done()]
            self._pending.append(self._pool.submit(fn))

    def _send(self, host: str, url: str, request: SmokeRequest) -> None:
        try:
            status = self.transport(url, request)
        except Exception:  # a host that does not answer is the gate's business, not the sender's
            status = 0
        by_status = self.answered.setdefault(host, {})
        by_status[status] = by_status.get(status, 0) + 1
