"""``--expect KEY=VERSION``: what a host must report after its maintenance, as data, and what it does not meet.

    parse_expect("driver=575.57.08")   → Expectation(key="driver", version="575.57.08")
    unmet([that], report)              → ["driver is 570.133.20, expected 575.57.08"] (empty: every one holds)

KEY names a fact of the host's inventory report: ``driver`` (driver_version), ``cuda_driver``
(cuda_driver_version, "12.9"), ``fabric_manager`` (fabric_manager_version), ``toolkit`` (the NVIDIA Container
Toolkit, nvidia_container_toolkit_version). Versions are equal as ``packaging.version`` versions where both
parse (``575.57.08`` == ``575.57.8``), else as strings. Pure: no I/O.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from packaging.version import InvalidVersion, Version

from fleetctl.core.addresses import shown
from fleetctl.core.inventory import HostReport

#: KEY → the HostFacts field it reads
FACTS = {
    "driver": "driver_version",
    "cuda_driver": "cuda_driver_version",
    "fabric_manager": "fabric_manager_version",
    "toolkit": "nvidia_container_toolkit_version",
}
FORM = "KEY=VERSION, e.g. driver=575.57.08; KEY is " + ", ".join(FACTS)
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+~_-]{0,63}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class ExpectError(ValueError):
    """An ``--expect`` that is not ``KEY=VERSION``; its text is one line (the CLI makes it a UsageError)."""


@dataclass(frozen=True)
class Expectation:
    key: str  # driver, cuda_driver, fabric_manager or toolkit
    version: str

    @property
    def fact(self) -> str:
        """The HostFacts field this expectation reads."""
        return FACTS[self.key]

    def __str__(self) -> str:
        return f"{self.key}={self.version}"


def parse_expect(text: str) -> Expectation:
    """``KEY=VERSION`` as an Expectation, or ExpectError saying in one line what is wrong."""
    if _CONTROL.search(text):
        raise ExpectError(f"{shown(text)}: control characters are not allowed ({FORM})")
    if "=" not in text:
        raise ExpectError(f"{shown(text)}: expected {FORM}")
    key, version = (part.strip() for part in text.split("=", 1))
    if key not in FACTS:
        close = difflib.get_close_matches(key, list(FACTS), n=1)
        hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(FACTS)}"
        raise ExpectError(f"{shown(text)}: unknown key {shown(key)} ({hint})")
    if not version:
        raise ExpectError(f"{shown(text)}: no version after {key}= ({FORM})")
    if not _VERSION.fullmatch(version):
        raise ExpectError(
            f'{shown(text)}: {key}: a version is letters, digits, ".", "+", "~", "_" or "-", starting with a letter '
            "or digit, at most 64 characters"
        )
    return Expectation(key, version)


def parse_expects(texts: Iterable[str]) -> tuple[Expectation, ...]:
    """Each ``--expect`` in turn; a key given twice is an error (which one would hold?)."""
    found: dict[str, Expectation] = {}
    for text in texts:
        expectation = parse_expect(text)
        earlier = found.setdefault(expectation.key, expectation)
        if earlier is not expectation:
            raise ExpectError(f"{shown(text)}: {expectation.key} is expected twice (also {shown(str(earlier))})")
    return tuple(found.values())


def unmet(expectations: Iterable[Expectation], report: HostReport) -> list[str]:
    """One line per expectation the host's report does not meet; for a host that could not be probed, its
    failure (one line: nothing can be judged). Empty: every expectation holds (or there are none)."""
    wanted = list(expectations)
    if not wanted:
        return []
    if report.error is not None:
        return [f"the host could not be probed: {report.error.kind}: {report.error.message}"]
    if report.facts is None:
        return ["the host reported no facts"]
    lines = []
    for expectation in wanted:
        actual = getattr(report.facts, expectation.fact)
        if actual is None:
            lines.append(f"{expectation.key} is not reported, expected {expectation.version}")
        elif not same_version(actual, expectation.version):
            lines.append(f"{expectation.key} is {actual}, expected {expectation.version}")
    return lines


def same_version(actual: str, expected: str) -> bool:
    """Equal as versions where both parse (``575.57.08`` == ``575.57.8``, ``12.9`` == ``12.9.0``), else as text."""
    try:
        return Version(actual) == Version(expected)
    except InvalidVersion:
        return actual == expected
