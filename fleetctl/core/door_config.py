"""HAProxy's configuration for the front door, and its stats, as pure functions of plain data.

The decisions (which paths pass, which refusal answers what, how long a request may queue, how many reach
vllm-router at once) live here; services/door.py writes the text, checks it with ``haproxy -c`` and reloads.
Refusals go to small backends named after their kind, so HAProxy's own per-backend counters are the refusal
counts that ``door status`` shows. No line logs a request: keys ride in headers and the door logs nothing.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fleetctl.core.door import HEALTH_PATH, INFERENCE_PATHS, ClientKey, DoorSettings

WORKER_KEY_ENV = "FLEETCTL_WORKER_KEY"  # HAProxy reads the worker key from its environment, never from the file
ROUTER_BACKEND, ROUTER_SERVER = "router", "vllm_router"
# refusal kind -> (backend, status, JSON body)
REFUSALS: dict[str, tuple[str, int, str]] = {
    "path": ("refused_path", 403, '{"error":"Forbidden: only inference passes the door"}'),
    "key": ("refused_key", 401, '{"error":"Unauthorized"}'),
    "rate": ("refused_rate", 429, '{"error":"Too Many Requests: over the rate of this key"}'),
    "concurrency": ("refused_concurrency", 429, '{"error":"Too Many Requests: over the concurrency of this key"}'),
}
LONG_GENERATION = "1h"  # client and server timeouts: a stream may run this long between two bytes


@dataclass(frozen=True)
class DoorFiles:
    """Where the door's files live (all in the state folder's ``door/``)."""

    config: str
    pidfile: str
    socket: str
    keys_map: str
    limits_map: str


@dataclass(frozen=True)
class DoorPlan:
    settings: DoorSettings
    router_host: str
    router_port: int
    slots: int
    files: DoorFiles
    clients: tuple[ClientKey, ...] | None  # None: no keys file, every client is admitted


def render_config(plan: DoorPlan) -> str:
    return "\n".join([*_global(plan), *_defaults(plan), *_frontend(plan), *_backends(plan), ""])


def _global(plan: DoorPlan) -> list[str]:
    return [
        "# Written by fleetctl (the front door); edits are replaced on the next reload.",
        "global",
        "    master-worker",
        f"    pidfile {plan.files.pidfile}",
        f"    stats socket {plan.files.socket} mode 600 level admin",
        "    hard-stop-after 2h",  # an old worker keeps its streams across a reload, but not forever
        "",
    ]


def _defaults(plan: DoorPlan) -> list[str]:
    return [
        "defaults",
        "    mode http",
        "    option http-no-delay",  # stream tokens as they come, no coalescing
        "    timeout connect 5s",
        f"    timeout client {LONG_GENERATION}",
        f"    timeout server {LONG_GENERATION}",
        "    timeout http-request 30s",
        "    timeout http-keep-alive 60s",
        f"    timeout queue {int(plan.settings.max_queue_s * 1000)}ms",
        "",
    ]


def _frontend(plan: DoorPlan) -> list[str]:
    s = plan.settings
    tls = f" ssl crt {s.tls_cert}" if s.tls_cert else ""
    lines = [
        "frontend door",
        f"    bind {s.listen}{tls}",
        f"    http-request return status 200 content-type text/plain string ok if {{ path {HEALTH_PATH} }}",
        f"    acl inference path {' '.join(INFERENCE_PATHS)}",
    ]
    keys = _key_rules(plan.files) if plan.clients is not None else ([], [])
    refuse_path = f"    use_backend {REFUSALS['path'][0]} unless inference"
    return [*lines, *keys[0], refuse_path, *keys[1], f"    default_backend {ROUTER_BACKEND}", ""]


def _key_rules(files: DoorFiles) -> tuple[list[str], list[str]]:
    """The rules that identify and count a client (http-request), and where a refused one goes (use_backend)."""
    known = "{ var(txn.client) -m found }"
    identify = [
        f"    http-request set-var(txn.client) http_auth_bearer,sha2(256),hex,lower,map({files.keys_map}) if inference",
        f"    http-request set-var(txn.limits) var(txn.client),map({files.limits_map}) if {known}",
        f"    http-request set-var(txn.rate_limit) var(txn.limits),field(1,:) if {known}",
        f"    http-request set-var(txn.conc_limit) var(txn.limits),field(2,:) if {known}",
        f"    http-request set-var(txn.retry_after) var(txn.limits),field(3,:) if {known}",
        f"    http-request track-sc0 var(txn.client) table clients if {known}",
        f"    http-request set-var(txn.over_rate) sc_http_req_rate(0),sub(txn.rate_limit) if {known}",
        f"    http-request set-var(txn.over_conc) sc_conn_cur(0),sub(txn.conc_limit) if {known}",
        "    http-request del-header authorization",  # the client's key goes no further than the door
    ]
    refuse = [
        f"    use_backend {REFUSALS['key'][0]} if inference !{known}",
        f"    use_backend {REFUSALS['rate'][0]} if {{ var(txn.over_rate) -m int gt 0 }}",
        f"    use_backend {REFUSALS['concurrency'][0]} if {{ var(txn.over_conc) -m int gt 0 }}",
    ]
    return identify, refuse


def _backends(plan: DoorPlan) -> list[str]:
    lines = [
        f"backend {ROUTER_BACKEND}",
        f'    http-request set-header authorization "Bearer ${{{WORKER_KEY_ENV}}}"',
        f"    server {ROUTER_SERVER} {plan.router_host}:{plan.router_port} maxconn {plan.slots}",
        "",
        "backend clients",
        "    stick-table type string len 64 size 100k expire 2m store http_req_rate(1m),conn_cur",
        "",
    ]
    for backend, status, body in REFUSALS.values():
        retry = " hdr retry-after %[var(txn.retry_after)]" if status == 429 else ""
        answer = f"http-request return status {status} content-type application/json string '{body}'{retry}"
        lines += [f"backend {backend}", f"    {answer}", ""]
    return lines


def render_keys_map(clients: Sequence[ClientKey]) -> str:
    """sha256 hex of each key → client name (the map HAProxy looks the hashed bearer token up in)."""
    return "".join(f"{c.key_sha256} {c.name}\n" for c in clients)


def render_limits_map(clients: Sequence[ClientKey]) -> str:
    """client name → ``rate:concurrency:retry_after`` (HAProxy splits it with ``field``)."""
    return "".join(f"{c.name} {c.requests_per_minute}:{c.max_concurrent}:{c.retry_after_s}\n" for c in clients)


# --- stats ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DoorStats:
    requests_per_s: int
    requests_total: int
    queued: int
    queued_max: int
    in_flight: int
    slots: int
    refusals: Mapping[str, int]  # kind -> count: path, key, rate, concurrency, capacity (queue timed out)


def parse_stats(csv_text: str) -> DoorStats:
    """``show stat`` (CSV) from HAProxy's stats socket → the door's figures; ValueError if it is not that."""
    rows = {(r.get("# pxname") or "", r.get("svname") or ""): r for r in csv.DictReader(io.StringIO(csv_text))}
    front = rows.get(("door", "FRONTEND"))
    server = rows.get((ROUTER_BACKEND, ROUTER_SERVER))
    backend = rows.get((ROUTER_BACKEND, "BACKEND"))
    if front is None or server is None or backend is None:
        raise ValueError("HAProxy's stats do not hold the door's frontend and router backend")
    refusals = {kind: _int(rows.get((b, "BACKEND"), {}), "stot") for kind, (b, _s, _t) in REFUSALS.items()}
    refusals["capacity"] = _queue_timeouts(backend)
    return DoorStats(
        requests_per_s=_int(front, "req_rate"),
        requests_total=_int(front, "req_tot"),
        queued=_int(backend, "qcur"),
        queued_max=_int(backend, "qmax"),
        in_flight=_int(server, "scur"),
        slots=_int(server, "slim"),
        refusals=refusals,
    )


def _queue_timeouts(backend: Mapping[str, str]) -> int:
    """Requests that waited the whole ``max_queue_s`` and got 503: HAProxy counts them as connection errors."""
    return _int(backend, "econ")


def _int(row: Mapping[str, str], key: str) -> int:
    value = row.get(key) or "0"
    try:
        return int(value)
    except ValueError as e:
        raise ValueError(f"stats field {key} is not a number") from e
