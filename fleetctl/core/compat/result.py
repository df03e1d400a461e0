"""Results of a compatibility check: one per rule per host, a host's results, the whole report."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from packaging.version import InvalidVersion, Version

from fleetctl.core.compat.document import ver
from fleetctl.core.inventory import HostFailure

PASS, WARN, FAIL = "pass", "warn", "fail"
STATUSES = (PASS, WARN, FAIL)


@dataclass(frozen=True, slots=True)
class RuleResult:
    rule: str
    status: str  # pass | warn | fail
    expected: str
    actual: str
    message: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "rule": self.rule,
            "status": self.status,
            "expected": self.expected,
            "actual": self.actual,
            "message": self.message,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class HostCheck:
    name: str
    results: tuple[RuleResult, ...] = ()
    error: HostFailure | None = None  # set when the host could not be probed: no results then

    @property
    def probed(self) -> bool:
        return self.error is None

    @cached_property  # a frozen record's status never changes; reports ask it of 10,000 hosts several times
    def status(self) -> str:
        """``fail``, ``warn`` or ``pass`` over the results; ``unprobed`` when the host was not probed."""
        if self.error is not None:
            return "unprobed"
        found = {r.status for r in self.results}
        return FAIL if FAIL in found else WARN if WARN in found else PASS

    @property
    def ok(self) -> bool:
        return self.status in (PASS, WARN)


@dataclass(frozen=True)
class CheckReport:
    profile: str
    image: str
    cuda: str
    rules: tuple[str, ...]
    hosts: tuple[HostCheck, ...]

    @cached_property  # frozen: asked several times of one report (verdict, summary, exit message)
    def failed(self) -> tuple[HostCheck, ...]:
        return tuple(h for h in self.hosts if h.status == FAIL)

    @cached_property
    def unprobed(self) -> tuple[HostCheck, ...]:
        return tuple(h for h in self.hosts if not h.probed)

    @cached_property
    def verdict(self) -> str:
        """``fail`` if any host failed a rule, else ``unprobed`` if any host could not be probed, else ``pass``."""
        statuses = {h.status for h in self.hosts}
        return FAIL if FAIL in statuses else "unprobed" if "unprobed" in statuses else PASS

    @property
    def ok(self) -> bool:
        return self.verdict == PASS


def result(rule: str, status: str, expected: str, actual: str, message: str, fix: str = "") -> RuleResult:
    return RuleResult(rule, status, expected, actual, message, fix)


def settle(status: str, sure: bool) -> str:
    """A verdict resting on unconfirmed matrix data is never a clean pass nor a failure: it is a warning."""
    return status if sure else WARN


def parsed(text: str | None) -> Version | None:
    """A fact as a version, or None when it is missing or does not parse (``N/A``)."""
    if text is None:
        return None
    try:
        return ver(text)
    except InvalidVersion:
        return None
