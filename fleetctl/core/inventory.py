"""The inventory snapshot (``fleetctl.inventory/v1``): what every host reported at one moment, and diffs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fleetctl.core.facts import HostFacts, ProbeOutputError, parse_probe_output
from fleetctl.core.fleet import Host

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

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "ring": self.ring,
            "ok": self.ok,
            "error": None if self.error is None else {"kind": self.error.kind, "message": self.error.message},
            "facts": None if self.facts is None else self.facts.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HostReport:
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
        )


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
        return cls(
            taken_at=str(d.get("taken_at") or ""),
            fleet=d.get("fleet"),
            hosts=tuple(HostReport.from_dict(h) for h in hosts),
        )


@dataclass(frozen=True)
class Change:
    host: str
    path: str  # e.g. "driver_version", "gpus[1].lost", "host"
    before: Any
    after: Any


def diff_snapshots(old: Snapshot, new: Snapshot) -> list[Change]:
    """What changed per host between two snapshots: hosts added or gone, and each fact that differs."""
    before = {h.name: _flatten(h) for h in old.hosts}
    after = {h.name: _flatten(h) for h in new.hosts}
    changes: list[Change] = []
    for name in sorted(before.keys() | after.keys()):
        if name not in before or name not in after:
            changes.append(
                Change(name, "host", "present" if name in before else None, "present" if name in after else None)
            )
            continue
        for path in sorted(before[name].keys() | after[name].keys()):
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
    return HostReport(name=host.name, address=host.address, ring=host.ring, facts=facts, error=error)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
