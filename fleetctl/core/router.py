"""Router upstream planning: what to add to and remove from vllm-router so it serves exactly the intended set.

vllm-router compares worker URLs as plain strings (``http://h:8000/`` and ``http://h:8000`` are two workers to
it), so every comparison here goes through :func:`normalise_url`, while removals name the exact string the
router holds, or it would not find the worker.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit


@dataclass(frozen=True)
class RouterDiff:
    """Worker URLs to add (normalised) and to remove (as the router spells them), each sorted."""

    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.add and not self.remove

    def to_dict(self) -> dict[str, list[str]]:
        return {"add": list(self.add), "remove": list(self.remove)}


def normalise_url(url: str) -> str:
    """One spelling per worker: lower-case scheme and host, no trailing slash, no query or fragment."""
    parts = urlsplit(url.strip())
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), "", ""))


def _by_key(urls: Iterable[str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for url in urls:
        grouped.setdefault(normalise_url(url), []).append(url)
    return grouped


def plan_sync(current: Iterable[str], intended: Iterable[str]) -> RouterDiff:
    """The smallest change that makes ``current`` equal ``intended``; duplicate spellings count as extra workers."""
    have = _by_key(current)
    want = {normalise_url(u) for u in intended}
    remove: list[str] = []
    for key, spellings in have.items():
        keep = (key if key in spellings else min(spellings)) if key in want else None
        remove += [s for s in spellings if s != keep]
    return RouterDiff(add=tuple(sorted(want - have.keys())), remove=tuple(sorted(set(remove))))


def describe_mismatch(current: Iterable[str], intended: Iterable[str]) -> str | None:
    """None when the router holds exactly the intended set, else what is missing and what is extra."""
    diff = plan_sync(current, intended)
    if diff.empty:
        return None
    parts = []
    if diff.add:
        parts.append(f"missing {', '.join(diff.add)}")
    if diff.remove:
        parts.append(f"unexpected {', '.join(diff.remove)}")
    return "; ".join(parts)


@dataclass(frozen=True)
class RouterLaunch:
    """How fleetctl starts vllm-router for a fleet: where it listens and its command-line arguments."""

    host: str
    port: int
    args: tuple[str, ...]


# vllm-router waits this long for an upstream to answer /health before it takes it (at start: for at least one
# of them; on add_worker: for that one); its defaults (600 s, checked every 30 s) would hang `router up`.
WORKER_STARTUP_TIMEOUT_S = 10
HEALTH_CHECK_INTERVAL_S = 5


def router_address(router_url: str) -> tuple[str, int]:
    """Where a router fleetctl starts listens; ValueError when fleetctl cannot start one at that URL."""
    parts = urlsplit(router_url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"fleetctl starts a plain http:// router only, not {router_url}")
    if parts.path.strip("/"):
        raise ValueError(f"a router URL with a path ({router_url}) cannot be started by fleetctl")
    return parts.hostname, parts.port or 80


def plan_launch(router_url: str, upstreams: Iterable[str], metrics_port: int) -> RouterLaunch:
    """The arguments after the executable; ValueError as ``router_address``."""
    host, port = router_address(router_url)
    args = [
        "--host",
        host,
        "--port",
        str(port),
        "--policy",
        "round_robin",
        "--prometheus-port",
        str(metrics_port),
        "--worker-startup-timeout-secs",
        str(WORKER_STARTUP_TIMEOUT_S),
        "--worker-startup-check-interval",
        "1",
        "--health-check-interval-secs",
        str(HEALTH_CHECK_INTERVAL_S),
    ]
    workers = sorted({normalise_url(u) for u in upstreams})
    if workers:  # with none it starts empty and answers 503 until `router sync`
        args += ["--worker-urls", *workers]
    return RouterLaunch(host=host, port=port, args=tuple(args))
