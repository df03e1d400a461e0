"""HTTP to one vLLM server: health, models, a small completion, metrics. requests is imported on first use."""

from __future__ import annotations

from typing import Any

from fleetctl.errors import HostError


class VllmClient:
    def __init__(self, host: str, base_url: str, timeout_s: float = 10) -> None:
        import requests

        self.host, self.base_url, self.timeout_s = host, base_url.rstrip("/"), timeout_s
        self.session = requests.Session()

    def _get(self, path: str):
        import requests

        try:
            return self.session.get(self.base_url + path, timeout=self.timeout_s)
        except requests.Timeout as e:  # something listens but is too busy to answer: not gone
            raise HostError(self.host, "vllm_slow", f"GET {self.base_url}{path}: {_reason(e)}") from e
        except requests.RequestException as e:
            raise HostError(self.host, "vllm_unreachable", f"GET {self.base_url}{path}: {_reason(e)}") from e

    def health(self) -> bool:
        return self._get("/health").status_code == 200

    def models(self) -> list[str]:
        response = self._get("/v1/models")
        if response.status_code != 200:
            return []
        ids = [m.get("id") for m in response.json().get("data", []) if isinstance(m, dict)]
        return [i for i in ids if isinstance(i, str)]

    def complete(self, model: str, prompt: str = "Hello", max_tokens: int = 2) -> dict[str, Any]:
        import requests

        try:
            response = self.session.post(
                self.base_url + "/v1/completions",
                timeout=max(self.timeout_s, 60),
                json={"model": model, "prompt": prompt, "max_tokens": max_tokens},
            )
        except requests.RequestException as e:
            raise HostError(self.host, "vllm_unreachable", f"completion: {_reason(e)}") from e
        if response.status_code != 200:
            raise HostError(
                self.host, "unhealthy", f"completion answered {response.status_code}: {response.text[:200]}"
            )
        body = response.json()
        choices = body.get("choices") or [{}]
        if choices[0].get("finish_reason") not in ("stop", "length"):
            raise HostError(self.host, "unhealthy", f"completion finished with {choices[0].get('finish_reason')!r}")
        return body

    def metrics_text(self) -> str:
        response = self._get("/metrics")
        if response.status_code != 200:
            raise HostError(self.host, "vllm_unreachable", f"/metrics answered {response.status_code}")
        return response.text

    def close(self) -> None:
        self.session.close()


def _reason(e: Exception) -> str:
    text = str(e)
    for marker in ("Connection refused", "timed out", "No route to host", "Name or service not known"):
        if marker in text:
            return marker.lower()
    return " ".join(text.split())[:200]
