"""The inventory snapshot (``fleetctl.inventory/v1``): what every host reported, when, and diffs.

A snapshot is the fleet's last known facts, not one run's: every host carries ``probed_at``, the time its
report was taken. ``merge_snapshots`` folds a run (perhaps of a few hosts, perhaps all unreachable) into the
previous snapshot without losing the last good facts of hosts the run did not reach.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from fleetctl.core.facts import HostFacts, ProbeOutputError, parse_probe_output
from fleetctl.core.fleet import Host
from fleetctl.core.timefmt import parse_utc

INVENTORY_SCHEMA = "fleetctl.inventory/v1"


class SnapshotError(ValueError):
    """A snapshot document that is not a valid ``fleetctl.inventory/v1``."""


@dataclass(frozen=True)
class HostFailure:
    kind: str
    message: str


@dataclass(frozen=True)
class HostReport:
    name: str
    address: str
    ring: str | None
    facts: HostFacts | None = None
    error: HostFailure | None = None
    probed_at: str | None = None  # when this report was taken (UTC, ``2026-11-30T12:00:00Z``)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "ring": self.ring,
            "probed_at": self.probed_at,
            "ok": self.ok,
            "error": None if self.error is None else {"kind": self.error.kind, "message": self.error.message},
            "facts": None if self.facts is None else self.facts.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], taken_at: str | None = None) -> HostReport:
        """A host of a saved snapshot; ``taken_at`` stands for ``probed_at`` in snapshots written before it."""
        if not isinstance(d, dict) or not isinstance(d.get("name"), str):
            raise SnapshotError("every host needs a string name")
        err = d.get("error")
        if err is not None and not (isinstance(err, dict) and isinstance(err.get("kind"), str)):
            raise SnapshotError(f"host {d['name']}: error must be null or {{kind, message}}")
        try:
            facts = None if d.get("facts") is None else HostFacts.from_dict(d["facts"])
        except ProbeOutputError as e:
            raise SnapshotError(f"host {d['name']}: {e}") from e
        return cls(
            name=d["name"],
            address=str(d.get("address") or d["name"]),
            ring=d.get("ring"),
            facts=facts,
            error=None if err is None else HostFailure(err["kind"], str(err.get("message") or "")),
            probed_at=_timestamp(d.get("probed_at"), f"host {d['name']}: probed_at") or taken_at,
        )


def _timestamp(value: Any, what: str) -> str | None:
    if value is None or value == "":
        return None
    try:
        parse_utc(value)
    except ValueError as e:
        raise SnapshotError(f"{what}: expected a UTC timestamp like 2026-11-30T12:00:00Z, got {value!r}") from e
    return str(value)


@dataclass(frozen=True)
class Snapshot:
    taken_at: str
    hosts: tuple[HostReport, ...] = field(default_factory=tuple)
    fleet: str | None = None

    @property
    def failed(self) -> tuple[HostReport, ...]:
        return tuple(h for h in self.hosts if not h.ok)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": INVENTORY_SCHEMA,
            "fleet": self.fleet,
            "taken_at": self.taken_at,
            "hosts": [h.to_dict() for h in self.hosts],
        }

    @classmethod
    def from_dict(cls, d: Any) -> Snapshot:
        if not isinstance(d, dict) or d.get("schema") != INVENTORY_SCHEMA:
            raise SnapshotError(f"not a {INVENTORY_SCHEMA} document")
        hosts = d.get("hosts")
        if not isinstance(hosts, list):
            raise SnapshotError("hosts must be a list")
        taken_at = _timestamp(d.get("taken_at"), "taken_at") or ""
        return cls(
            taken_at=taken_at,
            fleet=d.get("fleet"),
            hosts=tuple(HostReport.from_dict(h, taken_at or None) for h in hosts),
        )

    def only(self, names: Iterable[str]) -> Snapshot:
        """The same snapshot with only the hosts named."""
        keep = set(names)
        return replace(self, hosts=tuple(h for h in self.hosts if h.name in keep))


def merge_snapshots(previous: Snapshot | None, fresh: Snapshot, fleet_hosts: Iterable[str]) -> Snapshot:
    """What to save after a run: ``fresh``'s reports over ``previous``'s, in fleet-file order.

    A host the run did not probe keeps its previous report (and its ``probed_at``); a host the run could not
    reach (no facts) keeps its previous facts if it had any; hosts gone from the fleet file drop out."""
    old = {h.name: h for h in previous.hosts} if previous is not None else {}
    new = {h.name: h for h in fresh.hosts}
    merged = []
    for name in fleet_hosts:
        report = new.get(name)
        kept = old.get(name)
        if report is None or (report.facts is None and kept is not None and kept.facts is not None):
            report = kept
        if report is not None:
            merged.append(report)
    return Snapshot(taken_at=fresh.taken_at, fleet=fresh.fleet, hosts=tuple(merged))


@dataclass(frozen=True)
class OldFacts:
    """A host whose facts come from before the snapshot's latest run."""

    host: str
    probed_at: str
    age_s: float


