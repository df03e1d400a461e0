"""A clock that moves only when told: ``sleep`` advances it at once and runs what was waiting for that time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

START = datetime(2026, 11, 30, 8, 0, 0, tzinfo=UTC)


class FakeClock:
    """Implements ``fleetctl.services.clock.Clock``. ``on_advance(dt)`` callbacks run on every step of time
    (the fake fleet serves traffic there); ``at(t, fn)`` runs ``fn`` once when the clock reaches ``t``."""

    def __init__(self, start: datetime = START, *, mono: float = 1000.0, step: float = 0.0) -> None:
        self.now = mono
        self.start_mono, self.start_utc = self.now, start
        self.on_advance: list[Callable[[float], None]] = []
        self._timers: list[tuple[float, Callable[[], None]]] = []
        self.slept: list[float] = []  # every pause, in order
        self.step = step  # time that passes at each reading (a slow question), 0: none

    def monotonic(self) -> float:
        self.now += self.step
        return self.now

    def utc_now(self) -> datetime:
        return self.start_utc + timedelta(seconds=self.now - self.start_mono)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(max(0.0, seconds))

    def advance(self, seconds: float) -> None:
        """Time moves by ``seconds`` in steps of at most 0.5 s, so traffic and timers see every step."""
        left = seconds
        while left > 1e-9:
            step = min(0.5, left)
            self.now += step
            left -= step
            for callback in list(self.on_advance):
                callback(step)
            self._fire()

    def at(self, moment: float, fn: Callable[[], None]) -> None:
        self._timers.append((moment, fn))

    def after(self, seconds: float, fn: Callable[[], None]) -> None:
        self.at(self.now + seconds, fn)

    def _fire(self) -> None:
        due = [t for t in self._timers if t[0] <= self.now + 1e-9]
        self._timers = [t for t in self._timers if t[0] > self.now + 1e-9]
        for _, fn in due:
            fn()
