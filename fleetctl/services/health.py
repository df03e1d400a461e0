"""Waiting for a vLLM server to be healthy: /health 200, the model listed, one small completion answered."""

from __future__ import annotations

from collections.abc import Callable

from fleetctl.errors import HostError
from fleetctl.services.clock import SYSTEM, Clock
from fleetctl.services.poll import HEALTH, poll
from fleetctl.transport.vllm import VllmClient


def wait_healthy(
    client: VllmClient,
    model: str,
    timeout_s: float,
    *,
    still_running: Callable[[], bool] | None = None,
    clock: Clock = SYSTEM,
) -> float:
    """Seconds until healthy; HostError ``unhealthy`` at the timeout, or at once if the container stopped."""
    start = clock.monotonic()
    last = ["no answer yet"]

    def healthy() -> bool | None:
        if still_running is not None and not still_running():
            raise HostError(client.host, "unhealthy", f"the container exited before it was healthy ({last[0]})")
        try:
            if not client.health():
                last[0] = "/health not 200"
            elif model not in client.models():
                last[0] = f"/v1/models does not list {model}"
            else:
                client.complete(model)
                return True
        except HostError as e:
            last[0] = e.reason
        return None

    if poll(healthy, timeout_s, HEALTH, clock) is None:
        raise HostError(client.host, "unhealthy", f"not healthy after {timeout_s:g}s: {last[0]}")
    return clock.monotonic() - start
