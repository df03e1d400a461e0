"""Time for services: one clock to read and to sleep on, injected so tests drive every wait without waiting.

Every loop that waits (drain, health, the bake, the router's start) takes a ``Clock``; production code passes
``SYSTEM``. Tests pass a fake whose ``sleep`` advances ``monotonic`` and ``utc_now`` at once.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    def utc_now(self) -> datetime: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def utc_now(self) -> datetime:
        return datetime.now(UTC)


SYSTEM = SystemClock()
