"""The real synthetic-request transport: one OpenAI-compatible request straight to a host's vLLM over HTTP."""

from __future__ import annotations

from fleetctl.core.evidence import SmokeRequest

TIMEOUT_S = 30.0


def http_smoke(url: str, request: SmokeRequest, api_key: str | None = None) -> int:
    """POST ``request`` to the vLLM at ``url`` (a streamed answer is read to its end); the HTTP status.
    ``api_key``: the fleet's worker key, when its vLLMs require one (a front door is declared)."""
    import requests

    target = url.rstrip("/") + request.path
    headers = {"Authorization": f"Bearer {api_key}"} if api_key is not None else None
    with requests.post(
        target, json=dict(request.body), headers=headers, stream=request.stream, timeout=TIMEOUT_S
    ) as answer:
        for _ in answer.iter_content(chunk_size=None):
            pass
        return answer.status_code
