"""``status`` reads vllm-router's own metrics: a host the router holds but whose circuit breaker is open gets no
requests, so the fleet is not as intended."""

from __future__ import annotations

import pytest

from fleetctl.core.status import fleet_problems

ROUTER_OK = {"url": "http://127.0.0.1:30000", "reachable": True, "error": None}
ROUTER_DOWN = {"url": "http://127.0.0.1:30000", "reachable": False, "error": "unreachable: connection refused"}


def row(**fields):
    base = {"name": "gpu1", "reachable": True, "error": None, "drained": False, "should_serve": True}
    return {**base, "container": "running", "healthy": True, "in_router": True, **fields}


@pytest.mark.parametrize(
    "router, host, problems",
    [
        (ROUTER_OK, row(router_circuit="closed"), []),
        (ROUTER_OK, row(router_circuit="half-open"), []),
        (ROUTER_OK, row(router_circuit=None), []),  # no metrics (yet): nothing to say
        (
            ROUTER_OK,
            row(router_circuit="open"),
            ["gpu1: the router's circuit breaker for it is open (it gets no requests for now)"],
        ),
        (ROUTER_OK, row(router_circuit="open", in_router=False), ["gpu1: should serve but is not in the router"]),
        (ROUTER_DOWN, row(router_circuit="open"), ["router http://127.0.0.1:30000 unreachable: connection refused"]),
    ],
)
def test_open_circuit_rows(router, host, problems):
    assert fleet_problems(router, [host]) == problems
