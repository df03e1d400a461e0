"""Rendering of inventory results for people: progress on stderr, tables on stdout."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from fleetctl.cli.safe import text
from fleetctl.core.inventory import Change, HostReport, Snapshot
from fleetctl.errors import HostsFailed

if TYPE_CHECKING:
    from rich.console import Console


@contextmanager
def host_progress(console: Console, total: int, verb: str) -> Iterator[Callable[[HostReport], None]]:
    """A progress bar on stderr, advanced once per finished host."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn(f"{verb} hosts"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    task = progress.add_task(verb, total=total)
    with progress:
        yield lambda report: progress.advance(task)


def gpu_summary(report: HostReport) -> str:
    """The host's GPUs in a line, as markup (names come from the host: escaped)."""
    if report.facts is None or not report.facts.gpus:
        return "-"
    names = Counter(g.name or "unknown GPU" for g in report.facts.gpus)
    summary = ", ".join(f"{n} × {name.removeprefix('NVIDIA ')}" for name, n in names.items())
    lost = [str(g.index) for g in report.facts.gpus if g.lost]
    return text(summary) + (f" (lost: GPU {', '.join(lost)})" if lost else "")


def host_state(report: HostReport) -> str:
    if report.error is not None:
        return f"[red]{text(report.error.kind)}[/red]: {text(report.error.message)}"
    facts = report.facts
    if facts is not None and any(g.lost for g in facts.gpus):
        return "[yellow]degraded[/yellow]"
    return "[green]ok[/green]"


def inventory_table(console: Console, snapshot: Snapshot) -> None:
    from rich.table import Table

    title = f"fleet {text(snapshot.fleet or '')} · {text(snapshot.taken_at)}"
    table = Table(title=title, title_justify="left")
    for column in ("host", "ring", "GPUs", "driver", "CUDA", "toolkit", "Docker", "state"):
        table.add_column(column, overflow="fold")
    for r in snapshot.hosts:
        f = r.facts
        table.add_row(
            text(r.name),
            _v(r.ring),
            gpu_summary(r),
            _v(f and f.driver_version),
            _v(f and f.cuda_driver_version),
            _v(f and f.nvidia_container_toolkit_version),
            _v(f and f.docker_version),
            host_state(r),
        )
    console.print(table)


def _v(value: Any) -> str:
    """A value from a host or a file, as markup for a table cell; ``-`` when there is none."""
    return "-" if value in (None, "") else text(value)


def inventory_diff(console: Console, changes: Sequence[Change] | None, as_json: bool) -> None:
    if as_json:
        rows = None if changes is None else [c.__dict__ for c in changes]
        print(json.dumps({"schema": "fleetctl.inventory-diff/v1", "changes": rows}, indent=2))
        return
    if changes is None:
        console.print("no earlier inventory to compare with; this one is saved for next time")
        return
    if not changes:
        console.print("no changes since the last inventory")
        return
    from rich.table import Table

    table = Table("host", "fact", "before", "after", title="changes since the last inventory", title_justify="left")
    for c in changes:
        table.add_row(text(c.host), text(c.path), _v(c.before), _v(c.after))
    console.print(table)


def raise_if_hosts_failed(failed: Sequence[HostReport], total: int) -> None:
    if failed:
        named = ", ".join(f"{r.name} ({r.error.kind})" for r in failed[:5] if r.error)
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        raise HostsFailed(f"{len(failed)} of {total} hosts failed: {named}{more}")
