"""An in-memory vllm-router, standing in for ``fleetctl.transport.router.RouterClient``: it can be told to
refuse adds or removes, or to answer its worker list oddly (leaving some out, as a router that dropped them)."""

from __future__ import annotations

from fleetctl.core.router import normalise_url
from fleetctl.errors import RouterError
from fleetctl.transport.router import WorkerStatus

URL = "http://127.0.0.1:30000"


class FakeRouter:
    def __init__(self, workers: list[str] | None = None) -> None:
        self.url = URL
        self.mode = "single"  # as the client asked for it: vllm-router's plain mode, or "multi" (by model)
        self.models: dict[str, str] = {}  # url -> the model it was registered with (multi mode)
        self.held: list[str] = list(workers or [])
        self.refuse_add: set[str] | bool = set()  # urls (or True: every url) whose add answers an error
        self.refuse_remove: set[str] | bool = set()
        self.hidden: set[str] = set()  # urls held but left out of the worker list it answers
        self.unreachable = False
        self.calls: list[tuple[str, str]] = []  # (add | remove, url) as asked

    # -- what tests read ------------------------------------------------------------------------------------

    def holds(self, url: str) -> bool:
        return normalise_url(url) in {normalise_url(u) for u in self.held}

    # -- the RouterClient interface ---------------------------------------------------------------------------

    def client(self, url: str, timeout_s: float = 5, *, mode: str = "single", **_: object) -> FakeRouter:
        self.mode = mode
        return self

    def __enter__(self) -> FakeRouter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def close(self) -> None:
        return None

    def health(self) -> str:
        self._reachable()
        return "ok"

    def list_workers(self) -> list[str]:
        self._reachable()
        return [u for u in self.held if normalise_url(u) not in {normalise_url(h) for h in self.hidden}]

    def workers(self) -> list[WorkerStatus]:
        return [WorkerStatus(url=u, healthy=True, load=0, model=self.models.get(u, "")) for u in self.list_workers()]

    def add_worker(self, url: str, model: str = "") -> None:
        self._reachable()
        self.calls.append(("add", url))
        if self.refuse_add is True or url in (self.refuse_add or set()):
            raise RouterError(self.url, f"answered 503 to adding {url}: upstream not healthy")
        if not self.holds(url):
            self.held.append(url)
            self.models[url] = model

    def remove_worker(self, url: str) -> bool:
        self._reachable()
        self.calls.append(("remove", url))
        if self.refuse_remove is True or url in (self.refuse_remove or set()):
            raise RouterError(self.url, f"answered 500 to removing {url}")
        held = self.holds(url)
        self.held = [u for u in self.held if normalise_url(u) != normalise_url(url)]
        return held

    def _reachable(self) -> None:
        if self.unreachable:
            raise RouterError(self.url, "unreachable: connection refused")
