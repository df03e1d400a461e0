"""``fleetctl status``: the whole fleet at a glance, hosts that cannot be reached shown as such."""

from __future__ import annotations

from typing import Any

from fleetctl.core.fleet import Fleet, Host
from fleetctl.core.fleetstate import FleetState, worker_url
from fleetctl.core.metrics import KV_CACHE, in_flight, parse_metrics
from fleetctl.core.router import normalise_url
from fleetctl.errors import HostError
from fleetctl.services.fanout import fan_out
from fleetctl.services.fleetstate import load_state
from fleetctl.services.router import router_status
from fleetctl.services.serving import HostOps

SCHEMA = "fleetctl.status/v1"
DEFAULT_PORT = 8000


def fleet_status(fleet: Fleet, hosts: tuple[Host, ...], *, forks: int = 32) -> dict[str, Any]:
    from fleetctl.transport.ssh import SshPool

    state = load_state(fleet)
    router = router_status(fleet, state)
    in_router = {normalise_url(u["url"]) for u in router["upstreams"]}
    rows: dict[str, dict[str, Any]] = {}
    with SshPool(fleet.ssh) as pool:
        for host, row in fan_out(hosts, lambda h: host_status(HostOps(pool, h), state, in_router), forks=forks):
            rows[host.name] = row if isinstance(row, dict) else unreachable_row(host, state, in_router, row)
    return {
        "schema": SCHEMA,
        "fleet": fleet.name,
        "router": {
            "url": router["url"],
            "reachable": router["reachable"],
            "error": router["error"],
            "upstreams": router["upstreams"],
            "missing": router["missing"],
            "unexpected": router["unexpected"],
        },
        "hosts": [rows[h.name] for h in hosts],
    }


def _port(host: Host, state: FleetState) -> int:
    record = state.serving.get(host.name)
    return int(record.url.rsplit(":", 1)[1]) if record else DEFAULT_PORT


def _base(host: Host, state: FleetState, in_router: set[str]) -> dict[str, Any]:
    drained = state.drained.get(host.name)
    return {
        "name": host.name,
        "ring": host.ring,
        "reachable": False,
        "error": None,
        "drained": drained is not None,
        "drain_reason": drained.reason if drained else None,
        "image": None,
        "profile": None,
        "container": None,
        "healthy": None,
        "in_router": normalise_url(worker_url(host.address, _port(host, state))) in in_router,
        "requests_running": None,
        "requests_waiting": None,
        "kv_cache_usage": None,
    }


def host_status(ops: HostOps, state: FleetState, in_router: set[str]) -> dict[str, Any]:
    row = _base(ops.host, state, in_router)
    port = _port(ops.host, state)
    current = ops.runtime.current()
    row["reachable"] = True
    if current is None:
        return row
    row.update(image=current.image, profile=current.profile, container=current.status)
    if not current.running:
        row["healthy"] = False
        return row
    client = ops.vllm(port)
    try:
        row["healthy"] = client.health()
        sample = parse_metrics(client.metrics_text())
        running, waiting = in_flight(sample)
        row.update(requests_running=running, requests_waiting=waiting, kv_cache_usage=sample.gauge(KV_CACHE))
    except HostError as e:
        row.update(healthy=False, error=f"{e.kind}: {e.reason}")
    finally:
        client.close()
    return row


def unreachable_row(host: Host, state: FleetState, in_router: set[str], error: HostError) -> dict[str, Any]:
    row = _base(host, state, in_router)
    row["error"] = f"{error.kind}: {error.reason}"
    return row
