"""Rollout planning: which hosts go in which ring, in which batches, as plain data.

Rings follow ``[rollout] rings`` (an order over the hosts' ``ring`` labels; labels it does not list come next in
fleet order; hosts without a label go last). Without it: one host, then 25%, then the rest. Within a ring, hosts
are upgraded in batches of ``max_unavailable``, never leaving fewer than ``min_serving`` hosts serving.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fleetctl.core.fleet import Host, RolloutSettings


class PlanError(ValueError):
    """The rollout cannot be planned as configured (e.g. min_serving leaves no room)."""


@dataclass(frozen=True)
class Ring:
    name: str
    batches: tuple[tuple[str, ...], ...]

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(h for batch in self.batches for h in batch)


@dataclass(frozen=True)
class RolloutPlan:
    rings: tuple[Ring, ...]
    batch_size: int

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(h for ring in self.rings for h in ring.hosts)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RolloutPlan:
        rings = tuple(Ring(r["name"], tuple(tuple(b) for b in r["batches"])) for r in d["rings"])
        return cls(rings=rings, batch_size=int(d["batch_size"]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "rings": [
                {"name": r.name, "hosts": list(r.hosts), "batches": [list(b) for b in r.batches]} for r in self.rings
            ],
        }


def plan_rollout(
    targets: tuple[Host, ...], settings: RolloutSettings, *, serving: int, min_serving: int
) -> RolloutPlan:
    """Rings and batches for ``targets``; ``serving`` is how many hosts serve now (targets and others)."""
    if not targets:
        raise PlanError("no hosts to upgrade")
    room = serving - min_serving
    if room < 1:
        raise PlanError(
            f"{serving} host(s) serving and [router] min_serving = {min_serving}: upgrading any host would go below it"
        )
    batch = max(1, min(settings.max_unavailable, room))
    groups = group_by_label(targets, settings.rings) if settings.rings else default_groups(targets)
    rings = tuple(Ring(name, _batches(hosts, batch)) for name, hosts in groups)
    return RolloutPlan(rings=rings, batch_size=batch)


def group_by_label(targets: tuple[Host, ...], order: tuple[str, ...]) -> list[tuple[str, list[str]]]:
    labels = list(order) + [h.ring for h in targets if h.ring and h.ring not in order]
    seen: list[str] = list(dict.fromkeys(labels))
    groups = [(label, [h.name for h in targets if h.ring == label]) for label in seen]
    unlabeled = [h.name for h in targets if not h.ring]
    if unlabeled:
        groups.append(("unlabeled", unlabeled))
    return [(name, hosts) for name, hosts in groups if hosts]


def default_groups(targets: tuple[Host, ...]) -> list[tuple[str, list[str]]]:
    """One host, then 25% of the fleet (at least one), then the rest."""
    names = [h.name for h in targets]
    quarter = max(1, math.ceil(len(names) * 0.25))
    groups = [("canary", names[:1]), ("25%", names[1 : 1 + quarter]), ("rest", names[1 + quarter :])]
    return [(name, hosts) for name, hosts in groups if hosts]


def _batches(hosts: list[str], size: int) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(hosts[i : i + size]) for i in range(0, len(hosts), size))
