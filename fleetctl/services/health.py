"""Waiting for a vLLM server to be healthy: /health 200, the model listed, one small completion answered."""

from __future__ import annotations

import time
from collections.abc import Callable

from fleetctl.errors import HostError
from fleetctl.transport.vllm import VllmClient

POLL_S = 0.2


def wait_healthy(
    client: VllmClient,
    model: str,
    timeout_s: float,
    *,
    still_running: Callable[[], bool] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> float:
    """Seconds until healthy; HostError ``unhealthy`` at the timeout, or at once if the container stopped."""
    start = clock()
    last = "no answer yet"
    while True:
        if still_running is not None and not still_running():
            raise HostError(client.host, "unhealthy", f"the container exited before it was healthy ({last})")
        try:
            if not client.health():
                last = "/health not 200"
            elif model not in client.models():
                last = f"/v1/models does not list {model}"
            else:
                client.complete(model)
                return clock() - start
        except HostError as e:
            last = e.reason
        if clock() - start >= timeout_s:
            raise HostError(client.host, "unhealthy", f"not healthy after {timeout_s:g}s: {last}")
        sleep(POLL_S)
