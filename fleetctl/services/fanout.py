"""Run one function per host through a bounded thread pool; a host's expected failure is its result."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TypeVar

from fleetctl.core.fleet import Host
from fleetctl.errors import HostError

T = TypeVar("T")


def fan_out(
    hosts: Iterable[Host], work: Callable[[Host], T], *, forks: int = 32
) -> Iterator[tuple[Host, T | HostError]]:
    """Yield ``(host, result or HostError)`` as hosts finish. Any other exception is a bug: it propagates."""
    hosts = list(hosts)
    if not hosts:
        return
    with ThreadPoolExecutor(max_workers=max(1, min(forks, len(hosts))), thread_name_prefix="fleetctl") as pool:
        futures = {pool.submit(work, host): host for host in hosts}
        try:
            for future in as_completed(futures):
                host = futures[future]
                try:
                    yield host, future.result()
                except HostError as e:
                    yield host, e
        finally:
            for future in futures:
                future.cancel()
