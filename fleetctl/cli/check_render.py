"""Rendering of compatibility reports for people: hosts × rules with ✓ ! ✗, then every failure with its fix.

The report is laid out as lines of (text, style) segments: written as plain text when the console has no
colour (pipes, CI logs; fast for 10,000 hosts), as styled rich text on a terminal. Segments are never markup;
text from files and hosts in them is made ``visible`` (control characters escaped) where it is put in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fleetctl.cli.safe import visible
from fleetctl.core.compat.report import summary
from fleetctl.core.compat.result import FAIL, PASS, WARN, CheckReport, HostCheck

if TYPE_CHECKING:
    from rich.console import Console

    from fleetctl.core.compat.explain import Line

Segments = list[tuple[str, str | None]]

#: column headings of the table; the legend under it spells out the rule ids
HEADINGS = {
    "driver_for_cuda": "drv/cuda",
    "driver_for_gpu": "drv/gpu",
    "arch_for_cuda": "arch",
    "compute_capability": "cc",
    "features": "feat",
    "gpu_count": "count",
    "gpu_memory": "mem",
    "gpu_health": "health",
    "mixed_gpus": "mixed",
    "docker": "docker",
    "container_toolkit": "ctk",
    "fabric_manager": "fm",
}
MARKS = {PASS: ("✓", "green"), WARN: ("!", "yellow"), FAIL: ("✗", "red")}
_RESULT = {
    PASS: ("pass", "green"),
    WARN: ("warn", "yellow"),
    FAIL: ("FAIL", "bold red"),
    "unprobed": ("unprobed", "red"),
}


def check_table(console: Console, report: CheckReport) -> None:
    """The whole human report: the table, failures and warnings with fixes, unprobed hosts, a summary line."""
    lines = table_lines(report) + detail_lines(report) + [[("", None)], [(summary_line(report), "bold")]]
    write_lines(console, lines)


def table_lines(report: CheckReport) -> list[Segments]:
    headings = [HEADINGS.get(rule, rule) for rule in report.rules]
    names = {id(h): visible(h.name) for h in report.hosts}
    host_width = max([4, *(len(name) for name in names.values())])
    title = visible(f"profile {report.profile} · {report.image} · CUDA {report.cuda}")
    lines: list[Segments] = [
        [(title, "bold")],
        [("host".ljust(host_width) + "  result    " + "  ".join(headings), "bold")],
    ]
    blank = {rule: (" " * len(heading)) for rule, heading in zip(report.rules, headings)}
    shared: dict[int, Segments] = {}  # hosts with the same configuration share one results tuple
    for host in report.hosts:
        key = id(host.results) if host.probed else 0
        if key not in shared:
            text, style = _RESULT[host.status]
            shared[key] = [(text.ljust(8), style), *_marks(host, report.rules, blank)]
        lines.append([(names[id(host)].ljust(host_width) + "  ", None), *shared[key]])
    legend = ", ".join(f"{heading} = {rule}" for rule, heading in zip(report.rules, headings) if heading != rule)
    lines.append([(legend, "dim")])
    return lines


def _marks(host: HostCheck, rules: tuple[str, ...], blank: dict[str, str]) -> Segments:
    statuses = {r.rule: r.status for r in host.results}
    segments: Segments = []
    for rule in rules:
        width = len(blank[rule])
        mark, style = MARKS.get(statuses.get(rule, ""), ("·" if not host.probed else "-", "dim"))
        left = (width - 1) // 2
        segments += [("  " + " " * left, None), (mark, style), (" " * (width - 1 - left), None)]
    return segments


def detail_lines(report: CheckReport) -> list[Segments]:
    lines: list[Segments] = []
    for status, label, style in ((FAIL, "failures", "bold red"), (WARN, "warnings", "bold yellow")):
        found = [(h.name, r) for h in report.hosts for r in h.results if r.status == status]
        if found:
            lines += [[("", None)], [(label, style)]]
        for name, r in found:
            lines.append([(f"  {visible(name)}  ", None), (r.rule, "bold"), (f": {visible(r.message)}", None)])
            if r.fix:
                lines.append([("      fix: ", "dim"), (visible(r.fix), None)])
    if report.unprobed:
        lines += [[("", None)], [("could not be probed", "bold red")]]
        lines += [
            [(visible(f"  {h.name}  {h.error.kind}: {h.error.message}"), None)] for h in report.unprobed if h.error
        ]
    return lines


def summary_line(report: CheckReport) -> str:
    s = summary(report)
    return (
        f"{s['hosts']} hosts: {s['pass']} pass, {s['warn']} pass with warnings, {s['fail']} fail, "
        f"{s['unprobed']} could not be probed"
    )


def write_lines(console: Console, lines: list[Segments]) -> None:
    if console.color_system is None:
        console.file.write("".join("".join(text for text, _ in line) + "\n" for line in lines))
        console.file.flush()
        return
    from rich.text import Text

    text = Text(no_wrap=False)
    for line in lines:
        for part, style in line:
            text.append(part, style=style)
        text.append("\n")
    console.print(text, end="", soft_wrap=True, highlight=False)


def lines_table(console: Console, title: str, lines: list[Line]) -> None:
    """``matrix show``: topic and requirement, sources numbered and listed in full under the table."""
    from rich.table import Table

    from fleetctl.cli.safe import text

    numbers: dict[str, int] = {}
    for line in lines:
        if line.source:
            numbers.setdefault(line.source, len(numbers) + 1)
    table = Table("topic", "requirement", "src", title=text(title), title_justify="left")
    for line in lines:
        table.add_row(
            text(line.topic),
            text(line.requirement),
            f"[{numbers[line.source]}]" if line.source else "",
            style="yellow" if "UNCONFIRMED" in line.requirement else None,
        )
    console.print(table)
    for source, number in numbers.items():
        console.print(f"  [{number}] {visible(source)}", markup=False, highlight=False, soft_wrap=True)
