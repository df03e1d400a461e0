"""One way to wait for something: ask, and ask again on a schedule, on an injectable clock.

The schedule is data (``Cadence``); every wait in fleetctl (drain, health, the model a host serves, the router's
start and stop) is ``poll(ask, timeout_s, cadence, clock)``, so a test drives it on a fake clock without waiting.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from fleetctl.services.clock import SYSTEM, Clock

T = TypeVar("T")


@dataclass(frozen=True)
class Cadence:
    """Pauses between two asks: ``every_s`` while less than ``steady_s`` has passed since the wait began, then
    each pause ``factor`` times the one before, never more than ``max_s``."""

    every_s: float
    steady_s: float = math.inf
    factor: float = 1.0
    max_s: float = math.inf

    def next_delay(self, delay: float, elapsed_s: float) -> float:
        """The pause after ``delay``, ``elapsed_s`` after the wait began."""
        return min(self.max_s, delay * self.factor) if elapsed_s >= self.steady_s else delay


# Drain asks vLLM every 0.1 s for its first 2 s (a short drain is seen at once), then doubles the pause up to
# 0.5 s (a long one does not scrape a busy vLLM ten times a second). The drain and upgrade benchmarks depend on it.
DRAIN = Cadence(every_s=0.1, steady_s=2.0, factor=2.0, max_s=0.5)
HEALTH = Cadence(every_s=0.2)  # /health, /v1/models and a small completion: a starting vLLM
MODEL = Cadence(every_s=0.1)  # /v1/models of a container that may be just starting
ROUTER_START = Cadence(every_s=0.2)  # the router's /health after it was spawned
PROCESS_EXIT = Cadence(every_s=0.1)  # a signalled process going away
REBOOT_BACK = Cadence(every_s=2.0)  # a rebooting host's boot id over SSH (each ask may wait for a connect timeout)


def poll(ask: Callable[[], T | None], timeout_s: float, cadence: Cadence, clock: Clock = SYSTEM) -> T | None:
    """Call ``ask`` until it answers something other than None and return that; None when the time is up.

    ``ask`` is called at once, and again after each pause, including once more after the last pause: the answer
    that arrives as time runs out still counts. It may raise to end the wait early (a container that exited)."""
    started = clock.monotonic()
    deadline, delay = started + timeout_s, cadence.every_s
    while True:
        answer = ask()
        if answer is not None:
            return answer
        if clock.monotonic() >= deadline:
            return None
        clock.sleep(delay)
        delay = cadence.next_delay(delay, clock.monotonic() - started)
