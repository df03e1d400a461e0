"""A check report as documents: JSON (``fleetctl.check/v1``) and JUnit XML for CI systems."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any
from xml.sax.saxutils import escape

from fleetctl.core.compat.result import FAIL, WARN, CheckReport, HostCheck, RuleResult

CHECK_SCHEMA = "fleetctl.check/v1"


def to_json(report: CheckReport) -> dict[str, Any]:
    results: dict[int, dict[str, str]] = {}  # hosts share result objects: convert each one once
    return {
        "schema": CHECK_SCHEMA,
        "profile": report.profile,
        "image": report.image,
        "cuda": report.cuda,
        "ok": report.ok,
        "summary": summary(report),
        "hosts": [_host_json(h, results) for h in report.hosts],
    }


def summary(report: CheckReport) -> dict[str, int]:
    counts = {"hosts": len(report.hosts), "pass": 0, "warn": 0, "fail": 0, "unprobed": 0}
    for host in report.hosts:
        counts[host.status] += 1
    return counts


def _host_json(host: HostCheck, results: dict[int, dict[str, str]]) -> dict[str, Any]:
    error = None if host.error is None else {"kind": host.error.kind, "message": host.error.message}
    return {
        "name": host.name,
        "ok": host.ok,
        "status": host.status,
        "error": error,
        "results": [results.get(id(r)) or results.setdefault(id(r), r.to_dict()) for r in host.results],
    }


_HOST = "\x1fHOST\x1f"  # stands for the host name in a suite serialized once per distinct result set


def to_junit(report: CheckReport) -> str:
    """One ``testsuite`` per host, one ``testcase`` per rule; a failed rule is a ``failure``, an unprobed
    host a single ``probe`` testcase with an ``error``. Warnings pass and are kept in ``system-out``."""
    s = summary(report)
    root = ET.Element(
        "testsuites",
        name=f"fleetctl check {report.profile}",
        tests=str(sum(max(len(h.results), 1) for h in report.hosts)),
        failures=str(sum(_count(h, FAIL) for h in report.hosts)),
        errors=str(s["unprobed"]),
    )
    root.text = _HOST
    head, tail = ET.tostring(root, encoding="unicode").split(_HOST)
    shared: dict[int, str] = {}  # hosts with the same configuration share one results tuple
    suites = []
    for host in report.hosts:
        if host.error is not None:
            suites.append(_serialize(_suite(host, report.profile, host.name)))
            continue
        key = id(host.results)
        if key not in shared:
            shared[key] = _serialize(_suite(host, report.profile, _HOST))
        suites.append(shared[key].replace(_HOST, _attr(host.name)))
    return "<?xml version='1.0' encoding='utf-8'?>\n" + head + "\n" + "".join(suites) + tail + "\n"


def _serialize(suite: ET.Element) -> str:
    ET.indent(suite, space="  ", level=1)
    suite.tail = "\n"
    return "  " + ET.tostring(suite, encoding="unicode")


_ATTR_ENTITIES = {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#09;"}


def _attr(text: str) -> str:
    """``text`` escaped for a double-quoted attribute value, as ElementTree escapes the rest of the document.

    Not ``quoteattr``: the host name also sits inside ``classname``'s value, and quoteattr may pick single quotes.
    """
    return escape(text, _ATTR_ENTITIES)


def _count(host: HostCheck, status: str) -> int:
    return sum(1 for r in host.results if r.status == status)


def _suite(host: HostCheck, profile: str, name: str) -> ET.Element:
    suite = ET.Element(
        "testsuite",
        name=name,
        tests=str(max(len(host.results), 1)),
        failures=str(_count(host, FAIL)),
        errors="0" if host.probed else "1",
        skipped="0",
    )
    classname = f"fleetctl.check.{profile}.{name}"
    if host.error is not None:
        case = ET.SubElement(suite, "testcase", name="probe", classname=classname)
        ET.SubElement(case, "error", message=f"{host.error.kind}: {host.error.message}", type=host.error.kind)
        return suite
    for r in host.results:
        suite.append(_case(r, classname))
    return suite


def _case(r: RuleResult, classname: str) -> ET.Element:
    case = ET.Element("testcase", name=r.rule, classname=classname)
    detail = f"expected: {r.expected}\nactual: {r.actual}\n" + (f"fix: {r.fix}\n" if r.fix else "")
    if r.status == FAIL:
        failure = ET.SubElement(case, "failure", message=r.message, type=r.rule)
        failure.text = detail
    elif r.status == WARN:
        out = ET.SubElement(case, "system-out")
        out.text = f"warning: {r.message}\n{detail}"
    return case
