"""vllm-router's admin API over HTTP.

Verified against vllm-router 0.1.17: ``GET /health``, ``GET /list_workers`` → ``{"urls": [...]}``,
``GET /workers`` → ``{"workers": [{"url", "is_healthy", "load", ...}]}``, ``GET /get_loads`` →
``{"workers": [{"worker", "load"}]}`` (-1 when the worker does not report one; vLLM does not), and
``POST /add_worker?url=U`` / ``POST /remove_worker?url=U``. ``add_worker`` answers only once the router has seen
the worker healthy (up to its ``--worker-startup-timeout-secs``), so it gets a longer timeout.

In multi-model mode (``--enable-igw``, ``mode="multi"``) a worker is registered with ``POST /workers {"url",
"model_id"}`` (``/add_worker`` carries no model: the router would file it under "unknown"), at once and without
waiting for it to be healthy, and removed with ``DELETE /workers/{url}``, which answers 400 ``WORKER_NOT_FOUND``
for a URL it does not hold: that is "already gone", done. ``/get_loads`` names the worker ``url`` there, and
``/health`` answers 200 whatever the workers' state, so it only says the router answers.
Every failure becomes a RouterError that names the router's URL.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fleetctl.errors import RouterError


@dataclass(frozen=True)
class WorkerStatus:
    url: str
    healthy: bool
    load: int | None  # the worker's own report when it gives one, else the router's count; None if neither
    model: str = ""  # the model the router routes to it (multi mode); "" when it names none


class RouterClient:
    def __init__(self, url: str, timeout_s: float = 5, *, add_timeout_s: float = 60, mode: str = "single") -> None:
        import requests

        self.url = url.rstrip("/")
        self.mode = mode
        self.timeout_s = timeout_s
        self.add_timeout_s = add_timeout_s
        self._session = requests.Session()

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> RouterClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def health(self) -> str:
        """The router's health answer; RouterError when it does not answer 2xx."""
        return self._call("GET", "/health").text.strip()

    def list_workers(self) -> list[str]:
        urls = self._json("GET", "/list_workers").get("urls")
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise RouterError(self.url, "answered /list_workers without a list of URLs")
        return urls

    def workers(self) -> list[WorkerStatus]:
        """Every upstream with the router's view of its health, and its load where one is known."""
        rows = self._json("GET", "/workers").get("workers")
        if not isinstance(rows, list) or not all(isinstance(r, dict) and isinstance(r.get("url"), str) for r in rows):
            raise RouterError(self.url, "answered /workers without a list of workers")
        reported = self._reported_loads()
        return [
            WorkerStatus(
                url=r["url"],
                healthy=bool(r.get("is_healthy")),
                load=reported.get(r["url"], _int_or_none(r.get("load"))),
                model=r["model_id"] if isinstance(r.get("model_id"), str) and r["model_id"] != "unknown" else "",
            )
            for r in rows
        ]

    def add_worker(self, url: str, model: str = "") -> None:
        if self.mode == "multi":
            body = {"url": url, **({"model_id": model} if model else {})}
            self._call("POST", "/workers", json_body=body)
        else:
            self._call("POST", "/add_worker", params={"url": url}, timeout_s=self.add_timeout_s)

    def remove_worker(self, url: str) -> bool:
        """Remove a worker; False when the router did not hold it (another sync removed it first: done)."""
        if self.mode != "multi":
            self._call("POST", "/remove_worker", params={"url": url})
            return True
        response = self._call("DELETE", "/workers/" + quote(url, safe=""), ok_codes=(400, 404))
        if response.status_code in (400, 404):
            if "WORKER_NOT_FOUND" not in response.text and "not found" not in response.text.lower():
                raise RouterError(self.url, f"answered DELETE /workers with 400: {_first_line(response.text)}")
            return False
        return True

    def _reported_loads(self) -> dict[str, int]:
        try:
            rows = self._json("GET", "/get_loads").get("workers")
        except RouterError:
            return {}  # optional endpoint: /workers alone still answers the question
        if not isinstance(rows, list):
            return {}
        loads = {r.get("worker", r.get("url")): _int_or_none(r.get("load")) for r in rows if isinstance(r, dict)}
        return {w: n for w, n in loads.items() if isinstance(w, str) and n is not None and n >= 0}

    def _json(self, method: str, path: str) -> dict[str, Any]:
        response = self._call(method, path)
        try:
            doc = response.json()
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise RouterError(self.url, f"answered {path} with something that is not a JSON object")
        return doc

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        timeout_s: float | None = None,
        json_body: dict[str, str] | None = None,
        ok_codes: tuple[int, ...] = (),
    ) -> Any:
        import requests

        timeout = timeout_s or self.timeout_s
        try:
            response = self._session.request(method, self.url + path, params=params, json=json_body, timeout=timeout)
        except requests.Timeout as e:
            raise RouterError(self.url, f"did not answer {method} {path} within {timeout:g}s") from e
        except requests.RequestException as e:
            raise RouterError(self.url, f"unreachable: {_reason(e)}") from e
        if not 200 <= response.status_code < 300 and response.status_code not in ok_codes:
            raise RouterError(
                self.url, f"answered {method} {path} with {response.status_code}: {_first_line(response.text)}"
            )
        return response


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _reason(e: BaseException) -> str:
    """A short cause from a requests exception chain: ``connection refused``, not urllib3's whole story."""
    for cause in _chain(e):
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve its host name ({cause.strerror})"
        if isinstance(cause, OSError) and isinstance(cause.errno, int) and cause.errno in errno.errorcode:
            return os.strerror(cause.errno).lower()
    return _first_line(str(e))


def _chain(e: BaseException, depth: int = 8) -> list[BaseException]:
    """``e`` and what caused it: ``__cause__``, ``__context__``, urllib3's ``reason`` and exception args."""
    out: list[BaseException] = []
    todo = [e]
    while todo and len(out) < depth * 4:
        cur = todo.pop(0)
        if any(cur is seen for seen in out):
            continue
        out.append(cur)
        linked = [cur.__cause__, cur.__context__, getattr(cur, "reason", None), *cur.args]
        todo += [x for x in linked if isinstance(x, BaseException)]
    return out


def _first_line(text: str, limit: int = 200) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "(empty answer)"
    return line if len(line) <= limit else line[:limit] + "…"


def router_metrics_text(port: int, timeout_s: float = 2) -> str:
    """vllm-router's own Prometheus page (``--prometheus-port``, which it binds on 127.0.0.1)."""
    import requests

    url = f"http://127.0.0.1:{port}/metrics"
    try:
        response = requests.get(url, timeout=timeout_s)
    except requests.RequestException as e:
        raise RouterError(url, f"metrics unreachable: {_reason(e)}") from e
    if response.status_code != 200:
        raise RouterError(url, f"answered /metrics with {response.status_code}")
    return str(response.text)