def old_facts(snapshot: Snapshot) -> list[OldFacts]:
    """Hosts of ``snapshot`` whose report was taken before its ``taken_at`` (not reached by the latest run)."""
    if not snapshot.taken_at:
        return []
    latest = parse_utc(snapshot.taken_at)
    found = []
    for h in snapshot.hosts:
        if h.probed_at and h.probed_at != snapshot.taken_at:
            age = (latest - parse_utc(h.probed_at)).total_seconds()
            if age > 0:
                found.append(OldFacts(h.name, h.probed_at, age))
    return found


def describe_age(seconds: float) -> str:
    """``90`` → ``"1 min"``, ``7200`` → ``"2 h"``, ``200000`` → ``"2 days"``."""
    if seconds < 3600:
        return f"{max(1, int(seconds // 60))} min"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h"
    days = int(seconds // 86400)
    return f"{days} day{'s' if days != 1 else ''}"


@dataclass(frozen=True)
class Change:
    host: str
    path: str  # e.g. "driver_version", "gpus[1].lost", "host"
    before: Any
    after: Any


def diff_since(previous: Snapshot, run: Snapshot, fleet_hosts: set[str]) -> list[Change]:
    """What a run saw change, like with like: the hosts it probed against their last reports, and hosts gone
    from the fleet file; hosts the run did not probe are not "gone"."""
    probed = {h.name for h in run.hosts}
    gone = {h.name for h in previous.hosts} - fleet_hosts
    return diff_snapshots(previous.only(probed | gone), run)


def diff_snapshots(old: Snapshot, new: Snapshot) -> list[Change]:
    """What changed per host between two snapshots: hosts added or gone, and each fact that differs.

    A host without facts on one side (it could not be probed) differs in its error only."""
    before = {h.name: _flatten(h) for h in old.hosts}
    after = {h.name: _flatten(h) for h in new.hosts}
    changes: list[Change] = []
    for name in sorted(before.keys() | after.keys()):
        if name not in before or name not in after:
            changes.append(
                Change(name, "host", "present" if name in before else None, "present" if name in after else None)
            )
            continue
        paths = before[name].keys() | after[name].keys()
        if len(before[name]) == 1 or len(after[name]) == 1:  # only "error": no facts to compare
            paths = {"error"}
        for path in sorted(paths):
            a, b = before[name].get(path), after[name].get(path)
            if a != b:
                changes.append(Change(name, path, a, b))
    return changes


# Facts that move on their own and would drown a diff in noise.
_VOLATILE = {"temperature_c", "power_draw_w", "utilization_pct", "memory_used_mib", "throttle_reasons"}


def _flatten(report: HostReport) -> dict[str, Any]:
    flat: dict[str, Any] = {"error": report.error.kind if report.error else None}
    if report.facts is None:
        return flat
    for key, value in report.facts.to_dict().items():
        if key != "gpus":
            flat[key] = value
    for gpu in report.facts.to_dict()["gpus"]:
        for key, value in gpu.items():
            if key not in _VOLATILE and key != "index":
                flat[f"gpus[{gpu['index']}].{key}"] = value
    return flat


def report_from_probe(host: Host, rc: int, stdout: str, stderr: str) -> HostReport:
    """Pure: a host report from what the probe command printed and returned."""
    if rc == 127 or (rc != 0 and "python3" in stderr and "not found" in stderr):
        return _report(host, error=HostFailure("no_python", "python3 is not installed on the host (or not on PATH)"))
    try:
        result = parse_probe_output(stdout)
    except ProbeOutputError as e:
        detail = _last_line(stderr) or str(e)
        return _report(host, error=HostFailure("probe_failed", f"probe exited {rc}: {detail}"))
    error = None if result.error_kind is None else HostFailure(result.error_kind, result.error_message or "")
    return _report(host, facts=result.facts, error=error)


def _report(host: Host, *, facts: HostFacts | None = None, error: HostFailure | None = None) -> HostReport:
    """A report of this moment's probe (the caller stamps ``probed_at``)."""
    return HostReport(name=host.name, address=host.address, ring=host.ring, facts=facts, error=error)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
