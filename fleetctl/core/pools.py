"""Model pools (``[[pools]]``): which hosts serve which model, and the decisions that hold per pool.

A fleet file without ``[[pools]]`` has one implicit pool of every host (name ``""``), whose ``min_serving`` is
``[router] min_serving``: every decision below then reads exactly as it did before pools. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fleetctl.core.fleet import Fleet, Pool
from fleetctl.core.fleetstate import FleetState
from fleetctl.errors import UsageError

IMPLICIT = ""  # the implicit pool's name


def pools_of(fleet: Fleet) -> tuple[Pool, ...]:
    """The declared pools, or the implicit one of every host."""
    if fleet.pools:
        return fleet.pools
    return (Pool(IMPLICIT, "", "*", tuple(h.name for h in fleet.hosts), fleet.router.min_serving),)


def pool_by_host(fleet: Fleet) -> dict[str, Pool]:
    """Each host's pool; hosts in no pool (spares) are absent."""
    return {name: pool for pool in pools_of(fleet) for name in pool.members}


def pool_named(fleet: Fleet, name: str) -> Pool:
    found = next((p for p in fleet.pools if p.name == name), None)
    if found is None:
        known = ", ".join(p.name for p in fleet.pools) or "none: the fleet file has no [[pools]]"
        raise UsageError(f"--pool {name!r}: no such pool (pools: {known})")
    return found


def chosen_pool(fleet: Fleet, name: str | None, verb: str) -> Pool | None:
    """The pool a command acts on: ``--pool`` on a fleet with pools (required there), None on one without."""
    if name is None:
        if fleet.pools:
            names = ", ".join(p.name for p in fleet.pools)
            raise UsageError(f"{verb}: this fleet has pools ({names}): say which with --pool NAME")
        return None
    return pool_named(fleet, name)


def spares(fleet: Fleet) -> tuple[str, ...]:
    """Hosts in no pool: they serve nothing, deploy and upgrade leave them alone."""
    if not fleet.pools:
        return ()
    placed = pool_by_host(fleet)
    return tuple(h.name for h in fleet.hosts if h.name not in placed)


@dataclass(frozen=True)
class PoolCount:
    pool: Pool
    serving: int  # recorded serving and not drained
    drained: int
    total: int  # hosts in the pool


def pool_count(pool: Pool, state: FleetState, drained_too: Iterable[str] = ()) -> PoolCount:
    """The pool's hosts serving, drained and in all, with ``drained_too`` counted as drained."""
    out = set(state.drained) | set(drained_too)
    serving = sum(1 for h in pool.members if h in state.serving and h not in out)
    drained = sum(1 for h in pool.members if h in state.serving and h in out)
    return PoolCount(pool, serving, drained, len(pool.members))


def check_pools_min_serving(fleet: Fleet, state: FleetState, names: list[str], *, force: bool) -> int:
    """Hosts left serving after draining ``names``; UsageError naming the first pool it leaves below its
    ``min_serving`` (and its counts) unless ``force``. The implicit pool keeps the ``[router]`` wording."""
    if not fleet.pools:
        from fleetctl.core.fleetstate import check_min_serving

        return check_min_serving(state, names, fleet.router.min_serving, force=force)
    touched = {pool.name: pool for name, pool in pool_by_host(fleet).items() if name in names}
    for pool in touched.values():
        now, after = pool_count(pool, state), pool_count(pool, state, names)
        if after.serving < pool.min_serving and not force:
            raise UsageError(
                f"pool {pool.name}: draining {', '.join(n for n in names if n in pool.members)} would leave "
                f"{after.serving} of {now.total} host(s) serving (now {now.serving}), below its min_serving = "
                f"{pool.min_serving}",
                hint="use --force if you mean it",
            )
    out = set(state.drained) | set(names)
    return sum(1 for h in state.serving if h not in out)


def strays(fleet: Fleet, state: FleetState) -> dict[str, str]:
    """Hosts that run a profile their pool does not declare (or serve while in no pool): host → why."""
    if not fleet.pools:
        return {}
    placed = pool_by_host(fleet)
    found: dict[str, str] = {}
    for host, record in state.serving.items():
        pool = placed.get(host)
        if pool is None:
            found[host] = f"runs {record.profile} but is in no pool"
        elif record.profile != pool.profile:
            found[host] = f"runs {record.profile}, pool {pool.name} declares {pool.profile}"
    return found


def served_names(pool: Pool, state: FleetState) -> tuple[str, ...]:
    """The model names the pool's hosts serve now, as recorded (``ServingRecord.model``)."""
    return tuple(
        sorted({state.serving[h].model for h in pool.members if h in state.serving and state.serving[h].model})
    )


def rename_refusal(pool: Pool, now: Iterable[str], new: str, *, rename: bool) -> str | None:
    """Why an upgrade of ``pool`` to a profile serving ``new`` may not start: its hosts serve another name, and
    clients would get 404s from the hosts already moved (unless ``--rename``)."""
    other = [name for name in now if name != new]
    if not other or rename:
        return None
    where = f"pool {pool.name}" if pool.name else "the fleet"
    return (
        f"{where} serves model {', '.join(other)} and the new profile serves {new}: clients asking for the old "
        "name would get 404s from upgraded hosts; add --rename if you mean it"
    )


def duplicate_served_name(served: Mapping[str, str]) -> tuple[str, str, str] | None:
    """Two pools serving one model name (``pool → served name``): (first pool, second pool, name), or None."""
    seen: dict[str, str] = {}
    for pool, name in served.items():
        if name in seen:
            return seen[name], pool, name
        seen[name] = pool
    return None


def pool_rows(fleet: Fleet, state: FleetState, hosts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``status``'s pools (a fleet with ``[[pools]]``): model, profiles and images running, serving/drained/total,
    min_serving, requests running and waiting, and the hosts that run a profile the pool does not declare.
    ``hosts`` are status's host rows (only the pool's hosts among them are summed)."""
    by_name = {row["name"]: row for row in hosts}
    off = strays(fleet, state)
    rows = []
    for pool in fleet.pools:
        mine = [by_name[h] for h in pool.members if h in by_name]
        count = pool_count(pool, state)
        rows.append(
            {
                "name": pool.name,
                "profile": pool.profile,
                "models": list(served_names(pool, state)),
                "profiles": _tally(row["profile"] for row in mine),
                "images": _tally(row["image"] for row in mine),
                "serving": count.serving,
                "drained": count.drained,
                "total": count.total,
                "min_serving": pool.min_serving,
                "requests_running": _total(row["requests_running"] for row in mine),
                "requests_waiting": _total(row["requests_waiting"] for row in mine),
                "off_profile": {h: why for h, why in off.items() if h in pool.members},
            }
        )
    return rows


def _tally(values: Iterable[str | None]) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values:
        if value:
            out[value] = out.get(value, 0) + 1
    return out


def _total(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None
