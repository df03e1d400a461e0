"""``--limit PATTERN``: which hosts a command works on.

A pattern is a comma-separated union of terms: a name glob (``gpu-a0*``), ``ring=NAME``, ``label=KEY=VALUE``
or ``KEY=VALUE`` (a label, for any key but ``ring``). Values are globs too. Every term must match some host,
so a typo never silently drops hosts from a command.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from fleetctl.core.fleet import Host
from fleetctl.errors import UsageError


@dataclass(frozen=True)
class Term:
    kind: str  # name, ring, label
    value: str  # a glob
    key: str | None = None  # the label key

    def matches(self, host: Host) -> bool:
        if self.kind == "name":
            return fnmatchcase(host.name, self.value)
        if self.kind == "ring":
            return host.ring is not None and fnmatchcase(host.ring, self.value)
        label = host.labels.get(self.key or "")
        return label is not None and fnmatchcase(label, self.value)


def parse_pattern(pattern: str) -> tuple[Term, ...]:
    """The terms of ``pattern``, or UsageError naming the one that cannot be read."""
    return tuple(parse_term(pattern, part.strip()) for part in pattern.split(","))


def parse_term(pattern: str, text: str) -> Term:
    def bad(why: str) -> UsageError:
        return UsageError(
            f"--limit {pattern!r}: {why}",
            hint="use a name glob (gpu-a0*), ring=NAME or label=KEY=VALUE, comma-separated",
        )

    if not text:
        raise bad("empty selector")
    if "=" not in text:
        return Term("name", text)
    key, value = (s.strip() for s in text.split("=", 1))
    kind = "ring" if key == "ring" else "label"
    if key == "label":
        if "=" not in value:
            raise bad(f"{text!r} needs label=KEY=VALUE")
        key, value = (s.strip() for s in value.split("=", 1))
    if not key or not value:
        raise bad(f"{text!r} needs a key and a value")
    return Term("ring", value) if kind == "ring" else Term("label", value, key)


def select_hosts(hosts: Iterable[Host], pattern: str | None, *, fleet_name: str | None = None) -> tuple[Host, ...]:
    """The hosts ``pattern`` selects, in fleet order; all of them for None. UsageError when a term matches none."""
    hosts = tuple(hosts)
    if pattern is None:
        return hosts
    terms = parse_pattern(pattern)
    where = f"fleet {fleet_name}" if fleet_name else "the fleet"
    chosen = tuple(h for h in hosts if any(t.matches(h) for t in terms))
    if not chosen:
        raise UsageError(f"--limit {pattern!r} matches no host in {where}")
    for text, term in zip(pattern.split(","), terms):
        if not any(term.matches(h) for h in hosts):
            raise UsageError(f"--limit {pattern!r}: {text.strip()!r} matches no host in {where}")
    return chosen
