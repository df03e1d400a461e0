"""Is the fleet as intended? The pure judgement behind ``fleetctl status``'s exit code.

A host *should serve* when fleetctl put it into service (a serving record) and it is not drained. The fleet is
as intended when the router answers, every host answers, every host that should serve runs a healthy container
and is in the router, and no drained host is in the router. Each departure is one line, ``host: what``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def fleet_problems(router: Mapping[str, Any], hosts: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every way the observed fleet differs from the intended one, router first; empty when it is as intended.

    ``router`` and ``hosts`` are the ``router`` object and the host rows of the ``fleetctl.status/v1`` document."""
    problems = [] if router["reachable"] else [f"router {router['url']} {router['error']}"]
    for row in hosts:
        problems += host_problems(row, router_known=bool(router["reachable"]))
    return problems


def host_problems(row: Mapping[str, Any], *, router_known: bool) -> list[str]:
    """One host's departures; router membership is judged only when the router answered (``router_known``)."""
    name = row["name"]
    if not row["reachable"]:
        return [f"{name}: {row['error'] or 'unreachable'}"]
    problems = []
    if row["should_serve"]:
        problems += _serving_problems(row)
        if router_known and not row["in_router"]:
            problems.append(f"{name}: should serve but is not in the router")
        elif router_known and row.get("router_circuit") == "open":
            problems.append(f"{name}: the router's circuit breaker for it is open (it gets no requests for now)")
    elif row["drained"] and router_known and row["in_router"]:
        problems.append(f"{name}: drained but still in the router")
    return problems


def _serving_problems(row: Mapping[str, Any]) -> list[str]:
    name, container = row["name"], row["container"]
    if container is None:
        return [f"{name}: should serve but runs no fleetctl container"]
    if container != "running":
        return [f"{name}: should serve but its container is {container}"]
    if row["healthy"] is False:
        return [f"{name}: should serve but is unhealthy" + (f" ({row['error']})" if row["error"] else "")]
    return []


def summary_line(problems: Sequence[str], shown: int = 3) -> str:
    """``the fleet is not as intended: A; B; C and 2 more`` for the error line."""
    more = f" and {len(problems) - shown} more" if len(problems) > shown else ""
    return f"the fleet is not as intended: {'; '.join(problems[:shown])}{more}"
