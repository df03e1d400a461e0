"""``router status``: what the router holds next to what the fleet intends, its supervisor, and vllm-router's own
per-worker metrics (processed requests, health, circuit breaker)."""

from __future__ import annotations

from typing import Any

from fleetctl.core.fleet import Fleet
from fleetctl.core.fleetstate import FleetState
from fleetctl.core.metrics import MetricsError
from fleetctl.core.router import intended_workers, normalise_url, plan_sync
from fleetctl.core.router_metrics import WorkerFigures, open_circuits, parse_router_metrics
from fleetctl.errors import RouterError
from fleetctl.services.router import _log_path, _read_record, held_workers, running_mode
from fleetctl.services.router_process import ours
from fleetctl.services.statefile import load_state
from fleetctl.services.supervisor import live_status
from fleetctl.transport.router import RouterClient, WorkerStatus, router_metrics_text

STATUS_SCHEMA = "fleetctl.router-status/v1"


def _process(fleet: Fleet) -> dict[str, Any] | None:
    """The supervisor and the vllm-router it runs; None when fleetctl started no router that still runs."""
    record = _read_record(fleet)
    if record is None or normalise_url(str(record.get("url"))) != normalise_url(fleet.router.url) or not ours(record):
        return None
    sup = live_status(fleet) or {}
    router = sup.get("router") or {}
    return {
        "pid": record["pid"],
        "since": record.get("since"),
        "log": _log_path(fleet),
        "supervised": bool(sup),
        "router_pid": router.get("pid") if router and ours(router) else None,
        "router_since": router.get("since"),
        "phase": sup.get("phase"),
        "mode": sup.get("mode"),
        "restarts": sup.get("restarts", 0),
        "last_restart": sup.get("last_restart"),
        "sync_error": sup.get("sync_error"),
        "metrics_port": router.get("metrics_port"),
    }


def _figures(process: dict[str, Any] | None) -> tuple[dict[str, WorkerFigures], str | None]:
    port = (process or {}).get("metrics_port")
    if not isinstance(port, int):
        return {}, None
    try:
        return parse_router_metrics(router_metrics_text(port)), None
    except (RouterError, MetricsError) as e:
        return {}, str(e)


def router_status(fleet: Fleet, state: FleetState | None = None) -> dict[str, Any]:
    """What the router holds next to what the fleet intends (the recorded state unless given one).

    An unreachable router is reported (``reachable: false`` and ``error``), not raised."""
    if state is None:
        state = load_state(fleet)
    process = _process(fleet)
    mode = running_mode(fleet, state)
    intended = intended_workers(state)
    status: dict[str, Any] = {
        "schema": STATUS_SCHEMA,
        "url": fleet.router.url,
        "reachable": False,
        "error": None,
        "mode": mode,
        "process": process,
        "upstreams": [],
        "intended": sorted(w.url for w in intended),
        "missing": [],
        "unexpected": [],
        "open_circuits": [],
        "metrics_error": None,
    }
    try:
        with RouterClient(fleet.router.url, mode=mode) as client:
            workers = client.workers()
            held = held_workers(client)
    except RouterError as e:
        status["error"] = e.reason
        return status
    diff = plan_sync(held, intended, mode)
    figures, metrics_error = _figures(process)
    intended_urls = {i.url for i in intended}
    status.update(
        reachable=True,
        missing=list(diff.add),
        unexpected=list(diff.remove),
        open_circuits=open_circuits(figures),
        metrics_error=metrics_error,
        upstreams=[_upstream_row(w, figures, intended_urls) for w in workers],
    )
    return status


def _upstream_row(w: WorkerStatus, figures: dict[str, WorkerFigures], intended_urls: set[str]) -> dict[str, Any]:
    f = figures.get(normalise_url(w.url))
    return {
        "url": w.url,
        "model": w.model or None,
        "healthy": w.healthy,
        "load": w.load,
        "intended": normalise_url(w.url) in intended_urls,
        "processed": f.processed if f else None,
        "circuit": f.circuit if f else None,
    }
