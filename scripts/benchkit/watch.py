"""Pollers: the router's /list_workers and a host's /metrics, read in a tight loop and stamped on arrival."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .figures import Sample, served_count

POLL_S = 0.01  # pause between polls: about 100 a second per poller, on a 2-core machine


class Poller:
    """Calls ``read()`` every POLL_S in a thread and keeps ``(time.time() on the answer, value)``; a failed read
    is kept as None. The stamp is taken when the answer arrives: what it shows was true at that moment at the
    latest, so the times derived from it are upper bounds."""

    def __init__(self, read: Callable[[], object], name: str) -> None:
        self.read, self.samples = read, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join(5)
        return self.samples

    def wait_for(self, count: int, timeout_s: float = 10) -> None:
        """Until ``count`` answered polls are in; TimeoutError if they do not come."""
        deadline = time.monotonic() + timeout_s
        while sum(v is not None for _, v in self.samples) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self._thread.name}: fewer than {count} answers in {timeout_s:g} s")
            time.sleep(POLL_S)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                value = self.read()
            except Exception:
                value = None
            self.samples.append((time.time(), value))
            self._stop.wait(POLL_S)


def router_poller(router: str) -> Poller:
    import requests

    session = requests.Session()
    return Poller(lambda: frozenset(session.get(f"{router}/list_workers", timeout=2).json()["urls"]), "router-poller")


def served_poller(url: str) -> Poller:
    import requests

    session = requests.Session()

    def read() -> float:
        resp = session.get(f"{url}/metrics", timeout=2)
        resp.raise_for_status()
        return served_count(resp.text)

    return Poller(read, "served-poller")
