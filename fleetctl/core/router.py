"""Router upstream planning: what to add to and remove from vllm-router so it serves exactly the intended set.

vllm-router compares worker URLs as plain strings (``http://h:8000/`` and ``http://h:8000`` are two workers to
it), so every comparison here goes through :func:`normalise_url`, while removals name the exact string the
router holds, or it would not find the worker.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from fleetctl.core.fleet import Fleet
from fleetctl.core.fleetstate import FleetState

Mode = Literal["single", "multi"]


@dataclass(frozen=True, order=True)
class RouterWorker:
    """One upstream as the router should hold it: its URL (normalised) and the model name it is routed by."""

    url: str
    model: str = ""


@dataclass(frozen=True)
class RouterDiff:
    """Worker URLs to add (normalised) and to remove (as the router spells them), each sorted; ``models`` names
    the model of each add that has one. A URL in both is a worker whose model changed: removed, then added."""

    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    models: tuple[tuple[str, str], ...] = ()

    @property
    def empty(self) -> bool:
        return not self.add and not self.remove

    @property
    def replaced(self) -> tuple[str, ...]:
        """URLs (normalised) removed and added again under another model."""
        return tuple(sorted({normalise_url(u) for u in self.remove} & set(self.add)))

    def model_of(self, url: str) -> str:
        return dict(self.models).get(url, "")

    def to_dict(self) -> dict[str, list[str]]:
        return {"add": list(self.add), "remove": list(self.remove)}


def normalise_url(url: str) -> str:
    """One spelling per worker: lower-case scheme and host, no trailing slash, no query or fragment. A URL that
    does not parse (a router may report anything) stays as it is, stripped."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return url.strip()
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), "", ""))


def intended_workers(state: FleetState) -> frozenset[RouterWorker]:
    """The router's upstreams as fleetctl intends them: each serving, not drained host with its record's model."""
    return frozenset(
        RouterWorker(normalise_url(r.url), r.model) for h, r in state.serving.items() if h not in state.drained
    )


def router_mode(intended: Iterable[RouterWorker], pools: int = 0) -> Mode:
    """``multi`` (vllm-router's --enable-igw, routing by the request's model) when the fleet declares more than
    one pool or more than one model is intended, else ``single`` (one pool, vllm-router's plain mode). The one
    place that decides it."""
    several_models = len({w.model for w in intended if w.model}) > 1
    return "multi" if pools > 1 or several_models else "single"


def needed_mode(fleet: Fleet, state: FleetState) -> Mode:
    """The mode ``fleet`` needs now: its pools as declared, its workers as recorded."""
    return router_mode(intended_workers(state), pools=len(fleet.pools))


def needs_restart(running: str, needed: Mode) -> bool:
    """Only single -> multi: a single-mode router misroutes two models; a multi-mode one serves one model fine,
    so a drain that leaves one model does not restart the router under load."""
    return running == "single" and needed == "multi"


def _as_worker(item: RouterWorker | str) -> RouterWorker:
    return item if isinstance(item, RouterWorker) else RouterWorker(item)


def _by_key(workers: Iterable[RouterWorker]) -> dict[str, list[RouterWorker]]:
    grouped: dict[str, list[RouterWorker]] = {}
    for w in workers:
        grouped.setdefault(normalise_url(w.url), []).append(w)
    return grouped


def plan_sync(
    current: Iterable[RouterWorker | str], intended: Iterable[RouterWorker | str], mode: Mode = "single"
) -> RouterDiff:
    """The smallest change that makes ``current`` equal ``intended``: on (url, model) in multi mode, on the URL
    alone in single mode (one pool: that router does not route by model). A URL the router holds is never posted
    again; a changed model is a remove and then an add of that URL. Duplicate spellings count as extra workers."""
    multi = mode == "multi"
    have = _by_key(w if multi else RouterWorker(w.url) for w in map(_as_worker, current))
    want = {normalise_url(w.url): (w.model if multi else "") for w in map(_as_worker, intended)}
    remove: list[str] = []
    add: list[str] = []
    for key, held in have.items():
        spellings = [w.url for w in held]
        keep = (key if key in spellings else min(spellings)) if key in want else None
        if keep is not None and [w.model for w in held if w.url == keep] != [want[key]]:
            keep = None  # held under another model (or twice): delete, then add under the intended model
            add.append(key)
        remove += [s for s in spellings if s != keep]
    add += [u for u in want if u not in have]
    models = tuple(sorted((u, want[u]) for u in add if want[u]))
    return RouterDiff(add=tuple(sorted(add)), remove=tuple(sorted(set(remove))), models=models)


def sync_steps(diff: RouterDiff) -> list[tuple[str, str]]:
    """The order to apply a diff in, as ``(verb, url)``: a changed model's remove first (the router keys workers by
    URL), then every add, then the other removes, so the router never holds less than it must."""
    replaced = set(diff.replaced)
    first = [("remove", u) for u in diff.remove if normalise_url(u) in replaced]
    last = [("remove", u) for u in diff.remove if normalise_url(u) not in replaced]
    return [*first, *(("add", u) for u in diff.add), *last]


def describe_mismatch(
    current: Iterable[RouterWorker | str], intended: Iterable[RouterWorker | str], mode: Mode = "single"
) -> str | None:
    """None when the router holds exactly the intended set, else what is missing and what is extra."""
    diff = plan_sync(current, intended, mode)
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


def plan_launch(router_url: str, upstreams: Iterable[str], metrics_port: int, mode: Mode = "single") -> RouterLaunch:
    """The arguments after the executable; ValueError as ``router_address``. In multi mode the router starts with
    no worker (``--worker-urls`` carries no model) and each is registered with its model once it answers."""
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
    if mode == "multi":
        return RouterLaunch(host=host, port=port, args=(*args, "--enable-igw"))
    workers = sorted({normalise_url(u) for u in upstreams})
    if workers:  # with none it starts empty and answers 503 until `router sync`
        args += ["--worker-urls", *workers]
    return RouterLaunch(host=host, port=port, args=tuple(args))
