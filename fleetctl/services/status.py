"""``fleetctl status``: the whole fleet at a glance, hosts that cannot be reached shown as such."""

from __future__ import annotations

import dataclasses
from typing import Any

from fleetctl.core.fleet import Fleet, Host
from fleetctl.core.fleetstate import FleetState, url_port, worker_url
from fleetctl.core.metrics import KV_CACHE, in_flight, parse_metrics
from fleetctl.core.router import normalise_url
from fleetctl.core.status import fleet_problems
from fleetctl.errors import ConfigError, HostError
from fleetctl.services.door import door_status
from fleetctl.services.fanout import fan_out
from fleetctl.services.router_status import router_status
from fleetctl.services.serving import HostOps
from fleetctl.services.statefile import load_state, state_path
from fleetctl.services.worker_key import fleet_worker_key

SCHEMA = "fleetctl.status/v1"
DEFAULT_PORT = 8000


def fleet_status(fleet: Fleet, hosts: tuple[Host, ...], *, forks: int = 32) -> dict[str, Any]:
    from fleetctl.transport.ssh import SshPool

    state = load_state(fleet)
    ports = {h.name: _port(fleet, h, state) for h in hosts}  # a bad URL in state.json: exit 2 before any work
    router = router_status(fleet, state)
    key = fleet_worker_key(fleet)  # the front door's worker key: vLLM answers /v1/* only with it
    in_router = {normalise_url(u["url"]) for u in router["upstreams"]}
    circuits = {normalise_url(u["url"]): u.get("circuit") for u in router["upstreams"]}
    rows: dict[str, dict[str, Any]] = {}
    with SshPool(fleet.ssh) as pool:

        def work(host: Host) -> dict[str, Any]:
            return host_status(HostOps(pool, host, worker_key=key), state, in_router, ports[host.name])

        for host, row in fan_out(hosts, work, forks=forks):
            if not isinstance(row, dict):
                row = unreachable_row(host, state, in_router, row, ports[host.name])
            row["router_circuit"] = circuits.get(normalise_url(worker_url(host.address, ports[host.name])))
            rows[host.name] = row
    keys = ("url", "reachable", "error", "mode", "upstreams", "missing", "unexpected", "open_circuits")
    router_doc = {key: router.get(key) for key in keys}
    host_rows = [rows[h.name] for h in hosts]
    doc = {
        "schema": SCHEMA,
        "fleet": fleet.name,
        "router": router_doc,
        "hosts": host_rows,
        "problems": fleet_problems(router_doc, host_rows),
    }
    if fleet.router.door is not None:
        doc["door"] = dataclasses.asdict(door_status(fleet))
    return with_pools(fleet, state, doc)


def with_pools(fleet: Fleet, state: FleetState, doc: dict[str, Any]) -> dict[str, Any]:
    """A fleet with ``[[pools]]``: each host row names its pool (None: a spare), and ``pools`` sums them up."""
    if not fleet.pools:
        return doc
    from fleetctl.core.pools import pool_by_host, pool_rows

    placed = pool_by_host(fleet)
    for row in doc["hosts"]:
        pool = placed.get(row["name"])
        row["pool"] = pool.name if pool is not None else None
    return {**doc, "pools": pool_rows(fleet, state, doc["hosts"])}


def _port(fleet: Fleet, host: Host, state: FleetState) -> int:
    """The port vLLM serves on: the recorded URL's (its scheme's default when it names none), else 8000."""
    record = state.serving.get(host.name)
    if record is None:
        return DEFAULT_PORT
    try:
        return url_port(record.url)
    except ValueError as e:
        raise ConfigError(f"serving.{host.name}: url {record.url!r}: {e}", path=state_path(fleet)) from e


def _base(host: Host, state: FleetState, in_router: set[str], port: int) -> dict[str, Any]:
    drained = state.drained.get(host.name)
    return {
        "name": host.name,
        "ring": host.ring,
        "reachable": False,
        "error": None,
        "drained": drained is not None,
        "should_serve": host.name in state.serving and drained is None,
        "drain_reason": drained.reason if drained else None,
        "image": None,
        "profile": None,
        "container": None,
        "healthy": None,
        "in_router": normalise_url(worker_url(host.address, port)) in in_router,
        "requests_running": None,
        "requests_waiting": None,
        "kv_cache_usage": None,
    }


def host_status(ops: HostOps, state: FleetState, in_router: set[str], port: int = DEFAULT_PORT) -> dict[str, Any]:
    row = _base(ops.host, state, in_router, port)
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


def unreachable_row(
    host: Host, state: FleetState, in_router: set[str], error: HostError, port: int = DEFAULT_PORT
) -> dict[str, Any]:
    row = _base(host, state, in_router, port)
    row["error"] = f"{error.kind}: {error.reason}"
    return row
