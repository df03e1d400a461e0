"""HTTP to one vLLM server: health, models, a small completion, metrics. requests is imported on first use.

Whatever the server answers, the caller gets data or that host's HostError: a refused or timed-out connection
(``vllm_unreachable``, ``vllm_slow``), an answer that is not the JSON vLLM sends (``vllm_bad_answer``), a metrics
page that is not Prometheus text (``metrics_unreadable``). Nothing from one host escapes as an internal error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fleetctl.core.metrics import READ, MetricsError, MetricsSample, parse_metrics
from fleetctl.errors import HostError

if TYPE_CHECKING:
    import requests


class VllmClient:
    def __init__(self, host: str, base_url: str, timeout_s: float = 10, api_key: str | None = None) -> None:
        """``api_key``: the fleet's worker key, sent as ``Authorization: Bearer`` (vLLM guards /v1/* with it)."""
        import requests

        self.host, self.base_url, self.timeout_s = host, base_url.rstrip("/"), timeout_s
        self.session = requests.Session()
        if api_key is not None:
            self.session.headers["Authorization"] = f"Bearer {api_key}"

    def _request(self, method: str, path: str, timeout_s: float, **kwargs: Any) -> requests.Response:
        import requests

        what = f"{method} {self.base_url}{path}"
        try:
            return self.session.request(method, self.base_url + path, timeout=timeout_s, **kwargs)
        except requests.Timeout as e:  # something listens but is too busy to answer: not gone
            raise HostError(self.host, "vllm_slow", f"{what}: {_reason(e)}") from e
        except requests.RequestException as e:
            raise HostError(self.host, "vllm_unreachable", f"{what}: {_reason(e)}") from e

    def _get(self, path: str) -> requests.Response:
        return self._request("GET", path, self.timeout_s)

    def _json_object(self, response: requests.Response, what: str) -> dict[str, Any]:
        try:
            doc = response.json()
        except ValueError:  # requests' JSONDecodeError, and a body that is not text
            doc = None
        if not isinstance(doc, dict):
            raise HostError(self.host, "vllm_bad_answer", f"{what} answered something that is not a JSON object")
        return doc

    def health(self) -> bool:
        return self._get("/health").status_code == 200

    def models(self) -> list[str]:
        response = self._get("/v1/models")
        if response.status_code != 200:
            return []
        data = self._json_object(response, "/v1/models").get("data")
        if not isinstance(data, list):
            raise HostError(self.host, "vllm_bad_answer", "/v1/models answered without a list of models")
        ids = [m.get("id") for m in data if isinstance(m, dict)]
        return [i for i in ids if isinstance(i, str)]

    def complete(self, model: str, prompt: str = "Hello", max_tokens: int = 2) -> dict[str, Any]:
        response = self._request(
            "POST",
            "/v1/completions",
            max(self.timeout_s, 60),
            json={"model": model, "prompt": prompt, "max_tokens": max_tokens},
        )
        if response.status_code != 200:
            raise HostError(
                self.host, "unhealthy", f"completion answered {response.status_code}: {_first_line(response.text)}"
            )
        body = self._json_object(response, "/v1/completions")
        choices = body.get("choices")
        first = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
        if first.get("finish_reason") not in ("stop", "length"):
            raise HostError(self.host, "unhealthy", f"completion finished with {first.get('finish_reason')!r}")
        return body

    def metrics_text(self) -> str:
        response = self._get("/metrics")
        if response.status_code != 200:
            raise HostError(self.host, "vllm_unreachable", f"/metrics answered {response.status_code}")
        return response.text

    def metrics(self, families: tuple[str, ...] = READ) -> MetricsSample:
        """/metrics parsed (``families`` of it); HostError ``metrics_unreadable`` when it is not Prometheus text."""
        try:
            return parse_metrics(self.metrics_text(), families)
        except MetricsError as e:
            raise HostError(self.host, "metrics_unreadable", f"/metrics: {_first_line(str(e))}") from e

    def close(self) -> None:
        self.session.close()


def _reason(e: Exception) -> str:
    text = str(e)
    for marker in ("Connection refused", "timed out", "No route to host", "Name or service not known"):
        if marker in text:
            return marker.lower()
    return " ".join(text.split())[:200]


def _first_line(text: str, limit: int = 200) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "(empty answer)"
    return line if len(line) <= limit else line[:limit] + "…"
